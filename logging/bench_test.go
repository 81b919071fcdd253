package logging

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/lockfs/lockfs/semaphores"
)

// BenchmarkAuditLockUnlock measures what the audit log adds to one
// lock+unlock pair: two events queued, resolved and written (one
// write(2) each, as the engine syncs after each call).
func BenchmarkAuditLockUnlock(b *testing.B) {
	for _, out := range []struct{ name, path string }{
		{"devnull", "/dev/null"},
		{"file", filepath.Join(b.TempDir(), "audit.log")},
	} {
		b.Run(out.name, func(b *testing.B) {
			l, err := New(Config{File: out.path, Format: FormatJSON})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			a := NewAudit(l, benchResolver)
			ev := benchEvent()
			b.ReportAllocs()
			for b.Loop() {
				auditPair(a, &ev)
			}
		})
	}
}

// BenchmarkAuditParallel measures lock+unlock pairs' audit work from
// concurrent callers (go test -cpu 1,2,4 ...): how much Syncs of
// different calls hold each other up.
func BenchmarkAuditParallel(b *testing.B) {
	l, err := New(Config{File: filepath.Join(b.TempDir(), "audit.log"), Format: FormatJSON})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	a := NewAudit(l, benchResolver)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ev := benchEvent()
		for pb.Next() {
			auditPair(a, &ev)
		}
	})
}

func benchResolver(uint64) (string, string) { return "tempest-lock", "/var/lock/tempest-lock" }

func benchEvent() semaphores.Event {
	return semaphores.Event{Node: 7, Pid: 1, Uid: 0, Owner: 0xabcdef, Fh: 3, End: 1<<63 - 1, Time: time.Now()}
}

// auditPair is what the engine does for a lock+unlock pair: each call
// queues its event, then syncs before it is answered.
func auditPair(a *Audit, ev *semaphores.Event) {
	ev.Kind = semaphores.EventAcquired
	a.LockEvent(*ev)
	a.Sync()
	ev.Kind = semaphores.EventReleased
	a.LockEvent(*ev)
	a.Sync()
}
