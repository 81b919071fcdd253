package semaphores

import (
	"errors"
	"testing"
	"time"
)

// The kernel ends flock and OFD locks at the last close, but tells lockfs
// only with RELEASE, sent asynchronously after the close's FLUSH. A
// non-blocking request that meets such a lock right after the close waits
// for the RELEASE, up to the grace, instead of failing where tmpfs would
// succeed.
func TestReleaseGrace(t *testing.T) {
	const node = 1
	whole := func(fh, owner uint64, space Space) Request {
		return Request{Node: node, Fh: fh, Owner: owner, Space: space, Type: WriteLock, End: OffsetMax, Pid: uint32(owner)}
	}
	for _, space := range []Space{SpaceFlock, SpacePOSIX} {
		t.Run(space.String()+"/release arrives during the grace", func(t *testing.T) {
			tb := NewTable(Options{ReleaseGrace: mustFinishWait})
			if err := tb.Setlk(whole(1, 10, space)); err != nil {
				t.Fatal(err)
			}
			tb.Flush(node, 1, 99) // the last close of description 1 (by process 99)
			done := make(chan error, 1)
			go func() { done <- tb.Setlk(whole(2, 20, space)) }()
			select {
			case err := <-done:
				t.Fatalf("Setlk returned %v before the RELEASE", err)
			case <-time.After(mustBlockWait):
			}
			tb.Release(ReleaseRequest{Node: node, Fh: 1, Owner: 10, FlockUnlock: space == SpaceFlock})
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Setlk after the RELEASE: %v, want success", err)
				}
			case <-time.After(mustFinishWait):
				t.Fatal("Setlk still waiting after the RELEASE")
			}
			tb.Flush(node, 2, 20)
			tb.Release(ReleaseRequest{Node: node, Fh: 2, Owner: 20, FlockUnlock: true})
			if st := tb.Stats(); st != (Stats{}) {
				t.Errorf("state left: %+v", st)
			}
		})
		t.Run(space.String()+"/description still open", func(t *testing.T) {
			// A dup of the fd is still open: no RELEASE comes, and after
			// the grace the answer is EAGAIN, as on tmpfs.
			rec := &recorder{}
			tb := NewTable(Options{ReleaseGrace: 30 * time.Millisecond, Observer: rec})
			if err := tb.Setlk(whole(1, 10, space)); err != nil {
				t.Fatal(err)
			}
			tb.Flush(node, 1, 99)
			if err := tb.Setlk(whole(2, 20, space)); !errors.Is(err, ErrWouldBlock) {
				t.Fatalf("Setlk = %v, want EAGAIN", err)
			}
			// Past the grace the refusal is immediate.
			start := time.Now()
			time.Sleep(40 * time.Millisecond)
			if err := tb.Setlk(whole(2, 20, space)); !errors.Is(err, ErrWouldBlock) {
				t.Fatalf("second Setlk = %v, want EAGAIN", err)
			}
			if waited := time.Since(start); waited > mustFinishWait {
				t.Errorf("second refusal took %v", waited)
			}
			var waiting, acquired int
			for _, e := range rec.take() {
				switch e.Kind {
				case EventWaiting:
					waiting++
				case EventAcquired:
					acquired++
				}
			}
			if waiting != 1 || acquired != 1 {
				t.Errorf("events: %d waiting, %d acquired; want 1 and 1 (the holder's)", waiting, acquired)
			}
			tb.Flush(node, 2, 20)
			tb.Release(ReleaseRequest{Node: node, Fh: 2, Owner: 20, FlockUnlock: true})
			tb.Release(ReleaseRequest{Node: node, Fh: 1, Owner: 10, FlockUnlock: true})
			if st := tb.Stats(); st != (Stats{}) {
				t.Errorf("state left: %+v", st)
			}
		})
		t.Run(space.String()+"/lock call through the description cancels the grace", func(t *testing.T) {
			tb := NewTable(Options{ReleaseGrace: mustFinishWait})
			if err := tb.Setlk(whole(1, 10, space)); err != nil {
				t.Fatal(err)
			}
			tb.Flush(node, 1, 99)
			if err := tb.Setlk(whole(1, 10, space)); err != nil { // alive after all
				t.Fatal(err)
			}
			start := time.Now()
			if err := tb.Setlk(whole(2, 20, space)); !errors.Is(err, ErrWouldBlock) {
				t.Fatalf("Setlk = %v, want EAGAIN", err)
			}
			if waited := time.Since(start); waited >= mustFinishWait {
				t.Errorf("refusal waited %v for a description known to be open", waited)
			}
			tb.Release(ReleaseRequest{Node: node, Fh: 1, Owner: 10, FlockUnlock: true})
			tb.Flush(node, 2, 20)
			tb.Release(ReleaseRequest{Node: node, Fh: 2, Owner: 20, FlockUnlock: true})
			if st := tb.Stats(); st != (Stats{}) {
				t.Errorf("state left: %+v", st)
			}
		})
	}
	t.Run("no grace for a lock whose description was not closed", func(t *testing.T) {
		tb := NewTable(Options{ReleaseGrace: mustFinishWait})
		if err := tb.Setlk(whole(1, 10, SpaceFlock)); err != nil {
			t.Fatal(err)
		}
		tb.Flush(node, 3, 99) // some other description's close
		start := time.Now()
		if err := tb.Setlk(whole(2, 20, SpaceFlock)); !errors.Is(err, ErrWouldBlock) {
			t.Fatalf("Setlk = %v, want EAGAIN", err)
		}
		if waited := time.Since(start); waited >= mustFinishWait {
			t.Errorf("refusal waited %v", waited)
		}
		tb.Release(ReleaseRequest{Node: node, Fh: 1, Owner: 10, FlockUnlock: true})
		tb.Release(ReleaseRequest{Node: node, Fh: 2, Owner: 20, FlockUnlock: true})
		if st := tb.Stats(); st != (Stats{}) {
			t.Errorf("state left: %+v", st)
		}
	})
}
