package integration

// Limits (issue 5, item 4): --max-files and --max-bytes give ENOSPC and
// nothing else; 10,000 simultaneously blocked waiters, 100,000 lock files
// and a long run of open/lock/unlock/close cycles are served without
// error and leave nothing behind. Each test logs the figures (time,
// lockfs's VmRSS and threads).
//
// The CI sizes are below; the full sizes of the issue run with
//
//	LOCKFS_WAITERS=10000 LOCKFS_FILES=100000 LOCKFS_CYCLES=1000000 \
//	    go test ./integration -run 'TestLimits' -v -timeout 60m

import (
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ---- --max-files and --max-bytes ------------------------------------------

// TestLimitsMaxFiles fills a lockfs mounted with --max-files and a tmpfs
// mounted with the same nr_inodes side by side: both must refuse the
// same create with ENOSPC, count the root as they do, and keep serving
// everything else: locks on existing files, content, stat, readdir, and
// creation again once a file is unlinked.
func TestLimitsMaxFiles(t *testing.T) {
	const limit = 16
	m, tmp := mountInodeCapped(t, limit)
	got := relFillFiles(t, m.Dir, limit+10)
	want := relFillFiles(t, tmp, limit+10)
	if got != want {
		t.Errorf("lockfs --max-files=%d:\n%s\ntmpfs nr_inodes=%d:\n%s", limit, got, limit, want)
	}
	if !strings.Contains(got, "ENOSPC") {
		t.Fatalf("no ENOSPC from lockfs --max-files=%d:\n%s", limit, got)
	}
	// Everything else keeps working on the full mount.
	names := relFilesIn(t, m.Dir)
	if busy := relRequireAllFree(t, m.Dir, names, 5*time.Second); len(busy) > 0 {
		t.Errorf("lock files not lockable on a full mount: %v", busy)
	}
	if err := os.WriteFile(filepath.Join(m.Dir, names[0]), []byte("content"), 0o644); err != nil {
		t.Errorf("writing an existing file on a full mount: %v", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(m.Dir, &st); err != nil || st.Ffree != 0 || st.Files != limit {
		t.Errorf("statfs of a full mount: files %d free %d (%v), want %d and 0", st.Files, st.Ffree, err, limit)
	}
	if err := os.Remove(filepath.Join(m.Dir, names[1])); err != nil {
		t.Fatal(err)
	}
	if err := createAfterRelease(filepath.Join(m.Dir, "again")); err != nil {
		t.Errorf("create after an unlink freed an inode: %v", err)
	}
	if err := os.WriteFile(filepath.Join(m.Dir, "again2"), nil, 0o644); !errors.Is(err, unix.ENOSPC) {
		t.Errorf("create past the limit again: %v, want ENOSPC", err)
	}
}

// createAfterRelease creates an empty file, allowing the slot given back
// by an earlier close a moment to arrive: the kernel sends RELEASE in the
// background after close(2) returns, and go-fuse may serve it after a
// request that follows it. (An unlink of a closed file frees its slot at
// once; only a RELEASE still in flight can make this wait.)
func createAfterRelease(path string) error {
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if err = os.WriteFile(path, nil, 0o644); !errors.Is(err, unix.ENOSPC) || time.Now().After(deadline) {
			return err
		}
	}
}

// TestLimitsMaxFilesUnlinkedOpen: on a full mount, an unlinked file that
// is still open keeps its inode slot until its last close, as on tmpfs;
// an unlinked closed file gives it back at once. Run side by side with a
// tmpfs of the same nr_inodes.
func TestLimitsMaxFilesUnlinkedOpen(t *testing.T) {
	const limit = 8
	m, tmp := mountInodeCapped(t, limit)
	for _, dir := range []string{m.Dir, tmp} {
		fs := "lockfs"
		if dir == tmp {
			fs = "tmpfs"
		}
		// The root holds one slot: limit-1 files fill the mount.
		for i := 0; i < limit-1; i++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), nil, 0o644); err != nil {
				t.Fatalf("%s: create #%d of %d: %v", fs, i+1, limit-1, err)
			}
		}
		held, err := os.Open(filepath.Join(dir, "f0"))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"f0", "f1"} {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
		// f1 was closed: its slot is free at once, with no wait.
		if err := os.WriteFile(filepath.Join(dir, "n1"), nil, 0o644); err != nil {
			t.Errorf("%s: create after unlinking a closed file: %v", fs, err)
		}
		// f0 is open: it still holds its slot.
		if err := os.WriteFile(filepath.Join(dir, "n2"), nil, 0o644); !errors.Is(err, unix.ENOSPC) {
			t.Errorf("%s: create while an unlinked file is open: %v, want ENOSPC", fs, err)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil || st.Ffree != 0 {
			t.Errorf("%s: statfs with an unlinked open file: free %d (%v), want 0", fs, st.Ffree, err)
		}
		// Its content and locks still work through the fd.
		if err := unix.Flock(int(held.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			t.Errorf("%s: flock on an unlinked open file: %v", fs, err)
		}
		held.Close()
		if err := createAfterRelease(filepath.Join(dir, "n2")); err != nil {
			t.Errorf("%s: create after the unlinked file's last close: %v", fs, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "n3"), nil, 0o644); !errors.Is(err, unix.ENOSPC) {
			t.Errorf("%s: create past the limit again: %v, want ENOSPC", fs, err)
		}
	}
}

// mountInodeCapped mounts a lockfs with --max-files=limit and a tmpfs
// with nr_inodes=limit, to be compared side by side.
func mountInodeCapped(t *testing.T, limit int) (*Mount, string) {
	m := mountLockfs(t, fmt.Sprintf("--max-files=%d", limit))
	tmp := mountTmpfs(t)
	if err := unix.Mount("", tmp, "", unix.MS_REMOUNT, fmt.Sprintf("nr_inodes=%d", limit)); err != nil {
		t.Fatalf("remount tmpfs nr_inodes=%d: %v", limit, err)
	}
	return m, tmp
}

// relFillFiles creates files, a directory and a symlink until the mount is
// full, and describes what happened.
func relFillFiles(t *testing.T, dir string, tries int) string {
	var b strings.Builder
	n := 0
	for i := 0; i < tries; i++ {
		fd, err := unix.Open(filepath.Join(dir, fmt.Sprintf("f%02d", i)), unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
		if err != nil {
			fmt.Fprintf(&b, "create #%d: %v\n", i+1, relErrnoName(err))
			break
		}
		unix.Close(fd)
		n++
	}
	fmt.Fprintf(&b, "created %d files\n", n)
	fmt.Fprintf(&b, "mkdir: %s\n", relErrnoName(unix.Mkdir(filepath.Join(dir, "d"), 0o755)))
	fmt.Fprintf(&b, "symlink: %s\n", relErrnoName(unix.Symlink("x", filepath.Join(dir, "s"))))
	fmt.Fprintf(&b, "mknod fifo: %s\n", relErrnoName(unix.Mknod(filepath.Join(dir, "p"), unix.S_IFIFO|0o644, 0)))
	fmt.Fprintf(&b, "link: %s\n", relErrnoName(unix.Link(filepath.Join(dir, "f00"), filepath.Join(dir, "h"))))
	return b.String()
}

func relErrnoName(err error) string {
	if err == nil {
		return "OK"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if n := unix.ErrnoName(errno); n != "" {
			return strings.ToUpper(n)
		}
	}
	return err.Error()
}

func relFilesIn(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names
}

// TestLimitsMaxBytes fills a lockfs mounted with --max-bytes: writes,
// truncates and fallocates past the cap fail with ENOSPC and change
// nothing; what was written stays intact; lock files (empty) can still
// be created and locked; unlinking a file gives its bytes back.
func TestLimitsMaxBytes(t *testing.T) {
	const limit = 64 << 10
	m := mountLockfs(t, fmt.Sprintf("--max-bytes=%d", limit))
	full := make([]byte, limit-100)
	for i := range full {
		full[i] = byte(i)
	}
	a := filepath.Join(m.Dir, "a")
	if err := os.WriteFile(a, full, 0o644); err != nil {
		t.Fatalf("write %d of %d bytes: %v", len(full), limit, err)
	}
	b := filepath.Join(m.Dir, "b")
	if err := os.WriteFile(b, make([]byte, 100), 0o644); err != nil {
		t.Fatalf("write up to exactly the limit: %v", err)
	}
	f, err := os.OpenFile(b, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{1}); !errors.Is(err, unix.ENOSPC) {
		t.Errorf("write past --max-bytes: %v, want ENOSPC", err)
	}
	if err := f.Truncate(200); !errors.Is(err, unix.ENOSPC) {
		t.Errorf("truncate past --max-bytes: %v, want ENOSPC", err)
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, 4096); !errors.Is(err, unix.ENOSPC) {
		t.Errorf("fallocate past --max-bytes: %v, want ENOSPC", err)
	}
	f.Close()
	if st, err := os.Stat(b); err != nil || st.Size() != 100 {
		t.Errorf("refused writes changed b: %v %v", st.Size(), err)
	}
	if got, err := os.ReadFile(a); err != nil || !slices.Equal(got, full) {
		t.Errorf("content of a changed on a full mount (%v)", err)
	}
	// Lock files hold no bytes: they keep working.
	for i := 0; i < 5; i++ {
		if err := os.WriteFile(filepath.Join(m.Dir, fmt.Sprintf("lock%d", i)), nil, 0o644); err != nil {
			t.Errorf("create an empty lock file on a byte-full mount: %v", err)
		}
	}
	if busy := relRequireAllFree(t, m.Dir, relFilesIn(t, m.Dir), 5*time.Second); len(busy) > 0 {
		t.Errorf("locks on a byte-full mount: %v", busy)
	}
	// Unlinking a gives its bytes back: at once, or when the RELEASE of
	// the ReadFile above arrives (the kernel sends it in the background),
	// so allow a moment.
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	c := filepath.Join(m.Dir, "c")
	var werr error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if werr = os.WriteFile(c, full, 0o644); !errors.Is(werr, unix.ENOSPC) || time.Now().After(deadline) {
			break
		}
	}
	if werr != nil {
		t.Errorf("write after unlinking the big file: %v", werr)
	}
	// An unlinked file that is still open keeps its bytes until its last
	// close, as on tmpfs.
	held, err := os.Open(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(c); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a, full, 0o644); !errors.Is(err, unix.ENOSPC) {
		t.Errorf("write while the unlinked big file is open: %v, want ENOSPC", err)
	}
	if got, err := io.ReadAll(held); err != nil || !slices.Equal(got, full) {
		t.Errorf("content of the unlinked open file: %d bytes (%v), want %d", len(got), err, len(full))
	}
	held.Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if werr = os.WriteFile(a, full, 0o644); !errors.Is(werr, unix.ENOSPC) || time.Now().After(deadline) {
			break
		}
	}
	if werr != nil {
		t.Errorf("write after the unlinked big file's last close: %v", werr)
	}
}

// ---- many blocked waiters ----------------------------------------------------

// waitersMain opens LOCKFS_REL_N descriptions of LOCKFS_REL_FILE and
// blocks one OS thread on each in F_OFD_SETLKW (write, whole file). A
// granted waiter unlocks and closes at once. It prints "OPEN", then
// "DONE ok=N errors=E first=ERR" once every wait has ended.
func waitersMain() int {
	path := os.Getenv("LOCKFS_REL_FILE")
	n := relEnvInt("LOCKFS_REL_N", 1)
	debug.SetMaxThreads(n + 1000)
	fds := make([]int, n)
	for i := range fds {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			fmt.Printf("FAIL open #%d: %v\n", i, err)
			return 3
		}
		fds[i] = fd
	}
	fmt.Println("OPEN")
	var (
		mu    sync.Mutex
		ok    int
		errs  int
		first error
		wg    sync.WaitGroup
	)
	for _, fd := range fds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // one thread per waiter, as a C program would use
			lk := unix.Flock_t{Type: unix.F_WRLCK}
			err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLKW, &lk)
			if err == nil {
				lk.Type = unix.F_UNLCK
				err = unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk)
			}
			if cerr := unix.Close(fd); err == nil {
				err = cerr
			}
			mu.Lock()
			if err == nil {
				ok++
			} else {
				errs++
				if first == nil {
					first = err
				}
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	fmt.Printf("DONE ok=%d errors=%d first=%v\n", ok, errs, first)
	return 0
}

// relBlockedThreads counts the threads of pid that are inside fcntl(2).
func relBlockedThreads(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/syscall", pid, e.Name()))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 && f[0] == strconv.Itoa(unix.SYS_FCNTL) {
			n++
		}
	}
	return n
}

// TestLimitsManyWaiters blocks LOCKFS_WAITERS (default 2,000 in CI;
// the figure, 10,000, with LOCKFS_WAITERS=10000) OFD waiters,
// one thread and one open file description each, behind one holder,
// checks that lockfs lists them all, then releases the holder: every
// waiter must be granted in turn, without error.
func TestLimitsManyWaiters(t *testing.T) {
	total := relEnvInt("LOCKFS_WAITERS", 2000)
	const perProc = 2500 // the race detector allows 8128 goroutines per process
	m, metricsAddr := relMountWithMetrics(t)
	const name = "crowded"
	holder := startActor(t, "holder", m.Dir, "")
	fd := relMustReply(t, holder, "open "+name+" rw", "OK ")
	relMustReply(t, holder, "ofd_setlk "+fd+" WR SET 0 0", "OK")
	memStart, _ := relReadProcMem(m.Proc.Pid)

	start := time.Now()
	var procs []*relProc
	for left := total; left > 0; left -= perProc {
		p := startRel(t, "waiters", []string{"LOCKFS_REL_FILE=" + filepath.Join(m.Dir, name), "LOCKFS_REL_N=" + strconv.Itoa(min(left, perProc))}, nil)
		p.expect(t, "OPEN", time.Minute)
		procs = append(procs, p)
	}
	blocked := 0
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		blocked = 0
		for _, p := range procs {
			blocked += relBlockedThreads(p.pid)
		}
		if blocked == total || time.Now().After(deadline) {
			break
		}
	}
	blockTime := time.Since(start)
	if blocked != total {
		t.Fatalf("%d of %d waiters blocked in fcntl after %v", blocked, total, blockTime)
	}
	mem, _ := relReadProcMem(m.Proc.Pid)
	t.Logf("%d OFD waiters blocked in %v; lockfs %v (before: %v)", total, blockTime.Round(time.Millisecond), mem, memStart)
	if rows, ok, err := relViewRows(m.Dir); err != nil {
		t.Error(err)
	} else if ok {
		waiting := 0
		for _, r := range rows {
			if strings.HasSuffix(fmt.Sprint(r["mode"]), "*") || r["blocked"] == true || fmt.Sprint(r["state"]) == "blocked" {
				waiting++
			}
		}
		t.Logf(".lockfs/locks.json: %d rows, %d of them waiting", len(rows), waiting)
		if len(rows) != total+1 {
			t.Errorf(".lockfs/locks.json lists %d rows, want the holder and %d waiters", len(rows), total)
		}
	}

	if metricsAddr != "" {
		mt, err := relScrapeMetrics(metricsAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("metrics: lockfs_lock_waiters %v, lockfs_locks_held %v, go_goroutines %v", mt["lockfs_lock_waiters"], mt["lockfs_locks_held"], mt["go_goroutines"])
		if mt["lockfs_lock_waiters"] != float64(total) || mt["lockfs_locks_held"] != 1 {
			t.Errorf("metrics: lockfs_lock_waiters %v, lockfs_locks_held %v; want %d and 1", mt["lockfs_lock_waiters"], mt["lockfs_locks_held"], total)
		}
	}

	release := time.Now()
	relMustReply(t, holder, "ofd_setlk "+fd+" UN SET 0 0", "OK")
	grantWithin := max(2*time.Minute, time.Duration(total)*20*time.Millisecond)
	for _, p := range procs {
		done := ""
		for deadline := time.Now().Add(grantWithin); done == ""; {
			select {
			case l, ok := <-p.lines:
				switch {
				case !ok:
					t.Fatalf("waiters worker exited (%v) before DONE:\n%s", p.state, p.stderr)
				case strings.HasPrefix(l, "DONE"):
					done = l
				}
			case <-time.After(time.Until(deadline)):
				t.Fatalf("waiters not all granted %v after the holder let go: %s", grantWithin, relWaitersDiag(m, procs))
			}
		}
		want := fmt.Sprintf("ok=%d errors=0", min(perProc, total-perProc*slices.Index(procs, p)))
		if !strings.Contains(done, want) {
			t.Errorf("waiters: %s, want %s", done, want)
		}
		p.finish(t, mustFinishWithin)
	}
	t.Logf("all %d waiters granted one after another in %v; lockfs peak %v", total, time.Since(release).Round(time.Millisecond), relPeakMem(m))
	relMustReply(t, holder, "close "+fd, "OK")
	relCheckEmpty(t, m, []string{name}, total+1)
	relCheckMetricsEmpty(t, metricsAddr)
}

// relCheckMetricsEmpty: lockfs's gauges say nothing is held or waited
// for (when it serves metrics).
func relCheckMetricsEmpty(t *testing.T, addr string) {
	t.Helper()
	if addr == "" {
		return
	}
	var mt map[string]float64
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if mt, err = relScrapeMetrics(addr); err != nil {
			t.Fatal(err)
		}
		if mt["lockfs_locks_held"] == 0 && mt["lockfs_lock_waiters"] == 0 || time.Now().After(deadline) {
			break
		}
	}
	if mt["lockfs_locks_held"] != 0 || mt["lockfs_lock_waiters"] != 0 {
		t.Errorf("metrics: lockfs_locks_held %v, lockfs_lock_waiters %v once every file is closed", mt["lockfs_locks_held"], mt["lockfs_lock_waiters"])
	}
}

// relWaitersDiag describes a stalled grant chain: who lockfs says holds
// and waits, and how many waiter threads are still in fcntl.
func relWaitersDiag(m *Mount, procs []*relProc) string {
	var b strings.Builder
	blocked := 0
	for _, p := range procs {
		blocked += relBlockedThreads(p.pid)
	}
	fmt.Fprintf(&b, "%d waiter threads still in fcntl\n", blocked)
	rows, ok, err := relViewRows(m.Dir)
	fmt.Fprintf(&b, ".lockfs/locks.json (%v, %v): %d rows\n", ok, err, len(rows))
	for i, r := range rows {
		if i >= 5 {
			break
		}
		fmt.Fprintf(&b, "  %v\n", r)
	}
	if a, err := analyseAudit(m.LogPath); err == nil {
		fmt.Fprintf(&b, "audit log: %d events, %d acquired, %d released, %d violations, %d open\n", a.events, a.acquired, a.released, len(a.violations), len(a.leaks()))
	}
	mem, _ := relReadProcMem(m.Proc.Pid)
	fmt.Fprintf(&b, "lockfs: %v\n%s", mem, relProcDiag(m.Proc.Pid))
	return b.String()
}

func relMustReply(t testing.TB, a *actor, cmd, prefix string) string {
	t.Helper()
	r, ok := a.start(cmd).wait(mustFinishWithin)
	if !ok || !strings.HasPrefix(r, prefix) {
		t.Fatalf("%s: %s => %q (want %s…)\n%s", a.name, cmd, r, prefix, a.stderr)
	}
	return strings.TrimPrefix(r, prefix)
}

func relPeakMem(m *Mount) relProcMem {
	mem, _ := relReadProcMem(m.Proc.Pid)
	return mem
}

// relCheckEmpty checks that nothing is left once every process has closed
// its files: every named file is free for every kind of lock, lockfs
// lists nothing, and its audit log shows wantAcquired acquired events
// (if ≥ 0), each released exactly once, with no conflict and no open wait.
func relCheckEmpty(t *testing.T, m *Mount, names []string, wantAcquired int) {
	t.Helper()
	busy, probe := relProbeAll(t, m.Dir, names, 10*time.Second)
	if len(busy) > 0 {
		t.Errorf("%d files still locked, e.g. %v", len(busy), busy[:min(5, len(busy))])
	}
	if rows, ok, err := relViewRows(m.Dir); err != nil {
		t.Error(err)
	} else if ok && len(rows) > 0 {
		t.Errorf("lockfs still lists %d locks or waiters, e.g. %v", len(rows), rows[0])
	}
	a, err := analyseAudit(m.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	// The probe's own locks are in the log too.
	if got := a.acquired - a.acquiredBy[probe]; wantAcquired >= 0 && got != wantAcquired {
		t.Errorf("audit log: %d acquired events (besides the probe's), want %d", got, wantAcquired)
	}
	for i, v := range a.violations {
		if i < 10 {
			t.Errorf("audit log: %s", v)
		}
	}
	leaks := a.leaks()
	for i, l := range leaks {
		if i < 10 {
			t.Errorf("audit log: %s", l)
		}
	}
	for i, l := range append(a.pieces, a.unmatched()...) {
		if i < 10 {
			t.Errorf("audit log: %s", l)
		}
	}
	t.Logf("audit log: %d events, %d acquired, %d released, %d violations, %d left open", a.events, a.acquired, a.released, len(a.violations), len(leaks))
}

// ---- many lock files -----------------------------------------------------------

// mkfilesMain creates LOCKFS_REL_PREFIX + N for N in [FROM, TO) in
// LOCKFS_REL_DIR, locks each briefly (classic, OFD and flock in turn)
// and closes it. It prints "PROGRESS n" every 10,000 files and "DONE n".
func mkfilesMain() int {
	dir, prefix := os.Getenv("LOCKFS_REL_DIR"), os.Getenv("LOCKFS_REL_PREFIX")
	from, to := relEnvInt("LOCKFS_REL_FROM", 0), relEnvInt("LOCKFS_REL_TO", 0)
	for i := from; i < to; i++ {
		fd, err := unix.Open(filepath.Join(dir, fmt.Sprintf("%s%06d", prefix, i)), unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
		if err != nil {
			fmt.Printf("FAIL create #%d: %v\n", i, err)
			return 3
		}
		if err := relCycleLock(fd, i%3, true); err != nil {
			fmt.Printf("FAIL lock #%d: %v\n", i, err)
			return 3
		}
		if err := unix.Close(fd); err != nil {
			fmt.Printf("FAIL close #%d: %v\n", i, err)
			return 3
		}
		if (i-from+1)%10000 == 0 {
			fmt.Printf("PROGRESS %d\n", i-from+1)
		}
	}
	fmt.Printf("DONE %d\n", to-from)
	return 0
}

// relCycleLock takes a whole-file write lock of kind 0 (classic fcntl), 1
// (OFD) or 2 (flock), waiting for it, and then unlocks it when unlock is
// set (else the close that follows releases it).
func relCycleLock(fd, kind int, unlock bool) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	var err error
	switch kind {
	case 0:
		if err = unix.FcntlFlock(uintptr(fd), unix.F_SETLKW, &lk); err == nil && unlock {
			lk.Type = unix.F_UNLCK
			err = unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &lk)
		}
	case 1:
		if err = unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLKW, &lk); err == nil && unlock {
			lk.Type = unix.F_UNLCK
			err = unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk)
		}
	default:
		if err = unix.Flock(fd, unix.LOCK_EX); err == nil && unlock {
			err = unix.Flock(fd, unix.LOCK_UN)
		}
	}
	return err
}

// TestLimitsManyFiles creates LOCKFS_FILES (default 20,000 in CI; the
// issue's figure, 100,000, with LOCKFS_FILES=100000) lock files in one
// directory through the mount, locking each briefly, then lists and
// probes them.
func TestLimitsManyFiles(t *testing.T) {
	total := relEnvInt("LOCKFS_FILES", 20000)
	if testing.Short() && os.Getenv("LOCKFS_FILES") == "" {
		total = 5000
	}
	const procs = 2
	m := mountLockfs(t)
	memStart, _ := relReadProcMem(m.Proc.Pid)
	start := time.Now()
	var ws []*relProc
	for i := 0; i < procs; i++ {
		ws = append(ws, startRel(t, "mkfiles", []string{
			"LOCKFS_REL_DIR=" + m.Dir, "LOCKFS_REL_PREFIX=lock-",
			"LOCKFS_REL_FROM=" + strconv.Itoa(i*total/procs), "LOCKFS_REL_TO=" + strconv.Itoa((i+1)*total/procs),
		}, nil))
	}
	for _, w := range ws {
		w.expect(t, "DONE", 10*time.Minute)
		w.finish(t, mustFinishWithin)
	}
	created := time.Since(start)
	mem, _ := relReadProcMem(m.Proc.Pid)
	t.Logf("%d lock files created and locked in %v (%.0f/s); lockfs %v (before: %v)",
		total, created.Round(time.Millisecond), float64(total)/created.Seconds(), mem, memStart)

	start = time.Now()
	names := relFilesIn(t, m.Dir)
	t.Logf("readdir of %d entries: %v", len(names), time.Since(start).Round(time.Millisecond))
	if len(names) != total {
		t.Fatalf("readdir lists %d files, want %d", len(names), total)
	}
	// Probe a sample of them for leftovers (all of them with the full
	// size would take long, and the audit log covers the rest).
	rng := rand.New(rand.NewSource(1))
	rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	relCheckEmpty(t, m, names[:min(len(names), 2000)], total)
}

// ---- many open/lock/unlock/close cycles ------------------------------------

// cyclesMain runs LOCKFS_REL_N open/lock/unlock/close cycles on
// LOCKFS_REL_FILES files of LOCKFS_REL_DIR, kinds in turn, unlocking
// explicitly every other time. It prints "PROGRESS n" every tenth of the
// run and "DONE n".
func cyclesMain() int {
	dir := os.Getenv("LOCKFS_REL_DIR")
	n, files := relEnvInt("LOCKFS_REL_N", 1000), relEnvInt("LOCKFS_REL_FILES", 10)
	rng := rand.New(rand.NewSource(int64(relEnvInt("LOCKFS_REL_SEED", 1))))
	for i := 0; i < n; i++ {
		name := filepath.Join(dir, relCycleName(rng.Intn(files)))
		fd, err := unix.Open(name, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			fmt.Printf("FAIL open: %v\n", err)
			return 3
		}
		if err := relCycleLock(fd, i%3, i%2 == 0); err != nil {
			fmt.Printf("FAIL lock: %v\n", err)
			return 3
		}
		if err := unix.Close(fd); err != nil {
			fmt.Printf("FAIL close: %v\n", err)
			return 3
		}
		if (i+1)%(max(n/10, 1)) == 0 {
			fmt.Printf("PROGRESS %d\n", i+1)
		}
	}
	fmt.Printf("DONE %d\n", n)
	return 0
}

func relCycleName(i int) string { return fmt.Sprintf("cycle-%02d", i) }

// TestLimitsLockCycles runs LOCKFS_CYCLES (default 40,000 in CI; the
// issue's figure, 1,000,000, with LOCKFS_CYCLES=1000000) open/lock/unlock/close cycles from two
// processes over a few files: every cycle brings a new OFD and flock
// owner and a recycled file handle, so any per-owner or per-handle state
// the engine kept would pile up. At the end nothing may be left, and
// lockfs's RSS must not have grown with the number of cycles.
func TestLimitsLockCycles(t *testing.T) {
	total := relEnvInt("LOCKFS_CYCLES", 40000)
	if testing.Short() && os.Getenv("LOCKFS_CYCLES") == "" {
		total = 6000
	}
	const procs, files = 2, 8
	m, metricsAddr := relMountWithMetrics(t)
	var names []string
	for i := 0; i < files; i++ {
		names = append(names, relCycleName(i))
		if err := os.WriteFile(filepath.Join(m.Dir, names[i]), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	var ws []*relProc
	for i := 0; i < procs; i++ {
		ws = append(ws, startRel(t, "cycles", []string{
			"LOCKFS_REL_DIR=" + m.Dir, "LOCKFS_REL_N=" + strconv.Itoa(total/procs),
			"LOCKFS_REL_FILES=" + strconv.Itoa(files), "LOCKFS_REL_SEED=" + strconv.Itoa(i+1),
		}, nil))
	}
	// RSS after the first tenth (the heap has grown to its working size)
	// and at the end: state kept per cycle would show as growth.
	var early relProcMem
	for _, w := range ws {
		w.expect(t, "PROGRESS", 10*time.Minute)
	}
	early, _ = relReadProcMem(m.Proc.Pid)
	for _, w := range ws {
		w.expect(t, "DONE", 60*time.Minute)
		w.finish(t, mustFinishWithin)
	}
	took := time.Since(start)
	late, _ := relReadProcMem(m.Proc.Pid)
	t.Logf("%d open/lock/unlock/close cycles in %v (%.0f/s); lockfs after 10%%: %v; at the end: %v",
		total, took.Round(time.Millisecond), float64(total)/took.Seconds(), early, late)
	// Per-cycle state of even 100 bytes would be 90 MB over 1,000,000
	// cycles; the working set itself does not grow with the count.
	if growth := late.RSSKiB - early.RSSKiB; growth > 32*1024 {
		t.Errorf("lockfs RSS grew by %.1f MiB between 10%% and 100%% of the cycles", float64(growth)/1024)
	}
	relCheckEmpty(t, m, names, total)
	relCheckMetricsEmpty(t, metricsAddr)
}
