package integration

// lockfs --metrics-listen: after a known workload done by real processes,
// every counter, histogram count and gauge equals what was done.

import (
	"bufio"
	"context"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metricsAddr returns the address a lockfs mounted with
// --metrics-listen=127.0.0.1:0 logged that it listens on.
func metricsAddr(t *testing.T, m *Mount) string {
	t.Helper()
	for deadline := time.Now().Add(mountTimeout); ; time.Sleep(10 * time.Millisecond) {
		for _, e := range m.Events(t) {
			if e.Event == "metrics_listening" && str(e.Raw["addr"]) != "" {
				return str(e.Raw["addr"])
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics_listening event in the log")
		}
	}
}

// scrape reads /metrics into series text (name{labels} as exposed) →
// value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape: bad line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

func wantSeries(t *testing.T, when string, got map[string]float64, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		g, ok := got[k]
		if !ok || g != v {
			t.Errorf("%s: %s = %v (present: %v), want %v", when, k, g, ok, v)
		}
	}
}

// TestMetrics: a polled contention, a flock, a read-lock group and a
// lock past the label cap, then a scrape.
func TestMetrics(t *testing.T) {
	m := mountLockfs(t, "--metrics-listen=127.0.0.1:0", "--metrics-max-locks=3")
	addr := metricsAddr(t, m)
	open := func(a *actor, name, mode string) string {
		return strings.TrimPrefix(mustDo(t, a, "open "+name+" "+mode, "OK "), "OK ")
	}

	// m1: A holds; B is refused three times (a poller).
	a, b := startActor(t, "A", m.Dir, ""), startActor(t, "B", m.Dir, "")
	afd, bfd := open(a, "m1", "wo"), open(b, "m1", "wo")
	mustDo(t, a, "setlk "+afd+" WR SET 0 0", "OK")
	for i := 0; i < 3; i++ {
		mustDo(t, b, "setlk "+bfd+" WR SET 0 0", "ERR EAGAIN")
	}
	wantSeries(t, "while B polls", scrape(t, addr), map[string]float64{
		`lockfs_locks_held{lock="m1"}`:                                        1,
		`lockfs_lock_waiters{lock="m1"}`:                                      1,
		`lockfs_lock_contentions_total{lock="m1"}`:                            1,
		`lockfs_lock_acquisitions_total{kind="posix",lock="m1",mode="write"}`: 1,
	})
	mustDo(t, a, "setlk "+afd+" UN SET 0 0", "OK")
	mustDo(t, b, "setlk "+bfd+" WR SET 0 0", "OK") // the 4th attempt
	mustDo(t, b, "setlk "+bfd+" UN SET 0 0", "OK")

	// m2: an flock taken and dropped.
	c := startActor(t, "C", m.Dir, "")
	cfd := open(c, "m2", "rw")
	mustDo(t, c, "flock "+cfd+" EX", "OK")
	mustDo(t, c, "flock "+cfd+" UN", "OK")
	// m3: two readers hold.
	for _, name := range []string{"R1", "R2"} {
		r := startActor(t, name, m.Dir, "")
		mustDo(t, r, "setlk "+open(r, "m3", "ro")+" RD SET 0 0", "OK")
	}
	// m4: past --metrics-max-locks=3, counted as _other.
	d := startActor(t, "D", m.Dir, "")
	dfd := open(d, "m4", "wo")
	mustDo(t, d, "setlk "+dfd+" WR SET 0 0", "OK")
	mustDo(t, d, "setlk "+dfd+" UN SET 0 0", "OK")

	got := scrape(t, addr)
	wantSeries(t, "after the workload", got, map[string]float64{
		`lockfs_lock_acquisitions_total{kind="posix",lock="m1",mode="write"}`:     2,
		`lockfs_lock_acquisitions_total{kind="flock",lock="m2",mode="write"}`:     1,
		`lockfs_lock_acquisitions_total{kind="posix",lock="m3",mode="read"}`:      2,
		`lockfs_lock_acquisitions_total{kind="posix",lock="_other",mode="write"}`: 1,
		`lockfs_lock_contentions_total{lock="m1"}`:                                1,
		`lockfs_lock_denied_total{lock="m1"}`:                                     3,
		`lockfs_lock_wait_seconds_count{lock="m1",mode="write"}`:                  2,
		`lockfs_lock_wait_seconds_count{lock="m3",mode="read"}`:                   2,
		`lockfs_lock_hold_seconds_count{lock="m1",mode="write"}`:                  2,
		`lockfs_lock_hold_seconds_count{lock="m2",mode="write"}`:                  1,
		`lockfs_lock_hold_seconds_count{lock="_other",mode="write"}`:              1,
		`lockfs_locks_held{lock="m1"}`:                                            0,
		`lockfs_locks_held{lock="m3"}`:                                            2,
		`lockfs_locks_held{lock="_other"}`:                                        0,
		`lockfs_lock_waiters{lock="m1"}`:                                          0,
	})
	for k := range got {
		if strings.Contains(k, `lock="m4"`) {
			t.Errorf("%s: m4 is past the label cap and must be counted as _other", k)
		}
	}
	if _, ok := got[`lockfs_lock_contentions_total{lock="m2"}`]; ok {
		t.Error("an uncontended lock has a contention series")
	}
	// The whole counters agree with the audit log.
	acquired, waited := 0, 0.0
	for _, e := range m.Events(t) {
		if e.Event == "acquired" {
			acquired++
			waited += e.WaitedS
		}
	}
	sum := 0.0
	for k, v := range got {
		if strings.HasPrefix(k, "lockfs_lock_acquisitions_total{") {
			sum += v
		}
	}
	if sum != float64(acquired) || acquired != 6 {
		t.Errorf("acquisitions: %v in metrics, %d in the audit log, want 6", sum, acquired)
	}
	if w := got[`lockfs_lock_wait_seconds_sum{lock="m1",mode="write"}`]; w <= 0 || w > waited+1e-6 {
		t.Errorf("wait seconds of m1: %v, audit log waited_s total %v", w, waited)
	}
	if !strings.Contains(strings.Join(keys(got), "\n"), `lockfs_build_info{goversion="go`) {
		t.Error("no lockfs_build_info")
	}
}

func keys(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestMetricsListenBusy: a --metrics-listen address that cannot be
// listened on fails the mount, with the reason.
func TestMetricsListenBusy(t *testing.T) {
	m := mountLockfs(t, "--metrics-listen=127.0.0.1:0")
	addr := metricsAddr(t, m)
	requireFUSE(t)
	out, err := runLockfs(t, "mount", "--foreground", "--metrics-listen="+addr, t.TempDir()+"/mnt")
	if err == nil || !strings.Contains(out, "--metrics-listen") || !strings.Contains(out, "address already in use") {
		t.Errorf("mount with a busy metrics address: %v\n%s", err, out)
	}
	out, err = runLockfs(t, "mount", "--foreground", "--metrics-listen=nonsense", t.TempDir()+"/mnt")
	if err == nil || !strings.Contains(out, "HOST:PORT") {
		t.Errorf("mount with --metrics-listen=nonsense: %v\n%s", err, out)
	}
}

// runLockfs runs the lockfs command to completion (at most
// mustFinishWithin) and returns its combined output.
func runLockfs(t *testing.T, args ...string) (string, error) {
	t.Helper()
	if lockfsBuildErr != nil {
		t.Fatalf("lockfs binary: %v", lockfsBuildErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), mustFinishWithin)
	defer cancel()
	out, err := exec.CommandContext(ctx, lockfsBin, args...).CombinedOutput()
	return string(out), err
}
