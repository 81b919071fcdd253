package integration

// lockfs mounted by ordinary users (through fusermount3), shared between
// two users with allow_other, and the Tempest walkthrough of the README.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOpsNonRoot: a user mounts through fusermount3; the mount and its
// root belong to that user, nobody else (not even root) may enter it
// without allow_other, which needs user_allow_other; the user unmounts
// it with `lockfs unmount` and recovers it after a crash.
func TestOpsNonRoot(t *testing.T) {
	w := newOpsWorld(t)
	opsFuseForUsers(t)
	opsFuseConf(t, false)
	stack := w.newUser(t, "lockfsops1")
	m := w.newMount(t, "nonroot")

	// allow_other without user_allow_other: refused before mounting.
	r := opsRun(t, stack, nil, w.bin, "mount", "--allow-other", "--pidfile", m.pidfile, "--log-file", m.log, m.dir)
	if r.code != 32 || !strings.Contains(r.stderr, "user_allow_other") {
		t.Fatalf("allow_other without user_allow_other: %s\nwant exit 32 naming user_allow_other", r)
	}

	opsMustRun(t, stack, nil, w.bin, "mount", "--pidfile", m.pidfile, "--log-file", m.log, m.dir)
	e := m.requireMounted(t)
	if !opsHasOpt(e.superOpts, fmt.Sprintf("user_id=%d", stack.uid)) || !opsHasOpt(e.superOpts, "default_permissions") ||
		opsHasOpt(e.superOpts, "allow_other") || !opsHasOpt(e.mountOpts, "nosuid") || !opsHasOpt(e.mountOpts, "nodev") {
		t.Errorf("kernel mount options %+v; want user_id=%d, default_permissions, nosuid, nodev, no allow_other", e, stack.uid)
	}
	if got, ok := opsStatAs(t, stack, m.dir); !ok || !strings.HasPrefix(got, "lockfsops1 755 ") {
		t.Errorf("root directory as its owner sees it: %q, want lockfsops1 755", got)
	}
	if _, err := os.Stat(m.dir); !os.IsPermission(err) {
		t.Errorf("root stats a user's mount without allow_other: %v, want EACCES", err)
	}
	lock := filepath.Join(m.dir, "tempest-availability_zone")
	opsMustRun(t, stack, nil, "flock", "--nonblock", lock, "true")
	got := m.waitEvent(t, "acquired", func(e Event) bool { return e.Event == "acquired" })
	if int(num(got.Raw["uid"])) != int(stack.uid) {
		t.Errorf("acquired %v, want uid %d", got.Raw, stack.uid)
	}
	m.unmountAndWait(t, stack)

	// The helper form, a crash, and --recover, all as the user.
	opsMustRun(t, stack, nil, w.bin, "mem", m.dir, "-o", "pidfile="+m.pidfile+",log_file="+m.log+",nofail")
	m.requireMounted(t)
	m.signal(t, syscall.SIGKILL)
	m.waitDaemonGone(t)
	r = opsRun(t, stack, nil, w.bin, "mount", "--pidfile", m.pidfile, "--log-file", m.log, m.dir)
	if r.code != 32 || !strings.Contains(r.stderr, "stale") {
		t.Fatalf("mount on a stale mount: %s\nwant exit 32, stale", r)
	}
	opsMustRun(t, stack, nil, w.bin, "mount", "--recover", "--pidfile", m.pidfile, "--log-file", m.log, m.dir)
	if n := opsCountMounts(m.dir); n != 1 {
		t.Fatalf("%d mounts on %s after --recover, want 1", n, m.dir)
	}
	opsMustRun(t, stack, nil, "flock", "--nonblock", lock, "true")
	m.unmountAndWait(t, stack)
}

// TestOpsAllowOther: the DevStack setup. The stack user mounts the lock
// directory with allow_other and mode 1777; the Tempest runner, another
// user, creates and locks files there too. default_permissions makes the
// kernel enforce file modes: the runner cannot open stack's private file
// or delete stack's files (sticky bit); a lock file both can open is
// shared, and a lock held by one is refused to the other.
func TestOpsAllowOther(t *testing.T) {
	w := newOpsWorld(t)
	opsFuseForUsers(t)
	opsFuseConf(t, true)
	stack, runner := w.newUser(t, "lockfsops1"), w.newUser(t, "lockfsops2")
	m := w.newMount(t, "shared")
	opsMustRun(t, stack, nil, w.bin, "mem", m.dir, "-o", "allow_other,default_permissions,mode=1777,nofail,pidfile="+m.pidfile+",log_file="+m.log)
	e := m.requireMounted(t)
	if !opsHasOpt(e.superOpts, "allow_other") || !opsHasOpt(e.superOpts, "default_permissions") ||
		!opsHasOpt(e.superOpts, fmt.Sprintf("user_id=%d", stack.uid)) {
		t.Errorf("kernel mount options %+v; want allow_other, default_permissions, user_id=%d", e, stack.uid)
	}
	if got, ok := opsStatAs(t, runner, m.dir); !ok || !strings.HasPrefix(got, "lockfsops1 1777 ") {
		t.Errorf("the mount as the runner sees it: %q, want lockfsops1 1777", got)
	}
	if _, err := os.Stat(m.dir); err != nil {
		t.Errorf("root cannot stat an allow_other mount: %v", err)
	}

	private := filepath.Join(m.dir, "stack-private")
	shared := filepath.Join(m.dir, "tempest-availability_zone")
	opsMustRun(t, stack, nil, "sh", "-c", "umask 077 && : > "+private+" && umask 0 && : > "+shared)
	if r := opsRun(t, runner, nil, "cat", private); r.code == 0 || !strings.Contains(r.stderr, "Permission denied") {
		t.Errorf("the runner reads stack's 0600 file: %s\nwant Permission denied", r)
	}
	if r := opsRun(t, runner, nil, "rm", "-f", private); r.code == 0 || !strings.Contains(r.stderr, "Operation not permitted") {
		t.Errorf("the runner deletes stack's file in a sticky directory: %s\nwant Operation not permitted", r)
	}
	opsMustRun(t, runner, nil, "touch", filepath.Join(m.dir, "tempest-compute_quotas"))
	if got, _ := opsStatAs(t, stack, filepath.Join(m.dir, "tempest-compute_quotas")); !strings.HasPrefix(got, "lockfsops2 ") {
		t.Errorf("a file the runner created belongs to %q, want lockfsops2", got)
	}

	// The runner holds the shared lock; stack is refused until it lets go.
	holder := opsStartAs(t, runner, "flock", "--exclusive", shared, "sh", "-c", "echo held; cat >/dev/null")
	holder.expect(t, "held")
	if r := opsRun(t, stack, nil, "flock", "--nonblock", shared, "true"); r.code != 1 {
		t.Errorf("stack takes a lock the runner holds: %s\nwant flock's exit 1", r)
	}
	held := m.waitEvent(t, "the runner's lock", func(e Event) bool { return e.Event == "acquired" && e.Lock == "tempest-availability_zone" })
	if int(num(held.Raw["uid"])) != int(runner.uid) || held.Pid != holder.cmd.Process.Pid {
		t.Errorf("acquired %v, want the runner's uid %d and flock's pid %d", held.Raw, runner.uid, holder.cmd.Process.Pid)
	}
	holder.finish(t)
	opsMustRun(t, stack, nil, "flock", "--nonblock", shared, "true")

	m.signal(t, syscall.SIGTERM)
	m.waitDaemonGone(t)
	m.requireGone(t)
}

// TestOpsTempestWalkthrough runs the README's walkthrough: a lock_path
// under a directory the Tempest user cannot create makes Tempest's own
// LockFixture fail with "Permission denied"; one lockfs command mounts
// there, and the same LockFixture passes, leaving a zero-byte lock file
// and got/released lines in the log.
func TestOpsTempestWalkthrough(t *testing.T) {
	opsRequirePython(t, "tempest.common.tempest_fixtures")
	w := newOpsWorld(t)
	runner := w.newUser(t, "lockfsops2")
	w.mkdir(t, "walk/opt", 0o755, nil) // root's, like /opt: no /opt/stack yet
	m := w.newMount(t, "walk")
	m.dir = w.path("walk/opt/stack/data/tempest")
	conf := w.path("walk/etc/tempest.conf")
	opsWriteFile(t, conf, "[oslo_concurrency]\nlock_path = "+m.dir+"\n")
	script := w.path("walk/az.py")
	opsWriteFile(t, script, tempestAZScript)

	r := opsRun(t, runner, nil, "/usr/bin/python3", script, conf)
	// Tempest logs the traceback on stdout once its logging is set up.
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "PermissionError: [Errno 13] Permission denied: b'"+w.path("walk/opt/stack")+"'") {
		t.Fatalf("LockFixture without lockfs: %s\nwant PermissionError on %s", r, w.path("walk/opt/stack"))
	}

	opsMustRun(t, nil, nil, w.bin, "mount", "--tempest-conf", conf, "--allow-other", "--mode", "1777",
		"--pidfile", m.pidfile, "--log-file", m.log)
	r = opsMustRun(t, runner, nil, "/usr/bin/python3", script, conf)
	if !strings.Contains(r.stdout, "got the lock in "+m.dir) {
		t.Errorf("LockFixture output %q, want got the lock in %s", r.stdout, m.dir)
	}
	ls := opsMustRun(t, nil, nil, "ls", "-l", m.dir).stdout
	if !regexp.MustCompile(`(?m)^-rw-r--r-- 1 lockfsops2 lockfsops2 0 .* tempest-availability_zone$`).MatchString(ls) {
		t.Errorf("ls -l %s:\n%s\nwant a zero-byte tempest-availability_zone of lockfsops2", m.dir, ls)
	}
	var got, released Event
	for _, e := range m.Events(t) {
		if e.Lock != "tempest-availability_zone" {
			continue
		}
		switch e.Event {
		case "acquired":
			got = e
		case "released":
			released = e
		}
	}
	path := filepath.Join(m.dir, "tempest-availability_zone")
	if str(got.Raw["message"]) != `Got file lock "tempest-availability_zone" at `+path ||
		str(released.Raw["message"]) != `Released file lock "tempest-availability_zone" at `+path ||
		got.Kind != "posix" || got.Mode != "write" || int(num(got.Raw["uid"])) != int(runner.uid) {
		t.Errorf("log lines for the fixture:\n%v\n%v\nwant Got/Released file lock, posix write, uid %d", got.Raw, released.Raw, runner.uid)
	}

	// While a test holds the lock, lockfs locks shows who.
	holder := opsStartAs(t, runner, "/usr/bin/python3", script, conf, "-")
	holder.expect(t, "got the lock in "+m.dir)
	locks := opsMustRun(t, nil, nil, w.bin, "locks", m.dir).stdout
	row := fmt.Sprintf(`(?m)^python3 +%d +POSIX +WRITE .* %s( |$)`, holder.cmd.Process.Pid, regexp.QuoteMeta(path))
	if !regexp.MustCompile(row).MatchString(locks) {
		t.Errorf("lockfs locks %s:\n%s\nwant a row matching %s", m.dir, locks, row)
	}
	holder.finish(t)
	m.unmountAndWait(t, nil)
}

// tempestAZScript is what tempest/api/compute/admin/test_aggregates.py
// does around each test: Tempest's LockFixture('availability_zone'),
// with the lock_path of the tempest.conf given.
const tempestAZScript = `import sys, time
from tempest import config
config.CONF.set_config_path(sys.argv[1])
lock_path = config.CONF.oslo_concurrency.lock_path  # loads tempest.conf, as tempest run does first
from tempest.common import tempest_fixtures
lock = tempest_fixtures.LockFixture('availability_zone')
lock.setUp()
print('got the lock in', lock_path, flush=True)
if sys.argv[2:] == ['-']:
    sys.stdin.readline()  # hold the lock until told
elif sys.argv[2:]:
    time.sleep(float(sys.argv[2]))
lock.cleanUp()
`

// opsRequirePython skips (or fails under LOCKFS_REQUIRE_CLIENTS=1)
// unless /usr/bin/python3 imports the modules.
func opsRequirePython(t *testing.T, modules ...string) {
	t.Helper()
	out, err := exec.Command("/usr/bin/python3", "-c", "import "+strings.Join(modules, ", ")).CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("/usr/bin/python3 cannot import %s: %v\n%s", strings.Join(modules, ", "), err, out)
	if os.Getenv("LOCKFS_REQUIRE_CLIENTS") == "1" {
		t.Fatal(msg + " (and LOCKFS_REQUIRE_CLIENTS=1)")
	}
	t.Skip(msg)
}

// opsProc is a process started as a user, with a line-by-line stdout.
type opsProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	exited chan struct{}
}

// opsStartAs starts argv as u. t.Cleanup kills it if still running.
func opsStartAs(t *testing.T, u *opsUser, argv ...string) *opsProc {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + u.home}
	cmd.Dir = u.home
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: []uint32{}}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &opsProc{cmd: cmd, stdin: stdin, lines: make(chan string, 4096), exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// expect waits for a line of output equal to want; lines before it
// (Tempest's log, say) are skipped.
func (p *opsProc) expect(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(mustFinishWithin)
	for {
		select {
		case got, ok := <-p.lines:
			if !ok {
				t.Fatalf("%q exited without printing %q", p.cmd.Args, want)
			}
			if got == want {
				return
			}
		case <-deadline:
			t.Fatalf("%q did not print %q within %v", p.cmd.Args, want, mustFinishWithin)
		}
	}
}

// finish closes stdin and waits for a clean exit.
func (p *opsProc) finish(t *testing.T) {
	t.Helper()
	p.stdin.Close()
	select {
	case <-p.exited:
		if !p.cmd.ProcessState.Success() {
			t.Fatalf("%q: %v", p.cmd.Args, p.cmd.ProcessState)
		}
	case <-time.After(mustFinishWithin):
		t.Fatalf("%q still running %v after its stdin closed", p.cmd.Args, mustFinishWithin)
	}
}
