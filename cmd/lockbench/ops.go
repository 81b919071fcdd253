package main

// Measurements taken by lockbench's own process: lock cycles on an open
// file, the oslo/fasteners cycle, and the scale steps (files, many
// locks). lockbench never serves a mount itself, so it may take locks
// there (a process locking files on a mount it serves can deadlock).
// Hot loops call the syscalls directly (golang.org/x/sys/unix) with
// nothing allocated per iteration.

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockfs/lockfs/internal/bench"
)

// interruptEvery is how many iterations a loop runs between checks of
// the interrupt flag.
const interruptEvery = 256

// loopSlices is how many slices a single-process loop's measured time is
// cut into. The slices of all targets alternate (tmpfs, noop, lockfs,
// tmpfs, noop, lockfs, …), and each target's value is the median of its
// slices, so that a burst of load from other processes on a shared
// machine moves one slice of every target, not the result of one.
const loopSlices = 8

// runLoop runs body count times, or for d when count < 0, and returns
// the time taken and the iterations done. With lat, it appends each
// iteration's own time (ns) to *lat.
func runLoop(body func() error, count int, d time.Duration, lat *[]int64) (time.Duration, int, error) {
	start := time.Now()
	i := 0
	// The clock is read every 16 iterations: a lock call on tmpfs costs
	// a few hundred nanoseconds.
	for ; count >= 0 && i < count || count < 0 && (i%16 != 0 || time.Since(start) < d); i++ {
		t0 := nanotime()
		if err := body(); err != nil {
			return 0, i, err
		}
		if lat != nil {
			*lat = append(*lat, nanotime()-t0)
		}
		if i%interruptEvery == 0 {
			if err := checkInterrupted(); err != nil {
				return 0, i, err
			}
		}
	}
	return time.Since(start), i, nil
}

// loopResult is what interleaved measured on one target.
type loopResult struct {
	mean  time.Duration // median over slices of the mean time per iteration
	p50   time.Duration // median of the iterations' own times
	total int           // iterations, warm-up included
}

// interleaved runs a single-process loop step on all targets at once: a
// warm-up of a tenth of the work on each, then loopSlices slices of
// either n/loopSlices iterations (n > 0) or d/loopSlices, alternating
// targets. The mean time per iteration includes the tail a loaded machine
// adds (a server thread that waits for a CPU); the median of single
// iterations mostly does not, and shows the server's own cost better.
func interleaved(bodies []func() error, n int, d time.Duration) ([]loopResult, error) {
	warmCount, count := -1, -1
	if n > 0 {
		warmCount, count = n/10, max(1, n/loopSlices)
	}
	out := make([]loopResult, len(bodies))
	per := make([][]float64, len(bodies))
	lats := make([][]int64, len(bodies))
	for i, body := range bodies {
		_, k, err := runLoop(body, warmCount, d/10, nil)
		out[i].total += k
		if err != nil {
			return nil, err
		}
	}
	for range loopSlices {
		for i, body := range bodies {
			el, k, err := runLoop(body, count, d/loopSlices, &lats[i])
			out[i].total += k
			if err != nil {
				return nil, err
			}
			if k > 0 {
				per[i] = append(per[i], float64(el)/float64(k))
			}
		}
	}
	for i := range bodies {
		if len(per[i]) == 0 {
			return nil, fmt.Errorf("no iteration completed")
		}
		out[i].mean = time.Duration(bench.Median(per[i]))
		slices.Sort(lats[i])
		out[i].p50 = time.Duration(bench.Percentile(lats[i], 50))
	}
	return out, nil
}

// us converts to microseconds.
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

var (
	wholeWrite  = unix.Flock_t{Type: unix.F_WRLCK, Whence: unix.SEEK_SET}
	wholeUnlock = unix.Flock_t{Type: unix.F_UNLCK, Whence: unix.SEEK_SET}
)

func fcntl(fd int, cmd int, lk unix.Flock_t, what string) error {
	if err := unix.FcntlFlock(uintptr(fd), cmd, &lk); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// lockCycle prepares one lock+unlock pair on an open file: kind is setlk
// (F_SETLK), ofd (F_OFD_SETLK) or flock. done closes the file.
func lockCycle(t *target, kind string) (body func() error, done func(), err error) {
	path := filepath.Join(t.work, kind)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, nil, err
	}
	done = func() { unix.Close(fd) }
	switch kind {
	case "setlk":
		body = func() error {
			if err := fcntl(fd, unix.F_SETLK, wholeWrite, "F_SETLK F_WRLCK"); err != nil {
				return err
			}
			return fcntl(fd, unix.F_SETLK, wholeUnlock, "F_SETLK F_UNLCK")
		}
	case "ofd":
		body = func() error {
			if err := fcntl(fd, unix.F_OFD_SETLK, wholeWrite, "F_OFD_SETLK F_WRLCK"); err != nil {
				return err
			}
			return fcntl(fd, unix.F_OFD_SETLK, wholeUnlock, "F_OFD_SETLK F_UNLCK")
		}
	case "flock":
		body = func() error {
			if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
				return fmt.Errorf("flock LOCK_EX|LOCK_NB: %w", err)
			}
			if err := unix.Flock(fd, unix.LOCK_UN); err != nil {
				return fmt.Errorf("flock LOCK_UN: %w", err)
			}
			return nil
		}
	}
	return body, done, nil
}

// osloCycle prepares what oslo.concurrency's and fasteners' interprocess
// lock do per acquisition: open(O_WRONLY|O_CREAT|O_APPEND), lockf(LOCK_EX|
// LOCK_NB) = F_SETLK write on the whole file, lockf(LOCK_UN) = F_SETLKW
// unlock, close.
func osloCycle(t *target) (func() error, func(), error) {
	path := filepath.Join(t.work, "oslo-lock")
	return func() error {
		fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_APPEND|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return fmt.Errorf("open: %w", err)
		}
		err = fcntl(fd, unix.F_SETLK, wholeWrite, "F_SETLK F_WRLCK")
		if err == nil {
			err = fcntl(fd, unix.F_SETLKW, wholeUnlock, "F_SETLKW F_UNLCK")
		}
		if cerr := unix.Close(fd); err == nil && cerr != nil {
			err = fmt.Errorf("close: %w", cerr)
		}
		return err
	}, func() {}, nil
}

// files measures create (open O_CREAT|O_EXCL + close), readdir (getdents64
// over the whole directory) and unlink of n files in a fresh directory,
// with the server's RSS before and after each.
func (r *runner) files(t *target, n int) ([]sample, error) {
	dir := filepath.Join(t.work, fmt.Sprintf("files-%d", n))
	if err := unix.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("mkdir %s: %w", dir, err)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = filepath.Join(dir, fmt.Sprintf("lock-%07d", i))
	}
	var out []sample
	rss := func(step string) error {
		if t.ServerPID == 0 {
			return nil
		}
		v, err := rssMiB(t.ServerPID)
		if err != nil {
			return err
		}
		out = append(out, sample{id: fmt.Sprintf("rss.files.%s.%d", step, n), v: v})
		return nil
	}
	if err := rss("before"); err != nil {
		return nil, err
	}

	start := time.Now()
	for i, name := range names {
		fd, err := unix.Open(name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", name, err)
		}
		if err := unix.Close(fd); err != nil {
			return nil, fmt.Errorf("close %s: %w", name, err)
		}
		if i%interruptEvery == 0 {
			if err := checkInterrupted(); err != nil {
				return nil, err
			}
		}
	}
	out = append(out, sample{id: fmt.Sprintf("files.create.%d", n), v: us(time.Since(start)) / float64(n)})
	if err := rss("create"); err != nil {
		return nil, err
	}

	start = time.Now()
	got, err := countEntries(dir)
	if err != nil {
		return nil, err
	}
	if got != n {
		return nil, fmt.Errorf("readdir %s: %d entries, want %d", dir, got, n)
	}
	out = append(out, sample{id: fmt.Sprintf("files.readdir.%d", n), v: us(time.Since(start)) / float64(n)})
	if err := rss("readdir"); err != nil {
		return nil, err
	}

	start = time.Now()
	for i, name := range names {
		if err := unix.Unlink(name); err != nil {
			return nil, fmt.Errorf("unlink %s: %w", name, err)
		}
		if i%interruptEvery == 0 {
			if err := checkInterrupted(); err != nil {
				return nil, err
			}
		}
	}
	out = append(out, sample{id: fmt.Sprintf("files.unlink.%d", n), v: us(time.Since(start)) / float64(n)})
	if err := rss("unlink"); err != nil {
		return nil, err
	}
	if err := unix.Rmdir(dir); err != nil {
		return nil, fmt.Errorf("rmdir %s: %w", dir, err)
	}
	return out, nil
}

// countEntries reads a directory with getdents64, as `ls -f` does, and
// counts its entries other than "." and "..".
func countEntries(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	buf := make([]byte, 64<<10)
	count := 0
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return 0, fmt.Errorf("getdents %s: %w", dir, err)
		}
		if n == 0 {
			return count, nil
		}
		// struct linux_dirent64: ino 8, off 8, reclen 2, type 1, name.
		for off := 0; off+19 < n; {
			reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
			name := buf[off+19 : off+reclen]
			if !(name[0] == '.' && (name[1] == 0 || name[1] == '.' && name[2] == 0)) {
				count++
			}
			off += reclen
		}
	}
}

// heldLocks has one process hold n whole-file write locks, one on each of
// n files (a lock directory's case: one lock per lock file): it opens the
// files (untimed), takes the locks one by one with F_SETLK, times 1000
// lock+unlock pairs on one more file while they are all held, releases
// them one by one, and closes the files (untimed). The server's RSS is
// read before, while holding and after.
func (r *runner) heldLocks(t *target, n int) ([]sample, error) {
	dir := filepath.Join(t.work, fmt.Sprintf("held-%d", n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	fds := make([]int, 0, n+1)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for i := range n + 1 {
		fd, err := unix.Open(filepath.Join(dir, fmt.Sprintf("lock-%05d", i)), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open lock file %d of %d: %w", i+1, n+1, err)
		}
		fds = append(fds, fd)
	}
	extra := fds[n]
	return r.manyLocks(t, "locks", n, func(i int, typ int16) error {
		if i == n {
			return fcntl(extra, unix.F_SETLK, unix.Flock_t{Type: typ, Whence: unix.SEEK_SET}, "F_SETLK")
		}
		return fcntl(fds[i], unix.F_SETLK, unix.Flock_t{Type: typ, Whence: unix.SEEK_SET}, "F_SETLK")
	})
}

// rangeLocks has one process hold n write locks on distinct, non-adjacent
// one-byte ranges of one file (bytes 0, 2, 4, …: adjacent ranges of one
// owner would merge into one lock): the worst case for an engine that
// keeps a file's locks in a list, as the kernel does.
func (r *runner) rangeLocks(t *target, n int) ([]sample, error) {
	fd, err := unix.Open(filepath.Join(t.work, fmt.Sprintf("ranges-%d", n)), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return r.manyLocks(t, "ranges", n, func(i int, typ int16) error {
		return fcntl(fd, unix.F_SETLK, unix.Flock_t{Type: typ, Whence: unix.SEEK_SET, Start: 2 * int64(i), Len: 1}, "F_SETLK")
	})
}

// lockCycles is how many lock+unlock pairs manyLocks times while the n
// locks are held.
const lockCycles = 500

// manyLocks takes locks 0..n-1 with lock(i, F_WRLCK), times lock(n, …)
// cycles while they are held, then releases 0..n-1.
func (r *runner) manyLocks(t *target, group string, n int, lock func(i int, typ int16) error) ([]sample, error) {
	var out []sample
	rss := func(step string) error {
		if t.ServerPID == 0 {
			return nil
		}
		v, err := rssMiB(t.ServerPID)
		if err != nil {
			return err
		}
		out = append(out, sample{id: fmt.Sprintf("rss.%s.%s.%d", group, step, n), v: v})
		return nil
	}
	each := func(typ int16, what string) (float64, error) {
		start := time.Now()
		for i := range n {
			if err := lock(i, typ); err != nil {
				return 0, fmt.Errorf("%s %d of %d: %w", what, i+1, n, err)
			}
			if i%interruptEvery == 0 {
				if err := checkInterrupted(); err != nil {
					return 0, err
				}
			}
		}
		return us(time.Since(start)) / float64(n), nil
	}
	if err := rss("before"); err != nil {
		return nil, err
	}
	v, err := each(unix.F_WRLCK, "lock")
	if err != nil {
		return nil, err
	}
	out = append(out, sample{id: fmt.Sprintf("%s.acquire.%d", group, n), v: v})
	if err := rss("hold"); err != nil {
		return nil, err
	}
	start := time.Now()
	for range lockCycles {
		if err := lock(n, unix.F_WRLCK); err != nil {
			return nil, err
		}
		if err := lock(n, unix.F_UNLCK); err != nil {
			return nil, err
		}
	}
	out = append(out, sample{id: fmt.Sprintf("%s.cycle.%d", group, n), v: us(time.Since(start)) / lockCycles})
	if v, err = each(unix.F_UNLCK, "unlock"); err != nil {
		return nil, err
	}
	out = append(out, sample{id: fmt.Sprintf("%s.release.%d", group, n), v: v})
	if err := rss("release"); err != nil {
		return nil, err
	}
	return out, nil
}

// sparseCycles and sparseGap shape the sparse step: Tempest's pattern,
// a lock now and then rather than a loop.
const (
	sparseCycles = 40
	sparseGap    = 10 * time.Millisecond
)

// sparse runs the oslo cycle sparseCycles times, sparseGap apart, and
// reports the median cycle time and the CPU time the server (with its
// children: lockfs's log keeper) spent per cycle, the gap after it
// included. A server that sleeps between calls pays for waking up on
// each, and for whatever it does after answering (flushing a log,
// polling for more); in a loop that cost is hidden by the next call.
func (r *runner) sparse(t *target) ([]sample, error) {
	body, done, err := osloCycle(t)
	if err != nil {
		return nil, err
	}
	defer done()
	n := sparseCycles
	if r.cfg.n > 0 {
		n = r.cfg.n
	}
	var cpu0 time.Duration
	if t.ServerPID != 0 {
		if cpu0, err = processTreeCPU(t.ServerPID); err != nil {
			return nil, err
		}
	}
	lat := make([]float64, 0, n)
	for range n {
		if err := checkInterrupted(); err != nil {
			return nil, err
		}
		t0 := nanotime()
		if err := body(); err != nil {
			return nil, err
		}
		lat = append(lat, float64(nanotime()-t0)/1e3)
		time.Sleep(sparseGap)
	}
	out := []sample{{id: "sparse.p50", v: bench.Median(lat), ops: n}}
	if t.ServerPID != 0 {
		cpu1, err := processTreeCPU(t.ServerPID)
		if err != nil {
			return nil, err
		}
		out = append(out, sample{id: "sparse.cpu", v: us((cpu1 - cpu0) / time.Duration(n)), ops: n})
	}
	return out, nil
}

// processTreeCPU is the CPU time (user and system, from the scheduler's
// per-thread accounting in /proc/PID/task/TID/schedstat) of pid's
// threads and of its child processes' threads.
func processTreeCPU(pid int) (time.Duration, error) {
	var total time.Duration
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("threads of server %d: not found", pid)
	}
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(task, "schedstat"))
		if err != nil {
			continue // the thread exited
		}
		var ns int64
		if _, err := fmt.Sscan(string(b), &ns); err == nil {
			total += time.Duration(ns)
		}
		children, _ := os.ReadFile(filepath.Join(task, "children"))
		for _, f := range strings.Fields(string(children)) {
			if child, err := strconv.Atoi(f); err == nil {
				if c, err := processTreeCPU(child); err == nil {
					total += c
				}
			}
		}
	}
	return total, nil
}
