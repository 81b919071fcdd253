package semaphores

import (
	"slices"
	"sort"
	"time"
)

// record is one applied lock, like the kernel's struct file_lock.
// All fields are guarded by the owning file's mutex.
type record struct {
	holder *holder
	typ    LockType
	start  uint64
	end    uint64
	pid    uint32 // lk.pid of the request that created the record (R16)
	uid    uint32
	fh     uint64 // description it was first taken through (see holder.claims)
	since  time.Time
	// blocked lists the waiters whose first conflict is this record, in
	// arrival order. They are re-examined whenever the record is removed,
	// trimmed, split or converted, as the kernel wakes fl_blocked_requests.
	blocked waitList
}

func (r *record) lock() Lock {
	return Lock{
		Owner: r.holder.owner,
		Fh:    r.fh,
		Class: r.holder.class(),
		Type:  r.typ,
		Start: r.start,
		End:   r.end,
		Pid:   r.pid,
		Uid:   r.uid,
		Since: r.since,
	}
}

// holder is one owner's records in one space of one file. The records
// are sorted by start and never overlap; records of the same type never
// touch (they are merged, R14).
//
// A holder is found by its key: the lock owner in the POSIX space, the
// open file description (its FUSE handle) in the flock space. For flock
// the two name the same thing (R4), but only the handle stays unique
// until RELEASE: the kernel may give a closed description's address, and
// so its owner value, to a new open before the old RELEASE arrives.
type holder struct {
	space *space
	key   uint64
	owner uint64
	seq   uint64 // position in kernel order: holders are only appended
	// fh is the description the holder's first lock came through; while
	// claims is nil it alone locked every byte (POSIX space only).
	fh uint64
	// claims says which descriptions locked which bytes once a second
	// one locked through the holder (see claims.go).
	claims claims
	ofd    bool
	recs   []*record
	// prev and next keep holders in the kernel's list order: an owner is
	// appended at the tail when it gets its first record, and keeps its
	// place while it holds any (R15).
	prev, next *holder
}

func (h *holder) class() Class {
	switch {
	case h.space.kind == SpaceFlock:
		return ClassFlock
	case h.ofd:
		return ClassOFD
	}
	return ClassPOSIX
}

// poller is an owner that was refused a non-blocking request (or whose
// blocking wait was interrupted) and has not been granted since: the
// fasteners/oslo pattern of retrying F_SETLK every 10–100 ms.
type poller struct {
	req      Request
	since    time.Time
	attempts int
}

// space is one lock space of a file (R26).
type space struct {
	kind       Space
	head, tail *holder
	nholders   int
	// byKey indexes holders once there are many of them, so that a
	// lock call stays cheap with thousands of owners on one file.
	byKey   map[uint64]*holder
	writers int // number of write records: read requests skip the scan when 0
	// wix holds the POSIX space's write records sorted by start. They
	// never overlap (two owners cannot both hold a byte for writing), so
	// the ones a read request meets are one run of it, found by binary
	// search: a read lock costs O(log n) however many writers hold other
	// ranges of the file. Starts only move without crossing another
	// write record (trims, merges), so the order stays valid.
	wix       []*record
	holderSeq uint64 // order number of the last holder appended
	// queue holds every blocked waiter in arrival order.
	queue   waitList
	pollers map[uint64]*poller
}

const holderIndexThreshold = 8

func (sp *space) init(kind Space) {
	sp.kind = kind
	sp.queue.queue = true
}

func (sp *space) empty() bool {
	return sp.head == nil && sp.queue.head == nil && len(sp.pollers) == 0
}

// key is what identifies the requester in this space (see holder).
func (sp *space) key(req *Request) uint64 {
	if sp.kind == SpaceFlock {
		return req.Fh
	}
	return req.Owner
}

func (sp *space) holder(key uint64) *holder {
	if sp.byKey != nil {
		return sp.byKey[key]
	}
	for h := sp.head; h != nil; h = h.next {
		if h.key == key {
			return h
		}
	}
	return nil
}

// addHolder appends a new, empty holder at the tail of the list.
func (sp *space) addHolder(key, owner uint64, ofd bool) *holder {
	sp.holderSeq++
	h := &holder{space: sp, key: key, owner: owner, ofd: ofd, prev: sp.tail, seq: sp.holderSeq}
	if sp.tail != nil {
		sp.tail.next = h
	} else {
		sp.head = h
	}
	sp.tail = h
	sp.nholders++
	if sp.byKey != nil {
		sp.byKey[key] = h
	} else if sp.nholders > holderIndexThreshold {
		sp.byKey = make(map[uint64]*holder, sp.nholders*2)
		for x := sp.head; x != nil; x = x.next {
			sp.byKey[x.key] = x
		}
	}
	return h
}

// dropHolder unlinks a holder that has no records left.
func (sp *space) dropHolder(h *holder) {
	if h.prev != nil {
		h.prev.next = h.next
	} else {
		sp.head = h.next
	}
	if h.next != nil {
		h.next.prev = h.prev
	} else {
		sp.tail = h.prev
	}
	h.prev, h.next = nil, nil
	sp.nholders--
	if sp.byKey != nil {
		delete(sp.byKey, h.key)
		if sp.nholders == 0 {
			sp.byKey = nil
		}
	}
}

func overlaps(aStart, aEnd, bStart, bEnd uint64) bool {
	return aEnd >= bStart && bEnd >= aStart
}

// firstOverlap returns the first record of h overlapping [start, end].
func (h *holder) firstOverlap(start, end uint64) *record {
	// Records are sorted and disjoint: find the first whose end ≥ start.
	lo, hi := 0, len(h.recs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if h.recs[m].end < start {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(h.recs) && h.recs[lo].start <= end {
		return h.recs[lo]
	}
	return nil
}

// firstConflict returns the first applied record, in kernel order (R15),
// that conflicts with req (R13, R26), or nil.
func (sp *space) firstConflict(req *Request) *record {
	if req.Type == ReadLock {
		if sp.writers == 0 {
			return nil
		}
		if sp.kind == SpacePOSIX && sp.nholders > holderIndexThreshold {
			return sp.firstWriteConflict(req)
		}
	}
	self := sp.key(req)
	for h := sp.head; h != nil; h = h.next {
		if h.key == self {
			continue
		}
		if sp.kind == SpaceFlock {
			r := h.recs[0]
			if r.typ == WriteLock || req.Type == WriteLock {
				return r
			}
			continue
		}
		if req.Type == WriteLock {
			if r := h.firstOverlap(req.Start, req.End); r != nil {
				return r
			}
			continue
		}
		// A read request conflicts only with write records.
		for r := h.firstOverlap(req.Start, req.End); r != nil; {
			if r.typ == WriteLock {
				return r
			}
			i := h.index(r) + 1
			if i >= len(h.recs) || h.recs[i].start > req.End {
				break
			}
			r = h.recs[i]
		}
	}
	return nil
}

// firstWriteConflict is firstConflict for a read request, through the
// write index: among the write records of other owners overlapping the
// range, the one first in kernel order (the earliest holder, then the
// lowest start).
func (sp *space) firstWriteConflict(req *Request) *record {
	self := sp.key(req)
	i := sort.Search(len(sp.wix), func(i int) bool { return sp.wix[i].end >= req.Start })
	var best *record
	for ; i < len(sp.wix) && sp.wix[i].start <= req.End; i++ {
		r := sp.wix[i]
		if r.holder.key != self && (best == nil || r.holder.seq < best.holder.seq) {
			best = r
		}
	}
	return best
}

// addWriter and dropWriter count write records and keep the POSIX
// space's write index.
func (sp *space) addWriter(r *record) {
	sp.writers++
	if sp.kind != SpacePOSIX {
		return
	}
	i := sort.Search(len(sp.wix), func(i int) bool { return sp.wix[i].start >= r.start })
	sp.wix = slices.Insert(sp.wix, i, r)
}

func (sp *space) dropWriter(r *record) {
	sp.writers--
	if sp.kind != SpacePOSIX {
		return
	}
	i := sort.Search(len(sp.wix), func(i int) bool { return sp.wix[i].start >= r.start })
	for i < len(sp.wix) && sp.wix[i] != r && sp.wix[i].start == r.start {
		i++
	}
	if i >= len(sp.wix) || sp.wix[i] != r {
		i = slices.Index(sp.wix, r) // not expected: the order holds
	}
	sp.wix = slices.Delete(sp.wix, i, i+1)
}

// firstOwnOverlap answers F_OFD_GETLK(F_UNLCK) (R23): the first record of
// req.Owner overlapping the range.
func (sp *space) firstOwnOverlap(req *Request) *record {
	h := sp.holder(req.Owner)
	if h == nil {
		return nil
	}
	return h.firstOverlap(req.Start, req.End)
}

func (h *holder) index(r *record) int {
	lo, hi := 0, len(h.recs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if h.recs[m].start < r.start {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// covering returns h's record holding all of [start, end] with type typ,
// if any: then the request changes no lock (h may be nil).
func (h *holder) covering(typ LockType, start, end uint64) *record {
	if h == nil {
		return nil
	}
	r := h.firstOverlap(start, end)
	if r != nil && r.typ == typ && r.start <= start && r.end >= end {
		return r
	}
	return nil
}
