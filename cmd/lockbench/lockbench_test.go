package main

import (
	"bytes"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockfs/lockfs/internal/bench"
	"github.com/lockfs/lockfs/internal/mountinfo"
)

// requireFUSEEnv turns the "cannot mount here" skip into a failure (CI).
const requireFUSEEnv = "LOCKFS_REQUIRE_FUSE"

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv(requireFUSEEnv) == "1" {
		t.Fatalf(format+" (and %s=1)", append(args, requireFUSEEnv)...)
	}
	t.Skipf(format, args...)
}

// buildToMount skips (or, in CI, fails) a test that cannot mount here,
// and builds lockbench into a fresh directory for it.
func buildToMount(t *testing.T) (dir, bin string) {
	t.Helper()
	if testing.Short() {
		t.Skip("mounts")
	}
	if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		skipOrFail(t, "FUSE unavailable: %v", err)
	} else {
		f.Close()
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "lockbench mounts (a tmpfs, the no-op server), which needs root (euid %d)", os.Geteuid())
	}
	dir = t.TempDir()
	bin = filepath.Join(dir, "lockbench")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir, bin
}

// TestQuickRun builds lockbench and runs it as a user would, in quick mode
// with tiny counts, against a tmpfs and the no-op server (not lockfs:
// the integration tests cover it, and building it here would double the
// time). It checks that the JSON is well-formed, that every measurement
// has a positive value for every target it applies to, that the kernel
// never broke mutual exclusion in the handoff, that both PNGs (-png and
// the plot subcommand) decode, and that no mount is left behind.
func TestQuickRun(t *testing.T) {
	dir, bin := buildToMount(t)
	jsonPath, pngPath := filepath.Join(dir, "out.json"), filepath.Join(dir, "out.png")
	cmd := exec.Command(bin, "-quick", "-targets", "tmpfs,noop", "-rounds", "2", "-n", "20",
		"-json", jsonPath, "-png", pngPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("lockbench: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("lockbench output:\n%s", stdout.String())
	// "lockbench: 2 rounds × 20 steps × 2 targets in /tmp/lockbench-…"
	_, work, ok := strings.Cut(stderr.String(), " targets in ")
	work, _, _ = strings.Cut(work, "\n")
	if !ok || !strings.Contains(work, "lockbench-") {
		t.Errorf("no work directory in lockbench's stderr:\n%s", stderr.String())
	} else {
		if data, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(data), work) {
			t.Errorf("a mount under %s is left behind:\n%s", work, data)
		}
		if _, err := os.Stat(work); !os.IsNotExist(err) {
			t.Errorf("work directory %s not removed (%v)", work, err)
		}
	}

	res, err := bench.Load(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Targets) != 2 || res.Targets[0].Name != "tmpfs" || res.Targets[1].Name != "noop" {
		t.Fatalf("targets = %+v, want tmpfs and noop", res.Targets)
	}
	if res.Targets[1].Exclusion || !res.Targets[0].Exclusion {
		t.Errorf("exclusion flags: %+v", res.Targets)
	}
	serverOnly := map[string]bool{} // measurements of the serving process
	for _, st := range plan(&config{scaleMax: 100000}) {
		for _, d := range st.defs {
			serverOnly[d.id] = d.server
		}
	}
	groupsSeen := map[string]bool{}
	for _, m := range res.Measurements {
		groupsSeen[m.Group] = true
		for _, tg := range res.Targets {
			s := m.Results[tg.Name]
			if s == nil {
				if serverOnly[m.ID] && tg.ServerPID == 0 {
					continue // n/a: no server process
				}
				t.Errorf("%s: no result for %s", m.ID, tg.Name)
				continue
			}
			want := res.Config.Rounds
			if isScale(m.Group) {
				want = res.Config.ScaleRounds
			}
			if len(s.Rounds) != want {
				t.Errorf("%s on %s: %d rounds, want %d", m.ID, tg.Name, len(s.Rounds), want)
			}
			for _, v := range append(s.Rounds, s.Median) {
				if !(v > 0) {
					t.Errorf("%s on %s: value %v is not positive (%+v)", m.ID, tg.Name, v, s)
				}
			}
			if m.Group == "handoff" && s.Real == !tg.Exclusion {
				t.Errorf("%s on %s: real = %v with exclusion %v", m.ID, tg.Name, s.Real, tg.Exclusion)
			}
		}
		if m.ID == "handoff.rate" {
			if v := m.Results["tmpfs"].Extra["violations"]; sum(v) != 0 {
				t.Errorf("the kernel broke mutual exclusion in the handoff? violations %v", v)
			}
		}
	}
	for _, g := range groups {
		if !groupsSeen[g] {
			t.Errorf("no measurement of group %s", g)
		}
	}
	if !strings.Contains(stdout.String(), "noop/tmpfs") || !strings.Contains(stdout.String(), "mutual exclusion does NOT hold") {
		t.Errorf("the table lacks the noop/tmpfs ratio or the no-exclusion warning:\n%s", stdout.String())
	}

	checkPNG(t, pngPath)
	replot := filepath.Join(dir, "replot.png")
	if out, err := exec.Command(bin, "plot", jsonPath, replot).CombinedOutput(); err != nil {
		t.Fatalf("lockbench plot: %v\n%s", err, out)
	}
	checkPNG(t, replot)
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: not a PNG: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 600 {
		t.Errorf("%s: %v is too small for a chart", path, b)
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-quick", "-rounds", "4", "x=/tmp"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.rounds != 4 || cfg.duration.Milliseconds() != 100 || cfg.scaleMax != 1000 {
		t.Errorf("-quick -rounds 4: rounds %d, duration %v, scale-max %d; want 4, 100ms, 1000", cfg.rounds, cfg.duration, cfg.scaleMax)
	}
	if len(cfg.targets) != 3 || len(cfg.dirs) != 1 {
		t.Errorf("targets %v, dirs %v", cfg.targets, cfg.dirs)
	}
	for _, bad := range [][]string{
		{"-targets", "ext4"},
		{"-only", "nosuch"},
		{"-targets", "none"},
		{"-scale-max", "10"},
	} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

func TestSelectSteps(t *testing.T) {
	all := plan(&config{scaleMax: 10000})
	for only, want := range map[string]int{
		"handoff":              1,
		"throughput":           8,
		"scale":                2 + 2 + 2, // files 1k, 10k; locks and ranges 1k, 10k
		"throughput.shared.4":  1,
		"files.create.10000":   1,
		"setlk,ofd,flock,oslo": 4,
	} {
		got, err := selectSteps(all, strings.Split(only, ","))
		if err != nil || len(got) != want {
			t.Errorf("-only %s: %d steps (%v), want %d", only, len(got), err, want)
		}
	}
}

// TestServerSession starts the no-op server as lockbench does, with and
// without -own-session, and checks where it runs: in a process group of
// its own inside lockbench's session, or in a session of its own (which
// is what makes the kernel schedule it apart). Teardown leaves no mount.
func TestServerSession(t *testing.T) {
	dir, bin := buildToMount(t)
	ourSession, err := unix.Getsid(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, own := range []bool{false, true} {
		mnt := filepath.Join(dir, fmt.Sprintf("own-%v", own))
		cl := &cleanups{}
		pid, err := startServer(bin, []string{cmdServeNoop, mnt}, mnt, "fuse."+noopFSType, filepath.Join(dir, "stderr"), own, cl)
		if err != nil {
			cl.run()
			t.Fatal(err)
		}
		sid, errS := unix.Getsid(pid)
		pgid, errP := unix.Getpgid(pid)
		if errs := cl.run(); len(errs) > 0 {
			t.Errorf("teardown: %v", errs)
		}
		if errS != nil || errP != nil {
			t.Fatalf("getsid/getpgid(%d): %v, %v", pid, errS, errP)
		}
		if pgid != pid {
			t.Errorf("own-session %v: server %d in process group %d, want its own", own, pid, pgid)
		}
		if want := map[bool]int{false: ourSession, true: pid}[own]; sid != want {
			t.Errorf("own-session %v: server %d in session %d, want %d (ours: %d)", own, pid, sid, want, ourSession)
		}
		if _, mounted := mountedAt(mnt); mounted {
			t.Errorf("%s still mounted after teardown", mnt)
		}
	}
}

// TestServerStopsRightAfterMount stops the no-op server the moment its
// mount appears, ten times: each time it must exit and take its mount
// with it. A SIGTERM during go-fuse's WaitMount, before the server
// caught signals, used to kill it half-way: the mount was left behind
// ("Transport endpoint is not connected"), or a thread hung in close()
// waiting for a FLUSH that only the dying server could answer (seen in
// CI). On such a hang the test aborts the FUSE connection through
// fusectl instead of hanging itself.
func TestServerStopsRightAfterMount(t *testing.T) {
	dir, bin := buildToMount(t)
	for i := range 10 {
		mnt := filepath.Join(dir, fmt.Sprint("mnt", i))
		if err := os.Mkdir(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, cmdServeNoop, mnt)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		conn := ""
		for deadline := time.Now().Add(mountTimeout); conn == "" && time.Now().Before(deadline); {
			conn = fuseConnection(t, mnt)
		}
		if conn == "" {
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("round %d: %s not mounted within %v", i, mnt, mountTimeout)
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(stopTimeout):
			abortFUSE(t, conn)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
			<-exited
			t.Fatalf("round %d: the server hung after SIGTERM (FUSE connection %s aborted)", i, conn)
		}
		if _, mounted := mountedAt(mnt); mounted {
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
			t.Fatalf("round %d: the server exited (%v) and left %s mounted", i, cmd.ProcessState, mnt)
		}
	}
}

// fuseConnection is the FUSE connection number (the mount's minor device
// number, as /sys/fs/fuse/connections names it) of the no-op server's
// mount at mnt, or "" while there is none. It reads mountinfo, so it
// does not wait on the server.
func fuseConnection(t *testing.T, mnt string) string {
	e, ok, err := mountinfo.At(mnt)
	if err != nil {
		t.Fatal(err)
	}
	if !ok || e.FSType != "fuse."+noopFSType {
		return ""
	}
	_, minor, _ := strings.Cut(e.Device, ":")
	return minor
}

// abortFUSE aborts a FUSE connection, mounting fusectl if it is not.
func abortFUSE(t *testing.T, conn string) {
	const ctl = "/sys/fs/fuse/connections"
	abort := filepath.Join(ctl, conn, "abort")
	if _, err := os.Stat(abort); err != nil {
		if err := unix.Mount("fusectl", ctl, "fusectl", 0, ""); err != nil {
			t.Errorf("mount fusectl: %v", err)
		}
	}
	if err := os.WriteFile(abort, []byte("1"), 0); err != nil {
		t.Errorf("abort FUSE connection %s: %v", conn, err)
	}
}
