package semaphores

import (
	"math/rand"
	"testing"
)

// TestWriteIndexMatchesScan checks the write index (used for read
// requests once a file has many holders) against the plain kernel-order
// scan, on random states with many owners holding disjoint write ranges
// and shared read ranges.
func TestWriteIndexMatchesScan(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for round := range 200 {
		tb := NewTable(Options{})
		owners := 2 + rng.Intn(40)
		for i := 0; i < 400; i++ {
			o := uint64(1 + rng.Intn(owners))
			start := uint64(rng.Intn(200))
			end := start + uint64(rng.Intn(20))
			if rng.Intn(8) == 0 {
				end = OffsetMax
			}
			typ := LockType(rng.Intn(3))
			_ = tb.Setlk(Request{Node: 1, Fh: o, Owner: o, Type: typ, Start: start, End: end, Pid: uint32(o)})
		}
		f := tb.files[1]
		if err := fileInvariants(1, f); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		sp := &f.st.posix
		for q := 0; q < 200; q++ {
			o := uint64(1 + rng.Intn(owners+1))
			start := uint64(rng.Intn(220))
			req := Request{Node: 1, Owner: o, Type: ReadLock, Start: start, End: start + uint64(rng.Intn(30))}
			if sp.writers == 0 {
				continue
			}
			want := scanConflict(sp, &req)
			if got := sp.firstWriteConflict(&req); got != want {
				t.Fatalf("round %d: read %d..%d by %d: index gives %v, scan %v", round, req.Start, req.End, o, got, want)
			}
		}
	}
}

// scanConflict is firstConflict without the index.
func scanConflict(sp *space, req *Request) *record {
	for h := sp.head; h != nil; h = h.next {
		if h.key == sp.key(req) {
			continue
		}
		for _, r := range h.recs {
			if r.typ == WriteLock && overlaps(r.start, r.end, req.Start, req.End) {
				return r
			}
		}
	}
	return nil
}
