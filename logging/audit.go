package logging

import (
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
	log      zerolog.Logger
	resolve  Resolver
	commands commandCache
}

var _ semaphores.Observer = (*Audit)(nil)

// NewAudit returns an observer writing to l.
func NewAudit(l *Logger, resolve Resolver) *Audit {
	return &Audit{log: l.audit, resolve: resolve}
}

// LockEvent writes one line for e. It never drops an event that passes
// the configured level.
func (a *Audit) LockEvent(e semaphores.Event) {
	var ev *zerolog.Event
	switch e.Kind {
	case semaphores.EventDeadlock:
		ev = a.log.Warn()
	default:
		ev = a.log.Info()
	}
	if ev == nil {
		return // below the configured level
	}
	name, path := a.resolve(e.Node)
	ev.Time(zerolog.TimestampFieldName, e.Time).
		Str("event", e.Kind.String()).
		Str("lock", name).
		Str("path", path).
		Str("kind", e.Class.String()).
		Str("mode", e.Type.String()).
		Uint64("start", e.Start).
		Uint64("end", e.End).
		Uint32("pid", e.Pid).
		Str("command", a.commands.lookup(e.Pid, e.Time)).
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
