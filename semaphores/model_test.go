package semaphores

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// The reference model: an exact, byte-level description of what each
// owner holds, independent of how the engine stores records.
//
// Offsets are folded into 65 cells: cells 0..63 are the bytes 0..63 and
// cell 64 stands for every byte from 64 to OffsetMax. Every range the
// operations use starts at 0..64 and ends at 0..63 or at OffsetMax, so
// all bytes of cell 64 are always held alike and the folding is exact.

const (
	nCells   = 65
	tailCell = 64
)

// Universe of identifiers. Classic POSIX owners lock through any of the
// classic descriptions; each OFD owner is its own description (R4).
var (
	modelNodes    = []uint64{1, 2}
	unknownNode   = uint64(9)
	classicOwners = []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9} // > holderIndexThreshold with the OFD owners
	classicFhs    = []uint64{1, 2, 3}
	ofdOwners     = []uint64{11, 12} // fh == owner
	strangerOwner = uint64(77)       // never locks anything
	strangerFh    = uint64(99)       // never opened
)

type opKind uint8

const (
	opSetlk   opKind = iota // F_SETLK (POSIX space) or flock LOCK_NB
	opSetlkw                // F_SETLKW with an already-cancelled context
	opGetlk                 // F_GETLK / F_OFD_GETLK
	opFlush                 // FUSE FLUSH
	opRelease               // FUSE RELEASE
	numOpKinds
)

// op is one engine call. For opSetlk/opSetlkw/opGetlk, req is passed
// as is, so it may be invalid.
type op struct {
	kind opKind
	req  Request
	rel  ReleaseRequest
}

func (o op) String() string {
	r := o.req
	end := fmt.Sprint(r.End)
	if r.End == OffsetMax {
		end = "MAX"
	}
	switch o.kind {
	case opSetlk, opSetlkw, opGetlk:
		name := [...]string{"Setlk", "Setlkw(cancelled)", "Getlk"}[o.kind]
		return fmt.Sprintf("%s node=%d fh=%d owner=%d %s %s %d..%s pid=%d",
			name, r.Node, r.Fh, r.Owner, r.Space, r.Type, r.Start, end, r.Pid)
	case opFlush:
		return fmt.Sprintf("Flush node=%d owner=%d", r.Node, r.Owner)
	case opRelease:
		return fmt.Sprintf("Release %+v", o.rel)
	}
	return "?"
}

// cells is one owner's POSIX-space holding: 0 none, else LockType+1.
type cells [nCells]uint8

func (c *cells) empty() bool { return *c == cells{} }

type pollKey struct {
	space Space
	owner uint64
}

type poll struct {
	fh       uint64
	attempts int
}

type flockHeld struct {
	typ LockType
	fh  uint64
}

// modelFile is the reference state of one node.
type modelFile struct {
	posix      map[uint64]*cells // owner → cells
	posixOrder []uint64          // holders in kernel list order (R15)
	flock      map[uint64]flockHeld
	flockOrder []uint64
	pollers    map[pollKey]poll
}

type model struct {
	files map[uint64]*modelFile
}

func newModel() *model { return &model{files: map[uint64]*modelFile{}} }

func (m *model) file(node uint64) *modelFile {
	f := m.files[node]
	if f == nil {
		f = &modelFile{posix: map[uint64]*cells{}, flock: map[uint64]flockHeld{}, pollers: map[pollKey]poll{}}
		m.files[node] = f
	}
	return f
}

// cellSpan maps a model range to its first and last cell.
func cellSpan(start, end uint64) (int, int, bool) {
	if start > tailCell || (end >= tailCell && end != OffsetMax) || start > end {
		return 0, 0, false
	}
	last := int(min(end, tailCell))
	return int(start), last, true
}

func validRequest(r Request, getlk bool) bool {
	if r.Type > Unlock || r.Space > SpaceFlock {
		return false
	}
	if r.Space == SpaceFlock {
		return !getlk
	}
	return r.Start <= r.End && r.End <= OffsetMax
}

func conflicts(a, b LockType) bool { return a == WriteLock || b == WriteLock }

// posixConflict reports whether owner's request conflicts in the model.
func (f *modelFile) posixConflict(owner uint64, typ LockType, lo, hi int) bool {
	for o, c := range f.posix {
		if o == owner {
			continue
		}
		for i := lo; i <= hi; i++ {
			if c[i] != 0 && conflicts(LockType(c[i]-1), typ) {
				return true
			}
		}
	}
	return false
}

func (f *modelFile) setCells(owner uint64, typ LockType, lo, hi int) {
	c := f.posix[owner]
	wasEmpty := c == nil || c.empty()
	if c == nil {
		c = &cells{}
	}
	for i := lo; i <= hi; i++ {
		if typ == Unlock {
			c[i] = 0
		} else {
			c[i] = uint8(typ) + 1
		}
	}
	f.posix[owner] = c
	switch {
	case c.empty():
		delete(f.posix, owner)
		if !wasEmpty {
			f.posixOrder = slices.DeleteFunc(f.posixOrder, func(o uint64) bool { return o == owner })
		}
	case wasEmpty:
		f.posixOrder = append(f.posixOrder, owner)
	}
}

func (f *modelFile) dropPosix(owner uint64) {
	if _, ok := f.posix[owner]; ok {
		delete(f.posix, owner)
		f.posixOrder = slices.DeleteFunc(f.posixOrder, func(o uint64) bool { return o == owner })
	}
}

func (f *modelFile) dropFlock(owner uint64) {
	if _, ok := f.flock[owner]; ok {
		delete(f.flock, owner)
		f.flockOrder = slices.DeleteFunc(f.flockOrder, func(o uint64) bool { return o == owner })
	}
}

func (f *modelFile) refuse(space Space, owner, fh uint64) {
	k := pollKey{space, owner}
	p := f.pollers[k]
	f.pollers[k] = poll{fh: fh, attempts: p.attempts + 1}
}

// apply computes the expected result of a Setlk or Setlkw (with a
// cancelled context) and updates the model.
func (m *model) apply(o op) error {
	r := o.req
	if !validRequest(r, false) {
		return ErrInvalid
	}
	f := m.file(r.Node)
	refused := ErrWouldBlock
	if o.kind == opSetlkw {
		refused = ErrInterrupted
	}
	if r.Space == SpaceFlock {
		cur, held := f.flock[r.Owner]
		if held && cur.typ == r.Type {
			delete(f.pollers, pollKey{SpaceFlock, r.Owner})
			return nil
		}
		f.dropFlock(r.Owner) // R27: the old lock goes first
		if r.Type == Unlock {
			return nil
		}
		for other, h := range f.flock {
			if other != r.Owner && conflicts(h.typ, r.Type) {
				f.refuse(SpaceFlock, r.Owner, r.Fh)
				return refused
			}
		}
		f.flock[r.Owner] = flockHeld{typ: r.Type, fh: r.Fh}
		f.flockOrder = append(f.flockOrder, r.Owner)
		delete(f.pollers, pollKey{SpaceFlock, r.Owner})
		return nil
	}
	lo, hi, ok := cellSpan(r.Start, r.End)
	if !ok {
		panic(fmt.Sprintf("model: range %d..%d is not cell-aligned", r.Start, r.End))
	}
	if r.Type != Unlock && f.posixConflict(r.Owner, r.Type, lo, hi) {
		f.refuse(SpacePOSIX, r.Owner, r.Fh)
		return refused
	}
	f.setCells(r.Owner, r.Type, lo, hi)
	if r.Type != Unlock {
		delete(f.pollers, pollKey{SpacePOSIX, r.Owner})
	}
	return nil
}

func (m *model) flush(node, owner uint64) {
	f := m.files[node]
	if f == nil {
		return
	}
	f.dropPosix(owner)
	delete(f.pollers, pollKey{SpacePOSIX, owner})
}

// release follows R12. The operations never lock through an OFD
// description except as its own owner, so "the records taken through
// fh" are exactly that owner's.
func (m *model) release(rel ReleaseRequest) {
	f := m.files[rel.Node]
	if f == nil {
		return
	}
	// A flock lock belongs to its description, named by the handle;
	// RELEASE's owner value is not trusted (it may already name a new
	// description, see Table.Release).
	for owner, h := range f.flock {
		if h.fh == rel.Fh {
			f.dropFlock(owner)
		}
	}
	if slices.Contains(ofdOwners, rel.Fh) {
		f.dropPosix(rel.Fh)
	}
	for k, p := range f.pollers {
		if p.fh == rel.Fh {
			delete(f.pollers, k)
		}
	}
}

// harness runs operations on a Table and the model side by side.
type harness struct {
	tb    *Table
	m     *model
	rec   *recorder
	steps int
}

func newHarness() *harness {
	rec := &recorder{}
	return &harness{tb: NewTable(Options{Observer: rec}), m: newModel(), rec: rec}
}

func snapshotOf(tb *Table, node uint64) FileState {
	fs, _ := tb.FileSnapshot(node)
	return fs
}

// step runs o and compares the engine with the model.
func (h *harness) step(o op) error {
	h.steps++
	node := o.req.Node
	if o.kind == opRelease {
		node = o.rel.Node
	}
	before := snapshotOf(h.tb, node)
	stBefore := h.tb.Stats()
	nev := h.rec.count()
	switch o.kind {
	case opSetlk, opSetlkw:
		want := h.m.apply(o)
		var got error
		if o.kind == opSetlk {
			got = h.tb.Setlk(o.req)
		} else {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			got = h.tb.Setlkw(ctx, o.req)
		}
		if got != want {
			return fmt.Errorf("%v: got %v, want %v\nbefore: %s", o, got, want, fmtLocks(before.Locks))
		}
	case opGetlk:
		got, err := h.tb.Getlk(o.req)
		if err := h.checkGetlk(o.req, got, err); err != nil {
			return fmt.Errorf("%v: %w\nstate: %s", o, err, fmtLocks(before.Locks))
		}
		after := snapshotOf(h.tb, node)
		if o.req.Type != Unlock || err != nil {
			// Only F_OFD_GETLK(F_UNLCK) may change anything: the class.
			if !slices.Equal(after.Locks, before.Locks) || !reflect.DeepEqual(after.Waiters, before.Waiters) {
				return fmt.Errorf("%v changed the state:\n%s\nwas %s", o, fmtLocks(after.Locks), fmtLocks(before.Locks))
			}
		}
	case opFlush:
		h.m.flush(o.req.Node, o.req.Owner)
		h.tb.Flush(o.req.Node, 0, o.req.Owner)
	case opRelease:
		h.m.release(o.rel)
		h.tb.Release(o.rel)
	}
	if (o.kind == opSetlk || o.kind == opSetlkw || o.kind == opGetlk) && !validRequest(o.req, o.kind == opGetlk) {
		if st := h.tb.Stats(); st != stBefore {
			return fmt.Errorf("invalid %v changed Stats %+v → %+v", o, stBefore, st)
		}
		if n := h.rec.count(); n != nev {
			return fmt.Errorf("invalid %v emitted %d events", o, n-nev)
		}
	}
	if h.steps%fullCheckEvery == 0 {
		return h.check()
	}
	return h.checkNode(node)
}

// fullCheckEvery is how often step checks every node rather than only
// the one the operation touched (operations touch a single node).
const fullCheckEvery = 8

// checkNode compares one node's snapshot with the model and verifies the
// engine's invariants for it.
func (h *harness) checkNode(node uint64) error {
	h.tb.mu.RLock()
	f := h.tb.files[node]
	h.tb.mu.RUnlock()
	if f != nil {
		f.mu.Lock()
		err := fileInvariants(node, f)
		f.mu.Unlock()
		if err != nil {
			return fmt.Errorf("engine invariant: node %d: %w", node, err)
		}
	}
	fs := snapshotOf(h.tb, node)
	if err := h.checkFile(node, fs); err != nil {
		return fmt.Errorf("node %d: %w\nlocks: %s", node, err, fmtLocks(fs.Locks))
	}
	return nil
}

// checkGetlk verifies a Getlk answer: for F_RDLCK/F_WRLCK, F_UNLCK iff the
// model has no conflict, else a lock that really conflicts and is the
// first conflicting record in kernel order (R13, R15, R16, R25); for
// F_UNLCK, the owner's first overlapping record (R23).
func (h *harness) checkGetlk(r Request, got Lock, err error) error {
	if !validRequest(r, true) {
		if err != ErrInvalid || got != (Lock{}) {
			return fmt.Errorf("invalid request: got %s, %v; want ErrInvalid", fmtLock(got), err)
		}
		return nil
	}
	if r.Type == Unlock && err == ErrInvalid && slices.Contains(classicOwners, r.Owner) {
		// A classic owner's F_UNLCK query is forged (the kernel sends it
		// only for OFD owners, R23): the engine may refuse it once it
		// has seen the owner lock through another description (R24).
		// The caller checks that nothing changed.
		return nil
	}
	if err != nil {
		return fmt.Errorf("err %v", err)
	}
	lo, hi, ok := cellSpan(r.Start, r.End)
	if !ok {
		panic("model: unaligned Getlk range")
	}
	fs := snapshotOf(h.tb, r.Node) // after the call: the class may have changed
	var want Lock
	want.Type = Unlock
	for _, l := range fs.Locks {
		if l.Class == ClassFlock || !overlaps(l.Start, l.End, r.Start, r.End) {
			continue
		}
		if r.Type == Unlock {
			if l.Owner == r.Owner {
				want = l
				break
			}
			continue
		}
		if l.Owner != r.Owner && conflicts(l.Type, r.Type) {
			want = l
			if want.Class == ClassOFD {
				want.Pid = 0
			}
			break
		}
	}
	if got != want {
		return fmt.Errorf("Getlk answered %s, want %s (first in kernel order)", fmtLock(got), fmtLock(want))
	}
	// Independently of the engine's records: does the model agree?
	mf := h.m.files[r.Node]
	if r.Type == Unlock {
		mine := false
		if mf != nil && mf.posix[r.Owner] != nil {
			for i := lo; i <= hi; i++ {
				mine = mine || mf.posix[r.Owner][i] != 0
			}
		}
		if mine != (got.Type != Unlock) {
			return fmt.Errorf("Getlk(F_UNLCK) answered %s, but the model says holds=%v", fmtLock(got), mine)
		}
		return nil
	}
	conflict := mf != nil && mf.posixConflict(r.Owner, r.Type, lo, hi)
	if conflict != (got.Type != Unlock) {
		return fmt.Errorf("Getlk answered %s, but the model says conflict=%v", fmtLock(got), conflict)
	}
	if got.Type != Unlock {
		c := mf.posix[got.Owner]
		glo, ghi, ok := cellSpan(got.Start, got.End)
		if !ok || c == nil || got.Owner == r.Owner || !conflicts(got.Type, r.Type) || !overlaps(got.Start, got.End, r.Start, r.End) {
			return fmt.Errorf("Getlk answered %s, which does not conflict with the request", fmtLock(got))
		}
		for i := glo; i <= ghi; i++ {
			if c[i] != uint8(got.Type)+1 {
				return fmt.Errorf("Getlk answered %s, but the model has owner %d cell %d = %d", fmtLock(got), got.Owner, i, c[i])
			}
		}
	}
	return nil
}

// check compares every node's snapshot with the model and verifies the
// engine's invariants.
func (h *harness) check() error {
	if err := internalInvariants(h.tb); err != nil {
		return fmt.Errorf("engine invariant: %w", err)
	}
	st := h.tb.Stats()
	if st.Waiters != 0 || st.GraphOwners != 0 {
		return fmt.Errorf("Stats %+v: no request should still be waiting", st)
	}
	nodes := append(slices.Clone(modelNodes), unknownNode)
	records, npoll := 0, 0
	for _, node := range nodes {
		fs := snapshotOf(h.tb, node)
		records += len(fs.Locks)
		npoll += len(fs.Waiters)
		if err := h.checkFile(node, fs); err != nil {
			return fmt.Errorf("node %d: %w\nlocks: %s", node, err, fmtLocks(fs.Locks))
		}
	}
	if st.Records != records || st.Pollers != npoll {
		return fmt.Errorf("Stats %+v, snapshots have %d records and %d pollers", st, records, npoll)
	}
	return nil
}

func (h *harness) checkFile(node uint64, fs FileState) error {
	mf := h.m.files[node]
	if mf == nil {
		mf = &modelFile{}
	}
	got := map[uint64]*cells{}
	var order, forder []uint64
	gotFlock := map[uint64]flockHeld{}
	var prev *Lock
	for i := range fs.Locks {
		l := fs.Locks[i]
		if l.Start > l.End || l.End > OffsetMax {
			return fmt.Errorf("bad range %s", fmtLock(l))
		}
		if l.Class == ClassFlock {
			if l.Start != 0 || l.End != OffsetMax {
				return fmt.Errorf("flock record %s is not whole-file", fmtLock(l))
			}
			if _, dup := gotFlock[l.Owner]; dup {
				return fmt.Errorf("two flock records for owner %d", l.Owner)
			}
			gotFlock[l.Owner] = flockHeld{typ: l.Type, fh: l.Fh}
			forder = append(forder, l.Owner)
			continue
		}
		if prev != nil && prev.Class == ClassFlock {
			return fmt.Errorf("POSIX record after flock records")
		}
		if prev == nil || prev.Owner != l.Owner {
			if slices.Contains(order, l.Owner) {
				return fmt.Errorf("owner %d's records are not contiguous", l.Owner)
			}
			order = append(order, l.Owner)
		} else {
			// Same owner: sorted, disjoint, same type never adjacent.
			if prev.End >= l.Start {
				return fmt.Errorf("records %s and %s overlap or are unsorted", fmtLock(*prev), fmtLock(l))
			}
			if prev.Type == l.Type && prev.End+1 == l.Start {
				return fmt.Errorf("same-type records %s and %s are adjacent", fmtLock(*prev), fmtLock(l))
			}
		}
		lo, hi, ok := cellSpan(l.Start, l.End)
		if !ok {
			return fmt.Errorf("record %s does not fall on cell boundaries", fmtLock(l))
		}
		c := got[l.Owner]
		if c == nil {
			c = &cells{}
			got[l.Owner] = c
		}
		for i := lo; i <= hi; i++ {
			c[i] = uint8(l.Type) + 1
		}
		prev = &fs.Locks[i]
	}
	for o, c := range got {
		if want := mf.posix[o]; want == nil || *want != *c {
			return fmt.Errorf("owner %d holds %v, model %v", o, *c, want)
		}
	}
	for o := range mf.posix {
		if got[o] == nil {
			return fmt.Errorf("owner %d holds nothing, model %v", o, *mf.posix[o])
		}
	}
	if !slices.Equal(order, mf.posixOrder) {
		return fmt.Errorf("POSIX holder order %v, model %v (R15)", order, mf.posixOrder)
	}
	if !maps.Equal(gotFlock, mf.flock) {
		return fmt.Errorf("flock %v, model %v", gotFlock, mf.flock)
	}
	if !slices.Equal(forder, mf.flockOrder) {
		return fmt.Errorf("flock order %v, model %v", forder, mf.flockOrder)
	}
	// No two owners hold conflicting bytes.
	owners := slices.Sorted(maps.Keys(got))
	for i, a := range owners {
		for _, b := range owners[i+1:] {
			for k := range nCells {
				if got[a][k] != 0 && got[b][k] != 0 && conflicts(LockType(got[a][k]-1), LockType(got[b][k]-1)) {
					return fmt.Errorf("owners %d and %d hold cell %d in conflicting modes", a, b, k)
				}
			}
		}
	}
	var flockWriters, flockHolders int
	for _, hd := range gotFlock {
		flockHolders++
		if hd.typ == WriteLock {
			flockWriters++
		}
	}
	if flockWriters > 0 && flockHolders > 1 {
		return fmt.Errorf("flock: an exclusive lock is shared: %v", gotFlock)
	}
	// Pollers: owners refused and neither granted nor gone since.
	gotPoll := map[pollKey]poll{}
	for _, w := range fs.Waiters {
		if w.Blocked {
			return fmt.Errorf("blocked waiter %+v left behind", w)
		}
		sp := SpacePOSIX
		if w.Class == ClassFlock {
			sp = SpaceFlock
		}
		gotPoll[pollKey{sp, w.Owner}] = poll{fh: w.Fh, attempts: w.Attempts}
	}
	if !maps.Equal(gotPoll, mf.pollers) {
		return fmt.Errorf("pollers %v, model %v", gotPoll, mf.pollers)
	}
	return nil
}

// finish closes everything, as exiting processes would, and requires an
// empty engine.
func (h *harness) finish() error {
	nodes := append(slices.Clone(modelNodes), unknownNode)
	owners := slices.Concat(classicOwners, ofdOwners, []uint64{strangerOwner})
	fhs := slices.Concat(classicFhs, ofdOwners, []uint64{strangerFh})
	for _, n := range nodes {
		for _, o := range owners {
			if err := h.step(op{kind: opFlush, req: Request{Node: n, Owner: o}}); err != nil {
				return err
			}
		}
		for _, fh := range fhs {
			if err := h.step(op{kind: opRelease, rel: ReleaseRequest{Node: n, Fh: fh, Owner: fh, FlockUnlock: true}}); err != nil {
				return err
			}
		}
	}
	if st := h.tb.Stats(); st != (Stats{}) {
		return fmt.Errorf("Stats() = %+v after everything was closed, want zero", st)
	}
	if s := h.tb.Snapshot(); len(s.Files) != 0 {
		return fmt.Errorf("Snapshot() has %d files after everything was closed", len(s.Files))
	}
	return nil
}

// ---------------------------------------------------------------------
// Operation generators for rapid.

func genRange() *rapid.Generator[[2]uint64] {
	return rapid.Custom(func(t *rapid.T) [2]uint64 {
		start := rapid.Uint64Range(0, tailCell).Draw(t, "start")
		if start == tailCell || rapid.IntRange(0, 3).Draw(t, "toEOF") == 0 {
			return [2]uint64{start, OffsetMax}
		}
		return [2]uint64{start, rapid.Uint64Range(start, tailCell-1).Draw(t, "end")}
	})
}

// genLocker picks an owner and a description it may lock through.
func genLocker(t *rapid.T) (owner, fh uint64) {
	if rapid.Bool().Draw(t, "ofd") {
		o := rapid.SampledFrom(ofdOwners).Draw(t, "owner")
		return o, o
	}
	return rapid.SampledFrom(classicOwners).Draw(t, "owner"), rapid.SampledFrom(classicFhs).Draw(t, "fh")
}

func genOp() *rapid.Generator[op] {
	return rapid.Custom(func(t *rapid.T) op {
		node := rapid.SampledFrom(modelNodes).Draw(t, "node")
		switch k := rapid.IntRange(0, 9).Draw(t, "kind"); {
		case k <= 3: // POSIX Setlk / Setlkw
			owner, fh := genLocker(t)
			rg := genRange().Draw(t, "range")
			typ := LockType(rapid.IntRange(0, 2).Draw(t, "type"))
			kind := opSetlk
			if k == 3 {
				kind = opSetlkw
			}
			pid := pidOf(owner) + uint32(rapid.IntRange(0, 1).Draw(t, "thread"))
			if typ == Unlock {
				pid = 0
			}
			return op{kind: kind, req: Request{Node: node, Fh: fh, Owner: owner, Type: typ,
				Start: rg[0], End: rg[1], Pid: pid}}
		case k == 4: // flock, by a description: its owner is the description
			_, fh := genLocker(t)
			owner := fh
			kind := opSetlk
			if rapid.Bool().Draw(t, "blocking") {
				kind = opSetlkw
			}
			typ := LockType(rapid.IntRange(0, 2).Draw(t, "type"))
			return op{kind: kind, req: Request{Node: node, Fh: fh, Owner: owner, Space: SpaceFlock,
				Type: typ, Start: 0, End: OffsetMax, Pid: pidOf(owner)}}
		case k <= 6: // Getlk
			node = rapid.SampledFrom(append(slices.Clone(modelNodes), unknownNode)).Draw(t, "anyNode")
			owner, fh := genLocker(t)
			rg := genRange().Draw(t, "range")
			typ := LockType(rapid.IntRange(0, 2).Draw(t, "type"))
			return op{kind: opGetlk, req: Request{Node: node, Fh: fh, Owner: owner, Type: typ,
				Start: rg[0], End: rg[1]}}
		case k == 7: // Flush
			node = rapid.SampledFrom(append(slices.Clone(modelNodes), unknownNode)).Draw(t, "anyNode")
			owner := rapid.SampledFrom(slices.Concat(classicOwners, ofdOwners, []uint64{strangerOwner})).Draw(t, "owner")
			return op{kind: opFlush, req: Request{Node: node, Owner: owner}}
		case k == 8: // Release of an OFD description or a never-opened one
			node = rapid.SampledFrom(append(slices.Clone(modelNodes), unknownNode)).Draw(t, "anyNode")
			fh := rapid.SampledFrom(append(slices.Clone(ofdOwners), strangerFh)).Draw(t, "fh")
			owner := fh
			if rapid.IntRange(0, 3).Draw(t, "otherOwner") == 0 {
				owner = rapid.SampledFrom([]uint64{0, strangerOwner, ofdOwners[0]}).Draw(t, "owner")
			}
			return op{kind: opRelease, rel: ReleaseRequest{Node: node, Fh: fh, Owner: owner,
				FlockUnlock: rapid.Bool().Draw(t, "flockUnlock")}}
		default: // an invalid request
			owner, fh := genLocker(t)
			r := Request{Node: node, Fh: fh, Owner: owner, Type: WriteLock, Start: 0, End: 9, Pid: pidOf(owner)}
			switch rapid.IntRange(0, 3).Draw(t, "how") {
			case 0:
				r.Type = LockType(rapid.Uint32Range(3, 1<<32-1).Draw(t, "type"))
			case 1:
				r.Start = rapid.Uint64Range(1, OffsetMax).Draw(t, "start")
				r.End = r.Start - 1
			case 2:
				r.End = rapid.Uint64Range(OffsetMax+1, 1<<64-1).Draw(t, "end")
			case 3:
				r.Space = Space(rapid.Uint8Range(2, 255).Draw(t, "space"))
			}
			kind := rapid.SampledFrom([]opKind{opSetlk, opSetlkw, opGetlk}).Draw(t, "op")
			return op{kind: kind, req: r}
		}
	})
}

// TestModel runs random operation sequences against the engine and the
// reference model and compares them after every step.
func TestModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := newHarness()
		// An explicit count: SliceOfN would average about six operations.
		n := rapid.IntRange(1, 300).Draw(t, "n")
		for i := range n {
			o := genOp().Draw(t, fmt.Sprintf("op%d", i))
			if err := h.step(o); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		if err := h.finish(); err != nil {
			t.Fatalf("finish: %v", err)
		}
	})
}

// The model must itself be able to fail: a wrong expectation is caught.
func TestModelDetectsDivergence(t *testing.T) {
	h := newHarness()
	if err := h.step(op{kind: opSetlk, req: Request{Node: 1, Fh: 1, Owner: 1, Type: WriteLock, Start: 0, End: 9}}); err != nil {
		t.Fatal(err)
	}
	// Change the engine behind the model's back.
	if err := h.tb.Setlk(Request{Node: 1, Fh: 2, Owner: 2, Type: ReadLock, Start: 20, End: 29}); err != nil {
		t.Fatal(err)
	}
	if err := h.check(); err == nil {
		t.Fatal("check() accepted a state the model does not have")
	}
}
