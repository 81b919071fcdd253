package semaphores

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// syncRecorder is a Syncer that, like logging.Audit, only queues events
// in LockEvent; Sync makes them "written".
type syncRecorder struct {
	mu      sync.Mutex
	queued  []Event
	written []Event
}

func (r *syncRecorder) LockEvent(e Event) {
	r.mu.Lock()
	r.queued = append(r.queued, e)
	r.mu.Unlock()
}

func (r *syncRecorder) Sync() {
	r.mu.Lock()
	r.written = append(r.written, r.queued...)
	r.queued = nil
	r.mu.Unlock()
}

// writtenKinds returns the kinds of the written events, and how many
// events are still queued.
func (r *syncRecorder) writtenKinds() (kinds []EventKind, queued int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.written {
		kinds = append(kinds, e.Kind)
	}
	return kinds, len(r.queued)
}

// TestEventsWrittenBeforeAnswer: every entry point syncs the observer
// before it returns, and a blocking request syncs before it parks, so a
// waiter that hangs shows in the audit log while it hangs.
func TestEventsWrittenBeforeAnswer(t *testing.T) {
	r := &syncRecorder{}
	tb := NewTable(Options{Observer: r})
	a := Request{Node: 1, Fh: 1, Owner: 1, Pid: 1, Type: WriteLock, End: OffsetMax}
	b := Request{Node: 1, Fh: 2, Owner: 2, Pid: 2, Type: WriteLock, End: OffsetMax}

	if err := tb.Setlk(a); err != nil {
		t.Fatal(err)
	}
	if kinds, queued := r.writtenKinds(); len(kinds) != 1 || kinds[0] != EventAcquired || queued != 0 {
		t.Fatalf("after Setlk: written %v, %d still queued; want [acquired], 0", kinds, queued)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tb.Setlkw(ctx, b) }()
	deadline := time.Now().Add(mustFinishWait)
	for {
		kinds, queued := r.writtenKinds()
		if len(kinds) == 2 && kinds[1] == EventWaiting && queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the blocked Setlkw's waiting event was never written: written %v, %d queued", kinds, queued)
		}
		time.Sleep(pollEvery)
	}
	select {
	case err := <-done:
		t.Fatalf("Setlkw returned %v while the lock was held", err)
	default:
	}

	tb.Flush(1, 1, 1) // a closes: b is granted
	if err := <-done; err != nil {
		t.Fatalf("Setlkw: %v", err)
	}
	kinds, queued := r.writtenKinds()
	want := []EventKind{EventAcquired, EventWaiting, EventReleased, EventAcquired}
	if !slices.Equal(kinds, want) || queued != 0 {
		t.Fatalf("written %v, %d queued; want %v, 0", kinds, queued, want)
	}
}
