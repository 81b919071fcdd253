package semaphores

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// twin runs every operation on two tables with one clock: one uses the
// compact form, the other never leaves the full form. They must give the
// same answers, the same events and the same state after every step.
type twin struct {
	clock         *fakeClock
	compact, full *Table
	recC, recF    *recorder
	steps         int
}

func newTwin() *twin {
	tw := &twin{clock: newFakeClock(), recC: &recorder{}, recF: &recorder{}}
	// A grace shorter than a step: FLUSH-ed descriptions are tracked
	// (closing) but no request waits for their RELEASE.
	opts := func(rec *recorder) Options {
		return Options{Observer: rec, Now: tw.clock.Now, ReleaseGrace: time.Nanosecond}
	}
	tw.compact = NewTable(opts(tw.recC))
	tw.full = NewTable(opts(tw.recF))
	tw.full.fullOnly = true
	return tw
}

// run applies o to one table and describes its answer.
func runOp(tb *Table, o op) string {
	switch o.kind {
	case opSetlk:
		return fmt.Sprint(tb.Setlk(o.req))
	case opSetlkw:
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return fmt.Sprint(tb.Setlkw(ctx, o.req))
	case opGetlk:
		l, err := tb.Getlk(o.req)
		return fmt.Sprintf("%+v %v", l, err)
	case opFlush:
		tb.Flush(o.req.Node, o.req.Fh, o.req.Owner)
	case opRelease:
		tb.Release(o.rel)
	}
	return ""
}

func (tw *twin) step(o op) error {
	tw.steps++
	tw.clock.Advance(time.Millisecond)
	gotC, gotF := runOp(tw.compact, o), runOp(tw.full, o)
	if gotC != gotF {
		return fmt.Errorf("%v: compact answers %s, full %s", o, gotC, gotF)
	}
	evC, evF := tw.recC.take(), tw.recF.take()
	if !reflect.DeepEqual(evC, evF) {
		return fmt.Errorf("%v: compact events\n%+v\nfull events\n%+v", o, evC, evF)
	}
	snC, snF := tw.compact.Snapshot(), tw.full.Snapshot()
	if !reflect.DeepEqual(snC, snF) {
		return fmt.Errorf("%v: compact state\n%+v\nfull state\n%+v", o, snC, snF)
	}
	if c, f := tw.compact.Stats(), tw.full.Stats(); c != f {
		return fmt.Errorf("%v: compact stats %+v, full %+v", o, c, f)
	}
	return internalInvariants(tw.compact)
}

// twinOps decodes data as FuzzEngine does, then spreads the operations
// of the model's two nodes over eight by owner (lone locks, the compact
// form's case, are rare when eleven owners share two files), and gives
// some FLUSHes the description they came through, so that closing
// descriptions are tracked too.
func twinOps(data []byte) []op {
	ops := decodeOps(data)
	spread := func(node, by uint64) uint64 {
		if node == unknownNode {
			return node
		}
		return node + 10*(by%4)
	}
	for i := range ops {
		o := &ops[i]
		if o.kind == opRelease {
			o.rel.Node = spread(o.rel.Node, o.rel.Fh)
			continue
		}
		o.req.Node = spread(o.req.Node, o.req.Owner)
		if o.kind == opFlush && i%2 == 1 {
			o.req.Fh = classicFhs[i/2%len(classicFhs)]
		}
	}
	return ops
}

func runTwin(data []byte) error {
	tw := newTwin()
	for i, o := range twinOps(data) {
		if err := tw.step(o); err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
	}
	return nil
}

// TestCompactFormMatchesFull: on random operation sequences (the model
// test's operations), a table that keeps lone locks in the compact form
// answers, reports and holds exactly what a table that never uses it
// does.
func TestCompactFormMatchesFull(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 200
	}
	r := rand.New(rand.NewPCG(1, 2))
	compactSteps := 0
	for i := range n {
		data := make([]byte, 64+r.IntN(512))
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		if err := runTwin(data); err != nil {
			t.Fatalf("sequence %d: %v", i, err)
		}
		compactSteps += len(twinOps(data))
	}
	t.Logf("%d sequences, %d operations", n, compactSteps)
}

// TestCompactFormUsed: a lone lock is held in the compact form, and a
// second lock or a waiter promotes the file; when the full state empties
// again the file goes back to the compact form.
func TestCompactFormUsed(t *testing.T) {
	tb := NewTable(Options{})
	form := func() string {
		tb.mu.RLock()
		f := tb.files[1]
		tb.mu.RUnlock()
		switch {
		case f == nil:
			return "none"
		case f.st == nil && f.one.held:
			return "compact"
		case f.st == nil:
			return "compact-empty"
		}
		return "full"
	}
	steps := []struct {
		req  Request
		want string
	}{
		{posixReq(A, W, 0, 9), "compact"},
		{posixReq(A, W, 2, 3), "compact"}, // held already
		{posixReq(A, U, 20, 29), "compact"},
		{posixReq(B, R, 20, 29), "full"}, // a second owner
		{posixReq(B, U, 20, 29), "full"}, // A's lock stays in the full form
		{posixReq(A, U, 0, Max), "compact-empty"},
		{flockReq(O1, R), "compact"},
		{flockReq(O1, W), "full"}, // a conversion
		{flockReq(O1, U), "compact-empty"},
	}
	for i, s := range steps {
		if err := tb.Setlk(s.req); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := form(); got != s.want {
			t.Errorf("step %d (%v %v %d..%d): %s form, want %s", i, s.req.Space, s.req.Type, s.req.Start, s.req.End, got, s.want)
		}
	}
	tb.Release(ReleaseRequest{Node: 1, Fh: O1})
	tb.Flush(1, 0, A)
	if got := form(); got != "none" {
		t.Errorf("after close: %s, want none", got)
	}
}

// FuzzCompactForm is TestCompactFormMatchesFull on fuzz input.
func FuzzCompactForm(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 50, 1, 0, 1, 0, 2, 1, 10, 3, 0, 5, 0, 0, 2, 0, 0, 0, 0})
	f.Add([]byte{4, 0, 1, 1, 4, 0, 3, 0, 4, 0, 1, 1, 8, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := runTwin(data); err != nil {
			t.Fatal(err)
		}
	})
}
