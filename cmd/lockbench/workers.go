package main

// Multi-process measurements. POSIX lock owners are processes, so
// contention needs processes: lockbench re-executes itself as
// `lockbench __worker -mode tp|handoff …` (never serving a mount). A
// worker prints "ready" once set up, its result as one JSON line at the
// end, and dies with lockbench (parent-death signal).
//
// Handoff protocol. Two workers alternate one write lock on one file with
// F_SETLKW. Each handoff, with H the holder and W the other worker:
//
//  1. W reads seq from shared memory, writes 'w' to H ("about to wait")
//     on a pipe and calls F_SETLKW.
//  2. H reads the 'w', then polls /proc/W/task/TID/syscall until W's
//     thread sleeps in fcntl (queued on the kernel's lock, or on FUSE's
//     request queue ahead of H's unlock), at most handoffConfirm.
//  3. H stores t0 = CLOCK_MONOTONIC and seq+1 in shared memory, then
//     unlocks (F_SETLK F_UNLCK).
//  4. W's F_SETLKW returns at t1: the handoff latency is t1 - t0. W writes
//     'g' ("got it") to H and is now the holder (step 2).
//  5. H reads the 'g' and only then becomes the waiter (step 1): it never
//     asks for the lock before W has it, so it cannot win it back (which
//     would leave both waiting on each other's pipe).
//
// If seq has not moved when W's F_SETLKW returns, W got the lock while H
// still held it: an exclusion violation. On the no-op server that is
// every handoff whose immediate grant beats H's unlock (most of them);
// there W records its own F_SETLKW call time instead (a FUSE round trip),
// and the report marks the no-op column as not real. On a real lock it
// is a bug, and the report says so.
//
// The timestamps are CLOCK_MONOTONIC read through the vDSO (Go's
// runtime.nanotime): the clock_gettime syscall itself costs several
// microseconds on this kind of VM, as much as a tmpfs handoff.
//
// The shared memory is a 4 KiB file in lockbench's work directory, outside
// every mount, mapped MAP_SHARED by both workers.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lockfs/lockfs/internal/bench"
)

// nanotime is CLOCK_MONOTONIC in nanoseconds, read through the vDSO.
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

const (
	// handoffConfirm bounds step 2: how long a holder waits to see the
	// waiter asleep before unlocking anyway (counted as unconfirmed).
	handoffConfirm = 50 * time.Millisecond
	// workerSlack is added to a cell's expected time before its workers
	// are declared hung and killed.
	workerSlack = 60 * time.Second
)

// Shared-memory slots (int64) of the handoff.
const (
	shmSeq     = iota // handoffs so far
	shmT0             // CLOCK_MONOTONIC of the last unlock
	shmStop           // 1: the run is over
	shmStart          // first handoff
	shmMeasure        // first measured handoff (after the warm-up)
	shmEnd            // the stopping unlock
	shmPid1           // first worker
	shmTid1           //
	shmPid2           // second worker
	shmTid2           //
	shmSlots          // count
)

// workerResult is the JSON line a worker prints at the end.
type workerResult struct {
	// tp: measured cycles and their time; All counts the warm-up too.
	Ops int   `json:"ops,omitempty"`
	NS  int64 `json:"ns,omitempty"`
	All int   `json:"all,omitempty"`
	// handoff: latencies of measured handoffs (ns), and counts.
	Lat         []int64 `json:"lat,omitempty"`
	Violations  int     `json:"violations,omitempty"`
	Unconfirmed int     `json:"unconfirmed,omitempty"`
}

// workerMain is the hidden __worker subcommand.
func workerMain(args []string) int {
	fl := flag.NewFlagSet(cmdWorker, flag.ContinueOnError)
	mode := fl.String("mode", "", "tp or handoff")
	file := fl.String("file", "", "lock file")
	shm := fl.String("shm", "", "handoff: shared memory file")
	role := fl.Int("role", 1, "handoff: 1 (first holder) or 2")
	d := fl.Duration("duration", time.Second, "measured time")
	n := fl.Int("n", 0, "measured iterations instead of -duration")
	if err := fl.Parse(args); err != nil {
		return exitUsage
	}
	// One OS thread does every lock call: its TID is what the handoff
	// peer watches, and a lock call is never migrated mid-protocol.
	runtime.LockOSThread()
	var res workerResult
	var err error
	switch *mode {
	case "tp":
		res, err = tpWorker(*file, *n, *d)
	case "handoff":
		res, err = handoffWorker(*file, *shm, *role, *n, *d)
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lockbench worker %d: %v\n", os.Getpid(), err)
		return exitFailure
	}
	b, _ := json.Marshal(res)
	fmt.Printf("%s\n", b)
	return exitOK
}

// tpWorker locks and unlocks its file in a loop (F_SETLKW write, F_SETLK
// unlock) once fd 3 reaches EOF (the common start), for a warm-up and
// then n iterations or d.
func tpWorker(file string, n int, d time.Duration) (workerResult, error) {
	fd, err := unix.Open(file, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return workerResult{}, err
	}
	defer unix.Close(fd)
	fmt.Println("ready")
	if err := waitEOF(3); err != nil {
		return workerResult{}, err
	}
	warm, count := -1, -1
	if n > 0 {
		warm, count = n/10, n
	}
	cycle := func(count int, d time.Duration) (int, int64, error) {
		start := nanotime()
		end := start + int64(d)
		i := 0
		for ; count >= 0 && i < count || count < 0 && (i%16 != 0 || nanotime() < end); i++ {
			if err := fcntl(fd, unix.F_SETLKW, wholeWrite, "F_SETLKW F_WRLCK"); err != nil {
				return i, 0, err
			}
			if err := fcntl(fd, unix.F_SETLK, wholeUnlock, "F_SETLK F_UNLCK"); err != nil {
				return i, 0, err
			}
		}
		return i, nanotime() - start, nil
	}
	warmed, _, err := cycle(warm, d/10)
	if err != nil {
		return workerResult{}, err
	}
	ops, ns, err := cycle(count, d)
	return workerResult{Ops: ops, NS: ns, All: warmed + ops}, err
}

// waitEOF blocks until the write end of fd is closed everywhere.
func waitEOF(fd int) error {
	var b [1]byte
	for {
		n, err := unix.Read(fd, b[:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}

// shmem is the handoff's shared memory.
type shmem []byte

func (s shmem) slot(i int) *int64     { return (*int64)(unsafe.Pointer(&s[i*8])) }
func (s shmem) load(i int) int64      { return atomic.LoadInt64(s.slot(i)) }
func (s shmem) store(i int, v int64)  { atomic.StoreInt64(s.slot(i), v) }
func (s shmem) cas(i int, o, n int64) { atomic.CompareAndSwapInt64(s.slot(i), o, n) }

// handoffWorker runs one side of the handoff protocol (see the top of
// this file). fd 3 reads from the peer, fd 4 writes to it.
func handoffWorker(file, shmPath string, role, n int, d time.Duration) (workerResult, error) {
	var res workerResult
	const fromPeer, toPeer = 3, 4
	for _, fd := range []int{fromPeer, toPeer} {
		if err := unix.SetNonblock(fd, false); err != nil {
			return res, err
		}
	}
	fd, err := unix.Open(file, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return res, err
	}
	defer unix.Close(fd)
	mf, err := os.OpenFile(shmPath, os.O_RDWR, 0)
	if err != nil {
		return res, err
	}
	mem, err := unix.Mmap(int(mf.Fd()), 0, shmSlots*8, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	mf.Close()
	if err != nil {
		return res, err
	}
	defer unix.Munmap(mem)
	shm := shmem(mem)
	mySlot, peerSlot := shmPid1, shmPid2
	if role == 2 {
		mySlot, peerSlot = shmPid2, shmPid1
	}
	shm.store(mySlot, int64(os.Getpid()))
	shm.store(mySlot+1, int64(unix.Gettid()))

	// Warm-up: a tenth of the run, in time or in handoffs.
	warmCount := int64(n / 10)
	warm := int64(d / 10)
	measured := func(seq, t0 int64) bool {
		if n > 0 {
			return seq > warmCount
		}
		start := shm.load(shmStart)
		return start != 0 && t0 >= start+warm
	}
	over := func(seq, now int64) bool {
		if n > 0 {
			return seq >= warmCount+int64(n)
		}
		m := shm.load(shmMeasure)
		return m != 0 && now-m >= int64(d)
	}

	holder := role == 1
	if holder {
		if err := fcntl(fd, unix.F_SETLKW, wholeWrite, "F_SETLKW F_WRLCK"); err != nil {
			return res, err
		}
	}
	fmt.Println("ready")
	peerSys := -1
	defer func() {
		if peerSys >= 0 {
			unix.Close(peerSys)
		}
	}()
	// peerGone is the end of the run, or an error.
	peerGone := func(what string, err error) error {
		if shm.load(shmStop) == 1 {
			return nil // the peer stopped the run
		}
		return fmt.Errorf("peer gone while %s: %v", what, err)
	}
	var b [1]byte
	for {
		if holder {
			// Step 2.
			if n, err := readFull(fromPeer, b[:]); err != nil || n == 0 {
				return res, peerGone("holding", err)
			}
			shm.cas(shmStart, 0, nanotime())
			if peerSys < 0 {
				p := fmt.Sprintf("/proc/%d/task/%d/syscall", shm.load(peerSlot), shm.load(peerSlot+1))
				if peerSys, err = unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
					return res, err
				}
			}
			if !waitBlocked(peerSys) {
				res.Unconfirmed++
			}
			seq := shm.load(shmSeq) + 1
			now := nanotime()
			if over(seq-1, now) {
				shm.store(shmEnd, now)
				shm.store(shmStop, 1)
				return res, fcntl(fd, unix.F_SETLK, wholeUnlock, "F_SETLK F_UNLCK")
			}
			// Step 3.
			t0 := nanotime()
			shm.store(shmT0, t0)
			shm.store(shmSeq, seq)
			if measured(seq, t0) {
				shm.cas(shmMeasure, 0, t0)
			}
			if err := fcntl(fd, unix.F_SETLK, wholeUnlock, "F_SETLK F_UNLCK"); err != nil {
				return res, err
			}
			// Step 5.
			if n, err := readFull(fromPeer, b[:]); err != nil || n == 0 {
				return res, peerGone("handing over", err)
			}
			holder = false
			continue
		}
		// Step 1.
		seqBefore := shm.load(shmSeq)
		b[0] = 'w'
		if _, err := unix.Write(toPeer, b[:]); err != nil {
			return res, peerGone("asking", err)
		}
		tcall := nanotime()
		if err := fcntl(fd, unix.F_SETLKW, wholeWrite, "F_SETLKW F_WRLCK"); err != nil {
			return res, err
		}
		t1 := nanotime()
		// Step 4.
		if shm.load(shmStop) == 1 {
			return res, fcntl(fd, unix.F_SETLK, wholeUnlock, "F_SETLK F_UNLCK")
		}
		seq := shm.load(shmSeq)
		switch {
		case seq == seqBefore: // granted while the peer held it
			if measured(seq+1, tcall) {
				res.Violations++
				res.Lat = append(res.Lat, t1-tcall)
			}
		case measured(seq, shm.load(shmT0)):
			res.Lat = append(res.Lat, t1-shm.load(shmT0))
		}
		b[0] = 'g'
		if _, err := unix.Write(toPeer, b[:]); err != nil {
			return res, peerGone("taking over", err)
		}
		holder = true
	}
}

// readFull reads len(b) bytes from a blocking fd, retrying EINTR; n is 0
// at EOF.
func readFull(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return n, err
	}
}

// waitBlocked polls a /proc/…/syscall file until the thread sleeps in
// fcntl(2) (its F_SETLKW) or, on a server that granted that at once, in
// read(2) of the pipe (step 5 of an exclusion violation), at most
// handoffConfirm, and reports whether it saw that.
func waitBlocked(sysFd int) bool {
	var buf [256]byte
	deadline := nanotime() + int64(handoffConfirm)
	for i := 0; ; i++ {
		n, err := unix.Pread(sysFd, buf[:], 0)
		if err != nil {
			return false
		}
		// "NR arg…" while blocked in syscall NR, "running" otherwise.
		if f, _, _ := bytes.Cut(buf[:n], []byte(" ")); string(f) == fcntlNR || string(f) == readNR {
			return true
		}
		if nanotime() > deadline {
			return false
		}
		if i > 100 {
			// Two cores: give the peer (and the server) the CPU.
			_, _, _ = unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
		}
	}
}

var (
	fcntlNR = strconv.Itoa(unix.SYS_FCNTL)
	readNR  = strconv.Itoa(unix.SYS_READ)
)

// worker is a started worker process.
type worker struct {
	cmd    *exec.Cmd
	lines  chan string // stdout, line by line; closed at EOF
	stderr *bytes.Buffer
	done   chan struct{}
}

// startWorker starts `lockbench __worker args…` with extra files from fd 3.
func startWorker(args []string, extra []*os.File) (*worker, error) {
	cmd := exec.Command(selfExe(), append([]string{cmdWorker}, args...)...)
	w := &worker{cmd: cmd, lines: make(chan string, 4), stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = w.stderr
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 256<<20)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, out)
		close(w.lines)
		_ = cmd.Wait()
		close(w.done)
	}()
	return w, nil
}

// line returns the worker's next stdout line, or an error at EOF, at the
// deadline, or on interrupt.
func (w *worker) line(deadline time.Time) (string, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case l, ok := <-w.lines:
			if !ok {
				<-w.done
				return "", fmt.Errorf("worker exited (%v): %s", w.cmd.ProcessState, strings.TrimSpace(w.stderr.String()))
			}
			return l, nil
		case <-tick.C:
			if err := checkInterrupted(); err != nil {
				return "", err
			}
			if time.Now().After(deadline) {
				return "", fmt.Errorf("worker %d hung (no answer within the cell's deadline); killed it", w.cmd.Process.Pid)
			}
		}
	}
}

// kill ends the worker if it still runs and waits for it.
func (w *worker) kill() {
	_ = w.cmd.Process.Kill()
	<-w.done
}

func (w *worker) result(deadline time.Time) (workerResult, error) {
	var res workerResult
	l, err := w.line(deadline)
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal([]byte(l), &res); err != nil {
		return res, fmt.Errorf("worker said %q: %v", l, err)
	}
	return res, nil
}

// expectReady reads the "ready" line.
func (w *worker) expectReady(deadline time.Time) error {
	l, err := w.line(deadline)
	if err == nil && l != "ready" {
		err = fmt.Errorf("worker said %q, want ready", l)
	}
	return err
}

func (r *runner) workerArgs() []string {
	return []string{"-duration", r.cfg.duration.String(), "-n", fmt.Sprint(r.cfg.n)}
}

// cellDeadline is when a multi-process cell is declared hung.
func (r *runner) cellDeadline() time.Time {
	d := r.cfg.duration
	if r.cfg.n > 0 {
		d = time.Duration(r.cfg.n) * time.Millisecond // 1 ms per iteration is very slow
	}
	return time.Now().Add(2*d + workerSlack)
}

// throughput runs p tp workers on p distinct files or on one shared file
// and returns their total rate.
func (r *runner) throughput(t *target, p int, shared bool) ([]sample, error) {
	deadline := r.cellDeadline()
	start, release, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer start.Close()
	defer release.Close()
	var ws []*worker
	defer func() {
		for _, w := range ws {
			w.kill()
		}
	}()
	for i := range p {
		file := filepath.Join(t.work, fmt.Sprintf("tp-%d", i))
		if shared {
			file = filepath.Join(t.work, "tp-shared")
		}
		w, err := startWorker(append([]string{"-mode", "tp", "-file", file}, r.workerArgs()...), []*os.File{start})
		if err != nil {
			return nil, err
		}
		ws = append(ws, w)
	}
	for _, w := range ws {
		if err := w.expectReady(deadline); err != nil {
			return nil, err
		}
	}
	release.Close() // EOF on fd 3: go
	total := 0.0
	ops := 0
	for _, w := range ws {
		res, err := w.result(deadline)
		if err != nil {
			return nil, err
		}
		if res.NS <= 0 || res.Ops <= 0 {
			return nil, fmt.Errorf("worker did no work: %+v", res)
		}
		total += float64(res.Ops) / (float64(res.NS) / 1e9)
		ops += res.All
	}
	mode := "distinct"
	if shared {
		mode = "shared"
	}
	return []sample{{id: fmt.Sprintf("throughput.%s.%d", mode, p), v: total, ops: ops}}, nil
}

// handoff runs the two handoff workers (see the top of this file).
func (r *runner) handoff(t *target) ([]sample, error) {
	deadline := r.cellDeadline()
	shmPath := filepath.Join(r.work, "handoff.shm")
	if err := os.WriteFile(shmPath, make([]byte, 4096), 0o600); err != nil {
		return nil, err
	}
	// p12 carries the first worker's bytes to the second, p21 back.
	r12, w12, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r12.Close()
	defer w12.Close()
	r21, w21, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r21.Close()
	defer w21.Close()
	var ws []*worker
	defer func() {
		for _, w := range ws {
			w.kill()
		}
	}()
	file := filepath.Join(t.work, "handoff")
	common := append([]string{"-mode", "handoff", "-file", file, "-shm", shmPath}, r.workerArgs()...)
	first, err := startWorker(append(common, "-role", "1"), []*os.File{r21, w12})
	if err != nil {
		return nil, err
	}
	ws = append(ws, first)
	if err := first.expectReady(deadline); err != nil {
		return nil, err // the first holds the lock before the second starts
	}
	second, err := startWorker(append(common, "-role", "2"), []*os.File{r12, w21})
	if err != nil {
		return nil, err
	}
	ws = append(ws, second)
	// Only the workers may hold the pipe ends: EOF must mean "peer gone".
	for _, f := range []*os.File{r12, w12, r21, w21} {
		f.Close()
	}
	if err := second.expectReady(deadline); err != nil {
		return nil, err
	}
	var lat []int64
	violations, unconfirmed := 0, 0
	for _, w := range ws {
		res, err := w.result(deadline)
		if err != nil {
			return nil, err
		}
		lat = append(lat, res.Lat...)
		violations += res.Violations
		unconfirmed += res.Unconfirmed
	}
	raw, err := os.ReadFile(shmPath)
	if err != nil {
		return nil, err
	}
	slot := func(i int) int64 { return int64(binary.NativeEndian.Uint64(raw[i*8:])) }
	span := slot(shmEnd) - slot(shmMeasure)
	if len(lat) == 0 || span <= 0 {
		return nil, fmt.Errorf("no handoff measured (%d samples over %d ns)", len(lat), span)
	}
	slices.Sort(lat)
	extra := map[string]float64{
		"handoffs":    float64(len(lat)),
		"violations":  float64(violations),
		"unconfirmed": float64(unconfirmed),
	}
	return []sample{
		{id: "handoff.rate", v: float64(len(lat)) / (float64(span) / 1e9), extra: extra},
		{id: "handoff.p50", v: bench.Percentile(lat, 50) / 1e3},
		{id: "handoff.p99", v: bench.Percentile(lat, 99) / 1e3},
	}, nil
}
