package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	lockfs "github.com/lockfs/lockfs/fs"
)

// mountTableEntry is one line of /proc/self/mountinfo (proc(5)).
type mountTableEntry struct {
	Mountpoint string
	MountOpts  string // per-mount: rw,nosuid,nodev,…
	FSType     string // fuse.lockfs
	Source     string // mem
	SuperOpts  string // per-superblock: user_id=0,group_id=0,default_permissions,allow_other
}

// readMountTable parses /proc/self/mountinfo.
func readMountTable() ([]mountTableEntry, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return parseMountTable(string(b)), nil
}

func parseMountTable(text string) []mountTableEntry {
	var out []mountTableEntry
	for _, line := range strings.Split(text, "\n") {
		// id parent maj:min root mountpoint opts [optional…] - fstype source superopts
		pre, post, found := strings.Cut(line, " - ")
		f, p := strings.Fields(pre), strings.Fields(post)
		if !found || len(f) < 6 || len(p) < 3 {
			continue
		}
		out = append(out, mountTableEntry{
			Mountpoint: unescapeMountTable(f[4]),
			MountOpts:  f[5],
			FSType:     p[0],
			Source:     unescapeMountTable(p[1]),
			SuperOpts:  p[2],
		})
	}
	return out
}

// unescapeMountTable undoes the octal escapes (\040 for a space, …) of
// mountinfo fields.
func unescapeMountTable(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountAt returns the topmost mount on dir, if dir is a mount point.
func mountAt(dir string) (mountTableEntry, bool, error) {
	mounts, err := readMountTable()
	if err != nil {
		return mountTableEntry{}, false, err
	}
	var top mountTableEntry
	found := false
	for _, m := range mounts {
		if m.Mountpoint == dir {
			top, found = m, true // later lines are mounted on top
		}
	}
	return top, found, nil
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
