package semaphores

// Leaks (issue 5, items 4 and 6): the engine keeps no state for owners
// and handles that are gone, however many come and go (the kernel
// recycles both, LOCK-SEMANTICS R4 and G2), starts no goroutine that
// outlives a call, and a description owner value the kernel has already
// given to a new open file description must not let the late RELEASE of
// the old description take the new one's lock.

import (
	"context"
	"errors"
	"math/rand"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestNoGoroutineLeft: blocked waits that are granted, interrupted or
// refused with EDEADLK, on many files at once, leave no goroutine
// behind once every call has returned.
func TestNoGoroutineLeft(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	tb := NewTable(Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for node := uint64(1); node <= 20; node++ {
		if err := tb.Setlk(Request{Node: node, Fh: 1, Owner: 1, Type: WriteLock, End: OffsetMax}); err != nil {
			t.Fatal(err)
		}
		for o := uint64(2); o < 12; o++ {
			wg.Add(1)
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(o%3)*5*time.Millisecond+time.Millisecond)
			go func() {
				defer wg.Done()
				defer cancel()
				req := Request{Node: node, Fh: o, Owner: o, Type: WriteLock, End: OffsetMax}
				if o%2 == 0 {
					req.Space = SpaceFlock
				}
				if o%4 == 1 {
					ctx = context.Background() // waits for the grant
				}
				err := tb.Setlkw(ctx, req)
				switch {
				case err == nil:
					tb.Flush(node, 0, o)
					tb.Release(ReleaseRequest{Node: node, Fh: o, Owner: o, FlockUnlock: req.Space == SpaceFlock})
				case errors.Is(err, ErrInterrupted), errors.Is(err, ErrDeadlock):
					// EDEADLK is genuine here: once owner 1 lets go, the
					// waiters hold some files and wait for others, and
					// POSIX waiters form real cycles (the kernel refuses
					// them too).
					tb.Flush(node, 0, o)
					tb.Release(ReleaseRequest{Node: node, Fh: o, Owner: o, FlockUnlock: req.Space == SpaceFlock})
				default:
					errs <- err
				}
			}()
		}
	}
	time.Sleep(20 * time.Millisecond)
	for node := uint64(1); node <= 20; node++ {
		tb.Flush(node, 0, 1)
		tb.Release(ReleaseRequest{Node: node, Fh: 1})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Setlkw: %v", err)
	}
	if st := tb.Stats(); st != (Stats{}) {
		t.Errorf("state left: %+v", st)
	}
}

// TestRecycledOwnersLeaveNothing runs LOCKFS_ENGINE_CYCLES (default
// 200,000; 1,000,000 is the figure) open/lock/unlock/close
// cycles from several goroutines, the way the kernel presents them:
// classic owners are processes (a handful of values, reused), OFD and
// flock owners are open file descriptions (values reused once released),
// file handles are reused after RELEASE. Blocking waits time out now and
// then (EINTR). At the end the tables are empty and the heap has not
// grown with the number of cycles.
func TestRecycledOwnersLeaveNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	total := 200000
	if testing.Short() {
		total = 20000
	}
	if v, err := strconv.Atoi(os.Getenv("LOCKFS_ENGINE_CYCLES")); err == nil {
		total = v
	}
	const workers, nodes = 4, 8
	tb := NewTable(Options{Observer: &countingObserver{}})
	var heapEarly uint64
	var once sync.Once
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w + 1)))
			for i := 0; i < total/workers; i++ {
				if w == 0 && i == total/workers/10 {
					once.Do(func() { heapEarly = heapInUse() })
				}
				node := uint64(1 + rng.Intn(nodes))
				// This worker's processes and descriptions: small pools of
				// values, reused as the kernel reuses addresses; fh numbers
				// are per worker so that open descriptions never share one.
				proc := uint64(1000*(w+1) + rng.Intn(4))
				desc := uint64(1<<40 + 1000*(w+1) + rng.Intn(4))
				fh := uint64(100*(w+1) + rng.Intn(4))
				var req Request
				switch i % 3 {
				case 0:
					req = Request{Node: node, Fh: fh, Owner: proc, Type: WriteLock, Start: uint64(rng.Intn(10)), End: OffsetMax}
				case 1:
					req = Request{Node: node, Fh: fh, Owner: desc, Type: LockType(rng.Intn(2)), End: uint64(rng.Intn(100))}
				default:
					req = Request{Node: node, Fh: fh, Owner: desc, Space: SpaceFlock, Type: LockType(rng.Intn(2))}
				}
				var err error
				if rng.Intn(10) == 0 {
					ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
					err = tb.Setlkw(ctx, req)
					cancel()
				} else {
					err = tb.Setlk(req)
				}
				if err != nil && !errors.Is(err, ErrWouldBlock) && !errors.Is(err, ErrInterrupted) && !errors.Is(err, ErrDeadlock) {
					errs <- err
					return
				}
				if err == nil && rng.Intn(2) == 0 {
					unlock := req
					unlock.Type = Unlock
					if err := tb.Setlk(unlock); err != nil {
						errs <- err
						return
					}
				}
				// close: FLUSH by the process, then RELEASE of the
				// description (flock unlock flag once flock was used).
				tb.Flush(node, 0, proc)
				tb.Release(ReleaseRequest{Node: node, Fh: fh, Owner: desc, FlockUnlock: req.Space == SpaceFlock})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("unexpected error: %v", err)
	}
	if st := tb.Stats(); st != (Stats{}) {
		t.Errorf("after %d cycles, every owner closed: %+v, want nothing", total, st)
	}
	if s := tb.Snapshot(); len(s.Files) != 0 {
		t.Errorf("snapshot lists %d files", len(s.Files))
	}
	heapLate := heapInUse()
	t.Logf("%d cycles: heap in use %d KiB after 10%%, %d KiB at the end", total, heapEarly>>10, heapLate>>10)
	if heapLate > heapEarly+8<<20 {
		t.Errorf("heap grew from %d KiB to %d KiB over the cycles", heapEarly>>10, heapLate>>10)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

type countingObserver struct {
	mu sync.Mutex
	n  map[EventKind]int
}

func (o *countingObserver) LockEvent(e Event) {
	o.mu.Lock()
	if o.n == nil {
		o.n = map[EventKind]int{}
	}
	o.n[e.Kind]++
	o.mu.Unlock()
}

// TestRecycledDescriptionOwnerBeforeRelease: the kernel frees an open
// file description before lockfs handles its RELEASE (RELEASE is sent
// asynchronously, LOCK-SEMANTICS R3) and may give the same address,
// hence the same owner value (R4), to the very next open. The engine
// then sees owner X lock through the new handle while X's old lock
// through the old handle is still recorded; the old handle's late
// RELEASE must end only the old description's lock. The handle (Fh)
// names a description unambiguously: go-fuse frees it only after
// RELEASE.
func TestRecycledDescriptionOwnerBeforeRelease(t *testing.T) {
	const node, x, y = 1, 0xabc, 0xdef
	for _, c := range []struct {
		name  string
		space Space
		late  ReleaseRequest
	}{
		{"flock", SpaceFlock, ReleaseRequest{Node: node, Fh: 1, Owner: x, FlockUnlock: true}},
		{"ofd", SpacePOSIX, ReleaseRequest{Node: node, Fh: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tb := NewTable(Options{})
			old := Request{Node: node, Fh: 1, Owner: x, Space: c.space, Type: WriteLock, End: OffsetMax}
			if err := tb.Setlk(old); err != nil {
				t.Fatal(err)
			}
			// The old description is closed (RELEASE in flight); a new
			// one, same owner value, takes the same lock.
			recycled := old
			recycled.Fh = 2
			err := tb.Setlk(recycled)
			if c.space == SpaceFlock {
				// flock locks belong to the description (its handle):
				// until the old RELEASE arrives lockfs cannot know the
				// old one is gone, so the new one waits like any other
				// description would (a transient conflict, never a
				// shared lock).
				if !errors.Is(err, ErrWouldBlock) {
					t.Fatalf("flock through the new description before the old RELEASE: %v, want EAGAIN", err)
				}
				tb.Release(c.late)
				err = tb.Setlk(recycled)
			} else {
				tb.Release(c.late)
			}
			if err != nil {
				t.Fatalf("lock through the new description: %v", err)
			}
			other := Request{Node: node, Fh: 3, Owner: y, Space: c.space, Type: WriteLock, End: OffsetMax}
			if err := tb.Setlk(other); !errors.Is(err, ErrWouldBlock) {
				t.Errorf("after the old description's RELEASE, a third description's lock: %v, want EAGAIN: the new description's lock was dropped (%+v)", err, tb.Snapshot())
			}
		})
	}
}
