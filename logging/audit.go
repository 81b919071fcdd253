package logging

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockfs/lockfs/semaphores"
)

// Resolver names a lock file: its name and absolute path. It is called
// once per event.
type Resolver func(node uint64) (name, path string)

// Audit turns engine events into audit lines. It implements
// semaphores.Observer.
//
// Each line carries: time (µs), level, event, lock, path, kind
// (posix/ofd/flock), mode (read/write/unlock), start and end (inclusive
// byte offsets; end 9223372036854775807 means "to end of file"), pid,
// command, uid, owner (hex), fh, and per event waited_s and attempts
// (acquired, interrupted, gave_up), held_s and reason (released),
// blocker_pid and blocker_owner (waiting, deadlock). The message keeps
// the words people grep for: `Got file lock "NAME" at PATH` and
// `Released file lock "NAME" at PATH`.
type Audit struct {
	// log writes synchronously (held_long warnings, and events that
	// arrive after Close).
	log      zerolog.Logger
	level    zerolog.Level
	resolve  Resolver
	commands commandCache

	out     io.Writer // the log file, shared with the other log lines
	console bool
	queue   chan auditEntry
	done    chan struct{}
	// mu guards closed: LockEvent sends on queue only while it is open.
	mu     sync.RWMutex
	closed bool
}

// auditEntry is an event with the names resolved when it happened.
type auditEntry struct {
	e                   semaphores.Event
	name, path, command string
}

const (
	// auditQueue is how many events may wait for the writer; beyond
	// that, lock calls wait (nothing is dropped).
	auditQueue = 4096
	// auditBatch caps the bytes written with one write(2).
	auditBatch = 64 << 10
	// auditDelay is how long the writer lets events accumulate after the
	// first of a burst: the most an event waits before its write(2).
	auditDelay = 2 * time.Millisecond
)

var _ semaphores.Observer = (*Audit)(nil)

// NewAudit returns an observer writing to l, and starts its writer;
// Close stops it.
func NewAudit(l *Logger, resolve Resolver) *Audit {
	a := &Audit{
		log: l.audit, level: l.level, resolve: resolve,
		out: l.out, console: l.console,
		queue: make(chan auditEntry, auditQueue), done: make(chan struct{}),
	}
	go a.run()
	return a
}

// LockEvent records e. Its lock name, path and command are resolved now;
// the line is formatted and written by the writer goroutine.
func (a *Audit) LockEvent(e semaphores.Event) {
	if eventLevel(e.Kind) < a.level {
		return
	}
	name, path := a.resolve(e.Node)
	ent := auditEntry{e: e, name: name, path: path, command: a.commands.lookup(e.Pid, e.Time)}
	a.mu.RLock()
	if !a.closed {
		a.queue <- ent
		a.mu.RUnlock()
		return
	}
	a.mu.RUnlock()
	a.format(a.log, &ent) // after Close: write it at once
}

// Close writes every queued event and stops the writer. Events that
// arrive later are written synchronously.
func (a *Audit) Close() {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.queue)
	}
	a.mu.Unlock()
	<-a.done
}

// run formats queued events into one buffer and writes it auditDelay
// after the first (or when the buffer is full): one wake-up and one
// write(2) per burst instead of one per event.
func (a *Audit) run() {
	defer close(a.done)
	var buf bytes.Buffer
	var w io.Writer = &buf
	if a.console {
		w = consoleWriterTo(&buf, isTerminal(a.out))
	}
	zl := zerolog.New(w)
	for ent := range a.queue {
		buf.Reset()
		a.format(zl, &ent)
		// Let a burst accumulate: events sent meanwhile wait in the
		// channel without waking this goroutine, and go out with one
		// write(2) below.
		time.Sleep(auditDelay)
	drain:
		for buf.Len() < auditBatch {
			select {
			case next, ok := <-a.queue:
				if !ok {
					break drain
				}
				a.format(zl, &next)
			default:
				break drain
			}
		}
		if _, err := a.out.Write(buf.Bytes()); err != nil {
			fmt.Fprintf(os.Stderr, "lockfs: writing the audit log: %v\n", err)
		}
	}
}

func eventLevel(k semaphores.EventKind) zerolog.Level {
	if k == semaphores.EventDeadlock {
		return zerolog.WarnLevel
	}
	return zerolog.InfoLevel
}

// format writes one audit line for ent through zl.
func (a *Audit) format(zl zerolog.Logger, ent *auditEntry) {
	e, name, path := &ent.e, ent.name, ent.path
	ev := zl.WithLevel(eventLevel(e.Kind))
	ev.Time(zerolog.TimestampFieldName, e.Time).
		Str("event", e.Kind.String()).
		Str("lock", name).
		Str("path", path).
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
		ev.Float64("waited_s", seconds(e.Waited)).Int("attempts", e.Attempts)
		msg = "Got file lock"
	case semaphores.EventReleased:
		ev.Float64("held_s", seconds(e.Held)).Str("reason", e.Reason.String())
		msg = "Released file lock"
	case semaphores.EventInterrupted:
		ev.Float64("waited_s", seconds(e.Waited)).Int("attempts", e.Attempts)
		msg = "Interrupted wait for file lock"
	case semaphores.EventDeadlock:
		ev.Uint32("blocker_pid", e.BlockerPid).Str("blocker_owner", hex(e.BlockerOwner))
		msg = "Refused file lock (deadlock)"
	case semaphores.EventGaveUp:
		ev.Float64("waited_s", seconds(e.Waited)).Int("attempts", e.Attempts)
		msg = "Gave up waiting for file lock"
	}
	ev.Msg(msg + " " + strconv.Quote(name) + " at " + path)
}

func hex(v uint64) string {
	s := strconv.FormatUint(v, 16)
	if len(s) < 16 {
		s = strings.Repeat("0", 16-len(s)) + s
	}
	return s
}

// commandCache maps pids to command names (/proc/PID/comm). A name is
// reused for commandTTL, long enough that a lock/unlock pair reads /proc
// once, short enough that a recycled pid is not misnamed for long.
type commandCache struct {
	mu    sync.Mutex
	names map[uint32]commandEntry
}

type commandEntry struct {
	name string
	at   time.Time
}

const (
	commandTTL      = 2 * time.Second
	commandCacheMax = 4096
)

func (c *commandCache) lookup(pid uint32, now time.Time) string {
	if pid == 0 {
		return ""
	}
	c.mu.Lock()
	e, ok := c.names[pid]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < commandTTL {
		return e.name
	}
	name := readComm(pid)
	c.mu.Lock()
	if c.names == nil || len(c.names) >= commandCacheMax {
		c.names = make(map[uint32]commandEntry)
	}
	c.names[pid] = commandEntry{name: name, at: now}
	c.mu.Unlock()
	return name
}

// readComm reads the command name of pid, or "" if it has exited.
func readComm(pid uint32) string {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}
