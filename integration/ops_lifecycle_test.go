package integration

// Signals, refused and lazy unmounts, `lockfs unmount`, stale mounts and
// --recover, the systemd notify protocol and --tempest-conf.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestOpsSignalClean: SIGTERM or SIGINT with nothing open unmounts,
// leaves nothing in /proc/mounts, removes the pidfile and exits 0.
func TestOpsSignalClean(t *testing.T) {
	w := newOpsWorld(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			m := w.newMount(t, "clean-"+strconv.Itoa(int(sig)))
			fg := m.startForeground(t, nil)
			// A lock taken and released: nothing stays open.
			opsMustRun(t, nil, nil, "flock", filepath.Join(m.dir, "tempest-compute_quotas"), "true")
			fg.signal(t, sig)
			if code := fg.waitExit(t); code != 0 {
				t.Fatalf("lockfs exited %d after %v:\n%s", code, sig, fg.stderr)
			}
			m.requireGone(t)
			if _, err := os.Stat(m.pidfile); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("pidfile left behind: %v", err)
			}
			e := m.waitEvent(t, "unmounted", func(e Event) bool { return e.Event == "unmounted" })
			if str(e.Raw["signal"]) != sig.String() {
				t.Errorf("unmounted event %v, want signal %q", e.Raw, sig.String())
			}
		})
	}
}

// TestOpsSignalHeldLocks: SIGTERM while a lock is held is refused by the
// kernel (EBUSY); lockfs logs who holds what and keeps serving the lock;
// once it is released, the next SIGTERM unmounts.
func TestOpsSignalHeldLocks(t *testing.T) {
	w := newOpsWorld(t)
	m := w.newMount(t, "held")
	fg := m.startForeground(t, nil)
	holder := startActor(t, "holder", m.dir, "")
	opsReply(t, holder, "open tempest-availability_zone rw", "OK fd1")
	opsReply(t, holder, "setlk fd1 WR SET 0 0", "OK")

	fg.signal(t, syscall.SIGTERM)
	refused := m.waitEvent(t, "unmount_refused", func(e Event) bool { return e.Event == "unmount_refused" })
	held := m.waitEvent(t, "still_held", func(e Event) bool { return e.Event == "still_held" })
	if held.Lock != "tempest-availability_zone" || held.Pid != holder.pid || held.Kind != "posix" || held.Mode != "write" ||
		str(held.Raw["path"]) != filepath.Join(m.dir, "tempest-availability_zone") || str(held.Raw["command"]) == "" {
		t.Errorf("still_held %v; want tempest-availability_zone, posix write, pid %d, its path and command", held.Raw, holder.pid)
	}
	if !strings.Contains(str(refused.Raw["message"]), m.dir) || num(refused.Raw["locked_files"]) != 1 {
		t.Errorf("unmount_refused %v; want the mount point and locked_files 1", refused.Raw)
	}

	// Still mounted, still serving the lock it holds.
	m.requireMounted(t)
	if !fg.running() {
		t.Fatalf("lockfs exited after a refused unmount:\n%s", fg.stderr)
	}
	other := startActor(t, "other", m.dir, "")
	opsReply(t, other, "open tempest-availability_zone rw", "OK fd1")
	opsReply(t, other, "getlk fd1 WR SET 0 0", fmt.Sprintf("GETLK WR start=0 len=0 pid=%d", holder.pid))
	opsReply(t, other, "close fd1", "OK")

	opsReply(t, holder, "close fd1", "OK")
	fg.signal(t, syscall.SIGTERM)
	if code := fg.waitExit(t); code != 0 {
		t.Fatalf("lockfs exited %d:\n%s", code, fg.stderr)
	}
	m.requireGone(t)
}

// TestOpsLazyUnmount: with --lazy-unmount a refused unmount detaches
// the mount at once; the holder keeps its open file and lock, served by
// lockfs, which exits when the file is closed.
func TestOpsLazyUnmount(t *testing.T) {
	w := newOpsWorld(t)
	m := w.newMount(t, "lazy")
	fg := m.startForeground(t, nil, "--lazy-unmount")
	holder := startActor(t, "holder", m.dir, "")
	opsReply(t, holder, "open tempest-volume_quotas rw", "OK fd1")
	opsReply(t, holder, "flock fd1 EX NB", "OK")

	fg.signal(t, syscall.SIGTERM)
	m.waitEvent(t, "still_held", func(e Event) bool {
		return e.Event == "still_held" && e.Pid == holder.pid && e.Kind == "flock"
	})
	m.waitEvent(t, "detached", func(e Event) bool { return e.Event == "detached" })
	m.requireGone(t)
	if !fg.running() {
		t.Fatalf("lockfs exited while a file of the detached mount is open:\n%s", fg.stderr)
	}
	// The holder's file still works, through lockfs.
	opsReply(t, holder, "flock fd1 UN", "OK")
	m.waitEvent(t, "released after detaching", func(e Event) bool {
		return e.Event == "released" && e.Lock == "tempest-volume_quotas" && e.Reason == "unlock"
	})
	opsReply(t, holder, "close fd1", "OK")
	if code := fg.waitExit(t); code != 0 {
		t.Fatalf("lockfs exited %d:\n%s", code, fg.stderr)
	}
	m.waitEvent(t, "unmounted", func(e Event) bool { return e.Event == "unmounted" })
}

// TestOpsUnmountCommand: `lockfs unmount` refuses while files are open
// and says so, only unmounts lockfs mounts, and --lazy detaches.
func TestOpsUnmountCommand(t *testing.T) {
	w := newOpsWorld(t)
	m := w.newMount(t, "unmount")
	opsMustRun(t, nil, nil, w.bin, "mount", "--pidfile", m.pidfile, "--log-file", m.log, m.dir)
	holder := startActor(t, "holder", m.dir, "")
	opsReply(t, holder, "open tempest-serial-rw-lock rw", "OK fd1")
	opsReply(t, holder, "setlk fd1 RD SET 0 0", "OK")

	r := opsRun(t, nil, nil, w.bin, "unmount", m.dir)
	if r.code != 1 || !strings.Contains(r.stderr, "busy") || !strings.Contains(r.stderr, "lockfs locks "+m.dir) {
		t.Fatalf("unmount with a lock held: %s\nwant exit 1, busy, and how to see the holders", r)
	}
	m.requireMounted(t)

	tmpfs := mountTmpfs(t)
	r = opsRun(t, nil, nil, w.bin, "unmount", tmpfs)
	if r.code != 1 || !strings.Contains(r.stderr, "not lockfs") {
		t.Errorf("unmount of a tmpfs: %s\nwant exit 1, not lockfs", r)
	}
	if fstype, ok := mountedAt(tmpfs); !ok || fstype != "tmpfs" {
		t.Errorf("lockfs unmount touched the tmpfs at %s", tmpfs)
	}
	r = opsRun(t, nil, nil, w.bin, "unmount", w.path("unmount"))
	if r.code != 1 || !strings.Contains(r.stderr, "not mounted") {
		t.Errorf("unmount of a plain directory: %s\nwant exit 1, not mounted", r)
	}

	// --lazy: gone from the namespace at once, served until closed.
	pid := m.daemonPid(t)
	opsMustRun(t, nil, nil, w.bin, "unmount", "--lazy", m.dir)
	m.requireGone(t)
	if s := procState(pid); s == "gone" || s == "Z" {
		t.Fatal("lockfs exited while a file of its detached mount is open")
	}
	opsReply(t, holder, "getlk fd1 WR SET 0 0", "GETLK UN")
	opsReply(t, holder, "close fd1", "OK")
	m.waitDaemonGone(t)
}

// TestOpsStaleRecover: after kill -9 the mount is stale ("Transport
// endpoint is not connected"); mounting again is refused with the
// command that fixes it, and --recover fixes it and mounts.
func TestOpsStaleRecover(t *testing.T) {
	w := newOpsWorld(t)
	m := w.newMount(t, "stale")
	opsMustRun(t, nil, nil, w.bin, "mount", "--pidfile", m.pidfile, "--log-file", m.log, m.dir)
	m.signal(t, syscall.SIGKILL)
	m.waitDaemonGone(t)
	// A request that reaches the kernel while the connection is being
	// torn down (the last thread of lockfs exiting) ends ECONNABORTED;
	// every later one ENOTCONN, "Transport endpoint is not connected".
	var sfs unix.Statfs_t
	for deadline := time.Now().Add(stopTimeout); ; time.Sleep(10 * time.Millisecond) {
		err := unix.Statfs(m.dir, &sfs)
		if errors.Is(err, syscall.ENOTCONN) {
			break
		}
		if !errors.Is(err, syscall.ECONNABORTED) || time.Now().After(deadline) {
			t.Fatalf("statfs of the mount of a killed lockfs: %v, want ENOTCONN", err)
		}
	}
	m.requireMounted(t)

	r := opsRun(t, nil, nil, w.bin, "mount", "--pidfile", m.pidfile, "--log-file", m.log, m.dir)
	if r.code != 32 || !strings.Contains(r.stderr, "stale") || !strings.Contains(r.stderr, "fusermount3 -uz "+m.dir) ||
		!strings.Contains(r.stderr, "--recover") {
		t.Fatalf("mount on a stale mount: %s\nwant exit 32 naming the stale mount, fusermount3 -uz and --recover", r)
	}
	if n := opsCountMounts(m.dir); n != 1 {
		t.Fatalf("%d mounts on %s, want the stale one only", n, m.dir)
	}

	opsMustRun(t, nil, nil, w.bin, "mount", "--recover", "--pidfile", m.pidfile, "--log-file", m.log, m.dir)
	if n := opsCountMounts(m.dir); n != 1 {
		t.Fatalf("%d mounts on %s after --recover, want 1", n, m.dir)
	}
	if err := unix.Statfs(m.dir, &sfs); err != nil {
		t.Fatalf("statfs after --recover: %v", err)
	}
	opsMustRun(t, nil, nil, "flock", "--nonblock", filepath.Join(m.dir, "tempest-availability_zone"), "true")
	m.waitEvent(t, "recovered", func(e Event) bool { return e.Event == "recovered" })
	m.unmountAndWait(t, nil)
}

// TestOpsNotify plays systemd's side of the notify protocol: READY=1
// comes only once the mount is in place, with the pid of the serving
// process, and STOPPING=1 when it unmounts; a refused unmount is a
// STATUS=. A daemonizing lockfs sends READY=1 with the daemon's pid as
// MAINPID, and the daemon does not inherit NOTIFY_SOCKET.
func TestOpsNotify(t *testing.T) {
	w := newOpsWorld(t)
	sock := w.path("notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	next := func(t *testing.T) string {
		t.Helper()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(mustFinishWithin))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	env := []string{"NOTIFY_SOCKET=" + sock}

	t.Run("foreground", func(t *testing.T) {
		m := w.newMount(t, "notify-fg")
		args := []string{"mount", "--foreground", "--log-file", m.log, "--pidfile", m.pidfile, m.dir}
		fg := &opsForeground{opsMount: m, stderr: &lockedBuffer{}, exited: make(chan struct{})}
		fg.cmd = exec.Command(w.bin, args...)
		fg.cmd.Env = append(os.Environ(), env...)
		fg.cmd.Stdout, fg.cmd.Stderr = fg.stderr, fg.stderr
		if err := fg.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { fg.cmd.Wait(); close(fg.exited) }()
		t.Cleanup(func() {
			if fg.running() {
				fg.cmd.Process.Kill()
				<-fg.exited
			}
		})
		ready := next(t)
		// Checked when the notification arrives: no waiting.
		m.requireMounted(t)
		want := fmt.Sprintf("READY=1\nSTATUS=Serving %s\nMAINPID=%d\n", m.dir, fg.cmd.Process.Pid)
		if ready != want {
			t.Errorf("first notification %q, want %q", ready, want)
		}
		if _, err := os.Stat(m.pidfile); err != nil {
			t.Errorf("pidfile not written before READY=1: %v", err)
		}

		holder := startActor(t, "holder", m.dir, "")
		opsReply(t, holder, "open workspaces rw", "OK fd1")
		opsReply(t, holder, "setlk fd1 WR SET 0 0", "OK")
		fg.signal(t, syscall.SIGTERM)
		if got := next(t); !strings.HasPrefix(got, "STATUS=Unmount refused") {
			t.Errorf("after a refused unmount: %q, want STATUS=Unmount refused…", got)
		}
		opsReply(t, holder, "close fd1", "OK")
		fg.signal(t, syscall.SIGTERM)
		if got := next(t); got != "STOPPING=1\n" {
			t.Errorf("when unmounting: %q, want STOPPING=1", got)
		}
		if code := fg.waitExit(t); code != 0 {
			t.Fatalf("lockfs exited %d:\n%s", code, fg.stderr)
		}
		m.requireGone(t)
	})

	t.Run("daemon", func(t *testing.T) {
		m := w.newMount(t, "notify-daemon")
		opsMustRun(t, nil, env, w.bin, "mount", "--pidfile", m.pidfile, "--log-file", m.log, m.dir)
		pid := m.daemonPid(t)
		want := fmt.Sprintf("READY=1\nSTATUS=Serving %s\nMAINPID=%d\n", m.dir, pid)
		if got := next(t); got != want {
			t.Errorf("notification %q, want %q (MAINPID: the daemon)", got, want)
		}
		environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(environ), "NOTIFY_SOCKET=") {
			t.Error("the daemon inherited NOTIFY_SOCKET")
		}
		m.unmountAndWait(t, nil)
	})
}

// TestOpsTempestConf: --tempest-conf mounts at Tempest's lock_path, and
// refuses clearly when the file sets none.
func TestOpsTempestConf(t *testing.T) {
	w := newOpsWorld(t)
	m := w.newMount(t, "tempest")
	m.dir = w.path("tempest/opt/stack/data/tempest")
	conf := w.path("tempest/tempest.conf")
	opsWriteFile(t, conf, "[DEFAULT]\nlog_dir = /var/log/tempest\n\n[oslo_concurrency]\nlock_path = "+m.dir+"\n")
	opsMustRun(t, nil, nil, w.bin, "mount", "--tempest-conf", conf, "--pidfile", m.pidfile, "--log-file", m.log)
	m.requireMounted(t)
	m.unmountAndWait(t, nil)

	bare := w.path("tempest/bare.conf")
	opsWriteFile(t, bare, "[DEFAULT]\ndebug = true\n")
	// Something may be mounted at Tempest's default already (a lockfs
	// someone started by hand): count the mounts, before and after.
	watched := []string{m.dir, "/tmp/tempest-lock"}
	before := map[string]int{}
	for _, dir := range watched {
		before[dir] = opsCountMounts(dir)
	}
	r := opsRun(t, nil, nil, w.bin, "mount", "--tempest-conf", bare, "--pidfile", m.pidfile)
	if r.code != 2 || !strings.Contains(r.stderr, "sets no [oslo_concurrency] lock_path") || !strings.Contains(r.stderr, "/tmp/tempest-lock") {
		t.Errorf("tempest.conf without lock_path: %s\nwant exit 2 naming lock_path and Tempest's default /tmp/tempest-lock", r)
	}
	r = opsRun(t, nil, nil, w.bin, "mount", "--tempest-conf", conf, m.dir)
	if r.code != 2 || !strings.Contains(r.stderr, "not both") {
		t.Errorf("--tempest-conf with a MOUNTPOINT: %s\nwant exit 2", r)
	}
	for _, dir := range watched {
		if n := opsCountMounts(dir); n != before[dir] {
			t.Errorf("a refused --tempest-conf changed the mounts on %s: %d, was %d", dir, n, before[dir])
		}
	}
}

func opsWriteFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mustReply sends cmd to an actor and checks its answer.
func opsReply(t *testing.T, a *actor, cmd, want string) {
	t.Helper()
	got, ok := a.start(cmd).wait(mustFinishWithin)
	if !ok {
		t.Fatalf("%s: %q did not return within %v", a.name, cmd, mustFinishWithin)
	}
	if got != want {
		t.Fatalf("%s: %q answered %q, want %q", a.name, cmd, got, want)
	}
}
