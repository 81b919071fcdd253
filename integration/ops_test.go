package integration

// Operating lockfs like any FUSE file system (issue 4): the daemon and
// its readiness, the mount helper form through mount(8) and fstab,
// non-root mounts through fusermount3, allow_other between two users,
// SIGTERM with and without held locks, stale mounts and --recover, the
// systemd notify protocol and --tempest-conf.
//
// These tests run the lockfs binary the way people do, as a daemon that
// outlives the command that started it. The daemon is then not a child
// of the test: it is found through its --pidfile, checked to be the
// lockfs binary before any signal is sent to it, and polled for its end.
// Every mount a test makes is unmounted by the test, which checks it is
// gone; a cleanup also checks it, and removes what a failed test left.
//
// Non-root tests create system users (lockfsops1, lockfsops2) and run
// lockfs as them with a plain credential switch (setuid/setgid, what
// setpriv does). Those need what a Debian machine has by default and a
// minimal container may not: /dev/fuse usable by everyone (mode 0666);
// and for allow_other, user_allow_other in /etc/fuse.conf. The tests set
// both up for their duration and restore them afterwards.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// opsCommandTimeout bounds every command these tests run and expect to
// return (a daemonizing lockfs returns once mounted).
const opsCommandTimeout = 60 * time.Second

// opsWorld is a scratch directory every user can reach (t.TempDir() and
// the harness's build directory are 0700), removed at the end of the
// test, with a copy of the lockfs binary in bin/.
type opsWorld struct {
	dir string
	bin string // the lockfs binary, mode 0755
}

func newOpsWorld(t *testing.T) *opsWorld {
	t.Helper()
	requireFUSE(t)
	requireMountPrivilege(t)
	if lockfsBuildErr != nil {
		t.Fatalf("lockfs binary: %v", lockfsBuildErr)
	}
	dir, err := os.MkdirTemp("", "lockfs-ops-")
	if err != nil {
		t.Fatal(err)
	}
	dir = realDir(t, dir)
	t.Cleanup(func() {
		// Only once nothing is mounted below it (cleanups of the
		// mounts run before this one).
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	w := &opsWorld{dir: dir, bin: filepath.Join(dir, "bin", "lockfs")}
	w.mkdir(t, "bin", 0o755, nil)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(lockfsBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	return w
}

// path returns dir/rel.
func (w *opsWorld) path(rel string) string { return filepath.Join(w.dir, rel) }

// mkdir creates dir/rel with mode, owned by owner (root when nil).
func (w *opsWorld) mkdir(t *testing.T, rel string, mode os.FileMode, owner *opsUser) string {
	t.Helper()
	p := w.path(rel)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	if owner != nil {
		if err := os.Chown(p, int(owner.uid), int(owner.gid)); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// opsResult is how a command ended.
type opsResult struct {
	code           int // exit status; -1 if killed by a signal
	stdout, stderr string
}

func (r opsResult) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// run runs argv as as (root when nil) with env added to a minimal
// environment, and waits for it, at most opsCommandTimeout.
func opsRun(t *testing.T, as *opsUser, env []string, argv ...string) opsResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opsCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}, env...)
	if as != nil {
		cmd.Env = append(cmd.Env, "HOME="+as.home, "USER="+as.name)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: as.uid, Gid: as.gid, Groups: []uint32{}}}
		cmd.Dir = as.home
	} else {
		cmd.Env = append(cmd.Env, "HOME=/root")
		cmd.Dir = "/"
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := opsResult{stdout: stdout.String(), stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("%q did not return within %v\n%s", argv, opsCommandTimeout, res)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("%q: %v", argv, err)
	}
	return res
}

// mustRun is run, failing the test unless the command exits 0.
func opsMustRun(t *testing.T, as *opsUser, env []string, argv ...string) opsResult {
	t.Helper()
	r := opsRun(t, as, env, argv...)
	if r.code != 0 {
		t.Fatalf("%q as %s: %s", argv, as, r)
	}
	return r
}

// ---- daemons and their mounts ----------------------------------------

// opsMount is a lockfs mount started by a test as a daemon (through
// `lockfs mount`, the helper form, mount(8) or fstab), identified by
// its pidfile.
type opsMount struct {
	w       *opsWorld
	dir     string // the mount point
	pidfile string
	log     string
	pid     int // of the daemon, once known
}

// newOpsMount names a mount point, pidfile and log file under the world
// and registers the cleanup that leaves nothing mounted or running; the
// test still has to mount it. The mount point does not exist yet: lockfs
// creates it.
func (w *opsWorld) newMount(t *testing.T, name string) *opsMount {
	t.Helper()
	m := &opsMount{
		w:       w,
		dir:     w.path(name + "/mnt"),
		pidfile: w.path(name + "/lockfs.pid"),
		log:     w.path(name + "/lockfs.log"),
	}
	w.mkdir(t, name, 0o777, nil) // any user may write its pid and log files here
	t.Cleanup(func() { m.cleanup(t) })
	return m
}

// Events parses the audit log with the harness's parser.
func (m *opsMount) Events(t *testing.T) []Event {
	t.Helper()
	return (&Mount{LogPath: m.log}).Events(t)
}

// daemonPid reads the pidfile and checks that it names a running lockfs
// started from this world's binary: the only processes these tests
// signal.
func (m *opsMount) daemonPid(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(m.pidfile)
	if err != nil {
		t.Fatalf("pidfile: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Fatalf("pidfile %s holds %q", m.pidfile, b)
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || exe != m.w.bin {
		t.Fatalf("pid %d from %s is %q (%v), not %s", pid, m.pidfile, exe, err, m.w.bin)
	}
	m.pid = pid
	return pid
}

// signal sends sig to the daemon.
func (m *opsMount) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(m.daemonPid(t), sig); err != nil {
		t.Fatalf("kill -%d %d: %v", sig, m.pid, err)
	}
}

// waitDaemonGone waits until the daemon has exited. It is not our child
// (its parent exited once it was ready), so its end is polled: gone, or
// a zombie waiting for whoever adopted it.
func (m *opsMount) waitDaemonGone(t *testing.T) {
	t.Helper()
	if m.pid == 0 {
		t.Fatal("daemon pid unknown")
	}
	for deadline := time.Now().Add(stopTimeout); ; time.Sleep(10 * time.Millisecond) {
		if s := procState(m.pid); s == "gone" || s == "Z" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lockfs (pid %d) still running %v after its mount went away (state %s)", m.pid, stopTimeout, procState(m.pid))
		}
	}
}

// requireMounted checks that the kernel lists m as a lockfs mount, right
// now (callers rely on lockfs having returned only once mounted), and
// returns its mountinfo entry.
func (m *opsMount) requireMounted(t *testing.T) opsMountEntry {
	t.Helper()
	e, ok := opsMountinfo(m.dir)
	if !ok {
		t.Fatalf("%s is not mounted", m.dir)
	}
	if e.fstype != "fuse.lockfs" {
		t.Fatalf("%s mounted as %s, want fuse.lockfs", m.dir, e.fstype)
	}
	return e
}

// requireGone checks that m is in neither /proc/self/mountinfo nor
// /proc/mounts.
func (m *opsMount) requireGone(t *testing.T) {
	t.Helper()
	if e, ok := opsMountinfo(m.dir); ok {
		t.Fatalf("%s still mounted: %+v", m.dir, e)
	}
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && unescapeMountinfo(f[1]) == m.dir {
			t.Fatalf("%s still in /proc/mounts: %s", m.dir, line)
		}
	}
}

// unmountAndWait unmounts m with `lockfs unmount` and waits for its
// daemon to exit; the pidfile must be gone then.
func (m *opsMount) unmountAndWait(t *testing.T, as *opsUser) {
	t.Helper()
	m.daemonPid(t)
	opsMustRun(t, as, nil, m.w.bin, "unmount", m.dir)
	m.requireGone(t)
	m.waitDaemonGone(t)
	if _, err := os.Stat(m.pidfile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pidfile %s left behind (%v)", m.pidfile, err)
	}
}

// cleanup leaves nothing mounted at m.dir and no daemon of m running.
// A mount still there at the end of a passing test is an error: the test
// was supposed to unmount it.
func (m *opsMount) cleanup(t *testing.T) {
	pid := m.pid
	if b, err := os.ReadFile(m.pidfile); err == nil {
		if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p)); err == nil && exe == m.w.bin {
				pid = p
			}
		}
	}
	for try := 0; ; try++ {
		if _, ok := opsMountinfo(m.dir); !ok {
			break
		}
		if try == 0 && !t.Failed() {
			t.Errorf("%s still mounted at the end of the test; unmounting it", m.dir)
		}
		if try == 5 {
			t.Errorf("cannot unmount %s", m.dir)
			return
		}
		unix.Unmount(m.dir, unix.MNT_DETACH)
	}
	if pid > 0 {
		if s := procState(pid); s != "gone" && s != "Z" {
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && exe == m.w.bin {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if _, ok := opsMountinfo(m.dir); ok {
		t.Errorf("%s is still mounted after cleanup", m.dir)
	}
}

// opsMountEntry is the part of a mountinfo line these tests check.
type opsMountEntry struct {
	mountOpts string // per mount: rw,nosuid,nodev,relatime
	fstype    string
	source    string
	superOpts string // per superblock: user_id=…,default_permissions,allow_other
}

// hasOpt reports whether the comma-separated list opts contains opt.
func opsHasOpt(opts, opt string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == opt {
			return true
		}
	}
	return false
}

// opsMountinfo returns the topmost mount on dir in /proc/self/mountinfo.
func opsMountinfo(dir string) (opsMountEntry, bool) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return opsMountEntry{}, false
	}
	var e opsMountEntry
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, p := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 6 || len(p) < 3 || unescapeMountinfo(f[4]) != dir {
			continue
		}
		e, found = opsMountEntry{mountOpts: f[5], fstype: p[0], source: p[1], superOpts: p[2]}, true
	}
	return e, found
}

// opsCountMounts counts the mounts on dir (stacked mounts count apart).
func opsCountMounts(dir string) int {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && unescapeMountinfo(f[4]) == dir {
			n++
		}
	}
	return n
}

// waitEvent polls the audit log until an event satisfies match.
func (m *opsMount) waitEvent(t *testing.T, what string, match func(Event) bool) Event {
	t.Helper()
	for deadline := time.Now().Add(mustFinishWithin); ; time.Sleep(10 * time.Millisecond) {
		for _, e := range m.Events(t) {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(m.log)
			t.Fatalf("no %s in the log after %v:\n%s", what, mustFinishWithin, b)
		}
	}
}

// ---- a foreground lockfs, child of the test ----------------------------

// opsForeground is `lockfs mount --foreground`, started by the test.
type opsForeground struct {
	*opsMount
	cmd    *exec.Cmd
	stderr *lockedBuffer
	exited chan struct{}
}

// startForeground starts lockfs in the foreground on m with extra flags
// and env, and waits until the kernel lists the mount.
func (m *opsMount) startForeground(t *testing.T, env []string, extra ...string) *opsForeground {
	t.Helper()
	args := append([]string{"mount", "--foreground", "--log-file", m.log, "--log-format", "json", "--pidfile", m.pidfile}, extra...)
	cmd := exec.Command(m.w.bin, append(args, m.dir)...)
	cmd.Env = append(os.Environ(), env...)
	fg := &opsForeground{opsMount: m, cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = fg.stderr, fg.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m.pid = cmd.Process.Pid
	go func() {
		cmd.Wait()
		close(fg.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-fg.exited:
		default:
			cmd.Process.Kill()
			<-fg.exited
		}
	})
	for deadline := time.Now().Add(mountTimeout); ; time.Sleep(10 * time.Millisecond) {
		if _, ok := opsMountinfo(m.dir); ok {
			return fg
		}
		select {
		case <-fg.exited:
			t.Fatalf("lockfs exited before mounting (%v):\n%s", cmd.ProcessState, fg.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("lockfs not mounted at %s after %v:\n%s", m.dir, mountTimeout, fg.stderr)
		}
	}
}

// signal sends sig to the foreground lockfs.
func (fg *opsForeground) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := fg.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// waitExit waits for the foreground lockfs to exit and returns its status.
func (fg *opsForeground) waitExit(t *testing.T) int {
	t.Helper()
	select {
	case <-fg.exited:
		return fg.cmd.ProcessState.ExitCode()
	case <-time.After(stopTimeout):
		t.Fatalf("lockfs still running %v after the signal:\n%s", stopTimeout, fg.stderr)
		return 0
	}
}

// running reports whether the foreground lockfs is still running.
func (fg *opsForeground) running() bool {
	select {
	case <-fg.exited:
		return false
	default:
		return true
	}
}

// ---- users ---------------------------------------------------------

// opsUser is an ordinary user created for a test.
type opsUser struct {
	name     string
	uid, gid uint32
	home     string // a directory of its own in the world
}

func (u *opsUser) String() string {
	if u == nil {
		return "root"
	}
	return u.name
}

// newOpsUser creates the system user name (unless it exists), with a
// home directory in the world, and deletes it at the end of the test if
// it created it.
func (w *opsWorld) newUser(t *testing.T, name string) *opsUser {
	t.Helper()
	if _, err := user.Lookup(name); err != nil {
		useradd, err := exec.LookPath("useradd")
		if err != nil {
			skipOrFail(t, "cannot create a user: %v", err)
		}
		out, err := exec.Command(useradd, "--system", "--user-group", "--no-create-home",
			"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
		if err != nil {
			t.Fatalf("useradd %s: %v\n%s", name, err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
				t.Errorf("userdel %s: %v\n%s", name, err, out)
			}
		})
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	ou := &opsUser{name: name, uid: uint32(uid), gid: uint32(gid)}
	ou.home = w.mkdir(t, "home/"+name, 0o755, ou)
	if err := os.Chmod(w.path("home"), 0o755); err != nil {
		t.Fatal(err)
	}
	return ou
}

// opsFuseForUsers makes /dev/fuse usable by every user for the test, as
// udev makes it on Debian (crw-rw-rw-); minimal containers create it
// 0600.
func opsFuseForUsers(t *testing.T) {
	t.Helper()
	st, err := os.Stat("/dev/fuse")
	if err != nil {
		skipOrFail(t, "FUSE unavailable: %v", err)
	}
	mode := st.Mode().Perm()
	if mode&0o006 == 0o006 {
		return
	}
	if err := os.Chmod("/dev/fuse", mode|0o666); err != nil {
		skipOrFail(t, "cannot make /dev/fuse usable by users: %v", err)
	}
	t.Logf("/dev/fuse was %04o; 0666 for this test, as on Debian", mode)
	t.Cleanup(func() {
		if err := os.Chmod("/dev/fuse", mode); err != nil {
			t.Errorf("restore /dev/fuse mode: %v", err)
		}
	})
}

// opsFuseConf sets whether /etc/fuse.conf has user_allow_other for the
// test, and restores the file (or its absence) afterwards.
func opsFuseConf(t *testing.T, userAllowOther bool) {
	t.Helper()
	const path = "/etc/fuse.conf"
	old, err := os.ReadFile(path)
	existed := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
		if strings.TrimSpace(l) != "user_allow_other" && (l != "" || len(lines) > 0) {
			lines = append(lines, l)
		}
	}
	if userAllowOther {
		lines = append(lines, "user_allow_other")
	}
	text := strings.Join(lines, "\n") + "\n"
	if text == string(old) {
		return
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var err error
		if existed {
			err = os.WriteFile(path, old, 0o644)
		} else {
			err = os.Remove(path)
		}
		if err != nil {
			t.Errorf("restore %s: %v", path, err)
		}
	})
}

// statAs returns `stat -c '%U %a %s'` of path as u, or the error text.
func opsStatAs(t *testing.T, u *opsUser, path string) (string, bool) {
	t.Helper()
	r := opsRun(t, u, nil, "stat", "-c", "%U %a %s", path)
	return strings.TrimSpace(r.stdout + r.stderr), r.code == 0
}
