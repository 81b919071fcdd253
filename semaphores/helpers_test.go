package semaphores

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Timing constants. Nothing in these tests uses a sleep to decide that
// something happened; sleeps only give a request that must stay blocked
// the chance to (wrongly) return.
const (
	// mustBlockWait is how long a request must stay blocked to count as
	// blocked.
	mustBlockWait = 100 * time.Millisecond
	// mustFinishWait bounds how long a request that must complete (or a
	// waiter that must reach the queue) may take; it is generous so that
	// a loaded -race run never flakes.
	mustFinishWait = 10 * time.Second
	// pollEvery is the polling interval while waiting for a goroutine to
	// reach a state that is then asserted exactly.
	pollEvery = time.Millisecond
)

// Owners used by the scenario tests. Each owner has its own pid and, by
// default, its own open file description (fh == owner).
const (
	A uint64 = 0xA
	B uint64 = 0xB
	C uint64 = 0xC
	D uint64 = 0xD
	E uint64 = 0xE
	F uint64 = 0xF
)

// Lock type shorthands.
const (
	R = ReadLock
	W = WriteLock
	U = Unlock
)

// Max is OffsetMax: "to EOF".
const Max = OffsetMax

func pidOf(owner uint64) uint32 { return uint32(1000 + owner) }

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// recorder is an Observer that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) LockEvent(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// take returns the events recorded since the last take.
func (r *recorder) take() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.events
	r.events = nil
	return ev
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func eventKinds(evs []Event) string {
	var b strings.Builder
	for i, e := range evs {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s(%#x", e.Kind, e.Owner)
		if e.Reason != ReasonNone {
			fmt.Fprintf(&b, ",%s", e.Reason)
		}
		b.WriteByte(')')
	}
	return b.String()
}

// lockOpt adjusts an expected Lock.
type lockOpt func(*Lock)

func withPid(p uint32) lockOpt   { return func(l *Lock) { l.Pid = p } }
func withFh(fh uint64) lockOpt   { return func(l *Lock) { l.Fh = fh } }
func withClass(c Class) lockOpt  { return func(l *Lock) { l.Class = c } }
func asOFD() lockOpt             { return withClass(ClassOFD) }
func withUid(uid uint32) lockOpt { return func(l *Lock) { l.Uid = uid } }
func applyOpts(l Lock, opts []lockOpt) Lock {
	for _, o := range opts {
		o(&l)
	}
	return l
}

// hold is the expected POSIX-space record (or Getlk answer) of owner:
// by default taken through fh == owner with pid pidOf(owner).
func hold(owner uint64, typ LockType, start, end uint64, opts ...lockOpt) Lock {
	return applyOpts(Lock{
		Owner: owner, Fh: owner, Class: ClassPOSIX, Type: typ,
		Start: start, End: end, Pid: pidOf(owner),
	}, opts)
}

// flockHold is the expected flock record of owner.
func flockHold(owner uint64, typ LockType, opts ...lockOpt) Lock {
	return applyOpts(Lock{
		Owner: owner, Fh: owner, Class: ClassFlock, Type: typ,
		Start: 0, End: Max, Pid: pidOf(owner),
	}, opts)
}

// noLock is the Getlk answer "no conflict".
var noLock = Lock{Type: Unlock}

func stripSince(ls []Lock) []Lock {
	out := make([]Lock, len(ls))
	for i, l := range ls {
		l.Since = time.Time{}
		out[i] = l
	}
	return out
}

func fmtLocks(ls []Lock) string {
	if len(ls) == 0 {
		return "[]"
	}
	var b strings.Builder
	for _, l := range ls {
		fmt.Fprintf(&b, "\n\t%s", fmtLock(l))
	}
	return b.String()
}

func fmtLock(l Lock) string {
	if l.Type == Unlock && l.Owner == 0 {
		return "{unlock}"
	}
	end := fmt.Sprint(l.End)
	if l.End == Max {
		end = "MAX"
	}
	return fmt.Sprintf("{owner=%#x fh=%d %s %s %d..%s pid=%d uid=%d}",
		l.Owner, l.Fh, l.Class, l.Type, l.Start, end, l.Pid, l.Uid)
}

// posixReq builds a POSIX-space request of owner on node 1 through
// fh == owner, with the kernel's pid convention (0 for unlocks, R3).
func posixReq(owner uint64, typ LockType, start, end uint64) Request {
	pid := pidOf(owner)
	if typ == Unlock {
		pid = 0
	}
	return Request{Node: 1, Fh: owner, Owner: owner, Space: SpacePOSIX,
		Type: typ, Start: start, End: end, Pid: pid}
}

// flockReq builds a flock request of owner (the description) on node 1.
func flockReq(owner uint64, typ LockType) Request {
	r := posixReq(owner, typ, 0, Max)
	r.Space = SpaceFlock
	return r
}

// ---------------------------------------------------------------------
// Scenario DSL: a named sequence of engine calls with exact expectations.

type stepKind int

const (
	kSetlk   stepKind = iota // Setlk; err must match
	kSetlkw                  // Setlkw that must return without blocking
	kGetlk                   // Getlk; answer and err must match
	kFlush                   // Flush(node, owner)
	kRelease                 // Release(rel)
	kWait                    // start a background Setlkw; wait until queued
	kDone                    // a background wait must end with err
	kCancel                  // cancel a background wait's context
	kBlocked                 // a background wait must still be pending after mustBlockWait
	kState                   // FileSnapshot(node).Locks must equal locks
	kQueue                   // blocked waiters of node, in order, must be names
	kPollers                 // pollers (refused, not granted) of node must be these owners
	kStats                   // Stats() must equal stats
)

type step struct {
	kind   stepKind
	req    Request
	rel    ReleaseRequest
	name   string
	err    error
	answer Lock
	locks  []Lock
	names  []string
	owners []uint64
	stats  Stats
}

func setlk(owner uint64, typ LockType, start, end uint64) step {
	return step{kind: kSetlk, req: posixReq(owner, typ, start, end)}
}

func flock(owner uint64, typ LockType) step {
	return step{kind: kSetlk, req: flockReq(owner, typ)}
}

func getlk(owner uint64, typ LockType, start, end uint64) step {
	r := posixReq(owner, typ, start, end)
	r.Pid = 0 // GETLK always carries pid 0 (R3)
	return step{kind: kGetlk, req: r, answer: noLock}
}

func flush(owner uint64) step {
	return step{kind: kFlush, req: Request{Node: 1, Owner: owner}}
}

// release is the RELEASE of description fh without FLOCK_UNLOCK.
func release(fh uint64) step {
	return step{kind: kRelease, rel: ReleaseRequest{Node: 1, Fh: fh}}
}

// wait starts s (a Setlk/flock step) as a background Setlkw named name.
func wait(name string, s step) step {
	s.kind = kWait
	s.name = name
	return s
}

func done(name string, err error) step { return step{kind: kDone, name: name, err: err} }
func cancel(name string) step          { return step{kind: kCancel, name: name} }
func stillBlocked(name string) step    { return step{kind: kBlocked, name: name} }

func state(node uint64, locks ...Lock) step {
	return step{kind: kState, req: Request{Node: node}, locks: locks}
}

func queue(node uint64, names ...string) step {
	return step{kind: kQueue, req: Request{Node: node}, names: names}
}

func pollers(node uint64, owners ...uint64) step {
	return step{kind: kPollers, req: Request{Node: node}, owners: owners}
}

func stats(st Stats) step { return step{kind: kStats, stats: st} }

// Modifiers (value receivers: each returns a changed copy).

func (s step) on(node uint64) step   { s.req.Node = node; s.rel.Node = node; return s }
func (s step) via(fh uint64) step    { s.req.Fh = fh; return s }
func (s step) pid(p uint32) step     { s.req.Pid = p; return s }
func (s step) uid(u uint32) step     { s.req.Uid = u; return s }
func (s step) fails(err error) step  { s.err = err; return s }
func (s step) answers(l Lock) step   { s.answer = l; return s }
func (s step) blocking() step        { s.kind = kSetlkw; return s }
func (s step) inSpace(sp Space) step { s.req.Space = sp; return s }
func (s step) typ(t LockType) step   { s.req.Type = t; return s }
func (s step) flockUnlock(o uint64) step {
	s.rel.FlockUnlock = true
	s.rel.Owner = o
	return s
}

func (s step) String() string {
	r := s.req
	rq := func() string {
		end := fmt.Sprint(r.End)
		if r.End == Max {
			end = "MAX"
		}
		return fmt.Sprintf("node=%d fh=%d owner=%#x %s %s %d..%s pid=%d",
			r.Node, r.Fh, r.Owner, r.Space, r.Type, r.Start, end, r.Pid)
	}
	switch s.kind {
	case kSetlk:
		return "Setlk " + rq()
	case kSetlkw:
		return "Setlkw " + rq()
	case kGetlk:
		return "Getlk " + rq()
	case kFlush:
		return fmt.Sprintf("Flush node=%d owner=%#x", r.Node, r.Owner)
	case kRelease:
		return fmt.Sprintf("Release %+v", s.rel)
	case kWait:
		return fmt.Sprintf("wait %q: Setlkw %s", s.name, rq())
	case kDone:
		return fmt.Sprintf("done %q", s.name)
	case kCancel:
		return fmt.Sprintf("cancel %q", s.name)
	case kBlocked:
		return fmt.Sprintf("stillBlocked %q", s.name)
	case kState:
		return fmt.Sprintf("state node=%d", r.Node)
	case kQueue:
		return fmt.Sprintf("queue node=%d %v", r.Node, s.names)
	case kPollers:
		return fmt.Sprintf("pollers node=%d", r.Node)
	case kStats:
		return "stats"
	}
	return "?"
}

// bgWait is a Setlkw running in its own goroutine.
type bgWait struct {
	name   string
	req    Request
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func startWait(tb *Table, name string, req Request) *bgWait {
	ctx, cancel := context.WithCancel(context.Background())
	w := &bgWait{name: name, req: req, cancel: cancel, done: make(chan struct{})}
	go func() {
		w.err = tb.Setlkw(ctx, req)
		close(w.done)
	}()
	return w
}

func (w *bgWait) finished() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// isQueued reports whether req is a blocked waiter in its file.
func isQueued(tb *Table, req Request) bool {
	fs, ok := tb.FileSnapshot(req.Node)
	if !ok {
		return false
	}
	for _, wt := range fs.Waiters {
		if wt.Blocked && sameWait(wt, req) {
			return true
		}
	}
	return false
}

func sameWait(wt Waiter, req Request) bool {
	start, end := req.Start, req.End
	if req.Space == SpaceFlock {
		start, end = 0, Max
	}
	return wt.Owner == req.Owner && (wt.Class == ClassFlock) == (req.Space == SpaceFlock) &&
		wt.Type == req.Type && wt.Start == start && wt.End == end
}

// awaitQueued waits until w is queued in the engine or has returned.
func awaitQueued(t *testing.T, tb *Table, w *bgWait) {
	t.Helper()
	deadline := time.Now().Add(mustFinishWait)
	for !isQueued(tb, w.req) && !w.finished() {
		if time.Now().After(deadline) {
			t.Fatalf("wait %q neither queued nor finished after %v", w.name, mustFinishWait)
		}
		time.Sleep(pollEvery)
	}
}

// awaitDone waits for w to return; it reports false on timeout.
func awaitDone(w *bgWait) bool {
	select {
	case <-w.done:
		return true
	case <-time.After(mustFinishWait):
		return false
	}
}

// env is one engine under test with a recording observer and fake clock.
type env struct {
	t     *testing.T
	tb    *Table
	rec   *recorder
	clock *fakeClock
}

func newEnv(t *testing.T) *env {
	rec := &recorder{}
	clock := newFakeClock()
	return &env{t: t, rec: rec, clock: clock,
		tb: NewTable(Options{Observer: rec, Now: clock.Now})}
}

func (e *env) locks(node uint64) []Lock {
	fs, _ := e.tb.FileSnapshot(node)
	return stripSince(fs.Locks)
}

func (e *env) requireEmpty() {
	e.t.Helper()
	if st := e.tb.Stats(); st != (Stats{}) {
		e.t.Errorf("Stats() = %+v at the end of the scenario, want all zero", st)
	}
	if s := e.tb.Snapshot(); len(s.Files) != 0 {
		e.t.Errorf("Snapshot() has %d files at the end of the scenario, want 0: %+v", len(s.Files), s.Files)
	}
	checkInternal(e.t, e.tb)
}

// scenario is a named sequence of steps.
type scenario struct {
	name  string
	steps []step
}

func runScenarios(t *testing.T, cases []scenario) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runSteps(t, c.steps) })
	}
}

// runSteps runs steps on a fresh engine, then closes everything the
// scenario used, the way exiting processes would (FLUSH per node and
// owner, RELEASE per description with FLOCK_UNLOCK), and requires the
// engine to be empty.
func runSteps(t *testing.T, steps []step) *env {
	t.Helper()
	e := newEnv(t)
	tb := e.tb
	waits := map[string]*bgWait{}
	type nodeOwner struct{ node, owner uint64 }
	type nodeFh struct{ node, fh uint64 }
	owners := map[nodeOwner]bool{}
	fhs := map[nodeFh]uint64{} // description → its flock owner (0: none)
	use := func(r Request) {
		owners[nodeOwner{r.Node, r.Owner}] = true
		k := nodeFh{r.Node, r.Fh}
		if r.Space == SpaceFlock {
			fhs[k] = r.Owner
		} else if _, ok := fhs[k]; !ok {
			fhs[k] = 0
		}
	}
	for i, s := range steps {
		where := fmt.Sprintf("step %d (%s)", i, s)
		checkInternal(t, tb)
		switch s.kind {
		case kSetlk:
			use(s.req)
			if err := tb.Setlk(s.req); !errors.Is(err, s.err) || (err == nil) != (s.err == nil) {
				t.Fatalf("%s: err = %v, want %v\nstate: %s", where, err, s.err, fmtLocks(e.locks(s.req.Node)))
			}
		case kSetlkw:
			use(s.req)
			w := startWait(tb, "sync", s.req)
			if !awaitDone(w) {
				w.cancel()
				<-w.done
				t.Fatalf("%s: blocked, want an immediate answer %v", where, s.err)
			}
			w.cancel()
			if !errors.Is(w.err, s.err) || (w.err == nil) != (s.err == nil) {
				t.Fatalf("%s: err = %v, want %v\nstate: %s", where, w.err, s.err, fmtLocks(e.locks(s.req.Node)))
			}
		case kGetlk:
			use(s.req)
			got, err := tb.Getlk(s.req)
			if !errors.Is(err, s.err) || (err == nil) != (s.err == nil) {
				t.Fatalf("%s: err = %v, want %v", where, err, s.err)
			}
			got.Since = time.Time{}
			if err == nil && got != s.answer {
				t.Fatalf("%s: answer %s, want %s\nstate: %s", where, fmtLock(got), fmtLock(s.answer), fmtLocks(e.locks(s.req.Node)))
			}
		case kFlush:
			tb.Flush(s.req.Node, 0, s.req.Owner)
		case kRelease:
			tb.Release(s.rel)
		case kWait:
			use(s.req)
			if waits[s.name] != nil {
				t.Fatalf("%s: duplicate wait name", where)
			}
			w := startWait(tb, s.name, s.req)
			waits[s.name] = w
			awaitQueued(t, tb, w)
		case kDone:
			w := waits[s.name]
			if w == nil {
				t.Fatalf("%s: no such wait", where)
			}
			if !awaitDone(w) {
				t.Fatalf("%s: still blocked after %v, want %v\nstate: %s", where, mustFinishWait, s.err, fmtLocks(e.locks(w.req.Node)))
			}
			if !errors.Is(w.err, s.err) || (w.err == nil) != (s.err == nil) {
				t.Fatalf("%s: err = %v, want %v", where, w.err, s.err)
			}
			w.cancel()
			delete(waits, s.name)
		case kCancel:
			w := waits[s.name]
			if w == nil {
				t.Fatalf("%s: no such wait", where)
			}
			w.cancel()
		case kBlocked:
			w := waits[s.name]
			if w == nil {
				t.Fatalf("%s: no such wait", where)
			}
			select {
			case <-w.done:
				t.Fatalf("%s: returned %v, want it still blocked", where, w.err)
			case <-time.After(mustBlockWait):
			}
			if !isQueued(tb, w.req) {
				t.Fatalf("%s: not in the engine's queue", where)
			}
		case kState:
			got := e.locks(s.req.Node)
			want := s.locks
			if want == nil {
				want = []Lock{}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s: locks %s\nwant %s", where, fmtLocks(got), fmtLocks(want))
			}
		case kQueue:
			fs, _ := tb.FileSnapshot(s.req.Node)
			var got []string
			for _, wt := range fs.Waiters {
				if !wt.Blocked {
					continue
				}
				name := "?"
				for n, w := range waits {
					if !w.finished() && sameWait(wt, w.req) {
						name = n
					}
				}
				got = append(got, name)
			}
			if !slices.Equal(got, s.names) {
				t.Fatalf("%s: queue %v, want %v", where, got, s.names)
			}
		case kPollers:
			fs, _ := tb.FileSnapshot(s.req.Node)
			var got []uint64
			for _, wt := range fs.Waiters {
				if !wt.Blocked {
					got = append(got, wt.Owner)
				}
			}
			if !slices.Equal(got, s.owners) {
				t.Fatalf("%s: pollers %#x, want %#x", where, got, s.owners)
			}
		case kStats:
			if got := tb.Stats(); got != s.stats {
				t.Fatalf("%s: Stats() = %+v, want %+v", where, got, s.stats)
			}
		}
	}
	checkInternal(t, tb)
	for name, w := range waits {
		t.Errorf("wait %q still pending at the end of the scenario (finished=%v)", name, w.finished())
		w.cancel()
		<-w.done
	}
	// Everyone exits: FLUSH per (node, owner), RELEASE per description.
	for k := range owners {
		tb.Flush(k.node, 0, k.owner)
	}
	for k, flockOwner := range fhs {
		tb.Release(ReleaseRequest{Node: k.node, Fh: k.fh, Owner: flockOwner, FlockUnlock: flockOwner != 0})
	}
	e.requireEmpty()
	return e
}

// checkInternal verifies the engine's data-structure invariants directly:
// holder lists and indexes, record order (sorted, disjoint, same-type
// records never touching), the write counter, flock records, waiter
// links and the "no empty file in the map" rule.
func checkInternal(t testing.TB, tb *Table) {
	t.Helper()
	if err := internalInvariants(tb); err != nil {
		t.Fatalf("engine invariant broken: %v", err)
	}
}

func internalInvariants(tb *Table) error {
	tb.mu.RLock()
	files := make(map[uint64]*file, len(tb.files))
	for n, f := range tb.files {
		files[n] = f
	}
	tb.mu.RUnlock()
	for n, f := range files {
		f.mu.Lock()
		err := fileInvariants(n, f)
		f.mu.Unlock()
		if err != nil {
			return fmt.Errorf("node %d: %w", n, err)
		}
	}
	return nil
}

func fileInvariants(n uint64, f *file) error {
	if f.dead {
		return nil // being removed by a concurrent Flush or Release
	}
	if f.node != n {
		return fmt.Errorf("file.node = %d", f.node)
	}
	// An empty entry may stay between lock calls (unlockFile keeps it
	// for the next call); Flush and Release remove it, which the end of
	// every scenario checks through Stats.
	if f.st == nil {
		return oneLockInvariants(&f.one)
	}
	if f.one.held {
		return fmt.Errorf("a full file keeps a compact lock %+v", f.one)
	}
	if f.st.empty() {
		return fmt.Errorf("an empty full state was not compacted")
	}
	if len(f.st.woken) != 0 {
		return fmt.Errorf("%d woken waiters outside the lock", len(f.st.woken))
	}
	for _, sp := range f.spaces() {
		if err := spaceInvariants(sp); err != nil {
			return fmt.Errorf("%s space: %w", sp.kind, err)
		}
	}
	return nil
}

// oneLockInvariants checks the compact form's lock, which is what a
// record of a solo holder would be.
func oneLockInvariants(o *oneLock) error {
	if !o.held {
		if *o != (oneLock{}) {
			return fmt.Errorf("a released compact lock keeps fields: %+v", *o)
		}
		return nil
	}
	if o.typ != ReadLock && o.typ != WriteLock {
		return fmt.Errorf("compact lock type %v", o.typ)
	}
	if o.start > o.end || o.end > OffsetMax {
		return fmt.Errorf("compact lock range %d..%d", o.start, o.end)
	}
	if o.space == SpaceFlock && (o.start != 0 || o.end != OffsetMax || o.ofd) {
		return fmt.Errorf("compact flock lock %+v", *o)
	}
	return nil
}

func spaceInvariants(sp *space) error {
	n, writers := 0, 0
	seen := map[uint64]bool{}
	var prev *holder
	for h := sp.head; h != nil; h = h.next {
		n++
		if h.prev != prev {
			return fmt.Errorf("holder %#x: broken prev link", h.owner)
		}
		if h.space != sp {
			return fmt.Errorf("holder %#x: wrong space", h.owner)
		}
		if seen[h.key] {
			return fmt.Errorf("key %#x has two holders", h.key)
		}
		seen[h.key] = true
		if len(h.recs) == 0 {
			return fmt.Errorf("holder %#x has no records", h.owner)
		}
		if sp.kind == SpaceFlock {
			r := h.recs[0]
			if len(h.recs) != 1 || r.start != 0 || r.end != OffsetMax {
				return fmt.Errorf("flock holder %#x has %d records, first %d..%d", h.owner, len(h.recs), r.start, r.end)
			}
		}
		for i, r := range h.recs {
			if r.holder != h {
				return fmt.Errorf("owner %#x record %d: wrong holder", h.owner, i)
			}
			if r.typ != ReadLock && r.typ != WriteLock {
				return fmt.Errorf("owner %#x record %d: type %v", h.owner, i, r.typ)
			}
			if r.start > r.end || r.end > OffsetMax {
				return fmt.Errorf("owner %#x record %d: range %d..%d", h.owner, i, r.start, r.end)
			}
			if r.typ == WriteLock {
				writers++
			}
			if i > 0 {
				p := h.recs[i-1]
				if p.end >= r.start {
					return fmt.Errorf("owner %#x records %d..%d and %d..%d overlap or are unsorted", h.owner, p.start, p.end, r.start, r.end)
				}
				if p.typ == r.typ && p.end+1 == r.start {
					return fmt.Errorf("owner %#x same-type records %d..%d and %d..%d are adjacent (not merged)", h.owner, p.start, p.end, r.start, r.end)
				}
			}
			for w := r.blocked.head; w != nil; w = w.b.next {
				if w.blocker != r || w.decided {
					return fmt.Errorf("owner %#x record %d..%d: stale blocked waiter", h.owner, r.start, r.end)
				}
			}
		}
		prev = h
	}
	if sp.tail != prev {
		return fmt.Errorf("tail is not the last holder")
	}
	if n != sp.nholders {
		return fmt.Errorf("nholders = %d, list has %d", sp.nholders, n)
	}
	if writers != sp.writers {
		return fmt.Errorf("writers = %d, records have %d", sp.writers, writers)
	}
	if sp.kind == SpacePOSIX {
		if len(sp.wix) != writers {
			return fmt.Errorf("write index has %d records, space %d", len(sp.wix), writers)
		}
		for i, r := range sp.wix {
			if r.typ != WriteLock || r.holder == nil || r.holder.space != sp {
				return fmt.Errorf("write index entry %d is not a write record of this space", i)
			}
			if i > 0 && sp.wix[i-1].end >= r.start {
				return fmt.Errorf("write index entries %d..%d and %d..%d unsorted or overlapping", sp.wix[i-1].start, sp.wix[i-1].end, r.start, r.end)
			}
		}
	}
	if sp.byKey != nil {
		if len(sp.byKey) != n {
			return fmt.Errorf("byKey has %d entries, list %d", len(sp.byKey), n)
		}
		for k, h := range sp.byKey {
			if h.key != k || !seen[k] {
				return fmt.Errorf("byKey[%#x] is stale", k)
			}
		}
	} else if n > holderIndexThreshold {
		return fmt.Errorf("%d holders but no index", n)
	}
	for w := sp.queue.head; w != nil; w = w.q.next {
		if w.decided || w.sp != sp {
			return fmt.Errorf("queued waiter of %#x is decided or in the wrong space", w.req.Owner)
		}
		if w.blocker == nil {
			return fmt.Errorf("queued waiter of %#x has no blocker", w.req.Owner)
		}
	}
	return nil
}
