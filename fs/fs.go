package fs

import (
	"path"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Options configure the namespace.
type Options struct {
	// MaxFileSize caps the content of one file (EFBIG past it).
	MaxFileSize int64
	// MaxFiles caps the number of inodes (ENOSPC past it); 0: no cap.
	MaxFiles int64
	// MaxBytes caps the total content of all files (ENOSPC); 0: no cap.
	MaxBytes int64
	// RootMode, RootUID and RootGID set the mount's root directory.
	RootMode uint32
	RootUID  uint32
	RootGID  uint32
}

// DefaultMaxFileSize is the per-file content cap: lock files are empty,
// and the ordinary files kept beside them (Tempest's test_accounts) are a
// few kilobytes.
const DefaultMaxFileSize = 1 << 20

// FS is one mounted lockfs namespace.
type FS struct {
	opts Options
	root *dir

	lastIno atomic.Uint64 // inode numbers are never reused
	seq     atomic.Uint64 // directory-listing order, see dir.order
	// pathGen counts changes that can change a node's path (rename,
	// unlink, rmdir, link), bumped once the tree shows them; it
	// invalidates the names cached by Name.
	pathGen atomic.Uint64
	inodes  atomic.Int64 // live inodes, for MaxFiles and statfs
	bytes   atomic.Int64 // content bytes, for MaxBytes and statfs

	// mu guards nodes, the index from inode number (== FUSE NodeId, as
	// the bridge runs with ExternalNodeID) to node, which names lock
	// files in audit events and views.
	mu    sync.RWMutex
	nodes map[uint64]*node

	// view links the read-only .lockfs directory to the lock state
	// (views.go).
	view viewState
}

// New returns a namespace holding an empty root directory.
func New(opts Options) *FS {
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = DefaultMaxFileSize
	}
	if opts.RootMode == 0 {
		opts.RootMode = 0755
	}
	fsys := &FS{opts: opts, nodes: make(map[uint64]*node)}
	fsys.lastIno.Store(fuse.FUSE_ROOT_ID)
	fsys.root = newDir(fsys, opts.RootMode, opts.RootUID, opts.RootGID, time.Now())
	fsys.inodes.Store(1)
	return fsys
}

// Root is the root node, for fs.NewNodeFS.
func (fsys *FS) Root() gofs.InodeEmbedder { return fsys.root }

func (fsys *FS) nextIno() uint64 { return fsys.lastIno.Add(1) }

func (fsys *FS) register(n *node) {
	fsys.mu.Lock()
	fsys.nodes[n.ino()] = n
	fsys.mu.Unlock()
}

// OnForget drops a node the kernel no longer knows and no name reaches.
// Its inode slot and content were given back already (discardIfGone).
func (n *node) OnForget() {
	n.fsys.mu.Lock()
	delete(n.fsys.nodes, n.ino())
	n.fsys.mu.Unlock()
}

var _ gofs.NodeOnForgetter = (*node)(nil)

func (fsys *FS) lookupNode(ino uint64) *node {
	if ino == fuse.FUSE_ROOT_ID {
		return &fsys.root.node
	}
	fsys.mu.RLock()
	n := fsys.nodes[ino]
	fsys.mu.RUnlock()
	return n
}

// IsFile reports whether ino is a regular file of this namespace: the
// only nodes the kernel sends lock requests for (R10).
func (fsys *FS) IsFile(ino uint64) bool {
	n := fsys.lookupNode(ino)
	return n != nil && n.StableAttr().Mode == syscall.S_IFREG
}

// Name returns the name of node ino and its path relative to the mount
// root ("dir/name"). A file with no name left (unlinked while open) is
// reported with its last name and the suffix " (deleted)", like
// /proc/locks readers show it.
//
// Every audit event asks, so the answer is cached per node and computed
// again only after the tree changed shape (FS.pathGen).
func (fsys *FS) Name(ino uint64) (name, rel string) {
	n := fsys.lookupNode(ino)
	if n == nil {
		return "", ""
	}
	gen := fsys.pathGen.Load()
	if c := n.path.Load(); c != nil && c.gen == gen {
		return c.name, c.rel
	}
	name, rel = fsys.computeName(n)
	n.path.Store(&cachedPath{gen: gen, name: name, rel: rel})
	return name, rel
}

// cachedPath is a node's name and path as of tree generation gen.
type cachedPath struct {
	gen       uint64
	name, rel string
}

// computeName walks from n up to the root.
func (fsys *FS) computeName(n *node) (name, rel string) {
	var segs []string
	for p := &n.Inode; ; {
		nm, parent := p.Parent()
		if parent == nil {
			if p != &fsys.root.Inode {
				// Orphaned: deleted.
				last := n.lastName()
				return last, last + " (deleted)"
			}
			break
		}
		segs = append(segs, nm)
		p = parent
	}
	if len(segs) == 0 {
		return "", ""
	}
	for i, j := 0, len(segs)-1; i < j; i, j = i+1, j-1 {
		segs[i], segs[j] = segs[j], segs[i]
	}
	return segs[len(segs)-1], path.Join(segs...)
}

func (n *node) lastName() string {
	if nm, _ := n.Parent(); nm != "" {
		return nm
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.name
}

// reserveInode accounts for a new inode: ENOSPC past MaxFiles.
func (fsys *FS) reserveInode() syscall.Errno {
	if n := fsys.inodes.Add(1); fsys.opts.MaxFiles > 0 && n > fsys.opts.MaxFiles {
		fsys.inodes.Add(-1)
		return syscall.ENOSPC
	}
	return 0
}

func (fsys *FS) releaseInode() { fsys.inodes.Add(-1) }

// reserveBytes accounts for new content: ENOSPC past MaxBytes.
func (fsys *FS) reserveBytes(n int64) syscall.Errno {
	if total := fsys.bytes.Add(n); fsys.opts.MaxBytes > 0 && total > fsys.opts.MaxBytes {
		fsys.bytes.Add(-n)
		return syscall.ENOSPC
	}
	return 0
}

func (fsys *FS) releaseBytes(n int64) { fsys.bytes.Add(-n) }

func (fsys *FS) statfs(out *fuse.StatfsOut) {
	out.Bsize = blockSize
	out.Frsize = blockSize
	out.NameLen = nameMax
	used := uint64(fsys.bytes.Load()+blockSize-1) / blockSize
	total := uint64(1 << 20) // 4 GiB worth of blocks when uncapped
	if fsys.opts.MaxBytes > 0 {
		total = uint64(fsys.opts.MaxBytes+blockSize-1) / blockSize
	}
	out.Blocks = max(total, used)
	out.Bfree = out.Blocks - used
	out.Bavail = out.Bfree
	files := uint64(fsys.inodes.Load())
	totalFiles := uint64(1 << 20)
	if fsys.opts.MaxFiles > 0 {
		totalFiles = uint64(fsys.opts.MaxFiles)
	}
	out.Files = max(totalFiles, files)
	out.Ffree = out.Files - files
}
