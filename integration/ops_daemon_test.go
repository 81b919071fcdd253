package integration

// The daemon, the mount helper form, fstab, and the exit codes.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpsDaemonReady: `lockfs mount` returns only once the mount is in
// place, leaving a detached daemon that logs to --log-file and whose
// pid is in --pidfile; `lockfs unmount` ends it.
func TestOpsDaemonReady(t *testing.T) {
	w := newOpsWorld(t)
	m := w.newMount(t, "ready")
	m.dir = w.path("ready/not/yet/there") // created with its parents
	r := opsMustRun(t, nil, nil, w.bin, "mount", "--pidfile", m.pidfile, "--log-file", m.log, m.dir)
	if r.stdout != "" || r.stderr != "" {
		t.Errorf("a successful mount printed something:\n%s", r)
	}

	// Ready means mounted: no waiting here.
	e := m.requireMounted(t)
	if e.source != "mem" || !opsHasOpt(e.superOpts, "default_permissions") || opsHasOpt(e.superOpts, "allow_other") ||
		!opsHasOpt(e.superOpts, "user_id=0") || !opsHasOpt(e.mountOpts, "nosuid") || !opsHasOpt(e.mountOpts, "nodev") {
		t.Errorf("kernel mount options %+v; want source mem, default_permissions, user_id=0, nosuid, nodev, no allow_other", e)
	}
	pid := m.daemonPid(t)
	if sid, err := unix.Getsid(pid); err != nil || sid != pid {
		t.Errorf("daemon %d is in session %d (%v), want its own", pid, sid, err)
	}
	if cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); cwd != "/" {
		t.Errorf("daemon works in %q, want / (so that it keeps no directory busy)", cwd)
	}
	for fd, want := range map[int]string{0: os.DevNull, 1: os.DevNull, 2: m.log} {
		if got, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd)); got != want {
			t.Errorf("daemon fd %d is %q, want %q", fd, got, want)
		}
	}
	mounted := m.waitEvent(t, "mounted event", func(e Event) bool { return e.Event == "mounted" })
	if int(num(mounted.Raw["pid"])) != pid || str(mounted.Raw["mountpoint"]) != m.dir {
		t.Errorf("mounted event %v; want pid %d at %s", mounted.Raw, pid, m.dir)
	}

	// It serves: a lock taken through the mount is in the log.
	opsMustRun(t, nil, nil, "flock", "--nonblock", filepath.Join(m.dir, "tempest-availability_zone"), "true")
	m.waitEvent(t, "acquired", func(e Event) bool { return e.Event == "acquired" && e.Lock == "tempest-availability_zone" })

	m.unmountAndWait(t, nil)
	m.waitEvent(t, "unmounted event", func(e Event) bool { return e.Event == "unmounted" })
}

// TestOpsDaemonFailures: a mount that cannot be made exits with status
// 32 (2 for a bad command line), the reason on stderr, and leaves
// nothing mounted or running.
func TestOpsDaemonFailures(t *testing.T) {
	w := newOpsWorld(t)
	busy := w.newMount(t, "busy")
	opsMustRun(t, nil, nil, w.bin, "mount", "--pidfile", busy.pidfile, "--log-file", busy.log, busy.dir)

	for _, tc := range []struct {
		name  string
		setup func(m *opsMount) []string // returns the command line
		code  int
		msg   string
	}{
		{"mountpoint is a file", func(m *opsMount) []string {
			os.WriteFile(m.dir, nil, 0o644)
			return []string{w.bin, "mount", "--pidfile", m.pidfile, "--log-file", m.log, m.dir}
		}, 32, "not a directory"},
		{"mountpoint not empty", func(m *opsMount) []string {
			os.Mkdir(m.dir, 0o755)
			os.WriteFile(filepath.Join(m.dir, "tempest-availability_zone"), nil, 0o644)
			return []string{w.bin, "mount", "--pidfile", m.pidfile, "--log-file", m.log, m.dir}
		}, 32, "is not empty (tempest-availability_zone)"},
		{"already mounted", func(m *opsMount) []string {
			return []string{w.bin, "mount", "--pidfile", m.pidfile, "--log-file", m.log, busy.dir}
		}, 32, "already a lockfs mount"},
		{"pidfile cannot be written", func(m *opsMount) []string {
			return []string{w.bin, "mount", "--pidfile", w.path("missing/dir/lockfs.pid"), "--log-file", m.log, m.dir}
		}, 32, "pidfile"},
		{"log file cannot be opened", func(m *opsMount) []string {
			return []string{w.bin, "mount", "--pidfile", m.pidfile, "--log-file", w.path("missing/dir/lockfs.log"), m.dir}
		}, 32, "log file"},
		{"unknown backend", func(m *opsMount) []string {
			return []string{w.bin, "etcd://127.0.0.1:2379/locks", m.dir, "-o", "pidfile=" + m.pidfile}
		}, 2, `unknown backend "etcd://127.0.0.1:2379/locks"`},
		{"read-only", func(m *opsMount) []string {
			return []string{w.bin, "mem", m.dir, "-o", "ro,pidfile=" + m.pidfile}
		}, 2, "cannot be mounted read-only"},
		{"unknown option", func(m *opsMount) []string {
			return []string{w.bin, "mem", m.dir, "-o", "allow_other,big_writes,pidfile=" + m.pidfile}
		}, 2, `unknown mount option "big_writes"`},
		{"bad flag value", func(m *opsMount) []string {
			return []string{w.bin, "mount", "--mode", "888", "--pidfile", m.pidfile, m.dir}
		}, 2, "--mode"},
		{"no mountpoint", func(m *opsMount) []string {
			return []string{w.bin, "mount", "--pidfile", m.pidfile}
		}, 2, "exactly one MOUNTPOINT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := w.newMount(t, "fail-"+strings.ReplaceAll(tc.name, " ", "-"))
			before := opsCountMounts(m.dir)
			r := opsRun(t, nil, nil, tc.setup(m)...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) {
				t.Fatalf("got %s\nwant exit %d and %q on stderr", r, tc.code, tc.msg)
			}
			if !strings.HasPrefix(r.stderr, "lockfs: ") || strings.Count(r.stderr, tc.msg) != 1 {
				t.Errorf("stderr should give the reason once, after \"lockfs: \":\n%s", r.stderr)
			}
			if n := opsCountMounts(m.dir); n != before {
				t.Errorf("%d mounts on %s after a failed mount, want %d", n, m.dir, before)
			}
			if _, err := os.Stat(m.pidfile); err == nil {
				t.Errorf("a failed mount left a pidfile (a daemon?): %s", m.pidfile)
			}
		})
	}
	if opsCountMounts(busy.dir) != 1 {
		t.Errorf("the mount that was in the way is gone or doubled")
	}
	busy.unmountAndWait(t, nil)

	// -o nonempty mounts over files anyway, hiding them until unmounted.
	full := w.newMount(t, "nonempty")
	hidden := filepath.Join(full.dir, "tempest-availability_zone")
	opsWriteFile(t, hidden, "")
	opsMustRun(t, nil, nil, w.bin, "mem", full.dir, "-o", "nonempty,pidfile="+full.pidfile+",log_file="+full.log)
	full.requireMounted(t)
	if _, err := os.Stat(hidden); !os.IsNotExist(err) {
		t.Errorf("%s seen through the mount: %v", hidden, err)
	}
	full.unmountAndWait(t, nil)
	if _, err := os.Stat(hidden); err != nil {
		t.Errorf("%s after unmounting: %v", hidden, err)
	}
}

// TestOpsHelperMountType: `mount -t fuse.lockfs mem DIR -o …` runs
// mount.fuse3, which runs `lockfs mem DIR -o …` through /bin/sh. mount(8)
// clears PATH (util-linux sanitize_env) and the shell then finds lockfs
// only in its default path (/usr/local/bin, /usr/bin, …), where these
// tests must not install anything. So the type names the binary by its
// path, fuse./…/lockfs, the form gocryptfs documents for fstab - or
// mount.fuse3, which is all mount(8) runs, is called directly with type
// fuse.lockfs and a PATH that has the binary.
func TestOpsHelperMountType(t *testing.T) {
	w := newOpsWorld(t)
	for _, tc := range []struct {
		name  string
		mount func(m *opsMount, opts string) []string
		env   []string
	}{
		{"mount -t fuse./path/lockfs", func(m *opsMount, opts string) []string {
			return []string{"mount", "-t", "fuse." + w.bin, "-o", opts, "mem", m.dir}
		}, nil},
		{"mount.fuse3 -t fuse.lockfs", func(m *opsMount, opts string) []string {
			return []string{opsMountFuse3(t), "mem", m.dir, "-t", "fuse.lockfs", "-o", opts}
		}, []string{"PATH=" + filepath.Dir(w.bin) + ":/usr/sbin:/usr/bin:/sbin:/bin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := w.newMount(t, strings.NewReplacer(" ", "-", "/", "_", ".", "_").Replace(tc.name))
			// Options as an fstab line has them: the FUSE ones, lockfs's
			// own, and those for mount(8), systemd and the boot that
			// lockfs must ignore.
			opts := "rw,allow_other,default_permissions,nofail,_netdev,noauto,x-systemd.automount,x-systemd.idle-timeout=60," +
				"noexec,uid=4242,gid=4343,mode=1777,max_files=50,pidfile=" + m.pidfile + ",log_file=" + m.log
			opsMustRun(t, nil, tc.env, tc.mount(m, opts)...)
			e := m.requireMounted(t)
			if e.source != "mem" || !opsHasOpt(e.superOpts, "allow_other") || !opsHasOpt(e.superOpts, "default_permissions") ||
				!opsHasOpt(e.mountOpts, "nosuid") || !opsHasOpt(e.mountOpts, "nodev") || !opsHasOpt(e.mountOpts, "rw") ||
				!opsHasOpt(e.mountOpts, "noexec") {
				t.Errorf("kernel mount options %+v; want source mem, allow_other, default_permissions, rw, nosuid, nodev, noexec", e)
			}
			var st syscall.Stat_t
			if err := syscall.Stat(m.dir, &st); err != nil {
				t.Fatal(err)
			}
			if st.Uid != 4242 || st.Gid != 4343 || st.Mode&0o7777 != 0o1777 {
				t.Errorf("root directory %d:%d %04o, want 4242:4343 1777 (uid=, gid=, mode=)", st.Uid, st.Gid, st.Mode&0o7777)
			}
			mounted := m.waitEvent(t, "mounted event", func(e Event) bool { return e.Event == "mounted" })
			if mounted.Raw["allow_other"] != true {
				t.Errorf("mounted event %v: allow_other not logged", mounted.Raw)
			}
			// umount(8) is how such a mount ends.
			m.daemonPid(t)
			opsMustRun(t, nil, nil, "umount", m.dir)
			m.requireGone(t)
			m.waitDaemonGone(t)
		})
	}
}

// TestOpsHelperFstab: an fstab line of type fuse.lockfs, mounted with
// `mount MOUNTPOINT` against a temporary fstab (mount -T).
func TestOpsHelperFstab(t *testing.T) {
	w := newOpsWorld(t)
	m := w.newMount(t, "fstab")
	fstab := w.path("fstab.test")
	line := fmt.Sprintf("mem %s fuse.%s allow_other,default_permissions,nofail,fsname=devstack,pidfile=%s,log_file=%s 0 0\n",
		m.dir, w.bin, m.pidfile, m.log)
	if err := os.WriteFile(fstab, []byte("# lockfs test\n"+line), 0o644); err != nil {
		t.Fatal(err)
	}
	opsMustRun(t, nil, nil, "mount", "-T", fstab, m.dir)
	e := m.requireMounted(t)
	if e.source != "devstack" || !opsHasOpt(e.superOpts, "allow_other") || !opsHasOpt(e.superOpts, "default_permissions") ||
		opsHasOpt(e.mountOpts, "noexec") {
		t.Errorf("kernel mount options %+v; want source devstack (fsname=), allow_other, default_permissions, exec", e)
	}
	if err := os.WriteFile(filepath.Join(m.dir, "test_accounts"), []byte("hash"), 0o600); err != nil {
		t.Errorf("write through the mount: %v", err)
	}
	os.Remove(filepath.Join(m.dir, "test_accounts"))
	m.daemonPid(t)
	opsMustRun(t, nil, nil, "umount", m.dir)
	m.requireGone(t)
	m.waitDaemonGone(t)
}

// mountFuse3 finds mount.fuse3, the helper mount(8) runs for fuse.* types.
func opsMountFuse3(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/sbin/mount.fuse3", "/usr/sbin/mount.fuse3"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("mount.fuse3")
	if err != nil {
		skipOrFail(t, "mount.fuse3 not found (fuse3 package): %v", err)
	}
	return p
}
