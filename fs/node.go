// Package fs is lockfs's filesystem: an in-memory namespace that behaves
// like tmpfs (node.go, lockfile.go), and the wiring that hands every lock
// request to the lock engine below go-fuse's node API (lockraw.go).
//
// Error handling: node methods return the errno tmpfs gives for the same
// call; the kernel has already checked what the VFS checks itself (file
// types for unlink/rmdir, permissions under default_permissions, sticky
// directories, renaming a directory into itself).
package fs

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

const (
	// nameMax is tmpfs's NAME_MAX: longer names get ENAMETOOLONG.
	nameMax = 255
	// bogoDirentSize is what tmpfs adds to a directory's size per entry
	// (BOGO_DIRENT_SIZE), so that st_size of directories matches.
	bogoDirentSize = 20
	blockSize      = 4096
	// shortSymlinkLen is tmpfs's SHORT_SYMLINK_LEN: targets (with their
	// NUL) up to this length are stored inline, longer ones in a page.
	shortSymlinkLen = 128
)

// node holds what every lockfs inode has: attributes and extended
// attributes. It is embedded by dir, lockFile, symlink and special.
type node struct {
	gofs.Inode
	fsys *FS

	// mu guards the fields below (and the embedding type's own data, as
	// documented there). Several nodes are locked only through lockNodes,
	// in inode-number order.
	mu    sync.Mutex
	mode  uint32 // type and permission bits
	uid   uint32
	gid   uint32
	nlink uint32
	size  uint64
	rdev  uint32
	// opens counts the open file descriptions of a regular file the
	// kernel has told lockfs about: OPEN and CREATE replies minus RELEASE
	// requests. It sits in rdev's padding.
	opens uint32
	// gone is set once the node has given back its inode slot and its
	// content (see discardIfGone).
	gone bool
	// blocks is st_blocks (512-byte units of allocated pages).
	blocks uint64
	atime  time.Time
	mtime  time.Time
	ctime  time.Time
	xattrs map[string][]byte
	// name is the last name the node had, kept for the audit trail of a
	// file unlinked while still open and locked.
	name string
	// path caches FS.Name's answer.
	path atomic.Pointer[cachedPath]
}

// base returns the embedded node of any lockfs inode.
type baser interface{ base() *node }

func (n *node) base() *node { return n }

func (n *node) ino() uint64 { return n.StableAttr().Ino }

// init sets the attributes of a new node; now is the creation time.
func (n *node) init(fsys *FS, mode, uid, gid uint32, now time.Time) {
	n.fsys = fsys
	n.mode = mode
	n.uid, n.gid = uid, gid
	n.nlink = 1
	n.atime, n.mtime, n.ctime = now, now, now
}

// fillAttr copies the attributes into out. Caller holds n.mu.
func (n *node) fillAttr(out *fuse.Attr) {
	out.Ino = n.ino()
	out.Mode = n.mode
	out.Nlink = n.nlink
	out.Uid, out.Gid = n.uid, n.gid
	out.Size = n.size
	out.Rdev = n.rdev
	out.Blksize = blockSize
	out.Blocks = n.blocks
	out.SetTimes(&n.atime, &n.mtime, &n.ctime)
}

func (n *node) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.mu.Lock()
	n.fillAttr(&out.Attr)
	n.mu.Unlock()
	return 0
}

// Setattr handles chmod, chown, truncate and utimes. The kernel has done
// the permission checks (default_permissions) and says which times to
// set. Times follow shmem_setattr: a size change sets mtime and ctime; a
// truncate to the current size changes nothing unless it is an
// ftruncate or the file has pages to trim; any other change sets ctime.
// (O_TRUNC comes with OPEN, see lockFile.Open.)
func (n *node) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	changed := false
	if sz, ok := in.GetSize(); ok {
		f, isFile := n.Operations().(*lockFile)
		if !isFile {
			if n.mode&syscall.S_IFMT == syscall.S_IFDIR {
				return syscall.EISDIR
			}
			return syscall.EINVAL
		}
		switch {
		case sz != n.size:
			if errno := f.truncateLocked(sz); errno != 0 {
				return errno
			}
		case in.Valid&fuse.FATTR_FH != 0, f.pages.count() > 0:
			// ftruncate(2) sets the times whatever the size (the
			// VFS passes ATTR_MTIME|ATTR_CTIME, which the FUSE
			// kernel turns into the FATTR_FH request); truncate(2)
			// only through shmem_truncate_range on existing pages.
			n.mtime, n.ctime = now, now
		}
	}
	if mode, ok := in.GetMode(); ok {
		n.mode = n.mode&syscall.S_IFMT | mode&07777
		changed = true
	}
	if uid, ok := in.GetUID(); ok {
		n.uid = uid
		changed = true
	}
	if gid, ok := in.GetGID(); ok {
		n.gid = gid
		changed = true
	}
	if in.Valid&fuse.FATTR_ATIME_NOW != 0 {
		n.atime = now
		changed = true
	} else if at, ok := in.GetATime(); ok {
		n.atime = at
		changed = true
	}
	if in.Valid&fuse.FATTR_MTIME_NOW != 0 {
		n.mtime = now
		changed = true
	} else if mt, ok := in.GetMTime(); ok {
		n.mtime = mt
		changed = true
	}
	if ct, ok := in.GetCTime(); ok {
		n.ctime = ct
	} else if changed {
		n.ctime = now
	}
	n.fillAttr(&out.Attr)
	return 0
}

// Extended attributes, stored like tmpfs stores them. The kernel has
// already refused what tmpfs refuses at the VFS level (user.* on
// special files, trusted.* without CAP_SYS_ADMIN). POSIX ACLs
// (system.*) are not supported: EOPNOTSUPP.

const (
	xattrCreate  = 1 // XATTR_CREATE
	xattrReplace = 2 // XATTR_REPLACE
	xattrSizeMax = 65536
)

// xattrSupported says whether tmpfs stores name: EOPNOTSUPP for other
// namespaces, EINVAL for a namespace prefix with nothing after it.
func xattrSupported(name string) syscall.Errno {
	for _, p := range []string{"user.", "trusted.", "security."} {
		if strings.HasPrefix(name, p) {
			if len(name) == len(p) {
				return syscall.EINVAL
			}
			return 0
		}
	}
	return syscall.EOPNOTSUPP
}

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if errno := xattrSupported(attr); errno != 0 {
		return 0, errno
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	v, ok := n.xattrs[attr]
	if !ok {
		return 0, syscall.ENODATA
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if errno := xattrSupported(attr); errno != 0 {
		return errno
	}
	if len(data) > xattrSizeMax {
		return syscall.E2BIG
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	_, exists := n.xattrs[attr]
	switch {
	case flags&xattrCreate != 0 && exists:
		return syscall.EEXIST
	case flags&xattrReplace != 0 && !exists:
		return syscall.ENODATA
	}
	if n.xattrs == nil {
		n.xattrs = make(map[string][]byte)
	}
	n.xattrs[attr] = append([]byte(nil), data...)
	n.ctime = time.Now()
	return 0
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if errno := xattrSupported(attr); errno != 0 {
		return errno
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.xattrs[attr]; !ok {
		return syscall.ENODATA
	}
	delete(n.xattrs, attr)
	n.ctime = time.Now()
	return 0
}

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	n.mu.Lock()
	defer n.mu.Unlock()
	list := n.xattrListLocked()
	if len(dest) < len(list) {
		return uint32(len(list)), syscall.ERANGE
	}
	return uint32(copy(dest, list)), 0
}

// xattrListLocked returns the stored names, NUL-terminated, in the order
// tmpfs lists them: reverse lexical (its rbtree walk). Caller holds n.mu.
func (n *node) xattrListLocked() []byte {
	names := make([]string, 0, len(n.xattrs))
	for k := range n.xattrs {
		names = append(names, k)
	}
	slices.Sort(names)
	slices.Reverse(names)
	var list []byte
	for _, k := range names {
		list = append(list, k...)
		list = append(list, 0)
	}
	return list
}

var (
	_ gofs.NodeGetattrer     = (*node)(nil)
	_ gofs.NodeSetattrer     = (*node)(nil)
	_ gofs.NodeGetxattrer    = (*node)(nil)
	_ gofs.NodeSetxattrer    = (*node)(nil)
	_ gofs.NodeRemovexattrer = (*node)(nil)
	_ gofs.NodeListxattrer   = (*node)(nil)
)

// lockNodes locks the distinct nodes given, in inode-number order, the
// one global order that makes multi-node updates (rename, link, create)
// deadlock-free. It returns the unlock function.
func lockNodes(nodes ...*node) func() {
	uniq := make([]*node, 0, len(nodes))
	for _, n := range nodes {
		if n == nil {
			continue
		}
		dup := false
		for _, u := range uniq {
			if u == n {
				dup = true
				break
			}
		}
		if !dup {
			uniq = append(uniq, n)
		}
	}
	for i := 1; i < len(uniq); i++ {
		for j := i; j > 0 && uniq[j].ino() < uniq[j-1].ino(); j-- {
			uniq[j], uniq[j-1] = uniq[j-1], uniq[j]
		}
	}
	for _, n := range uniq {
		n.mu.Lock()
	}
	return func() {
		for i := len(uniq) - 1; i >= 0; i-- {
			uniq[i].mu.Unlock()
		}
	}
}

// caller returns the uid and gid of the process making the request.
func caller(ctx context.Context) (uid, gid uint32) {
	if c, ok := fuse.FromContext(ctx); ok {
		return c.Uid, c.Gid
	}
	return 0, 0
}

// dir is a directory. Its entries are the go-fuse Inode's children; its
// own fields (size, nlink, times) are guarded by node.mu.
//
// The kernel serialises namespace changes within a directory (it holds
// the directory's i_rwsem), so checking a name and adding it cannot race.
type dir struct {
	node
	// order gives each entry name its place in listings: a sequence
	// number from FS.seq, taken when the name appeared (create, link,
	// rename). readdir lists newest first, as tmpfs does on this kernel.
	// Guarded by node.mu.
	order map[string]uint64
}

var (
	_ gofs.NodeLookuper  = (*dir)(nil)
	_ gofs.NodeReaddirer = (*dir)(nil)
	_ gofs.NodeCreater   = (*dir)(nil)
	_ gofs.NodeMkdirer   = (*dir)(nil)
	_ gofs.NodeMknoder   = (*dir)(nil)
	_ gofs.NodeSymlinker = (*dir)(nil)
	_ gofs.NodeLinker    = (*dir)(nil)
	_ gofs.NodeUnlinker  = (*dir)(nil)
	_ gofs.NodeRmdirer   = (*dir)(nil)
	_ gofs.NodeRenamer   = (*dir)(nil)
	_ gofs.NodeStatfser  = (*dir)(nil)
)

func newDir(fsys *FS, mode, uid, gid uint32, now time.Time) *dir {
	d := &dir{}
	d.init(fsys, syscall.S_IFDIR|mode&07777, uid, gid, now)
	d.nlink = 2
	d.size = 2 * bogoDirentSize
	return d
}

// childOwner returns the owner of a new child of d created by the caller
// with the given mode (inode_init_owner): the caller's uid, and the gid
// and setgid bit of a setgid directory.
func (d *dir) childOwner(ctx context.Context, mode uint32) (uint32, uint32, uint32) {
	uid, gid := caller(ctx)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mode&syscall.S_ISGID != 0 {
		gid = d.gid
		if mode&syscall.S_IFMT == syscall.S_IFDIR {
			mode |= syscall.S_ISGID
		}
	}
	return mode, uid, gid
}

// entryAdded and entryRemoved update d for one more or one fewer entry.
// Caller holds d.mu.
func (d *dir) entryAdded(name string, now time.Time) {
	d.size += bogoDirentSize
	d.mtime, d.ctime = now, now
	if d.order == nil {
		d.order = make(map[string]uint64)
	}
	d.order[name] = d.fsys.seq.Add(1)
}

func (d *dir) entryRemoved(name string, now time.Time) {
	d.size -= bogoDirentSize
	d.mtime, d.ctime = now, now
	delete(d.order, name)
}

func checkName(name string) syscall.Errno {
	if len(name) > nameMax {
		return syscall.ENAMETOOLONG
	}
	return 0
}

func (d *dir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := checkName(name); errno != 0 {
		return nil, errno
	}
	if d.reserved(name) {
		return d.fsys.lookupViewDir(ctx, out) // views.go
	}
	ch := d.GetChild(name)
	if ch == nil {
		return nil, syscall.ENOENT
	}
	b := ch.Operations().(baser).base()
	b.mu.Lock()
	b.fillAttr(&out.Attr)
	b.mu.Unlock()
	return ch, 0
}

// Readdir lists ".", ".." and the entries, newest first, and updates the
// directory's atime (relatime), as tmpfs does.
func (d *dir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	parentIno := d.ino()
	if _, p := d.Parent(); p != nil {
		parentIno = p.StableAttr().Ino
	}
	d.mu.Lock()
	d.touchAtime(time.Now())
	d.mu.Unlock()
	children := d.Children()
	entries := make([]fuse.DirEntry, 0, len(children)+2)
	entries = append(entries,
		fuse.DirEntry{Name: ".", Ino: d.ino(), Mode: syscall.S_IFDIR},
		fuse.DirEntry{Name: "..", Ino: parentIno, Mode: syscall.S_IFDIR})
	type entry struct {
		fuse.DirEntry
		seq uint64
	}
	list := make([]entry, 0, len(children))
	for name, ch := range children {
		bs, ok := ch.Operations().(baser)
		if !ok {
			continue // .lockfs is reachable but not listed (views.go)
		}
		b := bs.base()
		list = append(list, entry{fuse.DirEntry{Name: name, Ino: b.ino(), Mode: ch.StableAttr().Mode}, 0})
	}
	d.mu.Lock()
	for i := range list {
		list[i].seq = d.order[list[i].Name]
	}
	d.mu.Unlock()
	// Newest first, as tmpfs lists on this kernel (its directory
	// offsets hand out the newest name first; a renamed or linked name
	// counts as new).
	slices.SortFunc(list, func(a, b entry) int {
		if c := cmp.Compare(b.seq, a.seq); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	for _, e := range list {
		entries = append(entries, e.DirEntry)
	}
	return gofs.NewListDirStream(entries), 0
}

// newChild registers a new node as child name of d and updates d.
func (d *dir) newChild(ctx context.Context, name string, ops gofs.InodeEmbedder, b *node, out *fuse.EntryOut) *gofs.Inode {
	ch := d.NewPersistentInode(ctx, ops, gofs.StableAttr{Mode: b.mode & syscall.S_IFMT, Ino: b.fsys.nextIno()})
	b.name = name
	b.fsys.register(b)
	now := b.ctime
	d.mu.Lock()
	d.entryAdded(name, now)
	if b.mode&syscall.S_IFMT == syscall.S_IFDIR {
		d.nlink++
	}
	d.mu.Unlock()
	b.mu.Lock()
	b.fillAttr(&out.Attr)
	b.mu.Unlock()
	return ch
}

func (d *dir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if errno := checkName(name); errno != 0 {
		return nil, nil, 0, errno
	}
	if d.reserved(name) {
		return nil, nil, 0, syscall.EEXIST
	}
	if ch := d.GetChild(name); ch != nil {
		// The kernel looks the name up first; this only happens if a
		// cached negative entry went stale.
		if flags&syscall.O_EXCL != 0 {
			return nil, nil, 0, syscall.EEXIST
		}
		f, ok := ch.Operations().(*lockFile)
		if !ok {
			return nil, nil, 0, syscall.EISDIR
		}
		fh, fuseFlags, errno := f.Open(ctx, flags)
		if errno == 0 {
			f.mu.Lock()
			f.fillAttr(&out.Attr)
			f.mu.Unlock()
		}
		return ch, fh, fuseFlags, errno
	}
	if errno := d.fsys.reserveInode(); errno != 0 {
		return nil, nil, 0, errno
	}
	mode, uid, gid := d.childOwner(ctx, syscall.S_IFREG|mode&07777)
	f := newLockFile(d.fsys, mode, uid, gid, time.Now())
	ch := d.newChild(ctx, name, f, &f.node, out)
	return ch, f.newHandle(flags), 0, 0
}

func (d *dir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := checkName(name); errno != 0 {
		return nil, errno
	}
	if d.reserved(name) {
		return nil, syscall.EEXIST
	}
	if d.GetChild(name) != nil {
		return nil, syscall.EEXIST
	}
	if errno := d.fsys.reserveInode(); errno != 0 {
		return nil, errno
	}
	mode, uid, gid := d.childOwner(ctx, syscall.S_IFDIR|mode&07777)
	nd := newDir(d.fsys, mode, uid, gid, time.Now())
	return d.newChild(ctx, name, nd, &nd.node, out), 0
}

// Mknod creates regular files, FIFOs, sockets and device nodes, as tmpfs
// does (the kernel requires CAP_MKNOD for devices).
func (d *dir) Mknod(ctx context.Context, name string, mode uint32, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := checkName(name); errno != 0 {
		return nil, errno
	}
	if d.reserved(name) {
		return nil, syscall.EEXIST
	}
	if d.GetChild(name) != nil {
		return nil, syscall.EEXIST
	}
	typ := mode & syscall.S_IFMT
	switch typ {
	case 0, syscall.S_IFREG, syscall.S_IFIFO, syscall.S_IFSOCK, syscall.S_IFCHR, syscall.S_IFBLK:
	default:
		return nil, syscall.EINVAL
	}
	if typ == 0 {
		typ = syscall.S_IFREG
	}
	if errno := d.fsys.reserveInode(); errno != 0 {
		return nil, errno
	}
	mode, uid, gid := d.childOwner(ctx, typ|mode&07777)
	now := time.Now()
	if typ == syscall.S_IFREG {
		f := newLockFile(d.fsys, mode, uid, gid, now)
		return d.newChild(ctx, name, f, &f.node, out), 0
	}
	s := &special{}
	s.init(d.fsys, mode, uid, gid, now)
	if typ == syscall.S_IFCHR || typ == syscall.S_IFBLK {
		s.rdev = rdev
	}
	return d.newChild(ctx, name, s, &s.node, out), 0
}

func (d *dir) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := checkName(name); errno != 0 {
		return nil, errno
	}
	if d.reserved(name) {
		return nil, syscall.EEXIST
	}
	if d.GetChild(name) != nil {
		return nil, syscall.EEXIST
	}
	if len(target) >= blockSize {
		return nil, syscall.ENAMETOOLONG
	}
	if errno := d.fsys.reserveInode(); errno != 0 {
		return nil, errno
	}
	uid, gid := caller(ctx)
	_, _, gid = d.childOwner(ctx, syscall.S_IFLNK)
	s := &symlink{target: []byte(target)}
	s.init(d.fsys, syscall.S_IFLNK|0777, uid, gid, time.Now())
	s.size = uint64(len(target))
	if len(target)+1 > shortSymlinkLen {
		s.blocks = blockSize / 512 // tmpfs stores long targets in a page
	}
	return d.newChild(ctx, name, s, &s.node, out), 0
}

// Link adds a hard link to a non-directory (the kernel refuses
// directories with EPERM).
func (d *dir) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := checkName(name); errno != 0 {
		return nil, errno
	}
	if d.reserved(name) {
		return nil, syscall.EEXIST
	}
	if d.GetChild(name) != nil {
		return nil, syscall.EEXIST
	}
	b, ok := target.(baser)
	if !ok {
		return nil, syscall.EPERM
	}
	t := b.base()
	if t.mode&syscall.S_IFMT == syscall.S_IFDIR {
		return nil, syscall.EPERM
	}
	now := time.Now()
	unlock := lockNodes(&d.node, t)
	if t.nlink == 0 {
		unlock()
		return nil, syscall.ENOENT
	}
	if errno := d.fsys.reserveInode(); errno != 0 {
		unlock()
		return nil, errno
	}
	t.nlink++
	t.ctime = now
	t.name = name
	d.entryAdded(name, now)
	t.fillAttr(&out.Attr)
	unlock()
	return t.EmbeddedInode(), 0
}

// dropLink removes one link of n (unlink, rmdir, rename over n). At zero
// links the node is no longer kept in memory once the kernel forgets it.
// Caller holds n.mu.
//
// Inode accounting follows tmpfs: every name of a file holds one inode
// slot (shmem_link reserves one); dropping a name that is not the last
// frees its slot at once, the last slot is freed when the node itself
// goes: unlinked and closed (discardIfGone).
func (n *node) dropLink(now time.Time) {
	if n.mode&syscall.S_IFMT == syscall.S_IFDIR {
		n.nlink = 0
	} else if n.nlink > 0 {
		if n.nlink > 1 {
			n.fsys.releaseInode()
		}
		n.nlink--
	}
	n.ctime = now
	if n.nlink == 0 {
		n.ForgetPersistent()
		n.discardIfGone()
	}
}

// discardIfGone gives back the inode slot and the content of a node no
// name reaches and no open file description uses, once: from then on
// nothing can read it, so --max-files and --max-bytes count it free, as
// tmpfs does when it evicts the inode. Caller holds n.mu.
//
// This is decided here, at the last unlink or the last RELEASE, rather
// than at FORGET: the kernel queues FORGET asynchronously and go-fuse may
// serve it after requests that follow it, so a create right after
// "rm last-file" would see a full mount that tmpfs would not.
//
// Directories, symlinks and special files are never counted as open
// (a FIFO's opens never reach the server; an open directory is not
// tracked): they go at their last unlink or rmdir.
func (n *node) discardIfGone() {
	if n.gone || n.nlink > 0 || n.opens > 0 {
		return
	}
	n.gone = true
	n.fsys.releaseInode()
	if f, ok := n.Operations().(*lockFile); ok {
		n.fsys.releaseBytes(int64(len(f.data)))
		f.data = nil
		f.pages = nil
	}
}

func (d *dir) Unlink(ctx context.Context, name string) syscall.Errno {
	if d.reserved(name) {
		return syscall.EPERM
	}
	ch := d.GetChild(name)
	if ch == nil {
		return syscall.ENOENT
	}
	b := ch.Operations().(baser).base()
	if b.mode&syscall.S_IFMT == syscall.S_IFDIR {
		return syscall.EISDIR
	}
	now := time.Now()
	unlock := lockNodes(&d.node, b)
	d.entryRemoved(name, now)
	b.dropLink(now)
	unlock()
	return 0
}

func (d *dir) Rmdir(ctx context.Context, name string) syscall.Errno {
	if d.reserved(name) {
		return syscall.EPERM
	}
	ch := d.GetChild(name)
	if ch == nil {
		return syscall.ENOENT
	}
	sub, ok := ch.Operations().(*dir)
	if !ok {
		return syscall.ENOTDIR
	}
	if len(sub.Children()) > 0 {
		return syscall.ENOTEMPTY
	}
	now := time.Now()
	unlock := lockNodes(&d.node, &sub.node)
	d.entryRemoved(name, now)
	d.nlink--
	sub.dropLink(now)
	unlock()
	return 0
}

// renameat2 flags. RENAME_WHITEOUT (used by overlayfs) is not supported:
// EINVAL, a documented deviation from tmpfs.
const (
	renameNoreplace = 1 << 0
	renameExchange  = 1 << 1
)

// Rename implements rename(2) and renameat2 with RENAME_NOREPLACE and
// RENAME_EXCHANGE, with tmpfs's link-count and time updates.
func (d *dir) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if errno := checkName(newName); errno != 0 {
		return errno
	}
	if flags&^uint32(renameExchange|renameNoreplace) != 0 {
		return syscall.EINVAL
	}
	if flags&renameExchange != 0 && flags&renameNoreplace != 0 {
		return syscall.EINVAL
	}
	nd, ok := newParent.(*dir)
	if !ok || d.reserved(name) || nd.reserved(newName) {
		return syscall.EPERM // into .lockfs/, or moving or replacing .lockfs
	}
	srcIn := d.GetChild(name)
	if srcIn == nil {
		return syscall.ENOENT
	}
	src := srcIn.Operations().(baser).base()
	var dst *node
	if dstIn := nd.GetChild(newName); dstIn != nil {
		dst = dstIn.Operations().(baser).base()
	}
	srcIsDir := src.mode&syscall.S_IFMT == syscall.S_IFDIR
	now := time.Now()

	if flags&renameExchange != 0 {
		if dst == nil {
			return syscall.ENOENT
		}
		dstIsDir := dst.mode&syscall.S_IFMT == syscall.S_IFDIR
		unlock := lockNodes(&d.node, &nd.node, src, dst)
		defer unlock()
		if d != nd && srcIsDir != dstIsDir {
			if srcIsDir {
				d.nlink--
				nd.nlink++
			} else {
				d.nlink++
				nd.nlink--
			}
		}
		src.ctime, dst.ctime = now, now
		d.mtime, d.ctime, nd.mtime, nd.ctime = now, now, now, now
		// Both names move to the front of the listing, the new name
		// first (simple_offset_rename_exchange).
		d.order[name] = d.fsys.seq.Add(1)
		nd.order[newName] = nd.fsys.seq.Add(1)
		return 0
	}
	if dst == src {
		return 0 // two names of one inode: rename does nothing
	}
	if dst != nil {
		if flags&renameNoreplace != 0 {
			return syscall.EEXIST
		}
		dstIsDir := dst.mode&syscall.S_IFMT == syscall.S_IFDIR
		switch {
		case srcIsDir && !dstIsDir:
			return syscall.ENOTDIR
		case !srcIsDir && dstIsDir:
			return syscall.EISDIR
		case dstIsDir && len(dst.Children()) > 0:
			return syscall.ENOTEMPTY
		}
	}
	unlock := lockNodes(&d.node, &nd.node, src, dst)
	defer unlock()
	if dst != nil {
		if dst.mode&syscall.S_IFMT == syscall.S_IFDIR {
			nd.nlink--
		}
		nd.size -= bogoDirentSize
		dst.dropLink(now)
	}
	if srcIsDir && d != nd {
		d.nlink--
		nd.nlink++
	}
	d.entryRemoved(name, now)
	nd.entryAdded(newName, now)
	src.ctime = now
	src.name = newName
	return 0
}

func (d *dir) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	d.fsys.statfs(out)
	return 0
}

// symlink is a symbolic link; target is immutable.
type symlink struct {
	node
	target []byte
}

var _ gofs.NodeReadlinker = (*symlink)(nil)

func (s *symlink) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return s.target, 0
}

// special is a FIFO, socket or device node: only attributes.
type special struct {
	node
}
