package fs

import (
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lockfs/lockfs/semaphores"
)

// lockRaw takes the lock traffic below go-fuse's node API (LOCK-SEMANTICS
// G5): go-fuse's node bridge drops FLUSH's lock owner and RELEASE's flags
// and owner (G2), which close semantics need. It wraps the RawFileSystem
// of fs.NewNodeFS, answers GETLK/SETLK/SETLKW from the engine, and tells
// the engine about FLUSH and RELEASE before passing them on. Everything
// else goes to the node bridge unchanged.
//
// Requests are keyed by NodeId, which equals the inode number lockfs
// chose (the bridge runs with ExternalNodeID), and by the FUSE file handle
// Fh, one per open file description (every Open returns its own handle,
// G6). The lock pid is lk.pid, the caller's tgid, never the header's pid,
// which is a thread id (R3). Handlers keep neither the request nor the
// cancel channel after returning: go-fuse reuses them (G7).
type lockRaw struct {
	fuse.RawFileSystem
	fsys *FS
	eng  semaphores.Engine

	// open holds the (NodeId, Fh) pairs of the open file descriptions,
	// from the OPEN/CREATE reply to RELEASE: a lock request naming
	// anything else is not from the kernel and gets EINVAL.
	open sync.Map // handleKey → struct{}
}

type handleKey struct{ node, fh uint64 }

// request builds the engine request for a lock message, or reports false
// for what the kernel never sends (unknown flags, a node or handle that
// is not an open regular file of this mount): the caller answers EINVAL.
func (r *lockRaw) request(in *fuse.LkIn) (semaphores.Request, bool) {
	if in.LkFlags&^uint32(fuse.FUSE_LK_FLOCK) != 0 || !r.fsys.IsFile(in.NodeId) {
		return semaphores.Request{}, false
	}
	if _, ok := r.open.Load(handleKey{in.NodeId, in.Fh}); !ok {
		return semaphores.Request{}, false
	}
	space := semaphores.SpacePOSIX
	if in.LkFlags&fuse.FUSE_LK_FLOCK != 0 {
		space = semaphores.SpaceFlock
	}
	return semaphores.Request{
		Node:  in.NodeId,
		Fh:    in.Fh,
		Owner: in.Owner,
		Space: space,
		Type:  semaphores.LockType(in.Lk.Typ),
		Start: in.Lk.Start,
		End:   in.Lk.End,
		Pid:   in.Lk.Pid,
		Uid:   in.Caller.Uid,
	}, true
}

func status(err error) fuse.Status {
	return fuse.Status(semaphores.Errno(err))
}

// GetLk answers F_GETLK and F_OFD_GETLK (R16, R23, R25). When nothing
// conflicts only the type is set to F_UNLCK: the kernel then leaves the
// caller's struct flock as it was (R7).
func (r *lockRaw) GetLk(cancel <-chan struct{}, in *fuse.LkIn, out *fuse.LkOut) fuse.Status {
	req, ok := r.request(in)
	if !ok {
		return fuse.EINVAL
	}
	l, err := r.eng.Getlk(req)
	if err != nil {
		return status(err)
	}
	if l.Type == semaphores.Unlock {
		out.Lk = in.Lk
		out.Lk.Typ = syscall.F_UNLCK
		return fuse.OK
	}
	out.Lk = fuse.FileLock{Start: l.Start, End: l.End, Typ: uint32(l.Type), Pid: l.Pid}
	return fuse.OK
}

// SetLk answers the non-blocking lock calls: EAGAIN on conflict (R17).
func (r *lockRaw) SetLk(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	req, ok := r.request(in)
	if !ok {
		return fuse.EINVAL
	}
	return status(r.eng.Setlk(req))
}

// SetLkw answers the blocking lock calls. The wait ends with the grant,
// with EINTR once the kernel's INTERRUPT (a signal to the caller, or
// unmount) cancels the request (R9, R19), or with EDEADLK (R20). EINTR is
// only ever returned for a cancelled request, so errno 512 cannot leak
// (R7).
func (r *lockRaw) SetLkw(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	req, ok := r.request(in)
	if !ok {
		return fuse.EINVAL
	}
	ctx := &fuse.Context{Caller: in.Caller, Cancel: cancel}
	return status(r.eng.Setlkw(ctx, req))
}

// Flush is sent by every close() of an fd, with the closing process's
// POSIX lock owner: that owner's POSIX locks on the node go (R11). It
// runs even when the request was interrupted (a SIGKILLed process's exit
// flush is), and never answers ENOSYS, which would stop FLUSH for the
// whole mount (R8).
func (r *lockRaw) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	r.eng.Flush(in.NodeId, in.Fh, in.LockOwner)
	if _, ok := r.open.Load(handleKey{in.NodeId, in.Fh}); !ok {
		return fuse.OK // not an open handle: nothing for the bridge
	}
	return r.RawFileSystem.Flush(cancel, in)
}

// Open and Create record the new open file description.
func (r *lockRaw) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	st := r.RawFileSystem.Open(cancel, in, out)
	if st == fuse.OK {
		r.open.Store(handleKey{in.NodeId, out.Fh}, struct{}{})
	}
	return st
}

func (r *lockRaw) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	st := r.RawFileSystem.Create(cancel, in, name, out)
	if st == fuse.OK {
		r.open.Store(handleKey{out.NodeId, out.Fh}, struct{}{})
	}
	return st
}

// Rename, Unlink, Rmdir and Link change paths: once the bridge has
// updated the tree, the names cached for the audit log are invalidated.
func (r *lockRaw) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	defer r.fsys.pathGen.Add(1)
	return r.RawFileSystem.Rename(cancel, in, oldName, newName)
}

func (r *lockRaw) Unlink(cancel <-chan struct{}, in *fuse.InHeader, name string) fuse.Status {
	defer r.fsys.pathGen.Add(1)
	return r.RawFileSystem.Unlink(cancel, in, name)
}

func (r *lockRaw) Rmdir(cancel <-chan struct{}, in *fuse.InHeader, name string) fuse.Status {
	defer r.fsys.pathGen.Add(1)
	return r.RawFileSystem.Rmdir(cancel, in, name)
}

func (r *lockRaw) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	defer r.fsys.pathGen.Add(1)
	return r.RawFileSystem.Link(cancel, in, name, out)
}

// Release is sent when the last fd of an open file description is gone:
// its flock lock (when the kernel says FUSE_RELEASE_FLOCK_UNLOCK) and its
// OFD locks go, and the engine forgets the handle, whose number go-fuse
// recycles (R12).
func (r *lockRaw) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	_, known := r.open.LoadAndDelete(handleKey{in.NodeId, in.Fh})
	r.eng.Release(semaphores.ReleaseRequest{
		Node:        in.NodeId,
		Fh:          in.Fh,
		Owner:       in.LockOwner,
		FlockUnlock: in.ReleaseFlags&fuse.FUSE_RELEASE_FLOCK_UNLOCK != 0,
	})
	if known {
		// go-fuse panics on handles it does not know; the kernel never
		// sends those, a malformed request might.
		r.RawFileSystem.Release(cancel, in)
	}
}
