// Package bench holds what lockbench (cmd/lockbench) shares between
// measuring and reporting: the JSON result format, the statistics over
// rounds, and the PNG chart drawn from a result.
//
// A Result is self-contained: `lockbench plot in.json out.png` redraws
// the chart of an earlier run without the targets that produced it.
package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"time"
)

// FormatVersion is the version of the JSON layout below. Readers reject
// other versions rather than guess.
const FormatVersion = 1

// Result is one lockbench run.
type Result struct {
	Tool     string    `json:"tool"` // "lockbench"
	Version  int       `json:"version"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Host     Host      `json:"host"`
	Config   Config    `json:"config"`
	// Targets are listed in column order.
	Targets []Target `json:"targets"`
	// Measurements are listed in run order.
	Measurements []*Measurement `json:"measurements"`
	// Notes explain what a reader must know to read the numbers (the
	// no-op server has no mutual exclusion, which side holds the locks of
	// the scale step, ...).
	Notes []string `json:"notes,omitempty"`
}

// Host describes the machine the numbers come from.
type Host struct {
	Hostname  string `json:"hostname"`
	Kernel    string `json:"kernel"`
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model,omitempty"`
	GoVersion string `json:"go_version"`
	// LoadStart and LoadEnd are /proc/loadavg's 1, 5 and 15 minute load
	// averages when the run started and ended: on a shared machine, how
	// much other work competed for the CPUs.
	LoadStart string `json:"load_start,omitempty"`
	LoadEnd   string `json:"load_end,omitempty"`
}

// Config is the command line that produced the result.
type Config struct {
	Rounds int `json:"rounds"`
	// ScaleRounds is how many rounds (the first ones) ran the scale
	// steps (files, locks, ranges).
	ScaleRounds int      `json:"scale_rounds"`
	DurationMS  float64  `json:"duration_ms"` // per measurement, per target, per round; 0 with N
	N           int      `json:"n,omitempty"` // iterations per measurement instead of a duration
	ScaleMax    int      `json:"scale_max"`
	LocksMax    int      `json:"locks_max"`
	Quick       bool     `json:"quick"`
	Only        []string `json:"only,omitempty"`
	Args        []string `json:"args"`
}

// Target is one directory under test.
type Target struct {
	// Name labels the column: "tmpfs", "noop", "lockfs", or the label of
	// a directory given on the command line.
	Name string `json:"name"`
	// Kind says what serves it: tmpfs, noop, noop-log, lockfs,
	// lockfs-quiet, or dir (a directory lockbench did not set up).
	Kind string `json:"kind"`
	Dir  string `json:"dir"`
	// ServerPID is the process serving the mount, when lockbench started
	// it (its RSS is reported); 0 otherwise.
	ServerPID int `json:"server_pid,omitempty"`
	// Exclusion is false for a server that grants every lock without
	// tracking it: its contended numbers (handoff, shared-file
	// throughput) are not real lock handoffs.
	Exclusion   bool   `json:"exclusion"`
	Description string `json:"description"`
}

// Better tells which direction of a unit is good.
const (
	LowerIsBetter  = "lower"
	HigherIsBetter = "higher"
)

// Measurement is one quantity measured on every target, once per round.
type Measurement struct {
	// ID is stable across runs ("setlk", "throughput.shared.4",
	// "files.create.100000", "rss.locks.hold.10000").
	ID string `json:"id"`
	// Group is what -only selects: setlk, ofd, flock, oslo, handoff,
	// throughput, files, locks.
	Group  string `json:"group"`
	Title  string `json:"title"`
	Unit   string `json:"unit"`   // "µs/op", "ops/s", "µs/file", "µs/lock", "µs", "MiB"
	Better string `json:"better"` // LowerIsBetter or HigherIsBetter
	// Results maps a target name to its series. A target is absent where
	// the quantity does not exist (no server process to weigh on tmpfs).
	Results map[string]*Series `json:"results"`
}

// Series is one measurement on one target.
type Series struct {
	// Rounds holds the value of each round in run order.
	Rounds []float64 `json:"rounds"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	// Real is false when the number is not what its title says on this
	// target (a handoff on a server that grants every lock at once).
	Real bool   `json:"real"`
	Note string `json:"note,omitempty"`
	// Extra holds side numbers per round, summed or listed by name
	// (handoff exclusion violations, audit-log bytes per op, ...).
	Extra map[string][]float64 `json:"extra,omitempty"`
}

// Add appends the value of one round and refreshes the summary.
func (s *Series) Add(v float64) {
	s.Rounds = append(s.Rounds, v)
	s.Median = Median(s.Rounds)
	s.Min, s.Max = s.Rounds[0], s.Rounds[0]
	for _, x := range s.Rounds {
		s.Min = math.Min(s.Min, x)
		s.Max = math.Max(s.Max, x)
	}
}

// AddExtra appends a side number of one round.
func (s *Series) AddExtra(name string, v float64) {
	if s.Extra == nil {
		s.Extra = make(map[string][]float64)
	}
	s.Extra[name] = append(s.Extra[name], v)
}

// Cost turns a value into "how much it costs": itself when lower is
// better, its inverse when higher is better. Ratios of costs read the same
// way for every unit: 2 means "takes twice the time (or memory)".
func (m *Measurement) Cost(v float64) float64 {
	if m.Better == HigherIsBetter {
		if v == 0 {
			return math.Inf(1)
		}
		return 1 / v
	}
	return v
}

// Ratio is the cost ratio num/den of the medians, or NaN when either is
// missing or not real.
func (m *Measurement) Ratio(num, den string) float64 {
	a, b := m.Results[num], m.Results[den]
	if a == nil || b == nil || !a.Real || !b.Real || len(a.Rounds) == 0 || len(b.Rounds) == 0 {
		return math.NaN()
	}
	return m.Cost(a.Median) / m.Cost(b.Median)
}

// RoundRatios is the cost ratio num/den round by round (the two targets
// ran the same measurement back to back in each round), or nil.
func (m *Measurement) RoundRatios(num, den string) []float64 {
	a, b := m.Results[num], m.Results[den]
	if a == nil || b == nil || !a.Real || !b.Real {
		return nil
	}
	n := min(len(a.Rounds), len(b.Rounds))
	out := make([]float64, n)
	for i := range n {
		out[i] = m.Cost(a.Rounds[i]) / m.Cost(b.Rounds[i])
	}
	return out
}

// References are the targets others are compared with: the tmpfs and the
// no-op server (the first of each kind), or the first target if neither
// is there.
func (r *Result) References() []string {
	var out []string
	for _, kind := range []string{"tmpfs", "noop"} {
		for _, t := range r.Targets {
			if t.Kind == kind {
				out = append(out, t.Name)
				break
			}
		}
	}
	if len(out) == 0 && len(r.Targets) > 0 {
		out = append(out, r.Targets[0].Name)
	}
	return out
}

// RatioPairs lists the ratios worth showing, as {num, den}: every target
// other than the references over each reference (lockfs/tmpfs,
// lockfs/noop), preceded, with withRefs, by the references among
// themselves (noop/tmpfs: the cost of FUSE itself).
func (r *Result) RatioPairs(withRefs bool) [][2]string {
	refs := r.References()
	var out [][2]string
	if withRefs {
		for i := 1; i < len(refs); i++ {
			out = append(out, [2]string{refs[i], refs[0]})
		}
	}
	for _, t := range r.Targets {
		if slices.Contains(refs, t.Name) {
			continue
		}
		for _, ref := range refs {
			out = append(out, [2]string{t.Name, ref})
		}
	}
	return out
}

// FormatValue prints a value with three significant digits or so,
// never in exponent form.
func FormatValue(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "-"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// FormatRatio prints a ratio, "-" when there is none.
func FormatRatio(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "-"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// Target returns the target named name, or nil.
func (r *Result) Target(name string) *Target {
	for i := range r.Targets {
		if r.Targets[i].Name == name {
			return &r.Targets[i]
		}
	}
	return nil
}

// Save writes r as indented JSON.
func (r *Result) Save(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Load reads a result written by Save.
func Load(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Tool != "lockbench" || r.Version != FormatVersion {
		return nil, fmt.Errorf("%s: not a lockbench result of format %d (tool %q, version %d)", path, FormatVersion, r.Tool, r.Version)
	}
	return &r, nil
}
