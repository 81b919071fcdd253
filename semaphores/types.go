package semaphores

import (
	"fmt"
	"syscall"
	"time"
)

// OffsetMax is the largest byte offset a lock can cover (the kernel's
// OFFSET_MAX). A range ending at OffsetMax means "to end of file".
const OffsetMax uint64 = 1<<63 - 1

// Space selects one of the two independent lock spaces of a file (R26).
// POSIX record locks (fcntl, lockf) and OFD locks share SpacePOSIX;
// flock(2) locks live in SpaceFlock. Locks in different spaces never
// conflict, even when they come from the same process.
type Space uint8

const (
	SpacePOSIX Space = iota
	SpaceFlock
)

func (s Space) String() string {
	if s == SpaceFlock {
		return "flock"
	}
	return "posix"
}

// LockType is the lock mode, with the Linux values the kernel puts on the
// FUSE wire (R2): F_RDLCK=0, F_WRLCK=1, F_UNLCK=2.
type LockType uint32

const (
	ReadLock  LockType = syscall.F_RDLCK
	WriteLock LockType = syscall.F_WRLCK
	Unlock    LockType = syscall.F_UNLCK
)

func (t LockType) String() string {
	switch t {
	case ReadLock:
		return "read"
	case WriteLock:
		return "write"
	case Unlock:
		return "unlock"
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// Class tells how a lock owner is reported: a classic POSIX owner (a
// process), an OFD owner (an open file description), or a flock owner.
// The engine only learns that a POSIX-space owner is an OFD owner from
// evidence (R24); an owner without evidence is reported as ClassPOSIX.
type Class uint8

const (
	ClassPOSIX Class = iota
	ClassOFD
	ClassFlock
)

func (c Class) String() string {
	switch c {
	case ClassOFD:
		return "ofd"
	case ClassFlock:
		return "flock"
	}
	return "posix"
}

// Request is one lock request as it arrives from the kernel (R2, R3).
//
// Owner is the kernel's opaque lock owner (R4): never derived from Pid.
// Node and Fh identify the file and the open file description it came
// through. Start and End are inclusive absolute offsets, End == OffsetMax
// meaning "to EOF". Pid is the caller's tgid (lk.pid), 0 for unlocks.
type Request struct {
	Node  uint64
	Fh    uint64
	Owner uint64
	Space Space
	Type  LockType
	Start uint64
	End   uint64
	Pid   uint32
	Uid   uint32
}

// validate rejects what the kernel never sends (R3), so a bad request
// cannot change state: EINVAL, as fcntl(2) answers malformed locks.
func (r *Request) validate() error {
	if r.Type > Unlock {
		return ErrInvalid
	}
	if r.Space > SpaceFlock {
		return ErrInvalid
	}
	if r.Space == SpaceFlock {
		// flock(2) is whole-file; the kernel always sends 0..OFFSET_MAX.
		r.Start, r.End = 0, OffsetMax
		return nil
	}
	if r.Start > r.End || r.End > OffsetMax {
		return ErrInvalid
	}
	return nil
}

// Lock describes one applied lock record, or the answer to Getlk.
type Lock struct {
	Owner uint64
	Fh    uint64
	Class Class
	Type  LockType
	Start uint64
	End   uint64
	Pid   uint32
	Uid   uint32
	Since time.Time
}

// ReleaseRequest is a FUSE RELEASE: the last reference to the open file
// description Fh of Node is gone (R12). FlockUnlock is set when the kernel
// passed FUSE_RELEASE_FLOCK_UNLOCK, and then Owner is the description's
// flock owner.
type ReleaseRequest struct {
	Node        uint64
	Fh          uint64
	Owner       uint64
	FlockUnlock bool
}

// Error is a lock error with the errno the kernel gives for it. The fs
// layer maps errors with Errno and never unwraps, so an unexpected error
// cannot leak an arbitrary errno (STYLE §3).
type Error struct {
	errno syscall.Errno
	msg   string
}

func (e *Error) Error() string { return e.msg }

// Errno is the errno the application sees for e.
func (e *Error) Errno() syscall.Errno { return e.errno }

var (
	// ErrWouldBlock: a non-blocking request conflicts with an applied
	// lock. EAGAIN, never EACCES (R17).
	ErrWouldBlock = &Error{syscall.EAGAIN, "conflicting lock is held"}
	// ErrDeadlock: waiting would close a cycle of POSIX owners (R20).
	ErrDeadlock = &Error{syscall.EDEADLK, "lock wait would deadlock"}
	// ErrInterrupted: a blocking wait was cancelled before a grant (R19).
	ErrInterrupted = &Error{syscall.EINTR, "lock wait interrupted"}
	// ErrInvalid: a request the kernel never sends (bad type, range, flags).
	ErrInvalid = &Error{syscall.EINVAL, "invalid lock request"}
	// ErrNoLocks: a configured limit on lock records or waiters is reached.
	ErrNoLocks = &Error{syscall.ENOLCK, "too many locks"}
)

// Errno maps an engine error to the errno for the FUSE reply. nil maps to
// 0; an error that is not one of the engine's maps to EIO.
func Errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if e, ok := err.(*Error); ok {
		return e.errno
	}
	return syscall.EIO
}
