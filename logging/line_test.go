package logging

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"pgregory.net/rapid"

	"github.com/lockfs/lockfs/semaphores"
)

// zerologAuditLine is the audit line as zerolog's Event API writes it:
// the reference appendAuditLine must reproduce byte for byte.
func zerologAuditLine(ent *auditEntry) []byte {
	var buf bytes.Buffer
	e := &ent.e
	zl := zerolog.New(&buf)
	ev := zl.WithLevel(eventLevel(e.Kind))
	ev.Time(zerolog.TimestampFieldName, e.Time).
		Str("event", e.Kind.String()).
		Str("lock", ent.name).
		Str("path", ent.path).
		Str("kind", e.Class.String()).
		Str("mode", e.Type.String()).
		Uint64("start", e.Start).
		Uint64("end", e.End).
		Uint32("pid", e.Pid).
		Str("command", ent.command).
		Uint32("uid", e.Uid).
		Str("owner", hex(e.Owner)).
		Uint64("fh", e.Fh)
	var msg string
	switch e.Kind {
	case semaphores.EventWaiting:
		ev.Uint32("blocker_pid", e.BlockerPid).Str("blocker_owner", hex(e.BlockerOwner))
		msg = "Waiting for file lock"
	case semaphores.EventAcquired:
		ev.Float64("waited_s", e.Waited.Seconds()).Int("attempts", e.Attempts)
		msg = "Got file lock"
	case semaphores.EventReleased:
		ev.Float64("held_s", e.Held.Seconds()).Str("reason", e.Reason.String())
		msg = "Released file lock"
	case semaphores.EventInterrupted:
		ev.Float64("waited_s", e.Waited.Seconds()).Int("attempts", e.Attempts)
		msg = "Interrupted wait for file lock"
	case semaphores.EventDeadlock:
		ev.Uint32("blocker_pid", e.BlockerPid).Str("blocker_owner", hex(e.BlockerOwner))
		msg = "Refused file lock (deadlock)"
	case semaphores.EventGaveUp:
		ev.Float64("waited_s", e.Waited.Seconds()).Int("attempts", e.Attempts)
		msg = "Gave up waiting for file lock"
	}
	ev.Msg(msg + " " + strconv.Quote(ent.name) + " at " + ent.path)
	return buf.Bytes()
}

var lineKinds = []semaphores.EventKind{
	semaphores.EventWaiting, semaphores.EventAcquired, semaphores.EventReleased,
	semaphores.EventInterrupted, semaphores.EventDeadlock, semaphores.EventGaveUp,
}

// awkwardString draws strings rich in what JSON and strconv.Quote treat
// specially: quotes, backslashes, control bytes, DEL, multi-byte and
// non-printable runes, and invalid UTF-8.
func awkwardString(t *rapid.T, label string) string {
	pieces := rapid.SliceOfN(rapid.OneOf(
		rapid.SampledFrom([]string{`"`, `\`, "\n", "\t", "\b", "\f", "\r", "\x01", "\x1f", "\x7f",
			"é", "€", "\u2028", "\u200b", "\U0001F512", "\xff", "\xc3", "\xe2\x82", "tempest-", " ", "/"}),
		rapid.StringMatching(`[a-z0-9._-]{0,12}`),
		rapid.Custom(func(t *rapid.T) string { return string(rapid.SliceOfN(rapid.Byte(), 0, 4).Draw(t, "bytes")) }),
	), 0, 12).Draw(t, label)
	var s string
	for _, p := range pieces {
		s += p
	}
	return s
}

func durationGen() *rapid.Generator[time.Duration] {
	return rapid.OneOf(
		rapid.SampledFrom([]time.Duration{0, 1, 999, time.Microsecond, 1500 * time.Millisecond, -time.Second,
			math.MaxInt64, math.MinInt64, 3 * time.Hour}),
		rapid.Custom(func(t *rapid.T) time.Duration { return time.Duration(rapid.Int64().Draw(t, "ns")) }),
	)
}

// TestAuditLineMatchesZerolog: the hand-built audit line is the line
// zerolog writes, for random events with awkward names, paths, commands,
// numbers, durations and time zones, and it is one valid JSON object.
func TestAuditLineMatchesZerolog(t *testing.T) {
	zones := []*time.Location{time.UTC, time.FixedZone("X", -(3*3600 + 1800)), time.FixedZone("Y", 5*3600+45*60)}
	rapid.Check(t, func(t *rapid.T) {
		ent := auditEntry{
			name:    awkwardString(t, "name"),
			path:    awkwardString(t, "path"),
			command: awkwardString(t, "command"),
			e: semaphores.Event{
				Kind:         rapid.SampledFrom(lineKinds).Draw(t, "kind"),
				Time:         time.Unix(rapid.Int64Range(0, 1<<36).Draw(t, "sec"), rapid.Int64Range(0, 999999999).Draw(t, "nsec")).In(rapid.SampledFrom(zones).Draw(t, "zone")),
				Class:        semaphores.Class(rapid.IntRange(0, 3).Draw(t, "class")),
				Type:         semaphores.LockType(rapid.IntRange(0, 3).Draw(t, "type")),
				Start:        rapid.Uint64().Draw(t, "start"),
				End:          rapid.Uint64().Draw(t, "end"),
				Pid:          rapid.Uint32().Draw(t, "pid"),
				Uid:          rapid.Uint32().Draw(t, "uid"),
				Owner:        rapid.Uint64().Draw(t, "owner"),
				Fh:           rapid.Uint64().Draw(t, "fh"),
				BlockerPid:   rapid.Uint32().Draw(t, "blocker_pid"),
				BlockerOwner: rapid.Uint64().Draw(t, "blocker_owner"),
				Waited:       durationGen().Draw(t, "waited"),
				Held:         durationGen().Draw(t, "held"),
				Attempts:     rapid.Int().Draw(t, "attempts"),
				Reason:       semaphores.ReleaseReason(rapid.IntRange(0, 5).Draw(t, "reason")),
			},
		}
		want := zerologAuditLine(&ent)
		got := appendAuditLine(nil, &ent)
		if !bytes.Equal(got, want) {
			t.Fatalf("audit line differs from zerolog's\n got: %q\nwant: %q", got, want)
		}
		var obj map[string]any
		if err := json.Unmarshal(got, &obj); err != nil {
			t.Fatalf("not JSON: %v\n%q", err, got)
		}
	})
}

// TestAuditLineAppends: appendAuditLine appends, leaving dst's bytes as
// they were.
func TestAuditLineAppends(t *testing.T) {
	ent := auditEntry{name: "tempest-az", path: "/var/lock/tempest-az", e: semaphores.Event{Kind: semaphores.EventAcquired, Time: time.Unix(0, 0)}}
	prefix := []byte("previous line\n")
	got := appendAuditLine(append([]byte(nil), prefix...), &ent)
	if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], zerologAuditLine(&ent)) {
		t.Fatalf("got %q", got)
	}
}

// TestAuditConsoleFormat: with --log-format console the audit lines are
// zerolog's human lines (not JSON), one per event, carrying the message
// and the fields.
func TestAuditConsoleFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := New(Config{File: path, Format: FormatConsole})
	if err != nil {
		t.Fatal(err)
	}
	a := NewAudit(l, func(uint64) (string, string) { return "tempest-az", "/var/lock/tempest-az" })
	for _, k := range []semaphores.EventKind{semaphores.EventAcquired, semaphores.EventReleased} {
		a.LockEvent(semaphores.Event{Kind: k, Time: time.Now(), Node: 2, Pid: 4242, Owner: 0xbeef, Type: semaphores.WriteLock})
	}
	a.Close()
	l.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %d:\n%s", len(lines), b)
	}
	for i, want := range []string{`Got file lock "tempest-az" at /var/lock/tempest-az`, `Released file lock "tempest-az" at /var/lock/tempest-az`} {
		if strings.HasPrefix(lines[i], "{") || !strings.Contains(lines[i], want) || !strings.Contains(lines[i], "pid=4242") || !strings.Contains(lines[i], "owner=000000000000beef") {
			t.Errorf("line %d = %q, want a console line with %q, pid=4242 and the owner", i, lines[i], want)
		}
	}
}
