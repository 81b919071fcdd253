package semaphores

import "time"

// oneLock is the only lock of a file in the compact form: what a record
// and its solo holder (claims nil, one description) would say.
type oneLock struct {
	owner uint64
	fh    uint64 // the description it was taken through
	start uint64
	end   uint64
	since time.Time
	pid   uint32
	uid   uint32
	typ   LockType
	space Space
	ofd   bool // the owner is known to be fh's OFD owner (R24)
	held  bool
}

func (o *oneLock) class() Class {
	switch {
	case o.space == SpaceFlock:
		return ClassFlock
	case o.ofd:
		return ClassOFD
	}
	return ClassPOSIX
}

func (o *oneLock) lock() Lock {
	return Lock{
		Owner: o.owner, Fh: o.fh, Class: o.class(), Type: o.typ,
		Start: o.start, End: o.end, Pid: o.pid, Uid: o.uid, Since: o.since,
	}
}

// key is what identifies the lock's requester in its space (space.key).
func (o *oneLock) key() uint64 {
	if o.space == SpaceFlock {
		return o.fh
	}
	return o.owner
}

// full returns the file's full state, promoting a compact file first.
// Caller holds f.mu.
func (f *file) full() *fileState {
	if f.st == nil {
		f.promote()
	}
	return f.st
}

// promote turns the compact form into the full form: one's lock becomes
// a record of a solo holder, the first in kernel order (R15).
func (f *file) promote() {
	st := &fileState{}
	st.posix.init(SpacePOSIX)
	st.flock.init(SpaceFlock)
	f.st = st
	o := &f.one
	if !o.held {
		return
	}
	sp := st.space(o.space)
	h := sp.addHolder(o.key(), o.owner, o.ofd)
	if o.space == SpacePOSIX {
		h.fh = o.fh
	}
	req := Request{Type: o.typ, Pid: o.pid, Uid: o.uid, Fh: o.fh}
	h.recs = append(h.recs, sp.newRecord(h, &req, o.start, o.end, o.since))
	*o = oneLock{}
}

// compact returns a file whose full state holds nothing to the compact
// form, at the end of a call. Caller holds f.mu.
func (f *file) compact() {
	if f.st != nil && f.st.empty() {
		f.st = nil
	}
}

// spaces returns the full form's two spaces, or none.
func (f *file) spaces() []*space {
	if f.st == nil {
		return nil
	}
	return []*space{&f.st.posix, &f.st.flock}
}

// attemptCompact answers req on a compact file when it can, exactly as
// attempt would on the same state, and reports whether it did; else the
// caller promotes the file. It answers:
//   - a lock on a file without one (granted: nothing can conflict);
//   - an unlock by the holder covering its whole lock, or missing it;
//   - a lock the holder already holds, through its own description;
//   - any unlock on a file without a lock (a no-op).
//
// A compact file has no pollers or waiters, so no wait ends here.
func (t *Table) attemptCompact(f *file, req *Request, now time.Time) bool {
	o := &f.one
	if !o.held {
		if req.Type == Unlock {
			return true
		}
		*o = oneLock{
			owner: req.Owner, fh: req.Fh, start: req.Start, end: req.End, since: now,
			pid: req.Pid, uid: req.Uid, typ: req.Type, space: req.Space, held: true,
			ofd: req.Space == SpacePOSIX && f.isOFD(req.Fh, req.Owner),
		}
		t.obs.LockEvent(Event{
			Kind: EventAcquired, Time: now, Node: f.node, Fh: req.Fh, Owner: req.Owner,
			Class: o.class(), Type: req.Type, Start: req.Start, End: req.End,
			Pid: req.Pid, Uid: req.Uid, Attempts: 1,
		})
		return true
	}
	if o.space != req.Space {
		return false
	}
	if o.space == SpaceFlock {
		if o.fh != req.Fh {
			return false
		}
		switch req.Type {
		case o.typ:
			return true // held already: no change, no event
		case Unlock:
			t.releaseCompact(f, 0, ReasonUnlock, now)
			return true
		}
		return false // a conversion
	}
	if o.owner != req.Owner {
		return false
	}
	if req.Type == Unlock {
		switch {
		case req.End < o.start || req.Start > o.end:
			return true // misses the lock: nothing changes
		case req.Start <= o.start && req.End >= o.end:
			t.releaseCompact(f, req.Fh, ReasonUnlock, now)
			return true
		}
		return false // a partial unlock splits or trims the record
	}
	// The same lock again, through the same description: no change.
	return req.Fh == o.fh && req.Type == o.typ && o.start <= req.Start && o.end >= req.End
}

// releaseCompact removes one's lock, reporting it released through fh
// (the lock's own description when 0), as emitReleased does.
func (t *Table) releaseCompact(f *file, fh uint64, reason ReleaseReason, now time.Time) {
	o := &f.one
	if fh == 0 {
		fh = o.fh
	}
	t.obs.LockEvent(Event{
		Kind: EventReleased, Time: now, Node: f.node, Fh: fh, Owner: o.owner,
		Class: o.class(), Type: o.typ, Start: o.start, End: o.end,
		Pid: o.pid, Uid: o.uid, Held: now.Sub(o.since), Reason: reason,
	})
	*o = oneLock{}
}

// flushCompact is Flush on a compact file: owner's POSIX lock goes, and
// a description that still holds the lock is noted as closing.
func (t *Table) flushCompact(f *file, fh, owner uint64, now time.Time) {
	o := &f.one
	if !o.held {
		return
	}
	if o.space == SpacePOSIX && o.owner == owner {
		t.releaseCompact(f, 0, ReasonClose, now)
		return
	}
	if fh != 0 && o.fh == fh {
		if f.closing == nil {
			f.closing = make(map[uint64]time.Time)
		}
		f.closing[fh] = now
	}
}
