package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/lockfs/lockfs/internal/mountinfo"
)

func TestPidfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lockfs.pid")
	if err := writePidfile(path, 4242); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "4242\n" {
		t.Fatalf("pidfile holds %q, %v; want \"4242\\n\"", b, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("pidfile mode %v, %v; want 0644", st.Mode(), err)
	}
	// Another lockfs took the pidfile over: ours must not remove it.
	if err := writePidfile(path, 4343); err != nil {
		t.Fatal(err)
	}
	removePidfile(path, 4242)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("pidfile of another process removed: %v", err)
	}
	removePidfile(path, 4343)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("own pidfile not removed: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
	if err := writePidfile(filepath.Join(t.TempDir(), "missing", "x.pid"), 1); err == nil {
		t.Error("pidfile in a missing directory: no error")
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]uint32{"": 0o755, "1777": 0o1777, "0775": 0o775, "700": 0o700, "7777": 0o7777} {
		if got, err := parseMode(in); err != nil || got != want {
			t.Errorf("parseMode(%q) = %o, %v; want %o", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "10000", "rwx", "-1", "8"} {
		if got, err := parseMode(in); err == nil {
			t.Errorf("parseMode(%q) = %o, want an error", in, got)
		}
	}
}

func TestLookupOwner(t *testing.T) {
	if got, err := lookupUID(""); err != nil || got != uint32(os.Geteuid()) {
		t.Errorf("lookupUID(\"\") = %d, %v; want the caller %d", got, err, os.Geteuid())
	}
	if got, err := lookupGID(""); err != nil || got != uint32(os.Getegid()) {
		t.Errorf("lookupGID(\"\") = %d, %v; want the caller's group %d", got, err, os.Getegid())
	}
	if got, err := lookupUID("1234"); err != nil || got != 1234 {
		t.Errorf("lookupUID(1234) = %d, %v", got, err)
	}
	if got, err := lookupUID("root"); err != nil || got != 0 {
		t.Errorf("lookupUID(root) = %d, %v", got, err)
	}
	if got, err := lookupGID("root"); err != nil || got != 0 {
		t.Errorf("lookupGID(root) = %d, %v", got, err)
	}
	if _, err := lookupUID("no-such-user-lockfs"); err == nil {
		t.Error("lookupUID of an unknown user: no error")
	}
	if _, err := lookupGID("no-such-group-lockfs"); err == nil {
		t.Error("lookupGID of an unknown group: no error")
	}
}

// TestCheck: what a look at the command line refuses is a usage error,
// found before anything is started or mounted.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "tempest.conf")
	if err := os.WriteFile(conf, []byte("[oslo_concurrency]\nlock_path = "+dir+"/locks\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noLockPath := filepath.Join(dir, "bare.conf")
	if err := os.WriteFile(noLockPath, []byte("[DEFAULT]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := func() *mountOptions {
		return &mountOptions{mountpoint: filepath.Join(dir, "mnt"), source: "mem", logLevel: "info", maxFileSize: 1, readyFD: -1}
	}
	for _, tc := range []struct {
		name   string
		change func(o *mountOptions)
		err    string
	}{
		{"backend", func(o *mountOptions) { o.source = "etcd://x" }, `unknown backend "etcd://x"`},
		{"log format", func(o *mountOptions) { o.logFormat = "xml" }, "--log-format"},
		{"log level", func(o *mountOptions) { o.logLevel = "loud" }, "--log-level"},
		{"file size", func(o *mountOptions) { o.maxFileSize = 0 }, "--max-file-size"},
		{"max files", func(o *mountOptions) { o.maxFiles = -1 }, "--max-files"},
		{"uid", func(o *mountOptions) { o.uid = "no-such-user-lockfs" }, "--uid"},
		{"gid", func(o *mountOptions) { o.gid = "no-such-group-lockfs" }, "--gid"},
		{"mode", func(o *mountOptions) { o.mode = "999" }, "--mode"},
		{"fsname", func(o *mountOptions) { o.fsname = "a,b" }, "--fsname"},
		{"drop_privileges", func(o *mountOptions) { o.mountpoint = "/dev/fd/5" }, "drop_privileges"},
		{"tempest conf without lock_path", func(o *mountOptions) { o.tempestConf = noLockPath }, "/tmp/tempest-lock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base()
			tc.change(o)
			err := o.check()
			var ee *exitError
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &ee) || ee.code != exitUsage {
				t.Fatalf("check() = %v; want a usage error containing %q", err, tc.err)
			}
		})
	}

	o := base()
	o.tempestConf, o.logFile, o.pidfile, o.mode, o.uid = conf, "rel.log", "rel.pid", "1777", "1234"
	if err := o.check(); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if o.mountpoint != filepath.Join(dir, "locks") || o.logFile != filepath.Join(wd, "rel.log") ||
		o.pidfile != filepath.Join(wd, "rel.pid") || o.rootMode != 0o1777 || o.rootUID != 1234 || o.fsname != "mem" {
		t.Errorf("check resolved %+v", o)
	}
}

func TestIsLockfs(t *testing.T) {
	for _, c := range []struct {
		fstype string
		want   bool
	}{{"fuse.lockfs", true}, {"tmpfs", false}, {"fuse.sshfs", false}, {"fuse", false}} {
		if got := (mountTableEntry{mountinfo.Entry{FSType: c.fstype}}).isLockfs(); got != c.want {
			t.Errorf("isLockfs(%q) = %v", c.fstype, got)
		}
	}
}

func TestCanonicalMountpoint(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		filepath.Join(dir, "link"):               filepath.Join(dir, "real"),
		filepath.Join(dir, "link", "new", "dir"): filepath.Join(dir, "real", "new", "dir"),
		filepath.Join(dir, "real") + "/":         filepath.Join(dir, "real"),
	} {
		if got, err := canonicalMountpoint(in); err != nil || got != want {
			t.Errorf("canonicalMountpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestDaemonArgs: the daemon child gets every flag that was set, so
// that flags added later need nothing in daemon.go; flags set to their
// default are left out.
func TestDaemonArgs(t *testing.T) {
	root := newRootCommand()
	mount, _, _ := root.Find([]string{"mount"})
	if err := mount.ParseFlags(strings.Fields("--allow-other --mode=1777 --tempest-conf=/etc/t.conf --log-file=/x.log --pidfile /p --recover --warn-held=0 --debug=false")); err != nil {
		t.Fatal(err)
	}
	o := &mountOptions{mountpoint: "/opt/stack/data/tempest", logFile: "/var/log/x.log"}
	got := daemonArgs(o, mount.Flags())
	want := strings.Fields("mount --foreground --ready-fd=3 --log-file=/var/log/x.log --allow-other=true --mode=1777 --pidfile=/p --recover=true -- /opt/stack/data/tempest")
	if !slices.Equal(got, want) {
		t.Errorf("daemonArgs = %q\nwant %q", got, want)
	}
}

func TestReadinessProtocol(t *testing.T) {
	for _, tc := range []struct {
		err      error
		wantCode int
		wantMsg  string
	}{
		{&exitError{exitUsage, errors.New("bad\nflag")}, exitUsage, "bad flag"},
		{errors.New("plain"), exitMountFailed, "plain"},
		{&exitError{exitMountFailed, errors.New("stale")}, exitMountFailed, "stale"},
	} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		rd := &readiness{f: w}
		if !rd.fail(tc.err) || rd.fail(tc.err) {
			t.Error("fail reports once, then never again")
		}
		b := make([]byte, 512)
		n, _ := r.Read(b)
		r.Close()
		line := strings.TrimSuffix(string(b[:n]), "\n")
		rest, ok := strings.CutPrefix(line, "error ")
		code, msg := parseReadinessError(rest)
		if !ok || code != tc.wantCode || msg != tc.wantMsg {
			t.Errorf("%v: line %q parsed as %d %q; want %d %q", tc.err, line, code, msg, tc.wantCode, tc.wantMsg)
		}
	}
	if code, msg := parseReadinessError("garbled"); code != exitMountFailed || msg != "garbled" {
		t.Errorf("garbled line: %d %q", code, msg)
	}
	if (&readiness{}).fail(errors.New("x")) {
		t.Error("foreground readiness claims to have reported")
	}
}

func TestFusermountError(t *testing.T) {
	busy := &fusermountError{command: "fusermount3 -u /m", msg: "fusermount3: failed to unmount /m: Device or resource busy"}
	if !errors.Is(busy, syscall.EBUSY) {
		t.Error("busy message does not unwrap to EBUSY")
	}
	other := &fusermountError{command: "fusermount3 -u /m", msg: "fusermount3: something else"}
	if errors.Is(other, syscall.EBUSY) || errors.Unwrap(other) != nil {
		t.Error("unknown message unwraps to an errno")
	}
	if !strings.Contains(busy.Error(), "Device or resource busy") {
		t.Errorf("message lost: %q", busy.Error())
	}
}

func TestDaemonLogPath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Setenv("XDG_STATE_HOME", "/state")
		if got := daemonLogPath("/opt/stack/data/tempest"); got != "/state/lockfs/opt-stack-data-tempest.log" {
			t.Errorf("daemonLogPath = %q", got)
		}
		return
	}
	if got := daemonLogPath("/opt/stack/data/tempest"); got != "/var/log/lockfs/opt-stack-data-tempest.log" {
		t.Errorf("daemonLogPath = %q", got)
	}
	if got := daemonLogPath("/"); got != "/var/log/lockfs/root.log" {
		t.Errorf("daemonLogPath(/) = %q", got)
	}
}

func TestFuseFdMountpoint(t *testing.T) {
	for in, want := range map[string]bool{"/dev/fd/3": true, "/dev/fd/12": true, "/dev/fd/x": false, "/mnt/fd/3": false} {
		if _, got := fuseFdMountpoint(in); got != want {
			t.Errorf("fuseFdMountpoint(%q) = %v", in, got)
		}
	}
}
