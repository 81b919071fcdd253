package semaphores

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// lockUnlock is the measured unit of most benchmarks: one Setlk and the
// matching unlock.
func lockUnlock(b *testing.B, tb *Table, lock, unlock Request) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := tb.Setlk(lock); err != nil {
			b.Fatal(err)
		}
		if err := tb.Setlk(unlock); err != nil {
			b.Fatal(err)
		}
	}
}

func benchReq(node, owner uint64, typ LockType, start, end uint64) Request {
	return Request{Node: node, Fh: owner, Owner: owner, Type: typ, Start: start, End: end, Pid: 1}
}

// BenchmarkUncontendedLockUnlock: one owner, whole-file write lock and
// unlock on an otherwise empty table.
func BenchmarkUncontendedLockUnlock(b *testing.B) {
	tb := NewTable(Options{})
	lockUnlock(b, tb, benchReq(1, 1, WriteLock, 0, OffsetMax), benchReq(1, 1, Unlock, 0, OffsetMax))
}

// BenchmarkLockUnlockOtherFiles: the same, while n other files each hold
// a lock.
func BenchmarkLockUnlockOtherFiles(b *testing.B) {
	for _, n := range []int{1, 1000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			tb := NewTable(Options{})
			for i := range n {
				if err := tb.Setlk(benchReq(uint64(2+i), uint64(1000+i), WriteLock, 0, OffsetMax)); err != nil {
					b.Fatal(err)
				}
			}
			lockUnlock(b, tb, benchReq(1, 1, WriteLock, 0, OffsetMax), benchReq(1, 1, Unlock, 0, OffsetMax))
			// The benchmarked file keeps an empty entry until its close.
			tb.Flush(1, 1, 1)
			if st := tb.Stats(); st.Files != n || st.Records != n {
				b.Fatalf("Stats %+v, want %d files and records", st, n)
			}
		})
	}
}

// BenchmarkLockUnlockOtherOwners: one owner takes a read lock and unlocks
// on a file where n other owners hold locks: whole-file read locks
// ("readers"), or disjoint write ranges below the measured range
// ("writers"), which a read request has to check one by one.
func BenchmarkLockUnlockOtherOwners(b *testing.B) {
	for _, kind := range []string{"readers", "writers"} {
		for _, n := range []int{1, 100, 10000} {
			b.Run(fmt.Sprintf("%s/%d", kind, n), func(b *testing.B) {
				tb := NewTable(Options{})
				for i := range n {
					r := benchReq(1, uint64(1000+i), ReadLock, 0, OffsetMax)
					if kind == "writers" {
						r = benchReq(1, uint64(1000+i), WriteLock, uint64(i)*10, uint64(i)*10+4)
					}
					if err := tb.Setlk(r); err != nil {
						b.Fatal(err)
					}
				}
				start := uint64(n)*10 + 100
				lockUnlock(b, tb, benchReq(1, 1, ReadLock, start, OffsetMax), benchReq(1, 1, Unlock, start, OffsetMax))
			})
		}
	}
}

// BenchmarkManyRanges: one owner holds n disjoint ranges and locks and
// unlocks one more in the middle of them.
func BenchmarkManyRanges(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			tb := NewTable(Options{})
			for i := range n {
				if err := tb.Setlk(benchReq(1, 1, WriteLock, uint64(i)*10, uint64(i)*10+4)); err != nil {
					b.Fatal(err)
				}
			}
			mid := uint64(n/2)*10 + 6
			lockUnlock(b, tb, benchReq(1, 1, WriteLock, mid, mid+1), benchReq(1, 1, Unlock, mid, mid+1))
			if st := tb.Stats(); st.Records != n {
				b.Fatalf("Stats %+v, want %d records", st, n)
			}
		})
	}
}

// BenchmarkFlockUncontended: flock LOCK_EX and LOCK_UN by one description.
func BenchmarkFlockUncontended(b *testing.B) {
	tb := NewTable(Options{})
	lock := benchReq(1, 1, WriteLock, 0, OffsetMax)
	lock.Space = SpaceFlock
	unlock := lock
	unlock.Type = Unlock
	lockUnlock(b, tb, lock, unlock)
}

// BenchmarkParallelDistinctFiles: every goroutine locks and unlocks its
// own file; files have their own mutexes, so this should scale.
func BenchmarkParallelDistinctFiles(b *testing.B) {
	tb := NewTable(Options{})
	var next atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		id := next.Add(1)
		lock := benchReq(id, id, WriteLock, 0, OffsetMax)
		unlock := benchReq(id, id, Unlock, 0, OffsetMax)
		for pb.Next() {
			if err := tb.Setlk(lock); err != nil {
				b.Error(err)
				return
			}
			if err := tb.Setlk(unlock); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkHandoff: two owners alternate an exclusive lock with Setlkw;
// each op is one blocking acquisition plus the unlock that hands the
// lock to the other goroutine.
func BenchmarkHandoff(b *testing.B) {
	tb := NewTable(Options{})
	b.ReportAllocs()
	var wg sync.WaitGroup
	n := b.N
	b.ResetTimer()
	for g := range 2 {
		owner := uint64(1 + g)
		iters := n / 2
		if g == 0 {
			iters += n % 2
		}
		wg.Go(func() {
			lock := benchReq(1, owner, WriteLock, 0, OffsetMax)
			unlock := benchReq(1, owner, Unlock, 0, OffsetMax)
			for range iters {
				if err := tb.Setlkw(context.Background(), lock); err != nil {
					b.Error(err)
					return
				}
				if err := tb.Setlk(unlock); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	for _, owner := range []uint64{1, 2} {
		tb.Flush(1, 0, owner) // the two processes close the file
	}
	if st := tb.Stats(); st != (Stats{}) {
		b.Fatalf("Stats %+v after the handoff, want zero", st)
	}
}

// BenchmarkHeldLockMemory reports the engine's heap per held lock
// (B/lock): n whole-file write locks, one per file (a lock directory's
// case), or n byte ranges of one owner on one file. The FUSE node of each
// file is go-fuse's and not counted.
func BenchmarkHeldLockMemory(b *testing.B) {
	const n = 10000
	for _, kind := range []string{"files", "ranges"} {
		b.Run(kind, func(b *testing.B) {
			var perLock float64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				tb := NewTable(Options{})
				for i := range uint64(n) {
					r := benchReq(1+i, 1+i, WriteLock, 0, OffsetMax)
					if kind == "ranges" {
						r = benchReq(1, 1, WriteLock, 2*i, 2*i)
					}
					if err := tb.Setlk(r); err != nil {
						b.Fatal(err)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perLock = float64(after.HeapAlloc-before.HeapAlloc) / n
				runtime.KeepAlive(tb)
			}
			b.ReportMetric(perLock, "B/lock")
		})
	}
}
