package integration

// Security review tests (issue 5, item 5). They need root (to create
// users and to mount tmpfs as the reference) and run the users' side in
// worker processes started with those users' credentials.
//
//   - allow_other is off by default: other users cannot even stat the
//     mount;
//   - with --allow-other and default_permissions (on by default), what
//     users may create, open, unlink, rename, chmod and chown, in plain,
//     sticky and setgid directories, with the owner and mode files get
//     (caller's uid/gid, umask), is exactly what tmpfs allows;
//   - .lockfs/ cannot be written, created, removed or replaced, even by
//     root;
//   - a lock request from one user cannot release another user's lock:
//     owners are the kernel's, whatever pid or range is passed;
//   - the log file is created 0640 whatever the umask, never world-
//     writable.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ---- the user-side worker --------------------------------------------------

// relActorMain runs one command per stdin line and answers one line
// each, in LOCKFS_REL_DIR (a relative NAME is under it):
//
//	umask OCT                          OK
//	create NAME OCT                    OK fdN     open(O_CREAT|O_EXCL|O_RDWR)
//	open NAME ro|rw|wo                 OK fdN     no O_CREAT
//	close fdN                          OK
//	setlk|ofd fdN RD|WR|UN START LEN [PID]        F_SETLK / F_OFD_SETLK
//	getlk fdN RD|WR START LEN          GETLK UN | GETLK WR start=S len=L pid=P
//	flock fdN SH|EX|UN                 LOCK_NB always
//	stat NAME                          OK uid=U gid=G mode=OCT
//	mkdir NAME OCT | chmod NAME OCT | chown NAME UID GID | unlink NAME |
//	rmdir NAME | rename OLD NEW | link OLD NEW | symlink TARGET NAME |
//	truncate NAME N | setxattr NAME KEY VALUE | write NAME TEXT   OK
//
// Errors answer "ERR ENAME". It prints "READY" first.
func relActorMain() int {
	dir := os.Getenv("LOCKFS_REL_DIR")
	fds := map[string]int{}
	next := 1
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "READY")
	out.Flush()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		r, err := relActorRun(dir, fds, &next, f)
		switch {
		case err != nil:
			r = "ERR " + relErrnoName(err)
		case r == "":
			r = "OK"
		}
		fmt.Fprintln(out, r)
		out.Flush()
	}
	return 0
}

func relActorRun(dir string, fds map[string]int, next *int, f []string) (string, error) {
	if len(f) == 0 {
		return "BAD empty", nil
	}
	path := func(i int) string {
		if i >= len(f) {
			return ""
		}
		if filepath.IsAbs(f[i]) {
			return f[i]
		}
		return filepath.Join(dir, f[i])
	}
	oct := func(i int) uint32 {
		if i >= len(f) {
			return 0
		}
		v, _ := strconv.ParseUint(f[i], 8, 32)
		return uint32(v)
	}
	num := func(i int) int64 {
		if i >= len(f) {
			return 0
		}
		v, _ := strconv.ParseInt(f[i], 10, 64)
		return v
	}
	fd := func(i int) int {
		if i >= len(f) {
			return -1
		}
		if v, ok := fds[f[i]]; ok {
			return v
		}
		return -1
	}
	add := func(n int) string {
		name := "fd" + strconv.Itoa(*next)
		*next++
		fds[name] = n
		return "OK " + name
	}
	lockType := func(i int) int16 {
		if i >= len(f) {
			return -1
		}
		return map[string]int16{"RD": unix.F_RDLCK, "WR": unix.F_WRLCK, "UN": unix.F_UNLCK}[f[i]]
	}
	switch f[0] {
	case "umask":
		unix.Umask(int(oct(1)))
		return "", nil
	case "create":
		n, err := unix.Open(path(1), unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC, oct(2))
		if err != nil {
			return "", err
		}
		return add(n), nil
	case "open":
		mode := map[string]int{"ro": unix.O_RDONLY, "rw": unix.O_RDWR, "wo": unix.O_WRONLY}[f[2]]
		n, err := unix.Open(path(1), mode|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		return add(n), nil
	case "close":
		n := fd(1)
		delete(fds, f[1])
		return "", unix.Close(n)
	case "setlk", "ofd":
		cmd := unix.F_SETLK
		if f[0] == "ofd" {
			cmd = unix.F_OFD_SETLK
		}
		lk := unix.Flock_t{Type: lockType(2), Start: num(3), Len: num(4), Pid: int32(num(5))}
		return "", unix.FcntlFlock(uintptr(fd(1)), cmd, &lk)
	case "getlk":
		lk := unix.Flock_t{Type: lockType(2), Start: num(3), Len: num(4)}
		if err := unix.FcntlFlock(uintptr(fd(1)), unix.F_GETLK, &lk); err != nil {
			return "", err
		}
		if lk.Type == unix.F_UNLCK {
			return "GETLK UN", nil
		}
		return fmt.Sprintf("GETLK %s start=%d len=%d pid=%d", map[int16]string{unix.F_RDLCK: "RD", unix.F_WRLCK: "WR"}[lk.Type], lk.Start, lk.Len, lk.Pid), nil
	case "flock":
		how := map[string]int{"SH": unix.LOCK_SH, "EX": unix.LOCK_EX, "UN": unix.LOCK_UN}[f[2]]
		return "", unix.Flock(fd(1), how|unix.LOCK_NB)
	case "stat":
		var st unix.Stat_t
		if err := unix.Lstat(path(1), &st); err != nil {
			return "", err
		}
		return fmt.Sprintf("OK uid=%d gid=%d mode=%o", st.Uid, st.Gid, st.Mode), nil
	case "mkdir":
		return "", unix.Mkdir(path(1), oct(2))
	case "chmod":
		return "", unix.Chmod(path(1), oct(2))
	case "chown":
		return "", unix.Lchown(path(1), int(num(2)), int(num(3)))
	case "unlink":
		return "", unix.Unlink(path(1))
	case "rmdir":
		return "", unix.Rmdir(path(1))
	case "rename":
		return "", unix.Rename(path(1), path(2))
	case "link":
		return "", unix.Link(path(1), path(2))
	case "symlink":
		return "", unix.Symlink(f[1], path(2))
	case "truncate":
		return "", unix.Truncate(path(1), num(2))
	case "setxattr":
		return "", unix.Setxattr(path(1), f[2], []byte(f[3]), 0)
	case "write":
		n, err := unix.Open(path(1), unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		_, err = unix.Write(n, []byte(strings.Join(f[2:], " ")))
		if cerr := unix.Close(n); err == nil {
			err = cerr
		}
		return "", err
	}
	return "BAD unknown command " + f[0], nil
}

// ---- users -------------------------------------------------------------------

// relUser is a throw-away account created for one test.
type relUser struct {
	name     string
	uid, gid uint32
}

func (u relUser) cred() *syscall.Credential {
	return &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: []uint32{}}
}

// relCreateUser adds a user (and its group) with useradd -M, removed again
// by t.Cleanup with userdel.
func relCreateUser(t *testing.T, suffix string) relUser {
	t.Helper()
	requireMountPrivilege(t)
	if _, err := exec.LookPath("useradd"); err != nil {
		skipOrFail(t, "useradd not found: %v", err)
	}
	name := fmt.Sprintf("lkrel%d%s", os.Getpid()%100000, suffix)
	out, err := exec.Command("useradd", "-M", "-U", "-s", "/usr/sbin/nologin", name).CombinedOutput()
	if err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
		exec.Command("groupdel", name).Run() // gone with the user unless USERGROUPS_ENAB is off
	})
	id := func(flag string) uint32 {
		b, err := exec.Command("id", flag, name).Output()
		if err != nil {
			t.Fatalf("id %s %s: %v", flag, name, err)
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
		if err != nil {
			t.Fatal(err)
		}
		return uint32(v)
	}
	return relUser{name: name, uid: id("-u"), gid: id("-g")}
}

// relSharedExe copies the test binary where other users can run it (go test
// builds it in a directory only its owner can enter).
func relSharedExe(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	relOpenPath(t, dir)
	src, err := os.Open(relSelfExe(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	exe := filepath.Join(dir, "integration.test")
	dst, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return exe
}

// relOpenPath lets every user traverse dir and its parents up to the
// temporary directory root (t.TempDir creates them 0700).
func relOpenPath(t *testing.T, dir string) {
	t.Helper()
	root := filepath.Clean(os.TempDir())
	for d := filepath.Clean(dir); strings.HasPrefix(d, root+"/"); d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, st.Mode().Perm()|0o011); err != nil {
			t.Fatal(err)
		}
	}
}

// relUserActor is a relactor worker running as a user.
type relUserActor struct {
	name string
	p    *relProc
}

func startRelUserActor(t *testing.T, exe, name, dir string, cred *syscall.Credential) *relUserActor {
	t.Helper()
	p := startRelExe(t, exe, "relactor", []string{"LOCKFS_REL_DIR=" + dir}, cred)
	p.expect(t, "READY", mustFinishWithin)
	return &relUserActor{name: name, p: p}
}

func (a *relUserActor) do(t *testing.T, format string, args ...any) string {
	t.Helper()
	cmd := fmt.Sprintf(format, args...)
	if _, err := fmt.Fprintln(a.p.stdin, cmd); err != nil {
		t.Fatalf("%s: %s: %v", a.name, cmd, err)
	}
	return a.p.line(t, mustFinishWithin)
}

// ---- allow_other -----------------------------------------------------------

// TestSecurityAllowOtherOff: a default mount is the mounting user's
// alone. The kernel refuses every other user (FUSE's allow_other check),
// root included when root did not mount it; here root mounted, so a
// plain user is refused while root gets in.
func TestSecurityAllowOtherOff(t *testing.T) {
	m := mountLockfs(t)
	u := relCreateUser(t, "o")
	exe := relSharedExe(t)
	relOpenPath(t, m.Dir)
	opts := relMountOptions(t, m.Dir)
	if strings.Contains(opts, "allow_other") {
		t.Errorf("default mount has allow_other: %s", opts)
	}
	if !strings.Contains(opts, "default_permissions") {
		t.Errorf("default mount lacks default_permissions: %s", opts)
	}
	if err := os.WriteFile(filepath.Join(m.Dir, "mine"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	a := startRelUserActor(t, exe, u.name, m.Dir, u.cred())
	for _, c := range []string{"stat .", "stat mine", "open mine ro", "create new 644", "mkdir d 755"} {
		if r := a.do(t, "%s", c); r != "ERR EACCES" {
			t.Errorf("user %s: %s on a mount without allow_other => %s, want ERR EACCES", u.name, c, r)
		}
	}
}

// relMountOptions returns the mount and super options of dir from
// /proc/self/mountinfo.
func relMountOptions(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	opts := ""
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(pre)
		if !ok || len(f) < 6 || unescapeMountinfo(f[4]) != dir {
			continue
		}
		p := strings.Fields(post)
		opts = f[5]
		if len(p) > 2 {
			opts += "," + p[2]
		}
	}
	if opts == "" {
		t.Fatalf("%s not in mountinfo", dir)
	}
	return opts
}

// ---- permissions, differential against tmpfs --------------------------------

// TestSecurityPermissions runs one script of namespace operations as
// root and two users on lockfs (--allow-other, default_permissions) and
// on tmpfs, and requires the same outcome for every step: the kernel's
// permission checks apply to lockfs as to tmpfs, new files get the
// caller's uid and gid (or the setgid directory's gid) and the mode
// masked by the caller's umask.
func TestSecurityPermissions(t *testing.T) {
	a, b := relCreateUser(t, "a"), relCreateUser(t, "b")
	exe := relSharedExe(t)
	m := mountLockfs(t, "--allow-other")
	tmp := mountTmpfs(t)
	relOpenPath(t, m.Dir)
	relOpenPath(t, tmp)
	got := permissionScript(t, exe, m.Dir, a, b)
	want := permissionScript(t, exe, tmp, a, b)
	if d := lineDiff(want, got); d != "" {
		t.Errorf("lockfs and tmpfs differ (- tmpfs, + lockfs):\n%s", d)
	}
}

func permissionScript(t *testing.T, exe, dir string, ua, ub relUser) []string {
	root := startRelUserActor(t, exe, "root", dir, nil)
	a := startRelUserActor(t, exe, "A", dir, ua.cred())
	b := startRelUserActor(t, exe, "B", dir, ub.cred())
	names := map[string]string{
		strconv.Itoa(int(ua.uid)): "A", strconv.Itoa(int(ub.uid)): "B", strconv.Itoa(int(ua.gid)): "Ag", strconv.Itoa(int(ub.gid)): "Bg",
	}
	idRE := regexp.MustCompile(`(uid|gid)=(\d+)`)
	var out []string
	do := func(who *relUserActor, format string, args ...any) string {
		cmd := fmt.Sprintf(format, args...)
		r := who.do(t, "%s", cmd)
		r = idRE.ReplaceAllStringFunc(r, func(s string) string {
			k, v, _ := strings.Cut(s, "=")
			if n, ok := names[v]; ok {
				return k + "=" + n
			}
			return s
		})
		r = regexp.MustCompile(`fd\d+`).ReplaceAllString(r, "fd")
		out = append(out, fmt.Sprintf("%s: %s => %s", who.name, cmd, r))
		return r
	}
	fdOf := func(r string) string { return strings.TrimPrefix(r, "OK ") }
	ids := func(u relUser) string { return fmt.Sprintf("%d %d", u.uid, u.gid) }

	// A shared, sticky lock directory (like /tmp/tempest-lock) and a
	// root-only one.
	do(root, "mkdir locks 1777")
	do(root, "chmod locks 1777")
	do(root, "mkdir private 755")
	do(root, "mkdir group 2777")
	do(root, "chmod group 2777")
	do(root, "chown group 0 %d", ub.gid)

	// Ownership and umask.
	do(a, "umask 022")
	if r := do(a, "create locks/a.lock 666"); strings.HasPrefix(r, "OK") {
		do(a, "close %s", fdOf(r))
	}
	do(a, "stat locks/a.lock")
	do(a, "umask 077")
	if r := do(a, "create locks/a.private 666"); strings.HasPrefix(r, "OK") {
		do(a, "close %s", fdOf(r))
	}
	do(a, "stat locks/a.private")
	do(a, "umask 002")
	do(a, "mkdir locks/a.dir 777")
	do(a, "stat locks/a.dir")
	if r := do(a, "create group/a.g 644"); strings.HasPrefix(r, "OK") {
		do(a, "close %s", fdOf(r))
	}
	do(a, "stat group/a.g")
	do(a, "mkdir group/a.gdir 755")
	do(a, "stat group/a.gdir")
	do(a, "symlink a.lock locks/a.link")
	do(a, "stat locks/a.link")

	// Another user.
	do(b, "umask 022")
	do(b, "open locks/a.lock rw")
	do(b, "open locks/a.lock wo")
	if r := do(b, "open locks/a.lock ro"); strings.HasPrefix(r, "OK") {
		do(b, "close %s", fdOf(r))
	}
	do(b, "open locks/a.private ro")
	do(b, "write locks/a.lock x")
	do(b, "truncate locks/a.lock 0")
	do(b, "unlink locks/a.lock")
	do(b, "rename locks/a.lock locks/b.stolen")
	if r := do(b, "create locks/b.lock 644"); strings.HasPrefix(r, "OK") {
		do(b, "close %s", fdOf(r))
	}
	do(b, "rename locks/b.lock locks/a.lock")
	do(b, "link locks/a.lock locks/b.hard")
	do(b, "chmod locks/a.lock 666")
	do(b, "chown locks/a.lock %s", ids(ub))
	do(b, "setxattr locks/a.lock user.k v")
	do(b, "create locks/a.dir/b.in 644")
	do(b, "unlink locks/a.link")
	do(b, "create private/b 644")
	do(b, "mkdir private/bd 755")
	do(b, "stat private")
	do(b, "unlink locks/b.lock")

	// The owner and root.
	do(a, "chmod locks/a.lock 600")
	do(a, "stat locks/a.lock")
	do(a, "chown locks/a.lock %s", ids(ub))
	do(a, "chown locks/a.lock %d %d", ua.uid, ub.gid)
	do(a, "rename locks/a.private locks/a.renamed")
	do(a, "unlink locks/a.renamed")
	do(root, "chown locks/a.lock %s", ids(ub))
	do(root, "stat locks/a.lock")
	do(root, "unlink locks/a.lock")
	do(root, "unlink locks/a.link")
	do(root, "rmdir locks/a.dir")
	return out
}

// ---- .lockfs ---------------------------------------------------------------

// TestSecurityViewReadOnly: nothing under .lockfs can be changed, by
// anyone, and the name cannot be taken over.
func TestSecurityViewReadOnly(t *testing.T) {
	u := relCreateUser(t, "v")
	exe := relSharedExe(t)
	m := mountLockfs(t, "--allow-other")
	relOpenPath(t, m.Dir)
	if _, err := os.Stat(filepath.Join(m.Dir, ".lockfs")); os.IsNotExist(err) {
		t.Skip("this lockfs has no .lockfs view yet (issue 3)")
	}
	if err := os.WriteFile(filepath.Join(m.Dir, "held"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	holder := startActor(t, "holder", m.Dir, "")
	fd := relMustReply(t, holder, "open held rw", "OK ")
	relMustReply(t, holder, "setlk "+fd+" WR SET 0 0", "OK")
	before := relViewListing(t, m.Dir)
	for _, who := range []*relUserActor{startRelUserActor(t, exe, "root", m.Dir, nil), startRelUserActor(t, exe, u.name, m.Dir, u.cred())} {
		for _, c := range []string{
			"create .lockfs/new 644", "create .lockfs/held/new 644", "mkdir .lockfs/d 755", "mkdir .lockfs 755",
			"open .lockfs/locks wo", "open .lockfs/locks rw", "open .lockfs/locks.json wo", "write .lockfs/locks x",
			"truncate .lockfs/locks 0", "unlink .lockfs/locks", "unlink .lockfs/held/held", "rmdir .lockfs/held",
			"rmdir .lockfs", "rename .lockfs/locks .lockfs/x", "rename .lockfs gone", "rename held .lockfs",
			"rename held .lockfs/held/x", "link held .lockfs/x", "symlink x .lockfs/s", "symlink x .lockfs",
			"chmod .lockfs 777", "chmod .lockfs/locks 666", "chown .lockfs/locks 0 0", "chown .lockfs 0 0",
			"setxattr .lockfs/locks user.k v", "setxattr .lockfs user.k v", "create .lockfs 644",
		} {
			r := who.do(t, "%s", c)
			if !strings.HasPrefix(r, "ERR ") {
				t.Errorf("%s: %s => %s, want an error", who.name, c, r)
			}
		}
	}
	if after := relViewListing(t, m.Dir); after != before {
		t.Errorf(".lockfs changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, err := os.Stat(filepath.Join(m.Dir, "held")); err != nil {
		t.Errorf("held: %v", err)
	}
	relMustReply(t, holder, "close "+fd, "OK")
}

func relViewListing(t *testing.T, dir string) string {
	var b strings.Builder
	filepath.WalkDir(filepath.Join(dir, ".lockfs"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", p, err)
			return nil
		}
		info, _ := d.Info()
		fmt.Fprintf(&b, "%s %v\n", strings.TrimPrefix(p, dir), info.Mode())
		return nil
	})
	return b.String()
}

// ---- lock owners ---------------------------------------------------------------

// TestSecurityOwnersAreTheKernels: user B, with every kind of unlock it
// can send (F_UNLCK through its own descriptions, with A's pid in l_pid,
// OFD unlock, LOCK_UN, closing), cannot release user A's classic, OFD or
// flock locks; neither can root. Only A's own close does. The same
// script runs on tmpfs and must give the same answers.
func TestSecurityOwnersAreTheKernels(t *testing.T) {
	ua, ub := relCreateUser(t, "p"), relCreateUser(t, "q")
	exe := relSharedExe(t)
	m := mountLockfs(t, "--allow-other")
	tmp := mountTmpfs(t)
	relOpenPath(t, m.Dir)
	relOpenPath(t, tmp)
	got := ownerScript(t, exe, m.Dir, ua, ub)
	want := ownerScript(t, exe, tmp, ua, ub)
	if d := lineDiff(want, got); d != "" {
		t.Errorf("lockfs and tmpfs differ (- tmpfs, + lockfs):\n%s", d)
	}
	for _, l := range got {
		if strings.Contains(l, "probe") && !strings.HasSuffix(l, "=> ERR EAGAIN") && !strings.Contains(l, "after A closed") {
			t.Errorf("a lock of A was released by someone else: %s", l)
		}
	}
}

func ownerScript(t *testing.T, exe, dir string, ua, ub relUser) []string {
	root := startRelUserActor(t, exe, "root", dir, nil)
	a := startRelUserActor(t, exe, "A", dir, ua.cred())
	b := startRelUserActor(t, exe, "B", dir, ub.cred())
	var out []string
	do := func(who *relUserActor, note, format string, args ...any) string {
		cmd := fmt.Sprintf(format, args...)
		r := who.do(t, "%s", cmd)
		r = strings.ReplaceAll(r, fmt.Sprintf("pid=%d", a.p.pid), "pid=A")
		logged := strings.ReplaceAll(cmd, fmt.Sprintf(" %d", a.p.pid), " A.pid")
		out = append(out, fmt.Sprintf("%s%s: %s => %s", note, who.name, regexp.MustCompile(`fd\d+`).ReplaceAllString(logged, "fd"), r))
		return strings.TrimPrefix(r, "OK ")
	}
	do(root, "", "chmod . 1777")
	do(a, "", "umask 0")
	fa := do(a, "", "create posix 666")
	fo := do(a, "", "create ofd 666")
	ff := do(a, "", "create flock 666")
	do(a, "", "setlk %s WR 0 0", fa)
	do(a, "", "ofd %s WR 0 0", fo)
	do(a, "", "flock %s EX", ff)

	for _, who := range []*relUserActor{b, root} {
		pb := do(who, "", "open posix rw")
		ob := do(who, "", "open ofd rw")
		fb := do(who, "", "open flock ro")
		do(who, "", "setlk %s UN 0 0", pb)
		do(who, "", "setlk %s UN 0 0 %d", pb, a.p.pid)
		do(who, "", "ofd %s UN 0 0", ob)
		do(who, "", "setlk %s UN 0 0", ob)
		do(who, "", "flock %s UN", fb)
		do(who, "", "getlk %s WR 0 0", pb)
		do(who, "", "close %s", pb)
		do(who, "", "close %s", ob)
		do(who, "", "close %s", fb)
		// Still A's?
		pp := do(root, "", "open posix rw")
		op := do(root, "", "open ofd rw")
		fp := do(root, "", "open flock ro")
		do(root, "probe ", "setlk %s WR 0 0", pp)
		do(root, "probe ", "ofd %s WR 0 0", op)
		do(root, "probe ", "flock %s EX", fp)
		do(root, "", "close %s", pp)
		do(root, "", "close %s", op)
		do(root, "", "close %s", fp)
	}
	do(a, "", "close %s", fa)
	do(a, "", "close %s", fo)
	do(a, "", "close %s", ff)
	// flock and OFD locks end at RELEASE, which reaches lockfs just
	// after close returns: give it a moment.
	time.Sleep(100 * time.Millisecond)
	pp := do(root, "", "open posix rw")
	op := do(root, "", "open ofd rw")
	fp := do(root, "", "open flock ro")
	do(root, "probe after A closed: ", "setlk %s WR 0 0", pp)
	do(root, "probe after A closed: ", "ofd %s WR 0 0", op)
	do(root, "probe after A closed: ", "flock %s EX", fp)
	return out
}

// ---- the log file ------------------------------------------------------------

// TestSecurityLogFileMode: lockfs creates its log file 0640, also under
// umask 0, and never leaves it world-writable.
func TestSecurityLogFileMode(t *testing.T) {
	m := mountLockfs(t)
	if st, err := os.Stat(m.LogPath); err != nil {
		t.Fatal(err)
	} else if st.Mode().Perm()&0o022 != 0 || st.Mode().Perm()&0o004 != 0 {
		t.Errorf("log file mode %v: group- or world-writable, or world-readable", st.Mode().Perm())
	}

	// umask 0: the mode still must not be 0666.
	om := startOwnLockfs(t, ownMountOpts{umask: "000"})
	st, err := os.Stat(om.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Errorf("log file created under umask 0 with mode %v, want 0640", st.Mode().Perm())
	}
	om.stop(t)

	// A log file that exists already, world-writable: lockfs must not
	// write its audit trail into a file anyone can forge lines in.
	dir := t.TempDir()
	logPath := filepath.Join(dir, "preexisting.log")
	if err := os.WriteFile(logPath, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(logPath, 0o666)
	om = startOwnLockfs(t, ownMountOpts{logPath: logPath, mayFail: true})
	if om.running() {
		st, err := os.Stat(logPath)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o002 != 0 {
			t.Errorf("lockfs logs into the world-writable %s (mode %v): it should refuse it or tighten its mode", logPath, st.Mode().Perm())
		}
		om.stop(t)
	} else if !strings.Contains(om.stderr(), "writable") {
		t.Errorf("lockfs refused a world-writable log file without saying why:\n%s", om.stderr())
	}
}
