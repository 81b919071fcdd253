package integration

// Real clients on a lockfs mount, used the way Tempest uses them: oslo
// lockutils external locks, Tempest's LockFixture inside a testtools
// TestCase, fasteners' inter-process reader/writer lock (Tempest's
// serial rw lock), a fasteners poller contending with a holder, and
// flock(1).
//
// The Python clients are the Debian packages (python3-oslo.concurrency,
// python3-fasteners, tempest), importable only by /usr/bin/python3, not
// by whatever python3 comes first on PATH. When they (or flock(1)) are
// missing the tests skip, or fail under LOCKFS_REQUIRE_CLIENTS=1.
//
// Mutual exclusion is checked without any clock: every client appends
// "enter"/"exit" markers to one O_APPEND file outside the mount, with
// one write(2) per line, while it holds the lock. Appends to one file are
// serialised by the kernel, so the file is a total order of the events;
// with a working lock no other process's marker can fall between an
// "enter" and its "exit". The monotonic timestamps in each line are only
// there to make failure messages readable.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// clientPython is the interpreter that has the Debian packages.
	clientPython = "/usr/bin/python3"
	// requireClientsEnv turns a missing client into a failure.
	requireClientsEnv = "LOCKFS_REQUIRE_CLIENTS"

	// clientRunTimeout bounds one whole client run (all processes of a
	// test, from start to exit). It only guards against hangs: a run
	// normally takes a few seconds, but the Python start-up is CPU-bound
	// and CI machines are busy.
	clientRunTimeout = 120 * time.Second
	// clientStepTimeout bounds one expected step: a line on a client's
	// stdout, an audit event showing up, a process exiting.
	clientStepTimeout = 10 * time.Second
	// clientBarrierTimeout bounds how long the processes of a run wait
	// for each other before they start contending (importing tempest
	// takes over a second per process).
	clientBarrierTimeout = 45 * time.Second
	// clientRendezvousTimeout bounds how long a reader inside the read
	// lock waits for a second reader to come in.
	clientRendezvousTimeout = 5 * time.Second
	// clientMustBlockFor is how long a waiting client must still be
	// waiting to count as blocked.
	clientMustBlockFor = 300 * time.Millisecond
	// clientPollWindow is how long the holder keeps the lock after the
	// poller's first refusal, so that the poller retries several times
	// (fasteners sleeps 10, 20, … 100 ms between attempts).
	clientPollWindow = 300 * time.Millisecond
	// clientAuditPoll is the interval for re-reading the audit log.
	clientAuditPoll = 20 * time.Millisecond

	// clientOffsetMax is the kernel's OFFSET_MAX: the end of a whole-file lock.
	clientOffsetMax = 1<<63 - 1
)

// clientScript is the Python side of every test here, run as
// `/usr/bin/python3 -c clientScript MODE ARGS…`. It writes its markers
// with one os.write per line on an O_APPEND descriptor.
const clientScript = `
import os, random, sys, time

def marker(path):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    def mark(what):
        os.write(fd, ('%s %d %d\n' % (what, os.getpid(), time.monotonic_ns())).encode())
    return mark

def barrier(path, n, timeout):
    """Wait until n processes have reached the barrier file."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, ('%d\n' % os.getpid()).encode())
    os.close(fd)
    deadline = time.monotonic() + timeout
    while True:
        with open(path) as f:
            if len(f.read().split()) >= n:
                return
        if time.monotonic() > deadline:
            sys.exit('barrier: fewer than %d processes after %ss' % (n, timeout))
        time.sleep(0.005)

def pause(lo, hi):
    time.sleep(random.uniform(lo, hi))

def await_other(path, tag, timeout):
    """Wait until another process has written a tag marker."""
    me = str(os.getpid())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path) as f:
            for line in f:
                w = line.split()
                if len(w) >= 2 and w[0] == tag and w[1] != me:
                    return
        time.sleep(0.005)

mode = sys.argv[1]

if mode == 'oslo':
    # tempest: with lockutils.lock(name, 'tempest-', external=True)
    mnt, log, bar, n, iters = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    from oslo_concurrency import lockutils
    mark = marker(log)
    barrier(bar, n, float(sys.argv[7]))
    for i in range(iters):
        with lockutils.lock('availability_zone', 'tempest-', external=True, lock_path=mnt):
            mark('enter')
            pause(0.001, 0.004)
            mark('exit')
        pause(0, 0.01)

elif mode == 'fixture':
    # tempest/api/compute/admin/test_aggregates.py:
    #     self.useFixture(fixtures.LockFixture('availability_zone'))
    mnt, log, bar, n, iters = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    import testtools
    from oslo_concurrency import lockutils
    from tempest.common import tempest_fixtures
    lockutils.set_defaults(mnt)
    mark = marker(log)

    class AggregatesAdminTest(testtools.TestCase):
        def test_aggregate_add_host(self):
            self.useFixture(tempest_fixtures.LockFixture('availability_zone'))
            mark('enter')
            # Cleanups run last in, first out: this one runs before the
            # fixture releases the lock (Tempest bug #1221469).
            self.addCleanup(mark, 'exit')
            pause(0.001, 0.004)

    barrier(bar, n, float(sys.argv[7]))
    for i in range(iters):
        result = testtools.TestResult()
        AggregatesAdminTest('test_aggregate_add_host').run(result)
        if not result.wasSuccessful():
            for _, err in result.errors + result.failures:
                sys.stderr.write(str(err))
            sys.exit(1)
        pause(0, 0.01)

elif mode == 'rw':
    # tempest/test.py: every class takes the read side of
    # tempest-serial-rw-lock, @serial classes the write side.
    mnt, log, bar, n, iters, role = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), sys.argv[8]
    import fasteners
    lock = fasteners.InterProcessReaderWriterLock(os.path.join(mnt, 'tempest-serial-rw-lock'))
    mark = marker(log)
    barrier(bar, n, float(sys.argv[7]))
    for i in range(iters):
        if role == 'reader':
            lock.acquire_read_lock()
            mark('R+')
            if i == 0:
                # Stay inside until another reader has come in too:
                # with a shared lock that always happens.
                await_other(log, 'R+', float(sys.argv[9]))
            pause(0.001, 0.004)
            mark('R-')
            lock.release_read_lock()
        else:
            lock.acquire_write_lock()
            mark('W+')
            pause(0.001, 0.004)
            mark('W-')
            lock.release_write_lock()
        pause(0, 0.01)

elif mode == 'hold':
    # Hold a fasteners lock until stdin says "release".
    import fasteners
    lock = fasteners.InterProcessLock(sys.argv[2])
    lock.acquire()
    print('held', flush=True)
    sys.stdin.readline()
    lock.release()
    print('released', flush=True)

elif mode == 'poll':
    # A fasteners poller; counts its own attempts (one more than sleeps).
    import fasteners
    sleeps = [0]
    def counting_sleep(s):
        sleeps[0] += 1
        time.sleep(s)
    lock = fasteners.InterProcessLock(sys.argv[2], sleep_func=counting_sleep)
    print('polling', flush=True)
    lock.acquire()
    print('got attempts=%d' % (sleeps[0] + 1), flush=True)
    lock.release()

else:
    sys.exit('unknown mode ' + mode)
`

// requireClients skips (or fails, under LOCKFS_REQUIRE_CLIENTS=1) unless
// /usr/bin/python3 can import every module given.
func requireClients(t *testing.T, modules ...string) {
	t.Helper()
	if _, err := os.Stat(clientPython); err != nil {
		skipOrFailClients(t, "real clients unavailable: %v", err)
	}
	if len(modules) == 0 {
		return
	}
	out, err := exec.Command(clientPython, "-c", "import "+strings.Join(modules, ", ")).CombinedOutput()
	if err != nil {
		skipOrFailClients(t, "real clients unavailable: %s cannot import %s: %v\n%s",
			clientPython, strings.Join(modules, ", "), err, out)
	}
}

// requireTool is requireClients for a command such as flock(1).
func requireTool(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		skipOrFailClients(t, "real clients unavailable: %v", err)
	}
	return p
}

func skipOrFailClients(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv(requireClientsEnv) == "1" {
		t.Fatalf(format+" (and %s=1)", append(args, requireClientsEnv)...)
	}
	t.Skipf(format, args...)
}

// clientProc is a client process started by startClient.
type clientProc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *lockedBuffer
	lines  chan string   // stdout, line by line; closed at EOF
	exited chan struct{} // closed once the process is reaped
}

// startClient starts argv as a client process, in a process group of
// its own (flock(1) runs its command as a child). t.Cleanup kills that
// group (by the client's pid) and reaps the client if it is still
// running; start clients after the mount they use, so that this runs
// before the unmount.
func startClient(t *testing.T, name string, argv ...string) *clientProc {
	t.Helper()
	p := &clientProc{
		name:   name,
		cmd:    exec.Command(argv[0], argv[1:]...),
		stderr: &lockedBuffer{},
		lines:  make(chan string, 256), // the scripts print a few lines
		exited: make(chan struct{}),
	}
	p.cmd.Stderr = p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stdin.Close()
		select {
		case <-p.exited:
			return
		default:
		}
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-p.exited:
		case <-time.After(stopTimeout):
			t.Errorf("%s (pid %d) not reaped %v after SIGKILL", name, p.cmd.Process.Pid, stopTimeout)
		}
	})
	return p
}

// startPython runs clientScript in mode with args.
func startPython(t *testing.T, name string, args ...string) *clientProc {
	t.Helper()
	return startClient(t, name, append([]string{clientPython, "-c", clientScript}, args...)...)
}

func (p *clientProc) pid() int { return p.cmd.Process.Pid }

// expectLine waits up to clientStepTimeout for the next stdout line and
// requires it to start with prefix; it returns the line.
func (p *clientProc) expectLine(t *testing.T, prefix string) string {
	t.Helper()
	select {
	case line, ok := <-p.lines:
		if !ok {
			p.waitExit(t, clientStepTimeout)
			t.Fatalf("%s exited (%v) before printing %q\nstderr:\n%s", p.name, p.cmd.ProcessState, prefix, p.stderr)
		}
		if !strings.HasPrefix(line, prefix) {
			t.Fatalf("%s printed %q, want %q…\nstderr:\n%s", p.name, line, prefix, p.stderr)
		}
		return line
	case <-time.After(clientStepTimeout):
		t.Fatalf("%s printed no %q within %v\nstderr:\n%s", p.name, prefix, clientStepTimeout, p.stderr)
	}
	return ""
}

// waitExit waits up to d for the process to exit and returns its exit
// code; it fails the test if the process is still running then.
func (p *clientProc) waitExit(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("%s (pid %d) still running after %v\nstderr:\n%s", p.name, p.pid(), d, p.stderr)
	}
	return -1
}

// running reports whether the process has not exited yet.
func (p *clientProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// runClients starts n copies of the given clientScript mode on one
// barrier and requires all of them to exit 0 within clientRunTimeout.
// extra(i) gives per-process arguments after the common ones. It
// returns the pids and the marker log.
func runClients(t *testing.T, mode, mnt string, n, iters int, extra func(i int) []string) ([]int, []clientMark) {
	t.Helper()
	tmp := t.TempDir()
	markLog := filepath.Join(tmp, "marks")
	bar := filepath.Join(tmp, "barrier")
	procs := make([]*clientProc, n)
	pids := make([]int, n)
	for i := range procs {
		args := []string{mode, mnt, markLog, bar, strconv.Itoa(n), strconv.Itoa(iters),
			strconv.FormatFloat(clientBarrierTimeout.Seconds(), 'f', -1, 64)}
		if extra != nil {
			args = append(args, extra(i)...)
		}
		procs[i] = startPython(t, fmt.Sprintf("%s#%d", mode, i), args...)
		pids[i] = procs[i].pid()
	}
	deadline := time.Now().Add(clientRunTimeout)
	for _, p := range procs {
		if code := p.waitExit(t, time.Until(deadline)); code != 0 {
			t.Fatalf("%s (pid %d) exited %d\nstderr:\n%s", p.name, p.pid(), code, p.stderr)
		}
	}
	return pids, readMarks(t, markLog)
}

// clientMark is one line of a marker log.
type clientMark struct {
	what string // enter, exit, R+, R-, W+, W-
	pid  int
	ns   int64 // CLOCK_MONOTONIC, for messages only
	line int
}

func (m clientMark) String() string {
	return fmt.Sprintf("line %d: %s pid %d at %d ns", m.line, m.what, m.pid, m.ns)
}

func readMarks(t *testing.T, path string) []clientMark {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("marker log: %v", err)
	}
	var marks []clientMark
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("marker log line %d is torn: %q", i+1, line)
		}
		pid, err1 := strconv.Atoi(f[1])
		ns, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("marker log line %d is torn: %q", i+1, line)
		}
		marks = append(marks, clientMark{what: f[0], pid: pid, ns: ns, line: i + 1})
	}
	return marks
}

// checkExclusive requires the marks to be enter/exit pairs of one
// process each, never interleaved: no two critical sections overlapped.
// It returns how many critical sections each pid ran.
func checkExclusive(t *testing.T, marks []clientMark) map[int]int {
	t.Helper()
	sections := map[int]int{}
	var in *clientMark
	for i := range marks {
		m := &marks[i]
		switch {
		case m.what == "enter" && in == nil:
			in = m
		case m.what == "enter":
			t.Fatalf("critical sections overlap: %v entered while %v was inside", m, in)
		case m.what == "exit" && (in == nil || in.pid != m.pid):
			t.Fatalf("unpaired exit %v (inside: %v)", m, in)
		case m.what == "exit":
			sections[m.pid]++
			in = nil
		default:
			t.Fatalf("unexpected marker %v", m)
		}
	}
	if in != nil {
		t.Fatalf("critical section never left: %v", in)
	}
	return sections
}

// lockEvents returns the audit events about the lock named name, in log
// order.
func lockEvents(evs []Event, name string) []Event {
	var out []Event
	for _, e := range evs {
		if e.Lock == name {
			out = append(out, e)
		}
	}
	return out
}

// waitForEvent re-reads the audit log until an event matches, for up to
// clientStepTimeout.
func waitForEvent(t *testing.T, m *Mount, what string, match func(Event) bool) Event {
	t.Helper()
	for deadline := time.Now().Add(clientStepTimeout); ; time.Sleep(clientAuditPoll) {
		for _, e := range m.Events(t) {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s in the audit log after %v:\n%s", what, clientStepTimeout, dumpEvents(m.Events(t)))
		}
	}
}

func dumpEvents(evs []Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %s %s %s/%s pid=%d owner=%s attempts=%d waited_s=%g held_s=%g reason=%s\n",
			e.Event, e.Lock, e.Kind, e.Mode, e.Pid, e.Owner, e.Attempts, e.WaitedS, e.HeldS, e.Reason)
	}
	return b.String()
}

// rawInt reads an integer field of an audit line exactly. (Event.End
// goes through float64, which cannot hold OFFSET_MAX.)
func rawInt(v any) int64 {
	n, ok := v.(json.Number)
	if !ok {
		return -1
	}
	i, err := n.Int64()
	if err != nil {
		return -1
	}
	return i
}

// requireZeroByteFile checks that path is a regular, empty file.
func requireZeroByteFile(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("lock file: %v", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != 0 {
		t.Errorf("%s: mode %v size %d, want a regular zero-byte file", path, fi.Mode(), fi.Size())
	}
}

// checkExclusiveAudit checks the audit trail of an exclusive POSIX lock
// taken `want` times by the given pids with oslo/fasteners: every
// acquisition is one whole-file write lock with the message people grep
// for, and is matched one to one by a release of the same owner.
func checkExclusiveAudit(t *testing.T, m *Mount, name string, pids []int, want int) {
	t.Helper()
	path := filepath.Join(m.Dir, name)
	gotMsg := fmt.Sprintf("Got file lock %q at %s", name, path)
	relMsg := fmt.Sprintf("Released file lock %q at %s", name, path)
	evs := lockEvents(m.Events(t), name)
	type key struct {
		pid   int
		owner string
	}
	holding := map[key]*Event{}
	waitingFor := map[key]*Event{} // a refusal not yet followed by the grant
	acquired, released, waiting := 0, 0, 0
	for i := range evs {
		e := &evs[i]
		if !slices.Contains(pids, e.Pid) {
			t.Errorf("event from pid %d, not one of the clients %v: %v", e.Pid, pids, e.Raw)
			continue
		}
		if e.Path != path || e.Kind != "posix" || e.Mode != "write" || rawInt(e.Raw["start"]) != 0 || rawInt(e.Raw["end"]) != clientOffsetMax {
			t.Errorf("event is not a whole-file POSIX write lock on %s: %v", path, e.Raw)
		}
		k := key{e.Pid, e.Owner}
		switch e.Event {
		case "waiting":
			// One waiting per contended acquisition, however many
			// times the poller retried.
			waiting++
			if waitingFor[k] != nil {
				t.Errorf("owner %v logged waiting twice for one acquisition: %v", k, e.Raw)
			}
			waitingFor[k] = e
		case "acquired":
			acquired++
			if w := waitingFor[k]; w != nil {
				if e.Attempts < 2 || e.WaitedS <= 0 {
					t.Errorf("acquired after waiting with attempts=%d waited_s=%g, want attempts > 1 and waited_s > 0: %v",
						e.Attempts, e.WaitedS, e.Raw)
				}
			} else if e.Attempts != 1 {
				t.Errorf("acquired with attempts=%d but no waiting event before it: %v", e.Attempts, e.Raw)
			}
			waitingFor[k] = nil
			if msg := str(e.Raw["message"]); msg != gotMsg {
				t.Errorf("acquired message %q, want %q", msg, gotMsg)
			}
			if e.Attempts < 1 {
				t.Errorf("acquired with attempts %d: %v", e.Attempts, e.Raw)
			}
			if holding[k] != nil {
				t.Errorf("owner %v acquired twice without a release in between: %v", k, e.Raw)
			}
			holding[k] = e
		case "released":
			released++
			if msg := str(e.Raw["message"]); msg != relMsg {
				t.Errorf("released message %q, want %q", msg, relMsg)
			}
			if e.Reason != "unlock" {
				t.Errorf("released with reason %q, want unlock (oslo unlocks before closing): %v", e.Reason, e.Raw)
			}
			if holding[k] == nil {
				t.Errorf("owner %v released without holding: %v", k, e.Raw)
			}
			holding[k] = nil
		default:
			t.Errorf("unexpected %s event: %v", e.Event, e.Raw)
		}
	}
	for k, e := range holding {
		if e != nil {
			t.Errorf("owner %v acquired and never released: %v", k, e.Raw)
		}
	}
	for k, e := range waitingFor {
		if e != nil {
			t.Errorf("owner %v waited and never acquired: %v", k, e.Raw)
		}
	}
	if acquired != want || released != want {
		t.Errorf("audit log has %d acquired and %d released events for %s, want %d each", acquired, released, name, want)
	}
	t.Logf("%s: %d acquired, %d released, %d waiting events", name, acquired, released, waiting)
}

// TestClientsOsloLockutils: several processes take Tempest's
// availability_zone lock with oslo lockutils, as Tempest's
// LockFixture does, around a critical section.
func TestClientsOsloLockutils(t *testing.T) {
	requireClients(t, "oslo_concurrency.lockutils")
	m := mountLockfs(t)
	const procs, iters = 4, 25
	pids, marks := runClients(t, "oslo", m.Dir, procs, iters, nil)
	sections := checkExclusive(t, marks)
	for _, pid := range pids {
		if sections[pid] != iters {
			t.Errorf("pid %d ran %d critical sections, want %d", pid, sections[pid], iters)
		}
	}
	requireZeroByteFile(t, filepath.Join(m.Dir, "tempest-availability_zone"))
	checkExclusiveAudit(t, m, "tempest-availability_zone", pids, procs*iters)
}

// TestClientsTempestLockFixture: Tempest's own LockFixture in a
// testtools TestCase, lock_path set with lockutils.set_defaults, from
// several processes at once; cleanups run under the lock.
func TestClientsTempestLockFixture(t *testing.T) {
	requireClients(t, "testtools", "oslo_concurrency.lockutils", "tempest.common.tempest_fixtures")
	m := mountLockfs(t)
	const procs, iters = 4, 10
	pids, marks := runClients(t, "fixture", m.Dir, procs, iters, nil)
	sections := checkExclusive(t, marks)
	for _, pid := range pids {
		if sections[pid] != iters {
			t.Errorf("pid %d ran %d tests under the lock, want %d", pid, sections[pid], iters)
		}
	}
	requireZeroByteFile(t, filepath.Join(m.Dir, "tempest-availability_zone"))
	checkExclusiveAudit(t, m, "tempest-availability_zone", pids, procs*iters)
}

// TestClientsFastenersReaderWriter: Tempest's serial rw lock
// (fasteners.InterProcessReaderWriterLock on tempest-serial-rw-lock)
// from reader and writer processes. Readers share: at least two are
// inside together. A writer is always alone.
func TestClientsFastenersReaderWriter(t *testing.T) {
	requireClients(t, "fasteners")
	m := mountLockfs(t)
	const readers, writers, iters = 3, 2, 10
	pids, marks := runClients(t, "rw", m.Dir, readers+writers, iters, func(i int) []string {
		role := "reader"
		if i >= readers {
			role = "writer"
		}
		return []string{role, strconv.FormatFloat(clientRendezvousTimeout.Seconds(), 'f', -1, 64)}
	})
	rd, wr := map[int]bool{}, map[int]bool{}
	maxReaders := 0
	var writer *clientMark
	for i := range marks {
		mk := &marks[i]
		switch mk.what {
		case "R+":
			if writer != nil {
				t.Fatalf("reader %v entered while writer %v was inside", mk, writer)
			}
			if rd[mk.pid] {
				t.Fatalf("reader %v entered twice", mk)
			}
			rd[mk.pid] = true
			maxReaders = max(maxReaders, len(rd))
		case "R-":
			if !rd[mk.pid] {
				t.Fatalf("reader %v left without entering", mk)
			}
			delete(rd, mk.pid)
		case "W+":
			if writer != nil || len(rd) > 0 {
				t.Fatalf("writer %v entered while writer %v and %d readers were inside", mk, writer, len(rd))
			}
			writer = mk
			wr[mk.pid] = true
		case "W-":
			if writer == nil || writer.pid != mk.pid {
				t.Fatalf("writer %v left without entering", mk)
			}
			writer = nil
		default:
			t.Fatalf("unexpected marker %v", mk)
		}
	}
	if len(rd) > 0 || writer != nil {
		t.Fatalf("left inside at the end: readers %v, writer %v", rd, writer)
	}
	if maxReaders < 2 {
		t.Errorf("at most %d reader inside at a time: read locks did not share", maxReaders)
	}
	if len(wr) != writers {
		t.Errorf("%d writers ran, want %d", len(wr), writers)
	}
	t.Logf("up to %d readers inside together", maxReaders)

	// The audit trail: one read (or write) acquisition per section,
	// each released by unlock.
	name := "tempest-serial-rw-lock"
	requireZeroByteFile(t, filepath.Join(m.Dir, name))
	count := map[string]int{}
	for _, e := range lockEvents(m.Events(t), name) {
		if !slices.Contains(pids, e.Pid) {
			t.Errorf("event from pid %d, not one of the clients %v: %v", e.Pid, pids, e.Raw)
		}
		count[e.Event+"/"+e.Mode]++
		if e.Event == "released" && e.Reason != "unlock" {
			t.Errorf("released with reason %q, want unlock: %v", e.Reason, e.Raw)
		}
	}
	for _, k := range []string{"acquired/read", "released/read"} {
		if count[k] != readers*iters {
			t.Errorf("%d %s events, want %d (all: %v)", count[k], k, readers*iters, count)
		}
	}
	for _, k := range []string{"acquired/write", "released/write"} {
		if count[k] != writers*iters {
			t.Errorf("%d %s events, want %d (all: %v)", count[k], k, writers*iters, count)
		}
	}
}

// TestClientsFastenersPollerAggregated: a fasteners poller retrying
// F_SETLK against a holder is logged as one waiting and one acquired
// event (attempts as counted by fasteners itself, waited_s), not one
// line per retry.
func TestClientsFastenersPollerAggregated(t *testing.T) {
	requireClients(t, "fasteners")
	m := mountLockfs(t)
	name := "tempest-compute_quotas"
	path := filepath.Join(m.Dir, name)

	holder := startPython(t, "holder", "hold", path)
	holder.expectLine(t, "held")
	poller := startPython(t, "poller", "poll", path)
	poller.expectLine(t, "polling")
	waitForEvent(t, m, "waiting event of the poller", func(e Event) bool {
		return e.Lock == name && e.Event == "waiting" && e.Pid == poller.pid()
	})
	// Let the poller retry a few times, then release.
	time.Sleep(clientPollWindow)
	if !poller.running() {
		t.Fatalf("poller exited while the lock was held\nstderr:\n%s", poller.stderr)
	}
	if _, err := io.WriteString(holder.stdin, "release\n"); err != nil {
		t.Fatal(err)
	}
	holder.expectLine(t, "released")
	if code := holder.waitExit(t, clientStepTimeout); code != 0 {
		t.Fatalf("holder exited %d\nstderr:\n%s", code, holder.stderr)
	}
	got := poller.expectLine(t, "got attempts=")
	attempts, _ := strconv.Atoi(strings.TrimPrefix(got, "got attempts="))
	if code := poller.waitExit(t, clientStepTimeout); code != 0 {
		t.Fatalf("poller exited %d\nstderr:\n%s", code, poller.stderr)
	}
	if attempts < 2 {
		t.Fatalf("fasteners says the poller needed %d attempts; the scenario did not contend", attempts)
	}

	evs := lockEvents(m.Events(t), name)
	var seq []string
	var wait, acq *Event
	for i := range evs {
		e := &evs[i]
		if e.Pid != poller.pid() {
			continue
		}
		seq = append(seq, e.Event)
		switch e.Event {
		case "waiting":
			wait = e
		case "acquired":
			acq = e
		}
	}
	if want := []string{"waiting", "acquired", "released"}; !slices.Equal(seq, want) {
		t.Fatalf("poller's events %v, want %v:\n%s", seq, want, dumpEvents(evs))
	}
	if bp := int(num(wait.Raw["blocker_pid"])); bp != holder.pid() {
		t.Errorf("waiting event names blocker_pid %d, want the holder %d: %v", bp, holder.pid(), wait.Raw)
	}
	if acq.Attempts != attempts {
		t.Errorf("acquired event says attempts=%d; fasteners made %d attempts", acq.Attempts, attempts)
	}
	if acq.WaitedS < clientPollWindow.Seconds() {
		t.Errorf("acquired event says waited_s=%g; the poller waited at least %v", acq.WaitedS, clientPollWindow)
	}
	t.Logf("poller: attempts=%d waited_s=%g", acq.Attempts, acq.WaitedS)
}

// TestClientsFlockCommand: flock(1) on a lockfs file. -n fails with
// exit status 1 while another flock(1) holds the lock (and is logged as
// a poller that gave up); -w waits, and gets the lock once the holder
// exits.
func TestClientsFlockCommand(t *testing.T) {
	flock := requireTool(t, "flock")
	m := mountLockfs(t)
	path := filepath.Join(m.Dir, "x")

	// The holder keeps the lock until its stdin closes.
	holder := startClient(t, "flock holder", flock, path, "sh", "-c", "echo held; exec cat >/dev/null")
	holder.expectLine(t, "held")

	nb := startClient(t, "flock -n", flock, "-n", path, "true")
	if code := nb.waitExit(t, clientStepTimeout); code != 1 {
		t.Errorf("flock -n on a held lock exited %d, want 1\nstderr:\n%s", code, nb.stderr)
	}

	waiter := startClient(t, "flock -w", flock, "-w", "5", path, "true")
	waitForEvent(t, m, "waiting event of flock -w", func(e Event) bool {
		return e.Lock == "x" && e.Event == "waiting" && e.Pid == waiter.pid()
	})
	time.Sleep(clientMustBlockFor)
	if !waiter.running() {
		t.Fatalf("flock -w exited (%v) while the lock was held", waiter.cmd.ProcessState)
	}
	holder.stdin.Close()
	if code := holder.waitExit(t, clientStepTimeout); code != 0 {
		t.Errorf("flock holder exited %d\nstderr:\n%s", code, holder.stderr)
	}
	if code := waiter.waitExit(t, clientStepTimeout); code != 0 {
		t.Errorf("flock -w exited %d after the holder released, want 0\nstderr:\n%s", code, waiter.stderr)
	}

	byPid := map[int][]string{}
	evs := lockEvents(m.Events(t), "x")
	for _, e := range evs {
		if e.Kind != "flock" {
			t.Errorf("flock(1) event with kind %q: %v", e.Kind, e.Raw)
		}
		byPid[e.Pid] = append(byPid[e.Pid], e.Event)
	}
	for _, c := range []struct {
		p    *clientProc
		want []string
	}{
		{holder, []string{"acquired", "released"}},
		{nb, []string{"waiting", "gave_up"}},
		{waiter, []string{"waiting", "acquired", "released"}},
	} {
		if got := byPid[c.p.pid()]; !slices.Equal(got, c.want) {
			t.Errorf("%s (pid %d): events %v, want %v\n%s", c.p.name, c.p.pid(), got, c.want, dumpEvents(evs))
		}
	}
}
