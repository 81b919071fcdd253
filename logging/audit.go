package logging

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
// `Released file lock "NAME" at PATH`. A JSON line is exactly the line
// zerolog would write for these fields (appendAuditLine builds it
// without zerolog's per-field calls); a console line is zerolog's
// ConsoleWriter rendering of it.
type Audit struct {
	// log writes synchronously (held_long warnings).
	log      zerolog.Logger
	level    zerolog.Level
	resolve  Resolver
	commands commandCache

	out io.Writer // the log file, shared with the other log lines

	// qmu guards queue and queued: events in the order they happened,
	// not yet written, and how many events were ever queued.
	qmu    sync.Mutex
	queue  []auditEntry
	queued uint64
	// wmu is held by the one caller writing a batch; it guards batch,
	// line, consoleOut, console and spare. written counts the events
	// already written.
	wmu   sync.Mutex
	batch []byte // the lines of the batch being written
	// console, for the console format, turns one JSON line (line) into
	// a human one, appended to consoleOut.
	console    io.Writer
	consoleOut bytes.Buffer
	line       []byte
	spare      []auditEntry
	written    atomic.Uint64
}

// auditEntry is an event with the names resolved when it happened.
type auditEntry struct {
	e                   semaphores.Event
	name, path, command string
}

var (
	_ semaphores.Observer = (*Audit)(nil)
	_ semaphores.Syncer   = (*Audit)(nil)
)

// NewAudit returns an observer writing to l.
func NewAudit(l *Logger, resolve Resolver) *Audit {
	a := &Audit{log: l.audit, level: l.level, resolve: resolve, out: l.out}
	if l.console {
		a.console = consoleWriterTo(&a.consoleOut, isTerminal(a.out))
	}
	return a
}

// LockEvent queues e, with its lock name, path and command resolved now.
// The engine calls it under a file's mutex, so it only queues; the line
// is written by Sync, which the engine calls once the mutex is released
// and before the lock call is answered.
func (a *Audit) LockEvent(e semaphores.Event) {
	if eventLevel(e.Kind) < a.level {
		return
	}
	name, path := a.resolve(e.Node)
	ent := auditEntry{e: e, name: name, path: path, command: a.commands.lookup(e.Pid, e.Time)}
	a.qmu.Lock()
	a.queue = append(a.queue, ent)
	a.queued++
	a.qmu.Unlock()
}

// Sync returns once every event queued before the call is handed to
// the log output: for a log file, copied into its spool, from where it
// reaches the file within about a millisecond (at once after a pause)
// and survives a kill -9 of lockfs (logging/spool); for stderr, written.
// Callers combine: whoever takes the writer's turn hands over
// everything queued so far, in order; the others find their events
// handed over when their turn comes.
func (a *Audit) Sync() {
	a.qmu.Lock()
	target := a.queued
	a.qmu.Unlock()
	if a.written.Load() >= target {
		return
	}
	a.wmu.Lock()
	defer a.wmu.Unlock()
	if a.written.Load() >= target {
		return // written by the caller before us
	}
	a.qmu.Lock()
	batch := a.queue
	a.queue = a.spare[:0]
	last := a.queued
	a.qmu.Unlock()
	out := a.format(batch)
	if _, err := a.out.Write(out); err != nil {
		fmt.Fprintf(os.Stderr, "lockfs: writing the audit log: %v\n", err)
	}
	clear(batch)
	a.spare = batch[:0]
	if cap(a.batch) > maxKeptBatch {
		// A burst's buffers are not kept for ever.
		a.batch, a.spare = nil, nil
	}
	a.written.Store(last)
}

// maxKeptBatch is the largest line buffer Sync keeps between batches;
// past it, the entry slice that held the batch goes too.
const maxKeptBatch = 1 << 20

// Close writes what is still queued.
func (a *Audit) Close() { a.Sync() }

func eventLevel(k semaphores.EventKind) zerolog.Level {
	if k == semaphores.EventDeadlock {
		return zerolog.WarnLevel
	}
	return zerolog.InfoLevel
}

// format returns the lines of batch, in the configured format.
func (a *Audit) format(batch []auditEntry) []byte {
	if a.console == nil {
		a.batch = a.batch[:0]
		for i := range batch {
			a.batch = appendAuditLine(a.batch, &batch[i])
		}
		return a.batch
	}
	a.consoleOut.Reset()
	for i := range batch {
		a.line = appendAuditLine(a.line[:0], &batch[i])
		a.console.Write(a.line) // a bytes.Buffer write: cannot fail
	}
	return a.consoleOut.Bytes()
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
