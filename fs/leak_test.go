package fs

// Leaks in the filesystem layer (issue 5, items 4 and 6): the lock
// wiring keeps no state for handles and owners that are gone, however
// many open/lock/close cycles pass through it, and neither the wiring nor
// a real mount leaves a goroutine behind: blocked SETLKW handlers end
// when the kernel interrupts them, and unmounting stops every server
// goroutine.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/lockfs/lockfs/semaphores"
)

// TestRawCyclesLeaveNothing sends LOCKFS_RAW_CYCLES (default 100,000)
// open/lock/unlock/flush/release cycles, with classic, OFD and flock
// owners and blocking requests interrupted the way the kernel interrupts
// them (the request's cancel channel closes), through the wiring: the
// engine and the wiring's table of open handles end empty, and no
// goroutine is left.
func TestRawCyclesLeaveNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	total := 100000
	if testing.Short() {
		total = 10000
	}
	if v, err := strconv.Atoi(os.Getenv("LOCKFS_RAW_CYCLES")); err == nil {
		total = v
	}
	h := newRawHarness(t, 4)
	const max = semaphores.OffsetMax
	// A holder that never lets go of file 0's first byte, so that some
	// blocking requests really block and are interrupted.
	hold := h.files[0]
	if st := h.raw.SetLk(nil, h.lk(hold.node, hold.fh, 1, syscall.F_WRLCK, 0, 0, 0)); st != fuse.OK {
		t.Fatalf("holder: %v", st)
	}
	for i := 0; i < total; i++ {
		f := h.files[i%len(h.files)]
		var out fuse.OpenOut
		if st := h.raw.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: f.node}, Flags: syscall.O_RDWR}, &out); st != fuse.OK {
			t.Fatalf("open: %v", st)
		}
		fh := out.Fh
		proc := uint64(100 + i%7)            // classic owners: processes
		desc := uint64(1<<40 + uint64(i%13)) // OFD/flock owners: descriptions
		var in *fuse.LkIn
		switch i % 3 {
		case 0:
			in = h.lk(f.node, fh, proc, syscall.F_WRLCK, uint64(i%5), max, 0)
		case 1:
			in = h.lk(f.node, fh, desc, syscall.F_RDLCK, 0, uint64(i%50), 0)
		default:
			in = h.lk(f.node, fh, desc, syscall.F_WRLCK, 0, max, fuse.FUSE_LK_FLOCK)
		}
		if i%10 == 0 {
			// Blocking: interrupted after a moment if it waits.
			cancel := make(chan struct{})
			done := make(chan fuse.Status, 1)
			go func() { done <- h.raw.SetLkw(cancel, in) }()
			select {
			case st := <-done:
				if st != fuse.OK {
					t.Fatalf("SetLkw: %v", st)
				}
			case <-time.After(100 * time.Microsecond):
				close(cancel)
				if st := <-done; st != fuse.OK && st != fuse.EINTR {
					t.Fatalf("interrupted SetLkw: %v", st)
				}
			}
		} else if st := h.raw.SetLk(nil, in); st != fuse.OK && st != fuse.Status(syscall.EAGAIN) {
			t.Fatalf("SetLk: %v", st)
		}
		if i%2 == 0 {
			un := *in
			un.Lk.Typ = syscall.F_UNLCK
			if st := h.raw.SetLk(nil, &un); st != fuse.OK {
				t.Fatalf("unlock: %v", st)
			}
		}
		h.raw.Flush(nil, &fuse.FlushIn{InHeader: fuse.InHeader{NodeId: f.node}, Fh: fh, LockOwner: proc})
		rel := &fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: f.node}, Fh: fh}
		if in.LkFlags != 0 {
			rel.ReleaseFlags, rel.LockOwner = fuse.FUSE_RELEASE_FLOCK_UNLOCK, desc
		}
		h.raw.Release(nil, rel)
	}
	h.raw.Flush(nil, &fuse.FlushIn{InHeader: fuse.InHeader{NodeId: hold.node}, Fh: hold.fh, LockOwner: 1})
	for _, f := range h.files {
		h.raw.Release(nil, &fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: f.node}, Fh: f.fh})
	}
	if st := h.table.Stats(); st != (semaphores.Stats{}) {
		t.Errorf("after %d cycles and every close: %+v, want nothing", total, st)
	}
	open := 0
	h.raw.open.Range(func(any, any) bool { open++; return true })
	if open != 0 {
		t.Errorf("the wiring still tracks %d open handles after every RELEASE", open)
	}
}

// TestMountLeavesNoGoroutine mounts lockfs in this process, serves
// namespace operations, locks (from this process, never blocking) and a
// blocked flock(1) waiter that is SIGKILLed, then unmounts: every
// goroutine the mount started must be gone.
func TestMountLeavesNoGoroutine(t *testing.T) {
	if os.Geteuid() != 0 {
		mountSkip(t, "mounting needs root here (euid %d)", os.Geteuid())
	}
	if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		mountSkip(t, "FUSE unavailable: %v", err)
	} else {
		f.Close()
	}
	flockCmd, err := exec.LookPath("flock")
	if err != nil {
		mountSkip(t, "flock(1) not found: %v", err)
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	dir := t.TempDir()
	table := semaphores.NewTable(semaphores.Options{})
	m, err := Mount(New(Options{}), MountConfig{Mountpoint: dir, Source: "mem", Engine: table})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	unmounted := false
	defer func() {
		if !unmounted {
			m.Unmount()
		}
	}()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				p := filepath.Join(dir, "f"+strconv.Itoa(w)+"-"+strconv.Itoa(i%10))
				fd, err := unix.Open(p, unix.O_CREAT|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
				if err != nil {
					t.Error(err)
					return
				}
				lk := unix.Flock_t{Type: unix.F_WRLCK}
				if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk); err != nil {
					t.Error(err)
				}
				if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
					t.Error(err)
				}
				unix.Close(fd)
				if i%3 == 0 {
					unix.Unlink(p)
				}
			}
		}()
	}
	wg.Wait()

	// A waiter blocked in lockfs (a SETLKW handler goroutine), killed.
	held := filepath.Join(dir, "held")
	fd, err := unix.Open(held, unix.O_CREAT|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	waiter := exec.Command(flockCmd, "-x", held, "true")
	if err := waiter.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); table.Stats().Waiters == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("flock(1) never waited: %+v", table.Stats())
		}
	}
	waiter.Process.Kill()
	waiter.Wait()
	unix.Close(fd)
	for deadline := time.Now().Add(10 * time.Second); table.Stats() != (semaphores.Stats{}); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("state left after every close: %+v", table.Stats())
		}
	}

	if err := m.Unmount(); err != nil {
		t.Fatalf("unmount: %v", err)
	}
	unmounted = true
	m.Wait()
}

// mountSkip skips, or fails when LOCKFS_REQUIRE_FUSE=1 says this machine
// must be able to mount.
func mountSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("LOCKFS_REQUIRE_FUSE") == "1" {
		t.Fatalf(format+" (and LOCKFS_REQUIRE_FUSE=1)", args...)
	}
	t.Skipf(format, args...)
}
