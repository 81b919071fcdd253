package fs

import (
	"context"
	"math"
	"math/bits"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// lockFile is a regular file: a zero-byte lock file, or a small ordinary
// file (Tempest keeps some in lock_path/test_accounts/). Its content is
// kept in memory, like tmpfs, up to FS.opts.MaxFileSize bytes (EFBIG past
// it).
//
// Locks on a lockFile are not handled here: lock requests never reach the
// node API (see lockraw.go). Every open gets its own handle, so that the
// kernel's FUSE file handle names the open file description (G6).
type lockFile struct {
	node
	// data is the content; guarded by node.mu. len(data) == size.
	data []byte
	// pages marks the 4 KiB pages tmpfs would have allocated: written
	// or fallocated ones, not holes left by truncate. st_blocks counts
	// them, as on tmpfs. Guarded by node.mu.
	pages pageSet
}

// pageSet is a bitmap of page indices.
type pageSet []uint64

func (p *pageSet) set(from, to uint64) { // [from, to)
	for i := from; i < to; i++ {
		for uint64(len(*p)) <= i/64 {
			*p = append(*p, 0)
		}
		(*p)[i/64] |= 1 << (i % 64)
	}
}

func (p *pageSet) clear(from, to uint64) { // [from, to)
	for i := from; i < to && i/64 < uint64(len(*p)); i++ {
		(*p)[i/64] &^= 1 << (i % 64)
	}
}

func (p pageSet) count() uint64 {
	n := 0
	for _, w := range p {
		n += bits.OnesCount64(w)
	}
	return uint64(n)
}

// updateBlocks recomputes st_blocks from the page set. Caller holds f.mu.
func (f *lockFile) updateBlocks() {
	f.blocks = f.pages.count() * (blockSize / 512)
}

var (
	_ gofs.NodeOpener    = (*lockFile)(nil)
	_ gofs.NodeReader    = (*lockFile)(nil)
	_ gofs.NodeWriter    = (*lockFile)(nil)
	_ gofs.NodeFsyncer   = (*lockFile)(nil)
	_ gofs.NodeAllocater = (*lockFile)(nil)
)

func newLockFile(fsys *FS, mode, uid, gid uint32, now time.Time) *lockFile {
	f := &lockFile{}
	f.init(fsys, mode, uid, gid, now)
	return f
}

// handle is one open file description of a lockFile. It carries the open
// flags; lock state per description lives in the engine, keyed by the
// FUSE file handle number go-fuse assigns to it.
type handle struct {
	file  *lockFile
	flags uint32
}

// newHandle counts a new open file description of f (node.opens).
func (f *lockFile) newHandle(flags uint32) *handle {
	f.mu.Lock()
	f.opens++
	f.mu.Unlock()
	return &handle{file: f, flags: flags}
}

// Release ends the open file description: the last one of an unlinked
// file gives its inode slot and content back.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	f := h.file
	f.mu.Lock()
	if f.opens > 0 {
		f.opens--
	}
	f.discardIfGone()
	f.mu.Unlock()
	return 0
}

var _ gofs.FileReleaser = (*handle)(nil)

// Open returns a fresh handle. O_TRUNC empties the file and sets mtime and
// ctime, as on tmpfs. The reply never carries FOPEN_NOFLUSH (R8).
func (f *lockFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_TRUNC != 0 {
		f.mu.Lock()
		errno := f.truncateLocked(0)
		now := time.Now()
		f.mtime, f.ctime = now, now
		f.mu.Unlock()
		if errno != 0 {
			return nil, 0, errno
		}
	}
	return f.newHandle(flags), 0, 0
}

// truncateLocked sets the size, zero-filling growth. Caller holds f.mu.
func (f *lockFile) truncateLocked(size uint64) syscall.Errno {
	if size > uint64(f.fsys.opts.MaxFileSize) {
		return syscall.EFBIG
	}
	old := uint64(len(f.data))
	if size == old {
		return 0
	}
	if size > old {
		if errno := f.fsys.reserveBytes(int64(size - old)); errno != 0 {
			return errno
		}
		f.data = append(f.data, make([]byte, size-old)...)
	} else {
		f.fsys.releaseBytes(int64(old - size))
		f.data = f.data[:size:size]
		if size == 0 {
			f.data = nil
		}
		f.pages.clear((size+blockSize-1)/blockSize, (old+blockSize-1)/blockSize)
		f.updateBlocks()
	}
	f.size = size
	now := time.Now()
	f.mtime, f.ctime = now, now
	return 0
}

func (f *lockFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if off < 0 {
		return nil, syscall.EINVAL
	}
	n := 0
	if off < int64(len(f.data)) {
		n = copy(dest, f.data[off:])
	}
	f.touchAtime(time.Now())
	return fuse.ReadResultData(dest[:n]), 0
}

// touchAtime applies relatime, tmpfs's default: atime moves only when it
// is not newer than mtime or ctime, or is a day old. Caller holds n.mu.
func (n *node) touchAtime(now time.Time) {
	if !n.atime.After(n.mtime) || !n.atime.After(n.ctime) || now.Sub(n.atime) >= 24*time.Hour {
		n.atime = now
	}
}

// Write stores data at off (at the end for O_APPEND). Writes starting at
// or past the size cap fail with EFBIG; a write crossing it is short, as
// for a file-size limit on tmpfs.
func (f *lockFile) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if h, ok := fh.(*handle); ok && h.flags&syscall.O_APPEND != 0 {
		off = int64(len(f.data))
	}
	if off < 0 {
		return 0, syscall.EINVAL
	}
	limit := f.fsys.opts.MaxFileSize
	if off >= limit {
		if len(data) == 0 {
			return 0, 0
		}
		return 0, syscall.EFBIG
	}
	if int64(len(data)) > limit-off {
		data = data[:limit-off]
	}
	end := off + int64(len(data))
	if end > int64(len(f.data)) {
		if errno := f.fsys.reserveBytes(end - int64(len(f.data))); errno != 0 {
			return 0, errno
		}
		if end > int64(cap(f.data)) {
			grown := make([]byte, end, max(end, 2*int64(cap(f.data))))
			copy(grown, f.data)
			f.data = grown
		} else {
			f.data = f.data[:end]
		}
		f.size = uint64(end)
	}
	copy(f.data[off:], data)
	if len(data) > 0 {
		f.pages.set(uint64(off)/blockSize, (uint64(end)+blockSize-1)/blockSize)
		f.updateBlocks()
		now := time.Now()
		f.mtime, f.ctime = now, now
	}
	return uint32(len(data)), 0
}

func (f *lockFile) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	return 0
}

const (
	fallocKeepSize  = 0x01 // FALLOC_FL_KEEP_SIZE
	fallocPunchHole = 0x02 // FALLOC_FL_PUNCH_HOLE
)

// Allocate implements fallocate(2) modes tmpfs supports: plain
// allocation (the file grows to off+size unless KEEP_SIZE) and
// PUNCH_HOLE|KEEP_SIZE (zeroes the range). Others: EOPNOTSUPP.
func (f *lockFile) Allocate(ctx context.Context, fh gofs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	switch mode {
	case 0, fallocKeepSize:
		end := off + size
		if end < off || end > uint64(f.fsys.opts.MaxFileSize) {
			return syscall.EFBIG
		}
		if mode == 0 && end > uint64(len(f.data)) {
			if errno := f.truncateLocked(end); errno != 0 {
				return errno
			}
			f.ctime = now
		}
		f.pages.set(off/blockSize, (end+blockSize-1)/blockSize)
		f.updateBlocks()
		return 0
	case fallocPunchHole | fallocKeepSize:
		end := off + size
		if end < off {
			end = math.MaxUint64
		}
		if off < uint64(len(f.data)) {
			clear(f.data[off:min(end, uint64(len(f.data)))])
		}
		// Whole pages inside the hole are freed; partial ones stay.
		f.pages.clear((off+blockSize-1)/blockSize, end/blockSize)
		f.updateBlocks()
		f.mtime, f.ctime = now, now
		return 0
	}
	return syscall.EOPNOTSUPP
}
