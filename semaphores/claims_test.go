package semaphores

import (
	"errors"
	"testing"
)

func TestSpans(t *testing.T) {
	var s spans
	if !s.add(10, 19) || !s.add(30, 39) || !s.add(20, 29) || s.add(12, 35) {
		t.Fatal("add reported growth wrongly")
	}
	if len(s) != 1 || s[0] != (span{10, 39}) {
		t.Fatalf("merged: %v", s)
	}
	s.add(0, OffsetMax-1)
	s.add(OffsetMax, OffsetMax)
	if len(s) != 1 || s[0] != (span{0, OffsetMax}) {
		t.Fatalf("whole: %v", s)
	}
	s.remove(5, 9)
	s.remove(OffsetMax, OffsetMax)
	if len(s) != 2 || s[0] != (span{0, 4}) || s[1] != (span{10, OffsetMax - 1}) {
		t.Fatalf("after removes: %v", s)
	}
	if !s.covers(10, 20) || s.covers(3, 11) || !s.overlaps(3, 11) || s.overlaps(5, 9) {
		t.Fatal("covers/overlaps wrong")
	}
}

// TestRecycledOwnerRelease: the kernel gave a closed OFD description's
// owner value to a new description before the old RELEASE arrived. The
// late RELEASE ends only what the old description alone had locked; the
// new one keeps what it locked itself, and the audit trail shows both
// descriptions' holds.
func TestRecycledOwnerRelease(t *testing.T) {
	const x, y = 0xabc, 0xdef
	rec := &recorder{}
	tb := NewTable(Options{Observer: rec})
	req := func(fh, owner uint64, typ LockType, start, end uint64) Request {
		return Request{Node: 1, Fh: fh, Owner: owner, Type: typ, Start: start, End: end, Pid: uint32(fh)}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tb.Setlk(req(1, x, WriteLock, 0, 99))) // description 1
	// Description 1 is closed; description 2 gets owner value x and
	// locks part of the same range (the engine sees x's own lock).
	must(tb.Setlk(req(2, x, WriteLock, 0, 9)))
	tb.Release(ReleaseRequest{Node: 1, Fh: 1}) // the late RELEASE of 1
	if err := tb.Setlk(req(3, y, WriteLock, 50, 59)); err != nil {
		t.Errorf("bytes only the closed description had locked: %v, want them free", err)
	}
	if err := tb.Setlk(req(3, y, WriteLock, 0, 9)); !errors.Is(err, ErrWouldBlock) {
		t.Errorf("bytes the new description locked: %v, want EAGAIN", err)
	}
	var acq, rel int
	for _, e := range rec.take() {
		switch e.Kind {
		case EventAcquired:
			acq++
		case EventReleased:
			rel++
		}
	}
	// Acquired: description 1, description 2, y's 50..59. Released:
	// description 1's 0..9 (still held for 2) and its 10..99.
	if acq != 3 || rel != 2 {
		t.Errorf("events: %d acquired, %d released; want 3 and 2", acq, rel)
	}
	tb.Release(ReleaseRequest{Node: 1, Fh: 2})
	tb.Release(ReleaseRequest{Node: 1, Fh: 3})
	if st := tb.Stats(); st != (Stats{}) {
		t.Errorf("state left: %+v", st)
	}
}
