package integration

// lockfs itself dies (issue 5, item 2): kill -9 of the daemon while
// locks are held and waited for.
//
// What the kernel does then (Linux 6.18, observed here): closing
// /dev/fuse aborts the connection. Requests in flight, such as a blocked
// F_SETLKW or flock, return ECONNABORTED; every later operation on the
// mount (lock, unlock, close, open, stat) returns ENOTCONN ("Transport
// endpoint is not connected") at once. Nobody hangs and nothing outside
// the mount is touched. The locks are gone with the process that served
// them: a holder keeps no lock, and learns it at its next call on the
// file. The stale mount stays until it is unmounted; while a process
// still has a file of it open, `fusermount3 -u` refuses (EBUSY) and
// `fusermount3 -u -z` (lazy) detaches it. A new lockfs mounted there
// starts empty.
//
// The harness's mountLockfs treats a daemon that died as a failure, so
// these tests start lockfs themselves (startOwnLockfs).

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// crashAnswerWithin bounds how long anything may take to fail once
// lockfs is dead.
const crashAnswerWithin = 2 * time.Second

type ownMountOpts struct {
	dir     string   // mount point; default: a new directory
	logPath string   // default: a new file beside it
	umask   string   // octal umask for the daemon; default: the test's
	extra   []string // more flags before the mount point
	mayFail bool     // the daemon may exit before mounting
	// early returns as soon as the kernel lists the mount, before
	// lockfs has finished starting (by default startOwnLockfs waits for
	// its "mounted" log line).
	early bool
}

// ownMount is a lockfs daemon the test started and may kill.
type ownMount struct {
	Dir, LogPath string
	Proc         *os.Process
	mountID      int
	errPath      string
	exited       chan struct{}
	state        *os.ProcessState
}

// startOwnLockfs starts `lockfs mount --foreground` and waits until a
// new fuse.lockfs mount appears at the mount point. t.Cleanup stops it
// (SIGTERM) if it still runs and detaches its mount if it is still
// there.
func startOwnLockfs(t *testing.T, o ownMountOpts) *ownMount {
	t.Helper()
	requireFUSE(t)
	if lockfsBuildErr != nil {
		t.Fatalf("lockfs binary: %v", lockfsBuildErr)
	}
	tmp := realDir(t, t.TempDir())
	om := &ownMount{Dir: o.dir, LogPath: o.logPath, errPath: filepath.Join(tmp, "lockfs.stderr"), exited: make(chan struct{})}
	if om.Dir == "" {
		om.Dir = filepath.Join(tmp, "mnt")
	}
	if om.LogPath == "" {
		om.LogPath = filepath.Join(tmp, "lockfs.log")
	}
	stderr, err := os.Create(om.errPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	args := append([]string{"mount", "--foreground", "--log-file", om.LogPath, "--log-format", "json"}, o.extra...)
	args = append(args, om.Dir)
	cmd := exec.Command(lockfsBin, args...)
	if o.umask != "" {
		cmd = exec.Command("/bin/sh", append([]string{"-c", `umask ` + o.umask + ` && exec "$0" "$@"`, lockfsBin}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	before, _ := relMountIDAt(om.Dir)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start lockfs: %v", err)
	}
	om.Proc = cmd.Process
	go func() {
		cmd.Wait()
		om.state = cmd.ProcessState
		close(om.exited)
	}()
	t.Cleanup(func() { om.cleanup(t) })
	poll := 10 * time.Millisecond
	if o.early {
		poll = 100 * time.Microsecond
	}
	for deadline := time.Now().Add(mountTimeout); ; time.Sleep(poll) {
		if id, fstype := relMountIDAt(om.Dir); id != 0 && id != before {
			if fstype != "fuse.lockfs" {
				t.Fatalf("%s mounted with type %q", om.Dir, fstype)
			}
			om.mountID = id
			if !o.early {
				om.waitLogged(t, "mounted")
			}
			return om
		}
		select {
		case <-om.exited:
			if o.mayFail {
				return om
			}
			t.Fatalf("lockfs exited before mounting (%v):\n%s", om.state, om.stderr())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("lockfs not mounted at %s after %v:\n%s", om.Dir, mountTimeout, om.stderr())
		}
	}
}

// waitLogged waits until the daemon's log has an event line.
func (om *ownMount) waitLogged(t *testing.T, event string) {
	t.Helper()
	for deadline := time.Now().Add(mountTimeout); ; time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(om.LogPath)
		if strings.Contains(string(b), `"event":"`+event+`"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q line in the lockfs log after %v:\n%s\n%s", event, mountTimeout, b, om.stderr())
		}
	}
}

func (om *ownMount) stderr() string {
	b, _ := os.ReadFile(om.errPath)
	return string(b)
}

func (om *ownMount) running() bool {
	select {
	case <-om.exited:
		return false
	default:
		return true
	}
}

// stop unmounts with SIGTERM and requires a clean exit.
func (om *ownMount) stop(t *testing.T) {
	t.Helper()
	if !om.running() {
		return
	}
	om.Proc.Signal(syscall.SIGTERM)
	select {
	case <-om.exited:
		if !om.state.Success() {
			t.Errorf("lockfs exited with %v after SIGTERM:\n%s", om.state, om.stderr())
		}
	case <-time.After(stopTimeout):
		t.Errorf("lockfs still running %v after SIGTERM", stopTimeout)
	}
}

// cleanup stops the daemon and removes its mount, whatever state they
// are in. A daemon that cannot even be killed (a thread of it waits in
// the kernel for an answer from its own, dead, FUSE connection) is freed
// by aborting the connection: umount -f.
func (om *ownMount) cleanup(t *testing.T) {
	if om.running() {
		om.stop(t)
	}
	if om.running() {
		om.Proc.Kill()
		select {
		case <-om.exited:
		case <-time.After(stopTimeout):
			t.Errorf("lockfs (pid %d) not reaped %v after SIGKILL; aborting its FUSE connection:\n%s", om.Proc.Pid, stopTimeout, relProcDiag(om.Proc.Pid))
			exec.Command("umount", "-f", om.Dir).Run()
			select {
			case <-om.exited:
			case <-time.After(stopTimeout):
				t.Errorf("lockfs (pid %d) still not reaped after its connection was aborted", om.Proc.Pid)
			}
		}
	}
	if id, _ := relMountIDAt(om.Dir); id != 0 && id == om.mountID {
		exec.Command("fusermount3", "-u", "-z", om.Dir).Run()
		if id, _ := relMountIDAt(om.Dir); id == om.mountID {
			exec.Command("umount", "-l", om.Dir).Run()
		}
	}
}

// relMountIDAt returns the id and type of the mount at dir (the top one),
// or 0.
func relMountIDAt(dir string) (int, string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0, ""
	}
	id, fstype := 0, ""
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(pre)
		if !ok || len(f) < 5 || unescapeMountinfo(f[4]) != dir {
			continue
		}
		id, _ = strconv.Atoi(f[0])
		if p := strings.Fields(post); len(p) > 0 {
			fstype = p[0]
		}
	}
	return id, fstype
}

// relStatWithin stats path in a goroutine, failing the test if it does not
// return within d: a dead server must never make callers hang.
func relStatWithin(t *testing.T, path string, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		var st unix.Stat_t
		done <- unix.Stat(path, &st)
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("stat %s still blocked after %v", path, d)
	}
	return nil
}

// TestLockfsKilled kills lockfs with SIGKILL while classic, OFD and
// flock locks are held and waited for, and a poller polls; then mounts a
// new lockfs at the same place, the manual way (fusermount3 -u -z) and,
// when the command has it, with --recover.
func TestLockfsKilled(t *testing.T) {
	om := startOwnLockfs(t, ownMountOpts{})
	tmp := mountTmpfs(t)

	// A bystander on another file system: nothing the crash may touch.
	by := startActor(t, "bystander", tmp, "")
	bfd := relMustReply(t, by, "open other rw", "OK ")
	relMustReply(t, by, "setlk "+bfd+" WR SET 0 0", "OK")

	type party struct {
		a    *actor
		fd   string
		wait *call
	}
	open := func(name, file string) party {
		a := startActor(t, name, om.Dir, "")
		return party{a: a, fd: relMustReply(t, a, "open "+file+" rw", "OK ")}
	}
	posixH, flockH, ofdH := open("posix-holder", "a"), open("flock-holder", "b"), open("ofd-holder", "c")
	relMustReply(t, posixH.a, "setlk "+posixH.fd+" WR SET 0 0", "OK")
	relMustReply(t, flockH.a, "flock "+flockH.fd+" EX", "OK")
	relMustReply(t, ofdH.a, "ofd_setlk "+ofdH.fd+" WR SET 0 0", "OK")
	posixW, flockW, ofdW := open("posix-waiter", "a"), open("flock-waiter", "b"), open("ofd-waiter", "c")
	posixW.wait = posixW.a.start("setlkw " + posixW.fd + " WR SET 0 0")
	flockW.wait = flockW.a.start("flock " + flockW.fd + " EX")
	ofdW.wait = ofdW.a.start("ofd_setlkw " + ofdW.fd + " WR SET 0 0")
	poller := open("poller", "a")
	relMustReply(t, poller.a, "setlk "+poller.fd+" WR SET 0 0", "ERR EAGAIN")
	keeper := open("keeper", "k") // keeps a file of the dead mount open
	waiters := []party{posixW, flockW, ofdW}
	for _, w := range waiters {
		deadline := time.Now().Add(mustFinishWithin)
		for !inLockCall(w.a.pid, w.wait.threadID()) {
			if w.wait.isDone() || time.Now().After(deadline) {
				t.Fatalf("%s: not blocked in the kernel (answer %q)", w.a.name, w.wait.reply)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}

	// kill -9.
	killed := time.Now()
	if err := om.Proc.Kill(); err != nil {
		t.Fatal(err)
	}
	<-om.exited

	// Blocked waiters get an error, promptly.
	for _, w := range waiters {
		r, ok := w.wait.wait(crashAnswerWithin)
		switch {
		case !ok:
			t.Errorf("%s: still blocked %v after lockfs died (state %s)", w.a.name, crashAnswerWithin, procState(w.a.pid))
		case r != "ERR ECONNABORTED" && r != "ERR ENOTCONN":
			t.Errorf("%s: %s after lockfs died, want ERR ECONNABORTED (or ENOTCONN)", w.a.name, r)
		default:
			t.Logf("%s: %s, %v after the kill", w.a.name, r, time.Since(killed).Round(time.Millisecond))
		}
	}
	// Holders learn it at their next call; closing and exiting work.
	for _, p := range []party{posixH, flockH, ofdH, poller} {
		for _, cmd := range []string{"getlk " + p.fd + " WR SET 0 0", "setlk " + p.fd + " UN SET 0 0", "open x rw"} {
			r, ok := p.a.start(cmd).wait(crashAnswerWithin)
			if !ok || r != "ERR ENOTCONN" {
				t.Errorf("%s: %s => %q (answered %v), want ERR ENOTCONN at once", p.a.name, cmd, r, ok)
			}
		}
	}
	for _, p := range append([]party{posixH, flockH, ofdH, poller}, waiters...) {
		if r, ok := p.a.start("close " + p.fd).wait(crashAnswerWithin); !ok {
			t.Errorf("%s: close still blocked %v after lockfs died", p.a.name, crashAnswerWithin)
		} else {
			t.Logf("%s: close => %s", p.a.name, r)
		}
		p.a.start("exit")
		select {
		case <-p.a.exited:
		case <-time.After(crashAnswerWithin):
			t.Errorf("%s did not exit within %v (state %s)", p.a.name, crashAnswerWithin, procState(p.a.pid))
		}
	}
	if err := relStatWithin(t, om.Dir, crashAnswerWithin); !errors.Is(err, unix.ENOTCONN) {
		t.Errorf("stat of the dead mount: %v, want ENOTCONN", err)
	}
	if _, err := os.ReadDir(filepath.Dir(om.Dir)); err != nil {
		t.Errorf("listing the mount's parent: %v", err)
	}

	// Nothing else on the machine noticed.
	other := startActor(t, "other", tmp, "")
	ofd := relMustReply(t, other, "open other rw", "OK ")
	relMustReply(t, other, "setlk "+ofd+" WR SET 0 0", "ERR EAGAIN")
	relMustReply(t, by, "setlk "+bfd+" UN SET 0 0", "OK")
	relMustReply(t, other, "setlk "+ofd+" WR SET 0 0", "OK")

	// The audit trail up to the crash is intact: every line parses, and
	// it shows what was held and waited for.
	a, err := analyseAudit(om.LogPath)
	if err != nil {
		t.Fatalf("audit log after kill -9: %v", err)
	}
	evs := relReadEvents(t, om.LogPath)
	for _, want := range []struct{ event, lock, kind string }{
		{"acquired", "a", "posix"}, {"acquired", "b", "flock"}, {"acquired", "c", "posix"},
		{"waiting", "a", "posix"}, {"waiting", "b", "flock"}, {"waiting", "c", "posix"},
	} {
		found := false
		for _, e := range evs {
			if e.Event == want.event && e.Lock == want.lock && (e.Kind == want.kind || want.kind == "posix" && e.Kind == "ofd") {
				found = true
			}
		}
		if !found {
			t.Errorf("audit log lacks %s %s (%s)", want.event, want.lock, want.kind)
		}
	}
	t.Logf("audit log before the crash: %d events, %d violations", a.events, len(a.violations))

	// Remount, the manual way: the stale mount is busy while the keeper
	// has a file open; a lazy unmount detaches it.
	err = exec.Command("fusermount3", "-u", om.Dir).Run()
	t.Logf("fusermount3 -u with a file of the dead mount open: %v", err)
	if out, err := exec.Command("fusermount3", "-u", "-z", om.Dir).CombinedOutput(); err != nil {
		t.Fatalf("fusermount3 -u -z: %v\n%s", err, out)
	}
	om2 := startOwnLockfs(t, ownMountOpts{dir: om.Dir})
	relCheckFreshMount(t, om2)
	if r, ok := keeper.a.start("getlk " + keeper.fd + " WR SET 0 0").wait(crashAnswerWithin); !ok || r != "ERR ENOTCONN" {
		t.Errorf("keeper's descriptor of the dead mount: %q, want ERR ENOTCONN", r)
	}

	// And with --recover, once the command has it: kill the new one
	// too, keep a file of it open, and mount over the stale mount.
	if !relSupportsFlag(t, "--recover") {
		t.Logf("lockfs mount has no --recover yet: remounting over a stale mount not tested")
		return
	}
	keeper2 := startActor(t, "keeper2", om2.Dir, "")
	kfd := relMustReply(t, keeper2, "open k2 rw", "OK ")
	relMustReply(t, keeper2, "setlk "+kfd+" WR SET 0 0", "OK")
	om2.Proc.Kill()
	<-om2.exited
	om3 := startOwnLockfs(t, ownMountOpts{dir: om.Dir, extra: []string{"--recover"}})
	relCheckFreshMount(t, om3)
	if r, ok := keeper2.start("setlk " + kfd + " UN SET 0 0").wait(crashAnswerWithin); !ok || r != "ERR ENOTCONN" {
		t.Errorf("keeper2's descriptor of the dead mount: %q, want ERR ENOTCONN", r)
	}
}

// relCheckFreshMount: a new lockfs at a dead one's place is empty and
// serves locks.
func relCheckFreshMount(t *testing.T, om *ownMount) {
	t.Helper()
	ents, err := os.ReadDir(om.Dir)
	if err != nil {
		t.Fatalf("readdir of the new mount: %v", err)
	}
	if len(ents) != 0 {
		t.Errorf("the new mount is not empty: %v", ents)
	}
	if rows, ok, err := relViewRows(om.Dir); err != nil {
		t.Error(err)
	} else if ok && len(rows) > 0 {
		t.Errorf("the new mount lists locks: %v", rows)
	}
	a := startActor(t, "after", om.Dir, "")
	b := startActor(t, "after2", om.Dir, "")
	fa := relMustReply(t, a, "open a rw", "OK ")
	fb := relMustReply(t, b, "open a rw", "OK ")
	relMustReply(t, a, "setlk "+fa+" WR SET 0 0", "OK")
	relMustReply(t, b, "setlk "+fb+" WR SET 0 0", "ERR EAGAIN")
	relMustReply(t, b, "flock "+fb+" EX NB", "OK")
	relMustReply(t, a, "close "+fa, "OK")
	relMustReply(t, b, "setlk "+fb+" WR SET 0 0", "OK")
	relMustReply(t, b, "close "+fb, "OK")
}

// relReadEvents parses an audit log like Mount.Events.
func relReadEvents(t *testing.T, path string) []Event {
	m := &Mount{LogPath: path}
	return m.Events(t)
}

// TestLockfsKilledMidSoak: the daemon dies while many processes lock
// and wait on many files; every one of them must get an error or finish
// promptly, none may hang.
func TestLockfsKilledMidSoak(t *testing.T) {
	om := startOwnLockfs(t, ownMountOpts{})
	const procs, files = 6, 8
	recDir := t.TempDir()
	var ws []*relProc
	for i := 0; i < procs; i++ {
		ws = append(ws, startRel(t, "soak", []string{
			"LOCKFS_REL_DIR=" + om.Dir, "LOCKFS_REL_REC=" + filepath.Join(recDir, fmt.Sprintf("w%d", i)),
			"LOCKFS_REL_FILES=" + strconv.Itoa(files), "LOCKFS_REL_SEED=" + strconv.Itoa(i+1),
		}, nil))
	}
	for _, w := range ws {
		w.expect(t, "READY", mustFinishWithin)
	}
	// Kill lockfs the moment a worker is seen inside a lock call.
	blocked := 0
	for deadline := time.Now().Add(10 * time.Second); blocked == 0 && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		for _, w := range ws {
			if inLockCall(w.pid, 0) {
				blocked++
			}
		}
	}
	if blocked == 0 {
		t.Fatalf("no worker seen in a lock call within 10s")
	}
	om.Proc.Kill()
	<-om.exited
	// Each worker fails its next call (it reports FAIL and exits 3):
	// nobody may be left blocked.
	for _, w := range ws {
		select {
		case <-w.exited:
			if code := w.state.ExitCode(); code != 3 {
				t.Errorf("worker pid %d: %v, want exit status 3 (a lock call failed):\n%s", w.pid, w.state, w.stderr)
			}
		case <-time.After(crashAnswerWithin):
			t.Errorf("worker pid %d still running %v after lockfs died: %s", w.pid, crashAnswerWithin, relProcDiag(w.pid))
		}
	}
	t.Logf("%d workers, %d blocked in a lock call at the kill: all ended", procs, blocked)
}

// TestLockfsSignalDuringStartup: SIGTERM (a Ctrl-C, a systemd stop)
// that reaches lockfs at any moment of its start-up must end with
// lockfs gone and no mount left, never with a stale mount or a daemon
// stuck in its own mount. The dangerous moment is when lockfs itself
// waits for an answer from its own mount: go-fuse opens a file there
// once the mount is up (its poll hack). A process killed then cannot
// exit: its thread waits for an answer that its dead server goroutines
// will never send (LOCK-SEMANTICS R9), so the signal must be handled,
// not take its default action. The test sends SIGTERM at that moment
// (seen in /proc as a lockfs thread in request_wait_answer), and at a
// few other moments of the start-up.
func TestLockfsSignalDuringStartup(t *testing.T) {
	requireFUSE(t)
	if lockfsBuildErr != nil {
		t.Fatalf("lockfs binary: %v", lockfsBuildErr)
	}
	caught := 0
	for i := 0; i < relEnvInt("LOCKFS_STARTUP_SIGNALS", 8); i++ {
		om := &ownMount{Dir: filepath.Join(realDir(t, t.TempDir()), "mnt"), exited: make(chan struct{})}
		om.LogPath = om.Dir + ".log"
		om.errPath = om.Dir + ".stderr"
		cmd := exec.Command(lockfsBin, "mount", "--foreground", "--log-file", om.LogPath, "--log-format", "json", om.Dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		om.Proc = cmd.Process
		go func() {
			cmd.Wait()
			om.state = cmd.ProcessState
			close(om.exited)
		}()
		t.Cleanup(func() {
			if id, _ := relMountIDAt(om.Dir); id != 0 {
				om.mountID = id
			}
			om.cleanup(t)
		})
		moment := "in its own mount"
		if i%2 == 1 {
			moment = "once the mount appeared"
		}
	wait:
		for deadline := time.Now().Add(mountTimeout); time.Now().Before(deadline); {
			if i%2 == 1 {
				if id, _ := relMountIDAt(om.Dir); id != 0 {
					break
				}
				time.Sleep(100 * time.Microsecond)
				continue
			}
			if relWaitsOnFUSE(om.Proc.Pid) {
				caught++
				break wait
			}
			select {
			case <-om.exited:
				t.Fatalf("lockfs exited before mounting (%v)", om.state)
			default:
			}
			if b, _ := os.ReadFile(om.LogPath); strings.Contains(string(b), `"event":"mounted"`) {
				moment = "after it had started (its own mount request not seen)"
				break
			}
		}
		om.Proc.Signal(syscall.SIGTERM)
		select {
		case <-om.exited:
		case <-time.After(stopTimeout):
			t.Fatalf("SIGTERM %s: lockfs still running %v later:\n%s", moment, stopTimeout, relProcDiag(om.Proc.Pid))
		}
		if id, fstype := relMountIDAt(om.Dir); id != 0 {
			t.Fatalf("SIGTERM %s: lockfs exited (%v) and left its mount (%s) behind", moment, om.state, fstype)
		}
	}
	t.Logf("SIGTERM reached lockfs %d times while it waited on its own mount", caught)
}

// relWaitsOnFUSE reports whether a thread of pid waits for a FUSE answer.
func relWaitsOnFUSE(pid int) bool {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false
	}
	for _, e := range ents {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/wchan", pid, e.Name()))
		if string(b) == "request_wait_answer" {
			return true
		}
	}
	return false
}

// TestLockfsKilledKeepsAnsweredEvents: an audit event is never lost, also
// when lockfs dies (issue 5): once a lock call has been answered, its
// event must be in the log even if lockfs is killed the next moment. A
// writer that batches events after answering loses them. lockfs hands
// the lines to its log spool's keeper process, which must be up before
// the kill and must write them and exit after it.
func TestLockfsKilledKeepsAnsweredEvents(t *testing.T) {
	const rounds = 3
	lost := 0
	for i := 0; i < rounds; i++ {
		om := startOwnLockfs(t, ownMountOpts{})
		keeper := logKeeperOf(t, om.Proc.Pid)
		a := startActor(t, fmt.Sprintf("locker%d", i), om.Dir, "")
		fd := relMustReply(t, a, "open answered rw", "OK ")
		relMustReply(t, a, "setlk "+fd+" WR SET 0 0", "OK")
		om.Proc.Kill() // right after the answer
		<-om.exited
		waitProcessGone(t, keeper, "lockfs's log keeper after lockfs was killed")
		checkLogKeeper(t, om.LogPath)
		found := false
		for _, e := range relReadEvents(t, om.LogPath) {
			if e.Event == "acquired" && e.Lock == "answered" && e.Pid == a.pid {
				found = true
			}
		}
		if !found {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("the acquired event of an answered lock call was missing from the log after kill -9 in %d of %d rounds", lost, rounds)
	}
}

// logKeeperOf returns the pid of lockfs's log keeper: the child of
// lockfs (pid) whose command line starts with lockfs-log-keeper.
func logKeeperOf(t *testing.T, pid int) int {
	t.Helper()
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(b)) {
			child, _ := strconv.Atoi(f)
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", child))
			if strings.HasPrefix(string(cmdline), "lockfs-log-keeper\x00") {
				return child
			}
		}
	}
	t.Fatalf("lockfs (pid %d) has no lockfs-log-keeper child", pid)
	return 0
}

// waitProcessGone waits until process pid has exited (a zombie counts:
// it is not our child to reap).
func waitProcessGone(t *testing.T, pid int, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && len(b) > i+2 && (b[i+2] == 'Z' || b[i+2] == 'X') {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still running after 10 s", what, pid)
		}
	}
}
