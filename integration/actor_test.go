package integration

// Lock actors: real processes that take locks on command.
//
// POSIX lock owners are per process, so every party of a lock scenario
// must be its own process, and none may be the process serving the
// mount. An actor is the test binary re-executed with LOCKFS_ACTOR set
// (TestMain hands it to actorMain before any test runs). It reads one
// command per line on stdin and answers one line per command on stdout;
// both carry the client's sequence number:
//
//	-> 7 setlkw fd1 WR SET 0 10
//	<- 7 ~tid=4242          (blocking commands only: the thread doing it)
//	<- 7 OK
//
// Commands (fdN are the actor's handles; files are named relative to the
// directory given at start):
//
//	open NAME ro|wo|rw             OK fdN           (O_CREAT, mode 0644)
//	close fdN | dup fdN            OK | OK fdM
//	seek fdN OFF | truncate fdN N  OK
//	setlk|setlkw|getlk fdN TYPE WHENCE START LEN [PID]
//	ofd_setlk|ofd_setlkw|ofd_getlk fdN TYPE WHENCE START LEN [PID]
//	                               OK, ERR EAGAIN, ERR EDEADLK, ERR EINTR, …
//	                               GETLK UN | GETLK WR start=S len=L pid=P
//	flock fdN SH|EX|UN [NB]        OK | ERR EWOULDBLOCK (named EAGAIN)
//	thread CMD…                    CMD on a new OS thread of the actor
//	CMD1 ; CMD2 ; …                non-blocking commands run back to back
//	                               (no round trip between them); answers
//	                               joined with " ; "
//	fdtable                        OK next=N fd1=R …  (used by fork)
//	exit                           OK, then exit(0)
//
// TYPE is RD, WR or UN; WHENCE is SET, CUR, END or a number. Blocking
// commands (setlkw, ofd_setlkw, flock without NB, thread …) run on their
// own locked OS thread, so the actor keeps answering other commands (as
// another thread of the same process would) and the client can signal
// exactly the blocked thread.
//
// Go cannot fork, so a "fork" starts a new actor that copies every
// handle of its parent with pidfd_getfd(2). The copy refers to the same
// open file description, exactly like an inherited fd: flock and OFD
// locks are shared with the parent, while the child's POSIX owner (its
// fd table) differs, as after fork(2). (The child is started by the test,
// not by its "parent", so only its parent pid differs from a real fork;
// nothing here depends on it.)
//
// EINTR: Go installs its signal handlers with SA_RESTART, so a blocked
// fcntl would be restarted and never fail with EINTR. The actor lets the
// runtime install its SIGALRM handler (signal.Notify) and then clears
// SA_RESTART from that handler with a raw rt_sigaction, which makes a
// SIGALRM sent with tgkill to the blocked thread end the call with
// EINTR, like a C program whose handler lacks SA_RESTART (or Python).
// The test sends it itself (scene.signalCall, using the "~tid" line)
// once the call is seen blocked, instead of arming a timer in the actor:
// the same effect as alarm(2), without a race against mustBlockFor.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	actorEnv        = "LOCKFS_ACTOR"         // the actor's role name; selects actor mode
	actorDirEnv     = "LOCKFS_ACTOR_DIR"     // directory that file names are relative to
	actorInheritEnv = "LOCKFS_ACTOR_INHERIT" // "PID next=N fd1=R …": handles to copy (fork)

	saRestart = 0x10000000 // SA_RESTART on x86 and arm64
)

// ---- the actor process ----------------------------------------------

// actorServer is the state of one actor process.
type actorServer struct {
	dir string

	mu   sync.Mutex // guards fds, next and out
	fds  map[string]int
	next int
	out  *bufio.Writer
}

// actorMain runs the actor protocol until stdin closes or "exit".
func actorMain() int {
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, unix.SIGALRM)
	go func() {
		for range sigs {
		}
	}()
	if err := clearSARestart(unix.SIGALRM); err != nil {
		fmt.Fprintln(os.Stderr, "actor: rt_sigaction:", err)
		return 2
	}
	s := &actorServer{
		dir:  os.Getenv(actorDirEnv),
		fds:  map[string]int{},
		next: 1,
		out:  bufio.NewWriter(os.Stdout),
	}
	if inh := os.Getenv(actorInheritEnv); inh != "" {
		if err := s.inherit(inh); err != nil {
			fmt.Fprintln(os.Stderr, "actor: inherit:", err)
			return 2
		}
	}
	s.reply(0, "READY")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		idText, rest, _ := strings.Cut(in.Text(), " ")
		id, err := strconv.Atoi(idText)
		f := strings.Fields(rest)
		switch {
		case err != nil || len(f) == 0:
			s.reply(id, "BAD request "+strconv.Quote(in.Text()))
		case f[0] == "exit":
			s.reply(id, "OK")
			os.Exit(0)
		case strings.Contains(rest, ";"):
			// CMD1 ; CMD2 …: run back to back, with no round trip in
			// between; the answers are joined the same way.
			var res []string
			for _, c := range strings.Split(rest, ";") {
				res = append(res, s.exec(strings.Fields(c)))
			}
			s.reply(id, strings.Join(res, " ; "))
		case isBlocking(f):
			go s.onThread(id, f)
		default:
			s.reply(id, s.exec(f))
		}
	}
	return 0
}

// clearSARestart removes SA_RESTART from the handler installed for sig.
// The buffer follows the 64-bit kernel_sigaction layout; only the flags
// word (the second) is changed, the rest is written back as read.
func clearSARestart(sig syscall.Signal) error {
	var sa [4]uint64
	p := uintptr(unsafe.Pointer(&sa))
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), 0, p, 8, 0, 0); e != 0 {
		return e
	}
	sa[1] &^= saRestart
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), p, 0, 8, 0, 0); e != 0 {
		return e
	}
	return nil
}

func isBlocking(f []string) bool {
	switch f[0] {
	case "setlkw", "ofd_setlkw", "thread":
		return true
	case "flock":
		return len(f) < 4 || f[3] != "NB"
	}
	return false
}

// onThread runs a command on a fresh OS thread, first telling the
// client which thread that is. The thread is never unlocked, so it ends
// with the goroutine.
func (s *actorServer) onThread(id int, f []string) {
	runtime.LockOSThread()
	if f[0] == "thread" {
		f = f[1:]
	}
	s.reply(id, "~tid="+strconv.Itoa(unix.Gettid()))
	if len(f) == 0 {
		s.reply(id, "BAD empty thread command")
		return
	}
	s.reply(id, s.exec(f))
}

func (s *actorServer) reply(id int, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.out, "%d %s\n", id, text)
	s.out.Flush()
}

// inherit copies the handles listed in spec from the process that owns
// them, keeping their names.
func (s *actorServer) inherit(spec string) error {
	f := strings.Fields(spec)
	if len(f) < 2 {
		return fmt.Errorf("bad spec %q", spec)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		return err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("bad spec %q", kv)
		}
		if k == "next" {
			s.next = n
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if err != nil {
			return fmt.Errorf("pidfd_getfd %d/%d: %w", pid, n, err)
		}
		s.fds[k] = fd
	}
	return nil
}

func (s *actorServer) fd(name string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fd, ok := s.fds[name]
	if !ok {
		return -1, fmt.Errorf("no handle %s", name)
	}
	return fd, nil
}

func (s *actorServer) add(fd int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := "fd" + strconv.Itoa(s.next)
	s.next++
	s.fds[name] = fd
	return name
}

// exec runs one command and formats its answer.
func (s *actorServer) exec(f []string) string {
	if len(f) == 0 {
		return "BAD empty command"
	}
	res, err := s.run(f)
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno):
		if name := unix.ErrnoName(errno); name != "" {
			return "ERR " + strings.ToUpper(name)
		}
		return "ERR errno=" + strconv.Itoa(int(errno))
	case err != nil:
		return "BAD " + err.Error()
	}
	return res
}

var lockCmds = map[string]int{
	"setlk": unix.F_SETLK, "setlkw": unix.F_SETLKW, "getlk": unix.F_GETLK,
	"ofd_setlk": unix.F_OFD_SETLK, "ofd_setlkw": unix.F_OFD_SETLKW, "ofd_getlk": unix.F_OFD_GETLK,
}

func (s *actorServer) run(f []string) (string, error) {
	args := f[1:]
	need := func(n int) error {
		if len(args) < n {
			return fmt.Errorf("%s needs %d arguments", f[0], n)
		}
		return nil
	}
	if cmd, ok := lockCmds[f[0]]; ok {
		if err := need(5); err != nil {
			return "", err
		}
		fd, err := s.fd(args[0])
		if err != nil {
			return "", err
		}
		lk, err := parseFlock(args[1:])
		if err != nil {
			return "", err
		}
		if err := unix.FcntlFlock(uintptr(fd), cmd, &lk); err != nil {
			return "", err
		}
		if cmd == unix.F_GETLK || cmd == unix.F_OFD_GETLK {
			return formatGetlk(&lk), nil
		}
		return "OK", nil
	}
	switch f[0] {
	case "open":
		if err := need(2); err != nil {
			return "", err
		}
		mode := map[string]int{"ro": unix.O_RDONLY, "wo": unix.O_WRONLY, "rw": unix.O_RDWR}
		m, ok := mode[args[1]]
		if !ok {
			return "", fmt.Errorf("bad open mode %q", args[1])
		}
		fd, err := unix.Open(filepath.Join(s.dir, args[0]), m|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return "", err
		}
		return "OK " + s.add(fd), nil
	case "close":
		if err := need(1); err != nil {
			return "", err
		}
		fd, err := s.fd(args[0])
		if err != nil {
			return "", err
		}
		s.mu.Lock()
		delete(s.fds, args[0])
		s.mu.Unlock()
		return "OK", unix.Close(fd)
	case "dup":
		if err := need(1); err != nil {
			return "", err
		}
		fd, err := s.fd(args[0])
		if err != nil {
			return "", err
		}
		nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		return "OK " + s.add(nfd), nil
	case "seek", "truncate":
		if err := need(2); err != nil {
			return "", err
		}
		fd, err := s.fd(args[0])
		if err != nil {
			return "", err
		}
		n, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil {
			return "", err
		}
		if f[0] == "seek" {
			_, err = unix.Seek(fd, n, 0)
		} else {
			err = unix.Ftruncate(fd, n)
		}
		return "OK", err
	case "flock":
		if err := need(2); err != nil {
			return "", err
		}
		fd, err := s.fd(args[0])
		if err != nil {
			return "", err
		}
		how, ok := map[string]int{"SH": unix.LOCK_SH, "EX": unix.LOCK_EX, "UN": unix.LOCK_UN}[args[1]]
		if !ok {
			return "", fmt.Errorf("bad flock operation %q", args[1])
		}
		if len(args) > 2 && args[2] == "NB" {
			how |= unix.LOCK_NB
		}
		return "OK", unix.Flock(fd, how)
	case "fdtable":
		s.mu.Lock()
		defer s.mu.Unlock()
		var b strings.Builder
		fmt.Fprintf(&b, "OK next=%d", s.next)
		for name, fd := range s.fds {
			fmt.Fprintf(&b, " %s=%d", name, fd)
		}
		return b.String(), nil
	}
	return "", fmt.Errorf("unknown command %q", f[0])
}

// parseFlock parses TYPE WHENCE START LEN [PID].
func parseFlock(a []string) (unix.Flock_t, error) {
	var lk unix.Flock_t
	typ, ok := map[string]int16{"RD": unix.F_RDLCK, "WR": unix.F_WRLCK, "UN": unix.F_UNLCK}[a[0]]
	if !ok {
		return lk, fmt.Errorf("bad lock type %q", a[0])
	}
	lk.Type = typ
	if w, ok := map[string]int16{"SET": 0, "CUR": 1, "END": 2}[a[1]]; ok {
		lk.Whence = w
	} else if w, err := strconv.ParseInt(a[1], 10, 16); err == nil {
		lk.Whence = int16(w)
	} else {
		return lk, fmt.Errorf("bad whence %q", a[1])
	}
	var err error
	if lk.Start, err = strconv.ParseInt(a[2], 10, 64); err != nil {
		return lk, err
	}
	if lk.Len, err = strconv.ParseInt(a[3], 10, 64); err != nil {
		return lk, err
	}
	if len(a) > 4 {
		pid, err := strconv.ParseInt(a[4], 10, 32)
		if err != nil {
			return lk, err
		}
		lk.Pid = int32(pid)
	}
	return lk, nil
}

func formatGetlk(lk *unix.Flock_t) string {
	name := map[int16]string{unix.F_RDLCK: "RD", unix.F_WRLCK: "WR", unix.F_UNLCK: "UN"}[lk.Type]
	if name == "" {
		name = "type=" + strconv.Itoa(int(lk.Type))
	}
	if lk.Type == unix.F_UNLCK {
		return "GETLK UN"
	}
	s := fmt.Sprintf("GETLK %s start=%d len=%d pid=%d", name, lk.Start, lk.Len, lk.Pid)
	if lk.Whence != 0 {
		s += " whence=" + strconv.Itoa(int(lk.Whence))
	}
	return s
}

// ---- the client side (the test process) ------------------------------

// actor is a running actor process, driven from the test.
type actor struct {
	name   string
	pid    int
	stdin  *os.File
	stderr *lockedBuffer
	exited chan struct{} // closed once the process is reaped
	state  *os.ProcessState

	mu      sync.Mutex // guards nextID and pending
	nextID  int
	pending map[int]*call
}

// call is one command sent to an actor.
type call struct {
	a     *actor
	id    int
	cmd   string
	tid   int           // the thread of a blocking command, once tidSet
	tidCh chan struct{} // closed when tid is known
	done  chan struct{} // closed when reply is set
	reply string
}

// startActor starts an actor whose file names are relative to dir.
// inherit, if not empty, is a fork spec (see actorServer.inherit).
// t.Cleanup kills it.
func startActor(t testing.TB, name, dir, inherit string) *actor {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	a := &actor{
		name: name, stdin: inW, stderr: &lockedBuffer{},
		exited: make(chan struct{}), pending: map[int]*call{},
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), actorEnv+"="+name, actorDirEnv+"="+dir)
	if inherit != "" {
		cmd.Env = append(cmd.Env, actorInheritEnv+"="+inherit)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, a.stderr
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		t.Fatalf("start actor %s: %v", name, err)
	}
	a.pid = cmd.Process.Pid
	go func() {
		cmd.Wait()
		a.state = cmd.ProcessState
		close(a.exited)
	}()
	ready := &call{a: a, cmd: "(start)", tidCh: make(chan struct{}), done: make(chan struct{})}
	a.pending[0] = ready
	a.nextID = 1
	go a.read(outR)
	t.Cleanup(func() { a.stop(t) })
	select {
	case <-ready.done:
		if ready.reply != "READY" {
			t.Fatalf("actor %s did not start: %s\n%s", name, ready.reply, a.stderr)
		}
	case <-time.After(mustFinishWithin):
		t.Fatalf("actor %s not ready after %v\n%s", name, mustFinishWithin, a.stderr)
	}
	return a
}

// read delivers the actor's answers to their calls. When the actor's
// stdout closes, every unanswered call ends with "(exited)".
func (a *actor) read(r *os.File) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		idText, text, _ := strings.Cut(sc.Text(), " ")
		id, err := strconv.Atoi(idText)
		a.mu.Lock()
		c := a.pending[id]
		if err != nil || c == nil {
			a.mu.Unlock()
			continue
		}
		if tid, ok := strings.CutPrefix(text, "~tid="); ok {
			c.tid, _ = strconv.Atoi(tid)
			close(c.tidCh)
			a.mu.Unlock()
			continue
		}
		delete(a.pending, id)
		a.mu.Unlock()
		c.reply = text
		close(c.done)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, c := range a.pending {
		delete(a.pending, id)
		c.reply = "(exited)"
		close(c.done)
	}
}

// start sends a command and returns without waiting for the answer.
func (a *actor) start(cmd string) *call {
	a.mu.Lock()
	c := &call{a: a, id: a.nextID, cmd: cmd, tidCh: make(chan struct{}), done: make(chan struct{})}
	a.nextID++
	a.pending[c.id] = c
	a.mu.Unlock()
	if _, err := fmt.Fprintf(a.stdin, "%d %s\n", c.id, cmd); err != nil {
		a.mu.Lock()
		if a.pending[c.id] == c {
			delete(a.pending, c.id)
			c.reply = "(exited)"
			close(c.done)
		}
		a.mu.Unlock()
	}
	return c
}

// wait waits up to d for the answer.
func (c *call) wait(d time.Duration) (string, bool) {
	select {
	case <-c.done:
		return c.reply, true
	case <-time.After(d):
		return "", false
	}
}

// threadID returns the thread running a blocking command, or 0 (any
// thread) when the call returned without naming one.
func (c *call) threadID() int {
	select {
	case <-c.tidCh:
		return c.tid
	case <-c.done:
		return 0
	case <-time.After(mustFinishWithin):
		return 0
	}
}

// isDone reports whether the answer has arrived.
func (c *call) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop kills the actor and reaps it. An actor that cannot be reaped
// (stuck in an uninterruptible wait) is reported; the mount's cleanup,
// which runs later, will abort the connection that holds it.
func (a *actor) stop(t testing.TB) {
	a.stdin.Close()
	syscall.Kill(a.pid, syscall.SIGKILL)
	select {
	case <-a.exited:
	case <-time.After(stopTimeout):
		t.Errorf("actor %s (pid %d) not reaped %v after SIGKILL (state %s)", a.name, a.pid, stopTimeout, procState(a.pid))
	}
}

// ---- /proc helpers -----------------------------------------------------

// procState returns the state letter of /proc/PID/stat (R, S, D, T, Z…),
// or "gone".
func procState(pid int) string {
	return taskState(pid, pid)
}

// taskState is procState for one thread.
func taskState(pid, tid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
	if err != nil {
		return "gone"
	}
	// pid (comm) S …; comm may contain spaces and parentheses.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return "?"
}

// inLockCall reports whether thread tid of process pid (any thread when
// tid is 0) is inside fcntl(2) or flock(2), i.e. the lock request has
// reached the kernel and is waiting there.
func inLockCall(pid, tid int) bool {
	tids := []string{strconv.Itoa(tid)}
	if tid == 0 {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return false
		}
		tids = tids[:0]
		for _, e := range ents {
			tids = append(tids, e.Name())
		}
	}
	for _, t := range tids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/syscall", pid, t))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		if nr, err := strconv.Atoi(f[0]); err == nil && (nr == unix.SYS_FCNTL || nr == unix.SYS_FLOCK) {
			return true
		}
	}
	return false
}
