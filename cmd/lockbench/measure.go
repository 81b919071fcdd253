package main

// The plan (which measurements, in which order) and the interleaved
// rounds: in every round each step runs on every target back to back,
// the target order rotating from round to round, so that a burst of noise
// on the shared machine hits one round of all targets rather than all
// rounds of one. Single-process loops interleave finer still: their
// slices alternate between the targets within the round.

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockfs/lockfs/internal/bench"
)

// sample is one value a step produced on one target.
type sample struct {
	id    string
	v     float64
	ops   int                // operations behind v (for log bytes per op)
	extra map[string]float64 // side numbers, see bench.Series.Extra
}

// def describes a measurement.
type def struct {
	id, group, title, unit, better string
	// exclusive: the number means nothing on a server without mutual
	// exclusion (handoff, contended throughput).
	exclusive bool
	// server: the number is about the serving process (RSS), absent for
	// targets lockbench did not start.
	server bool
}

// step is one cell type of the plan: run on one target, it produces the
// samples of its defs. A single-process loop step has prepare instead of
// run: its slices alternate between the targets (see interleaved), and
// its two defs are the mean and the median time per iteration.
type step struct {
	group   string
	name    string
	defs    []def
	run     func(r *runner, t *target) ([]sample, error)
	prepare func(t *target) (body func() error, done func(), err error)
}

// runner holds one run's state.
type runner struct {
	cfg     *config
	work    string
	targets []*target
	res     *bench.Result
	byID    map[string]*bench.Measurement
}

var throughputP = []int{1, 2, 4, 8}

// fileCounts and lockCounts are the scale steps, cut at -scale-max.
func fileCounts(limit int) []int {
	var out []int
	for _, n := range []int{1000, 10000, 100000} {
		if n <= limit {
			out = append(out, n)
		}
	}
	return out
}

func lockCounts(limit int) []int { return fileCounts(min(limit, 10000)) }

// plan lists every step for the configuration, -only not applied.
func plan(cfg *config) []step {
	lower, higher := bench.LowerIsBetter, bench.HigherIsBetter
	var steps []step
	for _, k := range []struct{ id, title string }{
		{"setlk", "F_SETLK write lock + unlock"},
		{"ofd", "F_OFD_SETLK write lock + unlock"},
		{"flock", "flock LOCK_EX|LOCK_NB + LOCK_UN"},
	} {
		kind := k.id
		steps = append(steps, step{group: kind, name: kind,
			defs:    loopDefs(kind, k.title),
			prepare: func(t *target) (func() error, func(), error) { return lockCycle(t, kind) }})
	}
	steps = append(steps, step{group: "oslo", name: "oslo",
		defs:    loopDefs("oslo", "oslo cycle: open, F_SETLK, F_SETLKW unlock, close"),
		prepare: osloCycle})
	steps = append(steps, step{group: "sparse", name: "sparse",
		defs: []def{
			{id: "sparse.p50", group: "sparse", title: "oslo cycle, one every 10 ms: median time", unit: "µs", better: lower},
			{id: "sparse.cpu", group: "sparse", title: "  server CPU per cycle, one every 10 ms", unit: "µs", better: lower, server: true},
		},
		run: (*runner).sparse})
	steps = append(steps, step{group: "handoff", name: "handoff",
		defs: []def{
			{id: "handoff.rate", group: "handoff", title: "handoff between 2 processes (F_SETLKW)", unit: "ops/s", better: higher, exclusive: true},
			{id: "handoff.p50", group: "handoff", title: "handoff latency p50 (unlock → waiter returns)", unit: "µs", better: lower, exclusive: true},
			{id: "handoff.p99", group: "handoff", title: "handoff latency p99 (unlock → waiter returns)", unit: "µs", better: lower, exclusive: true},
		},
		run: (*runner).handoff})
	for _, shared := range []bool{false, true} {
		for _, p := range throughputP {
			mode, what := "distinct", "a file per process"
			if shared {
				mode, what = "shared", "one shared file"
			}
			id := fmt.Sprintf("throughput.%s.%d", mode, p)
			steps = append(steps, step{group: "throughput", name: id,
				defs: []def{{id: id, group: "throughput", title: fmt.Sprintf("throughput P=%d, %s", p, what), unit: "ops/s", better: higher, exclusive: shared && p > 1}},
				run:  func(r *runner, t *target) ([]sample, error) { return r.throughput(t, p, shared) }})
		}
	}
	for _, n := range fileCounts(cfg.scaleMax) {
		k := fmt.Sprintf("%dk", n/1000)
		defs := []def{
			{id: fmt.Sprintf("files.create.%d", n), title: "create " + k + " files (open O_CREAT|O_EXCL, close)", unit: "µs/file", better: lower},
			{id: fmt.Sprintf("files.readdir.%d", n), title: "readdir " + k + " files (getdents64)", unit: "µs/file", better: lower},
			{id: fmt.Sprintf("files.unlink.%d", n), title: "unlink " + k + " files", unit: "µs/file", better: lower},
		}
		for _, s := range []string{"before", "create", "readdir", "unlink"} {
			defs = append(defs, def{id: fmt.Sprintf("rss.files.%s.%d", s, n), title: fmt.Sprintf("server RSS %s %s files", rssWhen[s], k), unit: "MiB", better: lower, server: true})
		}
		for i := range defs {
			defs[i].group = "files"
		}
		steps = append(steps, step{group: "files", name: fmt.Sprintf("files.%d", n), defs: defs,
			run: func(r *runner, t *target) ([]sample, error) { return r.files(t, n) }})
	}
	for _, v := range []struct{ group, what, unit string }{
		{"locks", "whole-file locks, one per file", "µs/lock"},
		{"ranges", "byte-range locks on one file", "µs/lock"},
	} {
		for _, n := range lockCounts(cfg.scaleMax) {
			k := fmt.Sprintf("%dk", n/1000)
			g := v.group
			defs := []def{
				{id: fmt.Sprintf("%s.acquire.%d", g, n), title: "take " + k + " " + v.what, unit: v.unit},
				{id: fmt.Sprintf("%s.cycle.%d", g, n), title: "lock+unlock 1 more while " + k + " held", unit: "µs/op"},
				{id: fmt.Sprintf("%s.release.%d", g, n), title: "release " + k + " " + v.what, unit: v.unit},
			}
			for _, s := range []string{"before", "hold", "release"} {
				defs = append(defs, def{id: fmt.Sprintf("rss.%s.%s.%d", g, s, n), title: fmt.Sprintf("server RSS %s %s %s", rssWhen[s], k, v.what), unit: "MiB", server: true})
			}
			for i := range defs {
				defs[i].group, defs[i].better = g, lower
			}
			run := func(r *runner, t *target) ([]sample, error) { return r.heldLocks(t, n) }
			if g == "ranges" {
				run = func(r *runner, t *target) ([]sample, error) { return r.rangeLocks(t, n) }
			}
			steps = append(steps, step{group: g, name: fmt.Sprintf("%s.%d", g, n), defs: defs, run: run})
		}
	}
	return steps
}

// loopDefs are the two numbers of a single-process loop: the mean time
// per iteration and the median of single iterations.
func loopDefs(id, title string) []def {
	return []def{
		{id: id, group: id, title: title, unit: "µs/op", better: bench.LowerIsBetter},
		{id: id + ".p50", group: id, title: "  same, median of single cycles", unit: "µs", better: bench.LowerIsBetter},
	}
}

var rssWhen = map[string]string{
	"before": "before", "create": "after creating", "readdir": "after listing",
	"unlink": "after unlinking", "hold": "holding", "release": "after releasing",
}

// isScale reports whether a group is a scale step (-scale-rounds).
func isScale(group string) bool { return group == "files" || group == "locks" || group == "ranges" }

var groups = []string{"setlk", "ofd", "flock", "oslo", "sparse", "handoff", "throughput", "files", "locks", "ranges"}

// selectSteps applies -only: group names, "scale" (files and locks), or
// measurement ids (their whole step runs).
func selectSteps(all []step, only []string) ([]step, error) {
	if len(only) == 0 {
		return all, nil
	}
	want := map[string]bool{}
	for _, o := range only {
		if o == "scale" {
			want["files"], want["locks"], want["ranges"] = true, true, true
			continue
		}
		known := slices.Contains(groups, o)
		for _, s := range all {
			for _, d := range s.defs {
				known = known || d.id == o || s.name == o
			}
		}
		if !known {
			return nil, fmt.Errorf("-only: unknown measurement %q (groups: %s, scale; or an id such as throughput.shared.4, files.10000)", o, strings.Join(groups, ", "))
		}
		want[o] = true
	}
	var out []step
	for _, s := range all {
		ok := want[s.group] || want[s.name]
		for _, d := range s.defs {
			ok = ok || want[d.id]
		}
		if ok {
			out = append(out, s)
		}
	}
	return out, nil
}

// checkOnly validates -only at parse time, against the largest plan.
func checkOnly(only []string) error {
	_, err := selectSteps(plan(&config{scaleMax: 100000}), only)
	return err
}

// measure sets up the targets, runs the rounds and returns the result;
// every teardown is on cl, which the caller runs.
func measure(cfg *config, cl *cleanups) (*bench.Result, error) {
	steps, err := selectSteps(plan(cfg), cfg.only)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "lockbench-")
	if err != nil {
		return nil, err
	}
	cl.add(func() error {
		if cfg.keep {
			fmt.Fprintln(os.Stderr, "lockbench: kept", work)
			return nil
		}
		// Never recurse into a mount that could not be removed.
		for _, t := range []string{"tmpfs", "noop", "noop-log", "lockfs", "lockfs-quiet"} {
			if _, ok := mountedAt(filepath.Join(work, t)); ok {
				return fmt.Errorf("%s is still mounted; not removing %s", filepath.Join(work, t), work)
			}
		}
		return os.RemoveAll(work)
	})
	r := &runner{cfg: cfg, work: work, byID: map[string]*bench.Measurement{}}
	r.res = &bench.Result{
		Tool: "lockbench", Version: bench.FormatVersion, Started: time.Now().UTC(),
		Host: hostInfo(),
		Config: bench.Config{
			Rounds: cfg.rounds, ScaleRounds: cfg.scaleRounds, DurationMS: float64(cfg.duration) / float64(time.Millisecond), N: cfg.n,
			ScaleMax: cfg.scaleMax, LocksMax: min(cfg.scaleMax, 10000), Quick: cfg.quick, Only: cfg.only, Args: cfg.args,
		},
	}
	if cfg.n > 0 {
		r.res.Config.DurationMS = 0
	}
	targets, err := setupTargets(cfg, work, cl)
	r.targets = targets
	for _, t := range targets {
		r.res.Targets = append(r.res.Targets, t.Target)
	}
	if err != nil {
		return nil, err
	}
	for _, s := range steps {
		for _, d := range s.defs {
			m := &bench.Measurement{ID: d.id, Group: d.group, Title: d.title, Unit: d.unit, Better: d.better, Results: map[string]*bench.Series{}}
			for _, t := range targets {
				if d.server && t.ServerPID == 0 {
					continue
				}
				real := !d.exclusive || t.Exclusion
				note := ""
				if !real {
					note = "no mutual exclusion on this server: not a real lock handoff"
				}
				m.Results[t.Name] = &bench.Series{Real: real, Note: note}
			}
			r.byID[d.id] = m
			r.res.Measurements = append(r.res.Measurements, m)
		}
	}
	r.res.Notes = notes(cfg, targets)
	fmt.Fprintf(os.Stderr, "lockbench: %d rounds × %d steps × %d targets in %s\n", cfg.rounds, len(steps), len(targets), work)
	for _, t := range targets {
		fmt.Fprintf(os.Stderr, "lockbench:   %-8s %s (%s)\n", t.Name, t.Dir, t.Description)
	}
	err = r.rounds(steps)
	r.res.Finished = time.Now().UTC()
	r.res.Host.LoadEnd = loadAvg()
	r.pruneEmpty()
	return r.res, err
}

// rounds runs every step on every target, cfg.rounds times.
func (r *runner) rounds(steps []step) error {
	start := time.Now()
	for round := range r.cfg.rounds {
		fmt.Fprintf(os.Stderr, "lockbench: round %d/%d (%.0fs so far):", round+1, r.cfg.rounds, time.Since(start).Seconds())
		order := make([]*target, len(r.targets))
		for i := range r.targets {
			order[i] = r.targets[(i+round)%len(r.targets)]
		}
		for _, s := range steps {
			if err := checkInterrupted(); err != nil {
				return err
			}
			if isScale(s.group) && round >= r.cfg.scaleRounds {
				continue
			}
			stepStart := time.Now()
			if !r.cfg.verbose {
				fmt.Fprintf(os.Stderr, " %s", s.name)
			}
			if s.prepare != nil {
				if err := r.interleavedCell(s, order); err != nil {
					return fmt.Errorf("round %d, %s: %w", round+1, s.name, err)
				}
				if r.cfg.verbose {
					fmt.Fprintf(os.Stderr, "  (%s took %.1fs)\n", s.name, time.Since(stepStart).Seconds())
				}
				continue
			}
			for _, t := range order {
				if err := checkInterrupted(); err != nil {
					return err
				}
				if err := r.cell(s, t); err != nil {
					return fmt.Errorf("round %d, %s on %s: %w", round+1, s.name, t.Name, err)
				}
			}
			if r.cfg.verbose {
				fmt.Fprintf(os.Stderr, "  (%s took %.1fs)\n", s.name, time.Since(stepStart).Seconds())
			}
		}
		fmt.Fprintln(os.Stderr)
	}
	fmt.Fprintf(os.Stderr, "lockbench: measured in %.0fs\n", time.Since(start).Seconds())
	return nil
}

// cell runs one step on one target and records its samples.
func (r *runner) cell(s step, t *target) error {
	before := fileSize(t.logPath)
	ss, err := s.run(r, t)
	if lerr := weighLog(t, before, ss); err == nil {
		err = lerr
	}
	if err != nil {
		return err
	}
	return r.record(s, t, ss)
}

// interleavedCell runs a single-process loop step on all targets with
// their slices alternating, and records one sample per target.
func (r *runner) interleavedCell(s step, order []*target) error {
	bodies := make([]func() error, 0, len(order))
	for _, t := range order {
		body, done, err := s.prepare(t)
		if err != nil {
			return fmt.Errorf("%s: %w", t.Name, err)
		}
		defer done()
		bodies = append(bodies, body)
	}
	before := make([]int64, len(order))
	for i, t := range order {
		before[i] = fileSize(t.logPath)
	}
	res, err := interleaved(bodies, r.cfg.n, r.cfg.duration)
	for i, t := range order {
		var ss []sample
		if err == nil {
			ss = []sample{{id: s.defs[0].id, v: us(res[i].mean), ops: res[i].total}, {id: s.defs[1].id, v: us(res[i].p50)}}
		}
		if lerr := weighLog(t, before[i], ss); err == nil {
			err = lerr
		}
		if err == nil {
			err = r.record(s, t, ss)
		}
	}
	return err
}

// weighLog adds to samples with an operation count the growth of the
// target's server log per operation, and empties the log, so that a long
// run does not fill the disk.
func weighLog(t *target, before int64, ss []sample) error {
	if t.logPath == "" {
		return nil
	}
	after := fileSize(t.logPath)
	for i := range ss {
		if ss[i].ops > 0 {
			if ss[i].extra == nil {
				ss[i].extra = map[string]float64{}
			}
			ss[i].extra["log_bytes_per_op"] = float64(after-before) / float64(ss[i].ops)
		}
	}
	return os.Truncate(t.logPath, 0)
}

// record adds a cell's samples to the result.
func (r *runner) record(s step, t *target, ss []sample) error {
	for _, smp := range ss {
		m := r.byID[smp.id]
		if m == nil {
			return fmt.Errorf("internal: step %s produced unknown measurement %s", s.name, smp.id)
		}
		ser := m.Results[t.Name]
		if ser == nil {
			continue // RSS of a target without a server of ours
		}
		ser.Add(smp.v)
		for k, v := range smp.extra {
			ser.AddExtra(k, v)
		}
		if r.cfg.verbose {
			fmt.Fprintf(os.Stderr, "  %-26s %-8s %12.3f %s\n", smp.id, t.Name, smp.v, m.Unit)
		}
	}
	return nil
}

// pruneEmpty drops measurements with no value at all (interrupted runs).
func (r *runner) pruneEmpty() {
	r.res.Measurements = slices.DeleteFunc(r.res.Measurements, func(m *bench.Measurement) bool {
		for name, s := range m.Results {
			if len(s.Rounds) == 0 {
				delete(m.Results, name)
			}
		}
		return len(m.Results) == 0
	})
}

func notes(cfg *config, targets []*target) []string {
	var out []string
	for _, t := range targets {
		if !t.Exclusion {
			out = append(out, fmt.Sprintf("%s grants every lock at once and tracks nothing: mutual exclusion does NOT hold on it. "+
				"Its handoff and shared-file throughput numbers are not real lock handoffs (shown in [brackets], left out of ratios); "+
				"its other numbers are the cost of a FUSE round trip through go-fuse (the floor).", t.Name))
		}
	}
	out = append(out,
		"Ratios are cost ratios of medians: X/Y = 2 means X takes twice the time (or memory) of Y; for ops/s it is Y's rate over X's.",
		"lock cycles: one process, one open fd, lock then unlock of the whole file; µs per pair.",
		fmt.Sprintf("sparse: one process runs the oslo cycle %d times, %v apart (a lock now and then, as Tempest takes them); the median cycle time, and the CPU time of the serving process and its children (lockfs's log keeper) per cycle, the pause after it included (schedstat of every thread; n/a for tmpfs and for directories lockbench did not mount).", sparseCycles, sparseGap),
		"handoff: 2 processes alternate one whole-file write lock with F_SETLKW; the holder unlocks only once the waiter sleeps in F_SETLKW; latency from the holder's unlock (CLOCK_MONOTONIC, shared memory) to the waiter's return.",
		"throughput: P processes, each F_SETLKW write lock + F_SETLK unlock of a whole file in a loop; ops/s summed over processes.",
		"files: one process creates (open O_CREAT|O_EXCL, close), lists (getdents64, 64 KiB buffer) and unlinks N files in a fresh directory.",
		fmt.Sprintf("locks: one process holds N whole-file write locks on N distinct files (a lock directory's case), taken one by one with F_SETLK; "+
			"ranges: one process holds N write locks on distinct non-adjacent 1-byte ranges of ONE file (bytes 0, 2, 4, …), the worst case for a per-file lock list. "+
			"Both time %d lock+unlock pairs of one more lock while the N are held, then release them one by one (N = %s).", lockCycles, joinInts(lockCounts(cfg.scaleMax))),
		"RSS: VmRSS of the serving process (n/a for tmpfs and for directories lockbench did not mount).",
	)
	if cfg.ownSession {
		out = append(out, "servers: each reference server ran in a session of its own (-own-session), as 'lockfs mount' without -f and services run, so the kernel scheduled it as a group apart from the client processes (autogroup).")
	} else {
		out = append(out, "servers: the reference servers ran in lockbench's session, scheduled as one group with the client processes (autogroup). A server in a session of its own ('lockfs mount' without -f, a service) is scheduled apart, which alone changes the numbers, for the no-op server as much as for lockfs: compare a DIR with references started the same way (-own-session).")
	}
	return out
}

// loadAvg is the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func joinInts(xs []int) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprint(x))
	}
	return strings.Join(s, ", ")
}

func hostInfo() bench.Host {
	h := bench.Host{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadStart: loadAvg()}
	h.Hostname, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				h.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return h
}
