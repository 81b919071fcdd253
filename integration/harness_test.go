package integration

// The mount harness: building the lockfs command, mounting lockfs and
// tmpfs on temporary directories, tearing them down, and reading the
// audit log. Other test files in this package reuse it:
//
//	m := mountLockfs(t)      // lockfs served by its own process at m.Dir
//	dir := mountTmpfs(t)     // the kernel reference
//	evs := m.Events(t)       // the audit log so far, parsed
//
// Both mounts are removed by t.Cleanup, after every actor the test
// started has been stopped (cleanups run last-in first-out, and actors
// are always started after their mount).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockfs/lockfs/internal/mountinfo"
)

const (
	// mountTimeout bounds how long the daemon may take to show up in
	// /proc/self/mountinfo.
	mountTimeout = 10 * time.Second
	// stopTimeout bounds how long the daemon may take to unmount and
	// exit after SIGTERM.
	stopTimeout = 10 * time.Second
	// requireFUSEEnv turns every "cannot mount here" skip into a failure.
	requireFUSEEnv = "LOCKFS_REQUIRE_FUSE"
	// lockfsBinEnv names a prebuilt lockfs binary to test instead of
	// building ./cmd/lockfs.
	lockfsBinEnv = "LOCKFS_BIN"
)

// The lockfs binary built once by TestMain, or the reason it could not be.
var (
	lockfsBin      string
	lockfsBuildErr error
)

func TestMain(m *testing.M) {
	if os.Getenv(actorEnv) != "" {
		// Re-executed as a lock actor (actor_test.go): never run tests.
		os.Exit(actorMain())
	}
	removeStaleBuildDirs()
	tmp, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", buildDirPrefix, os.Getpid()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.Exit(2)
	}
	if bin := os.Getenv(lockfsBinEnv); bin != "" {
		lockfsBin = bin // a prebuilt binary: test exactly that one
		if _, err := os.Stat(bin); err != nil {
			lockfsBuildErr = fmt.Errorf("%s: %w", lockfsBinEnv, err)
		}
	} else {
		lockfsBin, lockfsBuildErr = buildLockfs(tmp)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// buildDirPrefix names the temporary directories holding the built
// binary: buildDirPrefix + the test process's pid + "-" + random.
const buildDirPrefix = "lockfs-integration-"

// removeStaleBuildDirs removes the build directories of test processes
// that died without cleaning up (a panic, a timeout kill): those whose
// pid no longer exists.
func removeStaleBuildDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), buildDirPrefix+"*-*"))
	for _, d := range dirs {
		pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), buildDirPrefix), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
			os.RemoveAll(d)
		}
	}
}

// buildLockfs builds ./cmd/lockfs of the enclosing module into dir.
func buildLockfs(dir string) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root := filepath.Dir(wd) // the tests run in <module>/integration
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("module root not found above %s: %w", wd, err)
	}
	bin := filepath.Join(dir, "lockfs")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/lockfs")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/lockfs: %v\n%s", err, out)
	}
	return bin, nil
}

// skipOrFail skips the test with the reason, or fails it when
// LOCKFS_REQUIRE_FUSE=1 says this machine must be able to run it.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(requireFUSEEnv) == "1" {
		t.Fatalf(format+" (and %s=1)", append(args, requireFUSEEnv)...)
	}
	t.Skipf(format, args...)
}

// requireFUSE skips (or fails, see skipOrFail) unless a FUSE file system
// can be mounted here: /dev/fuse opens, and fusermount3 and mount exist.
func requireFUSE(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		skipOrFail(t, "FUSE unavailable: %v", err)
	}
	f.Close()
	for _, tool := range []string{"fusermount3", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "FUSE unavailable: %s not found: %v", tool, err)
		}
	}
}

// requireMountPrivilege skips (or fails) unless the test runs as root,
// which mountTmpfs needs.
func requireMountPrivilege(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "mounting tmpfs needs root (euid %d)", os.Geteuid())
	}
}

// mountTmpfs mounts a fresh tmpfs on a temporary directory and returns
// it. It is unmounted by t.Cleanup.
func mountTmpfs(t testing.TB) string {
	t.Helper()
	requireMountPrivilege(t)
	dir := realDir(t, t.TempDir())
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
		if errors.Is(err, unix.EPERM) {
			skipOrFail(t, "mount -t tmpfs %s: %v", dir, err)
		}
		t.Fatalf("mount -t tmpfs %s: %v", dir, err)
	}
	t.Cleanup(func() {
		var err error
		for deadline := time.Now().Add(stopTimeout); ; time.Sleep(20 * time.Millisecond) {
			if err = unix.Unmount(dir, 0); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Errorf("umount %s: %v; detaching it", dir, err)
			unix.Unmount(dir, unix.MNT_DETACH)
		}
		if _, ok := mountedAt(dir); ok {
			t.Errorf("%s is still mounted after cleanup", dir)
		}
	})
	return dir
}

// Mount is a lockfs daemon started by mountLockfs.
type Mount struct {
	Dir     string      // the mount point
	LogPath string      // the daemon's JSON audit log
	Proc    *os.Process // the daemon; the test must never serve its own mount

	stderrPath string
	exited     chan struct{} // closed once the daemon has been reaped
	state      *os.ProcessState
}

// mountLockfs starts `lockfs mount --foreground` on a new directory,
// waits until the kernel lists it as fuse.lockfs and returns it. extra
// flags go before the mount point. t.Cleanup unmounts it with SIGTERM
// (falling back to umount -l and SIGKILL of this daemon only) and checks
// that the daemon exited 0 and the mount is gone.
func mountLockfs(t testing.TB, extra ...string) *Mount {
	t.Helper()
	requireFUSE(t)
	if lockfsBuildErr != nil {
		t.Fatalf("lockfs binary: %v", lockfsBuildErr)
	}
	tmp := realDir(t, t.TempDir())
	m := &Mount{
		Dir:        filepath.Join(tmp, "mnt"), // created by the daemon
		LogPath:    filepath.Join(tmp, "lockfs.log"),
		stderrPath: filepath.Join(tmp, "lockfs.stderr"),
		exited:     make(chan struct{}),
	}
	stderr, err := os.Create(m.stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	args := append([]string{"mount", "--foreground", "--log-file", m.LogPath, "--log-format", "json"}, extra...)
	cmd := exec.Command(lockfsBin, append(args, m.Dir)...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start lockfs: %v", err)
	}
	m.Proc = cmd.Process
	go func() {
		cmd.Wait()
		m.state = cmd.ProcessState
		close(m.exited)
	}()
	t.Cleanup(func() { m.stop(t) })

	for deadline := time.Now().Add(mountTimeout); ; time.Sleep(10 * time.Millisecond) {
		if fstype, ok := mountedAt(m.Dir); ok {
			if fstype != "fuse.lockfs" {
				t.Fatalf("%s mounted with type %q, want fuse.lockfs", m.Dir, fstype)
			}
			return m
		}
		select {
		case <-m.exited:
			t.Fatalf("lockfs exited before mounting (%v):\n%s", m.state, m.Stderr())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("lockfs not mounted at %s after %v:\n%s", m.Dir, mountTimeout, m.Stderr())
		}
	}
}

// stop unmounts m the way an operator would: SIGTERM, repeated every
// second (lockfs refuses to unmount while files are open and keeps
// serving; each SIGTERM retries) for at most stopTimeout. Anything
// holding files open should already be gone. As a last resort the mount
// is detached and this daemon, and only it, is killed.
func (m *Mount) stop(t testing.TB) {
	select {
	case <-m.exited:
		t.Errorf("lockfs exited before cleanup (%v):\n%s", m.state, m.Stderr())
	default:
		deadline := time.After(stopTimeout)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		m.Proc.Signal(syscall.SIGTERM)
	wait:
		for sent := 1; ; sent++ {
			select {
			case <-m.exited:
				if !m.state.Success() {
					t.Errorf("lockfs exited with %v after SIGTERM:\n%s", m.state, m.Stderr())
				}
				if sent > 1 {
					t.Logf("lockfs needed %d SIGTERMs to unmount", sent)
				}
				break wait
			case <-tick.C:
				m.Proc.Signal(syscall.SIGTERM)
			case <-deadline:
				t.Errorf("lockfs still running %v after SIGTERM; detaching the mount and killing it:\n%s",
					stopTimeout, m.Stderr())
				exec.Command("umount", "-l", m.Dir).Run()
				m.Proc.Kill()
				<-m.exited
				break wait
			}
		}
	}
	checkLogKeeper(t, m.LogPath)
	for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, ok := mountedAt(m.Dir); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s is still in /proc/self/mountinfo after lockfs exited; detaching it", m.Dir)
			exec.Command("umount", "-l", m.Dir).Run()
			return
		}
	}
}

// checkLogKeeper fails t if lockfs reported that its log spool's keeper
// died: a keeper that cannot run (lockfs then writes each line itself)
// would leave the spool's crash path untested while everything passes.
func checkLogKeeper(t testing.TB, logPath string) {
	t.Helper()
	b, _ := os.ReadFile(logPath)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, `"event":"log_keeper_exited"`) {
			t.Errorf("lockfs's log keeper exited while lockfs ran: %s", l)
		}
	}
}

// Stderr returns what the daemon wrote to stdout and stderr so far.
func (m *Mount) Stderr() string {
	b, _ := os.ReadFile(m.stderrPath)
	return string(b)
}

// Event is one line of the audit log. Fields missing from a line are
// zero; Raw keeps the whole line.
type Event struct {
	Event    string // waiting, acquired, released, interrupted, deadlock, gave_up
	Lock     string // file name
	Path     string
	Kind     string // posix, ofd, flock
	Mode     string // read, write
	Start    int64
	End      int64
	Pid      int
	Owner    string
	WaitedS  float64
	Attempts int
	HeldS    float64
	Reason   string
	Raw      map[string]any
}

// Events parses the audit log written so far. Lines without an "event"
// field (start-up messages and the like) are left out.
func (m *Mount) Events(t testing.TB) []Event {
	t.Helper()
	b, err := readSettled(m.LogPath)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	var evs []Event
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var raw map[string]any
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("audit log line %d is not JSON: %v\n%s", n, err, line)
		}
		if _, ok := raw["event"]; !ok {
			continue
		}
		evs = append(evs, Event{
			Event: str(raw["event"]), Lock: str(raw["lock"]), Path: str(raw["path"]),
			Kind: str(raw["kind"]), Mode: str(raw["mode"]),
			Start: int64(num(raw["start"])), End: int64(num(raw["end"])),
			Pid: int(num(raw["pid"])), Owner: str(raw["owner"]),
			WaitedS: num(raw["waited_s"]), Attempts: int(num(raw["attempts"])),
			HeldS: num(raw["held_s"]), Reason: str(raw["reason"]),
			Raw: raw,
		})
	}
	return evs
}

// readSettled reads a log file once it has stopped growing. lockfs
// writes audit events from a queue, a moment after the lock call that
// caused them returned (see package logging), so a test that has just
// seen a call return waits for the writer to catch up.
func readSettled(path string) ([]byte, error) {
	const settle, limit = 30 * time.Millisecond, 5 * time.Second
	b, err := os.ReadFile(path)
	for deadline := time.Now().Add(limit); err == nil && time.Now().Before(deadline); {
		time.Sleep(settle)
		var again []byte
		if again, err = os.ReadFile(path); err == nil && len(again) == len(b) {
			return again, nil
		}
		b = again
	}
	return b, err
}

func str(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

func num(v any) float64 {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return float64(i)
		}
		f, _ := v.Float64()
		return f
	case string:
		f, _ := strconv.ParseFloat(v, 64)
		return f
	}
	return 0
}

// mountedAt reports whether dir is a mount point in this process's mount
// namespace, and the file system type of the topmost mount on it.
func mountedAt(dir string) (fstype string, ok bool) {
	e, ok, err := mountinfo.At(dir)
	if err != nil || !ok {
		return "", false
	}
	return e.FSType, true
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, …) of
// /proc/self/mountinfo paths.
func unescapeMountinfo(s string) string { return mountinfo.Unescape(s) }

// realDir resolves symlinks, so that the path matches mountinfo.
func realDir(t testing.TB, dir string) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// lockedBuffer is a bytes.Buffer safe for one writer and many readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
