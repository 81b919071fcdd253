package integration

// Worker processes for the reliability tests (soak_test.go,
// crash_test.go, limits_test.go, security_test.go): the test binary
// re-executed with LOCKFS_REL_ROLE set. The role runs from init(), before
// TestMain, so it needs nothing from the harness; each role reads its
// parameters from LOCKFS_REL_* variables, talks on stdin/stdout, and
// exits when stdin closes (so a worker never outlives a dead test).
//
// Workers lock through golang.org/x/sys/unix like any C program would,
// and never serve the mount they use. Timestamps they record are
// CLOCK_MONOTONIC nanoseconds, comparable between processes.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const relRoleEnv = "LOCKFS_REL_ROLE"

// relRoles maps a role name to its main function.
var relRoles = map[string]func() int{
	"soak":     soakWorkerMain,
	"probe":    probeMain,
	"waiters":  waitersMain,
	"cycles":   cyclesMain,
	"mkfiles":  mkfilesMain,
	"relactor": relActorMain,
	"recycle":  recycleMain,
}

func init() {
	role := os.Getenv(relRoleEnv)
	if role == "" {
		return
	}
	main, ok := relRoles[role]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", relRoleEnv, role)
		os.Exit(2)
	}
	os.Exit(main())
}

// relMonoNow is CLOCK_MONOTONIC in nanoseconds: one clock for the test and
// every worker.
func relMonoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

func relEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// relExitOnEOF closes done once stdin reaches EOF: the test closed it, or
// died.
func relExitOnEOF() <-chan struct{} {
	done := make(chan struct{})
	go func() {
		r := bufio.NewReader(os.Stdin)
		for {
			if _, err := r.ReadString('\n'); err != nil {
				close(done)
				return
			}
		}
	}()
	return done
}

// ---- the client side ----------------------------------------------------

// relProc is a running worker.
type relProc struct {
	role   string
	pid    int
	cmd    *exec.Cmd
	stdin  *os.File
	lines  chan string // stdout, line by line; closed at EOF
	stderr *fileLog
	exited chan struct{} // closed once reaped
	reaped int64         // relMonoNow() when reaped
	// died is relMonoNow() when the process exited (its pidfd became
	// readable), which can be earlier than reaped on a loaded machine.
	died  atomic.Int64
	state *os.ProcessState
}

// fileLog is a worker's stderr: an unlinked temporary file, so that
// waiting for the worker never waits for a pipe to drain.
type fileLog struct{ f *os.File }

func newFileLog() (*fileLog, error) {
	f, err := os.CreateTemp("", "lockfs-rel-stderr-")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return &fileLog{f}, nil
}

func (l *fileLog) String() string {
	st, err := l.f.Stat()
	if err != nil {
		return err.Error()
	}
	b := make([]byte, min(st.Size(), 64<<10))
	n, _ := l.f.ReadAt(b, st.Size()-int64(len(b)))
	return string(b[:n])
}

// startRel starts the test binary in role with env ("K=V") added. With
// cred set it runs under those credentials (the binary must then be
// reachable by that user, see exeFor). t.Cleanup kills and reaps it.
func startRel(t testing.TB, role string, env []string, cred *syscall.Credential) *relProc {
	t.Helper()
	return startRelExe(t, relSelfExe(t), role, env, cred)
}

func relSelfExe(t testing.TB) string {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return self
}

func startRelExe(t testing.TB, exe, role string, env []string, cred *syscall.Credential) *relProc {
	t.Helper()
	p, err := spawnRel(exe, role, env, cred)
	if err != nil {
		t.Fatalf("start %s worker: %v", role, err)
	}
	t.Cleanup(func() { p.kill(t) })
	return p
}

// spawnRel starts a worker without registering a cleanup; the caller
// must kill it.
func spawnRel(exe, role string, env []string, cred *syscall.Credential) (*relProc, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	stderr, err := newFileLog()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, err
	}
	p := &relProc{role: role, stdin: inW, lines: make(chan string, 1024), stderr: stderr, exited: make(chan struct{})}
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), relRoleEnv+"="+role), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, stderr.f
	cmd.Dir = "/"
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, err
	}
	p.cmd, p.pid = cmd, cmd.Process.Pid
	if pidfd, err := unix.PidfdOpen(p.pid, 0); err == nil {
		go func() {
			defer unix.Close(pidfd)
			fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
			for {
				if _, err := unix.Poll(fds, -1); err != unix.EINTR {
					break
				}
			}
			p.died.Store(relMonoNow())
		}()
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		outR.Close()
	}()
	go func() {
		cmd.Wait()
		p.reaped = relMonoNow()
		p.state = cmd.ProcessState
		close(p.exited)
	}()
	return p, nil
}

// line returns the next stdout line, or fails after d.
func (p *relProc) line(t testing.TB, d time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			<-p.exited
			t.Fatalf("%s worker (pid %d) exited (%v) before answering:\n%s", p.role, p.pid, p.state, p.stderr)
		}
		return l
	case <-time.After(d):
		t.Fatalf("%s worker (pid %d) silent for %v (state %s):\n%s", p.role, p.pid, d, procState(p.pid), p.stderr)
	}
	return ""
}

// expect reads lines until one starts with prefix and returns it.
func (p *relProc) expect(t testing.TB, prefix string, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		l := p.line(t, time.Until(deadline))
		if strings.HasPrefix(l, prefix) {
			return l
		}
		if strings.HasPrefix(l, "FAIL") {
			t.Fatalf("%s worker: %s\n%s", p.role, l, p.stderr)
		}
	}
}

// finish closes stdin (the worker's signal to stop) and waits up to d
// for it to exit 0.
func (p *relProc) finish(t testing.TB, d time.Duration) {
	t.Helper()
	p.stdin.Close()
	select {
	case <-p.exited:
		if !p.state.Success() {
			t.Errorf("%s worker (pid %d) exited with %v:\n%s", p.role, p.pid, p.state, p.stderr)
		}
	case <-time.After(d):
		t.Errorf("%s worker (pid %d) still running %v after it was told to stop (state %s, wchan %s)",
			p.role, p.pid, d, procState(p.pid), relProcWchan(p.pid))
	}
}

// deathTime is when the worker exited: as seen through its pidfd, or
// else when it was reaped. Call it once exited is closed.
func (p *relProc) deathTime() int64 {
	if d := p.died.Load(); d != 0 {
		return d
	}
	return p.reaped
}

// kill SIGKILLs the worker and reaps it.
func (p *relProc) kill(t testing.TB) {
	p.stdin.Close()
	syscall.Kill(p.pid, syscall.SIGCONT)
	syscall.Kill(p.pid, syscall.SIGKILL)
	select {
	case <-p.exited:
		p.stderr.f.Close()
	case <-time.After(stopTimeout):
		t.Errorf("%s worker (pid %d) not reaped %v after SIGKILL (state %s, wchan %s)",
			p.role, p.pid, stopTimeout, procState(p.pid), relProcWchan(p.pid))
	}
}

// ---- /proc ---------------------------------------------------------------

// relProcMem is what /proc/PID/status says about a process's size.
type relProcMem struct {
	RSSKiB, HWMKiB, Threads int
}

func (m relProcMem) String() string {
	return fmt.Sprintf("VmRSS %.1f MiB (peak %.1f MiB), %d threads", float64(m.RSSKiB)/1024, float64(m.HWMKiB)/1024, m.Threads)
}

func relReadProcMem(pid int) (relProcMem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return relProcMem{}, err
	}
	var m relProcMem
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.Atoi(f[0])
		switch k {
		case "VmRSS":
			m.RSSKiB = n
		case "VmHWM":
			m.HWMKiB = n
		case "Threads":
			m.Threads = n
		}
	}
	return m, nil
}

func relProcWchan(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
	if err != nil {
		return "?"
	}
	return string(b)
}

// relProcDiag describes where each thread of pid is, for a hang report.
func relProcDiag(pid int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pid %d state %s wchan %s\n", pid, procState(pid), relProcWchan(pid))
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for i, e := range ents {
		if i >= 8 {
			fmt.Fprintf(&b, "  … %d more threads\n", len(ents)-i)
			break
		}
		sc, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/syscall", pid, e.Name()))
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stack", pid, e.Name()))
		fmt.Fprintf(&b, "  tid %s syscall %s", e.Name(), sc)
		if len(st) > 0 {
			fmt.Fprintf(&b, "%s", st)
		}
	}
	return b.String()
}

// ---- what lockfs says about its own state -------------------------------

// relViewRows reads <mnt>/.lockfs/locks.json, lockfs's listing of every
// held lock and waiter (lslocks -J shape). ok is false when this lockfs
// has no such view.
func relViewRows(dir string) (rows []map[string]any, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, ".lockfs", "locks.json"))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, false, nil
		}
		return nil, false, err
	}
	var doc struct {
		Locks []map[string]any `json:"locks"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, true, fmt.Errorf("locks.json: %v\n%s", err, b)
	}
	return doc.Locks, true, nil
}

// ---- probe: is every lock file free? -------------------------------------

// probeMain checks that each file named on stdin (one per line, relative
// to LOCKFS_REL_DIR) can be locked in every way at once-free: a classic
// POSIX write lock, an OFD write lock and an exclusive flock, all
// without waiting. It answers "FREE name" or "BUSY name what errno".
func probeMain() int {
	dir := os.Getenv("LOCKFS_REL_DIR")
	out := bufio.NewWriter(os.Stdout)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		name := sc.Text()
		fmt.Fprintln(out, relProbeFile(filepath.Join(dir, name), name))
		out.Flush()
	}
	return 0
}

func relProbeFile(path, name string) string {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Sprintf("BUSY %s open %v", name, err)
	}
	defer unix.Close(fd)
	whole := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &whole); err != nil {
		return fmt.Sprintf("BUSY %s posix %v", name, err)
	}
	whole.Type = unix.F_UNLCK
	if err := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &whole); err != nil {
		return fmt.Sprintf("BUSY %s posix-unlock %v", name, err)
	}
	whole.Type = unix.F_WRLCK
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &whole); err != nil {
		return fmt.Sprintf("BUSY %s ofd %v", name, err)
	}
	whole.Type = unix.F_UNLCK
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &whole); err != nil {
		return fmt.Sprintf("BUSY %s ofd-unlock %v", name, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fmt.Sprintf("BUSY %s flock %v", name, err)
	}
	if err := unix.Flock(fd, unix.LOCK_UN); err != nil {
		return fmt.Sprintf("BUSY %s flock-unlock %v", name, err)
	}
	return "FREE " + name
}

// relRequireAllFree probes names in dir until every one is free, for up to
// d (RELEASE, which ends flock and OFD locks, reaches lockfs
// asynchronously after the last close). It returns the files still busy.
func relRequireAllFree(t testing.TB, dir string, names []string, d time.Duration) []string {
	t.Helper()
	busy, _ := relProbeAll(t, dir, names, d)
	return busy
}

// relProbeAll is relRequireAllFree, also returning the pid of the probe
// process (its own locks are in the audit log).
func relProbeAll(t testing.TB, dir string, names []string, d time.Duration) ([]string, int) {
	t.Helper()
	p := startRel(t, "probe", []string{"LOCKFS_REL_DIR=" + dir}, nil)
	defer p.finish(t, mustFinishWithin)
	busy := names
	deadline := time.Now().Add(d)
	for {
		var still []string
		for _, n := range busy {
			fmt.Fprintln(p.stdin, n)
			if r := p.line(t, mustFinishWithin); !strings.HasPrefix(r, "FREE ") {
				still = append(still, r)
			}
		}
		if len(still) == 0 || time.Now().After(deadline) {
			return still, p.pid
		}
		busy = busy[:0]
		for _, r := range still {
			busy = append(busy, strings.Fields(r)[1])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---- lockfs's metrics ------------------------------------------------------

// relMountWithMetrics mounts lockfs with --metrics-listen on a free local
// port when the command has that flag, and returns the metrics address
// ("" without it).
func relMountWithMetrics(t *testing.T, extra ...string) (*Mount, string) {
	t.Helper()
	if !relSupportsFlag(t, "--metrics-listen") {
		return mountLockfs(t, extra...), ""
	}
	m := mountLockfs(t, append([]string{"--metrics-listen=127.0.0.1:0"}, extra...)...)
	for deadline := time.Now().Add(mountTimeout); ; time.Sleep(20 * time.Millisecond) {
		for _, e := range m.Events(t) {
			if e.Event == "metrics_listening" {
				if addr := str(e.Raw["addr"]); addr != "" {
					return m, addr
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics_listening line in the log of a lockfs mounted with --metrics-listen")
		}
	}
}

// relScrapeMetrics reads lockfs's Prometheus metrics and sums each metric
// over its label values.
func relScrapeMetrics(addr string) (map[string]float64, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out, sc.Err()
}

// relSupportsFlag reports whether `lockfs mount --help` lists flag.
func relSupportsFlag(t testing.TB, flag string) bool {
	t.Helper()
	if lockfsBuildErr != nil {
		t.Fatalf("lockfs binary: %v", lockfsBuildErr)
	}
	out, _ := exec.Command(lockfsBin, "mount", "--help").CombinedOutput()
	return strings.Contains(string(out), flag)
}
