package semaphores

import (
	"slices"
	"time"
)

// Snapshot is the lock state of a table. Each FileState is consistent
// (taken under that file's mutex); files are taken one after another.
type Snapshot struct {
	Taken time.Time
	Files []FileState // sorted by Node
}

// FileState is the lock state of one file.
type FileState struct {
	Node uint64
	// Locks are the applied locks: the POSIX space in kernel order, then
	// the flock space.
	Locks []Lock
	// Waiters are the blocked requests in arrival order, then the pollers
	// (owners refused by F_SETLK and not granted since) by first refusal.
	Waiters []Waiter
}

// Waiter is an owner waiting for a lock.
type Waiter struct {
	Owner    uint64
	Fh       uint64
	Class    Class
	Type     LockType
	Start    uint64
	End      uint64
	Pid      uint32
	Uid      uint32
	Since    time.Time // first refusal or block
	Attempts int
	// Blocked is true for a request blocked in F_SETLKW / flock, false for
	// a poller.
	Blocked bool
	// Blocker is the first applied lock in the way, if any.
	Blocker *Lock
}

// Snapshot returns the state of every file that has any.
func (t *Table) Snapshot() Snapshot {
	t.mu.RLock()
	nodes := make([]uint64, 0, len(t.files))
	for n := range t.files {
		nodes = append(nodes, n)
	}
	t.mu.RUnlock()
	slices.Sort(nodes)
	s := Snapshot{Taken: t.now(), Files: make([]FileState, 0, len(nodes))}
	for _, n := range nodes {
		if fs, ok := t.FileSnapshot(n); ok {
			s.Files = append(s.Files, fs)
		}
	}
	return s
}

// FileSnapshot returns the state of one file; ok is false when it has
// none.
func (t *Table) FileSnapshot(node uint64) (FileState, bool) {
	f := t.lockFile(node, false)
	if f == nil {
		return FileState{}, false
	}
	defer t.unlockFile(f)
	if f.empty() {
		return FileState{}, false
	}
	fs := FileState{Node: node}
	if f.st == nil {
		if f.one.held {
			fs.Locks = append(fs.Locks, f.one.lock())
		}
		return fs, true
	}
	for _, sp := range f.spaces() {
		for h := sp.head; h != nil; h = h.next {
			for _, r := range h.recs {
				fs.Locks = append(fs.Locks, r.lock())
			}
		}
	}
	for _, sp := range f.spaces() {
		for w := sp.queue.head; w != nil; w = w.q.next {
			wt := waiterOf(f, sp, &w.req, w.since, w.attempts)
			wt.Blocked = true
			if w.blocker != nil {
				l := w.blocker.lock()
				wt.Blocker = &l
			}
			fs.Waiters = append(fs.Waiters, wt)
		}
	}
	var polls []Waiter
	for _, sp := range f.spaces() {
		for _, p := range sp.pollers {
			wt := waiterOf(f, sp, &p.req, p.since, p.attempts)
			if r := sp.firstConflict(&p.req); r != nil {
				l := r.lock()
				wt.Blocker = &l
			}
			polls = append(polls, wt)
		}
	}
	slices.SortFunc(polls, func(a, b Waiter) int { return a.Since.Compare(b.Since) })
	fs.Waiters = append(fs.Waiters, polls...)
	return fs, true
}

func waiterOf(f *file, sp *space, req *Request, since time.Time, attempts int) Waiter {
	c := ClassPOSIX
	switch {
	case sp.kind == SpaceFlock:
		c = ClassFlock
	case f.isOFD(req.Fh, req.Owner):
		c = ClassOFD
	}
	return Waiter{
		Owner: req.Owner, Fh: req.Fh, Class: c, Type: req.Type, Start: req.Start, End: req.End,
		Pid: req.Pid, Uid: req.Uid, Since: since, Attempts: attempts,
	}
}

// Stats counts what the table holds; all zero once every process that
// used the mount has gone. Files counts every entry, including one kept
// empty between lock calls of a file that is still open.
type Stats struct {
	Files, Records, Waiters, Pollers, Handles, GraphOwners int
}

// Stats returns the table's current size.
func (t *Table) Stats() Stats {
	var st Stats
	t.mu.RLock()
	files := make([]*file, 0, len(t.files))
	for _, f := range t.files {
		files = append(files, f)
	}
	t.mu.RUnlock()
	for _, f := range files {
		f.mu.Lock()
		if !f.dead {
			st.Files++
			if f.one.held {
				st.Records++
			}
			for _, sp := range f.spaces() {
				for h := sp.head; h != nil; h = h.next {
					st.Records += len(h.recs)
				}
				for w := sp.queue.head; w != nil; w = w.q.next {
					st.Waiters++
				}
				st.Pollers += len(sp.pollers)
			}
			st.Handles += len(f.handles)
		}
		f.mu.Unlock()
	}
	t.graph.mu.Lock()
	st.GraphOwners = len(t.graph.waits)
	t.graph.mu.Unlock()
	return st
}
