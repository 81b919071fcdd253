package metrics

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lockfs/lockfs/semaphores"
)

var names = map[uint64]string{1: "a", 2: "b", 3: "c", 4: "d"}

func newTest(max int) *Metrics {
	return New(Options{MaxLocks: max, Name: func(n uint64) string { return names[n] }})
}

func acquired(node, owner uint64, class semaphores.Class, typ semaphores.LockType, attempts int, waited time.Duration) semaphores.Event {
	return semaphores.Event{Kind: semaphores.EventAcquired, Node: node, Owner: owner, Class: class, Type: typ,
		Attempts: attempts, Waited: waited}
}

func ev(kind semaphores.EventKind, node, owner uint64, attempts int) semaphores.Event {
	return semaphores.Event{Kind: kind, Node: node, Owner: owner, Type: semaphores.WriteLock, Attempts: attempts}
}

// TestCounters feeds the events of known lock traffic and checks every
// counter and histogram.
func TestCounters(t *testing.T) {
	m := newTest(0)
	W, R := semaphores.WriteLock, semaphores.ReadLock
	P, F := semaphores.ClassPOSIX, semaphores.ClassFlock

	// Owner 1 takes a at once and releases it after 2s.
	m.LockEvent(acquired(1, 1, P, W, 1, 0))
	m.LockEvent(semaphores.Event{Kind: semaphores.EventReleased, Node: 1, Owner: 1, Type: W, Held: 2 * time.Second})
	// Owner 2 polls: refused 3 times, granted on the 4th attempt.
	m.LockEvent(ev(semaphores.EventWaiting, 1, 2, 0))
	m.LockEvent(acquired(1, 2, P, W, 4, 300*time.Millisecond))
	// Owner 3 is refused twice, blocks, is interrupted (EINTR), blocks
	// again and is granted: 4 attempts, 2 of them refusals.
	m.LockEvent(ev(semaphores.EventWaiting, 1, 3, 0))
	m.LockEvent(ev(semaphores.EventInterrupted, 1, 3, 3))
	m.LockEvent(acquired(1, 3, P, W, 4, 2*time.Second))
	// Owner 4 polls 5 times on b and closes the file: gave up.
	m.LockEvent(ev(semaphores.EventWaiting, 2, 4, 0))
	m.LockEvent(ev(semaphores.EventGaveUp, 2, 4, 5))
	// Owner 5 blocks on b in flock and is granted: no refusal.
	m.LockEvent(semaphores.Event{Kind: semaphores.EventWaiting, Node: 2, Owner: 5, Class: F, Type: R})
	m.LockEvent(acquired(2, 5, F, R, 1, 50*time.Millisecond))

	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"acquisitions a posix write", testutil.ToFloat64(m.acquisitions.WithLabelValues("a", "posix", "write")), 3},
		{"acquisitions b flock read", testutil.ToFloat64(m.acquisitions.WithLabelValues("b", "flock", "read")), 1},
		{"contentions a", testutil.ToFloat64(m.contentions.WithLabelValues("a")), 2},
		{"contentions b", testutil.ToFloat64(m.contentions.WithLabelValues("b")), 2},
		{"denied a", testutil.ToFloat64(m.denied.WithLabelValues("a")), 3 + 2},
		{"denied b", testutil.ToFloat64(m.denied.WithLabelValues("b")), 5},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if n := len(m.interrupted); n != 0 {
		t.Errorf("%d interrupted counts left after every wait ended", n)
	}
	want := `
# HELP lockfs_lock_hold_seconds Time each released lock record had been held.
# TYPE lockfs_lock_hold_seconds histogram
lockfs_lock_hold_seconds_bucket{lock="a",mode="write",le="0.001"} 0
lockfs_lock_hold_seconds_bucket{lock="a",mode="write",le="0.005"} 0
lockfs_lock_hold_seconds_bucket{lock="a",mode="write",le="0.01"} 0
lockfs_lock_hold_seconds_bucket{lock="a",mode="write",le="0.05"} 0
lockfs_lock_hold_seconds_bucket{lock="a",mode="write",le="0.1"} 0
lockfs_lock_hold_seconds_bucket{lock="a",mode="write",le="0.5"} 0
lockfs_lock_hold_seconds_bucket{lock="a",mode="write",le="1"} 0
lockfs_lock_hold_seconds_bucket{lock="a",mode="write",le="5"} 1
lockfs_lock_hold_seconds_bucket{lock="a",mode="write",le="10"} 1
lockfs_lock_hold_seconds_bucket{lock="a",mode="write",le="30"} 1
lockfs_lock_hold_seconds_bucket{lock="a",mode="write",le="60"} 1
lockfs_lock_hold_seconds_bucket{lock="a",mode="write",le="300"} 1
lockfs_lock_hold_seconds_bucket{lock="a",mode="write",le="900"} 1
lockfs_lock_hold_seconds_bucket{lock="a",mode="write",le="3600"} 1
lockfs_lock_hold_seconds_bucket{lock="a",mode="write",le="+Inf"} 1
lockfs_lock_hold_seconds_sum{lock="a",mode="write"} 2
lockfs_lock_hold_seconds_count{lock="a",mode="write"} 1
`
	if err := testutil.CollectAndCompare(m.hold, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.wait); n != 2 {
		t.Errorf("%d wait histograms, want 2 (a/write, b/read)", n)
	}
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(`
# HELP lockfs_lock_wait_seconds Time from an owner's first refusal or block to the acquisition (0 without contention).
# TYPE lockfs_lock_wait_seconds histogram
`+histogram("lockfs_lock_wait_seconds", `lock="a",mode="write"`, []float64{0, 0.3, 2})+
		histogram("lockfs_lock_wait_seconds", `lock="b",mode="read"`, []float64{0.05})),
		"lockfs_lock_wait_seconds"); err != nil {
		t.Error(err)
	}
}

// histogram renders the expected text of one histogram series.
func histogram(name, labels string, obs []float64) string {
	var b strings.Builder
	sum := 0.0
	for _, o := range obs {
		sum += o
	}
	for _, le := range append(append([]float64(nil), Buckets...), -1) {
		n := 0
		for _, o := range obs {
			if le < 0 || o <= le {
				n++
			}
		}
		leText := fmt.Sprint(le)
		if le < 0 {
			leText = "+Inf"
		}
		fmt.Fprintf(&b, "%s_bucket{%s,le=%q} %d\n", name, labels, leText, n)
	}
	fmt.Fprintf(&b, "%s_sum{%s} %v\n%s_count{%s} %d\n", name, labels, sum, name, labels, len(obs))
	return b.String()
}

// TestLabelCap: past MaxLocks distinct names, locks share "_other", in
// the counters and in the gauges; a known name keeps its own label.
func TestLabelCap(t *testing.T) {
	m := newTest(2)
	for node := uint64(1); node <= 4; node++ {
		m.LockEvent(acquired(node, node, semaphores.ClassPOSIX, semaphores.WriteLock, 1, 0))
	}
	m.LockEvent(acquired(1, 9, semaphores.ClassPOSIX, semaphores.WriteLock, 1, 0)) // a again
	for lock, want := range map[string]float64{"a": 2, "b": 1, OtherLock: 2} {
		if got := testutil.ToFloat64(m.acquisitions.WithLabelValues(lock, "posix", "write")); got != want {
			t.Errorf("acquisitions{lock=%q} = %v, want %v", lock, got, want)
		}
	}
	if n := testutil.CollectAndCount(m.acquisitions); n != 3 {
		t.Errorf("%d acquisition series, want 3 (a, b, _other)", n)
	}

	lock := func(node uint64, n int) semaphores.FileState {
		fs := semaphores.FileState{Node: node}
		for i := 0; i < n; i++ {
			fs.Locks = append(fs.Locks, semaphores.Lock{Owner: uint64(i + 1), Type: semaphores.ReadLock})
		}
		return fs
	}
	snap := semaphores.Snapshot{Files: []semaphores.FileState{lock(2, 1), lock(3, 2), lock(4, 3)}}
	snap.Files[0].Waiters = []semaphores.Waiter{{Owner: 7}, {Owner: 8}}
	m.SetSource(func() semaphores.Snapshot { return snap })
	want := `
# HELP lockfs_lock_waiters Owners waiting for a lock now (blocked in F_SETLKW or flock, or polling with F_SETLK), by lock file.
# TYPE lockfs_lock_waiters gauge
lockfs_lock_waiters{lock="_other"} 0
lockfs_lock_waiters{lock="a"} 0
lockfs_lock_waiters{lock="b"} 2
# HELP lockfs_locks_held Applied lock records now, by lock file.
# TYPE lockfs_locks_held gauge
lockfs_locks_held{lock="_other"} 5
lockfs_locks_held{lock="a"} 0
lockfs_locks_held{lock="b"} 1
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "lockfs_locks_held", "lockfs_lock_waiters"); err != nil {
		t.Error(err)
	}
}

func TestGaugesWithoutSource(t *testing.T) {
	m := newTest(0)
	m.LockEvent(acquired(1, 1, semaphores.ClassPOSIX, semaphores.WriteLock, 1, 0))
	if n, err := testutil.GatherAndCount(m.reg, "lockfs_locks_held"); err != nil || n != 0 {
		t.Errorf("gauges before SetSource: %d series, %v", n, err)
	}
}

// TestListen scrapes a real endpoint and checks a second listener on the
// same port fails.
func TestListen(t *testing.T) {
	m := newTest(0)
	m.SetSource(func() semaphores.Snapshot { return semaphores.Snapshot{} })
	m.LockEvent(acquired(1, 1, semaphores.ClassFlock, semaphores.ReadLock, 1, 0))
	srv, err := m.Listen("127.0.0.1:0", func(err error) { t.Errorf("server: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	resp, err := http.Get("http://" + srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`lockfs_lock_acquisitions_total{kind="flock",lock="a",mode="read"} 1`,
		`lockfs_build_info{goversion="go`,
		`lockfs_locks_held{lock="a"} 0`,
		"go_goroutines ",
		"process_open_fds ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("scrape lacks %q:\n%s", want, text)
		}
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp, err := http.Get("http://" + srv.Addr() + "/nope"); err != nil || resp.StatusCode != 404 {
		t.Errorf("GET /nope: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if s2, err := m.Listen(srv.Addr(), nil); err == nil {
		s2.Close()
		t.Errorf("a second listener on %s succeeded", srv.Addr())
	}
}
