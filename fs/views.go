package fs

// The read-only view of the lock state inside the mount:
//
//	<mnt>/.lockfs/            dr-xr-xr-x  not listed by readdir of the root
//	<mnt>/.lockfs/locks       the `lockfs locks` table
//	<mnt>/.lockfs/locks.json  the `lockfs locks -J` JSON
//	<mnt>/.lockfs/held/NAME   one entry per held lock file: owner = the
//	                          holder's uid, mtime = when it was acquired;
//	                          the content lists its holders and waiters
//
// NAME is the file's path relative to the mount with "%" as "%25" and
// "/" as "%2F" (views.HeldName), so the listing is flat.
//
// Like ZFS's .zfs with snapdir=hidden, .lockfs is reachable by name but
// not listed in the root, so that the root lists exactly what tmpfs
// would. It cannot be created, removed, renamed or replaced, and nothing
// under it can be written, created, removed, renamed, chmod'ed or have
// extended attributes set: EPERM (callers without CAP_DAC_OVERRIDE are
// stopped earlier by the kernel's permission check on the 0555/0444
// modes, with EACCES).
//
// Never stale: every file's content is rendered from one engine snapshot
// taken when it is opened and served with FOPEN_DIRECT_IO, so cat, less
// and tail read exactly that snapshot; fstat/lseek(SEEK_END) through the
// open file report its length, a stat by path renders afresh. Entry and
// attribute timeouts of view nodes are zero (lockRaw.Lookup and
// lockRaw.GetAttr below; 1ns in READDIRPLUS replies, which the node
// bridge fills), so the kernel asks again on every access.

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lockfs/lockfs/semaphores"
	"github.com/lockfs/lockfs/views"
)

// ViewDirName is the reserved name of the view directory at the root.
const ViewDirName = ".lockfs"

// Inode numbers of view nodes. Real inode numbers count up from 2 and
// never reach viewInoBase, so the ranges cannot meet.
const (
	viewInoBase = 1 << 61 // the fixed nodes: viewInoBase + 1…
	heldInoBit  = 1 << 62 // held/ entries: heldInoBit | the lock file's inode

	inoViewDir   = viewInoBase + 1
	inoHeldDir   = viewInoBase + 2
	inoLocks     = viewInoBase + 3
	inoLocksJSON = viewInoBase + 4
)

func isViewIno(ino uint64) bool { return ino > viewInoBase }

// viewTimeout is the entry and attribute timeout the node bridge sends
// for view nodes in READDIRPLUS replies: it replaces a zero timeout by
// its default (1s), so the shortest one it keeps is used; the raw
// Lookup and GetAttr replies are set to exactly zero.
const viewTimeout = time.Nanosecond

// LockState is what the views read from the lock engine.
type LockState interface {
	Snapshot() semaphores.Snapshot
}

// fileSnapshotter is the optional per-file snapshot of semaphores.Table.
type fileSnapshotter interface {
	FileSnapshot(node uint64) (semaphores.FileState, bool)
}

// viewState is the FS's link to the lock state. mu guards the fields;
// they are set once, before the mount serves requests.
type viewState struct {
	mu         sync.RWMutex
	locks      LockState
	mountpoint string
	created    time.Time
}

// SetLockState tells the namespace where to read the lock state for
// .lockfs and the user.lockfs.* extended attributes, and the absolute
// mount point, which prefixes every PATH. Without it the views show no
// locks.
func (fsys *FS) SetLockState(ls LockState, mountpoint string) {
	fsys.view.mu.Lock()
	defer fsys.view.mu.Unlock()
	fsys.view.locks = ls
	fsys.view.mountpoint = mountpoint
}

func (fsys *FS) lockSource() (LockState, string) {
	fsys.view.mu.RLock()
	defer fsys.view.mu.RUnlock()
	return fsys.view.locks, fsys.view.mountpoint
}

func (fsys *FS) snapshot() semaphores.Snapshot {
	ls, _ := fsys.lockSource()
	if ls == nil {
		return semaphores.Snapshot{Taken: time.Now()}
	}
	return ls.Snapshot()
}

// fileState returns the lock state of one node, and when it was taken.
func (fsys *FS) fileState(node uint64) (semaphores.FileState, time.Time, bool) {
	ls, _ := fsys.lockSource()
	if ls == nil {
		return semaphores.FileState{}, time.Time{}, false
	}
	if fsn, ok := ls.(fileSnapshotter); ok {
		now := time.Now()
		st, ok := fsn.FileSnapshot(node)
		return st, now, ok
	}
	snap := ls.Snapshot()
	for _, f := range snap.Files {
		if f.Node == node {
			return f, snap.Taken, true
		}
	}
	return semaphores.FileState{}, time.Time{}, false
}

// fileInfo describes a locked node for views.Build.
func (fsys *FS) fileInfo(node uint64) views.FileInfo {
	_, mnt := fsys.lockSource()
	name, rel := fsys.Name(node)
	info := views.FileInfo{Name: name, Path: filepath.Join("/", mnt, rel), Inode: node}
	if n := fsys.lookupNode(node); n != nil {
		n.mu.Lock()
		info.Size = n.size
		n.mu.Unlock()
	}
	return info
}

// rows is the listing of the whole mount.
func (fsys *FS) rows() []views.Row {
	return views.Build(fsys.snapshot(), fsys.fileInfo, nil)
}

// fileRows is the listing of one file; ok is false when it has no lock
// state.
func (fsys *FS) fileRows(node uint64) ([]views.Row, bool) {
	st, taken, ok := fsys.fileState(node)
	if !ok {
		return nil, false
	}
	snap := semaphores.Snapshot{Taken: taken, Files: []semaphores.FileState{st}}
	return views.Build(snap, fsys.fileInfo, nil), true
}

// reserved reports whether name is the view directory's name in d (only
// the root reserves it).
func (d *dir) reserved(name string) bool {
	return name == ViewDirName && d == d.fsys.root
}

// lookupViewDir answers the root's lookup of ViewDirName.
func (fsys *FS) lookupViewDir(ctx context.Context, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ch := fsys.root.GetChild(ViewDirName)
	if ch == nil {
		fsys.view.mu.Lock()
		if fsys.view.created.IsZero() {
			fsys.view.created = time.Now()
		}
		fsys.view.mu.Unlock()
		vd := &viewDir{}
		vd.fsys = fsys
		ch = fsys.root.NewPersistentInode(ctx, vd, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoViewDir})
	}
	return ch, fsys.viewEntry(inoViewDir, out)
}

// viewEntry fills a lookup reply for a view node.
func (fsys *FS) viewEntry(ino uint64, out *fuse.EntryOut) syscall.Errno {
	if errno := fsys.viewAttr(ino, &out.Attr); errno != 0 {
		return errno
	}
	out.SetEntryTimeout(viewTimeout)
	out.SetAttrTimeout(viewTimeout)
	return 0
}

// viewAttr fills the attributes of view node ino, rendering a file's
// content afresh to size it.
func (fsys *FS) viewAttr(ino uint64, out *fuse.Attr) syscall.Errno {
	fsys.root.mu.Lock()
	uid, gid := fsys.root.uid, fsys.root.gid
	fsys.root.mu.Unlock()
	fsys.view.mu.RLock()
	created := fsys.view.created
	fsys.view.mu.RUnlock()
	now := time.Now()
	*out = fuse.Attr{Ino: ino, Blksize: blockSize}
	out.Uid, out.Gid = uid, gid
	switch ino {
	case inoViewDir:
		out.Mode = syscall.S_IFDIR | 0o555
		out.Nlink = 3
		out.SetTimes(&now, &created, &created)
		return 0
	case inoHeldDir:
		out.Mode = syscall.S_IFDIR | 0o555
		out.Nlink = 2
		out.SetTimes(&now, &now, &now)
		return 0
	}
	c, errno := fsys.viewContent(ino)
	if errno != 0 {
		return errno
	}
	c.fill(out)
	return 0
}

// viewContent is the content of a view file and its attributes.
type viewContent struct {
	ino      uint64
	data     []byte
	uid, gid uint32
	mtime    time.Time
}

func (c *viewContent) fill(out *fuse.Attr) {
	out.Ino = c.ino
	out.Mode = syscall.S_IFREG | 0o444
	out.Nlink = 1
	out.Uid, out.Gid = c.uid, c.gid
	out.Size = uint64(len(c.data))
	out.Blocks = (out.Size + blockSize - 1) / blockSize * (blockSize / 512)
	out.Blksize = blockSize
	out.SetTimes(&c.mtime, &c.mtime, &c.mtime)
}

// viewContent renders view file ino from a fresh snapshot. A held/ entry
// whose file is no longer held is ENOENT.
func (fsys *FS) viewContent(ino uint64) (viewContent, syscall.Errno) {
	fsys.root.mu.Lock()
	c := viewContent{ino: ino, uid: fsys.root.uid, gid: fsys.root.gid, mtime: time.Now()}
	fsys.root.mu.Unlock()
	switch {
	case ino == inoLocks:
		c.data = views.Render(fsys.rows(), views.Options{})
	case ino == inoLocksJSON:
		c.data = views.Render(fsys.rows(), views.Options{JSON: true})
	case ino&heldInoBit != 0:
		node := ino &^ heldInoBit
		rows, ok := fsys.fileRows(node)
		holders := views.Holders(rows)
		if !ok || len(holders) == 0 {
			return c, syscall.ENOENT
		}
		c.data = views.Render(rows, views.Options{Columns: views.FileColumns})
		// Owner: the first holder; mtime: the earliest acquisition.
		c.uid = holders[0].UID
		c.mtime = holders[0].Since
		for _, h := range holders[1:] {
			if h.Since.Before(c.mtime) {
				c.mtime = h.Since
			}
		}
		if n := fsys.lookupNode(node); n != nil {
			n.mu.Lock()
			c.gid = n.gid
			n.mu.Unlock()
		}
	default:
		return c, syscall.ENOENT
	}
	return c, 0
}

// heldEntries lists the held/ entries: name → lock file inode, for the
// files that have at least one applied lock.
func (fsys *FS) heldEntries() map[string]uint64 {
	snap := fsys.snapshot()
	entries := make(map[string]uint64, len(snap.Files))
	for _, f := range snap.Files {
		if len(f.Locks) == 0 {
			continue
		}
		_, rel := fsys.Name(f.Node)
		if rel == "" {
			continue
		}
		entries[views.HeldName(rel)] = f.Node
	}
	return entries
}

// ---- nodes ----------------------------------------------------------------

// viewNode is what every view node has: no attribute can be changed, no
// extended attribute set.
type viewNode struct {
	gofs.Inode
	fsys *FS
}

var (
	_ gofs.NodeGetattrer     = (*viewNode)(nil)
	_ gofs.NodeSetattrer     = (*viewNode)(nil)
	_ gofs.NodeGetxattrer    = (*viewNode)(nil)
	_ gofs.NodeSetxattrer    = (*viewNode)(nil)
	_ gofs.NodeRemovexattrer = (*viewNode)(nil)
	_ gofs.NodeListxattrer   = (*viewNode)(nil)
	_ gofs.NodeStatfser      = (*viewNode)(nil)
)

// Getattr serves the bridge (fstat and lseek through an open view file
// report that open's snapshot; see viewHandle).
func (v *viewNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.SetTimeout(viewTimeout)
	if h, ok := fh.(*viewHandle); ok {
		h.c.fill(&out.Attr)
		return 0
	}
	return v.fsys.viewAttr(v.StableAttr().Ino, &out.Attr)
}

func (v *viewNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EPERM
}

func (v *viewNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return 0, syscall.ENODATA
}

func (v *viewNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.EPERM
}

func (v *viewNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return syscall.EPERM
}

func (v *viewNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return 0, 0
}

func (v *viewNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	v.fsys.statfs(out)
	return 0
}

// viewDirNode refuses every change of a view directory's entries.
type viewDirNode struct {
	viewNode
}

var (
	_ gofs.NodeCreater   = (*viewDirNode)(nil)
	_ gofs.NodeMkdirer   = (*viewDirNode)(nil)
	_ gofs.NodeMknoder   = (*viewDirNode)(nil)
	_ gofs.NodeSymlinker = (*viewDirNode)(nil)
	_ gofs.NodeLinker    = (*viewDirNode)(nil)
	_ gofs.NodeUnlinker  = (*viewDirNode)(nil)
	_ gofs.NodeRmdirer   = (*viewDirNode)(nil)
	_ gofs.NodeRenamer   = (*viewDirNode)(nil)
)

func (v *viewDirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EPERM
}

func (v *viewDirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (v *viewDirNode) Mknod(ctx context.Context, name string, mode uint32, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (v *viewDirNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (v *viewDirNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (v *viewDirNode) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EPERM }

func (v *viewDirNode) Rmdir(ctx context.Context, name string) syscall.Errno { return syscall.EPERM }

func (v *viewDirNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EPERM
}

// viewDir is <mnt>/.lockfs.
type viewDir struct {
	viewDirNode
}

var (
	_ gofs.NodeLookuper  = (*viewDir)(nil)
	_ gofs.NodeReaddirer = (*viewDir)(nil)
)

// viewDirEntries are the fixed entries of .lockfs, in listing order.
var viewDirEntries = []fuse.DirEntry{
	{Name: "held", Ino: inoHeldDir, Mode: syscall.S_IFDIR},
	{Name: "locks", Ino: inoLocks, Mode: syscall.S_IFREG},
	{Name: "locks.json", Ino: inoLocksJSON, Mode: syscall.S_IFREG},
}

func (d *viewDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	i := slices.IndexFunc(viewDirEntries, func(e fuse.DirEntry) bool { return e.Name == name })
	if i < 0 {
		return nil, syscall.ENOENT
	}
	e := viewDirEntries[i]
	if errno := d.fsys.viewEntry(e.Ino, out); errno != 0 {
		return nil, errno
	}
	if ch := d.GetChild(name); ch != nil {
		return ch, 0
	}
	var ops gofs.InodeEmbedder
	if e.Mode == syscall.S_IFDIR {
		hd := &heldDir{}
		hd.fsys = d.fsys
		ops = hd
	} else {
		vf := &viewFile{}
		vf.fsys = d.fsys
		ops = vf
	}
	return d.NewPersistentInode(ctx, ops, gofs.StableAttr{Mode: e.Mode, Ino: e.Ino}), 0
}

func (d *viewDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	entries := append([]fuse.DirEntry{
		{Name: ".", Ino: inoViewDir, Mode: syscall.S_IFDIR},
		{Name: "..", Ino: fuse.FUSE_ROOT_ID, Mode: syscall.S_IFDIR},
	}, viewDirEntries...)
	return gofs.NewListDirStream(entries), 0
}

// heldDir is <mnt>/.lockfs/held: its entries come and go with the locks.
type heldDir struct {
	viewDirNode
}

var (
	_ gofs.NodeLookuper  = (*heldDir)(nil)
	_ gofs.NodeReaddirer = (*heldDir)(nil)
)

func (d *heldDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	node, ok := d.fsys.heldEntries()[name]
	if !ok {
		return nil, syscall.ENOENT
	}
	ino := heldInoBit | node
	if errno := d.fsys.viewEntry(ino, out); errno != 0 {
		return nil, errno
	}
	vf := &viewFile{}
	vf.fsys = d.fsys
	// The bridge returns the inode it already has for ino, if any.
	return d.NewInode(ctx, vf, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ino}), 0
}

func (d *heldDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	held := d.fsys.heldEntries()
	names := make([]string, 0, len(held))
	for name := range held {
		names = append(names, name)
	}
	slices.Sort(names)
	entries := make([]fuse.DirEntry, 0, len(names)+2)
	entries = append(entries,
		fuse.DirEntry{Name: ".", Ino: inoHeldDir, Mode: syscall.S_IFDIR},
		fuse.DirEntry{Name: "..", Ino: inoViewDir, Mode: syscall.S_IFDIR})
	for _, name := range names {
		entries = append(entries, fuse.DirEntry{Name: name, Ino: heldInoBit | held[name], Mode: syscall.S_IFREG})
	}
	return gofs.NewListDirStream(entries), 0
}

// viewFile is locks, locks.json or a held/ entry; its inode number says
// which.
type viewFile struct {
	viewNode
}

var _ gofs.NodeOpener = (*viewFile)(nil)

// Open renders the content once, for this open: every read of the handle
// sees that one snapshot. Opening for writing or truncating is EPERM.
func (f *viewFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EPERM
	}
	c, errno := f.fsys.viewContent(f.StableAttr().Ino)
	if errno != 0 {
		return nil, 0, errno
	}
	return &viewHandle{c: c}, fuse.FOPEN_DIRECT_IO, 0
}

// viewHandle is one open of a view file: the content rendered at open.
type viewHandle struct {
	c viewContent
}

var (
	_ gofs.FileReader  = (*viewHandle)(nil)
	_ gofs.FileWriter  = (*viewHandle)(nil)
	_ gofs.FileFlusher = (*viewHandle)(nil)
)

func (h *viewHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= int64(len(h.c.data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(int64(len(h.c.data)), off+int64(len(dest)))
	return fuse.ReadResultData(h.c.data[off:end]), 0
}

// Write cannot happen (Open refuses writers) but is refused anyway.
func (h *viewHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	return 0, syscall.EPERM
}

func (h *viewHandle) Flush(ctx context.Context) syscall.Errno { return 0 }

// ---- raw replies -------------------------------------------------------

// Lookup passes every lookup to the node bridge and sets the timeouts of
// view nodes to zero, which the bridge cannot send (it replaces zero by
// its default).
func (r *lockRaw) Lookup(cancel <-chan struct{}, header *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	st := r.RawFileSystem.Lookup(cancel, header, name, out)
	if st == fuse.OK && isViewIno(out.NodeId) {
		out.SetEntryTimeout(0)
		out.SetAttrTimeout(0)
	}
	return st
}

// GetAttr answers a stat of a view node with fresh attributes and a zero
// timeout. A getattr that names an open file (fstat, and lseek with
// SEEK_END, which tail uses) goes to the bridge, which reports that
// open's snapshot; without a handle the bridge would substitute any open
// handle of the node, so those are answered here.
func (r *lockRaw) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	if !isViewIno(in.NodeId) {
		return r.RawFileSystem.GetAttr(cancel, in, out)
	}
	var st fuse.Status
	if in.Flags()&fuse.FUSE_GETATTR_FH != 0 {
		st = r.RawFileSystem.GetAttr(cancel, in, out)
	} else {
		st = fuse.Status(r.fsys.viewAttr(in.NodeId, &out.Attr))
	}
	out.SetTimeout(0)
	return st
}
