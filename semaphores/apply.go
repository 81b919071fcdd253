package semaphores

import "time"

// attempt is one pass of the kernel's posix_lock_inode / flock_lock_inode
// for req: it applies req and returns nil, or returns the first applied
// record req conflicts with and changes nothing (except that a flock
// conversion has already dropped the old lock, R27). w is the waiter
// being re-examined, nil for a new request.
func (t *Table) attempt(f *file, sp *space, req *Request, now time.Time, w *waiter) *record {
	h := sp.holder(sp.key(req))
	if sp.kind == SpaceFlock {
		if h != nil && h.recs[0].typ == req.Type {
			t.granted(f, sp, req, w, now, false)
			return nil
		}
		if h != nil {
			reason := ReasonConvert
			if req.Type == Unlock {
				reason = ReasonUnlock
			}
			t.removeRecords(f, sp, h, now, reason)
		}
		if req.Type == Unlock {
			return nil
		}
		if c := sp.firstConflict(req); c != nil {
			return c
		}
		h = sp.addHolder(sp.key(req), req.Owner, false)
		h.recs = append(h.recs, sp.newRecord(h, req, 0, OffsetMax, now))
		t.granted(f, sp, req, w, now, true)
		return nil
	}

	if req.Type == Unlock {
		if h != nil {
			t.applyPosix(f, sp, h, req, now, ReasonUnlock)
			h.unclaim(req.Start, req.End)
		}
		return nil
	}
	if h != nil {
		if h.claims == nil && req.Fh != h.fh {
			h.materialize() // a second description: claims tell them apart
		}
		t.supersede(f, h, req, now)
	}
	if r := h.covering(req.Type, req.Start, req.End); r != nil {
		// Nothing changes for the owner; it may for the description
		// (a new one with a recycled owner value, see claims).
		news := h.claim(req.Fh, req.Start, req.End)
		t.granted(f, sp, req, w, now, news)
		return nil
	}
	if c := sp.firstConflict(req); c != nil {
		return c
	}
	if h == nil {
		h = sp.addHolder(req.Owner, req.Owner, f.isOFD(req.Fh, req.Owner))
		h.fh = req.Fh
	}
	t.applyPosix(f, sp, h, req, now, ReasonConvert)
	h.claim(req.Fh, req.Start, req.End)
	t.granted(f, sp, req, w, now, true)
	return nil
}

// newRecord makes a record of h for req's type, pid, uid and description,
// covering start..end since now, and counts it among sp's writers.
func (sp *space) newRecord(h *holder, req *Request, start, end uint64, now time.Time) *record {
	r := &record{
		holder: h, typ: req.Type, start: start, end: end,
		pid: req.Pid, uid: req.Uid, fh: req.Fh, since: now,
	}
	if r.typ == WriteLock {
		sp.addWriter(r)
	}
	return r
}

// dropRecord forgets r, which has left its holder's list.
func (f *file) dropRecord(sp *space, r *record) {
	if r.typ == WriteLock {
		sp.dropWriter(r)
	}
	f.wakeBlocked(r)
}

// applyPosix rewrites h's records for req, which conflicts with no other
// owner: a port of the second half of the kernel's posix_lock_inode
// (R14–R16). Same-type ranges that overlap or touch are merged into the
// first such record, which keeps its pid; a range of the other type is
// replaced by a record with the requester's pid, trimming or splitting
// what it overlaps; F_UNLCK removes the range. Records keep their order
// (sorted by start within the owner). Every removed or shrunk record
// wakes its waiters, and each given-up range is reported as released.
//
// reason is what given-up ranges are reported as: ReasonConvert for a
// lock request, ReasonUnlock or ReasonRelease for an unlock.
func (t *Table) applyPosix(f *file, sp *space, h *holder, req *Request, now time.Time, reason ReleaseReason) {
	var relFh uint64 // an unlock's released events name the description it came through
	if req.Type == Unlock {
		relFh = req.Fh
	}
	recs := h.recs
	out := f.st.scratch[:0] // rebuilt here, then copied back into h.recs
	start, end := req.Start, req.End
	added := false
	var survivor *record // the record that absorbs a lock request
	var left, right *record
	i := 0
scan:
	for ; i < len(recs); i++ {
		fl := recs[i]
		if fl.typ == req.Type {
			// Compare with start-1/end+1 without overflow (R14).
			if fl.end+1 < start {
				out = append(out, fl)
				continue
			}
			if fl.start > end+1 {
				break scan
			}
			start, end = min(start, fl.start), max(end, fl.end)
			if added {
				f.dropRecord(sp, fl) // merged into the surviving record
				continue
			}
			out = append(out, fl) // fl survives and is extended below
			survivor = fl
			added = true
			continue
		}
		if fl.end < start {
			out = append(out, fl)
			continue
		}
		if fl.start > end {
			break scan
		}
		if req.Type == Unlock {
			added = true
		}
		if fl.start < start {
			left = fl
		}
		if fl.end > end {
			right = fl
			break scan
		}
		if fl.start >= start {
			// The request covers fl entirely.
			t.emitReleased(f, fl, relFh, fl.start, fl.end, reason, now)
			f.dropRecord(sp, fl)
			if !added {
				survivor = sp.newRecord(h, req, start, end, now)
				out = append(out, survivor)
				added = true
			}
			continue
		}
		out = append(out, fl) // left remainder, trimmed below
	}
	if !added && req.Type != Unlock {
		survivor = sp.newRecord(h, req, start, end, now)
		out = append(out, survivor)
	}
	var leftCopy *record
	if right != nil && left == right {
		// The request splits one record: the left piece is a copy, the
		// right piece keeps the original (and its waiters are woken).
		c := *right
		c.blocked = waitList{}
		leftCopy = &c
		if c.typ == WriteLock {
			sp.addWriter(leftCopy) // before right, which has the same start for now
		}
		// Insert the copy before the new record, if one was just added.
		if !added && req.Type != Unlock {
			last := out[len(out)-1]
			out = append(out[:len(out)-1], leftCopy, last)
		} else {
			out = append(out, leftCopy)
		}
		left = leftCopy
	}
	out = append(out, recs[i:]...)
	if right != nil {
		if left == leftCopy && leftCopy != nil {
			t.emitReleased(f, right, relFh, start, end, reason, now)
		} else {
			t.emitReleased(f, right, relFh, right.start, end, reason, now)
		}
		right.start = end + 1
		f.wakeBlocked(right)
	}
	if left != nil {
		if left != leftCopy {
			t.emitReleased(f, left, relFh, start, left.end, reason, now)
		}
		left.end = start - 1
		f.wakeBlocked(left)
	}
	// The record that absorbed the request spans the merged range.
	if survivor != nil {
		survivor.start, survivor.end = start, end
	}
	h.recs = append(h.recs[:0], out...)
	clear(h.recs[len(out):cap(h.recs)])
	clear(out)
	f.st.scratch = out[:0]
	if len(h.recs) == 0 {
		sp.dropHolder(h)
	}
}

// removeRecords removes every record of h, reporting each as released
// and waking its waiters.
func (t *Table) removeRecords(f *file, sp *space, h *holder, now time.Time, reason ReleaseReason) {
	for _, r := range h.recs {
		t.emitReleased(f, r, 0, r.start, r.end, reason, now)
		f.dropRecord(sp, r)
	}
	clear(h.recs)
	h.recs = h.recs[:0]
	sp.dropHolder(h)
}

// refuse records a refused non-blocking request: the owner becomes, or
// stays, a poller.
func (t *Table) refuse(f *file, sp *space, req *Request, blocker *record, now time.Time) {
	key := sp.key(req)
	if p := sp.pollers[key]; p != nil {
		p.attempts++
		p.req = *req
		return
	}
	if sp.pollers == nil {
		sp.pollers = make(map[uint64]*poller)
	}
	sp.pollers[key] = &poller{req: *req, since: now, attempts: 1}
	t.emitWaiting(f, sp, req, blocker, now)
}

// granted ends the owner's wait, if any, and reports the acquisition when
// the request changed the owner's holdings or ended a wait.
func (t *Table) granted(f *file, sp *space, req *Request, w *waiter, now time.Time, changed bool) {
	var since time.Time
	attempts := 1
	if w != nil {
		since, attempts = w.since, w.attempts
	}
	if p := sp.pollers[sp.key(req)]; p != nil {
		if w == nil {
			since, attempts = p.since, p.attempts+1
		}
		delete(sp.pollers, sp.key(req))
	}
	if !changed && since.IsZero() {
		return
	}
	e := Event{
		Kind: EventAcquired, Time: now, Node: f.node, Fh: req.Fh, Owner: req.Owner,
		Class: t.requestClass(f, sp, req), Type: req.Type, Start: req.Start, End: req.End,
		Pid: req.Pid, Uid: req.Uid, Attempts: attempts,
	}
	if !since.IsZero() {
		e.Waited = now.Sub(since)
	}
	t.obs.LockEvent(e)
}

func (t *Table) giveUp(f *file, sp *space, key uint64, p *poller, now time.Time) {
	delete(sp.pollers, key)
	t.obs.LockEvent(Event{
		Kind: EventGaveUp, Time: now, Node: f.node, Fh: p.req.Fh, Owner: p.req.Owner,
		Class: t.requestClass(f, sp, &p.req), Type: p.req.Type, Start: p.req.Start, End: p.req.End,
		Pid: p.req.Pid, Uid: p.req.Uid, Waited: now.Sub(p.since), Attempts: p.attempts,
	})
}

func (t *Table) requestClass(f *file, sp *space, req *Request) Class {
	if sp.kind == SpaceFlock {
		return ClassFlock
	}
	if f.isOFD(req.Fh, req.Owner) {
		return ClassOFD
	}
	return ClassPOSIX
}

// emitReleased reports bytes start..end of r released. The event names
// description fh, or r's (the one it was taken through) when fh is 0.
func (t *Table) emitReleased(f *file, r *record, fh, start, end uint64, reason ReleaseReason, now time.Time) {
	if fh == 0 {
		fh = r.fh
	}
	t.obs.LockEvent(Event{
		Kind: EventReleased, Time: now, Node: f.node, Fh: fh, Owner: r.holder.owner,
		Class: r.holder.class(), Type: r.typ, Start: start, End: end,
		Pid: r.pid, Uid: r.uid, Held: now.Sub(r.since), Reason: reason,
	})
}

func (t *Table) emitWaiting(f *file, sp *space, req *Request, blocker *record, now time.Time) {
	t.obs.LockEvent(Event{
		Kind: EventWaiting, Time: now, Node: f.node, Fh: req.Fh, Owner: req.Owner,
		Class: t.requestClass(f, sp, req), Type: req.Type, Start: req.Start, End: req.End,
		Pid: req.Pid, Uid: req.Uid, BlockerOwner: blocker.holder.owner, BlockerPid: blocker.pid,
	})
}

func (t *Table) emitDeadlock(f *file, req *Request, blocker *record, now time.Time) {
	t.obs.LockEvent(Event{
		Kind: EventDeadlock, Time: now, Node: f.node, Fh: req.Fh, Owner: req.Owner,
		Class: ClassPOSIX, Type: req.Type, Start: req.Start, End: req.End,
		Pid: req.Pid, Uid: req.Uid, BlockerOwner: blocker.holder.owner, BlockerPid: blocker.pid,
	})
}
