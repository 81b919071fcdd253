package bench

import (
	"math"
	"path/filepath"
	"testing"
)

func TestMedianPercentile(t *testing.T) {
	if m := Median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("Median odd = %v", m)
	}
	if m := Median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("Median even = %v", m)
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
	s := []int64{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}
	for p, want := range map[float64]float64{50: 50, 99: 100, 10: 10, 100: 100} {
		if got := Percentile(s, p); got != want {
			t.Errorf("Percentile(%v) = %v, want %v", p, got, want)
		}
	}
}

func TestRatios(t *testing.T) {
	r := &Result{
		Tool: "lockbench", Version: FormatVersion,
		Targets: []Target{{Name: "tmpfs", Kind: "tmpfs", Exclusion: true}, {Name: "noop", Kind: "noop"}, {Name: "lockfs", Kind: "lockfs", Exclusion: true}},
	}
	lat := &Measurement{ID: "setlk", Unit: "µs/op", Better: LowerIsBetter, Results: map[string]*Series{}}
	rate := &Measurement{ID: "rate", Unit: "ops/s", Better: HigherIsBetter, Results: map[string]*Series{}}
	for _, m := range []*Measurement{lat, rate} {
		for _, name := range []string{"tmpfs", "noop", "lockfs"} {
			m.Results[name] = &Series{Real: true}
		}
	}
	for i, v := range []float64{1, 2, 4} {
		lat.Results["tmpfs"].Add(v)
		lat.Results["lockfs"].Add(10 * v)
		rate.Results["tmpfs"].Add(100 * (float64(i) + 1))
		rate.Results["lockfs"].Add(10 * (float64(i) + 1))
	}
	lat.Results["noop"].Add(5)
	rate.Results["noop"].Real = false
	rate.Results["noop"].Add(1)
	if got := lat.Ratio("lockfs", "tmpfs"); got != 10 {
		t.Errorf("latency ratio = %v, want 10", got)
	}
	if got := rate.Ratio("lockfs", "tmpfs"); got != 10 {
		t.Errorf("rate cost ratio = %v, want 10 (lockfs is 10 times slower)", got)
	}
	if got := rate.Ratio("lockfs", "noop"); !math.IsNaN(got) {
		t.Errorf("ratio to a number that is not real = %v, want NaN", got)
	}
	if rr := lat.RoundRatios("lockfs", "tmpfs"); len(rr) != 3 || rr[2] != 10 {
		t.Errorf("round ratios = %v", rr)
	}
	if got := r.RatioPairs(true); len(got) != 3 || got[0] != [2]string{"noop", "tmpfs"} || got[2] != [2]string{"lockfs", "noop"} {
		t.Errorf("RatioPairs = %v", got)
	}

	r.Measurements = []*Measurement{lat, rate}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := r.Save(path); err != nil {
		t.Fatal(err)
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Measurements[0].Results["lockfs"].Median != 20 {
		t.Errorf("round trip lost values: %+v", back.Measurements[0].Results["lockfs"])
	}
	if _, err := Render(back); err != nil {
		t.Errorf("Render: %v", err)
	}
}
