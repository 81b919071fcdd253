package integration

// The differential namespace suite: every scenario runs the same
// sequence of system calls (golang.org/x/sys/unix, no libraries in
// between) in a fresh directory on tmpfs and on lockfs, and records one
// line per call: the call and its outcome (errno name, and the stat
// fields that matter: type, permission bits, nlink, size, blocks,
// blksize, uid, gid, rdev). Timestamps are recorded only as relations
// ("mtime later", "ctime same") against a snapshot, after sleeping past
// the clock's granularity, and inode numbers only as "same inode as".
// The two logs must be identical.
//
// A difference is a lockfs bug unless it is documented: the scenarios
// mark a documented deviation on the call itself (nsRun.deviates), with
// lockfs's documented answer, and that call is then checked against
// the documentation instead of tmpfs.
//
// LOCKFS_DIFF_AGAINST=tmpfs runs the suite tmpfs against tmpfs, which
// checks that the scenarios themselves are deterministic.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// nsTick is slept before a call whose effect on timestamps is
	// recorded: longer than a jiffy, the granularity of tmpfs's coarse
	// clock, so that "later" and "same" are deterministic.
	nsTick = 25 * time.Millisecond
	// nsDiffAgainstEnv selects the second file system ("tmpfs" or, by
	// default, lockfs); shared with the differential lock suite.
	nsDiffAgainstEnv = "LOCKFS_DIFF_AGAINST"
	// nsNameMax is NAME_MAX.
	nsNameMax = 255
	// nsDefaultMaxFileSize is lockfs's default --max-file-size (1 MiB).
	nsDefaultMaxFileSize = 1 << 20
)

// nsEntry is one recorded call.
type nsEntry struct {
	op  string // the call, with paths relative to the scenario directory
	res string // its outcome
	// dev, when set, names a documented deviation: lockfs must answer
	// devWant instead of what tmpfs answers.
	dev     string
	devWant string
}

// nsRun records one run of a scenario in one directory.
type nsRun struct {
	t    *testing.T
	dir  string
	out  []nsEntry
	fds  map[string]int
	dev  string // deviation for the next recorded call
	devW string
}

func newNsRun(t *testing.T, dir string) *nsRun {
	return &nsRun{t: t, dir: dir, fds: map[string]int{}}
}

// p is the absolute path of rel in the scenario directory.
func (r *nsRun) p(rel string) string { return filepath.Join(r.dir, rel) }

// rec records op with outcome res.
func (r *nsRun) rec(op, res string) {
	r.out = append(r.out, nsEntry{op: op, res: res, dev: r.dev, devWant: r.devW})
	r.dev, r.devW = "", ""
}

// deviates marks the next call as a documented deviation: lockfs must
// answer want (and tmpfs answers whatever the kernel does).
func (r *nsRun) deviates(doc, want string) { r.dev, r.devW = doc, want }

func nsErr(err error) string {
	if err == nil {
		return "OK"
	}
	if e, ok := err.(unix.Errno); ok {
		if n := unix.ErrnoName(e); n != "" {
			return n
		}
	}
	return err.Error()
}

func (r *nsRun) errRec(op string, err error) error {
	r.rec(op, nsErr(err))
	return err
}

// tick sleeps past the timestamp granularity (see nsTick).
func (r *nsRun) tick() { time.Sleep(nsTick) }

// ---- files and descriptors -------------------------------------------

var nsOpenFlags = []struct {
	flag int
	name string
}{
	{unix.O_WRONLY, "WRONLY"}, {unix.O_RDWR, "RDWR"}, {unix.O_CREAT, "CREAT"},
	{unix.O_EXCL, "EXCL"}, {unix.O_TRUNC, "TRUNC"}, {unix.O_APPEND, "APPEND"},
	{unix.O_DIRECTORY, "DIRECTORY"}, {unix.O_NOFOLLOW, "NOFOLLOW"},
	{unix.O_NONBLOCK, "NONBLOCK"}, {unix.O_PATH, "PATH"},
}

func nsFlagString(flags int) string {
	var parts []string
	if flags&unix.O_ACCMODE == unix.O_RDONLY {
		parts = append(parts, "RDONLY")
	}
	for _, f := range nsOpenFlags {
		if flags&f.flag == f.flag {
			parts = append(parts, f.name)
		}
	}
	return strings.Join(parts, "|")
}

// open opens rel and keeps the descriptor as fd name (when it works).
func (r *nsRun) open(name, rel string, flags int, mode uint32) {
	fd, err := unix.Open(r.p(rel), flags|unix.O_CLOEXEC, mode)
	r.errRec(fmt.Sprintf("open(%q, %s, %#o) as %s", rel, nsFlagString(flags), mode, name), err)
	if err == nil {
		r.fds[name] = fd
	}
}

// fd returns descriptor name, or -1 (calls on it then fail with EBADF,
// and the difference shows where it came from).
func (r *nsRun) fd(name string) int {
	if fd, ok := r.fds[name]; ok {
		return fd
	}
	return -1
}

func (r *nsRun) close(name string) {
	fd := r.fd(name)
	delete(r.fds, name)
	r.errRec("close("+name+")", unix.Close(fd))
}

// closeAll closes what a scenario left open.
func (r *nsRun) closeAll() {
	for name, fd := range r.fds {
		unix.Close(fd)
		delete(r.fds, name)
	}
}

// create is open(O_CREAT|O_WRONLY, 0644) + close.
func (r *nsRun) create(rel string) {
	fd, err := unix.Open(r.p(rel), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0644)
	r.errRec(fmt.Sprintf("create(%q)", rel), err)
	if err == nil {
		unix.Close(fd)
	}
}

// createWith creates rel with content data.
func (r *nsRun) createWith(rel, data string) {
	fd, err := unix.Open(r.p(rel), unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0644)
	if err == nil {
		var n int
		n, err = unix.Write(fd, []byte(data))
		if err == nil && n != len(data) {
			err = fmt.Errorf("short write %d", n)
		}
		unix.Close(fd)
	}
	r.errRec(fmt.Sprintf("create(%q, %q)", rel, data), err)
}

func (r *nsRun) write(name, data string) {
	n, err := unix.Write(r.fd(name), []byte(data))
	r.rec(fmt.Sprintf("write(%s, %q)", name, data), nsCount(n, err))
}

func (r *nsRun) pwrite(name, data string, off int64) {
	n, err := unix.Pwrite(r.fd(name), []byte(data), off)
	r.rec(fmt.Sprintf("pwrite(%s, %q, %d)", name, data, off), nsCount(n, err))
}

func (r *nsRun) read(name string, size int) {
	buf := make([]byte, size)
	n, err := unix.Read(r.fd(name), buf)
	r.rec(fmt.Sprintf("read(%s, %d)", name, size), nsData(buf, n, err))
}

func (r *nsRun) pread(name string, size int, off int64) {
	buf := make([]byte, size)
	n, err := unix.Pread(r.fd(name), buf, off)
	r.rec(fmt.Sprintf("pread(%s, %d, %d)", name, size, off), nsData(buf, n, err))
}

func (r *nsRun) seek(name string, off int64, whence int) {
	pos, err := unix.Seek(r.fd(name), off, whence)
	res := nsErr(err)
	if err == nil {
		res = fmt.Sprint(pos)
	}
	r.rec(fmt.Sprintf("lseek(%s, %d, %d)", name, off, whence), res)
}

// readFile records the whole content of rel.
func (r *nsRun) readFile(rel string) {
	b, err := os.ReadFile(r.p(rel))
	res := nsErr(err)
	if err == nil {
		res = fmt.Sprintf("%q", b)
	}
	r.rec(fmt.Sprintf("content(%q)", rel), res)
}

func nsCount(n int, err error) string {
	if err != nil {
		return nsErr(err)
	}
	return fmt.Sprint(n)
}

func nsData(buf []byte, n int, err error) string {
	if err != nil {
		return nsErr(err)
	}
	return fmt.Sprintf("%d %q", n, buf[:n])
}

// ---- attributes --------------------------------------------------------

func nsType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "reg"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "lnk"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "sock"
	case unix.S_IFCHR:
		return "chr"
	case unix.S_IFBLK:
		return "blk"
	}
	return fmt.Sprintf("type%#o", mode&unix.S_IFMT)
}

func nsStatString(st *unix.Stat_t) string {
	s := fmt.Sprintf("%s mode=%04o nlink=%d size=%d blocks=%d blksize=%d uid=%d gid=%d",
		nsType(st.Mode), st.Mode&07777, st.Nlink, st.Size, st.Blocks, st.Blksize, st.Uid, st.Gid)
	if t := st.Mode & unix.S_IFMT; t == unix.S_IFCHR || t == unix.S_IFBLK {
		s += fmt.Sprintf(" rdev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	return s
}

func (r *nsRun) stat(rel string) {
	var st unix.Stat_t
	err := unix.Stat(r.p(rel), &st)
	r.rec(fmt.Sprintf("stat(%q)", rel), nsStatRes(&st, err))
}

func (r *nsRun) lstat(rel string) {
	var st unix.Stat_t
	err := unix.Lstat(r.p(rel), &st)
	r.rec(fmt.Sprintf("lstat(%q)", rel), nsStatRes(&st, err))
}

func (r *nsRun) fstat(name string) {
	var st unix.Stat_t
	err := unix.Fstat(r.fd(name), &st)
	r.rec(fmt.Sprintf("fstat(%s)", name), nsStatRes(&st, err))
}

func nsStatRes(st *unix.Stat_t, err error) string {
	if err != nil {
		return nsErr(err)
	}
	return nsStatString(st)
}

// nsTimes is a timestamp snapshot.
type nsTimes struct {
	ok                  bool
	atime, mtime, ctime unix.Timespec
}

// times takes a snapshot of rel's timestamps (lstat), for changed.
func (r *nsRun) times(rel string) nsTimes {
	var st unix.Stat_t
	if err := unix.Lstat(r.p(rel), &st); err != nil {
		return nsTimes{}
	}
	return nsTimes{true, st.Atim, st.Mtim, st.Ctim}
}

func nsRel(before, after unix.Timespec) string {
	b, a := before.Nano(), after.Nano()
	switch {
	case a == b:
		return "same"
	case a > b:
		return "later"
	}
	return "EARLIER"
}

// changed records how rel's timestamps moved since before, as
// "same"/"later" relations.
func (r *nsRun) changed(rel, after string, before nsTimes) {
	now := r.times(rel)
	op := fmt.Sprintf("times(%q) after %s", rel, after)
	if !before.ok || !now.ok {
		r.rec(op, "cannot stat")
		return
	}
	r.rec(op, fmt.Sprintf("atime %s, mtime %s, ctime %s",
		nsRel(before.atime, now.atime), nsRel(before.mtime, now.mtime), nsRel(before.ctime, now.ctime)))
}

// sameInode records whether two names are the same inode.
func (r *nsRun) sameInode(a, b string) {
	var sa, sb unix.Stat_t
	ea, eb := unix.Lstat(r.p(a), &sa), unix.Lstat(r.p(b), &sb)
	res := "cannot stat"
	if ea == nil && eb == nil {
		res = fmt.Sprint(sa.Ino == sb.Ino && sa.Dev == sb.Dev)
	}
	r.rec(fmt.Sprintf("same inode(%q, %q)", a, b), res)
}

// ---- namespace calls ------------------------------------------------------

func (r *nsRun) mkdir(rel string, mode uint32) {
	r.errRec(fmt.Sprintf("mkdir(%q, %#o)", rel, mode), unix.Mkdir(r.p(rel), mode))
}

func (r *nsRun) rmdir(rel string) {
	r.errRec(fmt.Sprintf("rmdir(%q)", rel), unix.Rmdir(r.p(rel)))
}

func (r *nsRun) unlink(rel string) {
	r.errRec(fmt.Sprintf("unlink(%q)", rel), unix.Unlink(r.p(rel)))
}

func (r *nsRun) rename(from, to string) {
	r.errRec(fmt.Sprintf("rename(%q, %q)", from, to), unix.Rename(r.p(from), r.p(to)))
}

func (r *nsRun) rename2(from, to string, flags uint) {
	var names []string
	for _, f := range []struct {
		v uint
		n string
	}{{unix.RENAME_NOREPLACE, "NOREPLACE"}, {unix.RENAME_EXCHANGE, "EXCHANGE"}, {unix.RENAME_WHITEOUT, "WHITEOUT"}} {
		if flags&f.v != 0 {
			names = append(names, f.n)
		}
	}
	err := unix.Renameat2(unix.AT_FDCWD, r.p(from), unix.AT_FDCWD, r.p(to), flags)
	r.errRec(fmt.Sprintf("renameat2(%q, %q, %s)", from, to, strings.Join(names, "|")), err)
}

func (r *nsRun) link(from, to string) {
	r.errRec(fmt.Sprintf("link(%q, %q)", from, to), unix.Link(r.p(from), r.p(to)))
}

func (r *nsRun) symlink(target, rel string) {
	r.errRec(fmt.Sprintf("symlink(%q, %q)", target, rel), unix.Symlink(target, r.p(rel)))
}

func (r *nsRun) readlink(rel string) {
	buf := make([]byte, 8192)
	n, err := unix.Readlink(r.p(rel), buf)
	res := nsErr(err)
	if err == nil {
		res = fmt.Sprintf("%q", buf[:n])
	}
	r.rec(fmt.Sprintf("readlink(%q)", rel), res)
}

func (r *nsRun) chmod(rel string, mode uint32) {
	r.errRec(fmt.Sprintf("chmod(%q, %#o)", rel, mode), unix.Chmod(r.p(rel), mode))
}

func (r *nsRun) lchown(rel string, uid, gid int) {
	r.errRec(fmt.Sprintf("lchown(%q, %d, %d)", rel, uid, gid), unix.Lchown(r.p(rel), uid, gid))
}

func (r *nsRun) truncate(rel string, size int64) {
	r.errRec(fmt.Sprintf("truncate(%q, %d)", rel, size), unix.Truncate(r.p(rel), size))
}

func (r *nsRun) ftruncate(name string, size int64) {
	r.errRec(fmt.Sprintf("ftruncate(%s, %d)", name, size), unix.Ftruncate(r.fd(name), size))
}

func (r *nsRun) utimens(rel string, atime, mtime unix.Timespec) {
	err := unix.UtimesNanoAt(unix.AT_FDCWD, r.p(rel), []unix.Timespec{atime, mtime}, unix.AT_SYMLINK_NOFOLLOW)
	r.errRec(fmt.Sprintf("utimensat(%q, %s, %s)", rel, nsTs(atime), nsTs(mtime)), err)
}

func nsTs(ts unix.Timespec) string {
	switch ts.Nsec {
	case unix.UTIME_NOW:
		return "UTIME_NOW"
	case unix.UTIME_OMIT:
		return "UTIME_OMIT"
	}
	return fmt.Sprintf("%d.%09d", ts.Sec, ts.Nsec)
}

// exactTimes records rel's atime and mtime exactly (after utimensat with
// explicit values, both file systems must store them to the ns).
func (r *nsRun) exactTimes(rel string) {
	var st unix.Stat_t
	err := unix.Lstat(r.p(rel), &st)
	res := nsErr(err)
	if err == nil {
		res = fmt.Sprintf("atime=%s mtime=%s", nsTs(st.Atim), nsTs(st.Mtim))
	}
	r.rec(fmt.Sprintf("exact times(%q)", rel), res)
}

func (r *nsRun) mknod(rel string, mode uint32, dev int) {
	r.errRec(fmt.Sprintf("mknod(%q, %s|%#o, %d:%d)", rel, nsType(mode), mode&07777, unix.Major(uint64(dev)), unix.Minor(uint64(dev))),
		unix.Mknod(r.p(rel), mode, dev))
}

func (r *nsRun) mkfifo(rel string, mode uint32) {
	r.errRec(fmt.Sprintf("mkfifo(%q, %#o)", rel, mode), unix.Mkfifo(r.p(rel), mode))
}

// ---- directories ----------------------------------------------------------

// nsDirent is one getdents64 record.
type nsDirent struct {
	ino  uint64
	typ  uint8
	name string
}

var nsDtype = map[uint8]string{
	unix.DT_REG: "reg", unix.DT_DIR: "dir", unix.DT_LNK: "lnk", unix.DT_FIFO: "fifo",
	unix.DT_SOCK: "sock", unix.DT_CHR: "chr", unix.DT_BLK: "blk", unix.DT_UNKNOWN: "unknown",
}

// getdents lists the directory open as fd with getdents64 calls of
// bufSize bytes, until the end.
func nsGetdents(fd, bufSize int) ([]nsDirent, error) {
	var out []nsDirent
	buf := make([]byte, bufSize)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return out, err
		}
		if n == 0 {
			return out, nil
		}
		for b := buf[:n]; len(b) > 0; {
			// struct linux_dirent64 { u64 ino; s64 off; u16 reclen; u8 type; char name[]; }
			reclen := int(b[16]) | int(b[17])<<8
			if reclen < 19 || reclen > len(b) {
				return out, fmt.Errorf("bad dirent record length %d", reclen)
			}
			ino := uint64(0)
			for i := 7; i >= 0; i-- {
				ino = ino<<8 | uint64(b[i])
			}
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			out = append(out, nsDirent{ino: ino, typ: b[18], name: string(name)})
			b = b[reclen:]
		}
	}
}

// readdir records the listing of rel, in order, with d_type, read with
// getdents64 buffers of bufSize bytes. It also records whether the "."
// and ".." entries carry the inode numbers of the directory and of its
// parent.
func (r *nsRun) readdir(rel string, bufSize int) {
	op := fmt.Sprintf("readdir(%q, buf %d)", rel, bufSize)
	fd, err := unix.Open(r.p(rel), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.rec(op, nsErr(err))
		return
	}
	ents, err := nsGetdents(fd, bufSize)
	unix.Close(fd)
	if err != nil {
		r.rec(op, nsErr(err))
		return
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.name+"("+nsDtype[e.typ]+")")
	}
	r.rec(op, strings.Join(names, " "))
}

// dotInodes records whether the "." and ".." entries of directory rel
// carry the inode numbers that stat gives for the directory and for its
// parent (or, at a mount root, whose ".." the file system cannot see
// past, for the directory itself), and that the number is not 0.
func (r *nsRun) dotInodes(rel string, mountRoot bool) {
	op := fmt.Sprintf("inodes of %q, \".\" and \"..\"", rel)
	fd, err := unix.Open(r.p(rel), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.rec(op, nsErr(err))
		return
	}
	ents, err := nsGetdents(fd, 4096)
	unix.Close(fd)
	if err != nil {
		r.rec(op, nsErr(err))
		return
	}
	var dot, dotdot uint64
	for _, e := range ents {
		switch e.name {
		case ".":
			dot = e.ino
		case "..":
			dotdot = e.ino
		}
	}
	var self, parent unix.Stat_t
	if err := unix.Stat(r.p(rel), &self); err != nil {
		r.rec(op, nsErr(err))
		return
	}
	parentRel := "parent"
	if mountRoot {
		parent, parentRel = self, "itself"
	} else if err := unix.Stat(r.p(rel)+"/..", &parent); err != nil {
		r.rec(op, nsErr(err))
		return
	}
	r.rec(op, fmt.Sprintf("stat ino nonzero: %v, \".\" is the directory: %v, \"..\" is its %s: %v",
		self.Ino != 0, dot == self.Ino, parentRel, dotdot == parent.Ino))
}

// ---- extended attributes --------------------------------------------------

func nsXflags(flags int) string {
	switch flags {
	case 0:
		return "0"
	case unix.XATTR_CREATE:
		return "CREATE"
	case unix.XATTR_REPLACE:
		return "REPLACE"
	}
	return fmt.Sprint(flags)
}

func (r *nsRun) setxattr(rel, name, value string, flags int) {
	r.errRec(fmt.Sprintf("lsetxattr(%q, %q, %q, %s)", rel, name, value, nsXflags(flags)),
		unix.Lsetxattr(r.p(rel), name, []byte(value), flags))
}

// getxattr records the value of name, first asking for its size as
// programs do, then with a buffer of that size, then with a buffer one
// byte too small when the value is not empty.
func (r *nsRun) getxattr(rel, name string) {
	op := fmt.Sprintf("lgetxattr(%q, %q)", rel, name)
	sz, err := unix.Lgetxattr(r.p(rel), name, nil)
	if err != nil {
		r.rec(op, nsErr(err))
		return
	}
	buf := make([]byte, sz)
	n, err := unix.Lgetxattr(r.p(rel), name, buf)
	res := fmt.Sprintf("size %d, ", sz)
	if err != nil {
		res += nsErr(err)
	} else {
		res += fmt.Sprintf("%q", buf[:n])
	}
	if sz > 0 {
		_, err := unix.Lgetxattr(r.p(rel), name, make([]byte, sz-1))
		res += ", short buffer: " + nsErr(err)
	}
	r.rec(op, res)
}

// listxattr records the list of names, in the order the file system
// gives them.
func (r *nsRun) listxattr(rel string) {
	op := fmt.Sprintf("llistxattr(%q)", rel)
	sz, err := unix.Llistxattr(r.p(rel), nil)
	if err != nil {
		r.rec(op, nsErr(err))
		return
	}
	buf := make([]byte, sz)
	n, err := unix.Llistxattr(r.p(rel), buf)
	if err != nil {
		r.rec(op, nsErr(err))
		return
	}
	names := strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00")
	if n == 0 {
		names = nil
	}
	r.rec(op, fmt.Sprintf("size %d, [%s]", sz, strings.Join(names, " ")))
}

func (r *nsRun) removexattr(rel, name string) {
	r.errRec(fmt.Sprintf("lremovexattr(%q, %q)", rel, name), unix.Lremovexattr(r.p(rel), name))
}

// ---- the scenarios ----------------------------------------------------------

// nsScenario is one differential scenario, run in an empty directory
// (or, with atRoot, in the mount's root directory).
type nsScenario struct {
	name   string
	run    func(r *nsRun)
	atRoot bool
}

var nsScenarios = []nsScenario{
	{name: "mount-root", atRoot: true, run: func(r *nsRun) {
		r.stat(".")
		r.dotInodes(".", true)
	}},
	{name: "create", run: func(r *nsRun) {
		before := r.times(".")
		r.tick()
		r.open("f", "a", unix.O_CREAT|unix.O_WRONLY, 0644)
		r.fstat("f")
		r.stat("a")
		r.stat(".")
		r.changed(".", "create", before)
		r.close("f")
		// The process umask (022 under go test) applies on both.
		r.create("b")
		r.open("g", "c", unix.O_CREAT|unix.O_RDWR, 0777)
		r.stat("c")
		r.close("g")
		// O_CREAT on an existing file opens it, keeping the content.
		r.createWith("d", "data")
		r.open("h", "d", unix.O_CREAT|unix.O_RDWR, 0600)
		r.read("h", 16)
		r.stat("d")
		r.close("h")
		r.open("x", "missing", unix.O_RDONLY, 0)
		r.open("x", "missing", unix.O_WRONLY, 0)
	}},
	{name: "create-exclusive", run: func(r *nsRun) {
		r.create("a")
		r.open("f", "a", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0644)
		r.mkdir("d", 0755)
		r.open("f", "d", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0644)
		// O_CREAT|O_EXCL never follows a symlink, even a dangling one.
		r.symlink("nowhere", "dangling")
		r.open("f", "dangling", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0644)
		r.lstat("nowhere")
		// Without O_EXCL, O_CREAT through a dangling symlink creates
		// its target.
		r.open("g", "dangling", unix.O_CREAT|unix.O_WRONLY, 0644)
		r.lstat("nowhere")
		r.close("g")
		r.open("f", "new", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0644)
		r.close("f")
		r.stat("new")
	}},
	{name: "name-length", run: func(r *nsRun) {
		long := strings.Repeat("n", nsNameMax+1)
		longest := strings.Repeat("m", nsNameMax)
		r.open("f", long, unix.O_CREAT|unix.O_WRONLY, 0644)
		r.stat(long)
		r.lstat(long)
		r.mkdir(long, 0755)
		r.create("short")
		r.rename("short", long)
		r.link("short", long)
		r.symlink("short", long)
		r.mknod(long, unix.S_IFIFO|0644, 0)
		r.unlink(long)
		r.rmdir(long)
		r.stat("short")
		r.open("f", longest, unix.O_CREAT|unix.O_WRONLY, 0644)
		r.close("f")
		r.stat(longest)
		r.rename(longest, "short2")
		r.rename("short2", longest)
		r.mkdir(longest[1:]+"d", 0755)
		r.stat(longest[1:] + "d")
		r.readdir(".", 4096)
		r.unlink(longest)
		r.stat(longest)
	}},
	{name: "unlink", run: func(r *nsRun) {
		r.create("a")
		before := r.times(".")
		r.tick()
		r.unlink("a")
		r.changed(".", "unlink", before)
		r.stat(".")
		r.stat("a")
		r.unlink("a")
		r.unlink("missing/a")
		// An unlinked file stays usable through an open descriptor.
		r.createWith("b", "kept")
		r.open("f", "b", unix.O_RDWR, 0)
		r.unlink("b")
		r.fstat("f")
		r.read("f", 16)
		r.write("f", "+more")
		r.fstat("f")
		r.close("f")
		r.readdir(".", 4096)
	}},
	{name: "mkdir-rmdir", run: func(r *nsRun) {
		before := r.times(".")
		r.tick()
		r.mkdir("d", 0755)
		r.stat("d")
		r.stat(".")
		r.changed(".", "mkdir", before)
		r.mkdir("d", 0755)
		r.create("f")
		r.mkdir("f", 0755)
		r.mkdir("missing/d", 0755)
		r.mkdir("m", 0700)
		r.stat("m")
		r.create("d/file")
		r.rmdir("d")
		r.rmdir("f")
		r.rmdir("missing")
		r.rmdir("d/.")
		r.rmdir("d/..")
		r.unlink("d")
		r.open("w", "d", unix.O_WRONLY, 0)
		r.open("w", "d", unix.O_RDWR, 0)
		r.open("w", "d", unix.O_CREAT|unix.O_WRONLY, 0644)
		r.open("w", "f", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		r.open("w", "f/x", unix.O_RDONLY, 0)
		r.open("w", "f/x", unix.O_CREAT|unix.O_WRONLY, 0644)
		r.stat("f/x")
		r.mkdir("f/x", 0755)
		r.unlink("f/x")
		r.rmdir("f/x")
		r.rename("f/x", "y")
		r.unlink("d/file")
		before = r.times(".")
		r.tick()
		r.rmdir("d")
		r.changed(".", "rmdir", before)
		r.stat(".")
		r.stat("d")
		r.open("o", "m", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		r.rmdir("m")
		r.fstat("o")
		r.close("o")
	}},
	{name: "rename-files", run: func(r *nsRun) {
		r.createWith("a", "AAA")
		r.createWith("b", "BB")
		before := r.times("a")
		dirBefore := r.times(".")
		r.tick()
		r.rename("a", "c")
		r.changed("c", "rename", before)
		r.changed(".", "rename", dirBefore)
		r.stat("a")
		r.readFile("c")
		// Overwrite: the old target loses its name but stays open.
		r.open("old", "b", unix.O_RDONLY, 0)
		r.rename("c", "b")
		r.readFile("b")
		r.fstat("old")
		r.read("old", 8)
		r.close("old")
		r.stat(".")
		// Two names of one inode: rename does nothing.
		r.link("b", "b2")
		r.rename("b", "b2")
		r.stat("b")
		r.stat("b2")
		r.unlink("b2")
		r.rename("b", "b")
		r.rename("missing", "x")
		r.rename("b", "missing/x")
		r.create("p")
		r.rename2("b", "p", unix.RENAME_NOREPLACE)
		r.rename2("b", "q", unix.RENAME_NOREPLACE)
		r.readFile("q")
		r.stat("b")
		r.readdir(".", 4096)
	}},
	{name: "rename-exchange", run: func(r *nsRun) {
		r.createWith("a", "AAA")
		r.createWith("b", "BB")
		r.mkdir("d", 0755)
		r.mkdir("e", 0755)
		r.create("e/f")
		before := r.times("a")
		r.tick()
		r.rename2("a", "b", unix.RENAME_EXCHANGE)
		r.readFile("a")
		r.readFile("b")
		r.changed("b", "exchange", before)
		r.rename2("a", "missing", unix.RENAME_EXCHANGE)
		r.rename2("a", "b", unix.RENAME_EXCHANGE|unix.RENAME_NOREPLACE)
		// A file and a directory in different directories: both
		// parents' link counts change.
		r.rename2("a", "e/f", unix.RENAME_EXCHANGE)
		r.rename2("d", "e/f", unix.RENAME_EXCHANGE)
		r.stat(".")
		r.stat("e")
		r.lstat("d")
		r.lstat("e/f")
		r.stat("e/f/..")
		r.readdir(".", 4096)
		r.readdir("e", 4096)
		// A directory with its own subdirectory: EINVAL.
		r.mkdir("e/f/g", 0755)
		r.rename2("e", "e/f/g", unix.RENAME_EXCHANGE)
	}},
	{name: "rename-directories", run: func(r *nsRun) {
		r.mkdir("a", 0755)
		r.mkdir("a/sub", 0755)
		r.mkdir("b", 0755)
		r.create("b/f")
		r.mkdir("empty", 0755)
		r.create("file")
		r.rename("a", "b")
		r.rename2("a", "b", unix.RENAME_NOREPLACE)
		r.rename("a", "file")
		r.rename("file", "a")
		r.rename("a", "a/sub/x")
		r.rename("a", "a/sub")
		r.rename("a/sub", "a")
		r.rename(".", "x")
		r.rename("a/..", "x")
		before := r.times("a")
		r.tick()
		r.rename("a", "empty")
		r.changed("empty", "rename", before)
		r.stat("empty")
		r.stat("a")
		r.stat(".")
		r.rename("empty/sub", "b/sub")
		r.stat("empty")
		r.stat("b")
		r.stat("b/sub/..")
		r.sameInode("b/sub/..", "b")
		r.readdir("b/sub", 4096)
		r.rename("b", "renamed")
		r.readdir(".", 4096)
	}},
	{name: "directory-size-nlink", run: func(r *nsRun) {
		r.mkdir("d", 0755)
		r.stat("d")
		r.mkdir("d/a", 0755)
		r.stat("d")
		r.mkdir("d/b", 0755)
		r.create("d/f")
		r.symlink("f", "d/l")
		r.mkfifo("d/p", 0644)
		r.stat("d")
		r.link("d/f", "d/f2")
		r.stat("d")
		r.rename("d/a", "d/b")
		r.stat("d")
		r.mkdir("e", 0755)
		r.rename("d/b", "e/b")
		r.stat("d")
		r.stat("e")
		r.stat(".")
		r.rename("d/f", "e/f")
		r.stat("d")
		r.stat("e")
		r.rmdir("e/b")
		r.unlink("e/f")
		r.stat("e")
		r.rmdir("e")
		r.stat(".")
	}},
	// tmpfs on Linux 6.18 lists a directory newest first (simple_offset
	// walks the dentry's d_children list, where new and renamed
	// entries go to the head), not in creation order.
	{name: "readdir", run: func(r *nsRun) {
		r.mkdir("d", 0755)
		before := r.times("d")
		r.tick()
		r.readdir("d", 4096)
		r.changed("d", "readdir", before)
		r.mkdir("d/sub", 0755)
		r.dotInodes("d/sub", false)
		r.dotInodes(".", false)
		r.rmdir("d/sub")
		for _, n := range []string{"zeta", "alpha", "mid", "beta"} {
			if n == "mid" {
				r.mkdir("d/"+n, 0755)
			} else {
				r.create("d/" + n)
			}
		}
		r.symlink("alpha", "d/lnk")
		r.mkfifo("d/fifo", 0644)
		r.readdir("d", 4096)
		r.unlink("d/alpha")
		r.create("d/alpha")
		r.readdir("d", 4096)
		r.rename("d/zeta", "d/omega")
		r.readdir("d", 4096)
		r.rename("d/beta", "d/alpha")
		r.readdir("d", 4096)
		r.rename2("d/omega", "d/mid", unix.RENAME_EXCHANGE)
		r.readdir("d", 4096)
		r.link("d/alpha", "d/hard")
		r.readdir("d", 4096)
		// Many entries, read a few at a time.
		r.mkdir("many", 0755)
		for i := 0; i < 100; i++ {
			r.create(fmt.Sprintf("many/%03d-%s", (i*37)%100, strings.Repeat("x", i%7)))
		}
		r.readdir("many", 4096)
		r.readdir("many", 256)
	}},
	{name: "hard-links", run: func(r *nsRun) {
		r.createWith("a", "data")
		before := r.times("a")
		r.tick()
		r.link("a", "b")
		r.changed("a", "link", before)
		r.stat("a")
		r.stat("b")
		r.sameInode("a", "b")
		r.mkdir("d", 0755)
		r.link("a", "d/c")
		r.stat("a")
		r.link("a", "b")
		r.link("missing", "x")
		r.link("d", "d2")
		r.unlink("a")
		r.stat("b")
		r.readFile("d/c")
		r.unlink("b")
		r.stat("d/c")
		r.readdir("d", 4096)
	}},
	{name: "symlinks", run: func(r *nsRun) {
		r.createWith("f", "data")
		r.mkdir("d", 0755)
		r.symlink("f", "l")
		r.lstat("l")
		r.stat("l")
		r.readlink("l")
		r.readFile("l")
		r.symlink("d", "ld")
		r.create("ld/inside")
		r.stat("d/inside")
		r.symlink("nowhere/x", "dangling")
		r.lstat("dangling")
		r.stat("dangling")
		r.readlink("dangling")
		r.readlink("f")
		r.readlink("d")
		r.symlink("f", "l")
		r.symlink("f", "f")
		r.open("n", "l", unix.O_RDONLY|unix.O_NOFOLLOW, 0)
		r.open("n", "l", unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_PATH, 0)
		r.close("n")
		r.symlink("loop2", "loop1")
		r.symlink("loop1", "loop2")
		r.stat("loop1")
		// Short targets are kept inline in the inode on tmpfs, long
		// ones in a page.
		long := strings.Repeat("t/", 100) + "target"
		r.symlink(long, "long")
		r.lstat("long")
		r.readlink("long")
		r.lchown("l", 1234, 5678)
		r.lstat("l")
		r.stat("f")
		r.unlink("l")
		r.stat("f")
	}},
	{name: "chmod-chown", run: func(r *nsRun) {
		r.create("f")
		r.mkdir("d", 0755)
		before := r.times("f")
		r.tick()
		r.chmod("f", 0600)
		r.stat("f")
		r.changed("f", "chmod", before)
		r.chmod("f", 07777)
		r.stat("f")
		r.chmod("d", 01777)
		r.stat("d")
		before = r.times("f")
		r.tick()
		r.lchown("f", 1234, 5678)
		r.stat("f")
		r.changed("f", "chown", before)
		r.lchown("f", -1, 42)
		r.stat("f")
		// chown clears set-user-ID (and set-group-ID on a group-
		// executable file), also for root.
		r.chmod("f", 06755)
		r.lchown("f", 0, 0)
		r.stat("f")
		r.chmod("f", 06745)
		r.lchown("f", 7, 7)
		r.stat("f")
		r.chmod("missing", 0644)
		// A set-group-ID directory hands its group down.
		r.lchown("d", 0, 5678)
		r.chmod("d", 02775)
		r.create("d/f")
		r.mkdir("d/sub", 0755)
		r.stat("d/f")
		r.stat("d/sub")
	}},
	{name: "utimes", run: func(r *nsRun) {
		r.create("f")
		at := unix.Timespec{Sec: 1000000000, Nsec: 123456789}
		mt := unix.Timespec{Sec: 1200000000, Nsec: 987654321}
		before := r.times("f")
		r.tick()
		r.utimens("f", at, mt)
		r.exactTimes("f")
		r.changed("f", "utimensat", before)
		before = r.times("f")
		r.tick()
		r.utimens("f", unix.Timespec{Nsec: unix.UTIME_OMIT}, unix.Timespec{Nsec: unix.UTIME_NOW})
		r.changed("f", "utimensat(OMIT, NOW)", before)
		before = r.times("f")
		r.tick()
		r.utimens("f", unix.Timespec{Nsec: unix.UTIME_NOW}, unix.Timespec{Nsec: unix.UTIME_OMIT})
		r.changed("f", "utimensat(NOW, OMIT)", before)
		r.mkdir("d", 0755)
		r.utimens("d", at, mt)
		r.exactTimes("d")
		r.symlink("f", "l")
		r.utimens("l", at, mt)
		r.exactTimes("l")
		r.utimens("missing", at, mt)
	}},
	{name: "truncate", run: func(r *nsRun) {
		r.createWith("f", "0123456789")
		before := r.times("f")
		r.tick()
		r.truncate("f", 4)
		r.stat("f")
		r.changed("f", "truncate", before)
		r.readFile("f")
		r.truncate("f", 100)
		r.stat("f")
		r.readFile("f")
		r.truncate("f", 8192)
		r.stat("f")
		r.truncate("f", 0)
		r.stat("f")
		before = r.times("f")
		r.tick()
		r.truncate("f", 0)
		r.changed("f", "truncate to the same size", before)
		r.truncate("f", -1)
		r.mkdir("d", 0755)
		r.truncate("d", 0)
		r.truncate("missing", 0)
		r.open("w", "f", unix.O_WRONLY, 0)
		r.ftruncate("w", 3)
		r.fstat("w")
		r.close("w")
		r.open("ro", "f", unix.O_RDONLY, 0)
		r.ftruncate("ro", 0)
		r.close("ro")
	}},
	{name: "write-read", run: func(r *nsRun) {
		r.open("f", "f", unix.O_CREAT|unix.O_RDWR, 0644)
		before := r.times("f")
		r.tick()
		r.write("f", "hello, world")
		r.changed("f", "write", before)
		r.fstat("f")
		r.seek("f", 0, unix.SEEK_SET)
		r.read("f", 5)
		r.read("f", 100)
		r.read("f", 100)
		r.pread("f", 5, 7)
		r.pread("f", 5, 100)
		// Writing past the end leaves a zero-filled hole.
		r.pwrite("f", "end", 20)
		r.fstat("f")
		r.pread("f", 30, 0)
		r.pwrite("f", "WORLD", 7)
		r.readFile("f")
		r.seek("f", 0, unix.SEEK_END)
		r.seek("f", -3, unix.SEEK_END)
		r.read("f", 10)
		r.close("f")
		// Reading moves atime (relatime: while atime <= mtime).
		before = r.times("f")
		r.tick()
		r.readFile("f")
		r.changed("f", "first read", before)
		before = r.times("f")
		r.tick()
		r.readFile("f")
		r.changed("f", "second read", before)
		r.open("ro", "f", unix.O_RDONLY, 0)
		r.write("ro", "x")
		r.close("ro")
		r.open("wo", "f", unix.O_WRONLY, 0)
		r.read("wo", 1)
		r.close("wo")
	}},
	{name: "append", run: func(r *nsRun) {
		r.createWith("f", "start")
		r.open("a", "f", unix.O_WRONLY|unix.O_APPEND, 0)
		r.write("a", "+one")
		r.seek("a", 0, unix.SEEK_SET)
		r.write("a", "+two")
		// pwrite on an O_APPEND descriptor appends (Linux).
		r.pwrite("a", "+three", 0)
		r.seek("a", 0, unix.SEEK_CUR)
		r.close("a")
		r.readFile("f")
		r.open("b", "f", unix.O_RDWR|unix.O_APPEND, 0)
		r.open("c", "f", unix.O_WRONLY, 0)
		r.write("c", "XY")
		r.write("b", "+four")
		r.pread("b", 4, 0)
		r.close("b")
		r.close("c")
		r.readFile("f")
		r.stat("f")
		// The oslo/fasteners open: O_WRONLY|O_CREAT|O_APPEND, 0666.
		r.open("lock", "lockfile", unix.O_WRONLY|unix.O_CREAT|unix.O_APPEND, 0666)
		r.fstat("lock")
		r.close("lock")
	}},
	{name: "o-trunc", run: func(r *nsRun) {
		r.createWith("f", "content")
		before := r.times("f")
		r.tick()
		r.open("t", "f", unix.O_WRONLY|unix.O_TRUNC, 0)
		r.fstat("t")
		r.changed("f", "open O_TRUNC", before)
		r.close("t")
		// O_TRUNC of an empty file still updates mtime and ctime.
		before = r.times("f")
		r.tick()
		r.open("t", "f", unix.O_WRONLY|unix.O_TRUNC, 0)
		r.changed("f", "open O_TRUNC of an empty file", before)
		r.close("t")
		r.createWith("g", "content")
		r.open("t", "g", unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC, 0644)
		r.fstat("t")
		r.close("t")
		// Linux truncates on O_RDONLY|O_TRUNC as well.
		r.createWith("h", "content")
		r.open("t", "h", unix.O_RDONLY|unix.O_TRUNC, 0)
		r.fstat("t")
		r.close("t")
		r.stat("h")
		r.mkdir("d", 0755)
		r.open("t", "d", unix.O_RDONLY|unix.O_TRUNC, 0)
	}},
	{name: "xattr", run: func(r *nsRun) {
		r.create("f")
		before := r.times("f")
		r.tick()
		r.setxattr("f", "user.first", "1", 0)
		r.changed("f", "setxattr", before)
		r.getxattr("f", "user.first")
		r.getxattr("f", "user.missing")
		r.removexattr("f", "user.missing")
		r.setxattr("f", "user.first", "again", unix.XATTR_CREATE)
		r.setxattr("f", "user.first", "replaced", unix.XATTR_REPLACE)
		r.getxattr("f", "user.first")
		r.setxattr("f", "user.other", "x", unix.XATTR_REPLACE)
		r.setxattr("f", "user.other", "x", unix.XATTR_CREATE)
		r.setxattr("f", "user.empty", "", 0)
		r.getxattr("f", "user.empty")
		r.setxattr("f", "user.bin", "a\x00b\xff", 0)
		r.getxattr("f", "user.bin")
		r.setxattr("f", "user.", "x", 0)
		r.setxattr("f", "user."+strings.Repeat("k", 250), "x", 0)
		r.setxattr("f", "user.big", strings.Repeat("v", 65536), 0)
		r.setxattr("f", "user.toobig", strings.Repeat("v", 65537), 0)
		r.getxattr("f", "user.big")
		r.removexattr("f", "user.big")
		r.setxattr("f", "unknown.x", "x", 0)
		r.getxattr("f", "unknown.x")
		r.setxattr("f", "trusted.t", "t", 0)
		r.getxattr("f", "trusted.t")
		r.setxattr("f", "security.s", "s", 0)
		r.getxattr("f", "security.s")
		r.listxattr("f")
		before = r.times("f")
		r.tick()
		r.removexattr("f", "user.first")
		r.changed("f", "removexattr", before)
		r.getxattr("f", "user.first")
		r.removexattr("f", "user.first")
		r.listxattr("f")
		// The listing order: names set in reverse order.
		r.create("g")
		for _, n := range []string{"user.e", "user.d", "user.c", "user.b", "user.a"} {
			r.setxattr("g", n, n, 0)
		}
		r.listxattr("g")
		r.mkdir("d", 0755)
		r.setxattr("d", "user.dir", "yes", 0)
		r.getxattr("d", "user.dir")
		r.listxattr("d")
		// user.* is refused on symlinks and FIFOs by the VFS.
		r.symlink("f", "l")
		r.setxattr("l", "user.x", "x", 0)
		r.getxattr("l", "user.x")
		r.listxattr("l")
		r.mkfifo("p", 0644)
		r.setxattr("p", "user.x", "x", 0)
		r.setxattr("p", "trusted.x", "x", 0)
		r.getxattr("p", "trusted.x")
		// Extended attributes follow the inode, not the name.
		r.link("f", "f2")
		r.getxattr("f2", "user.other")
		r.rename("f2", "f3")
		r.getxattr("f3", "user.other")
	}},
	{name: "special-files", run: func(r *nsRun) {
		r.mkfifo("p", 0640)
		r.lstat("p")
		r.mkfifo("p", 0640)
		r.open("rd", "p", unix.O_RDONLY|unix.O_NONBLOCK, 0)
		r.fstat("rd")
		r.open("wr", "p", unix.O_WRONLY|unix.O_NONBLOCK, 0)
		r.write("wr", "through the fifo")
		r.read("rd", 64)
		r.close("wr")
		r.close("rd")
		r.open("wr", "p", unix.O_WRONLY|unix.O_NONBLOCK, 0)
		r.mknod("sock", unix.S_IFSOCK|0600, 0)
		r.lstat("sock")
		r.mknod("null", unix.S_IFCHR|0666, int(unix.Mkdev(1, 3)))
		r.lstat("null")
		r.mknod("blk", unix.S_IFBLK|0600, int(unix.Mkdev(7, 0)))
		r.lstat("blk")
		r.mknod("reg", unix.S_IFREG|0600, 0)
		r.lstat("reg")
		r.mknod("zero", 0600, 0)
		r.lstat("zero")
		r.mknod("dir", unix.S_IFDIR|0755, 0)
		r.truncate("p", 0)
		r.readdir(".", 4096)
		r.rename("p", "p2")
		r.lstat("p2")
		r.unlink("p2")
		r.unlink("null")
	}},
	{name: "statfs", run: func(r *nsRun) {
		var st unix.Statfs_t
		err := unix.Statfs(r.p("."), &st)
		res := nsErr(err)
		if err == nil {
			// f_type, and the block and inode counts, are the file
			// system's own.
			res = fmt.Sprintf("bsize=%d frsize=%d namelen=%d", st.Bsize, st.Frsize, st.Namelen)
		}
		r.rec("statfs(\".\")", res)
		r.create("f")
		r.open("f", "f", unix.O_RDONLY, 0)
		var fst unix.Statfs_t
		err = unix.Fstatfs(r.fd("f"), &fst)
		r.rec("fstatfs(f)", nsErr(err))
		r.close("f")
	}},
	// Documented deviations (fs/node.go; not yet in README.md): lockfs
	// answers RENAME_WHITEOUT (used by overlayfs) with EINVAL, and
	// POSIX ACLs (system.posix_acl_*) with EOPNOTSUPP, where tmpfs
	// supports both.
	{name: "documented-deviations", run: func(r *nsRun) {
		r.create("a")
		r.deviates("RENAME_WHITEOUT unsupported (fs/node.go)", "EINVAL")
		r.rename2("a", "b", unix.RENAME_WHITEOUT)
		r.create("acl")
		// A minimal access ACL: user::rw- group::r-- other::r--.
		acl := "\x02\x00\x00\x00" +
			"\x01\x00\x06\x00\xff\xff\xff\xff" +
			"\x04\x00\x04\x00\xff\xff\xff\xff" +
			"\x20\x00\x04\x00\xff\xff\xff\xff"
		r.deviates("POSIX ACLs unsupported (fs/node.go)", nsErr(unix.EOPNOTSUPP))
		r.errRec("lsetxattr(\"acl\", system.posix_acl_access, u::rw,g::r,o::r)",
			unix.Lsetxattr(r.p("acl"), "system.posix_acl_access", []byte(acl), 0))
	}},
	// Documented deviation (DESIGN.md "Views", fs/views.go): the root
	// of a lockfs mount has a hidden, read-only .lockfs directory,
	// reachable by name but not listed; it cannot be created or removed.
	{name: "view-directory", atRoot: true, run: func(r *nsRun) {
		r.lists(".", ".lockfs")
		r.deviates(".lockfs is reserved (DESIGN.md, Views)", "dir")
		r.lstatType(".lockfs")
		r.deviates(".lockfs cannot be created (DESIGN.md, Views)", "EEXIST")
		r.mkdir(".lockfs", 0755)
		r.deviates(".lockfs cannot be removed (fs/views.go)", "EPERM")
		r.rmdir(".lockfs")
		r.lists(".", ".lockfs")
	}},
}

// lists records whether directory rel lists name.
func (r *nsRun) lists(rel, name string) {
	op := fmt.Sprintf("%q lists %q", rel, name)
	fd, err := unix.Open(r.p(rel), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.rec(op, nsErr(err))
		return
	}
	ents, err := nsGetdents(fd, 4096)
	unix.Close(fd)
	found := false
	for _, e := range ents {
		found = found || e.name == name
	}
	r.rec(op, fmt.Sprint(found, " ", nsErr(err)))
}

// lstatType records only the file type of rel.
func (r *nsRun) lstatType(rel string) {
	var st unix.Stat_t
	err := unix.Lstat(r.p(rel), &st)
	res := nsErr(err)
	if err == nil {
		res = nsType(st.Mode)
	}
	r.rec(fmt.Sprintf("lstat(%q) type", rel), res)
}

// nsSecondFS mounts the file system compared with tmpfs: lockfs, or a
// second tmpfs under LOCKFS_DIFF_AGAINST=tmpfs.
func nsSecondFS(t *testing.T) (string, string) {
	if os.Getenv(nsDiffAgainstEnv) == "tmpfs" {
		return "tmpfs#2", mountTmpfs(t)
	}
	return "lockfs", mountLockfs(t).Dir
}

// TestNamespaceDiff runs every namespace scenario on tmpfs and on lockfs
// and requires the same outcome, call by call.
func TestNamespaceDiff(t *testing.T) {
	ref := mountTmpfs(t)
	kind, other := nsSecondFS(t)
	for _, sc := range nsScenarios {
		t.Run(sc.name, func(t *testing.T) {
			want := nsRunIn(t, ref, sc)
			got := nsRunIn(t, other, sc)
			nsCompare(t, kind, want, got, kind == "lockfs")
		})
	}
}

// nsRunIn runs sc in a new directory named after it under root.
func nsRunIn(t *testing.T, root string, sc nsScenario) []nsEntry {
	t.Helper()
	dir := root
	if !sc.atRoot {
		dir = filepath.Join(root, sc.name)
		if err := unix.Mkdir(dir, 0755); err != nil {
			t.Fatalf("mkdir %s: %v", dir, err)
		}
	}
	r := newNsRun(t, dir)
	defer r.closeAll()
	sc.run(r)
	return r.out
}

// nsCompare reports every call whose outcome differs.
func nsCompare(t *testing.T, kind string, want, got []nsEntry, applyDeviations bool) {
	t.Helper()
	if len(want) != len(got) {
		t.Errorf("tmpfs recorded %d calls, %s %d", len(want), kind, len(got))
	}
	diffs := 0
	for i := 0; i < min(len(want), len(got)); i++ {
		w, g := want[i], got[i]
		if w.op != g.op {
			t.Fatalf("call %d differs: %q on tmpfs, %q on %s (the scenario is not deterministic)", i, w.op, g.op, kind)
		}
		if applyDeviations && w.dev != "" {
			if g.res != w.devWant {
				t.Errorf("%s\n\ttmpfs:  %s\n\t%s: %s\n\tdocumented deviation (%s): %s", w.op, w.res, kind, g.res, w.dev, w.devWant)
			}
			continue
		}
		if w.res != g.res {
			diffs++
			t.Errorf("%s\n\ttmpfs:  %s\n\t%s: %s", w.op, w.res, kind, g.res)
		}
	}
	if diffs > 0 || t.Failed() {
		var b strings.Builder
		for i, w := range want {
			mark := " "
			if i < len(got) && got[i].res != w.res {
				mark = "!"
			}
			fmt.Fprintf(&b, "%s %s = %s\n", mark, w.op, w.res)
		}
		t.Logf("tmpfs log (! marks a difference):\n%s", b.String())
	}
}

// TestNamespaceFileSizeCap checks lockfs's per-file content cap (a
// lockfs-only limit, --max-file-size, 1 MiB by default): a write that
// would cross it is short, a write at or past it and a truncate or
// fallocate beyond it fail with EFBIG. tmpfs has no such cap.
func TestNamespaceFileSizeCap(t *testing.T) {
	for _, c := range []struct {
		name  string
		flags []string
		limit int64
	}{
		{"default", nil, nsDefaultMaxFileSize},
		{"max-file-size=4096", []string{"--max-file-size", "4096"}, 4096},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := mountLockfs(t, c.flags...)
			path := filepath.Join(m.Dir, "big")
			fd, err := unix.Open(path, unix.O_CREAT|unix.O_RDWR|unix.O_CLOEXEC, 0644)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			limit := c.limit

			chunk := bytes.Repeat([]byte("z"), int(limit-10))
			if n, err := unix.Pwrite(fd, chunk, 0); err != nil || n != len(chunk) {
				t.Fatalf("pwrite of %d bytes at 0 = %d, %v; want all of it", len(chunk), n, err)
			}
			if n, err := unix.Pwrite(fd, make([]byte, 20), limit-10); err != nil || n != 10 {
				t.Errorf("pwrite of 20 bytes at cap-10 = %d, %v; want a short write of 10", n, err)
			}
			if n, err := unix.Pwrite(fd, []byte("x"), limit); err != unix.EFBIG {
				t.Errorf("pwrite at the cap = %d, %v; want EFBIG", n, err)
			}
			if n, err := unix.Pwrite(fd, []byte("x"), limit+100); err != unix.EFBIG {
				t.Errorf("pwrite past the cap = %d, %v; want EFBIG", n, err)
			}
			if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
				t.Fatal(err)
			}
			if n, err := unix.Write(fd, []byte("x")); err != unix.EFBIG {
				t.Errorf("write at the end of a full file = %d, %v; want EFBIG", n, err)
			}
			if err := unix.Ftruncate(fd, limit+1); err != unix.EFBIG {
				t.Errorf("ftruncate to cap+1 = %v; want EFBIG", err)
			}
			if err := unix.Fallocate(fd, 0, 0, limit+1); err != unix.EFBIG {
				t.Errorf("fallocate to cap+1 = %v; want EFBIG", err)
			}
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil || st.Size != limit {
				t.Errorf("size after the failed calls = %d (%v); want %d", st.Size, err, limit)
			}
			// The content up to the cap reads back.
			buf := make([]byte, 16)
			if n, err := unix.Pread(fd, buf, limit-16); err != nil || n != 16 ||
				!bytes.Equal(buf, append(bytes.Repeat([]byte("z"), 6), make([]byte, 10)...)) {
				t.Errorf("pread of the last 16 bytes = %d %q, %v", n, buf[:max(n, 0)], err)
			}
			if err := unix.Ftruncate(fd, 0); err != nil {
				t.Errorf("ftruncate to 0: %v", err)
			}
			if err := unix.Ftruncate(fd, limit); err != nil {
				t.Errorf("ftruncate to the cap: %v", err)
			}
		})
	}
}
