package main

// The human report: one table of medians with cost ratios, then the same
// ratios round by round, then what the reader must know (notes).

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/lockfs/lockfs/internal/bench"
)

func printReport(w io.Writer, res *bench.Result) {
	fmt.Fprintf(w, "\nlockbench: %d rounds (scale steps: %d)", res.Config.Rounds, res.Config.ScaleRounds)
	if res.Config.N > 0 {
		fmt.Fprintf(w, ", %d iterations per measurement", res.Config.N)
	} else {
		fmt.Fprintf(w, ", %.0f ms per measurement", res.Config.DurationMS)
	}
	fmt.Fprintf(w, " per target per round; %d CPUs (%s), Linux %s, %s\n", res.Host.CPUs, res.Host.CPUModel, res.Host.Kernel, res.Host.GoVersion)
	fmt.Fprintf(w, "load average (1 5 15 min) %s at the start, %s at the end; %.0f s\n", res.Host.LoadStart, res.Host.LoadEnd, res.Finished.Sub(res.Started).Seconds())
	for _, t := range res.Targets {
		pid := ""
		if t.ServerPID != 0 {
			pid = fmt.Sprintf(", pid %d", t.ServerPID)
		}
		fmt.Fprintf(w, "  %-8s %s%s\n", t.Name, t.Description, pid)
	}
	fmt.Fprintln(w)

	pairs := res.RatioPairs(true)
	const unitW, colW = 8, 10
	titleW := 30
	for _, m := range res.Measurements {
		titleW = max(titleW, utf8.RuneCountInString(m.Title))
	}
	header := pad("median of rounds", titleW) + " " + pad("unit", unitW)
	for _, t := range res.Targets {
		header += " " + lpad(t.Name, colW)
	}
	for _, p := range pairs {
		header += " " + lpad(p[0]+"/"+p[1], max(colW, len(p[0])+len(p[1])+1))
	}
	fmt.Fprintln(w, header)
	fmt.Fprintln(w, strings.Repeat("-", utf8.RuneCountInString(header)))
	group := ""
	for _, m := range res.Measurements {
		if m.Group != group && group != "" {
			fmt.Fprintln(w)
		}
		group = m.Group
		line := pad(m.Title, titleW) + " " + pad(m.Unit, unitW)
		for _, t := range res.Targets {
			line += " " + lpad(cell(m.Results[t.Name]), colW)
		}
		for _, p := range pairs {
			line += " " + lpad(bench.FormatRatio(m.Ratio(p[0], p[1])), max(colW, len(p[0])+len(p[1])+1))
		}
		fmt.Fprintln(w, line)
	}

	if rp := res.RatioPairs(false); len(rp) > 0 && res.Config.Rounds > 1 {
		fmt.Fprintf(w, "\nround-by-round cost ratios (each round ran the targets back to back)\n")
		head := pad("", titleW) + " " + pad("ratio", 14)
		for i := range res.Config.Rounds {
			head += " " + lpad(fmt.Sprintf("r%d", i+1), 7)
		}
		head += " " + lpad("median", 7)
		fmt.Fprintln(w, head)
		fmt.Fprintln(w, strings.Repeat("-", utf8.RuneCountInString(head)))
		for _, m := range res.Measurements {
			first := true
			for _, p := range rp {
				rr := m.RoundRatios(p[0], p[1])
				if len(rr) < 2 {
					continue // one round (scale steps): the table above has it
				}
				title := ""
				if first {
					title = m.Title
					first = false
				}
				line := pad(title, titleW) + " " + pad(p[0]+"/"+p[1], 14)
				for _, v := range rr {
					line += " " + lpad(bench.FormatRatio(v), 7)
				}
				for range res.Config.Rounds - len(rr) {
					line += " " + lpad("", 7)
				}
				line += " " + lpad(bench.FormatRatio(bench.Median(rr)), 7)
				fmt.Fprintln(w, line)
			}
		}
	}

	if side := sideNumbers(res); len(side) > 0 {
		fmt.Fprintf(w, "\nside numbers (median of rounds)\n")
		for _, s := range side {
			fmt.Fprintln(w, "  "+s)
		}
	}
	fmt.Fprintf(w, "\nnotes\n")
	for _, n := range res.Notes {
		fmt.Fprintln(w, "  - "+n)
	}
}

// sideNumbers reports the extras: exclusion violations seen in the
// handoff, and audit-log bytes per lock+unlock pair.
func sideNumbers(res *bench.Result) []string {
	var out []string
	for _, m := range res.Measurements {
		for _, t := range res.Targets {
			s := m.Results[t.Name]
			if s == nil || s.Extra == nil {
				continue
			}
			if v, ok := s.Extra["violations"]; ok {
				total, handoffs := sum(v), sum(s.Extra["handoffs"])
				msg := fmt.Sprintf("handoff on %s: %.0f of %.0f grants came while the other process still held the lock", t.Name, total, handoffs)
				if total > 0 && t.Exclusion {
					msg += "  <-- MUTUAL EXCLUSION VIOLATED"
				} else if total > 0 {
					msg += " (expected: no exclusion)"
				}
				if u := sum(s.Extra["unconfirmed"]); u > 0 {
					msg += fmt.Sprintf("; %.0f unlocks before the waiter was seen asleep", u)
				}
				out = append(out, msg)
			}
			if v, ok := s.Extra["log_bytes_per_op"]; ok && (m.Group == "setlk" || m.Group == "oslo") {
				out = append(out, fmt.Sprintf("%s on %s: %.0f log bytes per lock+unlock", m.ID, t.Name, bench.Median(v)))
			}
		}
	}
	return out
}

func sum(xs []float64) float64 {
	t := 0.0
	for _, x := range xs {
		t += x
	}
	return t
}

// cell formats a median: "n/a" for a missing series, [v] for one that is
// not real.
func cell(s *bench.Series) string {
	if s == nil || len(s.Rounds) == 0 {
		return "n/a"
	}
	v := bench.FormatValue(s.Median)
	if !s.Real {
		return "[" + v + "]"
	}
	return v
}

func pad(s string, w int) string {
	if n := utf8.RuneCountInString(s); n < w {
		return s + strings.Repeat(" ", w-n)
	}
	return s
}

func lpad(s string, w int) string {
	if n := utf8.RuneCountInString(s); n < w {
		return strings.Repeat(" ", w-n) + s
	}
	return s
}
