package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockfs/lockfs/semaphores"
)

// syncBuffer is a bytes.Buffer safe for the watcher goroutine and the
// test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %v: %s", err, line)
		}
		out = append(out, m)
	}
	return out
}

func testAudit(w *syncBuffer) *Audit {
	return &Audit{
		log: zerolog.New(w).Level(zerolog.InfoLevel),
		resolve: func(node uint64) (string, string) {
			return "lock" + string(rune('0'+node)), "/mnt/lock" + string(rune('0'+node))
		},
	}
}

var base = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func lockAt(owner uint64, class semaphores.Class, since time.Time, start, end uint64) semaphores.Lock {
	return semaphores.Lock{Owner: owner, Fh: owner, Class: class, Type: semaphores.WriteLock,
		Start: start, End: end, Pid: uint32(1000 + owner), Uid: 42, Since: since}
}

func TestHeldWatcherScan(t *testing.T) {
	var buf syncBuffer
	a := testAudit(&buf)
	// The command of pid 1001 as the audit's /proc cache knows it.
	a.commands.names = map[uint32]commandEntry{1001: {name: "python3", at: base}}
	w := newHeldWatcher(a, nil, time.Minute)
	P, F := semaphores.ClassPOSIX, semaphores.ClassFlock
	old := base.Add(-2 * time.Minute)
	snap := func(at time.Time, files ...semaphores.FileState) semaphores.Snapshot {
		return semaphores.Snapshot{Taken: at, Files: files}
	}

	// Owner 1 holds two ranges of file 1 since old (one hold); owner 2
	// holds file 1's flock space since 30s only; one waiter.
	f1 := semaphores.FileState{Node: 1,
		Locks: []semaphores.Lock{
			lockAt(1, P, old.Add(time.Second), 10, 19),
			lockAt(1, P, old, 0, 4),
			lockAt(2, F, base.Add(-30*time.Second), 0, semaphores.OffsetMax),
		},
		Waiters: []semaphores.Waiter{{Owner: 3}},
	}
	if n := w.scan(snap(base, f1)); n != 1 {
		t.Fatalf("first scan: %d warnings, want 1", n)
	}
	lines := buf.lines(t)
	want := map[string]any{
		"level": "warn", "event": "held_long", "lock": "lock1", "path": "/mnt/lock1", "kind": "posix",
		"mode": "write", "start": 0.0, "end": 4.0, "pid": 1001.0, "uid": 42.0, "owner": "0000000000000001",
		"command": "python3", "fh": 1.0, "held_s": 120.0, "threshold_s": 60.0, "waiters": 1.0,
		"message": `File lock "lock1" at /mnt/lock1 held for 2m0s by pid 1001 (python3), 1 waiting`,
	}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("%s = %#v, want %#v", k, lines[0][k], v)
		}
	}
	if tm, _ := lines[0]["time"].(string); !strings.HasPrefix(tm, "2026-11-26T12:00:00") {
		t.Errorf("time = %v, want the snapshot's", lines[0]["time"])
	}

	// Once per hold: later scans say nothing about owner 1; owner 2
	// crosses the threshold and is warned about once.
	if n := w.scan(snap(base.Add(10*time.Second), f1)); n != 0 {
		t.Errorf("second scan: %d warnings, want 0", n)
	}
	if n := w.scan(snap(base.Add(31*time.Second), f1)); n != 1 {
		t.Errorf("owner 2 at 61s: %d warnings, want 1", n)
	}
	if n := w.scan(snap(base.Add(40*time.Second), f1)); n != 0 {
		t.Errorf("third scan: %d warnings, want 0", n)
	}

	// Owner 1's hold ends; the same owner number holds again later (a
	// new hold): warned again once it is a minute old.
	if n := w.scan(snap(base.Add(50 * time.Second))); n != 0 {
		t.Errorf("empty scan: %d warnings", n)
	}
	if len(w.warned) != 0 {
		t.Errorf("%d holds remembered after every lock went", len(w.warned))
	}
	again := semaphores.FileState{Node: 1, Locks: []semaphores.Lock{lockAt(1, P, base.Add(55*time.Second), 0, 4)}}
	if n := w.scan(snap(base.Add(60*time.Second), again)); n != 0 {
		t.Errorf("young hold: %d warnings", n)
	}
	if n := w.scan(snap(base.Add(116*time.Second), again)); n != 1 {
		t.Errorf("new hold past the threshold: %d warnings, want 1", n)
	}
	if got := len(buf.lines(t)); got != 3 {
		t.Errorf("%d lines in all, want 3", got)
	}
}

func TestHeldWatcherBelowLevel(t *testing.T) {
	var buf syncBuffer
	a := testAudit(&buf)
	a.log = a.log.Level(zerolog.ErrorLevel)
	w := newHeldWatcher(a, nil, time.Second)
	f := semaphores.FileState{Node: 1, Locks: []semaphores.Lock{lockAt(1, semaphores.ClassPOSIX, base.Add(-time.Hour), 0, 0)}}
	w.scan(semaphores.Snapshot{Taken: base, Files: []semaphores.FileState{f}})
	if len(buf.lines(t)) != 0 {
		t.Error("held_long written below the configured level")
	}
}

// TestWatchHeld runs the goroutine: a hold older than the threshold is
// reported within a bounded time, once, and Stop ends the watcher.
func TestWatchHeld(t *testing.T) {
	var buf syncBuffer
	var mu sync.Mutex
	scans := 0
	since := time.Now().Add(-time.Hour)
	w := testAudit(&buf).WatchHeld(func() semaphores.Snapshot {
		mu.Lock()
		scans++
		mu.Unlock()
		return semaphores.Snapshot{Taken: time.Now(), Files: []semaphores.FileState{
			{Node: 2, Locks: []semaphores.Lock{lockAt(5, semaphores.ClassOFD, since, 0, 0)}},
		}}
	}, 20*time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := scans
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	w.Stop()
	w.Stop() // idempotent
	lines := buf.lines(t)
	if len(lines) != 1 || lines[0]["kind"] != "ofd" || lines[0]["lock"] != "lock2" {
		t.Fatalf("got %d lines %v, want one held_long for lock2 after 3 scans", len(lines), lines)
	}
}

func TestScanInterval(t *testing.T) {
	for th, want := range map[time.Duration]time.Duration{
		time.Millisecond: 10 * time.Millisecond,
		time.Second:      100 * time.Millisecond,
		10 * time.Minute: time.Second,
	} {
		if got := scanInterval(th); got != want {
			t.Errorf("scanInterval(%v) = %v, want %v", th, got, want)
		}
	}
}
