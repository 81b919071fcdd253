package semaphores

import "time"

// EventKind names an audit event. Every change of lock state produces
// exactly one event of the matching kind; nothing is sampled or merged,
// except that repeated refusals of a polling owner are folded into one
// EventWaiting and the attempt count of the EventAcquired or EventGaveUp
// that ends the wait.
type EventKind uint8

const (
	// EventWaiting: an owner was first refused (F_SETLK → EAGAIN) or first
	// blocked (F_SETLKW) on a lock it does not have.
	EventWaiting EventKind = iota + 1
	// EventAcquired: a request changed the owner's holdings.
	EventAcquired
	// EventReleased: held bytes were given up (Reason says why).
	EventReleased
	// EventInterrupted: a blocked wait was cancelled by a signal (R19).
	// The owner still counts as waiting until it is granted or closes.
	EventInterrupted
	// EventDeadlock: a blocking request was refused with EDEADLK (R20).
	EventDeadlock
	// EventGaveUp: a waiting owner closed the file without the lock.
	EventGaveUp
)

var eventNames = [...]string{
	EventWaiting:     "waiting",
	EventAcquired:    "acquired",
	EventReleased:    "released",
	EventInterrupted: "interrupted",
	EventDeadlock:    "deadlock",
	EventGaveUp:      "gave_up",
}

func (k EventKind) String() string {
	if int(k) < len(eventNames) && eventNames[k] != "" {
		return eventNames[k]
	}
	return "unknown"
}

// ReleaseReason says what ended a hold.
type ReleaseReason uint8

const (
	ReasonNone ReleaseReason = iota
	// ReasonUnlock: an explicit unlock (F_UNLCK, LOCK_UN).
	ReasonUnlock
	// ReasonConvert: the owner replaced the range with the other mode
	// (a POSIX upgrade/downgrade, or the first half of a flock conversion,
	// R27).
	ReasonConvert
	// ReasonClose: a close() of any fd of the file by the owning process
	// (FUSE FLUSH, R11), including the implicit closes at exit.
	ReasonClose
	// ReasonRelease: the last fd of the open file description was closed
	// (FUSE RELEASE, R12): flock and OFD locks end here.
	ReasonRelease
)

var reasonNames = [...]string{
	ReasonNone:    "",
	ReasonUnlock:  "unlock",
	ReasonConvert: "convert",
	ReasonClose:   "close",
	ReasonRelease: "release",
}

func (r ReleaseReason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Event is one audit record. Fields that do not apply to a kind are zero.
type Event struct {
	Kind  EventKind
	Time  time.Time
	Node  uint64
	Fh    uint64
	Owner uint64
	Class Class
	Type  LockType
	Start uint64
	End   uint64
	// Pid and Uid are those of the process that requested the lock (for
	// a release: of the process that acquired it).
	Pid uint32
	Uid uint32
	// Waited is the time from the owner's first refusal or block to this
	// event (acquired, interrupted, gave_up).
	Waited time.Duration
	// Attempts counts requests in the wait, the final one included.
	Attempts int
	// Held is the time the released record had been held.
	Held   time.Duration
	Reason ReleaseReason
	// BlockerOwner and BlockerPid name the first conflicting lock
	// (waiting, deadlock).
	BlockerOwner uint64
	BlockerPid   uint32
}

// Observer receives audit events. LockEvent is called synchronously, in
// the order the changes happen for a file, while the engine holds that
// file's mutex: it must not call back into the engine, and should return
// quickly. The Event may be retained (it is passed by value).
type Observer interface {
	LockEvent(e Event)
}

type nopObserver struct{}

func (nopObserver) LockEvent(Event) {}

// Observers fans events out to several observers, called in order with
// the same event. Each one gets the Observer contract above: called under
// the file's mutex, it must be quick and must not call the engine.
type Observers []Observer

// LockEvent passes e to every observer.
func (os Observers) LockEvent(e Event) {
	for _, o := range os {
		o.LockEvent(e)
	}
}

// Sync syncs every observer that is a Syncer.
func (os Observers) Sync() {
	for _, o := range os {
		if s, ok := o.(Syncer); ok {
			s.Sync()
		}
	}
}

// Syncer is an Observer that defers work out of the engine's critical
// section: after each call that may have produced events, once the
// file's mutex is released and before the call returns (so before the
// FUSE reply), the Table calls Sync. An audit log writes its lines
// there, so that an answered lock call's events are on disk.
type Syncer interface {
	Sync()
}

var _ Syncer = Observers(nil)
