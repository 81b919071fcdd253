package integration

// The audit log under load and across a log rotation: every acquire and
// release done by real processes (oslo lockutils, raw lockf) is one
// event, acquisitions and releases pair up one to one, and the
// durations agree with the timestamps.

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// osloLoopScript takes an oslo lockutils external lock n times.
const osloLoopScript = `
import sys
from oslo_concurrency import lockutils
mnt, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
print('ready', flush=True)
sys.stdin.readline()
for i in range(n):
    with lockutils.lock(name, external=True, lock_path=mnt):
        pass
print('done', flush=True)
`

// lockfLoopScript takes a blocking lockf(F_LOCK) write lock n times on
// one descriptor, or, with n = 0, until a line arrives on stdin; it
// prints the number of cycles done.
const lockfLoopScript = `
import sys, fcntl, os, threading
path, n = sys.argv[1], int(sys.argv[2])
stop = threading.Event()
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
print('ready', flush=True)
sys.stdin.readline()
if n == 0:
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
done = 0
while (n == 0 and not stop.is_set()) or (n > 0 and done < n):
    fcntl.lockf(fd, fcntl.LOCK_EX)
    fcntl.lockf(fd, fcntl.LOCK_UN)
    done += 1
os.close(fd)
print('done %d' % done, flush=True)
`

// auditTolerance is how far a *_s duration may be from the difference of
// the two event timestamps it spans. lockfs measures durations on the
// monotonic clock and stamps events with the wall clock, which NTP or a
// hypervisor may step by a fraction of a millisecond in between (seen
// here: steps of ~150µs); the timestamps themselves are in µs.
const auditTolerance = 10 * time.Millisecond

// TestAuditCompleteness: several processes do thousands of
// acquire/release cycles, contended and not. Each process's acquired
// and released events number exactly its cycles; per lock owner the
// events alternate waiting? → acquired → released; waited_s and held_s
// are non-negative and equal the time between the events they span.
func TestAuditCompleteness(t *testing.T) {
	requireClients(t, "oslo_concurrency.lockutils")
	m := mountLockfs(t)
	type worker struct {
		p     *clientProc
		lock  string
		iters int
	}
	var ws []*worker
	start := func(name, lock string, iters int, argv ...string) {
		p := startClient(t, name, argv...)
		ws = append(ws, &worker{p: p, lock: lock, iters: iters})
	}
	// Two oslo processes contend for one lock (fasteners polls), one
	// has its own; two raw lockf processes contend with blocking waits.
	for i := 0; i < 2; i++ {
		start(fmt.Sprintf("oslo-shared#%d", i), "oslo-shared", 200,
			clientPython, "-c", osloLoopScript, m.Dir, "oslo-shared", "200")
	}
	start("oslo-own", "oslo-own", 1000, clientPython, "-c", osloLoopScript, m.Dir, "oslo-own", "1000")
	for i := 0; i < 2; i++ {
		start(fmt.Sprintf("lockf#%d", i), "raw-shared", 1500,
			clientPython, "-c", lockfLoopScript, filepath.Join(m.Dir, "raw-shared"), "1500")
	}
	for _, w := range ws {
		// Importing oslo takes seconds on a busy machine.
		select {
		case line := <-w.p.lines:
			if line != "ready" {
				t.Fatalf("%s: %q\n%s", w.p.name, line, w.p.stderr)
			}
		case <-time.After(clientBarrierTimeout):
			t.Fatalf("%s not ready within %v\n%s", w.p.name, clientBarrierTimeout, w.p.stderr)
		}
	}
	for _, w := range ws {
		fmt.Fprintln(w.p.stdin, "go")
	}
	for _, w := range ws {
		select {
		case line := <-w.p.lines:
			if !strings.HasPrefix(line, "done") {
				t.Fatalf("%s: %q\n%s", w.p.name, line, w.p.stderr)
			}
		case <-time.After(clientRunTimeout):
			t.Fatalf("%s did not finish within %v", w.p.name, clientRunTimeout)
		}
	}
	for _, w := range ws {
		if code := w.p.waitExit(t, clientStepTimeout); code != 0 {
			t.Fatalf("%s exited %d:\n%s", w.p.name, code, w.p.stderr)
		}
	}

	evs := m.Events(t)
	total := 0
	for _, w := range ws {
		acq, rel := 0, 0
		for _, e := range evs {
			if e.Pid != w.p.pid() || e.Lock != w.lock {
				continue
			}
			switch e.Event {
			case "acquired":
				acq++
			case "released":
				rel++
			}
		}
		if acq != w.iters || rel != w.iters {
			t.Errorf("%s (pid %d): %d acquired and %d released events, want %d of each",
				w.p.name, w.p.pid(), acq, rel, w.iters)
		}
		total += w.iters
	}
	checkAuditPairs(t, evs, total)
}

// checkAuditPairs checks the lock events of a log where every lock is
// whole-file and taken, then released by its owner: per (lock, owner)
// the events run [waiting] acquired released, …; the durations agree
// with the timestamps; and there are wantAcquired acquisitions.
func checkAuditPairs(t *testing.T, evs []Event, wantAcquired int) {
	t.Helper()
	type key struct{ lock, owner string }
	type state struct {
		waiting, acquired *Event
	}
	open := map[key]*state{}
	acquired, kinds := 0, map[string]int{}
	bad := 0
	fail := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(format, args...)
		}
	}
	for i := range evs {
		e := &evs[i]
		if e.Lock == "" || e.Owner == "" {
			continue // mounted, log_reopened, …
		}
		kinds[e.Event]++
		k := key{e.Lock, e.Owner}
		s := open[k]
		if s == nil {
			s = &state{}
			open[k] = s
		}
		at := eventTime(t, e)
		switch e.Event {
		case "waiting":
			if s.waiting != nil || s.acquired != nil {
				fail("%s owner %s: waiting while already waiting or holding", e.Lock, e.Owner)
			}
			s.waiting = e
		case "acquired":
			acquired++
			if s.acquired != nil {
				fail("%s owner %s: acquired twice without a release", e.Lock, e.Owner)
			}
			if e.WaitedS < 0 || e.Attempts < 1 {
				fail("%s: acquired with waited_s %g attempts %d", e.Lock, e.WaitedS, e.Attempts)
			}
			if s.waiting != nil {
				if d := at.Sub(eventTime(t, s.waiting)); math.Abs(d.Seconds()-e.WaitedS) > auditTolerance.Seconds() {
					fail("%s owner %s: waited_s %g, but %v passed since its waiting event", e.Lock, e.Owner, e.WaitedS, d)
				}
			} else if e.WaitedS != 0 || e.Attempts != 1 {
				fail("%s owner %s: waited_s %g attempts %d without a waiting event", e.Lock, e.Owner, e.WaitedS, e.Attempts)
			}
			s.waiting, s.acquired = nil, e
		case "released":
			if s.acquired == nil {
				fail("%s owner %s: released without an acquisition", e.Lock, e.Owner)
				continue
			}
			if d := at.Sub(eventTime(t, s.acquired)); e.HeldS < 0 || math.Abs(d.Seconds()-e.HeldS) > auditTolerance.Seconds() {
				fail("%s owner %s: held_s %g, but %v passed since the acquisition", e.Lock, e.Owner, e.HeldS, d)
			}
			if e.Pid != s.acquired.Pid || e.Mode != s.acquired.Mode || e.Reason != "unlock" {
				fail("%s owner %s: release %+v does not match acquisition %+v", e.Lock, e.Owner, e, s.acquired)
			}
			s.acquired = nil
		default:
			fail("unexpected %s event: %v", e.Event, e.Raw)
		}
	}
	for k, s := range open {
		if s.waiting != nil || s.acquired != nil {
			t.Errorf("%s owner %s: a wait or hold never ended", k.lock, k.owner)
		}
	}
	if acquired != wantAcquired || kinds["released"] != wantAcquired {
		t.Errorf("%d acquired and %d released events, want %d of each (all kinds: %v)",
			acquired, kinds["released"], wantAcquired, kinds)
	}
	t.Logf("events: %v", kinds)
}

func eventTime(t *testing.T, e *Event) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, str(e.Raw["time"]))
	if err != nil {
		t.Fatalf("event time %v: %v", e.Raw["time"], err)
	}
	return at
}

// TestLogRotation: logrotate's create + postrotate HUP while a process
// keeps locking. Events written before the reopen are in the renamed
// file, the others in the new one; together they are every event, once.
func TestLogRotation(t *testing.T) {
	requireClients(t)
	m := mountLockfs(t)
	p := startClient(t, "lockf", clientPython, "-c", lockfLoopScript, filepath.Join(m.Dir, "rotated"), "0")
	p.expectLine(t, "ready")
	fmt.Fprintln(p.stdin, "go")
	// Let it lock for a while, rotate, and let it lock after.
	waitLogGrows(t, m.LogPath, 200)
	rotated := m.LogPath + ".1"
	if err := os.Rename(m.LogPath, rotated); err != nil {
		t.Fatal(err)
	}
	if err := m.Proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLogGrows(t, m.LogPath, 200) // the new file, after the reopen
	fmt.Fprintln(p.stdin, "stop")
	line := p.expectLine(t, "done ")
	cycles, err := strconv.Atoi(strings.TrimPrefix(line, "done "))
	if err != nil {
		t.Fatal(err)
	}
	p.waitExit(t, clientStepTimeout)

	old := (&Mount{LogPath: rotated}).Events(t)
	cur := m.Events(t)
	count := func(evs []Event, kind string) int {
		n := 0
		for _, e := range evs {
			if e.Event == kind && (e.Lock == "rotated" || kind == "log_reopened") {
				n++
			}
		}
		return n
	}
	if count(old, "acquired") == 0 || count(cur, "acquired") == 0 {
		t.Errorf("acquired events: %d before the rotation, %d after; want some in each file",
			count(old, "acquired"), count(cur, "acquired"))
	}
	if count(old, "log_reopened") != 0 || count(cur, "log_reopened") != 1 {
		t.Errorf("log_reopened: %d lines in the rotated file, %d in the new one; want 0 and 1",
			count(old, "log_reopened"), count(cur, "log_reopened"))
	}
	all := append(old, cur...)
	checkAuditPairs(t, all, cycles)
	seen := map[string]bool{}
	for _, e := range all {
		line := fmt.Sprint(e.Raw)
		if seen[line] {
			t.Errorf("event logged twice: %s", line)
		}
		seen[line] = true
	}
}

// waitLogGrows waits until the log file at path has at least n more
// lines than when called (counting from 0 if it does not exist yet).
func waitLogGrows(t *testing.T, path string, n int) {
	t.Helper()
	lines := func() int {
		b, _ := os.ReadFile(path)
		return strings.Count(string(b), "\n")
	}
	start := lines()
	for deadline := time.Now().Add(clientStepTimeout); lines() < start+n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: fewer than %d new lines after %v", path, n, clientStepTimeout)
		}
	}
}
