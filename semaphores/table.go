package semaphores

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// Engine is what the filesystem needs from a lock backend. Table is the
// in-memory implementation; a distributed backend must give the same
// answers for the same sequence of calls.
type Engine interface {
	Getlk(req Request) (Lock, error)
	Setlk(req Request) error
	Setlkw(ctx context.Context, req Request) error
	Flush(node, fh, owner uint64)
	Release(rel ReleaseRequest)
	Snapshot() Snapshot
}

var _ Engine = (*Table)(nil)

// Options configure a Table. The zero value is usable.
type Options struct {
	// Observer receives every audit event. nil discards them.
	Observer Observer
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// ReleaseGrace is how long a non-blocking request that conflicts
	// only with a description that was just closed waits for that
	// description's RELEASE before it is refused; 0 means
	// DefaultReleaseGrace, negative means no wait. See Table.Setlk.
	ReleaseGrace time.Duration
}

// DefaultReleaseGrace bounds the wait of Options.ReleaseGrace. RELEASE
// normally follows the last close within a millisecond.
const DefaultReleaseGrace = 20 * time.Millisecond

// Table is the in-memory lock engine: the lock state of every file of a
// mount, with the semantics the Linux kernel gives on tmpfs
// (LOCK-SEMANTICS §3–§5).
//
// Concurrency: each file has its own mutex (file.mu); operations on
// different files run in parallel. Locking order is file.mu, then t.mu or
// t.graph.mu; never two file mutexes at once. No mutex is held while a
// Setlkw waits.
type Table struct {
	obs   Observer
	sync  func() // the Observer's Sync, or a no-op
	now   func() time.Time
	grace time.Duration

	// mu guards files. A file is removed from the map (and marked dead)
	// when it holds no state, under its own mutex and then mu.
	mu    sync.RWMutex
	files map[uint64]*file

	graph deadlockGraph

	// fullOnly keeps every file in the full form (tests compare the
	// two forms with it).
	fullOnly bool
}

// NewTable returns an empty lock table.
func NewTable(opts Options) *Table {
	t := &Table{
		obs:   opts.Observer,
		now:   opts.Now,
		files: make(map[uint64]*file),
	}
	if t.obs == nil {
		t.obs = nopObserver{}
	}
	t.sync = func() {}
	if s, ok := t.obs.(Syncer); ok {
		t.sync = s.Sync
	}
	if t.now == nil {
		t.now = time.Now
	}
	switch {
	case opts.ReleaseGrace == 0:
		t.grace = DefaultReleaseGrace
	case opts.ReleaseGrace > 0:
		t.grace = opts.ReleaseGrace
	}
	t.graph.init()
	return t
}

// file is the lock state of one node.
//
// It has two forms. In the compact form (st == nil) the file holds at
// most one lock, in one, and nothing else: no second lock, no waiter, no
// poller. That is a lock directory's usual state, and it costs about a
// quarter of the memory of the full form (158 against 582 bytes per
// held lock, BenchmarkHeldLockMemory). Any request the compact form cannot answer exactly
// as the full form would first promotes the file (compact.go); a file
// whose full state empties goes back to the compact form when the call
// ends (held.release). The two forms give the same answers and events.
type file struct {
	// mu guards every field below and everything reachable from st
	// (holders, records, waiters, pollers).
	mu   sync.Mutex
	node uint64
	dead bool // removed from Table.files; re-look it up
	// decided is set when a waiter's wait was decided (its goroutine
	// made runnable) under the current hold of mu; held collects it.
	decided bool
	// one is the compact form's lock, when one.held.
	one oneLock
	// st is the full form's state; nil in the compact form.
	st *fileState
	// handles records, per open file description (fh), the owner known
	// to be that description's own (flock and OFD owner), learnt from a
	// flock request or an F_OFD_GETLK(F_UNLCK) through it (R24). It is
	// dropped at RELEASE, when fh numbers and owners are recycled (G2).
	handles map[uint64]uint64
	// closing holds, per description (fh) that still has locks here,
	// the time of its latest FLUSH: one of its fds was closed, and if it
	// was the last one its RELEASE is on its way. A lock call through
	// the description removes it.
	closing map[uint64]time.Time
}

// fileState is the full form of a file's lock state: both lock spaces
// with their holders, records, waiters and pollers. Guarded by the
// file's mutex.
type fileState struct {
	posix space
	flock space
	// woken holds waiters whose blocker changed, to be re-examined by
	// wake before the mutex is released; always empty outside the lock.
	woken []*waiter
	seq   uint64 // last waiter arrival number
	// scratch is applyPosix's working slice, kept to spare an
	// allocation per call.
	scratch []*record
}

func (st *fileState) space(s Space) *space {
	if s == SpaceFlock {
		return &st.flock
	}
	return &st.posix
}

// empty reports whether the full form holds nothing: it may go back to
// the compact form.
func (st *fileState) empty() bool {
	return st.posix.empty() && st.flock.empty() && len(st.woken) == 0
}

func (f *file) empty() bool {
	if f.st != nil && !f.st.empty() || f.one.held {
		return false
	}
	return len(f.handles) == 0 && len(f.closing) == 0
}

// releaseDue reports until when a RELEASE of a description of r may be
// expected: the latest FLUSH of one of them, plus the grace.
func (t *Table) releaseDue(f *file, r *record, now time.Time) (time.Time, bool) {
	if len(f.closing) == 0 || t.grace == 0 {
		return time.Time{}, false
	}
	var due time.Time
	for fh, at := range f.closing {
		if r.holder.describes(fh, r) && at.Add(t.grace).After(due) {
			due = at.Add(t.grace)
		}
	}
	return due, due.After(now)
}

// touched notes a lock call through fh: the description is alive.
func (f *file) touched(fh uint64) {
	if f.closing != nil {
		delete(f.closing, fh)
	}
}

// isOFD reports whether owner is known to be the OFD owner of fh.
func (f *file) isOFD(fh, owner uint64) bool {
	d, ok := f.handles[fh]
	return ok && d == owner
}

// noteDescriptionOwner records that owner is the open file description
// behind fh, and reclassifies its POSIX-space locks as OFD locks.
func (f *file) noteDescriptionOwner(fh, owner uint64) {
	if owner == 0 {
		return
	}
	if f.handles == nil {
		f.handles = make(map[uint64]uint64)
	}
	f.handles[fh] = owner
	switch {
	case f.st != nil:
		if h := f.st.posix.holder(owner); h != nil {
			h.ofd = true
		}
	case f.one.held && f.one.space == SpacePOSIX && f.one.owner == owner:
		f.one.ofd = true
	}
}

// lockFile returns the file for node with its mutex held, creating it
// when create is set (else it may return nil).
func (t *Table) lockFile(node uint64, create bool) *file {
	for {
		t.mu.RLock()
		f := t.files[node]
		t.mu.RUnlock()
		if f == nil {
			if !create {
				return nil
			}
			t.mu.Lock()
			f = t.files[node]
			if f == nil {
				f = &file{node: node}
				if t.fullOnly {
					f.promote()
				}
				t.files[node] = f
			}
			t.mu.Unlock()
		}
		f.mu.Lock()
		if !f.dead {
			return f
		}
		f.mu.Unlock()
	}
}

// unlockFile releases f's mutex. An entry left empty by a lock call is
// kept: the caller still has the file open and usually locks again, and
// its close (Flush, Release) drops the entry. This spares a lock/unlock
// loop an allocation and the table's write lock per call.
func (t *Table) unlockFile(f *file) {
	f.mu.Unlock()
}

// deleteIfEmpty drops f from the table if it holds no state, so that a
// million open/lock/unlock/close cycles leave no trace. Caller holds
// f.mu.
func (t *Table) deleteIfEmpty(f *file) {
	if !f.empty() {
		return
	}
	f.dead = true
	t.mu.Lock()
	if t.files[f.node] == f {
		delete(t.files, f.node)
	}
	t.mu.Unlock()
}

// Getlk answers F_GETLK / F_OFD_GETLK (R16, R23): the first lock in
// kernel order that conflicts with req, or a Lock of type Unlock when
// there is none. A request of type Unlock (only F_OFD_GETLK sends one)
// asks for the first lock of req.Owner itself that overlaps the range.
// The pid of an OFD-class holder is reported as 0 (R25). Getlk changes
// no lock state.
func (t *Table) Getlk(req Request) (Lock, error) {
	if err := req.validate(); err != nil {
		return Lock{}, err
	}
	if req.Space == SpaceFlock {
		// The kernel tests flock conflicts itself and never sends GETLK
		// with FUSE_LK_FLOCK.
		return Lock{}, ErrInvalid
	}
	var h held
	defer h.release()
	f := h.lock(t, req.Node, req.Type == Unlock)
	if f == nil {
		return Lock{Type: Unlock}, nil
	}
	if f.st == nil && !f.one.held {
		// No lock at all: nothing conflicts, nothing of the owner's.
		if req.Type == Unlock {
			f.noteDescriptionOwner(req.Fh, req.Owner)
		}
		return Lock{Type: Unlock}, nil
	}
	f.full()
	if req.Type == Unlock {
		// Only an OFD owner can send this (R23): it is evidence (R24).
		// An owner that locked through another description is a
		// classic POSIX owner (R24), and the kernel refuses F_GETLK
		// with F_UNLCK itself: such a request is forged, and gets the
		// kernel's EINVAL without teaching the engine anything.
		if o := f.st.posix.holder(req.Owner); o != nil && f.lockedThroughOther(o, req.Fh) {
			return Lock{}, ErrInvalid
		}
		f.noteDescriptionOwner(req.Fh, req.Owner)
		if r := f.st.posix.firstOwnOverlap(&req); r != nil {
			return r.lock(), nil
		}
		return Lock{Type: Unlock}, nil
	}
	if r := f.st.posix.firstConflict(&req); r != nil {
		l := r.lock()
		if l.Class == ClassOFD {
			l.Pid = 0
		}
		return l, nil
	}
	return Lock{Type: Unlock}, nil
}

// begin validates req, locks its file (the caller unlocks it) and makes
// the request's first attempt: nil, or the first lock in its way.
func (t *Table) begin(req *Request, h *held) (sp *space, now time.Time, blocker *record, err error) {
	if err := req.validate(); err != nil {
		return nil, time.Time{}, nil, err
	}
	f := h.lock(t, req.Node, true)
	now = t.now()
	f.touched(req.Fh)
	if req.Space == SpaceFlock {
		f.noteDescriptionOwner(req.Fh, req.Owner)
	}
	if f.st == nil && t.attemptCompact(f, req, now) {
		return nil, now, nil, nil
	}
	sp = f.full().space(req.Space)
	return sp, now, t.attempt(f, sp, req, now, nil), nil
}

// held is a file whose mutex an engine call holds. Every entry point
// defers held.release, so that the mutex is released on every path,
// including a panic that go-fuse recovers (which would otherwise leave
// the file locked and every later request on it hanging).
type held struct {
	f        *file
	locked   bool
	fullOnly bool // Table.fullOnly
	// decided: a waiter's wait was decided while this call held f.mu.
	decided bool
}

func (h *held) lock(t *Table, node uint64, create bool) *file {
	h.f = t.lockFile(node, create)
	h.locked = h.f != nil
	h.fullOnly = t.fullOnly
	return h.f
}

// unlock releases the mutex for a wait; relock takes it again.
func (h *held) unlock() {
	h.locked = false
	h.collect()
	h.f.mu.Unlock()
}

// collect takes over f.decided. Caller holds f.mu.
func (h *held) collect() {
	if h.f.decided {
		h.decided, h.f.decided = true, false
	}
}

func (h *held) relock() {
	h.f.mu.Lock()
	h.locked = true
}

func (h *held) release() {
	if h.locked {
		h.locked = false
		h.collect()
		if !h.fullOnly {
			h.f.compact()
		}
		h.f.mu.Unlock()
	}
}

// finish ends a call once its mutex is released: when the call decided
// another caller's wait, it first yields its thread to that waiter, so
// that the waiter's answer goes out at once; then it syncs the call's
// events.
//
// Why yield: closing the waiter's channel puts its goroutine in this
// P's runnext slot, which another idle P steals only after a 3 µs
// back-off sleep (runtime.runqgrab) that the kernel's timer slack
// stretches to ~50 µs, while this goroutine goes on to write its own
// events and answer. Measured on a 2-CPU VM, the waiter's goroutine sat
// runnable ≈60 µs per handoff (go tool trace -pprof=sched), the largest
// part of the F_SETLKW handoff latency. Yielding runs it next, here.
func (t *Table) finish(h *held) {
	if h.decided {
		runtime.Gosched()
	}
	t.sync()
}

// Setlk answers F_SETLK, F_OFD_SETLK, lockf(F_TLOCK/F_ULOCK) and
// flock(LOCK_NB). It applies req atomically (R14) or, on a conflict with
// an applied lock, changes nothing and returns ErrWouldBlock (R17).
// Unlocking a range that is not held succeeds. A flock conversion that
// fails has still dropped the old lock (R27).
//
// A refused owner is recorded as a poller: it counts as waiting (one
// EventWaiting) until it is granted, or gives up by closing the file.
//
// One deviation in timing, none in outcome: the kernel sends RELEASE
// (which ends flock and OFD locks) asynchronously after the last close,
// so a request racing with it would find the closed description's lock
// still there. When the only obstacle is the lock of a description that
// was closed within Options.ReleaseGrace, Setlk waits for that RELEASE
// up to the grace before answering EAGAIN.
func (t *Table) Setlk(req Request) error {
	var h held
	defer t.finish(&h) // after the mutex is released (deferred calls run last first)
	defer h.release()
	sp, now, blocker, err := t.begin(&req, &h)
	if err != nil {
		return err
	}
	f := h.f
	if blocker == nil {
		t.wake(f, now)
		return nil
	}
	due, pending := t.releaseDue(f, blocker, now)
	if !pending {
		t.refuse(f, sp, &req, blocker, now)
		t.wake(f, now)
		return ErrWouldBlock
	}
	// The lock in the way belongs to a description that was just
	// closed. On tmpfs its locks went with the close; here they go when
	// its RELEASE, sent asynchronously by the kernel, is handled. Wait
	// for it a little rather than refuse a lock the kernel would grant.
	w := t.enqueueGrace(f, sp, &req, blocker, now, due)
	t.wake(f, now)
	if w.decided {
		return w.err
	}
	h.unlock()
	t.sync()
	h.decided = false // parking yields to any waiter this call decided
	timer := time.NewTimer(due.Sub(now))
	defer timer.Stop()
	select {
	case <-w.ready:
		return w.err
	case <-timer.C:
	}
	h.relock()
	if w.decided {
		return w.err
	}
	t.expireGrace(f, sp, w, t.now())
	return ErrWouldBlock
}

// Setlkw answers F_SETLKW, F_OFD_SETLKW, lockf(F_LOCK) and blocking
// flock. When req conflicts with an applied lock it waits until it is
// granted (R18), until ctx is cancelled (EINTR: the FUSE INTERRUPT of a
// signal, or unmount), or until waiting would deadlock (EDEADLK, R20,
// POSIX owners only). Whether the wait ends in a grant or in EINTR is
// decided atomically under the file's mutex (R19): a cancelled wait never
// leaves a lock behind, and a granted one is always reported as granted.
func (t *Table) Setlkw(ctx context.Context, req Request) error {
	var h held
	defer t.finish(&h) // after the mutex is released (deferred calls run last first)
	defer h.release()
	sp, now, blocker, err := t.begin(&req, &h)
	if err != nil {
		return err
	}
	f := h.f
	var w *waiter
	if blocker != nil {
		if w = t.enqueue(f, sp, &req, blocker, now); w == nil {
			t.emitDeadlock(f, &req, blocker, now)
		}
	}
	t.wake(f, now)
	switch {
	case blocker == nil:
		return nil
	case w == nil:
		return ErrDeadlock
	case w.decided:
		return w.err
	}
	h.unlock() // f stays in the table: w is queued
	// The waiting event (and any other of this call) is on disk before
	// the caller parks: a hung waiter must show in the log.
	t.sync()
	h.decided = false // parking yields to any waiter this call decided

	select {
	case <-w.ready:
		return w.err
	case <-ctx.Done():
	}
	h.relock()
	if w.decided {
		return w.err
	}
	t.interrupt(f, sp, w, t.now())
	return ErrInterrupted
}

// Flush handles a FUSE FLUSH: a close() of an fd of description fh by
// the process whose POSIX owner is owner (R11). It removes every POSIX lock of owner on node, whichever
// fh took it, and wakes the waiters. It does not touch flock or OFD locks
// or other nodes. It needs no context: it completes even when the
// request was interrupted (R9). A polling owner that closes gives up.
func (t *Table) Flush(node, fh, owner uint64) {
	var hd held
	defer t.finish(&hd)
	defer hd.release()
	f := hd.lock(t, node, false)
	if f == nil {
		return
	}
	now := t.now()
	if f.st == nil {
		t.flushCompact(f, fh, owner, now)
		t.deleteIfEmpty(f)
		return
	}
	sp := &f.st.posix
	if h := sp.holder(owner); h != nil {
		t.removeRecords(f, sp, h, now, ReasonClose)
	}
	if fh != 0 && f.hasLocksOf(fh) {
		if f.closing == nil {
			f.closing = make(map[uint64]time.Time)
		}
		f.closing[fh] = now
	}
	if p := sp.pollers[owner]; p != nil {
		t.giveUp(f, sp, owner, p, now)
	}
	t.wake(f, now)
	t.deleteIfEmpty(f)
}

// Release handles a FUSE RELEASE (R12): the open file description rel.Fh
// is gone. Its flock lock goes, and so does every POSIX-space lock taken
// through it (this is what ends OFD locks, R5); so do its pollers and
// what the engine learnt about it. Then the waiters are woken.
//
// Locks are matched by handle, not by owner value: RELEASE arrives
// asynchronously, and by then the kernel may have given the owner value
// (the address of the closed description) to a new description, whose
// locks must stay. In the POSIX space the bytes the description locked
// (holder.claims) are unlocked, except those another, still open,
// description of the same owner locked too. (A classic POSIX owner's
// locks are gone before any RELEASE of a handle it used: its close sent
// FLUSH first.) FlockUnlock and Owner are therefore not needed to find
// the flock lock.
func (t *Table) Release(rel ReleaseRequest) {
	var hd held
	defer t.finish(&hd)
	defer hd.release()
	f := hd.lock(t, rel.Node, false)
	if f == nil {
		return
	}
	now := t.now()
	fh := rel.Fh
	if f.st == nil {
		if !f.one.held || f.one.fh != fh {
			// Nothing of fh's is held: only what the engine learnt
			// about the description goes.
			delete(f.handles, fh)
			delete(f.closing, fh)
			t.deleteIfEmpty(f)
			return
		}
		f.full()
	}
	if h := f.st.flock.holder(fh); h != nil {
		t.removeRecords(f, &f.st.flock, h, now, ReasonRelease)
	}
	for h := f.st.posix.head; h != nil; {
		next := h.next
		t.releasePosix(f, h, fh, now)
		h = next
	}
	for _, sp := range []*space{&f.st.posix, &f.st.flock} {
		for key, p := range sp.pollers {
			if p.req.Fh == fh {
				t.giveUp(f, sp, key, p, now)
			}
		}
	}
	delete(f.handles, fh)
	delete(f.closing, fh)
	t.wake(f, now)
	t.deleteIfEmpty(f)
}

// releasePosix ends description fh's locks held by h: the bytes no other
// description of the owner locked are unlocked, and the rest, still
// held for another description, are reported released for fh only.
func (t *Table) releasePosix(f *file, h *holder, fh uint64, now time.Time) {
	alone, shared := h.release(fh)
	for _, x := range shared {
		for _, r := range h.recs {
			if r.end >= x.start && r.start <= x.end {
				t.emitReleased(f, r, fh, max(r.start, x.start), min(r.end, x.end), ReasonRelease, now)
			}
		}
	}
	for _, x := range alone {
		if len(h.recs) == 0 {
			break // the holder is gone
		}
		unlock := Request{Node: f.node, Fh: fh, Owner: h.owner, Type: Unlock, Start: x.start, End: x.end}
		t.applyPosix(f, &f.st.posix, h, &unlock, now, ReasonRelease)
	}
}

// hasLocksOf reports whether description fh holds any lock on f.
func (f *file) hasLocksOf(fh uint64) bool {
	if f.st.flock.holder(fh) != nil {
		return true
	}
	for h := f.st.posix.head; h != nil; h = h.next {
		if h.locksThrough(fh) {
			return true
		}
	}
	return false
}
