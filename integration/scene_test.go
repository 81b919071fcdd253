package integration

// A scene is one run of a lock scenario in one directory: the actors and
// external processes it starts, and the ordered outcome log that the
// differential suite compares between tmpfs and lockfs. Every outcome is
// a normalised string: pids become role names ("A", "A.child", "py"),
// -1 becomes "ofd", so the logs of two runs can be compared literally.
//
// Blocking is asserted with two constants and never as a measure of
// speed: a call "blocks" when its thread is seen inside fcntl/flock and
// then has not returned for mustBlockFor; a call expected to complete
// may take up to mustFinishWithin.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// mustBlockFor is how long a call must stay blocked, once inside the
	// kernel, to count as blocked.
	mustBlockFor = 200 * time.Millisecond
	// mustFinishWithin bounds every call expected to return.
	mustFinishWithin = 10 * time.Second
	// mustDieWithin bounds how long a SIGKILLed lock waiter may take to
	// be reaped (LOCK-SEMANTICS R9: an interrupted wait must end, not
	// leave the process in D state until the lock frees).
	mustDieWithin = time.Second
)

// abort stops a scenario whose step could not complete; the scene's end
// turns it into a last log line.
type abort string

type scene struct {
	t   *testing.T
	dir string

	mu    sync.Mutex // guards out and roles
	out   []string
	roles map[int]string // pid → role name
}

// newScene starts a scene in dir. Use it as
//
//	s := newScene(t, dir)
//	defer s.end(&out)
//
// with a named result out.
func newScene(t *testing.T, dir string) *scene {
	return &scene{t: t, dir: dir, roles: map[int]string{}}
}

// end stores the outcome log in *out, also after an abort.
func (s *scene) end(out *[]string) {
	if r := recover(); r != nil {
		a, ok := r.(abort)
		if !ok {
			panic(r)
		}
		s.logf("ABORTED: %s", string(a))
		s.t.Errorf("scenario aborted: %s", string(a))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	*out = append([]string(nil), s.out...)
}

// logf appends a line to the outcome log.
func (s *scene) logf(format string, args ...any) {
	s.t.Helper()
	line := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.out = append(s.out, line)
	s.mu.Unlock()
	s.t.Log(line)
}

// fail aborts the scenario.
func (s *scene) fail(format string, args ...any) {
	panic(abort(fmt.Sprintf(format, args...)))
}

func (s *scene) role(pid int, name string) {
	s.mu.Lock()
	s.roles[pid] = name
	s.mu.Unlock()
}

var pidRE = regexp.MustCompile(`pid=(-?\d+)`)

// norm replaces pids by role names.
func (s *scene) norm(reply string) string {
	return pidRE.ReplaceAllStringFunc(reply, func(m string) string {
		pid, _ := strconv.Atoi(m[len("pid="):])
		s.mu.Lock()
		name, ok := s.roles[pid]
		s.mu.Unlock()
		switch {
		case ok:
			return "pid=" + name
		case pid == -1:
			return "pid=ofd"
		case pid == 0:
			return "pid=0"
		}
		return "pid=?" + strconv.Itoa(pid) // no role: differs from run to run
	})
}

// want records a failure when a step's outcome is not the documented one
// (LOCK-SEMANTICS §7). It guards the scenario itself: on tmpfs it shows
// the scenario really exercises what it claims.
func (s *scene) want(got, want string) {
	s.t.Helper()
	if got != want {
		s.t.Errorf("got %q, want %q", got, want)
	}
}

// ---- actors -----------------------------------------------------------

// actor starts a new actor process playing role name.
func (s *scene) actor(name string) *actor {
	s.t.Helper()
	a := startActor(s.t, name, s.dir, "")
	s.role(a.pid, name)
	return a
}

// fork starts name as a "fork child" of parent: a new process holding
// copies of all of parent's handles (see actor_test.go).
func (s *scene) fork(parent *actor, name string) *actor {
	s.t.Helper()
	r, ok := parent.start("fdtable").wait(mustFinishWithin)
	if !ok || !strings.HasPrefix(r, "OK ") {
		s.fail("%s: fdtable: %q", parent.name, r)
	}
	a := startActor(s.t, name, s.dir, strconv.Itoa(parent.pid)+" "+strings.TrimPrefix(r, "OK "))
	s.role(a.pid, name)
	s.logf("%s: fork => %s", parent.name, name)
	return a
}

// do runs a command to completion and logs it.
func (s *scene) do(a *actor, format string, args ...any) string {
	s.t.Helper()
	return s.finish(s.start(a, format, args...))
}

// start sends a command without waiting; finish or mustBlock it later.
func (s *scene) start(a *actor, format string, args ...any) *call {
	return a.start(fmt.Sprintf(format, args...))
}

// finish waits for a call's answer and logs it. A call that does not
// return within mustFinishWithin aborts the scenario.
func (s *scene) finish(c *call) string {
	s.t.Helper()
	r, ok := c.wait(mustFinishWithin)
	if !ok {
		s.logf("%s: %s => still blocked after %v", c.a.name, c.cmd, mustFinishWithin)
		s.fail("%s: %s did not return", c.a.name, c.cmd)
	}
	r = s.norm(r)
	s.logf("%s: %s => %s", c.a.name, c.cmd, r)
	if strings.HasPrefix(r, "BAD") {
		s.t.Errorf("actor %s: %s: %s\n%s", c.a.name, c.cmd, r, c.a.stderr)
	}
	return r
}

// open opens name in the actor and returns the handle.
func (s *scene) open(a *actor, name, mode string) string {
	s.t.Helper()
	r := s.do(a, "open %s %s", name, mode)
	fd, ok := strings.CutPrefix(r, "OK ")
	if !ok {
		s.fail("%s: open %s: %s", a.name, name, r)
	}
	return fd
}

// mustBlock asserts that each call is waiting inside the kernel and
// stays there for mustBlockFor. The calls are checked in order, and all
// of them share one mustBlockFor period.
func (s *scene) mustBlock(calls ...*call) {
	s.t.Helper()
	for _, c := range calls {
		s.waitInKernel(c.a.name+": "+c.cmd, c.done, c.a.pid, c.threadID)
	}
	time.Sleep(mustBlockFor)
	for _, c := range calls {
		if c.isDone() {
			s.logf("%s: %s => did not block: %s", c.a.name, c.cmd, s.norm(c.reply))
		} else {
			s.logf("%s: %s => blocks", c.a.name, c.cmd)
		}
	}
}

// waitInKernel waits until thread tid() of pid is in fcntl/flock, or
// done closes (the call returned: mustBlock will log that).
func (s *scene) waitInKernel(what string, done <-chan struct{}, pid int, tid func() int) {
	s.t.Helper()
	deadline := time.Now().Add(mustFinishWithin)
	id := -1
	for {
		select {
		case <-done:
			return
		default:
		}
		if id < 0 {
			id = tid()
		}
		if inLockCall(pid, id) {
			return
		}
		if time.Now().After(deadline) {
			s.fail("%s: not seen waiting in fcntl/flock after %v", what, mustFinishWithin)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// first waits for the first of calls to return and finishes it.
func (s *scene) first(calls ...*call) *call {
	s.t.Helper()
	deadline := time.After(mustFinishWithin)
	for {
		for _, c := range calls {
			if c.isDone() {
				s.finish(c)
				return c
			}
		}
		select {
		case <-deadline:
			s.fail("none of %d calls returned within %v", len(calls), mustFinishWithin)
		case <-time.After(time.Millisecond):
		}
	}
}

// signalCall sends sig to the thread running a blocked call.
func (s *scene) signalCall(c *call, sig syscall.Signal) {
	s.t.Helper()
	tid := c.threadID()
	if tid == 0 {
		s.fail("%s: %q runs on no known thread (answered %q)", c.a.name, c.cmd, c.reply)
	}
	if err := unix.Tgkill(c.a.pid, tid, sig); err != nil {
		s.fail("tgkill %s: %v", c.a.name, err)
	}
	s.logf("%s: %v to the thread of %q", c.a.name, unix.SignalName(sig), c.cmd)
}

// signal sends sig to the whole actor process.
func (s *scene) signal(a *actor, sig syscall.Signal) {
	s.t.Helper()
	if err := syscall.Kill(a.pid, sig); err != nil {
		s.fail("kill %s: %v", a.name, err)
	}
	s.logf("%s: %v", a.name, unix.SignalName(sig))
}

// mustBeReaped checks a killed actor is gone within mustDieWithin.
func (s *scene) mustBeReaped(a *actor) {
	s.t.Helper()
	select {
	case <-a.exited:
		s.logf("%s: reaped (%v)", a.name, a.state)
	case <-time.After(mustDieWithin):
		s.logf("%s: not reaped %v after the signal (state %s)", a.name, mustDieWithin, procState(a.pid))
	}
}

// exit makes an actor exit normally and waits for it.
func (s *scene) exit(a *actor) {
	s.t.Helper()
	a.start("exit")
	select {
	case <-a.exited:
		s.logf("%s: exit => %v", a.name, a.state)
	case <-time.After(mustFinishWithin):
		s.fail("%s did not exit", a.name)
	}
}

// waitState waits until the thread running c has /proc state st (e.g.
// "T"). The thread matters: after SIGSTOP the other threads stop at
// once, while a thread inside a FUSE request first waits (killable, "D")
// for the server to answer the INTERRUPT.
func (s *scene) waitState(c *call, st string) {
	s.t.Helper()
	tid := c.threadID()
	if tid == 0 {
		s.fail("%s: %q runs on no known thread", c.a.name, c.cmd)
	}
	deadline := time.Now().Add(mustFinishWithin)
	for taskState(c.a.pid, tid) != st {
		if time.Now().After(deadline) {
			s.fail("%s: thread state %s, want %s", c.a.name, taskState(c.a.pid, tid), st)
		}
		time.Sleep(2 * time.Millisecond)
	}
	s.logf("%s: thread of %q in state %s", c.a.name, c.cmd, st)
}

// ---- external processes (flock(1), python3) ----------------------------

// ext is an external program run in the scene's directory.
type ext struct {
	name   string
	pid    int
	stdin  *os.File
	lines  chan string // stdout, line by line; closed at EOF
	stderr *lockedBuffer
	exited chan struct{}
	state  *os.ProcessState
}

// external starts argv in the scene's directory, playing role name.
// t.Cleanup kills it.
func (s *scene) external(name string, argv ...string) *ext {
	s.t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		s.t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		s.t.Fatal(err)
	}
	p := &ext{name: name, stdin: inW, lines: make(chan string, 64), stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, p.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // kill the whole group (flock -c forks a shell)
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		s.t.Fatalf("start %s: %v", argv[0], err)
	}
	p.pid = cmd.Process.Pid
	s.role(p.pid, name)
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		outR.Close()
	}()
	go func() {
		cmd.Wait()
		p.state = cmd.ProcessState
		close(p.exited)
	}()
	s.t.Cleanup(func() {
		inW.Close()
		syscall.Kill(-p.pid, syscall.SIGKILL)
		select {
		case <-p.exited:
		case <-time.After(stopTimeout):
			s.t.Errorf("%s (pid %d) not reaped after SIGKILL (state %s)", name, p.pid, procState(p.pid))
		}
	})
	return p
}

// line waits for the next stdout line of p and logs it.
func (s *scene) line(p *ext) string {
	s.t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			s.fail("%s: stdout closed; stderr: %s", p.name, p.stderr)
		}
		s.logf("%s: says %q", p.name, l)
		return l
	case <-time.After(mustFinishWithin):
		s.fail("%s: no output within %v", p.name, mustFinishWithin)
	}
	return ""
}

// send writes a line to p's stdin.
func (s *scene) send(p *ext, line string) {
	s.t.Helper()
	if _, err := fmt.Fprintln(p.stdin, line); err != nil {
		s.fail("%s: write: %v", p.name, err)
	}
}

// wait waits for p to exit and logs its remaining output and status.
func (s *scene) wait(p *ext) {
	s.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(mustFinishWithin):
		s.fail("%s: still running after %v", p.name, mustFinishWithin)
	}
	for l := range p.lines {
		s.logf("%s: says %q", p.name, l)
	}
	s.logf("%s: exit %d", p.name, p.state.ExitCode())
	if p.state.ExitCode() != 0 {
		s.t.Logf("%s stderr: %s", p.name, p.stderr)
	}
}

// mustBlockExt asserts that p waits inside fcntl/flock and neither exits
// nor prints for mustBlockFor.
func (s *scene) mustBlockExt(p *ext) {
	s.t.Helper()
	s.waitInKernel(p.name, p.exited, p.pid, func() int { return 0 })
	time.Sleep(mustBlockFor)
	select {
	case <-p.exited:
		s.logf("%s: did not block (exit %d)", p.name, p.state.ExitCode())
	default:
		if len(p.lines) > 0 {
			s.logf("%s: did not block (printed)", p.name)
		} else {
			s.logf("%s: blocks", p.name)
		}
	}
}

// ---- diff ----------------------------------------------------------------

// lineDiff returns a line diff of want and got ("-" only in want, "+"
// only in got), or "" when they are equal.
func lineDiff(want, got []string) string {
	n, m := len(want), len(got)
	// lcs[i][j] = length of the LCS of want[i:] and got[j:].
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if want[i] == got[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var b strings.Builder
	same := true
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && want[i] == got[j]:
			fmt.Fprintf(&b, "  %s\n", want[i])
			i, j = i+1, j+1
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintf(&b, "+ %s\n", got[j])
			j, same = j+1, false
		default:
			fmt.Fprintf(&b, "- %s\n", want[i])
			i, same = i+1, false
		}
	}
	if same {
		return ""
	}
	return b.String()
}
