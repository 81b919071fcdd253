package semaphores

import (
	"slices"
	"sync"
	"time"
)

// waiter is a blocked F_SETLKW / F_OFD_SETLKW / flock request.
// Fields other than ready are guarded by the file's mutex; hashed and
// blockerOwner are also guarded by deadlockGraph.mu.
type waiter struct {
	req      Request
	sp       *space
	seq      uint64 // arrival order within the file (R18)
	since    time.Time
	attempts int
	// blocker is the applied record the request was last found to
	// conflict with (the first conflict in kernel order), nil while the
	// waiter is being re-examined.
	blocker *record
	q, b    waitLink // links in space.queue and in blocker.blocked

	ready   chan struct{} // closed once decided
	decided bool
	err     error

	hashed       bool
	blockerOwner uint64

	// grace marks a non-blocking request waiting, until due, for the
	// RELEASE of a just-closed description (Table.Setlk).
	grace bool
	due   time.Time
}

type waitLink struct{ prev, next *waiter }

// waitList is an intrusive FIFO of waiters. A list with queue set links
// waiters through waiter.q, otherwise through waiter.b.
type waitList struct {
	head, tail *waiter
	queue      bool
}

func (l *waitList) link(w *waiter) *waitLink {
	if l.queue {
		return &w.q
	}
	return &w.b
}

func (l *waitList) push(w *waiter) {
	lk := l.link(w)
	lk.prev, lk.next = l.tail, nil
	if l.tail != nil {
		l.link(l.tail).next = w
	} else {
		l.head = w
	}
	l.tail = w
}

func (l *waitList) remove(w *waiter) {
	lk := l.link(w)
	if lk.prev != nil {
		l.link(lk.prev).next = lk.next
	} else {
		l.head = lk.next
	}
	if lk.next != nil {
		l.link(lk.next).prev = lk.prev
	} else {
		l.tail = lk.prev
	}
	lk.prev, lk.next = nil, nil
}

// deadlockGraph is the kernel's blocked_hash: for each POSIX owner, its
// blocked requests whose blocker is a classic POSIX lock, most recently
// queued last. It spans all files, as deadlocks do.
type deadlockGraph struct {
	mu    sync.Mutex
	waits map[uint64][]*waiter
}

func (g *deadlockGraph) init() { g.waits = make(map[uint64][]*waiter) }

// maxDeadlockHops is the kernel's MAX_DEADLK_ITERATIONS (10), checked as
// "i++ > 10": the walk compares 11 owners, so cycles of up to 12 owners
// are found and longer ones are not (R20, E7).
const maxDeadlockHops = 10

// deadlockLocked is posix_locks_deadlock: starting from the owner of the
// lock the requester would wait for, repeatedly take that owner's most
// recently queued wait and move to the owner of the lock it waits for.
// Reaching the requester closes a cycle. Caller holds g.mu.
func (g *deadlockGraph) deadlockLocked(requester, blockerOwner uint64) bool {
	o := blockerOwner
	for i := 0; ; i++ {
		ws := g.waits[o]
		if len(ws) == 0 {
			return false
		}
		if i > maxDeadlockHops {
			return false
		}
		o = ws[len(ws)-1].blockerOwner
		if o == requester {
			return true
		}
	}
}

func (g *deadlockGraph) addLocked(w *waiter, blockerOwner uint64) {
	w.hashed = true
	w.blockerOwner = blockerOwner
	g.waits[w.req.Owner] = append(g.waits[w.req.Owner], w)
}

func (g *deadlockGraph) removeLocked(w *waiter) {
	if !w.hashed {
		return
	}
	w.hashed = false
	ws := g.waits[w.req.Owner]
	if i := slices.Index(ws, w); i >= 0 {
		ws = slices.Delete(ws, i, i+1)
	}
	if len(ws) == 0 {
		delete(g.waits, w.req.Owner)
	} else {
		g.waits[w.req.Owner] = ws
	}
}

func (g *deadlockGraph) remove(w *waiter) {
	if w.sp.kind != SpacePOSIX {
		return
	}
	g.mu.Lock()
	g.removeLocked(w)
	g.mu.Unlock()
}

// block queues w behind blocker, unless it is a POSIX request whose wait
// would close a deadlock cycle (R20), in which case it reports false and
// leaves w out of every list. Deadlock detection is skipped for OFD
// requesters, and waits on OFD locks are not followed, as in the kernel.
func (t *Table) block(f *file, w *waiter, blocker *record) bool {
	if w.sp.kind == SpacePOSIX && !w.grace {
		g := &t.graph
		g.mu.Lock()
		g.removeLocked(w)
		if !f.isOFD(w.req.Fh, w.req.Owner) && g.deadlockLocked(w.req.Owner, blocker.holder.owner) {
			g.mu.Unlock()
			return false
		}
		if !blocker.holder.ofd {
			g.addLocked(w, blocker.holder.owner)
		}
		g.mu.Unlock()
	}
	w.blocker = blocker
	blocker.blocked.push(w)
	return true
}

// wakeBlocked moves the waiters of r to the file's wake list, as the
// kernel's locks_wake_up_blocks does when r is removed or shrunk.
func (f *file) wakeBlocked(r *record) {
	for w := r.blocked.head; w != nil; {
		next := w.b.next
		w.b = waitLink{}
		w.blocker = nil
		f.st.woken = append(f.st.woken, w)
		w = next
	}
	r.blocked = waitList{}
}

// wake re-examines woken waiters in arrival order until none is left:
// each is granted if it now fits (against the locks granted just before
// it), fails with EDEADLK, or is queued again behind its new first
// conflict (R18, R20 "re-run on every retry").
func (t *Table) wake(f *file, now time.Time) {
	if f.st == nil {
		return // the compact form has no waiters
	}
	for len(f.st.woken) > 0 {
		batch := f.st.woken
		f.st.woken = nil
		slices.SortFunc(batch, func(a, b *waiter) int {
			switch {
			case a.seq < b.seq:
				return -1
			case a.seq > b.seq:
				return 1
			}
			return 0
		})
		for _, w := range batch {
			if w.decided {
				continue
			}
			blocker := t.attempt(f, w.sp, &w.req, now, w)
			if blocker == nil {
				t.decide(f, w, nil)
				continue
			}
			if w.grace {
				if due, ok := t.releaseDue(f, blocker, now); ok {
					w.due = due // wait on, for this other closing one
					t.block(f, w, blocker)
				} else {
					t.refuse(f, w.sp, &w.req, blocker, now)
					t.decide(f, w, ErrWouldBlock)
				}
				continue
			}
			if !t.block(f, w, blocker) {
				t.emitDeadlock(f, &w.req, blocker, now)
				t.decide(f, w, ErrDeadlock)
			}
		}
	}
}

// enqueue starts a wait for req behind blocker. It reports nil, and
// queues nothing, when the wait would deadlock.
func (t *Table) enqueue(f *file, sp *space, req *Request, blocker *record, now time.Time) *waiter {
	f.st.seq++
	w := &waiter{req: *req, sp: sp, seq: f.st.seq, ready: make(chan struct{})}
	if !t.block(f, w, blocker) {
		return nil
	}
	if p := sp.pollers[sp.key(req)]; p != nil {
		// A poller (or an interrupted waiter re-sent by the kernel)
		// continues its wait: no second "waiting" event.
		w.since, w.attempts = p.since, p.attempts+1
		delete(sp.pollers, sp.key(req))
	} else {
		w.since, w.attempts = now, 1
		t.emitWaiting(f, sp, req, blocker, now)
	}
	sp.queue.push(w)
	return w
}

// enqueueGrace queues a non-blocking request behind blocker until due
// (see Table.Setlk). It is not a wait of the owner's: no event, no
// deadlock check; its wait, if any, continues the owner's poll.
func (t *Table) enqueueGrace(f *file, sp *space, req *Request, blocker *record, now, due time.Time) *waiter {
	f.st.seq++
	w := &waiter{req: *req, sp: sp, seq: f.st.seq, ready: make(chan struct{}), grace: true, due: due}
	w.since, w.attempts = now, 1
	if p := sp.pollers[sp.key(req)]; p != nil {
		w.since, w.attempts = p.since, p.attempts+1
	}
	t.block(f, w, blocker)
	sp.queue.push(w)
	return w
}

// expireGrace ends an undecided grace wait with a refusal.
func (t *Table) expireGrace(f *file, sp *space, w *waiter, now time.Time) {
	sp.queue.remove(w)
	if w.blocker != nil {
		w.blocker.blocked.remove(w)
	}
	blocker := w.blocker
	if blocker == nil {
		blocker = sp.firstConflict(&w.req)
	}
	w.decided, w.err, w.blocker = true, ErrWouldBlock, nil
	close(w.ready)
	if blocker != nil {
		t.refuse(f, sp, &w.req, blocker, now)
	}
}

// decide ends a wait with err (nil: granted). The lock, if granted, has
// already been applied.
func (t *Table) decide(f *file, w *waiter, err error) {
	w.decided = true
	w.err = err
	w.sp.queue.remove(w)
	if w.blocker != nil {
		w.blocker.blocked.remove(w)
		w.blocker = nil
	}
	t.graph.remove(w)
	f.decided = true
	close(w.ready)
}

// interrupt ends an undecided wait with EINTR (R19): the waiter leaves
// every list and nothing is recorded. The owner keeps counting as waiting
// (a poller) since the kernel usually re-sends the request at once (R9).
func (t *Table) interrupt(f *file, sp *space, w *waiter, now time.Time) {
	w.decided = true
	w.err = ErrInterrupted
	sp.queue.remove(w)
	if w.blocker != nil {
		w.blocker.blocked.remove(w)
		w.blocker = nil
	}
	t.graph.remove(w)
	t.obs.LockEvent(Event{
		Kind: EventInterrupted, Time: now, Node: f.node, Fh: w.req.Fh, Owner: w.req.Owner,
		Class: t.requestClass(f, sp, &w.req), Type: w.req.Type, Start: w.req.Start, End: w.req.End,
		Pid: w.req.Pid, Uid: w.req.Uid, Waited: now.Sub(w.since), Attempts: w.attempts,
	})
	if sp.pollers == nil {
		sp.pollers = make(map[uint64]*poller)
	}
	if p := sp.pollers[sp.key(&w.req)]; p == nil || w.since.Before(p.since) {
		sp.pollers[sp.key(&w.req)] = &poller{req: w.req, since: w.since, attempts: w.attempts}
	}
}
