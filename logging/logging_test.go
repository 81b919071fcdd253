package logging

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockfs/lockfs/logging/spool"
	"github.com/lockfs/lockfs/semaphores"
)

func TestLogFileModes(t *testing.T) {
	dir := t.TempDir()
	fresh := filepath.Join(dir, "fresh.log")
	l, err := New(Config{File: fresh, Format: FormatJSON})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if st, err := os.Stat(fresh); err != nil || st.Mode().Perm()&^LogFileMode != 0 {
		t.Errorf("new log file: %v, %v; want at most %o", st.Mode().Perm(), err, LogFileMode)
	}
	open := filepath.Join(dir, "open.log")
	if err := os.WriteFile(open, []byte("old line\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o666); err != nil {
		t.Fatal(err)
	}
	l, err = New(Config{File: open, Format: FormatJSON})
	if err != nil {
		t.Fatal(err)
	}
	l.Info().Msg("new line")
	l.Close()
	st, err := os.Stat(open)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("world-writable log file now %v (%v), want 0644", st.Mode().Perm(), err)
	}
	if b, _ := os.ReadFile(open); !strings.HasPrefix(string(b), "old line\n") || !strings.Contains(string(b), "new line") {
		t.Errorf("the log was not appended to:\n%s", b)
	}
}

// TestAuditOrderAndDrain: events from many goroutines, written by
// combined Syncs, reach the file complete, each goroutine's in its
// order, and Close writes what is still queued; a reopen in the middle
// loses and duplicates nothing.
func TestAuditOrderAndDrain(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := New(Config{File: path, Format: FormatJSON})
	if err != nil {
		t.Fatal(err)
	}
	a := NewAudit(l, func(node uint64) (string, string) { return "f", "/mnt/f" })
	const writers, each = 8, 2000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				a.LockEvent(semaphores.Event{Kind: semaphores.EventAcquired, Time: time.Now(),
					Pid: uint32(900000 + w), Owner: uint64(i), Type: semaphores.WriteLock, End: semaphores.OffsetMax})
				if i%3 == 0 {
					a.Sync() // as the engine does after a lock call
				}
				if w == 0 && i == each/2 {
					if err := os.Rename(path, path+".1"); err != nil {
						t.Error(err)
					}
					if err := l.Reopen(); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	a.Close()
	l.Close()
	next := make(map[uint32]uint64)
	for _, p := range []string{path + ".1", path} {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var e struct {
				Event string `json:"event"`
				Pid   uint32 `json:"pid"`
				Owner string `json:"owner"`
			}
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("%s: %v: %s", p, err, sc.Text())
			}
			seq, err := strconv.ParseUint(e.Owner, 16, 64)
			if err != nil || e.Event != "acquired" {
				t.Fatalf("bad line %s", sc.Text())
			}
			if seq != next[e.Pid] {
				t.Fatalf("writer %d: event %d after %d events: lost, duplicated or reordered", e.Pid, seq, next[e.Pid])
			}
			next[e.Pid]++
		}
		f.Close()
	}
	for w := range writers {
		if n := next[uint32(900000+w)]; n != each {
			t.Errorf("writer %d: %d events in the files, want %d", w, n, each)
		}
	}
}

// TestLogKeeperKilled: when the log spool's keeper is killed, the log
// says so (log_keeper_exited) and from then on an audit event is in the
// file when Sync returns, without waiting for the flusher.
func TestLogKeeperKilled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := New(Config{File: path, Format: FormatJSON})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, ok := l.out.(*spool.Spool)
	if !ok {
		t.Fatalf("a log file is written through %T, want a spool", l.out)
	}
	if err := syscall.Kill(s.KeeperPid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if b, _ := os.ReadFile(path); strings.Contains(string(b), `"event":"log_keeper_exited"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no log_keeper_exited line 10 s after the keeper was killed")
		}
	}
	a := NewAudit(l, func(node uint64) (string, string) { return "f", "/mnt/f" })
	a.LockEvent(semaphores.Event{Kind: semaphores.EventAcquired, Time: time.Now(), Pid: 4242, Type: semaphores.WriteLock, End: semaphores.OffsetMax})
	a.Sync()
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), `"pid":4242`) {
		t.Fatalf("after the keeper died, an event is not in the file when Sync returns:\n%s", b)
	}
}
