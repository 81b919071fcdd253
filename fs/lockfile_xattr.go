package fs

import (
	"context"
	"strings"
	"syscall"

	"github.com/lockfs/lockfs/views"
)

// The lock state of a lock file as extended attributes, so that
//
//	getfattr -d <mnt>/tempest-availability_zone
//
// says who holds it and who waits for it:
//
//	user.lockfs.holders  one line per applied lock (views.AttrValue)
//	user.lockfs.waiters  one line per waiter, pollers included
//
// Both are computed on every read and are read-only: setting or removing
// them, or any other name under "user.lockfs.", which lockfs reserves,
// fails with EPERM. They are listed by listxattr only while they are not
// empty, so `getfattr -d` of a free lock file shows only the user's own
// attributes; getxattr of a free file returns an empty value. A value
// longer than the kernel's 64 KiB limit ends with "..." after its last
// whole line. Every other attribute is the node's own (node.go).
const (
	xattrPrefix  = "user.lockfs."
	xattrHolders = xattrPrefix + "holders"
	xattrWaiters = xattrPrefix + "waiters"
)

// lockAttrs returns the values of the two attributes.
func (f *lockFile) lockAttrs() (holders, waiters string) {
	rows, ok := f.fsys.fileRows(f.ino())
	if !ok {
		return "", ""
	}
	return capAttr(views.AttrValue(views.Holders(rows))), capAttr(views.AttrValue(views.Waiters(rows)))
}

// capAttr keeps a value within the kernel's XATTR_SIZE_MAX (a longer one
// could not be read at all): whole lines, then "...".
func capAttr(v string) string {
	if len(v) <= xattrSizeMax {
		return v
	}
	cut := strings.LastIndexByte(v[:xattrSizeMax-4], '\n')
	return v[:cut+1] + "..."
}

func (f *lockFile) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	var v string
	switch attr {
	case xattrHolders:
		v, _ = f.lockAttrs()
	case xattrWaiters:
		_, v = f.lockAttrs()
	default:
		if strings.HasPrefix(attr, xattrPrefix) {
			return 0, syscall.ENODATA
		}
		return f.node.Getxattr(ctx, attr, dest)
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

func (f *lockFile) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if strings.HasPrefix(attr, xattrPrefix) {
		return syscall.EPERM
	}
	return f.node.Setxattr(ctx, attr, data, flags)
}

func (f *lockFile) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if strings.HasPrefix(attr, xattrPrefix) {
		return syscall.EPERM
	}
	return f.node.Removexattr(ctx, attr)
}

// Listxattr lists the node's own attributes, then the lock attributes
// that are not empty.
func (f *lockFile) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	f.mu.Lock()
	list := f.xattrListLocked()
	f.mu.Unlock()
	holders, waiters := f.lockAttrs()
	if holders != "" {
		list = append(list, xattrHolders+"\x00"...)
	}
	if waiters != "" {
		list = append(list, xattrWaiters+"\x00"...)
	}
	if len(dest) < len(list) {
		return uint32(len(list)), syscall.ERANGE
	}
	return uint32(copy(dest, list)), 0
}
