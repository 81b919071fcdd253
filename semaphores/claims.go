package semaphores

import (
	"slices"
	"time"
)

// span is an inclusive byte range.
type span struct{ start, end uint64 }

// spans is a set of bytes: sorted, disjoint, non-adjacent spans.
type spans []span

// add adds [start, end] and reports whether the set grew.
func (s *spans) add(start, end uint64) bool {
	grew := !s.covers(start, end)
	out := (*s)[:0:0]
	placed := false
	for _, x := range *s {
		switch {
		case x.end+1 < start: // entirely before (end+1 cannot overflow: end ≤ OffsetMax)
			out = append(out, x)
		case x.start > end+1: // entirely after
			if !placed {
				out = append(out, span{start, end})
				placed = true
			}
			out = append(out, x)
		default: // overlaps or touches: absorb
			start, end = min(start, x.start), max(end, x.end)
		}
	}
	if !placed {
		out = append(out, span{start, end})
	}
	*s = out
	return grew
}

// remove removes [start, end].
func (s *spans) remove(start, end uint64) {
	out := (*s)[:0:0]
	for _, x := range *s {
		if x.end < start || x.start > end {
			out = append(out, x)
			continue
		}
		if x.start < start {
			out = append(out, span{x.start, start - 1})
		}
		if x.end > end {
			out = append(out, span{end + 1, x.end})
		}
	}
	*s = out
}

// covers reports whether every byte of [start, end] is in the set.
func (s spans) covers(start, end uint64) bool {
	for _, x := range s {
		if x.start <= start && x.end >= end {
			return true
		}
	}
	return false
}

func (s spans) overlaps(start, end uint64) bool {
	for _, x := range s {
		if x.end >= start && x.start <= end {
			return true
		}
	}
	return false
}

// claims records, for a POSIX-space holder, the bytes each open file
// description (FUSE handle) has locked, whatever the type. The records
// say what the owner holds; claims say through which descriptions.
//
// They matter for RELEASE (R12), which must end only the locks of the
// description that is gone. A classic POSIX owner's locks are all gone
// before any RELEASE of a handle it used (its close sent FLUSH first),
// and an OFD owner has one description; but the kernel may recycle the
// owner value of a closed description (its address) for a new one before
// the old RELEASE arrives. The two descriptions then share a holder, and
// only the claims tell which bytes the new one locked itself.
//
// A holder nearly always has one description, holder.fh: then claims is
// nil ("solo": fh claims exactly the bytes of the records) and costs
// nothing. It is built from the records (materialize) when a second
// description locks through the holder, and is a short slice rather
// than a map.
type claims []claim

// claim is the bytes one description locked; never empty.
type claim struct {
	fh    uint64
	bytes spans
}

// of returns the bytes description fh claims.
func (c claims) of(fh uint64) spans {
	for i := range c {
		if c[i].fh == fh {
			return c[i].bytes
		}
	}
	return nil
}

// set makes s the bytes description fh claims (none: fh is forgotten).
func (c *claims) set(fh uint64, s spans) {
	for i := range *c {
		if (*c)[i].fh == fh {
			if len(s) == 0 {
				*c = slices.Delete(*c, i, i+1)
			} else {
				(*c)[i].bytes = s
			}
			return
		}
	}
	if len(s) > 0 {
		*c = append(*c, claim{fh, s})
	}
}

// materialize turns a solo holder's implicit claim into claims, before a
// request through another description is applied.
func (h *holder) materialize() {
	if h.claims != nil {
		return
	}
	h.claims = claims{}
	h.claims.set(h.fh, h.recordBytes())
}

// recordBytes returns the bytes of h's records.
func (h *holder) recordBytes() spans {
	var s spans
	for _, r := range h.recs {
		s.add(r.start, r.end)
	}
	return s
}

// claim notes that description fh locked [start, end], which the records
// now hold; it reports whether that is news (the description did not
// hold all of it before). A solo holder's request through its own
// description is news only when it changed the records, which the caller
// knows.
func (h *holder) claim(fh, start, end uint64) bool {
	if h.claims == nil && fh == h.fh {
		return false
	}
	h.materialize() // a no-op: attempt does it before applying the request
	s := h.claims.of(fh)
	grew := s.add(start, end)
	h.claims.set(fh, s)
	return grew
}

// unclaim notes that the owner unlocked [start, end], whichever
// description it came through.
func (h *holder) unclaim(start, end uint64) {
	if h.claims == nil {
		return // solo: the records say it
	}
	out := h.claims[:0]
	for _, c := range h.claims {
		c.bytes.remove(start, end)
		if len(c.bytes) > 0 {
			out = append(out, c)
		}
	}
	clear(h.claims[len(out):])
	h.claims = out
}

// release forgets description fh and returns the bytes it had locked:
// alone (no other description of the owner claims them: they are to be
// unlocked) and shared (still held for another description).
func (h *holder) release(fh uint64) (alone, shared spans) {
	if h.claims == nil {
		if fh != h.fh {
			return nil, nil
		}
		return h.recordBytes(), nil
	}
	mine := h.claims.of(fh)
	if mine == nil {
		return nil, nil
	}
	h.claims.set(fh, nil)
	alone = slices.Clone(mine)
	for _, other := range h.claims {
		for _, x := range other.bytes {
			alone.remove(x.start, x.end)
		}
	}
	shared = slices.Clone(mine)
	for _, x := range alone {
		shared.remove(x.start, x.end)
	}
	return alone, shared
}

// lockedThroughOther reports whether h holds bytes through an open
// description of f other than fh. (A closed one whose RELEASE is pending
// may be a recycled OFD owner's previous description.)
func (f *file) lockedThroughOther(h *holder, fh uint64) bool {
	if h.claims == nil {
		_, closed := f.closing[h.fh]
		return h.fh != fh && !closed && len(h.recs) > 0
	}
	for _, c := range h.claims {
		if _, closed := f.closing[c.fh]; c.fh != fh && !closed {
			return true
		}
	}
	return false
}

// describes reports whether description fh has locked bytes of r.
func (h *holder) describes(fh uint64, r *record) bool {
	if h.space.kind == SpaceFlock {
		return h.key == fh
	}
	return h.locksThrough(fh) && (h.claims == nil || h.claims.of(fh).overlaps(r.start, r.end))
}

// locksThrough reports whether description fh claims any of h's bytes.
func (h *holder) locksThrough(fh uint64) bool {
	if h.claims == nil {
		return h.fh == fh && len(h.recs) > 0
	}
	return len(h.claims.of(fh)) > 0
}

// supersede runs before h's lock request req is applied. Bytes of req
// that h holds through another description, one that was closed (FLUSHed
// with locks left) and whose RELEASE has not arrived, change hands: the
// old description no longer claims them, and those held in req's mode are
// reported released (ReasonRelease) now, before req's acquired event. The
// audit trail then reads as on tmpfs: the closed description's lock ended,
// then the new one's began, rather than two acquired and two released
// events for the same bytes of one owner.
//
// This is the recycled OFD owner of claims (two live descriptions never
// share an OFD owner value, so the old one is gone). A classic POSIX owner
// reaches here only when another process closed a shared description and
// the owner re-locks its bytes through a second one; it then gets a
// released/acquired pair for bytes it keeps, which is balanced and true
// of the owner's state.
func (t *Table) supersede(f *file, h *holder, req *Request, now time.Time) {
	if len(f.closing) == 0 || h.claims == nil {
		return // solo: only the requester's own description locked
	}
	out := h.claims[:0]
	for _, c := range h.claims {
		fh, s := c.fh, c.bytes
		if fh == req.Fh || !s.overlaps(req.Start, req.End) {
			out = append(out, c)
			continue
		}
		if _, closed := f.closing[fh]; !closed {
			out = append(out, c)
			continue
		}
		for _, r := range h.recs {
			if r.typ != req.Type {
				continue // a conversion: applyPosix reports it
			}
			for _, x := range s {
				lo, hi := max(x.start, r.start, req.Start), min(x.end, r.end, req.End)
				if lo <= hi {
					t.emitReleased(f, r, fh, lo, hi, ReasonRelease, now)
				}
			}
		}
		s.remove(req.Start, req.End)
		if len(s) > 0 {
			out = append(out, claim{fh, s})
		}
	}
	clear(h.claims[len(out):])
	h.claims = out
}
