package semaphores

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
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
	// Description 1 is closed (its FLUSH carries the closing process's
	// POSIX owner); description 2 gets owner value x and locks part of
	// the same range (the engine sees x's own lock).
	tb.Flush(1, 1, 0x5eed)
	must(tb.Setlk(req(2, x, WriteLock, 0, 9)))
	tb.Release(ReleaseRequest{Node: 1, Fh: 1}) // the late RELEASE of 1
	if err := tb.Setlk(req(3, y, WriteLock, 50, 59)); err != nil {
		t.Errorf("bytes only the closed description had locked: %v, want them free", err)
	}
	if err := tb.Setlk(req(3, y, WriteLock, 0, 9)); !errors.Is(err, ErrWouldBlock) {
		t.Errorf("bytes the new description locked: %v, want EAGAIN", err)
	}
	tb.Release(ReleaseRequest{Node: 1, Fh: 2})
	tb.Release(ReleaseRequest{Node: 1, Fh: 3})
	if st := tb.Stats(); st != (Stats{}) {
		t.Errorf("state left: %+v", st)
	}
	// The trail reads as on tmpfs: 1's lock of 0..9 ends when 2 takes
	// those bytes, the rest with 1's RELEASE.
	var got []string
	for _, e := range rec.take() {
		if e.Kind == EventAcquired || e.Kind == EventReleased {
			got = append(got, fmt.Sprintf("%v fh%d %d..%d", e.Kind, e.Fh, e.Start, e.End))
		}
	}
	want := []string{
		"acquired fh1 0..99",
		"released fh1 0..9", "acquired fh2 0..9",
		"released fh1 10..99",
		"acquired fh3 50..59",
		"released fh2 0..9", "released fh3 50..59",
	}
	if !slices.Equal(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestRecycledOwnerAuditBalance replays random recycled-owner histories
// (a description closed, a new one with its owner value locking before
// the old RELEASE arrives) and checks the audit trail against a model of
// the bytes each owner holds: no released event gives up bytes the owner
// does not hold in that mode, and at the end nothing is left held.
func TestRecycledOwnerAuditBalance(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		rec := &recorder{}
		tb := NewTable(Options{Observer: rec})
		const owner = 0x77
		fh := uint64(1)
		n := rapid.IntRange(1, 6).Draw(rt, "descriptions")
		var pending []uint64
		for i := 0; i < n; i++ {
			for j, k := 0, rapid.IntRange(1, 3).Draw(rt, "locks"); j < k; j++ {
				typ := rapid.SampledFrom([]LockType{ReadLock, WriteLock, Unlock}).Draw(rt, "type")
				start := uint64(rapid.IntRange(0, 20).Draw(rt, "start"))
				end := start + uint64(rapid.IntRange(0, 20).Draw(rt, "len"))
				if err := tb.Setlk(Request{Node: 1, Fh: fh, Owner: owner, Pid: 1, Type: typ, Start: start, End: end}); err != nil {
					rt.Fatalf("Setlk: %v", err)
				}
			}
			tb.Flush(1, fh, 0x5eed) // closed: the RELEASE comes later
			pending = append(pending, fh)
			if len(pending) > 0 && rapid.Bool().Draw(rt, "release now") {
				tb.Release(ReleaseRequest{Node: 1, Fh: pending[0]})
				pending = pending[1:]
			}
			fh++
		}
		for _, p := range pending {
			tb.Release(ReleaseRequest{Node: 1, Fh: p})
		}
		if st := tb.Stats(); st != (Stats{}) {
			rt.Fatalf("state left: %+v", st)
		}
		held := map[LockType]spans{}
		for _, e := range rec.take() {
			switch e.Kind {
			case EventAcquired:
				s := held[e.Type]
				s.add(e.Start, e.End)
				held[e.Type] = s
				other := held[ReadLock]
				if e.Type == ReadLock {
					other = held[WriteLock]
				}
				if other.overlaps(e.Start, e.End) {
					rt.Fatalf("acquired %v %d..%d over the owner's other mode", e.Type, e.Start, e.End)
				}
			case EventReleased:
				s := held[e.Type]
				if !s.covers(e.Start, e.End) {
					rt.Fatalf("released %v %d..%d (fh%d, %v), which the owner did not hold: %v", e.Type, e.Start, e.End, e.Fh, e.Reason, s)
				}
				s.remove(e.Start, e.End)
				held[e.Type] = s
			}
		}
		for typ, s := range held {
			if len(s) != 0 {
				rt.Fatalf("still held after every RELEASE: %v %v", typ, s)
			}
		}
	})
}
