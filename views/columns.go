package views

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/lockfs/lockfs/semaphores"
)

// Column is one column of the listing.
type Column uint8

// The lslocks columns (util-linux 2.38, without INODE's and MAJ:MIN's
// device meaning), then lockfs's own.
const (
	ColCommand Column = iota
	ColPID
	ColType
	ColSize
	ColMode
	ColM
	ColStart
	ColEnd
	ColPath
	ColBlocker
	ColWaited
	ColHeld
	ColAttempts
	ColLock
	ColOwner
	ColUID
	ColInode
	ColState
	ColSince
	numColumns
)

type colInfo struct {
	name  string
	help  string
	right bool // right-aligned in tables
	trunc bool // may be truncated to fit the terminal
	min   int  // minimum table width (lslocks's width hint)
}

var columns = [numColumns]colInfo{
	ColCommand:  {name: "COMMAND", help: "command of the process holding or waiting for the lock", min: 15},
	ColPID:      {name: "PID", help: "PID of the process holding or waiting for the lock", right: true, min: 5},
	ColType:     {name: "TYPE", help: "kind of lock: POSIX, OFDLCK or FLOCK", right: true, min: 5},
	ColSize:     {name: "SIZE", help: "size of the locked file", right: true, min: 4},
	ColMode:     {name: "MODE", help: "lock access mode: READ or WRITE, * when waiting", min: 5},
	ColM:        {name: "M", help: "mandatory state of the lock: 0 (none), 1 (set)"},
	ColStart:    {name: "START", help: "relative byte offset of the lock", right: true},
	ColEnd:      {name: "END", help: "ending offset of the lock (0: end of file)", right: true},
	ColPath:     {name: "PATH", help: "path of the locked file", trunc: true},
	ColBlocker:  {name: "BLOCKER", help: "PID of the process holding the first conflicting lock", right: true},
	ColWaited:   {name: "WAITED", help: "how long the waiter has been waiting", right: true},
	ColHeld:     {name: "HELD", help: "how long the lock has been held", right: true},
	ColAttempts: {name: "ATTEMPTS", help: "requests of a waiter so far (refused F_SETLKs of a poller)", right: true},
	ColLock:     {name: "LOCK", help: "name of the locked file"},
	ColOwner:    {name: "OWNER", help: "kernel lock owner (hex)"},
	ColUID:      {name: "UID", help: "uid of the requesting process", right: true},
	ColInode:    {name: "INODE", help: "inode number", right: true},
	ColState:    {name: "STATE", help: "held, blocked (waits in the kernel) or polling (retries F_SETLK)"},
	ColSince:    {name: "SINCE", help: "when the lock was acquired or the wait began (UTC)"},
}

// Name is the column's heading; its JSON key is the lower-case name.
func (c Column) Name() string { return columns[c].name }

// Help describes the column.
func (c Column) Help() string { return columns[c].help }

func (c Column) key() string { return strings.ToLower(columns[c].name) }

var (
	// DefaultColumns are those of a table without -o: lslocks's default
	// columns and BLOCKER, then WAITED, HELD and ATTEMPTS.
	DefaultColumns = []Column{ColCommand, ColPID, ColType, ColSize, ColMode, ColM, ColStart, ColEnd,
		ColPath, ColBlocker, ColWaited, ColHeld, ColAttempts}
	// DefaultJSONColumns are the keys of -J without -o: lslocks's keys
	// in its order, then every lockfs addition.
	DefaultJSONColumns = append(append([]Column(nil), DefaultColumns...),
		ColLock, ColOwner, ColUID, ColInode, ColState, ColSince)
	// FileColumns are those of a .lockfs/held/ entry: the rows of one
	// file, so without SIZE, M and PATH.
	FileColumns = []Column{ColCommand, ColPID, ColType, ColMode, ColStart, ColEnd, ColBlocker,
		ColWaited, ColHeld, ColAttempts, ColUID}
)

// AllColumns returns every column, in order (--output-all).
func AllColumns() []Column {
	cs := make([]Column, numColumns)
	for i := range cs {
		cs[i] = Column(i)
	}
	return cs
}

// ParseColumn finds a column by name, case-insensitively.
func ParseColumn(name string) (Column, bool) {
	for i, ci := range columns {
		if strings.EqualFold(ci.name, name) {
			return Column(i), true
		}
	}
	return 0, false
}

// ParseColumns parses an -o/--output list: comma-separated column names;
// a list starting with "+" extends def, as with lslocks. A column named
// twice is printed once (a JSON object cannot have a key twice).
func ParseColumns(list string, def []Column) ([]Column, error) {
	var out []Column
	if rest, ok := strings.CutPrefix(list, "+"); ok {
		out = append(out, def...)
		list = rest
	}
	if strings.TrimSpace(list) == "" {
		return nil, fmt.Errorf("empty column list")
	}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		c, ok := ParseColumn(name)
		if !ok {
			return nil, fmt.Errorf("unknown column: %q (see 'lockfs locks --help' for the list)", name)
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// cell is a column's text in a table.
func (r *Row) cell(c Column) string {
	switch c {
	case ColCommand:
		return r.Command
	case ColPID:
		return strconv.FormatInt(r.PID, 10)
	case ColType:
		return r.Type
	case ColSize:
		if r.Size == 0 {
			return ""
		}
		return HumanSize(r.Size)
	case ColMode:
		if r.State.Waiting() {
			return r.Mode + "*"
		}
		return r.Mode
	case ColM:
		return "0"
	case ColStart:
		return strconv.FormatUint(r.Start, 10)
	case ColEnd:
		return strconv.FormatUint(r.end(), 10)
	case ColPath:
		return r.Path
	case ColBlocker:
		if r.Blocker == 0 {
			return ""
		}
		return strconv.FormatInt(r.Blocker, 10)
	case ColWaited:
		if !r.State.Waiting() {
			return ""
		}
		return HumanDuration(r.Waited)
	case ColHeld:
		if r.State.Waiting() {
			return ""
		}
		return HumanDuration(r.Held)
	case ColAttempts:
		if !r.State.Waiting() {
			return ""
		}
		return strconv.Itoa(r.Attempts)
	case ColLock:
		return r.Lock
	case ColOwner:
		return hex16(r.Owner)
	case ColUID:
		return strconv.FormatUint(uint64(r.UID), 10)
	case ColInode:
		return strconv.FormatUint(r.Inode, 10)
	case ColState:
		return r.State.String()
	case ColSince:
		if r.Since.IsZero() {
			return ""
		}
		return FormatTime(r.Since)
	}
	return ""
}

// end is END as lslocks shows it: 0 for "to end of file".
func (r *Row) end() uint64 {
	if r.End == semaphores.OffsetMax {
		return 0
	}
	return r.End
}

func hex16(v uint64) string {
	s := strconv.FormatUint(v, 16)
	return strings.Repeat("0", max(0, 16-len(s))) + s
}
