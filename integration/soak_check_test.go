package integration

// The soak test's checkers: the workers' records of their critical
// sections (mutual exclusion, waits) and lockfs's audit log replayed as
// an independent account (exclusion as lockfs saw it, every acquired
// matched by exactly one released, every wait resolved).

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type soakSection struct {
	worker     int
	file       int
	space      byte
	kind       byte
	write      bool
	start, end uint64
	from, to   int64
	byKill     bool // ended by the worker's death
}

type soakRecords struct {
	id           int
	sections     []soakSection
	acquisitions int
	ops          int
	waits        int
	deadlocks    int
	maxWait      int64
	openWait     bool
	waitSpans    [][2]int64
}

func readSoakRecords(sp *soakProc) (*soakRecords, error) {
	f, err := os.Open(sp.recPath)
	if err != nil {
		if os.IsNotExist(err) {
			return &soakRecords{id: sp.id}, nil
		}
		return nil, err
	}
	defer f.Close()
	r := &soakRecords{id: sp.id}
	open := map[int]int{}    // sec → index in sections
	waits := map[int]int64{} // wid → start
	sc := bufio.NewScanner(f)
	sc.Split(relCompleteLines)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) == 0 {
			continue
		}
		n := func(i int) int64 {
			if i >= len(fl) {
				return -1
			}
			v, err := strconv.ParseInt(fl[i], 10, 64)
			if err != nil {
				return -1
			}
			return v
		}
		switch fl[0] {
		case "B":
			if len(fl) != 9 {
				continue // torn by SIGKILL: not claimed
			}
			end, _ := strconv.ParseUint(fl[7], 10, 64)
			s := soakSection{
				worker: sp.id, file: int(n(2)), space: fl[3][0], kind: fl[4][0], write: n(5) == unix.F_WRLCK,
				start: uint64(n(6)), end: end, from: n(8), to: -1,
			}
			open[int(n(1))] = len(r.sections)
			r.sections = append(r.sections, s)
			r.acquisitions++
		case "E":
			if len(fl) != 3 {
				continue
			}
			if i, ok := open[int(n(1))]; ok {
				r.sections[i].to = n(2)
				delete(open, int(n(1)))
			}
		case "W":
			if len(fl) == 3 {
				waits[int(n(1))] = n(2)
			}
		case "w":
			if len(fl) != 4 {
				continue
			}
			from, ok := waits[int(n(1))]
			if !ok {
				continue
			}
			delete(waits, int(n(1)))
			r.waits++
			r.maxWait = max(r.maxWait, n(2)-from)
			r.waitSpans = append(r.waitSpans, [2]int64{from, n(2)})
			if syscall.Errno(n(3)) == unix.EDEADLK {
				r.deadlocks++
			}
		case "C":
			r.ops = max(r.ops, int(n(1)))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, i := range open {
		if !sp.killed {
			return nil, fmt.Errorf("worker %d exited holding section %+v", sp.id, r.sections[i])
		}
		// It held the lock when SIGKILL was sent (or, if it recorded
		// the section as the signal was on its way, when it did).
		r.sections[i].to, r.sections[i].byKill = max(sp.killAt, r.sections[i].from), true
	}
	for _, from := range waits {
		if sp.killed {
			r.maxWait = max(r.maxWait, sp.killAt-from)
			r.waitSpans = append(r.waitSpans, [2]int64{from, sp.killAt})
		} else {
			r.openWait = true
		}
	}
	return r, nil
}

// relCompleteLines is bufio.ScanLines without the final line when it lacks
// its newline: a record torn by SIGKILL claims nothing.
func relCompleteLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF {
		return len(data), nil, nil
	}
	return 0, nil, nil
}

func (r *soakRecords) holdingAt(t int64) bool {
	for _, s := range r.sections {
		if s.from <= t && t <= s.to {
			return true
		}
	}
	return false
}

func (r *soakRecords) waitingAt(t int64) bool {
	for _, w := range r.waitSpans {
		if w[0] <= t && t <= w[1] {
			return true
		}
	}
	return false
}

// soakViolations finds recorded sections of different workers that held
// incompatible locks on the same bytes at the same time.
func soakViolations(recs []*soakRecords) []string {
	type key struct {
		file  int
		space byte
	}
	byKey := map[key][]soakSection{}
	for _, r := range recs {
		for _, s := range r.sections {
			k := key{s.file, s.space}
			byKey[k] = append(byKey[k], s)
		}
	}
	var out []string
	for k, ss := range byKey {
		slices.SortFunc(ss, func(a, b soakSection) int { return cmp.Compare(a.from, b.from) })
		var active []soakSection
		for _, s := range ss {
			active = slices.DeleteFunc(active, func(a soakSection) bool { return a.to <= s.from })
			for _, a := range active {
				if a.worker == s.worker {
					continue // one process's own sections never overlap a file (see section)
				}
				if !a.write && !s.write {
					continue
				}
				if a.end < s.start || s.end < a.start {
					continue
				}
				out = append(out, fmt.Sprintf("%s space %c: worker %d held %c %s %d..%d over [%d, %d]; worker %d got %c %s %d..%d at %d",
					soakName(k.file), k.space, a.worker, a.kind, relModeName(a.write), a.start, a.end, a.from, a.to,
					s.worker, s.kind, relModeName(s.write), s.start, s.end, s.from))
			}
			active = append(active, s)
		}
	}
	return out
}

// relTailFile returns the last n lines of a file.
func relTailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n") + "\n"
}

func relModeName(write bool) string {
	if write {
		return "W"
	}
	return "R"
}

// ---- the audit log -------------------------------------------------------

type auditLine struct {
	Event  string `json:"event"`
	Reason string `json:"reason"`
	Fh     uint64 `json:"fh"`
	Path   string `json:"path"`
	Kind   string `json:"kind"`
	Mode   string `json:"mode"`
	Start  uint64 `json:"start"`
	End    uint64 `json:"end"`
	Pid    int    `json:"pid"`
	Owner  string `json:"owner"`
}

type auditHold struct {
	owner      string
	write      bool
	start, end uint64
}

// auditReplay is lockfs's lock state rebuilt from its audit log.
type auditReplay struct {
	events, acquired, released int
	acquiredBy                 map[int]int // pid → acquired events
	// held: per file and space, the byte ranges each owner holds.
	held    map[string][]auditHold
	waiting map[string]bool // path/space/owner with an open wait
	// open: per path, space, owner and mode, the acquired events not yet
	// matched by a released event of the same range.
	open map[string][]*openAcquired
	// handovers counts acquired events ended by two or more released
	// events of their own description at its end (reason release): the
	// recycled-owner handover (see analyseAudit).
	handovers  int
	violations []string
	// pieces lists released events that did not match one acquired
	// event exactly (a range released in pieces, or together with
	// another): not wrong for lockfs's own state, but not the "one
	// released per acquired" the audit trail promises.
	pieces []string
}

// analyseAudit replays the audit log. Per file and space it keeps the
// bytes each owner holds: an acquired that conflicts with another
// owner's bytes is a violation as lockfs itself saw it; a released must
// give up bytes the owner holds in that mode. Separately, every released
// is matched against one acquired of the same owner, mode and range.
// A waiting stays open until acquired or gave_up.
func analyseAudit(path string) (*auditReplay, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	a := &auditReplay{acquiredBy: map[int]int{}, held: map[string][]auditHold{}, waiting: map[string]bool{}, open: map[string][]*openAcquired{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		var l auditLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("audit log line %d: %v: %s", n, err, sc.Bytes())
		}
		switch l.Event {
		case "waiting", "acquired", "released", "interrupted", "deadlock", "gave_up":
			a.events++
		default:
			continue
		}
		space, owner := "posix", l.Owner
		if l.Kind == "flock" {
			// A flock lock belongs to an open file description, which
			// the FUSE handle names; the owner value alone may already
			// name a newer description (the kernel recycles it before
			// the old one's RELEASE arrives).
			space, owner = "flock", fmt.Sprintf("%s/fh%d", l.Owner, l.Fh)
		}
		fk := l.Path + "\x00" + space
		wk := fk + "\x00" + owner
		h := auditHold{owner: owner, write: l.Mode == "write", start: l.Start, end: l.End}
		ok := fmt.Sprintf("%s\x00%v", wk, h.write)
		switch l.Event {
		case "acquired":
			a.acquired++
			a.acquiredBy[l.Pid]++
			a.open[ok] = append(a.open[ok], &openAcquired{fh: l.Fh, start: l.Start, end: l.End, left: []auditHold{h}})
			delete(a.waiting, wk)
			for _, o := range a.held[fk] {
				if o.owner != h.owner && (o.write || h.write) && o.start <= h.end && h.start <= o.end {
					a.violations = append(a.violations, fmt.Sprintf("line %d: %s: %s got %s %d..%d while %s holds %s %d..%d",
						n, l.Path, h.owner, l.Mode, h.start, h.end, o.owner, relModeName(o.write), o.start, o.end))
				}
			}
			a.held[fk] = append(subtractHold(a.held[fk], h, nil), h)
		case "released":
			a.released++
			var covered uint64
			a.held[fk] = subtractHold(a.held[fk], h, &covered)
			if covered != h.end-h.start+1 {
				a.violations = append(a.violations, fmt.Sprintf("line %d: %s: released %s %d..%d of %s, which held only %d of those bytes in that mode",
					n, l.Path, l.Mode, h.start, h.end, h.owner, covered))
			}
			if !a.matchRelease(ok, l, h) && len(a.pieces) < 1000 {
				a.pieces = append(a.pieces, fmt.Sprintf("line %d: %s: released %s %d..%d of %s, not a range it acquired", n, l.Path, l.Mode, h.start, h.end, h.owner))
			}
		case "waiting":
			a.waiting[wk] = true
		case "gave_up":
			delete(a.waiting, wk)
		}
	}
	return a, sc.Err()
}

// subtractHold removes h's bytes from h.owner's holds of h's mode;
// covered, if not nil, counts the bytes removed.
func subtractHold(holds []auditHold, h auditHold, covered *uint64) []auditHold {
	out := holds[:0:0]
	for _, o := range holds {
		if o.owner != h.owner || o.write != h.write || o.end < h.start || h.end < o.start {
			out = append(out, o)
			continue
		}
		if covered != nil {
			*covered += min(o.end, h.end) - max(o.start, h.start) + 1
		}
		if o.start < h.start {
			out = append(out, auditHold{o.owner, o.write, o.start, h.start - 1})
		}
		if o.end > h.end {
			out = append(out, auditHold{o.owner, o.write, h.end + 1, o.end})
		}
	}
	return out
}

// leaks lists bytes still held and waits the log never ended.
func (a *auditReplay) leaks() []string {
	var out []string
	for k, hs := range a.held {
		for _, h := range hs {
			out = append(out, fmt.Sprintf("acquired, never released: %s %+v", strings.ReplaceAll(k, "\x00", " "), h))
		}
	}
	for k := range a.waiting {
		out = append(out, "waiting, never resolved: "+strings.ReplaceAll(k, "\x00", " "))
	}
	slices.Sort(out)
	return out
}

// openAcquired is an acquired event not yet matched: its description,
// range, and (for a handover) the bytes not yet released.
type openAcquired struct {
	fh         uint64
	start, end uint64
	left       []auditHold
}

// matchRelease matches released event l against the open acquired
// events of its owner and mode (key ok). A released of exactly an
// acquired range ends that acquired. Otherwise, only this is accepted:
// the end (reason release) of a description whose owner value the kernel
// recycled before lockfs saw the RELEASE. The new description's lock on
// some of the old one's bytes ends the old lock on them (released,
// reason release, naming the old handle), and the RELEASE the rest: an
// acquired released in pieces, all through its own handle, with bytes
// exact. Anything else is a piece, a breach of "one released per
// acquired".
func (a *auditReplay) matchRelease(ok string, l auditLine, h auditHold) bool {
	list := a.open[ok]
	drop := func(i int) {
		list = slices.Delete(list, i, i+1)
		if len(list) == 0 {
			delete(a.open, ok)
		} else {
			a.open[ok] = list
		}
	}
	for i, o := range list {
		if o.start == l.Start && o.end == l.End && len(o.left) == 1 && o.left[0].start == o.start && o.left[0].end == o.end {
			drop(i)
			return true
		}
	}
	if l.Reason != "release" {
		return false
	}
	for i, o := range list {
		var covered uint64
		left := subtractHold(o.left, h, &covered)
		if o.fh != l.Fh || covered != l.End-l.Start+1 {
			continue
		}
		o.left = left
		if len(left) == 0 {
			a.handovers++
			drop(i)
		}
		return true
	}
	return false
}

// unmatched lists the acquired events that no released event ended
// (with pieces, the breaches of "one released per acquired").
func (a *auditReplay) unmatched() []string {
	var out []string
	for k, list := range a.open {
		for _, o := range list {
			out = append(out, fmt.Sprintf("acquired %s %d..%d (fh %d), not released as such", strings.ReplaceAll(k, "\x00", " "), o.start, o.end, o.fh))
		}
	}
	slices.Sort(out)
	return out
}

// TestSoakCheckers shows that the checkers can fail: synthetic records
// and audit lines with a violation, a leak and an unmatched release are
// reported, harmless ones are not, and real soak workers that do not
// exclude each other (each locks its own copy of the files) are caught.
func TestSoakCheckers(t *testing.T) {
	sec := func(w int, write bool, start, end uint64, from, to int64) soakSection {
		return soakSection{worker: w, file: 1, space: 'P', kind: 'c', write: write, start: start, end: end, from: from, to: to}
	}
	for _, c := range []struct {
		name string
		a, b soakSection
		want int
	}{
		{"two writers at once", sec(1, true, 0, 9, 10, 20), sec(2, true, 5, 5, 15, 25), 1},
		{"reader during a writer", sec(1, true, 0, 9, 10, 20), sec(2, false, 0, 0, 19, 30), 1},
		{"two readers", sec(1, false, 0, 9, 10, 20), sec(2, false, 0, 9, 15, 25), 0},
		{"one after the other", sec(1, true, 0, 9, 10, 20), sec(2, true, 0, 9, 20, 25), 0},
		{"disjoint bytes", sec(1, true, 0, 9, 10, 20), sec(2, true, 10, 19, 10, 20), 0},
		{"the same worker", sec(1, true, 0, 9, 10, 20), sec(1, true, 0, 9, 15, 25), 0},
	} {
		got := soakViolations([]*soakRecords{{sections: []soakSection{c.a}}, {sections: []soakSection{c.b}}})
		if len(got) != c.want {
			t.Errorf("%s: %d violations %v, want %d", c.name, len(got), got, c.want)
		}
	}

	log := filepath.Join(t.TempDir(), "audit.log")
	line := func(event, owner, mode string, start, end int) string {
		return fmt.Sprintf(`{"event":%q,"path":"/m/f","kind":"posix","mode":%q,"start":%d,"end":%d,"pid":7,"owner":%q}`, event, mode, start, end, owner)
	}
	lines := []string{
		line("acquired", "a", "write", 0, 9),
		line("acquired", "b", "read", 5, 5), // conflicts with a
		line("released", "a", "write", 0, 9),
		line("released", "c", "write", 0, 9), // c held nothing
		line("waiting", "d", "write", 0, 0),  // never resolved
		// b's read lock is never released
	}
	if err := os.WriteFile(log, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := analyseAudit(log)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.violations) != 2 || len(a.leaks()) != 2 || len(a.pieces) != 1 || len(a.unmatched()) != 1 {
		t.Errorf("audit checker: violations %q, leaks %q, pieces %q, unmatched %q; want 2, 2, 1, 1",
			a.violations, a.leaks(), a.pieces, a.unmatched())
	}
	// A range released in two pieces: consistent, but not one for one.
	lines = []string{line("acquired", "a", "write", 0, 9), line("released", "a", "write", 0, 4), line("released", "a", "write", 5, 9)}
	if err := os.WriteFile(log, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if a, err = analyseAudit(log); err != nil {
		t.Fatal(err)
	}
	if len(a.violations) != 0 || len(a.leaks()) != 0 || len(a.pieces) != 2 || len(a.unmatched()) != 1 {
		t.Errorf("audit checker, range released in pieces: violations %q, leaks %q, pieces %q, unmatched %q; want 0, 0, 2, 1",
			a.violations, a.leaks(), a.pieces, a.unmatched())
	}

	// The recycled-owner handover: the old description's lock ends in
	// two pieces, both at its end and through its own handle. Accepted;
	// the same split as an unlock, or through another handle, is not.
	withFh := func(event, reason string, fh, start, end int) string {
		return fmt.Sprintf(`{"event":%q,"reason":%q,"fh":%d,"path":"/m/f","kind":"posix","mode":"read","start":%d,"end":%d,"pid":7,"owner":"x"}`, event, reason, fh, start, end)
	}
	for _, c := range []struct {
		name                      string
		lines                     []string
		pieces, unmatched, handed int
	}{
		{"handover", []string{withFh("acquired", "", 9, 20, 25), withFh("released", "release", 9, 21, 25), withFh("acquired", "", 5, 21, 31),
			withFh("released", "release", 9, 20, 20), withFh("released", "unlock", 5, 21, 31)}, 0, 0, 1},
		{"split by unlock", []string{withFh("acquired", "", 9, 20, 25), withFh("released", "unlock", 9, 21, 25), withFh("released", "release", 9, 20, 20)}, 1, 1, 0},
		{"another handle", []string{withFh("acquired", "", 9, 20, 25), withFh("released", "release", 8, 21, 25), withFh("released", "release", 8, 20, 20)}, 2, 1, 0},
	} {
		if err := os.WriteFile(log, []byte(strings.Join(c.lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if a, err = analyseAudit(log); err != nil {
			t.Fatal(err)
		}
		if len(a.violations) != 0 || len(a.leaks()) != 0 || len(a.pieces) != c.pieces || len(a.unmatched()) != c.unmatched || a.handovers != c.handed {
			t.Errorf("audit checker, %s: violations %q, leaks %q, pieces %q, unmatched %q, handovers %d; want 0, 0, %d, %d, %d",
				c.name, a.violations, a.leaks(), a.pieces, a.unmatched(), a.handovers, c.pieces, c.unmatched, c.handed)
		}
	}

	// Workers that lock separate copies of the files never wait for
	// each other: read as one set of files, their sections overlap.
	recDir := t.TempDir()
	var procs []*soakProc
	for i := 0; i < 4; i++ {
		sp := &soakProc{id: i, recPath: filepath.Join(recDir, fmt.Sprintf("w%d", i))}
		sp.p = startRel(t, "soak", []string{
			"LOCKFS_REL_DIR=" + t.TempDir(), "LOCKFS_REL_REC=" + sp.recPath,
			"LOCKFS_REL_FILES=3", "LOCKFS_REL_SEED=" + strconv.Itoa(i+1),
		}, nil)
		sp.p.expect(t, "READY", mustFinishWithin)
		procs = append(procs, sp)
	}
	time.Sleep(time.Second)
	var recs []*soakRecords
	for _, sp := range procs {
		sp.p.finish(t, mustFinishWithin)
		r, err := readSoakRecords(sp)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if v := soakViolations(recs); len(v) == 0 {
		t.Errorf("no violation found among workers that do not exclude each other")
	} else {
		t.Logf("%d violations found among workers that do not exclude each other, e.g. %s", len(v), v[0])
	}
}

// auditContext returns, compactly, the last n events on lockPath up to
// and including line of the audit log: what led to an anomaly.
func auditContext(logPath string, line int, lockPath string, n int) string {
	f, err := os.Open(logPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var ring []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for i := 1; sc.Scan() && i <= line; i++ {
		var l auditLine
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Path != lockPath {
			continue
		}
		ring = append(ring, fmt.Sprintf("  %d: %s %s %s %d..%d pid %d owner %s fh %d %s", i, l.Event, l.Kind, l.Mode, l.Start, l.End, l.Pid, l.Owner, l.Fh, l.Reason))
		if len(ring) > n {
			ring = ring[1:]
		}
	}
	return strings.Join(ring, "\n")
}
