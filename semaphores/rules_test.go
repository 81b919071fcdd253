package semaphores

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Open file descriptions whose owner is used for OFD and flock locks
// (R4: the flock owner and the OFD owner of a description are equal).
// Each is opened as fh == owner.
const (
	O1 uint64 = 0xF1
	O2 uint64 = 0xF2
)

// R11: FLUSH(node, owner) removes every POSIX lock of owner on that node,
// through whichever fh it was taken, and nothing else; then wakes waiters.
func TestR11Flush(t *testing.T) {
	runScenarios(t, []scenario{
		{"E1 drops every range of the owner taken through any fh", []step{
			setlk(A, W, 0, 9).via(1),
			setlk(A, W, 20, 29).via(2),
			setlk(B, R, 60, 69),
			getlk(C, W, 0, 99).answers(hold(A, W, 0, 9, withFh(1))),
			flush(A),
			state(1, hold(B, R, 60, 69)),
			getlk(C, W, 0, 59).answers(noLock),
		}},
		{"other nodes keep the owner's locks", []step{
			setlk(A, W, 0, 9),
			setlk(A, R, 40, 49).on(2),
			flush(A),
			state(1),
			state(2, hold(A, R, 40, 49)),
			getlk(B, W, 0, Max).on(2).answers(hold(A, R, 40, 49)),
		}},
		{"flock and OFD locks on the same description survive", []step{
			// Process owner A has fd 1 open on description O1, which holds
			// a flock lock and an OFD lock; closing the fd flushes A.
			flock(O1, W),
			setlk(O1, W, 20, 29),
			setlk(A, W, 0, 9).via(O1),
			flush(A),
			state(1, hold(O1, W, 20, 29, asOFD()), flockHold(O1, W)),
		}},
		{"flock locks are never touched, whatever the owner value", []step{
			flock(A, R),
			setlk(A, W, 0, 9),
			flush(A),
			state(1, flockHold(A, R)),
		}},
		{"wakes the waiters of the dropped locks", []step{
			setlk(A, W, 0, 9),
			setlk(A, W, 20, 29),
			wait("b", setlk(B, W, 5, 5)),
			wait("c", setlk(C, R, 20, 25)),
			queue(1, "b", "c"),
			flush(A),
			done("b", nil),
			done("c", nil),
			state(1, hold(B, W, 5, 5), hold(C, R, 20, 25)),
		}},
		{"unknown node or owner is a no-op", []step{
			setlk(A, W, 0, 9),
			flush(B),
			flush(A).on(7),
			state(1, hold(A, W, 0, 9)),
			stats(Stats{Files: 1, Records: 1}),
		}},
	})
}

// R12: RELEASE drops the description's flock lock (FLOCK_UNLOCK), every
// POSIX-space record taken through that fh (which ends OFD locks) and the
// per-fh state, then wakes the waiters.
func TestR12Release(t *testing.T) {
	runScenarios(t, []scenario{
		{"E3/E4 flock and OFD locks of the description end, others stay", []step{
			flock(O1, R),
			flock(O2, R),
			setlk(O1, W, 0, 9),
			setlk(O2, W, 20, 29),
			setlk(A, W, 40, 49).via(O2), // a classic lock through another description
			state(1,
				hold(O1, W, 0, 9, asOFD()),
				hold(O2, W, 20, 29, asOFD()),
				hold(A, W, 40, 49, withFh(O2)),
				flockHold(O1, R),
				flockHold(O2, R)),
			stats(Stats{Files: 1, Records: 5, Handles: 2}),
			release(O1).flockUnlock(O1),
			state(1,
				hold(O2, W, 20, 29, asOFD()),
				hold(A, W, 40, 49, withFh(O2)),
				flockHold(O2, R)),
			stats(Stats{Files: 1, Records: 3, Handles: 1}),
		}},
		{"every POSIX-space record taken through the fh ends", []step{
			setlk(O1, W, 0, 9),
			setlk(O1, R, 20, 29),
			setlk(A, R, 40, 49).via(O1),
			setlk(A, R, 60, 69).via(2),
			release(O1),
			state(1, hold(A, R, 60, 69, withFh(2))),
		}},
		{"wakes POSIX and flock waiters", []step{
			flock(O1, W),
			setlk(O1, W, 0, 0),
			wait("b", setlk(B, W, 0, 0)),
			wait("c", flock(C, R)),
			release(O1).flockUnlock(O1),
			done("b", nil),
			done("c", nil),
			state(1, hold(B, W, 0, 0), flockHold(C, R)),
		}},
		{"FLOCK_UNLOCK names the owner; other descriptions keep theirs", []step{
			flock(O1, R),
			flock(O2, R),
			release(0x99).flockUnlock(0x77), // nobody's
			state(1, flockHold(O1, R), flockHold(O2, R)),
			release(O2).flockUnlock(O2),
			state(1, flockHold(O1, R)),
		}},
		{"per-fh state is forgotten: a recycled fh and owner are classic again", []step{
			getlk(O1, U, 0, 0),
			setlk(O1, W, 0, 9),
			getlk(B, W, 0, 0).answers(hold(O1, W, 0, 9, asOFD(), withPid(0))),
			stats(Stats{Files: 1, Records: 1, Handles: 1}),
			release(O1),
			stats(Stats{}),
			// The kernel recycles the fh number and the owner value (R4, G2).
			setlk(O1, W, 0, 9),
			getlk(B, W, 0, 0).answers(hold(O1, W, 0, 9)),
			stats(Stats{Files: 1, Records: 1}),
		}},
		{"unknown node or fh is a no-op", []step{
			setlk(O1, W, 0, 9),
			release(O1).on(5),
			release(0x55).flockUnlock(0x55),
			state(1, hold(O1, W, 0, 9)),
		}},
	})
}

// R13: two POSIX locks conflict iff their owners differ, they overlap,
// and at least one is a write lock.
func TestR13Conflict(t *testing.T) {
	type lk struct {
		typ        LockType
		start, end uint64
	}
	cases := []struct {
		name     string
		held     lk // by A
		req      lk // by B
		conflict bool
	}{
		{"write vs write overlapping", lk{W, 0, 9}, lk{W, 9, 20}, true},
		{"read vs write", lk{R, 0, 9}, lk{W, 5, 5}, true},
		{"write vs read", lk{W, 0, 9}, lk{R, 0, 0}, true},
		{"read vs read", lk{R, 0, 9}, lk{R, 0, 9}, false},
		{"adjacent below", lk{W, 10, 19}, lk{W, 0, 9}, false},
		{"adjacent above", lk{W, 10, 19}, lk{W, 20, 29}, false},
		{"one shared byte", lk{R, 10, 19}, lk{W, 19, 19}, true},
		{"to EOF vs last byte", lk{W, 100, Max}, lk{R, Max, Max}, true},
		{"to EOF vs below it", lk{W, 100, Max}, lk{W, 0, 99}, false},
		{"whole file read vs one byte write", lk{R, 0, Max}, lk{W, 0, 0}, true},
		{"inside", lk{W, 0, 99}, lk{R, 40, 59}, true},
		{"around", lk{W, 40, 59}, lk{W, 0, 99}, true},
	}
	var scs []scenario
	for _, c := range cases {
		steps := []step{setlk(A, c.held.typ, c.held.start, c.held.end)}
		if c.conflict {
			steps = append(steps,
				setlk(B, c.req.typ, c.req.start, c.req.end).fails(ErrWouldBlock),
				getlk(B, c.req.typ, c.req.start, c.req.end).answers(hold(A, c.held.typ, c.held.start, c.held.end)),
				state(1, hold(A, c.held.typ, c.held.start, c.held.end)))
		} else {
			steps = append(steps,
				getlk(B, c.req.typ, c.req.start, c.req.end).answers(noLock),
				setlk(B, c.req.typ, c.req.start, c.req.end),
				state(1, hold(A, c.held.typ, c.held.start, c.held.end), hold(B, c.req.typ, c.req.start, c.req.end)))
		}
		scs = append(scs, scenario{c.name, steps})
	}
	scs = append(scs,
		scenario{"an owner never conflicts with itself", []step{
			setlk(A, W, 0, 9),
			getlk(A, W, 0, 9).answers(noLock),
			setlk(A, W, 5, 14),
			setlk(A, R, 0, 3),
			state(1, hold(A, R, 0, 3), hold(A, W, 4, 14)),
		}},
		scenario{"E3 same process, different owners (classic vs OFD) conflict", []step{
			setlk(O1, W, 0, 9).pid(7),
			setlk(A, W, 0, 9).pid(7).fails(ErrWouldBlock),
			setlk(O2, R, 5, 5).pid(7).fails(ErrWouldBlock),
		}},
		scenario{"different nodes never conflict", []step{
			setlk(A, W, 0, Max),
			setlk(B, W, 0, Max).on(2),
			getlk(B, W, 0, Max).answers(hold(A, W, 0, Max)),
			getlk(A, W, 0, Max).on(2).answers(hold(B, W, 0, Max)),
		}},
	)
	runScenarios(t, scs)
}

// R14: apply is atomic; same-type neighbours merge, other-type ranges are
// trimmed or split; a conflicting request changes nothing.
func TestR14AtomicApply(t *testing.T) {
	runScenarios(t, []scenario{
		{"E5a unlock in the middle splits", []step{
			setlk(A, W, 0, 99),
			setlk(A, U, 40, 59),
			getlk(B, W, 30, 30).answers(hold(A, W, 0, 39)),
			getlk(B, W, 70, 70).answers(hold(A, W, 60, 99)),
			getlk(B, W, 50, 50).answers(noLock),
			state(1, hold(A, W, 0, 39), hold(A, W, 60, 99)),
		}},
		{"E5b adjacent reads merge", []step{
			setlk(A, R, 0, 9),
			setlk(A, R, 10, 19),
			getlk(B, W, 0, 99).answers(hold(A, R, 0, 19)),
			state(1, hold(A, R, 0, 19)),
		}},
		{"E5c failed upgrade keeps the read lock; partial upgrade splits", []step{
			setlk(A, R, 0, 99),
			setlk(B, R, 50, 59),
			setlk(A, W, 0, 99).fails(ErrWouldBlock),
			state(1, hold(A, R, 0, 99), hold(B, R, 50, 59)),
			setlk(A, W, 20, 29),
			state(1, hold(A, R, 0, 19), hold(A, W, 20, 29), hold(A, R, 30, 99), hold(B, R, 50, 59)),
			getlk(B, R, 0, 99).answers(hold(A, W, 20, 29)),
		}},
		{"E5h unlocking a never-held range succeeds", []step{
			setlk(A, U, 0, 99),
			setlk(A, U, 0, Max).on(3),
			state(1),
			setlk(A, W, 10, 19),
			setlk(A, U, 0, 99),
			state(1),
		}},
		{"a conflict anywhere in the range changes nothing", []step{
			setlk(A, R, 0, 9),
			setlk(A, W, 20, 29),
			setlk(A, R, 40, 49),
			setlk(B, R, 60, 60),
			setlk(A, W, 0, 60).fails(ErrWouldBlock),
			state(1, hold(A, R, 0, 9), hold(A, W, 20, 29), hold(A, R, 40, 49), hold(B, R, 60, 60)),
			// A read does not conflict with B's read: it merges A's reads
			// and downgrades A's write in between.
			setlk(A, R, 0, 60),
			state(1, hold(A, R, 0, 60), hold(B, R, 60, 60)),
		}},
		{"overlapping and adjacent same-type ranges merge into one", []step{
			setlk(A, W, 0, 9),
			setlk(A, W, 20, 29),
			setlk(A, W, 10, 19),
			state(1, hold(A, W, 0, 29)),
			setlk(A, W, 40, 49),
			setlk(A, W, 45, 60),
			setlk(A, W, 31, 39),
			state(1, hold(A, W, 0, 29), hold(A, W, 31, 60)),
		}},
		{"adjacency at OffsetMax does not overflow", []step{
			setlk(A, W, Max, Max),
			setlk(A, W, 0, Max-1),
			state(1, hold(A, W, 0, Max)),
			setlk(A, U, 0, Max),
			setlk(A, R, 100, Max),
			setlk(A, R, 50, 99),
			setlk(A, R, 0, 48),
			state(1, hold(A, R, 0, 48), hold(A, R, 50, Max)),
		}},
		{"a request over several other-type records replaces and trims them", []step{
			setlk(A, R, 0, 9),
			setlk(A, R, 20, 29),
			setlk(A, W, 40, 49),
			setlk(A, W, 5, 25),
			state(1, hold(A, R, 0, 4), hold(A, W, 5, 25), hold(A, R, 26, 29), hold(A, W, 40, 49)),
		}},
		{"downgrade and unlock to EOF", []step{
			setlk(A, W, 0, Max),
			setlk(A, U, 100, Max),
			state(1, hold(A, W, 0, 99)),
			setlk(A, R, 0, 99),
			state(1, hold(A, R, 0, 99)),
			setlk(B, R, 50, 50),
			setlk(B, W, 100, Max),
		}},
		{"unlock across several records", []step{
			setlk(A, W, 0, 9),
			setlk(A, R, 10, 19),
			setlk(A, W, 30, 39),
			setlk(A, U, 5, 34),
			state(1, hold(A, W, 0, 4), hold(A, W, 35, 39)),
		}},
	})
}

// R15: an owner's records are contiguous and sorted; a new owner goes to
// the tail. Getlk reports the first conflict in that order.
func TestR15RecordOrder(t *testing.T) {
	runScenarios(t, []scenario{
		{"E5d owner order, not offset order", []step{
			setlk(B, W, 50, 59),
			setlk(C, W, 10, 19),
			getlk(A, W, 0, 99).answers(hold(B, W, 50, 59)),
			setlk(B, W, 5, 6),
			getlk(A, W, 0, 99).answers(hold(B, W, 5, 6)),
			state(1, hold(B, W, 5, 6), hold(B, W, 50, 59), hold(C, W, 10, 19)),
		}},
		{"an owner that drops all its locks rejoins at the tail", []step{
			setlk(B, W, 50, 59),
			setlk(C, W, 10, 19),
			setlk(B, U, 50, 59),
			setlk(B, W, 50, 59),
			getlk(A, W, 0, 99).answers(hold(C, W, 10, 19)),
			state(1, hold(C, W, 10, 19), hold(B, W, 50, 59)),
		}},
		{"an owner keeps its place while converting", []step{
			setlk(B, R, 50, 59),
			setlk(C, W, 10, 19),
			setlk(B, W, 50, 59),
			getlk(A, R, 0, 99).answers(hold(B, W, 50, 59)),
			setlk(B, U, 55, 59),
			setlk(B, R, 70, 79),
			state(1, hold(B, W, 50, 54), hold(B, R, 70, 79), hold(C, W, 10, 19)),
		}},
		{"read requests skip read records to the first write", []step{
			setlk(B, R, 0, 99),
			setlk(C, W, 200, 299),
			setlk(D, W, 50, 50).fails(ErrWouldBlock),
			getlk(D, R, 0, 299).answers(hold(C, W, 200, 299)),
			getlk(D, W, 0, 299).answers(hold(B, R, 0, 99)),
		}},
	})
}

// R15 with many holders: past holderIndexThreshold owners are found
// through an index, which must follow every holder that leaves and
// rejoins (at the tail).
func TestR15ManyHolders(t *testing.T) {
	const n = 3 * holderIndexThreshold
	owner := func(i int) uint64 { return 0x300 + uint64(i) }
	at := func(i int) uint64 { return uint64(10 * i) }
	var steps []step
	var all []Lock
	for i := range n {
		steps = append(steps, setlk(owner(i), W, at(i), at(i)))
		all = append(all, hold(owner(i), W, at(i), at(i)))
	}
	steps = append(steps,
		state(1, all...),
		getlk(A, R, 0, Max).answers(hold(owner(0), W, 0, 0)))
	// The first half leave; the next owner in list order is reported.
	for i := range n / 2 {
		steps = append(steps, setlk(owner(i), U, 0, Max))
	}
	steps = append(steps, getlk(A, R, 0, Max).answers(hold(owner(n/2), W, at(n/2), at(n/2))))
	// They come back at the tail; growing a range finds the owner's own
	// holder (a second holder for one owner breaks an invariant).
	var want []Lock
	for i := n / 2; i < n; i++ {
		steps = append(steps, setlk(owner(i), W, at(i)+1, at(i)+2))
		want = append(want, hold(owner(i), W, at(i), at(i)+2))
	}
	for i := range n / 2 {
		steps = append(steps, setlk(owner(i), R, at(i)+5, at(i)+5))
		want = append(want, hold(owner(i), R, at(i)+5, at(i)+5))
	}
	steps = append(steps, state(1, want...))
	// All but one close; then new owners join again.
	for i := range n - 1 {
		steps = append(steps, flush(owner(i)))
	}
	steps = append(steps,
		state(1, hold(owner(n-1), W, at(n-1), at(n-1)+2)),
		setlk(owner(0), W, 0, 0),
		setlk(owner(0), W, 1, 1),
		setlk(owner(n-1), R, 0, 0).fails(ErrWouldBlock),
		state(1, hold(owner(n-1), W, at(n-1), at(n-1)+2), hold(owner(0), W, 0, 1)))
	runSteps(t, steps)
}

// R16: Getlk reports the stored pid: a merge keeps the surviving record's,
// a replacement or new record takes the requester's.
func TestR16GetlkPid(t *testing.T) {
	runScenarios(t, []scenario{
		{"merge keeps the surviving record's pid", []step{
			setlk(A, R, 0, 9).pid(100),
			setlk(A, R, 10, 19).pid(200),
			state(1, hold(A, R, 0, 19, withPid(100))),
			getlk(B, W, 15, 15).answers(hold(A, R, 0, 19, withPid(100))),
		}},
		{"merge into a later record keeps that record's pid", []step{
			setlk(A, R, 10, 19).pid(100),
			setlk(A, R, 5, 9).pid(200),
			getlk(B, W, 0, 99).answers(hold(A, R, 5, 19, withPid(100))),
		}},
		{"bridging two records keeps the first", []step{
			setlk(A, R, 0, 9).pid(100),
			setlk(A, R, 20, 29).pid(200),
			setlk(A, R, 10, 19).pid(300),
			state(1, hold(A, R, 0, 29, withPid(100))),
		}},
		{"replacement takes the requester's pid", []step{
			setlk(A, W, 0, 19).pid(100),
			setlk(A, R, 0, 19).pid(200),
			getlk(B, W, 0, 0).answers(hold(A, R, 0, 19, withPid(200))),
		}},
		{"split keeps the old pid on both sides", []step{
			setlk(A, W, 0, 99).pid(100).uid(5),
			setlk(A, R, 40, 59).pid(200).uid(6),
			state(1,
				hold(A, W, 0, 39, withPid(100), withUid(5)),
				hold(A, R, 40, 59, withPid(200), withUid(6)),
				hold(A, W, 60, 99, withPid(100), withUid(5))),
		}},
		{"replacement then merge keeps the new record", []step{
			setlk(A, W, 0, 9).pid(100),
			setlk(A, R, 10, 19).pid(100),
			setlk(A, R, 0, 9).pid(300),
			state(1, hold(A, R, 0, 19, withPid(300))),
		}},
		{"merge then replacement keeps the merged record", []step{
			setlk(A, R, 0, 9).pid(100),
			setlk(A, W, 10, 19).pid(100),
			setlk(A, R, 10, 19).pid(300),
			state(1, hold(A, R, 0, 19, withPid(100))),
		}},
		{"the surviving record keeps its fh", []step{
			setlk(A, R, 0, 9).via(1),
			setlk(A, R, 10, 19).via(2),
			state(1, hold(A, R, 0, 19, withFh(1))),
			getlk(B, W, 12, 12).answers(hold(A, R, 0, 19, withFh(1))),
		}},
	})
}

// R17: a conflict gives EAGAIN, never EACCES; errors map to their errnos
// without unwrapping.
func TestR17Errors(t *testing.T) {
	runScenarios(t, []scenario{
		{"POSIX and flock conflicts are EAGAIN", []step{
			setlk(A, W, 0, 0),
			flock(A, W),
			setlk(B, R, 0, 0).fails(ErrWouldBlock),
			flock(B, R).fails(ErrWouldBlock),
		}},
	})
	cases := []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{ErrWouldBlock, syscall.EAGAIN},
		{ErrDeadlock, syscall.EDEADLK},
		{ErrInterrupted, syscall.EINTR},
		{ErrInvalid, syscall.EINVAL},
		{ErrNoLocks, syscall.ENOLCK},
		{errors.New("other"), syscall.EIO},
		{fmt.Errorf("wrapped: %w", ErrWouldBlock), syscall.EIO},
	}
	for _, c := range cases {
		if got := Errno(c.err); got != c.want {
			t.Errorf("Errno(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if ErrWouldBlock.Errno() == syscall.EACCES {
		t.Errorf("ErrWouldBlock maps to EACCES")
	}
}

// R18: a request is granted iff it fits the applied locks; waiters never
// block newcomers; woken waiters are granted in arrival order.
func TestR18Waiting(t *testing.T) {
	e12 := func(space Space) scenario {
		req := func(o uint64) step {
			if space == SpaceFlock {
				return flock(o, W)
			}
			return setlk(o, W, 0, 0)
		}
		unlock := func(o uint64) step { return req(o).typ(U).pid(0) }
		held := func(o uint64) Lock {
			if space == SpaceFlock {
				return flockHold(o, W)
			}
			return hold(o, W, 0, 0)
		}
		owner := func(i int) uint64 { return 0x20 + uint64(i) }
		name := func(i int) string { return fmt.Sprintf("w%d", i) }
		steps := []step{req(A)}
		var names []string
		for i := range 6 {
			steps = append(steps, wait(name(i), req(owner(i))))
			names = append(names, name(i))
		}
		steps = append(steps, queue(1, names...), unlock(A))
		for i := range 6 {
			steps = append(steps,
				done(name(i), nil),
				state(1, held(owner(i))),
				queue(1, names[i+1:]...),
				unlock(owner(i)))
		}
		return scenario{fmt.Sprintf("E12 six %s writers granted in arrival order", space), steps}
	}
	runScenarios(t, []scenario{
		{"E5m readers are not blocked by a waiting writer", []step{
			setlk(A, R, 0, 0),
			wait("b", setlk(B, W, 0, 0)),
			setlk(C, R, 0, 0),
			setlk(A, U, 0, 0),
			queue(1, "b"),
			state(1, hold(C, R, 0, 0)),
			setlk(C, U, 0, 0),
			done("b", nil),
			state(1, hold(B, W, 0, 0)),
		}},
		e12(SpacePOSIX),
		e12(SpaceFlock),
		{"each grant is checked against the ones just before it", []step{
			setlk(A, W, 0, 9),
			wait("r1", setlk(B, R, 0, 9)),
			wait("r2", setlk(C, R, 5, 5)),
			wait("w3", setlk(D, W, 0, 9)),
			wait("r4", setlk(E, R, 0, 0)),
			queue(1, "r1", "r2", "w3", "r4"),
			flush(A),
			done("r1", nil),
			done("r2", nil),
			done("r4", nil),
			queue(1, "w3"),
			state(1, hold(B, R, 0, 9), hold(C, R, 5, 5), hold(E, R, 0, 0)),
			flush(B),
			flush(C),
			queue(1, "w3"),
			flush(E),
			done("w3", nil),
			state(1, hold(D, W, 0, 9)),
		}},
		{"downgrade wakes readers", []step{
			setlk(A, W, 0, 9),
			wait("b", setlk(B, R, 0, 9)),
			wait("c", setlk(C, W, 0, 9)),
			setlk(A, R, 0, 9),
			done("b", nil),
			queue(1, "c"),
			state(1, hold(A, R, 0, 9), hold(B, R, 0, 9)),
			flush(A),
			flush(B),
			done("c", nil),
		}},
		{"a shrink grants only the waiters it frees", []step{
			setlk(A, W, 0, 99),
			wait("b", setlk(B, W, 10, 19)),
			wait("c", setlk(C, W, 60, 69)),
			setlk(A, U, 0, 49),
			done("b", nil),
			queue(1, "c"),
			state(1, hold(A, W, 50, 99), hold(B, W, 10, 19)),
			setlk(A, U, 55, 99),
			done("c", nil),
		}},
		{"waiters woken from different records are granted in arrival order", []step{
			setlk(A, W, 0, 0),
			setlk(A, W, 10, 10),
			wait("b", setlk(B, W, 10, 10)), // blocked on A's second record
			wait("c", setlk(C, W, 0, 10)),  // blocked on A's first record
			flush(A),                       // wakes c (first record), then b
			done("b", nil),
			queue(1, "c"),
			state(1, hold(B, W, 10, 10)),
			flush(B),
			done("c", nil),
		}},
		{"a woken waiter queues behind its next conflict", []step{
			setlk(A, W, 0, 0),
			setlk(C, W, 5, 5),
			wait("b", setlk(B, W, 0, 9)),
			flush(A),
			queue(1, "b"),
			flush(C),
			done("b", nil),
			state(1, hold(B, W, 0, 9)),
		}},
		{"flock downgrade wakes a shared waiter", []step{
			flock(A, W),
			wait("b", flock(B, R)),
			flock(A, R),
			done("b", nil),
			state(1, flockHold(A, R), flockHold(B, R)),
		}},
		{"a waiter whose own lock is converted keeps waiting", []step{
			setlk(A, W, 10, 10),
			setlk(B, R, 0, 5),
			wait("b", setlk(B, W, 0, 10)),
			setlk(A, U, 10, 10),
			done("b", nil),
			state(1, hold(B, W, 0, 10)),
		}},
	})
}

// R19: a cancelled wait ends in EINTR with nothing recorded.
func TestR19Interrupt(t *testing.T) {
	runScenarios(t, []scenario{
		{"cancel ends the wait with EINTR and records nothing", []step{
			setlk(A, W, 0, 9),
			wait("b", setlk(B, W, 0, 9)),
			cancel("b"),
			done("b", ErrInterrupted),
			state(1, hold(A, W, 0, 9)),
			queue(1),
			pollers(1, B),
			flush(A),
			state(1),
			pollers(1, B), // still counts as waiting (R9: usually re-sent)
			flush(B),
			stats(Stats{}),
		}},
		{"later waiters are still granted in order", []step{
			setlk(A, W, 0, 9),
			wait("b", setlk(B, W, 0, 9)),
			wait("c", setlk(C, W, 0, 9)),
			wait("d", setlk(D, W, 0, 9)),
			cancel("c"),
			done("c", ErrInterrupted),
			queue(1, "b", "d"),
			flush(A),
			done("b", nil),
			flush(B),
			done("d", nil),
			state(1, hold(D, W, 0, 9)),
		}},
		{"re-sent request waits again and is granted", []step{
			setlk(A, W, 0, 9),
			wait("b1", setlk(B, W, 0, 9)),
			cancel("b1"),
			done("b1", ErrInterrupted),
			wait("b2", setlk(B, W, 0, 9)),
			queue(1, "b2"),
			flush(A),
			done("b2", nil),
			state(1, hold(B, W, 0, 9)),
			pollers(1),
		}},
		{"R29 flock wait interrupted", []step{
			flock(A, W),
			wait("b", flock(B, W)),
			cancel("b"),
			done("b", ErrInterrupted),
			state(1, flockHold(A, W)),
		}},
		{"R27 interrupted flock upgrade has lost the old lock", []step{
			flock(A, R),
			flock(B, R),
			wait("b", flock(B, W)),
			state(1, flockHold(A, R)),
			cancel("b"),
			done("b", ErrInterrupted),
			state(1, flockHold(A, R)),
			flock(C, W).fails(ErrWouldBlock),
			flock(A, U),
			flock(C, W),
		}},
	})
	t.Run("cancelled context with a free lock is granted", func(t *testing.T) {
		e := newEnv(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := e.tb.Setlkw(ctx, posixReq(A, W, 0, 9)); err != nil {
			t.Fatalf("Setlkw with cancelled ctx on a free range: %v, want nil", err)
		}
		if got, want := e.locks(1), []Lock{hold(A, W, 0, 9)}; fmtLocks(got) != fmtLocks(want) {
			t.Fatalf("locks %s, want %s", fmtLocks(got), fmtLocks(want))
		}
		// A conflicting request with a cancelled context is interrupted.
		if err := e.tb.Setlkw(ctx, posixReq(B, W, 0, 9)); err != ErrInterrupted {
			t.Fatalf("Setlkw with cancelled ctx on a held range: %v, want ErrInterrupted", err)
		}
		e.tb.Flush(1, 0, A)
		e.tb.Flush(1, 0, B)
		e.requireEmpty()
	})
}

// holdsExactly reports whether owner holds exactly [start,end] on node.
func holdsExactly(tb *Table, node, owner uint64, typ LockType, start, end uint64) (held, other bool) {
	fs, _ := tb.FileSnapshot(node)
	for _, l := range fs.Locks {
		if l.Owner != owner || l.Class == ClassFlock {
			continue
		}
		if l.Type == typ && l.Start == start && l.End == end {
			held = true
		} else {
			other = true
		}
	}
	return held, other
}

// R19: a grant racing a cancellation never leaves a lock the caller
// thinks it does not hold, and never reports a grant it did not record.
func TestR19GrantCancelRace(t *testing.T) {
	workers, rounds := 16, 400
	if testing.Short() {
		rounds = 50
	}
	rec := &recorder{}
	tb := NewTable(Options{Observer: rec})
	var inside atomic.Int32
	var wg sync.WaitGroup
	granted := make([]int, workers)
	interrupted := make([]int, workers)
	for i := range workers {
		owner := uint64(0x100 + i)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			req := posixReq(owner, W, 0, 0)
			for range rounds {
				ctx, cancel := context.WithCancel(context.Background())
				timer := time.AfterFunc(time.Duration(rng.IntN(300))*time.Microsecond, cancel)
				err := tb.Setlkw(ctx, req)
				timer.Stop()
				cancel()
				held, other := holdsExactly(tb, 1, owner, W, 0, 0)
				if other {
					t.Errorf("owner %#x holds an unexpected range", owner)
				}
				switch err {
				case nil:
					if !held {
						t.Errorf("owner %#x: Setlkw returned nil but the lock is not recorded", owner)
					}
					if n := inside.Add(1); n != 1 {
						t.Errorf("%d owners hold the exclusive lock at once", n)
					}
					granted[i]++
					inside.Add(-1)
					if err := tb.Setlk(posixReq(owner, U, 0, 0)); err != nil {
						t.Errorf("unlock: %v", err)
					}
				case ErrInterrupted:
					if held {
						t.Errorf("owner %#x: Setlkw returned EINTR but the lock is recorded", owner)
					}
					interrupted[i]++
					if rng.IntN(2) == 0 {
						tb.Flush(1, 0, owner) // gave up; otherwise the next call is a re-send
					}
				default:
					t.Errorf("owner %#x: Setlkw: %v", owner, err)
				}
			}
			tb.Flush(1, 0, owner)
		})
	}
	wg.Wait()
	if st := tb.Stats(); st != (Stats{}) {
		t.Errorf("Stats() = %+v after the race, want zero", st)
	}
	acq := map[uint64]int{}
	intr := map[uint64]int{}
	for _, e := range rec.take() {
		switch e.Kind {
		case EventAcquired:
			acq[e.Owner]++
		case EventInterrupted:
			intr[e.Owner]++
		}
	}
	total := [2]int{}
	for i := range workers {
		owner := uint64(0x100 + i)
		if acq[owner] != granted[i] || intr[owner] != interrupted[i] {
			t.Errorf("owner %#x: %d grants and %d EINTR returned, %d acquired and %d interrupted events",
				owner, granted[i], interrupted[i], acq[owner], intr[owner])
		}
		total[0] += granted[i]
		total[1] += interrupted[i]
	}
	t.Logf("%d grants, %d interruptions", total[0], total[1])
}

// R19: the sharpest form of the race: the holder unlocks at the same
// moment as the waiter's context is cancelled.
func TestR19UnlockVersusCancel(t *testing.T) {
	rounds := 500
	if testing.Short() {
		rounds = 50
	}
	tb := NewTable(Options{})
	outcomes := map[error]int{}
	for range rounds {
		if err := tb.Setlk(posixReq(A, W, 0, 0)); err != nil {
			t.Fatalf("holder: %v", err)
		}
		w := startWait(tb, "b", posixReq(B, W, 0, 0))
		awaitQueued(t, tb, w)
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			<-start
			if err := tb.Setlk(posixReq(A, U, 0, 0)); err != nil {
				t.Errorf("unlock: %v", err)
			}
		})
		wg.Go(func() {
			<-start
			w.cancel()
		})
		close(start)
		wg.Wait()
		if !awaitDone(w) {
			t.Fatalf("waiter neither granted nor interrupted")
		}
		held, _ := holdsExactly(tb, 1, B, W, 0, 0)
		switch w.err {
		case nil:
			if !held {
				t.Fatalf("granted but not recorded")
			}
		case ErrInterrupted:
			if held {
				t.Fatalf("EINTR but the lock is recorded")
			}
		default:
			t.Fatalf("unexpected %v", w.err)
		}
		outcomes[w.err]++
		tb.Flush(1, 0, B)
		if st := tb.Stats(); st != (Stats{}) {
			t.Fatalf("Stats() = %+v after the round, want zero", st)
		}
	}
	t.Logf("granted %d, interrupted %d", outcomes[nil], outcomes[ErrInterrupted])
}

// chain builds the E7 cycle of n owners: owner i holds byte i and waits
// for byte i+1; the last waits for byte 1; owner 1 then asks for byte 2.
func chain(n int) scenario {
	owner := func(i int) uint64 { return 0x100 + uint64(i) }
	name := func(i int) string { return fmt.Sprintf("o%d", i) }
	var steps []step
	for i := 1; i <= n; i++ {
		steps = append(steps, setlk(owner(i), W, uint64(i), uint64(i)))
	}
	for i := 2; i <= n; i++ {
		next := uint64(i + 1)
		if i == n {
			next = 1
		}
		steps = append(steps, wait(name(i), setlk(owner(i), W, next, next)))
	}
	closing := setlk(owner(1), W, 2, 2)
	title := fmt.Sprintf("E7 cycle of %d owners", n)
	if n <= 12 {
		title += " is EDEADLK"
		steps = append(steps, closing.blocking().fails(ErrDeadlock))
	} else {
		title += " is not detected and blocks"
		steps = append(steps,
			wait(name(1), closing),
			stillBlocked(name(1)),
			cancel(name(1)),
			done(name(1), ErrInterrupted))
	}
	// Unwind: every waiter is granted in turn.
	steps = append(steps, setlk(owner(1), U, 1, 1), done(name(n), nil))
	for i := n; i >= 3; i-- {
		steps = append(steps, flush(owner(i)), done(name(i-1), nil))
	}
	return scenario{title, steps}
}

// R20: EDEADLK exactly as posix_locks_deadlock.
func TestR20Deadlock(t *testing.T) {
	runScenarios(t, []scenario{
		{"E5i two owners", []step{
			setlk(A, W, 0, 0),
			setlk(B, W, 1, 1),
			wait("a", setlk(A, W, 1, 1)),
			setlk(B, W, 0, 0).blocking().fails(ErrDeadlock),
			queue(1, "a"),
			state(1, hold(A, W, 0, 0), hold(B, W, 1, 1)),
			setlk(B, U, 1, 1),
			done("a", nil),
			state(1, hold(A, W, 0, 1)),
		}},
		chain(2),
		chain(11),
		chain(12),
		chain(13),
		{"across files", []step{
			setlk(A, W, 0, 0),
			setlk(B, W, 0, 0).on(2),
			wait("a", setlk(A, W, 0, 0).on(2)),
			setlk(B, W, 0, 0).blocking().fails(ErrDeadlock),
			setlk(B, U, 0, 0).on(2),
			done("a", nil),
		}},
		{"never for flock", []step{
			flock(A, W),
			flock(B, W).on(2),
			wait("a", flock(A, W).on(2)),
			wait("b", flock(B, W)),
			stillBlocked("a"),
			stillBlocked("b"),
			cancel("a"),
			done("a", ErrInterrupted),
			cancel("b"),
			done("b", ErrInterrupted),
		}},
		{"an existing waiter is re-checked when it retries", []step{
			setlk(C, W, 15, 15),
			setlk(A, W, 10, 10),
			setlk(B, W, 0, 0),
			wait("a", setlk(A, W, 0, 0)),  // A waits for B
			wait("b", setlk(B, W, 5, 20)), // first conflict is C's: no cycle yet
			queue(1, "a", "b"),
			setlk(C, U, 15, 15), // B retries, now blocked by A: cycle
			done("b", ErrDeadlock),
			queue(1, "a"),
			state(1, hold(A, W, 10, 10), hold(B, W, 0, 0)),
			setlk(B, U, 0, 0),
			done("a", nil),
			state(1, hold(A, W, 0, 0), hold(A, W, 10, 10)),
		}},
		{"the walk follows the owner's most recent wait (cycle found)", []step{
			setlk(A, W, 0, 0),
			setlk(B, W, 1, 1),
			setlk(C, W, 2, 2),
			wait("b2", setlk(B, W, 2, 2)), // older wait: for C
			wait("b0", setlk(B, W, 0, 0)), // newer wait: for A
			setlk(A, W, 1, 1).blocking().fails(ErrDeadlock),
			cancel("b0"),
			done("b0", ErrInterrupted),
			cancel("b2"),
			done("b2", ErrInterrupted),
		}},
		{"the walk follows the owner's most recent wait (cycle missed)", []step{
			setlk(A, W, 0, 0),
			setlk(B, W, 1, 1),
			setlk(C, W, 2, 2),
			wait("b0", setlk(B, W, 0, 0)), // older wait: for A
			wait("b2", setlk(B, W, 2, 2)), // newer wait: for C, who waits for nobody
			wait("a", setlk(A, W, 1, 1)),
			stillBlocked("a"),
			cancel("a"),
			done("a", ErrInterrupted),
			cancel("b0"),
			done("b0", ErrInterrupted),
			cancel("b2"),
			done("b2", ErrInterrupted),
		}},
		{"skipped for an OFD requester (F_OFD_GETLK evidence)", []step{
			getlk(O1, U, 0, 0),
			setlk(O1, W, 0, 0),
			setlk(B, W, 1, 1),
			wait("b", setlk(B, W, 0, 0)),
			wait("o", setlk(O1, W, 1, 1)),
			stillBlocked("o"),
			stillBlocked("b"),
			cancel("o"),
			done("o", ErrInterrupted),
			cancel("b"),
			done("b", ErrInterrupted),
		}},
		{"skipped for an OFD requester (flock evidence)", []step{
			flock(O1, R),
			setlk(O1, W, 0, 0),
			setlk(B, W, 1, 1),
			wait("b", setlk(B, W, 0, 0)),
			wait("o", setlk(O1, W, 1, 1)),
			stillBlocked("o"),
			cancel("o"),
			done("o", ErrInterrupted),
			cancel("b"),
			done("b", ErrInterrupted),
		}},
		{"skipped for an OFD requester learnt after others waited on it", []step{
			setlk(O1, W, 0, 0),
			setlk(B, W, 1, 1),
			wait("b", setlk(B, W, 0, 0)), // O1 not yet known as OFD: hashed
			getlk(O1, U, 0, 0).answers(hold(O1, W, 0, 0, asOFD())),
			wait("o", setlk(O1, W, 1, 1)), // an OFD request: no walk (kernel: blocks)
			stillBlocked("o"),
			cancel("o"),
			done("o", ErrInterrupted),
			cancel("b"),
			done("b", ErrInterrupted),
		}},
		{"a classic requester finds a cycle through an OFD waiter", []step{
			getlk(O1, U, 0, 0),
			setlk(O1, W, 0, 0),
			setlk(B, W, 1, 1),
			wait("o", setlk(O1, W, 1, 1)), // blocked on a classic lock: hashed
			setlk(B, W, 0, 0).blocking().fails(ErrDeadlock),
			setlk(B, U, 1, 1),
			done("o", nil),
		}},
		{"waits on OFD locks are not followed", []step{
			getlk(O1, U, 0, 0),
			setlk(O1, W, 0, 0),
			setlk(A, W, 1, 1),
			setlk(C, W, 2, 2),
			wait("a", setlk(A, W, 0, 0)),  // blocked on an OFD lock: not hashed
			wait("o", setlk(O1, W, 2, 2)), // OFD requester blocked on C
			wait("c", setlk(C, W, 1, 1)),  // C → A → (OFD) → C: not found
			stillBlocked("c"),
			cancel("c"),
			done("c", ErrInterrupted),
			cancel("o"),
			done("o", ErrInterrupted),
			cancel("a"),
			done("a", ErrInterrupted),
		}},
	})
}

// R20 under concurrency: dining philosophers, each a POSIX owner taking
// a whole-file lock on its left and then its right file with Setlkw.
// Every cycle is at most five owners long, so it must be reported with
// EDEADLK (the philosopher then puts its left fork down and retries); a
// missed cycle would hang until mustFinishWait and fail the test.
func TestR20DiningPhilosophers(t *testing.T) {
	const philosophers = 5
	rounds := 200
	if testing.Short() {
		rounds = 30
	}
	tb := NewTable(Options{})
	var eating [philosophers + 1]atomic.Int32 // per node: owners holding it
	var deadlocks atomic.Int64
	var wg sync.WaitGroup
	for p := range philosophers {
		owner := uint64(0x200 + p)
		left, right := uint64(p+1), uint64((p+1)%philosophers+1)
		lock := func(node uint64) Request {
			r := posixReq(owner, W, 0, Max)
			r.Node = node
			return r
		}
		wg.Go(func() {
			for done := 0; done < rounds; {
				ctx, cancel := context.WithTimeout(context.Background(), mustFinishWait)
				err := tb.Setlkw(ctx, lock(left))
				if err != nil {
					cancel()
					t.Errorf("philosopher %d, left fork: %v (holding nothing, it cannot deadlock)", p, err)
					return
				}
				runtime.Gosched() // let the neighbours take their left forks
				err = tb.Setlkw(ctx, lock(right))
				cancel()
				switch err {
				case nil:
				case ErrDeadlock:
					deadlocks.Add(1)
					tb.Flush(left, 0, owner)
					continue
				default:
					t.Errorf("philosopher %d, right fork: %v (a missed deadlock hangs)", p, err)
					tb.Flush(left, 0, owner)
					tb.Flush(right, 0, owner)
					return
				}
				for _, n := range []uint64{left, right} {
					if c := eating[n].Add(1); c != 1 {
						t.Errorf("node %d held by %d owners at once", n, c)
					}
				}
				for _, n := range []uint64{left, right} {
					eating[n].Add(-1)
				}
				tb.Flush(left, 0, owner)
				tb.Flush(right, 0, owner)
				done++
			}
		})
	}
	wg.Wait()
	if st := tb.Stats(); st != (Stats{}) {
		t.Errorf("Stats() = %+v at the end, want zero", st)
	}
	t.Logf("%d meals, %d EDEADLK", philosophers*rounds, deadlocks.Load())
}

// R23: F_OFD_GETLK with F_UNLCK returns the first own overlapping lock.
func TestR23GetlkUnlock(t *testing.T) {
	runScenarios(t, []scenario{
		{"E6-3 own lock, or F_UNLCK", []step{
			setlk(O1, W, 10, 19),
			getlk(O1, U, 0, 99).answers(hold(O1, W, 10, 19, asOFD())),
			getlk(O1, U, 50, 99).answers(noLock),
		}},
		{"another owner's lock is never reported", []step{
			setlk(B, R, 0, 59),
			setlk(O1, R, 50, 59),
			setlk(O1, W, 70, 79),
			getlk(O1, U, 0, 99).answers(hold(O1, R, 50, 59, asOFD())),
			getlk(O1, U, 60, 99).answers(hold(O1, W, 70, 79, asOFD())),
			getlk(O1, U, 0, 49).answers(noLock),
			getlk(O1, U, 0, 99).on(2).answers(noLock),
		}},
		{"a classic owner's F_UNLCK query is forged: EINVAL, nothing learnt", []step{
			setlk(A, W, 0, 9),
			setlk(A, W, 20, 29).via(0xA2), // two descriptions: POSIX-class (R24)
			getlk(A, U, 0, 99).fails(ErrInvalid),
			state(1, hold(A, W, 0, 9), hold(A, W, 20, 29, withFh(0xA2))),
			stats(Stats{Files: 1, Records: 2}),
		}},
		{"the query is remembered until RELEASE", []step{
			getlk(O1, U, 0, 99),
			stats(Stats{Files: 1, Handles: 1}),
			release(O1),
			stats(Stats{}),
		}},
	})
}

// R25: the pid of an OFD-class holder is reported as 0.
func TestR25OFDPid(t *testing.T) {
	runScenarios(t, []scenario{
		{"OFD evidence before the lock", []step{
			getlk(O1, U, 0, 0),
			setlk(O1, W, 0, 9),
			getlk(B, W, 5, 5).answers(hold(O1, W, 0, 9, asOFD(), withPid(0))),
			state(1, hold(O1, W, 0, 9, asOFD())),
		}},
		{"OFD evidence after the lock reclassifies it", []step{
			setlk(O1, W, 0, 9),
			getlk(B, W, 5, 5).answers(hold(O1, W, 0, 9)),
			getlk(O1, U, 0, 0).answers(hold(O1, W, 0, 9, asOFD())),
			getlk(B, W, 5, 5).answers(hold(O1, W, 0, 9, asOFD(), withPid(0))),
		}},
		{"flock on the description is evidence", []step{
			flock(O1, R),
			setlk(O1, W, 0, 9),
			getlk(B, R, 0, 0).answers(hold(O1, W, 0, 9, asOFD(), withPid(0))),
		}},
		{"a classic owner through the same fh keeps its pid", []step{
			flock(O1, R),
			setlk(A, W, 0, 9).via(O1),
			getlk(B, R, 0, 0).answers(hold(A, W, 0, 9, withFh(O1))),
		}},
	})
}

// R26: flock and POSIX spaces never interact.
func TestR26Spaces(t *testing.T) {
	runScenarios(t, []scenario{
		{"E4 flock EX and a whole-file POSIX write coexist", []step{
			flock(O1, W),
			setlk(B, W, 0, Max),
			getlk(C, W, 0, Max).answers(hold(B, W, 0, Max)),
			flock(O2, W).fails(ErrWouldBlock),
			setlk(C, W, 0, 0).fails(ErrWouldBlock),
			state(1, hold(B, W, 0, Max), flockHold(O1, W)),
		}},
		{"same process: flock on one description, fcntl on another", []step{
			flock(O1, W),
			setlk(A, W, 0, Max).via(O2),
			getlk(C, R, 0, 0).answers(hold(A, W, 0, Max, withFh(O2))),
		}},
		{"Getlk in the flock space is invalid", []step{
			flock(A, W),
			getlk(B, W, 0, Max).inSpace(SpaceFlock).fails(ErrInvalid),
			getlk(B, W, 0, Max).answers(noLock),
		}},
	})
}

// R27: flock conversion drops the old lock first.
func TestR27FlockConversion(t *testing.T) {
	runScenarios(t, []scenario{
		{"E6-1 failed non-blocking upgrade loses the old lock", []step{
			flock(A, R),
			flock(B, R),
			flock(B, W).fails(ErrWouldBlock),
			state(1, flockHold(A, R)),
			flock(A, U),
			flock(C, W),
			state(1, flockHold(C, W)),
		}},
		{"E6-2 blocking upgrade loses to an earlier queued EX", []step{
			flock(A, R),
			flock(B, R),
			wait("c", flock(C, W)),
			wait("b", flock(B, W)),
			queue(1, "c", "b"),
			state(1, flockHold(A, R)),
			flock(A, U),
			done("c", nil),
			state(1, flockHold(C, W)),
			queue(1, "b"),
			flock(C, U),
			done("b", nil),
			state(1, flockHold(B, W)),
		}},
		{"the same type changes nothing", []step{
			flock(A, R).pid(1),
			flock(A, R).pid(2),
			flock(B, R),
			state(1, flockHold(A, R, withPid(1)), flockHold(B, R)),
		}},
		{"conversion alone succeeds and moves to the tail", []step{
			flock(A, W),
			flock(A, R),
			flock(B, R),
			flock(A, W).fails(ErrWouldBlock),
			state(1, flockHold(B, R)),
			flock(A, R),
			flock(B, R),
			state(1, flockHold(B, R), flockHold(A, R)),
		}},
	})
}

// R28: LOCK_UN always succeeds; flock locks belong to the description.
func TestR28FlockUnlock(t *testing.T) {
	runScenarios(t, []scenario{
		{"LOCK_UN with nothing held, as SETLK and SETLKW", []step{
			flock(A, U),
			flock(A, U).blocking(),
			state(1),
			// flock(2) was called on the description: remembered (R24).
			stats(Stats{Files: 1, Handles: 1}),
		}},
		{"blocking LOCK_UN wakes a waiter", []step{
			flock(A, W),
			wait("b", flock(B, R)),
			flock(A, U).blocking(),
			done("b", nil),
			state(1, flockHold(B, R)),
		}},
		{"E4 flock survives FLUSH", []step{
			flock(O1, W),
			flush(O1),
			flush(A),
			state(1, flockHold(O1, W)),
			release(O1).flockUnlock(O1),
			state(1),
		}},
	})
}

// Invalid requests get EINVAL and change nothing: no state, no event.
func TestInvalidRequests(t *testing.T) {
	bad := []struct {
		name string
		req  Request
	}{
		{"type 3", Request{Type: 3, Start: 0, End: 9}},
		{"type max", Request{Type: 0xffffffff, Start: 0, End: 9}},
		{"start > end", Request{Type: W, Start: 10, End: 9}},
		{"end > OffsetMax", Request{Type: W, Start: 0, End: Max + 1}},
		{"start and end > OffsetMax", Request{Type: R, Start: Max + 1, End: 1<<64 - 1}},
		{"unlock with start > end", Request{Type: U, Start: 10, End: 9}},
		{"space 2", Request{Type: W, Start: 0, End: 9, Space: 2}},
		{"space 255", Request{Type: R, Start: 0, End: 9, Space: 255}},
		{"flock type 3", Request{Type: 3, Space: SpaceFlock}},
	}
	for _, b := range bad {
		for _, op := range []string{"Setlk", "Setlkw", "Getlk"} {
			t.Run(b.name+"/"+op, func(t *testing.T) {
				e := newEnv(t)
				// Existing state: A holds a write lock and a flock lock;
				// B waits; C polls.
				must(t, e.tb.Setlk(posixReq(A, W, 0, 99)))
				must(t, e.tb.Setlk(flockReq(A, W)))
				w := startWait(e.tb, "b", posixReq(B, W, 0, 0))
				awaitQueued(t, e.tb, w)
				if err := e.tb.Setlk(posixReq(C, R, 5, 5)); err != ErrWouldBlock {
					t.Fatalf("setup: %v", err)
				}
				before, _ := e.tb.FileSnapshot(1)
				stBefore := e.tb.Stats()
				nev := e.rec.count()

				req := b.req
				req.Node, req.Owner, req.Fh, req.Pid = 1, D, D, pidOf(D)
				var err error
				switch op {
				case "Setlk":
					err = e.tb.Setlk(req)
				case "Setlkw":
					ctx, cancel := context.WithTimeout(context.Background(), mustFinishWait)
					err = e.tb.Setlkw(ctx, req)
					cancel()
				case "Getlk":
					var l Lock
					l, err = e.tb.Getlk(req)
					if l != (Lock{}) {
						t.Errorf("Getlk answer %s with the error, want zero", fmtLock(l))
					}
				}
				if err != ErrInvalid {
					t.Fatalf("%s(%+v) = %v, want ErrInvalid", op, req, err)
				}
				after, _ := e.tb.FileSnapshot(1)
				if fmtLocks(after.Locks) != fmtLocks(before.Locks) || len(after.Waiters) != len(before.Waiters) {
					t.Errorf("state changed:\n%s\nwant %s", fmtLocks(after.Locks), fmtLocks(before.Locks))
				}
				if st := e.tb.Stats(); st != stBefore {
					t.Errorf("Stats() = %+v, want %+v", st, stBefore)
				}
				if n := e.rec.count(); n != nev {
					t.Errorf("%d events emitted for an invalid request", n-nev)
				}
				e.tb.Flush(1, 0, A)
				e.tb.Release(ReleaseRequest{Node: 1, Fh: A, Owner: A, FlockUnlock: true})
				if !awaitDone(w) || w.err != nil {
					t.Fatalf("waiter: %v", w.err)
				}
				e.tb.Flush(1, 0, B)
				e.tb.Flush(1, 0, C)
				e.tb.Release(ReleaseRequest{Node: 1, Fh: D})
				e.requireEmpty()
			})
		}
	}
	// An invalid request on a node that has no state creates none.
	e := newEnv(t)
	if _, err := e.tb.Getlk(Request{Node: 4, Owner: O1, Fh: O1, Type: U, Start: 9, End: 0}); err != ErrInvalid {
		t.Fatalf("Getlk(F_UNLCK, 9..0) = %v, want ErrInvalid", err)
	}
	if err := e.tb.Setlk(Request{Node: 4, Owner: O1, Fh: O1, Type: 7, Space: SpaceFlock}); err != ErrInvalid {
		t.Fatalf("flock type 7 = %v, want ErrInvalid", err)
	}
	e.requireEmpty()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------------
// Observer events.

// wantEvent checks the fields of e that matter for its kind.
func wantEvent(t *testing.T, i int, got, want Event) {
	t.Helper()
	got.Time, want.Time = time.Time{}, time.Time{}
	if got != want {
		t.Errorf("event %d:\n got %+v\nwant %+v", i, got, want)
	}
}

func checkEvents(t *testing.T, got []Event, want []Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("events %s\nwant %s", eventKinds(got), eventKinds(want))
	}
	for i := range got {
		wantEvent(t, i, got[i], want[i])
	}
}

// evAcq etc. build expected events on node 1 through fh == owner.
func evAcq(o uint64, typ LockType, s, e uint64, attempts int, waited time.Duration) Event {
	return Event{Kind: EventAcquired, Node: 1, Fh: o, Owner: o, Type: typ, Start: s, End: e,
		Pid: pidOf(o), Attempts: attempts, Waited: waited}
}

func evRel(o uint64, typ LockType, s, e uint64, held time.Duration, why ReleaseReason) Event {
	return Event{Kind: EventReleased, Node: 1, Fh: o, Owner: o, Type: typ, Start: s, End: e,
		Pid: pidOf(o), Held: held, Reason: why}
}

func evWait(o uint64, typ LockType, s, e uint64, blocker uint64) Event {
	return Event{Kind: EventWaiting, Node: 1, Fh: o, Owner: o, Type: typ, Start: s, End: e,
		Pid: pidOf(o), BlockerOwner: blocker, BlockerPid: pidOf(blocker)}
}

func flockEv(e Event) Event {
	e.Class = ClassFlock
	e.Start, e.End = 0, Max
	return e
}

func TestEventsPollerGranted(t *testing.T) {
	const refusals = 4
	e := newEnv(t)
	must(t, e.tb.Setlk(posixReq(A, W, 0, 9)))
	e.clock.Advance(time.Second)
	for range refusals {
		if err := e.tb.Setlk(posixReq(B, W, 5, 5)); err != ErrWouldBlock {
			t.Fatalf("poll: %v", err)
		}
		e.clock.Advance(100 * time.Millisecond)
	}
	fs, _ := e.tb.FileSnapshot(1)
	if len(fs.Waiters) != 1 || fs.Waiters[0].Blocked || fs.Waiters[0].Attempts != refusals ||
		fs.Waiters[0].Blocker == nil || fs.Waiters[0].Blocker.Owner != A {
		t.Fatalf("waiters %+v, want one poller with %d attempts blocked by A", fs.Waiters, refusals)
	}
	must(t, e.tb.Setlk(posixReq(A, U, 0, 9)))
	must(t, e.tb.Setlk(posixReq(B, W, 5, 5)))
	checkEvents(t, e.rec.take(), []Event{
		evAcq(A, W, 0, 9, 1, 0),
		evWait(B, W, 5, 5, A),
		{Kind: EventReleased, Node: 1, Fh: A, Owner: A, Type: W, Start: 0, End: 9, Pid: pidOf(A),
			Held: time.Second + refusals*100*time.Millisecond, Reason: ReasonUnlock},
		evAcq(B, W, 5, 5, refusals+1, refusals*100*time.Millisecond),
	})
	e.tb.Flush(1, 0, B)
	checkEvents(t, e.rec.take(), []Event{evRel(B, W, 5, 5, 0, ReasonClose)})
	e.requireEmpty()
}

func TestEventsInterruptedResent(t *testing.T) {
	e := newEnv(t)
	must(t, e.tb.Setlk(posixReq(A, W, 0, 9)))
	w := startWait(e.tb, "b", posixReq(B, W, 0, 9))
	awaitQueued(t, e.tb, w)
	e.clock.Advance(2 * time.Second)
	w.cancel()
	if !awaitDone(w) || w.err != ErrInterrupted {
		t.Fatalf("first wait: %v, want ErrInterrupted", w.err)
	}
	e.clock.Advance(time.Second)
	w2 := startWait(e.tb, "b2", posixReq(B, W, 0, 9))
	awaitQueued(t, e.tb, w2)
	e.clock.Advance(time.Second)
	must(t, e.tb.Setlk(posixReq(A, U, 0, 9)))
	if !awaitDone(w2) || w2.err != nil {
		t.Fatalf("re-sent wait: %v, want nil", w2.err)
	}
	w2.cancel()
	checkEvents(t, e.rec.take(), []Event{
		evAcq(A, W, 0, 9, 1, 0),
		evWait(B, W, 0, 9, A),
		{Kind: EventInterrupted, Node: 1, Fh: B, Owner: B, Type: W, Start: 0, End: 9, Pid: pidOf(B),
			Waited: 2 * time.Second, Attempts: 1},
		evRel(A, W, 0, 9, 4*time.Second, ReasonUnlock),
		evAcq(B, W, 0, 9, 2, 4*time.Second),
	})
	e.tb.Flush(1, 0, B)
	e.requireEmpty()
}

func TestEventsGaveUp(t *testing.T) {
	e := newEnv(t)
	must(t, e.tb.Setlk(posixReq(A, W, 0, 9)))
	must(t, e.tb.Setlk(flockReq(O1, W)))
	if err := e.tb.Setlk(posixReq(B, R, 0, 0)); err != ErrWouldBlock {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	if err := e.tb.Setlk(posixReq(B, R, 0, 0)); err != ErrWouldBlock {
		t.Fatal(err)
	}
	if err := e.tb.Setlk(flockReq(O2, R)); err != ErrWouldBlock {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	e.tb.Flush(1, 0, B)
	e.tb.Release(ReleaseRequest{Node: 1, Fh: O2, Owner: O2, FlockUnlock: true})
	checkEvents(t, e.rec.take(), []Event{
		evAcq(A, W, 0, 9, 1, 0),
		flockEv(evAcq(O1, W, 0, 0, 1, 0)),
		evWait(B, R, 0, 0, A),
		flockEv(evWait(O2, R, 0, 0, O1)),
		{Kind: EventGaveUp, Node: 1, Fh: B, Owner: B, Type: R, Start: 0, End: 0, Pid: pidOf(B),
			Waited: 2 * time.Second, Attempts: 2},
		flockEv(Event{Kind: EventGaveUp, Node: 1, Fh: O2, Owner: O2, Type: R, Pid: pidOf(O2),
			Waited: time.Second, Attempts: 1}),
	})
	e.tb.Flush(1, 0, A)
	e.tb.Release(ReleaseRequest{Node: 1, Fh: O1, Owner: O1, FlockUnlock: true})
	checkEvents(t, e.rec.take(), []Event{
		evRel(A, W, 0, 9, 2*time.Second, ReasonClose),
		flockEv(evRel(O1, W, 0, 0, 2*time.Second, ReasonRelease)),
	})
	e.requireEmpty()
}

func TestEventsReleaseReasons(t *testing.T) {
	e := newEnv(t)
	tb := e.tb
	// unlock: only the bytes given up are reported.
	must(t, tb.Setlk(posixReq(A, W, 0, 99)))
	e.clock.Advance(time.Second)
	must(t, tb.Setlk(posixReq(A, U, 40, 59)))
	// convert: a POSIX downgrade of part of a range.
	must(t, tb.Setlk(posixReq(A, R, 0, 9)))
	// close (FLUSH) of the rest.
	e.clock.Advance(time.Second)
	tb.Flush(1, 0, A)
	// release (RELEASE) of an OFD lock; convert of a flock lock.
	must(t, tb.Setlk(posixReq(O1, W, 0, 0)))
	must(t, tb.Setlk(flockReq(O1, R)))
	must(t, tb.Setlk(flockReq(O1, W)))
	tb.Release(ReleaseRequest{Node: 1, Fh: O1, Owner: O1, FlockUnlock: true})
	ofd := func(ev Event) Event { ev.Class = ClassOFD; return ev }
	checkEvents(t, e.rec.take(), []Event{
		evAcq(A, W, 0, 99, 1, 0),
		evRel(A, W, 40, 59, time.Second, ReasonUnlock),
		evRel(A, W, 0, 9, time.Second, ReasonConvert),
		evAcq(A, R, 0, 9, 1, 0),
		evRel(A, R, 0, 9, time.Second, ReasonClose),
		evRel(A, W, 10, 39, 2*time.Second, ReasonClose),
		evRel(A, W, 60, 99, 2*time.Second, ReasonClose),
		evAcq(O1, W, 0, 0, 1, 0),
		flockEv(evAcq(O1, R, 0, 0, 1, 0)),
		flockEv(evRel(O1, R, 0, 0, 0, ReasonConvert)),
		flockEv(evAcq(O1, W, 0, 0, 1, 0)),
		flockEv(evRel(O1, W, 0, 0, 0, ReasonRelease)),
		ofd(evRel(O1, W, 0, 0, 0, ReasonRelease)),
	})
	e.requireEmpty()
}

func TestEventsDeadlock(t *testing.T) {
	e := newEnv(t)
	must(t, e.tb.Setlk(posixReq(A, W, 0, 0)))
	must(t, e.tb.Setlk(posixReq(B, W, 1, 1)))
	w := startWait(e.tb, "a", posixReq(A, W, 1, 1))
	awaitQueued(t, e.tb, w)
	if err := e.tb.Setlkw(context.Background(), posixReq(B, W, 0, 0)); err != ErrDeadlock {
		t.Fatalf("B: %v, want ErrDeadlock", err)
	}
	e.tb.Flush(1, 0, B)
	if !awaitDone(w) || w.err != nil {
		t.Fatalf("A: %v, want granted", w.err)
	}
	w.cancel()
	checkEvents(t, e.rec.take(), []Event{
		evAcq(A, W, 0, 0, 1, 0),
		evAcq(B, W, 1, 1, 1, 0),
		evWait(A, W, 1, 1, B),
		{Kind: EventDeadlock, Node: 1, Fh: B, Owner: B, Type: W, Start: 0, End: 0, Pid: pidOf(B),
			BlockerOwner: A, BlockerPid: pidOf(A)},
		evRel(B, W, 1, 1, 0, ReasonClose),
		evAcq(A, W, 1, 1, 1, 0),
	})
	e.tb.Flush(1, 0, A)
	e.requireEmpty()
}

// A request that changes nothing emits nothing.
func TestEventsNoChangeNoEvent(t *testing.T) {
	e := newEnv(t)
	must(t, e.tb.Setlk(posixReq(A, W, 0, 99)))
	must(t, e.tb.Setlk(flockReq(A, R)))
	e.rec.take()
	must(t, e.tb.Setlk(posixReq(A, W, 10, 20)))
	must(t, e.tb.Setlk(posixReq(A, U, 200, 300)))
	must(t, e.tb.Setlk(flockReq(A, R)))
	must(t, e.tb.Setlk(flockReq(B, U)))
	if _, err := e.tb.Getlk(posixReq(B, W, 0, 0)); err != nil {
		t.Fatal(err)
	}
	e.tb.Flush(1, 0, C)
	e.tb.Release(ReleaseRequest{Node: 1, Fh: C})
	if got := e.rec.take(); len(got) != 0 {
		t.Fatalf("events %s, want none", eventKinds(got))
	}
	e.tb.Flush(1, 0, A)
	e.tb.Release(ReleaseRequest{Node: 1, Fh: A, Owner: A, FlockUnlock: true})
	e.tb.Release(ReleaseRequest{Node: 1, Fh: B, Owner: B, FlockUnlock: true})
	e.requireEmpty()
}
