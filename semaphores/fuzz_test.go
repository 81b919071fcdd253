package semaphores

import (
	"testing"
)

// byteReader hands out the fuzz input one byte at a time; past the end
// it returns zeros.
type byteReader struct {
	b []byte
}

func (r *byteReader) next() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *byteReader) u64() uint64 {
	var v uint64
	for range 8 {
		v = v<<8 | uint64(r.next())
	}
	return v
}

func pick[T any](r *byteReader, xs []T) T { return xs[int(r.next())%len(xs)] }

// fuzzRange decodes a cell-aligned range (see model_test.go).
func fuzzRange(r *byteReader) (uint64, uint64) {
	start := uint64(r.next() % (tailCell + 1))
	e := r.next()
	if start == tailCell || e&3 == 0 {
		return start, OffsetMax
	}
	return start, start + uint64(e>>2)%(tailCell-start)
}

// fuzzLocker decodes an owner and a description it may lock through.
func fuzzLocker(r *byteReader) (owner, fh uint64) {
	b := r.next()
	if b&1 == 1 {
		o := ofdOwners[int(b>>1)%len(ofdOwners)]
		return o, o
	}
	return classicOwners[int(b>>1)%len(classicOwners)], classicFhs[int(r.next())%len(classicFhs)]
}

// decodeOps turns a fuzz input into at most maxOps operations: the same
// operations as TestModel, plus invalid requests, unknown nodes and fhs,
// and closes by owners that never locked anything.
func decodeOps(data []byte) []op {
	const maxOps = 256
	r := &byteReader{b: data}
	anyNode := append(append([]uint64{}, modelNodes...), unknownNode)
	var ops []op
	for len(r.b) > 0 && len(ops) < maxOps {
		kind := r.next() % 12
		node := pick(r, modelNodes)
		switch {
		case kind <= 3: // POSIX Setlk, or Setlkw with a cancelled context
			owner, fh := fuzzLocker(r)
			typ := LockType(r.next() % 3)
			start, end := fuzzRange(r)
			pid := pidOf(owner) + uint32(r.next()%2)
			if typ == Unlock {
				pid = 0
			}
			k := opSetlk
			if kind == 3 {
				k = opSetlkw
			}
			ops = append(ops, op{kind: k, req: Request{Node: node, Fh: fh, Owner: owner,
				Type: typ, Start: start, End: end, Pid: pid}})
		case kind == 4: // flock: its owner is the description
			_, fh := fuzzLocker(r)
			owner := fh
			b := r.next()
			k := opSetlk
			if b&4 != 0 {
				k = opSetlkw
			}
			ops = append(ops, op{kind: k, req: Request{Node: node, Fh: fh, Owner: owner, Space: SpaceFlock,
				Type: LockType((b & 3) % 3), Start: 0, End: OffsetMax, Pid: pidOf(owner)}})
		case kind <= 6: // Getlk, any type including F_UNLCK, any node
			node = pick(r, anyNode)
			owner, fh := fuzzLocker(r)
			typ := LockType(r.next() % 3)
			start, end := fuzzRange(r)
			ops = append(ops, op{kind: opGetlk, req: Request{Node: node, Fh: fh, Owner: owner,
				Type: typ, Start: start, End: end}})
		case kind == 7: // Flush, including never-seen owners and nodes
			node = pick(r, anyNode)
			owner := pick(r, []uint64{1, 2, 3, 11, 12, strangerOwner, 0, 4, 5, 6, 7, 8, 9})
			ops = append(ops, op{kind: opFlush, req: Request{Node: node, Owner: owner}})
		case kind == 8: // Release of an OFD description or a never-opened one
			node = pick(r, anyNode)
			fh := pick(r, []uint64{11, 12, strangerFh})
			b := r.next()
			owner := fh
			if b&2 != 0 {
				owner = pick(r, []uint64{0, 11, 12, strangerOwner})
			}
			ops = append(ops, op{kind: opRelease, rel: ReleaseRequest{Node: node, Fh: fh, Owner: owner,
				FlockUnlock: b&1 != 0}})
		default: // an invalid request
			owner, fh := fuzzLocker(r)
			req := Request{Node: pick(r, anyNode), Fh: fh, Owner: owner, Type: WriteLock,
				Start: 0, End: 9, Pid: pidOf(owner)}
			switch r.next() % 4 {
			case 0:
				req.Type = LockType(3 + uint32(r.next())<<(r.next()%25))
				if r.next()&1 != 0 {
					req.Space = SpaceFlock
				}
			case 1:
				req.Start = max(1, r.u64()&OffsetMax)
				req.End = req.Start - 1 - uint64(r.next())%req.Start
			case 2:
				req.Start = r.u64()
				req.End = max(OffsetMax+1, r.u64())
				if req.Start > req.End {
					req.Start = 0
				}
			case 3:
				req.Space = Space(2 + r.next()%254)
				req.Type = LockType(r.next() % 3)
			}
			k := []opKind{opSetlk, opSetlkw, opGetlk}[r.next()%3]
			ops = append(ops, op{kind: k, req: req})
		}
	}
	return ops
}

// FuzzEngine decodes the input into an operation sequence and checks the
// engine against the reference model after every step. The engine must
// never panic, and once everything is flushed and released it must hold
// nothing.
func FuzzEngine(f *testing.F) {
	// Seeds in testdata/fuzz/FuzzEngine cover the rule scenarios; these
	// add a few structured ones.
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 1, 0, 50, 1, 0, 1, 0, 2, 1, 10, 3, 0, 5, 0, 0, 2, 0, 0, 0, 0})
	f.Add([]byte{4, 0, 1, 1, 4, 0, 3, 0, 4, 0, 1, 1, 8, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		h := newHarness()
		for i, o := range decodeOps(data) {
			if err := h.step(o); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		if err := h.finish(); err != nil {
			t.Fatalf("finish: %v", err)
		}
	})
}
