package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMountLockfs checks the harness itself: the daemon creates the
// mount point, the kernel lists it as fuse.lockfs, and an ordinary file
// can be created there.
func TestMountLockfs(t *testing.T) {
	m := mountLockfs(t)
	if st, err := os.Stat(m.Dir); err != nil || !st.IsDir() {
		t.Fatalf("mount point: %v", err)
	}
	p := filepath.Join(m.Dir, "f")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "x" {
		t.Fatalf("read back %q, %v", b, err)
	}
}

// TestAuditEvents drives a lock through wait, grant, release, deadlock
// and interruption on lockfs and checks the audit log names them. The
// differential suite checks outcomes; this checks they are recorded.
func TestAuditEvents(t *testing.T) {
	m := mountLockfs(t)
	s := newScene(t, m.Dir)
	var out []string
	func() {
		defer s.end(&out)
		a, b := s.actor("A"), s.actor("B")
		fa, fb := s.open(a, "audited", "rw"), s.open(b, "audited", "rw")
		s.want(s.do(a, "setlk %s WR SET 0 10", fa), "OK")
		w := s.start(b, "setlkw %s WR SET 0 10", fb)
		s.mustBlock(w)
		s.do(a, "setlk %s UN SET 0 10", fa)
		s.want(s.finish(w), "OK")

		// A deadlock: A holds 20, B holds 10 and waits for 20; A asks for 10.
		s.want(s.do(a, "setlk %s WR SET 20 1", fa), "OK")
		w = s.start(b, "setlkw %s WR SET 20 1", fb)
		s.mustBlock(w)
		s.want(s.do(a, "setlkw %s WR SET 5 1", fa), "ERR EDEADLK")
		s.do(a, "close %s", fa)
		s.want(s.finish(w), "OK")

		// An interrupted wait.
		fa = s.open(a, "audited", "rw")
		w = s.start(a, "setlkw %s RD SET 0 0", fa)
		s.mustBlock(w)
		s.signalCall(w, syscall.SIGALRM)
		s.want(s.finish(w), "ERR EINTR")
		s.do(b, "close %s", fb)
	}()

	// Events are written as they happen, but let a slow writer finish.
	var evs []Event
	want := []string{"waiting", "acquired", "released", "deadlock", "interrupted"}
	for deadline := time.Now().Add(mustFinishWithin); ; time.Sleep(20 * time.Millisecond) {
		evs = m.Events(t)
		if missing := missingEvents(evs, want); len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, ev := range missingEvents(evs, want) {
		t.Errorf("no %q event in the audit log", ev)
	}
	for _, ev := range evs {
		if ev.Lock != "audited" {
			continue
		}
		if ev.Kind != "posix" {
			t.Errorf("event %s: kind %q, want posix", ev.Event, ev.Kind)
		}
		if !strings.HasSuffix(ev.Path, "/audited") {
			t.Errorf("event %s: path %q", ev.Event, ev.Path)
		}
		if ev.Pid == 0 && ev.Event == "acquired" {
			t.Errorf("acquired event without a pid: %v", ev.Raw)
		}
	}
	if t.Failed() {
		b, _ := os.ReadFile(m.LogPath)
		t.Logf("audit log:\n%s", b)
	}
}

func missingEvents(evs []Event, want []string) []string {
	seen := map[string]bool{}
	for _, ev := range evs {
		if ev.Lock == "audited" {
			seen[ev.Event] = true
		}
	}
	var missing []string
	for _, w := range want {
		if !seen[w] {
			missing = append(missing, w)
		}
	}
	return missing
}
