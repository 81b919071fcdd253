package semaphores

import (
	"context"
	"testing"
	"time"
)

// panicky panics on the events it is told to, as a broken observer (or
// any bug) would inside the engine's critical section.
type panicky struct{ on EventKind }

func (p panicky) LockEvent(e Event) {
	if e.Kind == p.on {
		panic("observer bug")
	}
}

// TestPanicReleasesTheFile: go-fuse recovers a panicking request handler
// and answers EIO; the engine must not leave the file's mutex locked, or
// every later request on that file would hang (seen once in an
// integration run, from a since-fixed bug).
func TestPanicReleasesTheFile(t *testing.T) {
	for _, kind := range []EventKind{EventAcquired, EventReleased, EventWaiting} {
		t.Run(kind.String(), func(t *testing.T) {
			tb := NewTable(Options{Observer: panicky{kind}})
			// call runs f as go-fuse runs a handler: recovering a panic.
			// A call that does not return in time means a file stayed
			// locked.
			call := func(f func()) (panicked bool) {
				done := make(chan bool, 1)
				go func() {
					defer func() { done <- recover() != nil }()
					f()
				}()
				select {
				case p := <-done:
					return p
				case <-time.After(mustFinishWait):
					t.Fatal("the file stayed locked after a panic")
				}
				return false
			}
			lock := Request{Node: 1, Fh: 1, Owner: 1, Type: WriteLock, End: OffsetMax}
			other := Request{Node: 1, Fh: 2, Owner: 2, Type: WriteLock, End: OffsetMax}
			unlock := lock
			unlock.Type = Unlock
			panicked := call(func() { _ = tb.Setlk(lock) })
			panicked = call(func() {
				ctx, cancel := context.WithTimeout(context.Background(), mustBlockWait)
				defer cancel()
				_ = tb.Setlkw(ctx, other) // waits (a waiting event), then EINTR
			}) || panicked
			panicked = call(func() { tb.Flush(1, 1, 1) }) || panicked // released
			panicked = call(func() { _ = tb.Setlk(unlock) }) || panicked
			if !panicked {
				t.Fatal("the observer never panicked")
			}
			call(func() { tb.Flush(1, 0, 1); tb.Flush(1, 0, 2); tb.Release(ReleaseRequest{Node: 1, Fh: 1}) })
			call(func() { tb.Stats() })
		})
	}
}
