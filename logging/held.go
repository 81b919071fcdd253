package logging

import (
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockfs/lockfs/semaphores"
)

// HeldWatcher logs a held_long warning, once per hold, for every lock
// held longer than a threshold (`lockfs mount --warn-held`), so that a
// hung holder shows in the log by itself:
//
//	{"level":"warn","time":…,"event":"held_long","lock":"tempest-availability_zone",
//	 "path":…,"kind":"posix","mode":"write","start":0,"end":9223372036854775807,
//	 "pid":8358,"command":"python3","uid":0,"owner":"…","fh":1,"held_s":600.2,
//	 "since":"…","waiters":2,"message":"File lock \"tempest-availability_zone\" at … held for 10m0s by pid 8358 (python3), 2 waiting"}
//
// It scans an engine snapshot every threshold/10 (at least every 10 ms,
// at most every second) rather than timing each hold from the audit
// events: a snapshot says exactly what is held, with its acquisition
// time, whatever happened in between, and costs one short critical
// section per locked file. So a warning comes between threshold and
// threshold + one interval after the acquisition.
//
// A hold is one owner's locks on one file in one lock space (POSIX/OFD,
// or flock), starting at the acquisition time of its oldest record. It
// is warned about once; it ends when the owner holds nothing there any
// more, or when its oldest record goes (a partial unlock, a conversion):
// what remains is then a new hold, warned about once it is old enough.
type HeldWatcher struct {
	audit     *Audit
	snapshot  func() semaphores.Snapshot
	threshold time.Duration

	// warned are the holds already reported and still present at the
	// last scan; only the scanning goroutine uses it.
	warned map[holdKey]bool

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

type holdKey struct {
	node, owner uint64
	flock       bool
	since       time.Time
}

// WatchHeld starts a HeldWatcher writing through a. Stop it with Stop.
func (a *Audit) WatchHeld(snapshot func() semaphores.Snapshot, threshold time.Duration) *HeldWatcher {
	w := newHeldWatcher(a, snapshot, threshold)
	go w.run(scanInterval(threshold))
	return w
}

func newHeldWatcher(a *Audit, snapshot func() semaphores.Snapshot, threshold time.Duration) *HeldWatcher {
	return &HeldWatcher{
		audit: a, snapshot: snapshot, threshold: threshold,
		warned: make(map[holdKey]bool),
		stop:   make(chan struct{}), done: make(chan struct{}),
	}
}

// scanInterval is threshold/10, within [10ms, 1s].
func scanInterval(threshold time.Duration) time.Duration {
	return min(max(threshold/10, 10*time.Millisecond), time.Second)
}

func (w *HeldWatcher) run(every time.Duration) {
	defer close(w.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.scan(w.snapshot())
		}
	}
}

// Stop ends the watcher and waits for its last scan to finish.
func (w *HeldWatcher) Stop() {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.done
}

// hold is one hold found in a snapshot: its oldest record.
type hold struct {
	lock    semaphores.Lock
	waiters int
}

// scan warns about the holds of snap older than the threshold that were
// not warned about yet, and forgets the holds that are gone. It returns
// the number of warnings written.
func (w *HeldWatcher) scan(snap semaphores.Snapshot) int {
	present := make(map[holdKey]hold)
	for _, f := range snap.Files {
		oldest := make(map[holdKey]hold) // by owner and space, since unset
		for _, l := range f.Locks {
			k := holdKey{node: f.Node, owner: l.Owner, flock: l.Class == semaphores.ClassFlock}
			if h, ok := oldest[k]; !ok || l.Since.Before(h.lock.Since) {
				oldest[k] = hold{lock: l, waiters: len(f.Waiters)}
			}
		}
		for k, h := range oldest {
			k.since = h.lock.Since
			present[k] = h
		}
	}
	for k := range w.warned {
		if _, ok := present[k]; !ok {
			delete(w.warned, k)
		}
	}
	n := 0
	for k, h := range present {
		if w.warned[k] || snap.Taken.Sub(k.since) < w.threshold {
			continue
		}
		w.warned[k] = true
		w.warn(k.node, h, snap.Taken)
		n++
	}
	return n
}

func (w *HeldWatcher) warn(node uint64, h hold, now time.Time) {
	ev := w.audit.log.Warn()
	if ev == nil {
		return // below the configured level
	}
	l := h.lock
	held := now.Sub(l.Since)
	name, path := w.audit.resolve(node)
	command := w.audit.commands.lookup(l.Pid, now)
	ev.Time(zerolog.TimestampFieldName, now).
		Str("event", "held_long").
		Str("lock", name).
		Str("path", path).
		Str("kind", l.Class.String()).
		Str("mode", l.Type.String()).
		Uint64("start", l.Start).
		Uint64("end", l.End).
		Uint32("pid", l.Pid).
		Str("command", command).
		Uint32("uid", l.Uid).
		Str("owner", hex(l.Owner)).
		Uint64("fh", l.Fh).
		Float64("held_s", seconds(held)).
		Time("since", l.Since).
		Float64("threshold_s", seconds(w.threshold)).
		Int("waiters", h.waiters).
		Msg("File lock " + strconv.Quote(name) + " at " + path + " held for " +
			held.Truncate(100*time.Millisecond).String() + " by pid " +
			strconv.FormatUint(uint64(l.Pid), 10) + " (" + command + "), " +
			strconv.Itoa(h.waiters) + " waiting")
}
