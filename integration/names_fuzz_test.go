package integration

// Fuzz target (c) of issue 5: names. Each input is used as a name (or,
// with slashes, a path) relative to the root of a lockfs mount and of a
// tmpfs mount side by side; create, lock, stat, mkdir, rename, link,
// readdir and unlink must give the same errno and the same result on
// both. Every byte value the kernel lets through a path is fair game
// (all but NUL); 255 bytes is the longest component, 256 must be
// ENAMETOOLONG. The one intended difference is the reserved .lockfs at
// the root of lockfs, which must never be created, replaced or removed
// there.
//
//	go test ./integration -run '^$' -fuzz FuzzNames -fuzztime 10m
//
// Without -fuzz, the seeds in testdata/fuzz/FuzzNames and below run as
// a normal test.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func FuzzNames(f *testing.F) {
	for _, s := range []string{
		"lock", "tempest-availability_zone", ".hidden", ".", "..", "...", "a/b", "a/", "/", "//", "./x", "../x",
		".lockfs", ".lockfs/locks", ".lockfs/x", "./.lockfs", ".lockfs/", ".LOCKFS", ".lockfs2",
		strings.Repeat("x", 255), strings.Repeat("x", 256), strings.Repeat("é", 127) + "x", strings.Repeat("é", 128),
		"sp ace", "tab\there", "new\nline", "\x01\x7f\x80\xff", "\xff\xfe\xfd", "-", "*", "?[]", "%2F", "\\", "名前",
		"x\x00y", "",
	} {
		f.Add([]byte(s))
	}
	all := make([]byte, 0, 254)
	for b := 1; b < 256; b++ {
		if b != '/' {
			all = append(all, byte(b))
		}
	}
	f.Add(all) // every byte allowed in a component, 254 of them

	m := mountLockfs(f)
	tmp := mountTmpfs(f)
	_, viewErr := os.Stat(filepath.Join(m.Dir, ".lockfs"))
	hasView := viewErr == nil
	lroot, err := unix.Open(m.Dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { unix.Close(lroot) })
	troot, err := unix.Open(tmp, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { unix.Close(troot) })

	f.Fuzz(func(t *testing.T, raw []byte) {
		if bytes.IndexByte(raw, 0) >= 0 {
			t.Skip("a NUL byte ends a C path: the kernel never sees it")
		}
		name := string(raw)
		if c := filepath.Clean(name); c == ".." || strings.HasPrefix(c, "../") {
			t.Skip("the path leaves the mount")
		}
		reserved := hasView && relTouchesView(name)
		got := relNameOps(lroot, name)
		want := relNameOps(troot, name)
		if !reserved && !slices.Equal(got, want) {
			t.Errorf("name %q: lockfs and tmpfs differ (- tmpfs, + lockfs):\n%s", name, lineDiff(want, got))
		}
		if reserved {
			for _, l := range got {
				if strings.HasPrefix(l, "create") && strings.HasSuffix(l, "OK") {
					t.Errorf("name %q: lockfs let .lockfs be written: %s", name, l)
				}
			}
			if st, err := os.Stat(filepath.Join(m.Dir, ".lockfs")); err != nil || !st.IsDir() {
				t.Fatalf("name %q: .lockfs is gone or replaced (%v)", name, err)
			}
		}
		// Both roots are empty again, and lockfs still answers.
		for _, d := range []string{m.Dir, tmp} {
			ents, err := os.ReadDir(d)
			if err != nil {
				t.Fatalf("readdir %s after %q: %v", d, name, err)
			}
			for _, e := range ents {
				t.Errorf("name %q: %s left behind in %s", name, e.Name(), d)
				os.RemoveAll(filepath.Join(d, e.Name()))
			}
		}
	})
}

// relTouchesView reports whether a path names .lockfs at the root or
// something under it (lexically: the fuzzed paths have no symlinks).
func relTouchesView(name string) bool {
	clean := filepath.Clean("/" + name)
	return clean == "/.lockfs" || strings.HasPrefix(clean, "/.lockfs/")
}

// relNameOps runs the same operations with name under root and describes
// each outcome; it removes what it created.
func relNameOps(root int, name string) []string {
	var out []string
	add := func(op string, err error, extra ...string) {
		out = append(out, strings.TrimSpace(fmt.Sprintf("%s: %s %s", op, relErrnoName(err), strings.Join(extra, " "))))
	}
	stat := func(op, p string) {
		var st unix.Stat_t
		err := unix.Fstatat(root, p, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err != nil {
			add(op, err)
			return
		}
		add(op, nil, fmt.Sprintf("mode=%o size=%d nlink=%d", st.Mode, st.Size, st.Nlink))
	}
	fd, err := unix.Openat(root, name, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
	add("create", err)
	if err == nil {
		lk := unix.Flock_t{Type: unix.F_WRLCK}
		add("lock", unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &lk))
		add("flock", unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB))
		add("close", unix.Close(fd))
	}
	stat("stat", name)
	add("readdir", nil, relListRoot(root)...)
	add("mkdir over", unix.Mkdirat(root, name, 0o755))
	renamed := name + "~"
	add("rename", unix.Renameat(root, name, root, renamed))
	stat("stat renamed", renamed)
	add("rename back", unix.Renameat(root, renamed, root, name))
	add("link", unix.Linkat(root, name, root, renamed, 0))
	add("readdir", nil, relListRoot(root)...)
	add("unlink link", unix.Unlinkat(root, renamed, 0))
	add("unlink", unix.Unlinkat(root, name, 0))
	add("mkdir", unix.Mkdirat(root, name, 0o755))
	stat("stat dir", name)
	add("rmdir", unix.Unlinkat(root, name, unix.AT_REMOVEDIR))
	add("symlink", unix.Symlinkat(name, root, name))
	stat("stat symlink", name)
	add("unlink symlink", unix.Unlinkat(root, name, 0))
	stat("stat gone", name)
	return out
}

// relListRoot returns the sorted names in the directory root (a fresh
// descriptor, so the listing is current).
func relListRoot(root int) []string {
	fd, err := unix.Openat(root, ".", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return []string{"(" + relErrnoName(err) + ")"}
	}
	f := os.NewFile(uintptr(fd), "root")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return []string{"(" + err.Error() + ")"}
	}
	slices.Sort(names)
	for i, n := range names {
		names[i] = fmt.Sprintf("%q", n)
	}
	return names
}
