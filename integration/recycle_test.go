package integration

// Owner values of open file descriptions are recycled by the kernel
// before lockfs hears the old description's RELEASE (found by the soak
// test; see recycleMain).

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// recycleMain reproduces, in one process, what the soak found: it locks
// a file through a description and closes it, at once opens the file
// again and takes the same lock through the new description, then checks
// from a third description that the lock is really held. The kernel
// frees the first description before lockfs has handled its RELEASE
// (sent asynchronously), and hands the same address, hence the same lock
// owner value (R4), to the next open: an engine that keys description
// locks (flock, OFD) by owner alone lets the late RELEASE of the first
// description drop the second one's lock. It prints "DONE n violations=v".
func recycleMain() int {
	path, kind, n := os.Getenv("LOCKFS_REL_FILE"), os.Getenv("LOCKFS_REL_KIND"), relEnvInt("LOCKFS_REL_N", 100)
	lock := func(fd int, nb bool) error {
		if kind == "flock" {
			how := unix.LOCK_EX
			if nb {
				how |= unix.LOCK_NB
			}
			return unix.Flock(fd, how)
		}
		lk := unix.Flock_t{Type: unix.F_WRLCK}
		cmd := unix.F_OFD_SETLKW
		if nb {
			cmd = unix.F_OFD_SETLK
		}
		return unix.FcntlFlock(uintptr(fd), cmd, &lk)
	}
	open := func() int {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
		if err != nil {
			fmt.Println("FAIL open:", err)
			os.Exit(3)
		}
		return fd
	}
	// One thread on one CPU: the kernel's allocator then hands the
	// freed description's memory to the next open at once.
	runtime.LockOSThread()
	var cpus unix.CPUSet
	cpus.Set(0)
	unix.SchedSetaffinity(0, &cpus)
	violations := 0
	if kind == "ofd-merge" {
		return recycleMerge(open, n)
	}
	for i := 0; i < n; i++ {
		fd1 := open()
		if err := lock(fd1, false); err != nil {
			fmt.Println("FAIL lock 1:", err)
			return 3
		}
		unix.Close(fd1)
		fd2 := open()
		if err := lock(fd2, false); err != nil {
			fmt.Println("FAIL lock 2:", err)
			return 3
		}
		time.Sleep(5 * time.Millisecond) // let the first RELEASE arrive
		fd3 := open()
		switch err := lock(fd3, true); {
		case err == nil:
			violations++
		case !errors.Is(err, unix.EAGAIN):
			fmt.Println("FAIL lock 3:", err)
			return 3
		}
		unix.Close(fd3)
		unix.Close(fd2)
	}
	fmt.Printf("DONE %d violations=%d\n", n, violations)
	return 0
}

// TestRecycledDescriptionOwners: a flock or OFD lock taken through a new
// open file description stays held while the kernel's RELEASE of an
// earlier, closed description with the same owner value arrives, and
// (ofd-merge) the new description does not inherit bytes only the closed
// one had locked. tmpfs is the reference (it has no asynchronous
// RELEASE).
func TestRecycledDescriptionOwners(t *testing.T) {
	n := relEnvInt("LOCKFS_RECYCLE_N", 300)
	m := mountLockfs(t)
	tmp := mountTmpfs(t)
	for _, kind := range []string{"flock", "ofd", "ofd-merge"} {
		for _, dir := range []string{tmp, m.Dir} {
			p := startRel(t, "recycle", []string{"LOCKFS_REL_FILE=" + filepath.Join(dir, kind), "LOCKFS_REL_KIND=" + kind, "LOCKFS_REL_N=" + strconv.Itoa(n)}, nil)
			r := p.expect(t, "DONE", 2*time.Minute)
			p.finish(t, mustFinishWithin)
			fs := "tmpfs"
			if dir == m.Dir {
				fs = "lockfs"
			}
			if !strings.HasSuffix(r, " violations=0") {
				what := "a third description got the exclusive lock the second one held"
				if kind == "ofd-merge" {
					what = "a third description was refused bytes only the closed first description had locked"
				}
				t.Errorf("%s %s: %s: %s", fs, kind, r, what)
			} else {
				t.Logf("%s %s: %s", fs, kind, r)
			}
		}
	}
}

// recycleMerge: the first description locks bytes 54..59 and is closed;
// the next one (likely the same owner value) locks 57..70, then unlocks
// it. Bytes 54..56 are free then (the first description's lock ended
// with its close): a third description must get them at once. An engine
// that merged the new description's lock with the dead one's still
// holds them for the second description. Prints "DONE n violations=v".
func recycleMerge(open func() int, n int) int {
	ofd := func(fd int, typ int16, start, length int64) error {
		lk := unix.Flock_t{Type: typ, Start: start, Len: length}
		return unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk)
	}
	violations := 0
	for i := 0; i < n; i++ {
		fd1 := open()
		if err := ofd(fd1, unix.F_WRLCK, 54, 6); err != nil {
			fmt.Println("FAIL lock 1:", err)
			return 3
		}
		unix.Close(fd1)
		fd2 := open()
		if err := ofd(fd2, unix.F_WRLCK, 57, 14); err != nil {
			fmt.Println("FAIL lock 2:", err)
			return 3
		}
		time.Sleep(5 * time.Millisecond) // let the first RELEASE arrive
		if err := ofd(fd2, unix.F_UNLCK, 57, 14); err != nil {
			fmt.Println("FAIL unlock 2:", err)
			return 3
		}
		fd3 := open()
		switch err := ofd(fd3, unix.F_WRLCK, 54, 3); {
		case errors.Is(err, unix.EAGAIN):
			violations++
		case err != nil:
			fmt.Println("FAIL lock 3:", err)
			return 3
		}
		unix.Close(fd3)
		unix.Close(fd2)
		time.Sleep(2 * time.Millisecond) // let both RELEASEs arrive
	}
	fmt.Printf("DONE %d violations=%d\n", n, violations)
	return 0
}
