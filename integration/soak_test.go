package integration

// The soak and fault test (issue 5, item 1).
//
// N worker processes (default 8) lock M files (default 50) on a lockfs
// mount with a random mix of classic fcntl and lockf ranges, OFD locks
// and flock, blocking and non-blocking (the fasteners pattern: retry
// F_SETLK, give up and close), read and write, atomic POSIX conversions
// and non-atomic flock conversions, while a fault injector SIGKILLs and
// SIGSTOP/SIGCONTs random workers, preferring those blocked in a lock
// call. Killed workers are replaced.
//
// Every worker records, outside the mount, when each of its critical
// sections began (after the lock call returned) and ended (before the
// unlock or close that ends it), with CLOCK_MONOTONIC timestamps. The
// recorded interval is therefore inside the real hold, and any two
// recorded sections of different workers that overlap in time, bytes
// and space with an incompatible mode are a mutual-exclusion violation
// (no false positives). A SIGKILLed worker's open section is taken to
// end when the test sent SIGKILL: it still held the lock then (it had
// not written the end marker, which precedes every unlock), and the real
// release comes later (its exit FLUSH, or the asynchronous RELEASE for
// OFD and flock locks), so the checker never claims more than was held.
//
// At the end the test checks: no violation among the recorded sections;
// no violation in lockfs's own audit log either (replayed as a second,
// independent checker); every acquired matched by exactly one released,
// every waiting resolved, and per process exactly as many acquired
// events as the process recorded acquisitions (one more at most for a
// process killed with a grant in flight): no event lost; every lock file
// free for classic, OFD and flock locks (nothing leaked); no worker stuck
// (every wait bounded, SIGKILLed workers reaped promptly, every worker
// stops when told); lockfs's own listing (.lockfs/locks.json) empty; and
// lockfs's RSS back near where it started.
//
// The default run is short enough for CI. Long runs:
//
//	LOCKFS_SOAK=10m            duration (default 30s)
//	LOCKFS_SOAK_PROCS=8        concurrent workers
//	LOCKFS_SOAK_FILES=50       lock files
//	LOCKFS_SOAK_SEED=N         seed of the test's and workers' choices
//	LOCKFS_SOAK_REPORT=FILE    write the figures as JSON
//
//	LOCKFS_SOAK=10m go test ./integration -run TestSoak -v -timeout 30m

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// soakMaxWait bounds every lock wait a worker makes. Holds last a
	// few milliseconds and a stopped holder at most soakMaxStop, so a
	// wait anywhere near this is a hang.
	soakMaxWait = 20 * time.Second
	// soakStall fails the run when a running worker records nothing for
	// this long.
	soakStall = 30 * time.Second
	// soakReapWithin bounds SIGKILL → reaped for every killed worker
	// (LOCK-SEMANTICS R9: an interrupted wait ends; mustDieWithin with
	// room for a loaded machine). A worker found half-way through the
	// kernel's exit, in no FUSE request, has had every call on the mount
	// answered: what remains (freeing its memory) is the kernel's work,
	// which a loaded VM has been seen to stretch past 2 s, so such a
	// death is held to soakMaxWait instead.
	soakReapWithin = 2 * time.Second
	// soakMaxStop is the longest SIGSTOP the injector imposes.
	soakMaxStop = 250 * time.Millisecond
	// soakGoroutineSlack: lockfs may keep a few more goroutines than at
	// the start (go-fuse keeps up to GOMAXPROCS+1 idle readers).
	soakGoroutineSlack = 4
	// soakOffsetMax is the kernel's OFFSET_MAX: "to end of file".
	soakOffsetMax = uint64(1<<63 - 1)
)

// ---- the worker process --------------------------------------------------

// soakLock is one lock a worker holds (or is taking).
type soakLock struct {
	fd     int
	file   int
	kind   byte  // c: classic fcntl, l: lockf, o: OFD, f: flock
	mode   int16 // unix.F_RDLCK or unix.F_WRLCK
	start  uint64
	end    uint64 // inclusive; soakOffsetMax: to end of file
	rdonly bool
	sec    int // the open section, 0 when nothing is held
}

type soakWorker struct {
	dir      string
	nfiles   int
	rng      *rand.Rand
	rec      int // record file, O_APPEND
	stop     <-chan struct{}
	sec      int
	wid      int
	ops      int // lock calls and closes
	sections int
}

// soakWorkerMain runs lock sections until stdin closes. Records (one
// write(2) each, so they survive SIGKILL):
//
//	B sec file space kind mode start end t   a section began (space P or F)
//	E sec t                                  a section ends
//	W wid t / w wid t errno                  a blocking call began / returned
//	C ops                                    lock calls made so far
func soakWorkerMain() int {
	rec, err := unix.Open(os.Getenv("LOCKFS_REL_REC"), unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak worker:", err)
		return 2
	}
	w := &soakWorker{
		dir:    os.Getenv("LOCKFS_REL_DIR"),
		nfiles: relEnvInt("LOCKFS_REL_FILES", 50),
		rng:    rand.New(rand.NewSource(int64(relEnvInt("LOCKFS_REL_SEED", 1)))),
		rec:    rec,
		stop:   relExitOnEOF(),
	}
	fmt.Println("READY")
	for {
		select {
		case <-w.stop:
			w.record("C %d", w.ops)
			return 0
		default:
		}
		w.section()
	}
}

func (w *soakWorker) record(format string, args ...any) {
	line := fmt.Sprintf(format, args...) + "\n"
	if _, err := unix.Write(w.rec, []byte(line)); err != nil {
		w.fatal("record: %v", err)
	}
}

func (w *soakWorker) fatal(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Println("FAIL " + msg)
	fmt.Fprintln(os.Stderr, "soak worker:", msg)
	os.Exit(3)
}

func (w *soakWorker) pause(max time.Duration) {
	if d := time.Duration(w.rng.Int63n(int64(max))); d > 50*time.Microsecond {
		time.Sleep(d)
	}
}

// section takes one lock, sometimes a second on a later file and
// sometimes converts, then releases. Locks are taken in increasing file
// order and a process never waits on a file it already holds (POSIX
// upgrades are non-blocking), so no wait cycle, hence no undetectable
// deadlock, can form: every wait is bounded by holders' hold times.
//
// Two files in five go to a few hot files, and one hold in ten is long,
// so that waits, and faults hitting waiters, are common.
func (w *soakWorker) section() {
	f1 := w.rng.Intn(w.nfiles)
	if w.rng.Intn(5) < 2 {
		f1 = w.rng.Intn(min(w.nfiles-1, 4))
	}
	l1 := w.acquire(f1)
	if l1 != nil {
		if w.rng.Intn(10) == 0 {
			w.pause(20 * time.Millisecond)
		}
		w.pause(2 * time.Millisecond)
		if f1 < w.nfiles-1 && w.rng.Intn(10) < 3 {
			if l2 := w.acquire(f1 + 1 + w.rng.Intn(w.nfiles-f1-1)); l2 != nil {
				w.pause(2 * time.Millisecond)
				if w.rng.Intn(5) == 0 {
					w.convert(l2)
				}
				w.release(l2)
			}
		}
		if w.rng.Intn(5) == 0 {
			w.convert(l1)
			w.pause(time.Millisecond)
		}
		w.release(l1)
	}
	w.pause(2 * time.Millisecond)
	if w.sections++; w.sections%32 == 0 {
		w.record("C %d", w.ops)
	}
}

func (l *soakLock) length() int64 {
	if l.end == soakOffsetMax {
		return 0
	}
	return int64(l.end - l.start + 1)
}

// call makes one lock call for l with type typ (F_RDLCK, F_WRLCK or
// F_UNLCK).
func (w *soakWorker) call(l *soakLock, typ int16, block bool) error {
	w.ops++
	if l.kind == 'f' {
		how := map[int16]int{unix.F_RDLCK: unix.LOCK_SH, unix.F_WRLCK: unix.LOCK_EX, unix.F_UNLCK: unix.LOCK_UN}[typ]
		if !block {
			how |= unix.LOCK_NB
		}
		return unix.Flock(l.fd, how)
	}
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: int64(l.start), Len: l.length()}
	cmd := unix.F_SETLK
	switch {
	case l.kind == 'o' && block:
		cmd = unix.F_OFD_SETLKW
	case l.kind == 'o':
		cmd = unix.F_OFD_SETLK
	case block:
		cmd = unix.F_SETLKW
	}
	if l.kind == 'l' {
		// lockf(3) locks from the file position: SEEK_CUR, as glibc
		// sends it; the worker seeked to start when it opened.
		lk.Whence, lk.Start = 1, 0
	}
	return unix.FcntlFlock(uintptr(l.fd), cmd, &lk)
}

// blockingCall is call with block set, recorded as a wait.
func (w *soakWorker) blockingCall(l *soakLock, typ int16) error {
	w.wid++
	id := w.wid
	w.record("W %d %d", id, relMonoNow())
	err := w.call(l, typ, true)
	errno := 0
	if err != nil {
		errno = int(err.(syscall.Errno))
	}
	w.record("w %d %d %d", id, relMonoNow(), errno)
	return err
}

func (w *soakWorker) begin(l *soakLock, t int64) {
	w.sec++
	l.sec = w.sec
	space := "P"
	if l.kind == 'f' {
		space = "F"
	}
	w.record("B %d %d %s %c %d %d %d %d", l.sec, l.file, space, l.kind, l.mode, l.start, l.end, t)
}

func (w *soakWorker) end(l *soakLock, t int64) {
	w.record("E %d %d", l.sec, t)
	l.sec = 0
}

// acquire opens file and locks it, or returns nil after giving up
// (the non-blocking attempts all failed, or EDEADLK).
func (w *soakWorker) acquire(file int) *soakLock {
	l := &soakLock{file: file}
	switch r := w.rng.Intn(100); {
	case r < 30:
		l.kind = 'c'
	case r < 45:
		l.kind = 'l'
	case r < 70:
		l.kind = 'o'
	default:
		l.kind = 'f'
	}
	l.mode = unix.F_RDLCK
	if l.kind == 'l' || w.rng.Intn(2) == 0 {
		l.mode = unix.F_WRLCK
	}
	flags := unix.O_RDWR
	if l.mode == unix.F_RDLCK && w.rng.Intn(10) < 3 {
		flags, l.rdonly = unix.O_RDONLY, true
	}
	switch {
	case l.kind == 'f':
		l.start, l.end = 0, soakOffsetMax
	case l.kind != 'l' && w.rng.Intn(10) < 3:
		l.start, l.end = 0, soakOffsetMax
	default:
		l.start = uint64(w.rng.Intn(64))
		l.end = l.start + uint64(w.rng.Intn(32))
		if l.kind == 'l' && w.rng.Intn(2) == 0 {
			l.end = soakOffsetMax
		}
	}
	fd, err := unix.Open(filepath.Join(w.dir, soakName(file)), flags|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		w.fatal("open %s: %v", soakName(file), err)
	}
	l.fd = fd
	if l.kind == 'l' {
		if _, err := unix.Seek(fd, int64(l.start), 0); err != nil {
			w.fatal("seek: %v", err)
		}
	}
	if w.rng.Intn(2) == 0 {
		err := w.blockingCall(l, l.mode)
		switch {
		case err == nil:
		case errors.Is(err, unix.EDEADLK):
			// Should not happen with this workload; counted by the
			// test from the "w" record.
			w.close(l)
			return nil
		default:
			w.fatal("blocking %c lock %d..%d on %s: %v", l.kind, l.start, l.end, soakName(file), err)
		}
	} else {
		tries := 1 + w.rng.Intn(16)
		for i := 0; ; i++ {
			err := w.call(l, l.mode, false)
			if err == nil {
				break
			}
			if !errors.Is(err, unix.EAGAIN) {
				w.fatal("%c lock %d..%d on %s: %v", l.kind, l.start, l.end, soakName(file), err)
			}
			if i+1 == tries {
				w.close(l) // gave up, as fasteners does after its timeout
				return nil
			}
			w.pause(4 * time.Millisecond)
		}
	}
	w.begin(l, relMonoNow())
	return l
}

// convert changes l's mode. POSIX-space conversions are atomic (R14):
// an upgrade is tried without waiting (a blocking upgrade could close a
// wait cycle with an OFD owner, which nobody detects) and keeps the read
// lock when refused; a downgrade never waits. A flock conversion first
// drops the old lock (R27), so its section ends before the call, and a
// refused one leaves nothing held.
func (w *soakWorker) convert(l *soakLock) {
	if l.sec == 0 {
		return
	}
	to := int16(unix.F_RDLCK)
	if l.mode == unix.F_RDLCK {
		to = unix.F_WRLCK
	}
	if l.kind == 'f' {
		w.end(l, relMonoNow())
		var err error
		if w.rng.Intn(2) == 0 {
			err = w.blockingCall(l, to)
		} else {
			err = w.call(l, to, false)
		}
		switch {
		case err == nil:
			l.mode = to
			w.begin(l, relMonoNow())
		case errors.Is(err, unix.EAGAIN):
			// The old lock is gone too (R27).
		default:
			w.fatal("flock conversion: %v", err)
		}
		return
	}
	if to == unix.F_WRLCK {
		if l.rdonly {
			return
		}
		err := w.call(l, to, false)
		switch {
		case err == nil:
			// Held at least the read lock until now, the write lock
			// from now.
			t := relMonoNow()
			w.end(l, t)
			l.mode = to
			w.begin(l, t)
		case errors.Is(err, unix.EAGAIN):
			// Still holds the read lock.
		default:
			w.fatal("%c upgrade: %v", l.kind, err)
		}
		return
	}
	w.end(l, relMonoNow())
	if err := w.call(l, to, w.rng.Intn(2) == 0); err != nil {
		w.fatal("%c downgrade: %v", l.kind, err)
	}
	l.mode = to
	w.begin(l, relMonoNow())
}

// release ends l's section, then unlocks explicitly or just closes (the
// close releases classic locks at FLUSH, OFD and flock locks at
// RELEASE).
func (w *soakWorker) release(l *soakLock) {
	held := l.sec != 0
	if held {
		w.end(l, relMonoNow())
	}
	if held && w.rng.Intn(10) < 6 {
		if err := w.call(l, unix.F_UNLCK, l.kind == 'f' && w.rng.Intn(2) == 0); err != nil {
			w.fatal("%c unlock: %v", l.kind, err)
		}
	}
	w.close(l)
}

func (w *soakWorker) close(l *soakLock) {
	w.ops++ // a close is a FLUSH, and maybe a RELEASE
	if err := unix.Close(l.fd); err != nil {
		w.fatal("close: %v", err)
	}
}

func soakName(i int) string { return fmt.Sprintf("lock-%03d", i) }

// ---- the test --------------------------------------------------------------

type soakConfig struct {
	duration time.Duration
	procs    int
	files    int
	seed     int64
	report   string
}

func soakConfigFromEnv(t *testing.T) soakConfig {
	c := soakConfig{duration: 30 * time.Second, procs: 8, files: 50, seed: time.Now().UnixNano()}
	if v := os.Getenv("LOCKFS_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("LOCKFS_SOAK=%q: want a duration such as 10m", v)
		}
		c.duration = d
	}
	if testing.Short() && os.Getenv("LOCKFS_SOAK") == "" {
		c.duration = 10 * time.Second
	}
	c.procs = relEnvInt("LOCKFS_SOAK_PROCS", c.procs)
	c.files = relEnvInt("LOCKFS_SOAK_FILES", c.files)
	if v, err := strconv.ParseInt(os.Getenv("LOCKFS_SOAK_SEED"), 10, 64); err == nil {
		c.seed = v
	}
	c.report = os.Getenv("LOCKFS_SOAK_REPORT")
	if c.procs < 2 || c.files < 2 {
		t.Fatalf("LOCKFS_SOAK_PROCS and LOCKFS_SOAK_FILES must be at least 2")
	}
	return c
}

// soakProc is one worker the test started.
type soakProc struct {
	id      int
	p       *relProc
	recPath string
	killed  bool
	killAt  int64 // relMonoNow() just before SIGKILL
	// slowDeath describes where a killed worker was when it was still
	// not reaped after soakReapWithin/2, and exitingOutsideFUSE says it
	// was then in the kernel's exit path with no thread in FUSE; both
	// guarded by the test's mu.
	slowDeath          string
	exitingOutsideFUSE bool
}

// soakFault is one injected fault, classified afterwards from the
// target's records.
type soakFault struct {
	id   int
	kill bool
	at   int64
}

// SoakReport is the outcome of a run: the figures the README quotes.
type SoakReport struct {
	Duration          string  `json:"duration"`
	Seed              int64   `json:"seed"`
	Procs             int     `json:"procs"`
	Files             int     `json:"files"`
	WorkersStarted    int     `json:"workers_started"`
	LockCalls         int     `json:"lock_calls"`
	Sections          int     `json:"critical_sections"`
	BlockingWaits     int     `json:"blocking_waits"`
	MaxWaitS          float64 `json:"max_wait_s"`
	Deadlocks         int     `json:"edeadlk"`
	Kills             int     `json:"sigkills"`
	KillsHolding      int     `json:"sigkills_of_holders"`
	KillsWaiting      int     `json:"sigkills_of_blocked_waiters"`
	Stops             int     `json:"sigstops"`
	StopsWaiting      int     `json:"sigstops_of_blocked_waiters"`
	MaxReapS          float64 `json:"max_sigkill_to_exit_s"`
	SlowKernelExits   int     `json:"slow_kernel_exits"` // killed workers still in the kernel's exit, outside FUSE, after 1 s
	Violations        int     `json:"violations"`
	AuditViolations   int     `json:"audit_violations"`
	AuditMismatches   int     `json:"audit_unmatched_releases"`
	AuditHandovers    int     `json:"audit_recycled_owner_handovers"`
	Leaks             int     `json:"leaks"`
	Hangs             int     `json:"hangs"`
	LostEvents        int     `json:"lost_events"`
	AuditEvents       int     `json:"audit_events"`
	Acquired          int     `json:"acquired_events"`
	Released          int     `json:"released_events"`
	LockfsRSSStartMiB float64 `json:"lockfs_rss_start_mib"`
	LockfsRSSPeakMiB  float64 `json:"lockfs_rss_peak_mib"`
	LockfsRSSEndMiB   float64 `json:"lockfs_rss_end_mib"`
	LockfsThreads     [2]int  `json:"lockfs_threads_start_end"`
	LockfsGoroutines  [2]int  `json:"lockfs_goroutines_start_end"`
}

func TestSoak(t *testing.T) {
	cfg := soakConfigFromEnv(t)
	m, metricsAddr := relMountWithMetrics(t)
	t.Logf("soak: %v, %d workers, %d files, seed %d (LOCKFS_SOAK_SEED)", cfg.duration, cfg.procs, cfg.files, cfg.seed)
	names := make([]string, cfg.files)
	for i := range names {
		names[i] = soakName(i)
		if err := os.WriteFile(filepath.Join(m.Dir, names[i]), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	memStart, err := relReadProcMem(m.Proc.Pid)
	if err != nil {
		t.Fatal(err)
	}
	rep := SoakReport{Duration: cfg.duration.String(), Seed: cfg.seed, Procs: cfg.procs, Files: cfg.files}
	rep.LockfsRSSStartMiB = float64(memStart.RSSKiB) / 1024
	goroutinesStart := -1
	if metricsAddr != "" {
		mt, err := relScrapeMetrics(metricsAddr)
		if err != nil {
			t.Fatal(err)
		}
		goroutinesStart = int(mt["go_goroutines"])
	}
	rng := rand.New(rand.NewSource(cfg.seed))
	recDir := t.TempDir()

	var (
		mu    sync.Mutex // guards procs and live
		procs []*soakProc
		live  []*soakProc
	)
	spawn := func() {
		mu.Lock()
		id := len(procs)
		sp := &soakProc{id: id, recPath: filepath.Join(recDir, fmt.Sprintf("w%04d.rec", id))}
		procs = append(procs, sp)
		seed := rng.Int63()
		mu.Unlock()
		sp.p = startRel(t, "soak", []string{
			"LOCKFS_REL_DIR=" + m.Dir, "LOCKFS_REL_REC=" + sp.recPath,
			"LOCKFS_REL_FILES=" + strconv.Itoa(cfg.files), "LOCKFS_REL_SEED=" + strconv.FormatInt(seed, 10),
		}, nil)
		sp.p.expect(t, "READY", mustFinishWithin)
		mu.Lock()
		live = append(live, sp)
		mu.Unlock()
	}
	for i := 0; i < cfg.procs; i++ {
		spawn()
	}
	// Whatever happens, leave no worker stopped.
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, sp := range procs {
			syscall.Kill(sp.p.pid, syscall.SIGCONT)
		}
	}()

	// The fault injector and the watchdog run in this goroutine.
	var faults []soakFault
	hang := ""
	peak := memStart
	start := time.Now()
	lastSize := map[int]int64{}
	lastProgress := map[int]time.Time{}
	nextReport := start.Add(time.Minute)
	for time.Since(start) < cfg.duration && hang == "" {
		time.Sleep(time.Duration(30+rng.Intn(170)) * time.Millisecond)
		// Pick a target: every other time, the first worker seen in a
		// lock call within 100ms (most often a blocked waiter), else any.
		mu.Lock()
		target := live[rng.Intn(len(live))]
		if rng.Intn(2) == 0 {
		find:
			for deadline := time.Now().Add(100 * time.Millisecond); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				for _, i := range rng.Perm(len(live)) {
					if inLockCall(live[i].p.pid, 0) {
						target = live[i]
						break find
					}
				}
			}
		}
		mu.Unlock()
		f := soakFault{id: target.id}
		switch r := rng.Intn(100); {
		case r < 35:
			f.kill = true
		default:
			// SIGSTOP, then SIGCONT after a while (or, one time in
			// ten, SIGKILL while stopped).
			f.at = relMonoNow()
			syscall.Kill(target.p.pid, syscall.SIGSTOP)
			time.Sleep(time.Duration(rng.Int63n(int64(soakMaxStop))))
			if rng.Intn(10) != 0 {
				syscall.Kill(target.p.pid, syscall.SIGCONT)
				faults = append(faults, f)
				break
			}
			faults = append(faults, f)
			f = soakFault{id: target.id, kill: true}
		}
		if f.kill {
			target.killAt = relMonoNow()
			f.at = target.killAt
			target.killed = true
			syscall.Kill(target.p.pid, syscall.SIGKILL)
			faults = append(faults, f)
			go func(sp *soakProc) {
				// Catch a slow death in the act, for the report.
				select {
				case <-sp.p.exited:
				case <-time.After(soakReapWithin / 2):
					exiting := exitingOutsideFUSE(sp.p.pid)
					d := relProcDiag(sp.p.pid) + "last records:\n" + relTailFile(sp.recPath, 6)
					if rows, ok, _ := relViewRows(m.Dir); ok {
						d += fmt.Sprintf("lockfs lists %d rows: %v\n", len(rows), rows)
					}
					mu.Lock()
					sp.slowDeath, sp.exitingOutsideFUSE = d, exiting
					mu.Unlock()
				}
			}(target)
			mu.Lock()
			live = slices.DeleteFunc(live, func(sp *soakProc) bool { return sp == target })
			mu.Unlock()
			spawn()
		}
		// Watchdog: every running worker keeps recording.
		now := time.Now()
		mu.Lock()
		for _, sp := range live {
			st, err := os.Stat(sp.recPath)
			size := int64(0)
			if err == nil {
				size = st.Size()
			}
			if size != lastSize[sp.id] || lastProgress[sp.id].IsZero() {
				lastSize[sp.id], lastProgress[sp.id] = size, now
			} else if now.Sub(lastProgress[sp.id]) > soakStall {
				hang = fmt.Sprintf("worker %d recorded nothing for %v:\n%s", sp.id, soakStall, relProcDiag(sp.p.pid))
			}
			select {
			case <-sp.p.exited:
				hang = fmt.Sprintf("worker %d exited on its own (%v):\n%s", sp.id, sp.p.state, sp.p.stderr)
			default:
			}
		}
		mu.Unlock()
		if mem, err := relReadProcMem(m.Proc.Pid); err == nil && mem.RSSKiB > peak.RSSKiB {
			peak = mem
		}
		if now.After(nextReport) {
			t.Logf("soak: %v elapsed, %d workers started, %d faults, lockfs %v", now.Sub(start).Round(time.Second), len(procs), len(faults), peak)
			nextReport = now.Add(time.Minute)
		}
	}
	if hang != "" {
		rep.Hangs++
		t.Errorf("soak: %s", hang)
	}

	// Stop: every worker finishes its section and exits.
	mu.Lock()
	for _, sp := range live {
		syscall.Kill(sp.p.pid, syscall.SIGCONT)
		sp.p.stdin.Close()
	}
	stopping := slices.Clone(live)
	mu.Unlock()
	for _, sp := range stopping {
		select {
		case <-sp.p.exited:
			if !sp.p.state.Success() {
				t.Errorf("worker %d exited with %v:\n%s", sp.id, sp.p.state, sp.p.stderr)
			}
		case <-time.After(soakMaxWait):
			rep.Hangs++
			t.Errorf("worker %d did not stop within %v:\n%s", sp.id, soakMaxWait, relProcDiag(sp.p.pid))
		}
	}
	time.Sleep(50 * time.Millisecond) // let the pidfd watchers record the last deaths
	for _, sp := range procs {
		if !sp.killed {
			continue
		}
		select {
		case <-sp.p.exited:
		case <-time.After(soakMaxWait):
			t.Errorf("killed worker %d not reaped:\n%s", sp.id, relProcDiag(sp.p.pid))
			continue
		}
		if sp.p.state.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("worker %d: %v before it was killed:\n%s", sp.id, sp.p.state, sp.p.stderr)
		}
		// Dead, as the kernel says (pidfd), after the kill: the
		// reaping itself may lag on a loaded machine.
		reap := time.Duration(sp.p.deathTime() - sp.killAt)
		rep.MaxReapS = max(rep.MaxReapS, reap.Seconds())
		mu.Lock()
		diag, exiting := sp.slowDeath, sp.exitingOutsideFUSE
		mu.Unlock()
		limit := soakReapWithin
		if exiting {
			limit = soakMaxWait
			rep.SlowKernelExits++
		}
		if reap > limit {
			rep.Hangs++
			t.Errorf("worker %d died %v after SIGKILL (reaped after %v), want < %v; %v after the kill:\n%s",
				sp.id, reap, time.Duration(sp.p.reaped-sp.killAt), limit, soakReapWithin/2, diag)
		} else if exiting {
			t.Logf("worker %d died %v after SIGKILL; %v after the kill it was freeing its memory in the kernel's exit, outside FUSE:\n%s",
				sp.id, reap, soakReapWithin/2, diag)
		}
	}
	rep.WorkersStarted = len(procs)

	// The recorded sections: mutual exclusion, bounded waits.
	recs := make([]*soakRecords, len(procs))
	for i, sp := range procs {
		r, err := readSoakRecords(sp)
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = r
		rep.LockCalls += r.ops
		rep.Sections += len(r.sections)
		rep.BlockingWaits += r.waits
		rep.Deadlocks += r.deadlocks
		rep.MaxWaitS = max(rep.MaxWaitS, time.Duration(r.maxWait).Seconds())
		if !sp.killed && r.openWait {
			rep.Hangs++
			t.Errorf("worker %d: a wait never returned", sp.id)
		}
	}
	for _, f := range faults {
		r := recs[f.id]
		if f.kill {
			rep.Kills++
			if r.holdingAt(f.at) {
				rep.KillsHolding++
			}
			if r.waitingAt(f.at) {
				rep.KillsWaiting++
			}
		} else {
			rep.Stops++
			if r.waitingAt(f.at) {
				rep.StopsWaiting++
			}
		}
	}
	if time.Duration(rep.MaxWaitS*float64(time.Second)) > soakMaxWait {
		rep.Hangs++
		t.Errorf("a lock wait took %.1fs, want < %v", rep.MaxWaitS, soakMaxWait)
	}
	if rep.Deadlocks > 0 {
		t.Errorf("%d EDEADLK answers: this workload cannot form a wait cycle", rep.Deadlocks)
	}
	for _, v := range soakViolations(recs) {
		rep.Violations++
		if rep.Violations <= 10 {
			t.Errorf("mutual exclusion violated: %s", v)
		}
	}

	// Nothing leaked: every file is free for every kind of lock.
	busy := relRequireAllFree(t, m.Dir, names, 10*time.Second)
	for _, b := range busy {
		t.Errorf("leaked lock: %s", b)
	}
	rep.Leaks += len(busy)
	if rows, ok, err := relViewRows(m.Dir); err != nil {
		t.Errorf("%v", err)
	} else if ok && len(rows) > 0 {
		rep.Leaks += len(rows)
		t.Errorf("lockfs still lists %d locks or waiters after every process is gone: %v", len(rows), rows)
	}

	// lockfs's own account: the audit log.
	a, err := analyseAudit(m.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	rep.AuditEvents, rep.Acquired, rep.Released = a.events, a.acquired, a.released
	for _, v := range a.violations {
		rep.AuditViolations++
		if rep.AuditViolations <= 10 {
			t.Errorf("audit log: %s%s", v, auditContextOf(m.LogPath, v, rep.AuditViolations <= 3))
		}
	}
	for _, l := range a.leaks() {
		rep.Leaks++
		t.Errorf("audit log: %s", l)
	}
	// Every acquired is matched by exactly one released.
	mismatches := append(a.pieces, a.unmatched()...)
	rep.AuditMismatches = len(mismatches)
	rep.AuditHandovers = a.handovers
	for i, l := range mismatches {
		if i < 10 {
			t.Errorf("audit log: %s%s", l, auditContextOf(m.LogPath, l, i < 3))
		}
	}
	for _, sp := range procs {
		got, want := a.acquiredBy[sp.p.pid], recs[sp.id].acquisitions
		switch {
		case got == want:
		case sp.killed && got == want+1:
			// Granted while it died, before it could record it.
		default:
			rep.LostEvents += max(want-got, 1)
			t.Errorf("worker %d (pid %d, killed %v): %d acquisitions recorded, %d acquired events", sp.id, sp.p.pid, sp.killed, want, got)
		}
	}

	// lockfs's memory is back near where it started.
	memEnd, err := relReadProcMem(m.Proc.Pid)
	for deadline := time.Now().Add(20 * time.Second); err == nil && !rssNear(memStart, memEnd) && time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		memEnd, err = relReadProcMem(m.Proc.Pid)
	}
	if err != nil {
		t.Fatal(err)
	}
	rep.LockfsRSSPeakMiB = float64(max(peak.RSSKiB, memEnd.HWMKiB)) / 1024
	rep.LockfsRSSEndMiB = float64(memEnd.RSSKiB) / 1024
	rep.LockfsThreads = [2]int{memStart.Threads, memEnd.Threads}
	if !rssNear(memStart, memEnd) {
		t.Errorf("lockfs RSS %.1f MiB after the run, %.1f MiB at the start", rep.LockfsRSSEndMiB, rep.LockfsRSSStartMiB)
	}

	// lockfs's goroutines and gauges (when it serves metrics).
	if metricsAddr != "" {
		var mt map[string]float64
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if mt, err = relScrapeMetrics(metricsAddr); err != nil {
				t.Fatal(err)
			}
			if mt["lockfs_locks_held"] == 0 && mt["lockfs_lock_waiters"] == 0 && int(mt["go_goroutines"]) <= goroutinesStart+soakGoroutineSlack ||
				time.Now().After(deadline) {
				break
			}
		}
		rep.LockfsGoroutines = [2]int{goroutinesStart, int(mt["go_goroutines"])}
		if mt["lockfs_locks_held"] != 0 || mt["lockfs_lock_waiters"] != 0 {
			rep.Leaks++
			t.Errorf("lockfs_locks_held %v, lockfs_lock_waiters %v once every process is gone", mt["lockfs_locks_held"], mt["lockfs_lock_waiters"])
		}
		if rep.LockfsGoroutines[1] > goroutinesStart+soakGoroutineSlack {
			t.Errorf("lockfs runs %d goroutines after the run, %d at the start", rep.LockfsGoroutines[1], goroutinesStart)
		}
	}

	b, _ := json.MarshalIndent(rep, "", "  ")
	t.Logf("soak figures:\n%s", b)
	if cfg.report != "" {
		if err := os.WriteFile(cfg.report, append(b, '\n'), 0o644); err != nil {
			t.Error(err)
		}
	}
	if rep.Sections == 0 || rep.Kills == 0 || rep.Stops == 0 {
		t.Errorf("the run exercised too little: %d sections, %d kills, %d stops", rep.Sections, rep.Kills, rep.Stops)
	}
}

// auditContextOf adds the events that led to an anomaly reported as
// "line N: PATH: …" (when want is set).
func auditContextOf(logPath, anomaly string, want bool) string {
	var line int
	var path string
	if !want {
		return ""
	}
	if _, err := fmt.Sscanf(anomaly, "line %d: %s", &line, &path); err != nil {
		return ""
	}
	return "\n" + auditContext(logPath, line, strings.TrimSuffix(path, ":"), 25)
}

// rssNear: lockfs's RSS is back near its start. The Go heap is returned
// to the kernel lazily, so allow a fixed slack; a leak of per-owner or
// per-handle state over a run grows without bound.
func rssNear(start, now relProcMem) bool {
	return now.RSSKiB <= start.RSSKiB+48*1024
}

// exitingOutsideFUSE reports whether a process is in the kernel's exit
// path (a thread in do_exit) with no thread in a FUSE function: its calls
// on the mount are all answered, and what delays its death is not
// lockfs. Reading the stacks needs root; without them it reports false.
func exitingOutsideFUSE(pid int) bool {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false
	}
	exiting := false
	for _, e := range ents {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stack", pid, e.Name()))
		if err != nil {
			return false
		}
		if bytes.Contains(st, []byte("fuse")) {
			return false
		}
		exiting = exiting || bytes.Contains(st, []byte("do_exit"))
	}
	return exiting
}
