// Package mountinfo reads /proc/self/mountinfo (proc(5)), the kernel's
// list of mounts, for the commands and tests that look for lockfs mounts.
package mountinfo

import (
	"os"
	"strconv"
	"strings"
)

// Entry is one mount.
type Entry struct {
	// Device is the mount's major:minor; for a FUSE mount the minor is
	// its connection's number in /sys/fs/fuse/connections.
	Device     string
	Mountpoint string
	MountOpts  string // per mount: rw,nosuid,nodev,…
	FSType     string // fuse.lockfs
	Source     string // mem
	SuperOpts  string // per superblock: user_id=0,group_id=0,default_permissions,…
}

// Read returns the mounts of the calling process's mount namespace, in
// the kernel's order (a later entry is mounted on top of an earlier one
// at the same mountpoint).
func Read() ([]Entry, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return Parse(string(b)), nil
}

// Parse parses the text of a mountinfo file; malformed lines are skipped.
func Parse(text string) []Entry {
	var out []Entry
	for line := range strings.SplitSeq(text, "\n") {
		// id parent maj:min root mountpoint opts [optional…] - fstype source superopts
		pre, post, found := strings.Cut(line, " - ")
		f, p := strings.Fields(pre), strings.Fields(post)
		if !found || len(f) < 6 || len(p) < 3 {
			continue
		}
		out = append(out, Entry{
			Device:     f[2],
			Mountpoint: Unescape(f[4]),
			MountOpts:  f[5],
			FSType:     p[0],
			Source:     Unescape(p[1]),
			SuperOpts:  p[2],
		})
	}
	return out
}

// At returns the topmost mount on dir (an absolute path with symbolic
// links resolved), and whether there is one.
func At(dir string) (Entry, bool, error) {
	mounts, err := Read()
	if err != nil {
		return Entry{}, false, err
	}
	var top Entry
	found := false
	for _, m := range mounts {
		if m.Mountpoint == dir {
			top, found = m, true
		}
	}
	return top, found, nil
}

// Unescape undoes the octal escapes (\040 for a space, …) of mountinfo
// fields.
func Unescape(s string) string {
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
