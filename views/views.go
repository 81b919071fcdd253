// Package views renders the lock state of a lockfs mount the way
// util-linux lslocks(8) renders the kernel's: one row per applied lock
// and per waiter, with lslocks's columns (COMMAND PID TYPE SIZE MODE M
// START END PATH BLOCKER), its -o/-n/-r/-u/-J options and its JSON
// shape, plus what lslocks cannot know: WAITED and HELD durations and the
// ATTEMPTS of pollers (fasteners/oslo retry F_SETLK every 10–100 ms and
// never block in the kernel, so lslocks never shows them waiting).
//
// The same rows and renderers serve the read-only files inside the mount
// (<mnt>/.lockfs/locks, locks.json, held/*, the user.lockfs.* extended
// attributes) and the `lockfs locks` command, which reads locks.json and
// renders it again with the caller's options. Nothing here imports FUSE.
package views

import (
	"cmp"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lockfs/lockfs/semaphores"
)

// State says whether a row is an applied lock or a waiter, and how the
// waiter waits.
type State uint8

const (
	// Held: an applied lock.
	Held State = iota
	// Blocked: a request waiting in F_SETLKW, F_OFD_SETLKW or a blocking
	// flock(2), as lslocks shows with "*".
	Blocked
	// Polling: an owner whose F_SETLK (or LOCK_NB) was refused and that
	// has not got the lock nor closed the file since: the fasteners/oslo
	// pattern. It counts as waiting from its first refused attempt.
	Polling
)

var stateNames = [...]string{Held: "held", Blocked: "blocked", Polling: "polling"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// Waiting reports whether the row is a waiter (MODE gets a "*").
func (s State) Waiting() bool { return s != Held }

func parseState(s string) (State, bool) {
	for i, n := range stateNames {
		if n == s {
			return State(i), true
		}
	}
	return 0, false
}

// Row is one line of the listing: an applied lock record or a waiter.
type Row struct {
	// Command is the command name of PID (/proc/PID/comm), or
	// "(undefined)" once the process is gone, as lslocks prints it.
	Command string
	// PID is the process that took the lock or waits for it (the
	// kernel's lk.pid). Unlike lslocks, which prints -1 for OFD locks,
	// lockfs knows and shows the pid that took an OFD lock.
	PID int64
	// Type is POSIX, OFDLCK or FLOCK.
	Type string
	// Size is the size in bytes of the locked file (0 for lock files).
	Size uint64
	// Mode is READ or WRITE; rendered with "*" for a waiter.
	Mode  string
	State State
	// Start and End are the inclusive byte range; End ==
	// semaphores.OffsetMax means "to end of file" and renders as 0, as
	// lslocks renders EOF.
	Start, End uint64
	// Path is the absolute path of the file, with " (deleted)" appended
	// when it was unlinked while locked.
	Path string
	// Blocker is the pid of the first lock in a waiter's way, 0 if none.
	Blocker int64
	// Waited is how long a waiter has waited (from its first refusal or
	// block); Held is how long a lock has been held. Each is only
	// meaningful for its kind of row.
	Waited time.Duration
	Held   time.Duration
	// Attempts counts a waiter's requests so far: refused F_SETLKs of a
	// poller, plus the blocked request of a blocked waiter.
	Attempts int
	// Lock is the file name; Owner the kernel's lock owner; UID the
	// requester's uid; Inode the file's inode number in the mount.
	Lock  string
	Owner uint64
	UID   uint32
	Inode uint64
	// Since is when the lock was acquired or the wait began.
	Since time.Time
}

// FileInfo describes a locked file.
type FileInfo struct {
	Name  string // file name (the audit log's "lock")
	Path  string // absolute path
	Size  uint64
	Inode uint64
}

// Undefined is the COMMAND of a process that is gone, lslocks's word.
const Undefined = "(undefined)"

// Build turns a snapshot into rows: files in path order; within a file,
// the applied locks in the kernel's order (POSIX and OFD space, then
// flock), then the blocked waiters in arrival order, then the pollers by
// first refusal. Durations are measured at snap.Taken. file describes
// each node; command names each pid (nil: /proc/PID/comm).
func Build(snap semaphores.Snapshot, file func(node uint64) FileInfo, command func(pid uint32) string) []Row {
	if command == nil {
		command = Commands()
	}
	type group struct {
		info FileInfo
		fs   *semaphores.FileState
	}
	groups := make([]group, 0, len(snap.Files))
	n := 0
	for i := range snap.Files {
		fs := &snap.Files[i]
		groups = append(groups, group{file(fs.Node), fs})
		n += len(fs.Locks) + len(fs.Waiters)
	}
	slices.SortStableFunc(groups, func(a, b group) int { return cmp.Compare(a.info.Path, b.info.Path) })
	rows := make([]Row, 0, n)
	for _, g := range groups {
		for _, l := range g.fs.Locks {
			rows = append(rows, Row{
				Command: command(l.Pid), PID: int64(l.Pid), Type: TypeName(l.Class),
				Size: g.info.Size, Mode: ModeName(l.Type), State: Held,
				Start: l.Start, End: l.End, Path: g.info.Path,
				Held: nonNegative(snap.Taken.Sub(l.Since)),
				Lock: g.info.Name, Owner: l.Owner, UID: l.Uid, Inode: g.info.Inode, Since: l.Since,
			})
		}
		for _, w := range g.fs.Waiters {
			r := Row{
				Command: command(w.Pid), PID: int64(w.Pid), Type: TypeName(w.Class),
				Size: g.info.Size, Mode: ModeName(w.Type), State: Polling,
				Start: w.Start, End: w.End, Path: g.info.Path,
				Waited: nonNegative(snap.Taken.Sub(w.Since)), Attempts: w.Attempts,
				Lock: g.info.Name, Owner: w.Owner, UID: w.Uid, Inode: g.info.Inode, Since: w.Since,
			}
			if w.Blocked {
				r.State = Blocked
			}
			if w.Blocker != nil {
				r.Blocker = int64(w.Blocker.Pid)
			}
			rows = append(rows, r)
		}
	}
	return rows
}

func nonNegative(d time.Duration) time.Duration { return max(d, 0) }

// TypeName is lslocks's TYPE for a lock class.
func TypeName(c semaphores.Class) string {
	switch c {
	case semaphores.ClassOFD:
		return "OFDLCK"
	case semaphores.ClassFlock:
		return "FLOCK"
	}
	return "POSIX"
}

// ModeName is lslocks's MODE (without the waiter's "*").
func ModeName(t semaphores.LockType) string {
	if t == semaphores.ReadLock {
		return "READ"
	}
	return "WRITE"
}

// Commands returns a function naming pids from /proc/PID/comm, reading
// each pid once: one listing shows one name per pid even if it exits
// half-way.
func Commands() func(pid uint32) string {
	seen := map[uint32]string{}
	return func(pid uint32) string {
		if name, ok := seen[pid]; ok {
			return name
		}
		name := ProcCommand(pid)
		seen[pid] = name
		return name
	}
}

// ProcCommand reads /proc/PID/comm, or returns Undefined.
func ProcCommand(pid uint32) string {
	if pid == 0 {
		return Undefined
	}
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/comm")
	if err != nil {
		return Undefined
	}
	return strings.TrimSuffix(string(b), "\n")
}

// Holders and Waiters split rows by state.
func Holders(rows []Row) []Row {
	return slices.DeleteFunc(slices.Clone(rows), func(r Row) bool { return r.State.Waiting() })
}

func Waiters(rows []Row) []Row {
	return slices.DeleteFunc(slices.Clone(rows), func(r Row) bool { return !r.State.Waiting() })
}

// AttrValue renders rows as the value of a user.lockfs.holders or
// user.lockfs.waiters extended attribute: one line per row, lines joined
// by "\n", fields as key=value with the command last (it may contain
// spaces):
//
//	pid=8358 type=POSIX mode=WRITE start=0 end=EOF uid=1000 since=2026-11-26T12:49:35.943522Z command=python3
//	pid=8360 type=POSIX mode=WRITE start=0 end=EOF uid=1000 since=… state=polling blocker=8358 command=python3
//
// Only values that do not change while the state stands are included (no
// durations, no attempt counts), so that the size a first getxattr(2)
// reports still fits the value a second one returns.
func AttrValue(rows []Row) string {
	var b strings.Builder
	for i, r := range rows {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString("pid=")
		b.WriteString(strconv.FormatInt(r.PID, 10))
		b.WriteString(" type=")
		b.WriteString(r.Type)
		b.WriteString(" mode=")
		b.WriteString(r.Mode)
		b.WriteString(" start=")
		b.WriteString(strconv.FormatUint(r.Start, 10))
		b.WriteString(" end=")
		if r.End == semaphores.OffsetMax {
			b.WriteString("EOF")
		} else {
			b.WriteString(strconv.FormatUint(r.End, 10))
		}
		b.WriteString(" uid=")
		b.WriteString(strconv.FormatUint(uint64(r.UID), 10))
		b.WriteString(" since=")
		b.WriteString(FormatTime(r.Since))
		if r.State.Waiting() {
			b.WriteString(" state=")
			b.WriteString(r.State.String())
			if r.Blocker != 0 {
				b.WriteString(" blocker=")
				b.WriteString(strconv.FormatInt(r.Blocker, 10))
			}
		}
		b.WriteString(" command=")
		b.WriteString(r.Command)
	}
	return b.String()
}

// TimeFormat is the format of SINCE: RFC 3339 in UTC with microseconds,
// as in the audit log.
const TimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// FormatTime formats t with TimeFormat in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// HeldName is the name of a locked file's entry in <mnt>/.lockfs/held/:
// its path relative to the mount, with "%" written "%25" and "/" written
// "%2F", so that every lock file, in a subdirectory or not, is one flat
// entry ("test_accounts%2Faccount.lock"). Names without those characters,
// such as all of Tempest's, are unchanged.
func HeldName(rel string) string {
	if !strings.ContainsAny(rel, "%/") {
		return rel
	}
	return strings.NewReplacer("%", "%25", "/", "%2F").Replace(rel)
}
