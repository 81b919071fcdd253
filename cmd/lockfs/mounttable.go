package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	lockfs "github.com/lockfs/lockfs/fs"
	"github.com/lockfs/lockfs/internal/mountinfo"
)

// mountTableEntry is one mount of /proc/self/mountinfo.
type mountTableEntry struct {
	mountinfo.Entry
}

// readMountTable returns the machine's mounts, in the kernel's order.
func readMountTable() ([]mountTableEntry, error) {
	entries, err := mountinfo.Read()
	if err != nil {
		return nil, err
	}
	out := make([]mountTableEntry, len(entries))
	for i, e := range entries {
		out[i] = mountTableEntry{e}
	}
	return out, nil
}

// mountAt returns the topmost mount on dir, if dir is a mount point.
func mountAt(dir string) (mountTableEntry, bool, error) {
	e, ok, err := mountinfo.At(dir)
	return mountTableEntry{e}, ok, err
}

// canonicalMountpoint returns the absolute path, with symbolic links
// resolved, under which the kernel lists a mount on p. A stale FUSE
// mount cannot be stat'ed (ENOTCONN) and a missing mountpoint does not
// exist yet: then only the existing part of the path is resolved.
func canonicalMountpoint(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real, nil
	}
	var tail []string
	for dir := abs; ; {
		parent, base := filepath.Split(dir)
		parent = filepath.Clean(parent)
		tail = append([]string{base}, tail...)
		if real, err := filepath.EvalSymlinks(parent); err == nil {
			return filepath.Join(append([]string{real}, tail...)...), nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return abs, nil // unreadable parent: leave the path as given
		}
		if parent == dir || parent == "/" {
			return abs, nil
		}
		dir = parent
	}
}

// isLockfs reports whether e is a lockfs mount.
func (e mountTableEntry) isLockfs() bool { return e.FSType == "fuse."+lockfs.FilesystemType }

func (e mountTableEntry) String() string {
	return fmt.Sprintf("%s on %s type %s (%s,%s)", e.Source, e.Mountpoint, e.FSType, e.MountOpts, e.SuperOpts)
}
