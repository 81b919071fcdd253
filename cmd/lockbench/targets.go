package main

// Targets: the directories under test, and the mounts and server
// processes lockbench sets up for the reference ones. Every server runs in
// a process of its own, in its own process group (a Ctrl-C reaches only
// lockbench, which then closes its files before it unmounts), with a
// parent-death signal so that a killed lockbench does not leave it behind.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockfs/lockfs/internal/bench"

	"github.com/lockfs/lockfs/internal/mountinfo"
)

const (
	// mountTimeout bounds how long a server may take to show up in
	// /proc/self/mountinfo.
	mountTimeout = 15 * time.Second
	// stopTimeout bounds how long a server may take to unmount and exit
	// after SIGTERM before lockbench detaches the mount and kills it.
	stopTimeout = 10 * time.Second
)

// referenceKinds are the targets lockbench can set up, with their
// description.
var referenceKinds = map[string]string{
	"tmpfs":        "tmpfs: kernel locks (the physical limit)",
	"noop":         "no-op go-fuse lock server: lockfs's shape, every lock granted at once, NO mutual exclusion (the FUSE floor)",
	"noop-log":     "no-op go-fuse lock server writing one zerolog JSON line per lock request; NO mutual exclusion",
	"lockfs":       "lockfs mount -f --log-format json (audit log to a file)",
	"lockfs-quiet": "lockfs mount -f --log-level warn (no audit lines written)",
}

// target is one directory under test.
type target struct {
	bench.Target
	// work is lockbench's own directory inside the target, removed at
	// the end.
	work string
	// logPath is the server's log file (lockfs, noop-log), whose growth
	// per operation is reported; "" otherwise.
	logPath string
}

// setupTargets creates the reference targets and adopts the DIRs, in
// column order. Every teardown is registered on cl before the thing it
// undoes exists.
func setupTargets(cfg *config, work string, cl *cleanups) ([]*target, error) {
	var out []*target
	var lockfsBin string
	for _, kind := range cfg.targets {
		if err := checkInterrupted(); err != nil {
			return out, err
		}
		t := &target{Target: bench.Target{Name: kind, Kind: kind, Exclusion: true, Description: referenceKinds[kind]}}
		dir := filepath.Join(work, kind)
		var err error
		switch kind {
		case "tmpfs":
			err = mountTmpfs(dir, cl)
		case "noop", "noop-log":
			t.Exclusion = false
			args := []string{cmdServeNoop}
			if kind == "noop-log" {
				t.logPath = filepath.Join(work, kind+".log")
				args = append(args, "-log", t.logPath)
			}
			t.ServerPID, err = startServer(selfExe(), append(args, dir), dir, "fuse."+noopFSType, filepath.Join(work, kind+".stderr"), cfg.ownSession, cl)
		case "lockfs", "lockfs-quiet":
			if lockfsBin == "" {
				if lockfsBin, err = findLockfs(cfg, work); err != nil {
					return out, err
				}
				fmt.Fprintln(os.Stderr, "lockbench: lockfs binary:", lockfsBin)
			}
			t.logPath = filepath.Join(work, kind+".log")
			args := []string{"mount", "--foreground", "--log-file", t.logPath, "--log-format", "json"}
			if kind == "lockfs-quiet" {
				args = append(args, "--log-level", "warn")
			}
			t.ServerPID, err = startServer(lockfsBin, append(args, dir), dir, "fuse.lockfs", filepath.Join(work, kind+".stderr"), cfg.ownSession, cl)
		}
		if err != nil {
			return out, fmt.Errorf("set up %s: %w", kind, err)
		}
		t.Dir = dir
		out = append(out, t)
	}
	for _, arg := range cfg.dirs {
		name, dir := arg, arg
		if i := strings.Index(arg, "="); i > 0 {
			name, dir = arg[:i], arg[i+1:]
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return out, err
		}
		if st, err := os.Stat(abs); err != nil || !st.IsDir() {
			return out, fmt.Errorf("%s: not a directory (%v)", dir, err)
		}
		desc := "directory"
		if fstype, ok := mountedAt(abs); ok {
			desc = "mount of type " + fstype
		} else if fstype := fsTypeOf(abs); fstype != "" {
			desc = "directory on " + fstype
		}
		out = append(out, &target{Target: bench.Target{Name: name, Kind: "dir", Dir: abs, Exclusion: true, Description: desc}})
	}
	seen := map[string]bool{}
	for _, t := range out {
		if seen[t.Name] {
			return out, fmt.Errorf("two targets are named %q: label DIRs with LABEL=DIR", t.Name)
		}
		seen[t.Name] = true
	}
	for _, t := range out {
		t.work = filepath.Join(t.Dir, fmt.Sprintf("lockbench-%d", os.Getpid()))
		if err := os.Mkdir(t.work, 0o755); err != nil {
			return out, fmt.Errorf("%s: %w", t.Name, err)
		}
		if t.Kind != "dir" {
			continue // its content goes with the mount
		}
		cl.add(func() error {
			if err := os.RemoveAll(t.work); err != nil {
				return fmt.Errorf("remove %s: %w", t.work, err)
			}
			return nil
		})
	}
	return out, nil
}

// selfExe is this executable, re-executed for the no-op server and the
// workers (under `go run` it is the build cache's copy, which lives until
// lockbench exits).
func selfExe() string {
	exe, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return exe
}

// mountTmpfs mounts a fresh tmpfs on dir.
func mountTmpfs(dir string, cl *cleanups) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("lockbench", dir, "tmpfs", 0, "mode=0755"); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("mount -t tmpfs %s: %w (mounting needs root; or drop tmpfs from -targets)", dir, err)
		}
		return fmt.Errorf("mount -t tmpfs %s: %w", dir, err)
	}
	cl.add(func() error { return unmount(dir) })
	return nil
}

// unmount unmounts dir, retrying EBUSY for a bounded time, then detaching
// it lazily.
func unmount(dir string) error {
	var err error
	for deadline := time.Now().Add(stopTimeout / 2); ; time.Sleep(20 * time.Millisecond) {
		if err = unix.Unmount(dir, 0); err == nil || errors.Is(err, unix.EINVAL) || time.Now().After(deadline) {
			break
		}
	}
	if _, ok := mountedAt(dir); ok {
		derr := unix.Unmount(dir, unix.MNT_DETACH)
		return fmt.Errorf("umount %s: %v; detached it lazily (%v)", dir, err, derr)
	}
	return nil
}

// findLockfs returns -lockfs, or builds ./cmd/lockfs of the lockfs module
// around the current directory into work.
func findLockfs(cfg *config, work string) (string, error) {
	if cfg.lockfs != "" {
		return filepath.Abs(cfg.lockfs)
	}
	out, err := exec.CommandContext(runCtx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v (pass -lockfs BIN)", err)
	}
	gomod := strings.TrimSpace(string(out))
	mod, _ := os.ReadFile(gomod)
	if gomod == "" || gomod == os.DevNull || !bytes.HasPrefix(mod, []byte("module github.com/lockfs/lockfs\n")) {
		return "", fmt.Errorf("not inside the lockfs module (go.mod %q): run from it or pass -lockfs BIN", gomod)
	}
	bin := filepath.Join(work, "bin", "lockfs")
	build := exec.CommandContext(runCtx, "go", "build", "-o", bin, "./cmd/lockfs")
	build.Dir = filepath.Dir(gomod)
	if out, err := build.CombinedOutput(); err != nil {
		if ierr := checkInterrupted(); ierr != nil {
			return "", ierr
		}
		return "", fmt.Errorf("go build ./cmd/lockfs: %v\n%s", err, out)
	}
	return bin, nil
}

// startServer starts a FUSE server process serving dir and waits until
// the kernel lists dir with fstype. The server runs in a process group
// of its own, in lockbench's session unless ownSession. Its teardown
// (SIGTERM, wait; else detach and SIGKILL) is registered on cl.
func startServer(bin string, args []string, dir, fstype, stderrPath string, ownSession bool, cl *cleanups) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	stderr, err := os.Create(stderrPath)
	if err != nil {
		return 0, err
	}
	defer stderr.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	// A new session is also a new process group; with autogroup
	// scheduling (the default of most distributions) it is a new
	// scheduling group too, as for a daemon or a service.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: ownSession, Setpgid: !ownSession, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	cl.add(func() error { return stopServer(cmd, exited, dir, stderrPath) })

	for deadline := time.Now().Add(mountTimeout); ; time.Sleep(10 * time.Millisecond) {
		if got, ok := mountedAt(dir); ok {
			if got != fstype {
				return 0, fmt.Errorf("%s is mounted as %s, not %s", dir, got, fstype)
			}
			return cmd.Process.Pid, nil
		}
		if err := checkInterrupted(); err != nil {
			return 0, err
		}
		select {
		case <-exited:
			return 0, fmt.Errorf("%s exited before mounting (%v): %s", filepath.Base(bin), cmd.ProcessState, tail(stderrPath))
		default:
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s did not mount %s within %v: %s", filepath.Base(bin), dir, mountTimeout, tail(stderrPath))
		}
	}
}

// stopServer ends a server started by startServer: SIGTERM makes it
// unmount and exit; if it does not within stopTimeout, the mount is
// detached and the server killed. It fails if the mount outlives it.
func stopServer(cmd *exec.Cmd, exited chan struct{}, dir, stderrPath string) error {
	var problems []string
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		problems = append(problems, fmt.Sprintf("did not exit within %v of SIGTERM", stopTimeout))
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		_ = cmd.Process.Kill()
		<-exited
	}
	if st := cmd.ProcessState; st != nil && !st.Success() && len(problems) == 0 {
		problems = append(problems, "exited with "+st.String())
	}
	if _, ok := mountedAt(dir); ok {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			problems = append(problems, fmt.Sprintf("still mounted; umount -l: %v", err))
		} else {
			problems = append(problems, "was still mounted; detached it")
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("server of %s (%s): %s; stderr: %s", dir, filepath.Base(cmd.Path), strings.Join(problems, "; "), tail(stderrPath))
	}
	return nil
}

// tail is the end of a log file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	b = bytes.TrimSpace(b)
	if len(b) > 600 {
		b = append([]byte("…"), b[len(b)-600:]...)
	}
	if len(b) == 0 {
		return "(nothing on stderr)"
	}
	return string(b)
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

// fsTypeOf names the filesystem dir lives on (its nearest mount), or "".
func fsTypeOf(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if t, ok := mountedAt(d); ok {
			return t
		}
		if d == "/" {
			return ""
		}
	}
}

// rssMiB is VmRSS of pid in MiB.
func rssMiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS of %d: %w", pid, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// fileSize is the size of path, 0 if it cannot be read.
func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
