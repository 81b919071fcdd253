// Package spool is a write-behind buffer for an append-only log file
// that loses nothing when its process is killed.
//
// lockfs must not answer a lock call before the call's audit events are
// safe, and it must not pay a write(2) per call for that: on the VMs it
// runs on, a syscall in the answering path costs more than the rest of
// the audit log together. A Spool makes "safe" mean "copied into shared
// memory":
//
//   - Write copies the bytes into a ring in a memfd mapping and publishes
//     them. It makes no syscall (unless the ring is full, when it waits for
//     room: bytes are never dropped).
//   - A flusher goroutine writes what was published to the file, in order,
//     within about a millisecond ([FlushInterval]) while there is traffic.
//     When the spool has been idle for a few intervals it parks. A Write
//     that finds it parked writes its bytes through itself (they are then
//     in the file when it returns), unless more than a few Writes did so
//     within the last few intervals: then traffic has resumed and it wakes
//     the flusher instead. On the VMs lockfs runs on, waking the flusher
//     and letting it poll costs several times the CPU of the write(2) it
//     saves, so an occasional call (Tempest's case: a lock now and then)
//     pays a write and leaves the flusher asleep, while a stream of calls
//     pays no syscall at all.
//   - A keeper process, started by Open (this same binary re-executed,
//     see below), maps the same memfd and does nothing but wait for its
//     parent to go away. If the parent dies without closing the spool
//     (kill -9, the OOM killer, a crash), the keeper appends every
//     published byte the flusher had not written, and exits. So once Write
//     has returned, the bytes reach the file even if the process is killed
//     the next moment.
//
// What is lost: bytes published when the process and its keeper die
// together (a SIGKILL of the whole process group or cgroup, a power
// cut). A write in flight when the process dies is written once: before
// writing, the flusher records the file's inode and size in the shared
// header, and the keeper skips what the file already has.
//
// If the keeper exits while the spool is open (someone killed it), the
// spool falls back to writing each Write through before it returns, the
// old synchronous behaviour, and reports it through Options.OnKeeperExit.
//
// The keeper is started by re-executing the running binary with
// KeeperEnv set; this package's init function recognises that and runs
// the keeper instead of the program (the reexec pattern). Any binary
// that imports this package, test binaries included, can therefore be a
// keeper. The keeper ignores SIGINT, SIGTERM, SIGHUP and SIGQUIT (a
// Ctrl-C or a service manager's stop is for its parent, which then closes
// the spool and so ends the keeper), closes every inherited descriptor
// but its own, and runs in "/", so it never holds a mount busy.
package spool

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FlushInterval is how often the flusher writes published bytes while
// there is traffic: the most a line waits before it is in the file.
const FlushInterval = time.Millisecond

// parkAfter is how many empty flush intervals the flusher waits before
// it parks. Each interval is a thread wake-up, which costs more CPU than
// a write(2) here: once traffic stops, the flusher soon stops too.
const parkAfter = 4

// DefaultCapacity is the ring's size: about 2,500 audit lines, a tenth
// of a second of lockfs's fastest lock traffic here. When the file
// cannot keep up (a stalled disk), Write waits for room, as a write(2)
// would have.
const DefaultCapacity = 1 << 20

// KeeperName is the keeper's command name (comm, at most 15 bytes), as
// ps and top show it; its argv[0] is lockfs-log-keeper.
const KeeperName = "lockfs-keeper"

// KeeperEnv, in a process's environment, makes this package's init run
// the keeper and exit. Open sets it for the keeper it starts.
const KeeperEnv = "LOCKFS_SPOOL_KEEPER"

// Header layout of the shared memory, one value per cache line where
// both processes write. Counters are byte offsets in the stream of
// everything ever written to the spool; position p sits at
// data[p % capacity].
const (
	offMagic    = 0   // headerMagic once set up
	offCapacity = 8   // data capacity in bytes
	offHead     = 64  // bytes published (written by Write)
	offTail     = 128 // bytes in the file (written by the flusher)
	// The flusher's write in progress, stored before each write(2):
	// the tail it will reach, and the file's device, inode and size
	// before it.
	offInflightEnd  = 192
	offInflightDev  = 200
	offInflightIno  = 208
	offInflightSize = 216
	headerSize      = 4096
	headerMagic     = 0x6c6f636b66737031 // "lockfsp1"
)

// keeperFDs are the keeper's descriptors: the memfd and the read end of
// a pipe whose write end only the parent holds (EOF: the parent closed
// the spool or died).
const (
	keeperMemFD  = 3
	keeperPipeFD = 4
)

// Options configure a Spool.
type Options struct {
	// Capacity is the ring size in bytes; 0 means DefaultCapacity.
	Capacity int
	// Mode is the file mode the keeper creates the file with if it is
	// missing when it drains (the file was renamed and not reopened).
	Mode os.FileMode
	// Open opens the file for appending; Reopen calls it again. It is
	// given the absolute path.
	Open func(path string) (*os.File, error)
	// OnKeeperExit, if set, is called (on its own goroutine) when the
	// keeper exits while the spool is open. From then on every Write is
	// in the file when it returns.
	OnKeeperExit func(error)

	// withoutKeeper, for this package's tests of the ring alone, starts
	// no keeper: nothing survives the process.
	withoutKeeper bool
}

// Spool is an append-only byte stream to a file, crash-safe once
// Write returns. Its methods are safe for concurrent use.
type Spool struct {
	path string
	opts Options

	mem  []byte // the shared mapping: header, then data
	data []byte // mem[headerSize:]
	cap  uint64

	// pubMu serialises publishers and guards head, the mirror of the
	// shared head.
	pubMu sync.Mutex
	head  uint64
	// mu guards waiting, the number of publishers waiting for room;
	// room is signalled when the flusher frees ring space and waiting > 0.
	mu      sync.Mutex
	room    *sync.Cond
	waiting int

	// fileMu guards f and tail: the one writer of the file at a time
	// (flusher, Flush, Reopen, Close).
	fileMu sync.Mutex
	f      *os.File
	tail   uint64
	// writeErr is the last write error reported, so that a full disk
	// is reported once, not per flush.
	writeErr error

	// parked is set while the flusher waits for wake; a publisher that
	// sees it writes through or sends a wake-up (Write).
	parked atomic.Bool
	// opened is when Open ran. throughs counts the Writes that wrote
	// through since throughSince (nanoseconds since opened).
	opened       time.Time
	throughSince atomic.Int64
	throughs     atomic.Int64
	wake         chan struct{}
	// direct makes Write flush before it returns: set when the keeper
	// has gone.
	direct atomic.Bool

	closing     atomic.Bool
	flusherDone chan struct{}

	keeper     *exec.Cmd
	keeperPipe *os.File      // the write end: closing it (or dying) ends the keeper
	keeperDone chan struct{} // closed once the keeper is reaped
	closeOnce  sync.Once
	closeErr   error
}

// Open starts a spool for the file at path: it opens the file with
// opts.Open, maps the ring and starts the keeper and the flusher. The
// caller must Close it.
func Open(path string, opts Options) (*Spool, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if opts.Capacity <= 0 {
		opts.Capacity = DefaultCapacity
	}
	if opts.Mode == 0 {
		opts.Mode = 0o640
	}
	if opts.Open == nil {
		return nil, errors.New("spool: Options.Open is nil")
	}
	s := &Spool{path: abs, opts: opts, cap: uint64(opts.Capacity),
		wake: make(chan struct{}, 1), flusherDone: make(chan struct{}), keeperDone: make(chan struct{})}
	s.room = sync.NewCond(&s.mu)
	s.opened = time.Now()

	memfd, err := unix.MemfdCreate("lockfs-log-spool", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("spool: memfd_create: %w", err)
	}
	mem := os.NewFile(uintptr(memfd), "lockfs-log-spool")
	defer mem.Close() // the mapping and the keeper's copy keep it alive
	size := headerSize + opts.Capacity
	if err := mem.Truncate(int64(size)); err != nil {
		return nil, fmt.Errorf("spool: sizing the ring: %w", err)
	}
	s.mem, err = unix.Mmap(memfd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("spool: mmap: %w", err)
	}
	s.data = s.mem[headerSize:]
	s.store(offCapacity, s.cap)
	s.store(offMagic, headerMagic)

	if s.f, err = opts.Open(abs); err != nil {
		unix.Munmap(s.mem)
		return nil, err
	}
	if opts.withoutKeeper {
		close(s.keeperDone)
	} else if err := s.startKeeper(mem); err != nil {
		s.f.Close()
		unix.Munmap(s.mem)
		return nil, err
	}
	go s.flush()
	return s, nil
}

// word is the header value at off in a spool mapping.
func word(mem []byte, off int) *uint64 { return (*uint64)(unsafe.Pointer(&mem[off])) }

func (s *Spool) word(off int) *uint64    { return word(s.mem, off) }
func (s *Spool) store(off int, v uint64) { atomic.StoreUint64(s.word(off), v) }

// startKeeper re-executes this binary as the keeper, handing it the
// memfd and the read end of a pipe.
func (s *Spool) startKeeper(mem *os.File) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("spool: pipe: %w", err)
	}
	defer r.Close()
	cmd := &exec.Cmd{
		// The running binary itself, even if its file has been replaced
		// since (an upgrade): the keeper must know this ring's layout.
		Path:       "/proc/self/exe",
		Args:       []string{"lockfs-log-keeper", s.path, strconv.FormatUint(uint64(s.opts.Mode.Perm()), 8)},
		Env:        []string{KeeperEnv + "=1"},
		Dir:        "/",
		ExtraFiles: []*os.File{mem, r}, // fds 3 and 4
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("spool: starting the keeper: %w", err)
	}
	s.keeper, s.keeperPipe = cmd, w
	go s.watchKeeper()
	return nil
}

// watchKeeper waits for the keeper's exit. If the spool is still open,
// every Write from then on is flushed before it returns, what is
// published is written now, and OnKeeperExit is told.
func (s *Spool) watchKeeper() {
	err := s.keeper.Wait()
	close(s.keeperDone)
	if s.closing.Load() {
		return
	}
	s.direct.Store(true)
	s.Flush()
	if s.opts.OnKeeperExit != nil {
		if err == nil {
			err = errors.New("exited")
		}
		s.opts.OnKeeperExit(err)
	}
}

// KeeperPid is the keeper process's pid.
func (s *Spool) KeeperPid() int { return s.keeper.Process.Pid }

// Write publishes p. Once it returns, p reaches the file even if this
// process is killed. A Write that finds the spool idle (its flusher
// parked) writes p to the file itself before returning, as long as such
// Writes are few (see the package comment). It blocks only while the
// ring is full. It never fails; write errors of the file are reported
// on stderr, once.
//
// Writes are published whole, one after another: a process killed in
// the middle of one leaves none of it (or, for a p larger than the
// ring, which is published in pieces that end at a newline where one
// fits, the pieces before), so concurrent writers' lines never
// interleave and a kill never tears a line that fits the ring.
func (s *Spool) Write(p []byte) (int, error) {
	n := len(p)
	s.pubMu.Lock()
	for len(p) > 0 {
		piece := p
		if uint64(len(piece)) > s.cap {
			piece = p[:s.cap]
			if i := bytes.LastIndexByte(piece, '\n'); i >= 0 {
				piece = piece[:i+1]
			}
		}
		s.waitRoom(uint64(len(piece)))
		at := s.head % s.cap
		c := copy(s.data[at:], piece)
		copy(s.data, piece[c:]) // the part that wraps, if any
		s.head += uint64(len(piece))
		s.store(offHead, s.head)
		p = p[len(piece):]
	}
	s.pubMu.Unlock()
	if s.direct.Load() {
		s.Flush()
	} else if s.parked.Load() {
		s.resume()
	}
	return n, nil
}

// resume handles a Write that found the flusher parked: it writes
// through, or wakes the flusher when writeThrough says traffic resumed.
func (s *Spool) resume() {
	if s.writeThrough(int64(time.Since(s.opened))) {
		s.Flush()
	} else {
		s.kick()
	}
}

// writeThrough reports whether a Write that finds the flusher parked at
// now (nanoseconds since Open) should write its bytes itself: yes for
// up to maxThroughs Writes within parkAfter flush intervals, which cost
// less than waking the flusher; past that the Writes are traffic, which
// the flusher batches. The counters are a heuristic: a race between
// Writes only moves a write from one path to the other, both correct.
func (s *Spool) writeThrough(now int64) bool {
	if now-s.throughSince.Load() > parkAfter*int64(FlushInterval) {
		s.throughSince.Store(now)
		s.throughs.Store(0)
	}
	return s.throughs.Add(1) <= maxThroughs
}

// maxThroughs is how many Writes may write through within parkAfter
// flush intervals: one write(2) a millisecond, about what the flusher
// would make.
const maxThroughs = parkAfter

// waitRoom returns once the ring has n free bytes. pubMu must be held.
func (s *Spool) waitRoom(n uint64) {
	if s.cap-(s.head-atomic.LoadUint64(s.word(offTail))) >= n {
		return
	}
	s.mu.Lock()
	s.waiting++
	for s.cap-(s.head-atomic.LoadUint64(s.word(offTail))) < n {
		s.kick()
		s.room.Wait()
	}
	s.waiting--
	s.mu.Unlock()
}

// kick wakes the flusher if it is parked or sleeping out an interval.
func (s *Spool) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Flush returns once everything published before the call is in the
// file.
func (s *Spool) Flush() {
	s.fileMu.Lock()
	s.writeOut()
	s.fileMu.Unlock()
}

// flush is the flusher goroutine: it writes published bytes every
// FlushInterval while there are any, and parks after parkAfter empty
// intervals until a Write wakes it.
func (s *Spool) flush() {
	defer close(s.flusherDone)
	idle := 0
	timer := time.NewTimer(FlushInterval)
	defer timer.Stop()
	for !s.closing.Load() {
		s.fileMu.Lock()
		wrote := s.writeOut()
		s.fileMu.Unlock()
		if wrote {
			idle = 0
		} else {
			idle++
		}
		if idle < parkAfter {
			timer.Reset(FlushInterval)
			select {
			case <-timer.C:
			case <-s.wake:
			}
			continue
		}
		// Idle: park until a Write kicks. An idle lockfs wakes no thread.
		s.parked.Store(true)
		if atomic.LoadUint64(s.word(offHead)) == atomic.LoadUint64(s.word(offTail)) && !s.closing.Load() {
			<-s.wake
		}
		s.parked.Store(false)
		idle = 0
	}
}

// writeOut writes everything published to the file, and reports
// whether there was anything. fileMu must be held.
func (s *Spool) writeOut() bool {
	head := atomic.LoadUint64(s.word(offHead))
	if head == s.tail {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(s.f.Fd()), &st); err == nil {
		s.store(offInflightDev, st.Dev)
		s.store(offInflightIno, st.Ino)
		s.store(offInflightSize, uint64(st.Size))
		s.store(offInflightEnd, head)
	} else {
		s.store(offInflightEnd, 0) // unknown: the keeper rewrites
	}
	if err := writeRange(s.f, s.data, s.cap, s.tail, head); err != nil {
		if s.writeErr == nil || s.writeErr.Error() != err.Error() {
			fmt.Fprintf(os.Stderr, "lockfs: writing the log %s: %v\n", s.path, err)
		}
		s.writeErr = err
	} else {
		s.writeErr = nil
	}
	s.tail = head
	s.store(offTail, head)
	s.mu.Lock()
	if s.waiting > 0 {
		s.room.Broadcast()
	}
	s.mu.Unlock()
	return true
}

// writeRange appends the stream bytes [from, to) of the ring data to f.
func writeRange(f *os.File, data []byte, capacity, from, to uint64) error {
	for from < to {
		at := from % capacity
		end := min(capacity, at+(to-from))
		n, err := f.Write(data[at:end])
		from += uint64(n)
		if err != nil {
			return err
		}
	}
	return nil
}

// Reopen writes what is published to the current file, then opens the
// path again (after a rotation renamed the file): bytes published
// before Reopen are in the old file, bytes after it in the new one.
func (s *Spool) Reopen() error {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	s.writeOut()
	f, err := s.opts.Open(s.path)
	if err != nil {
		return err
	}
	old := s.f
	s.f = f
	return old.Close()
}

// Close writes everything published, ends the keeper and closes the
// file. Write must not be called after Close.
func (s *Spool) Close() error {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		s.kick()
		<-s.flusherDone
		s.fileMu.Lock()
		s.writeOut()
		s.closeErr = s.f.Close()
		s.fileMu.Unlock()
		if s.keeperPipe != nil {
			s.keeperPipe.Close() // the keeper sees EOF, finds nothing to write, exits
		}
		select {
		case <-s.keeperDone:
		case <-time.After(5 * time.Second):
			s.keeper.Process.Kill()
			<-s.keeperDone
		}
		unix.Munmap(s.mem)
	})
	return s.closeErr
}

func init() {
	if os.Getenv(KeeperEnv) == "" {
		return
	}
	if err := runKeeper(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "lockfs-log-keeper: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runKeeper is the keeper process: args are its name, the file's path
// and the octal mode to create it with.
func runKeeper(args []string) error {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGPIPE)
	// Named for ps and top (started through /proc/self/exe, it would be
	// "exe").
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte(KeeperName + "\x00")[0])), 0, 0, 0)
	// Nothing of the parent's may stay open here: a FUSE device or a
	// readiness pipe held by the keeper would outlive the parent.
	closeInherited(keeperPipeFD + 1)
	if len(args) != 3 {
		return fmt.Errorf("usage: lockfs-log-keeper PATH MODE (started by lockfs, not by hand)")
	}
	mode, err := strconv.ParseUint(args[2], 8, 32)
	if err != nil {
		return fmt.Errorf("bad mode %q", args[2])
	}
	var st unix.Stat_t
	if err := unix.Fstat(keeperMemFD, &st); err != nil {
		return fmt.Errorf("no spool memory: %w", err)
	}
	mem, err := unix.Mmap(keeperMemFD, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mapping the spool: %w", err)
	}
	// Wait for the parent: nobody writes to the pipe, so read returns
	// at EOF, when the parent closed it (Close) or died.
	var b [1]byte
	for {
		_, err := unix.Read(keeperPipeFD, b[:])
		if err != unix.EINTR {
			break
		}
	}
	return drain(mem, args[1], os.FileMode(mode))
}

// drain appends what the dead parent published and did not write.
func drain(mem []byte, path string, mode os.FileMode) error {
	load := func(off int) uint64 { return atomic.LoadUint64(word(mem, off)) }
	if load(offMagic) != headerMagic {
		return errors.New("spool memory not set up")
	}
	capacity, head, tail := load(offCapacity), load(offHead), load(offTail)
	if head == tail {
		return nil // everything is in the file (always so after Close)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, mode)
	if err != nil {
		return err
	}
	defer f.Close()
	// The flusher's write in flight when the parent died: skip what
	// of it the file already has.
	if end := load(offInflightEnd); end > tail && end <= head {
		var st unix.Stat_t
		before := load(offInflightSize)
		if unix.Fstat(int(f.Fd()), &st) == nil && st.Dev == load(offInflightDev) && st.Ino == load(offInflightIno) &&
			uint64(st.Size) > before {
			tail += min(uint64(st.Size)-before, end-tail)
		}
	}
	return writeRange(f, mem[headerSize:], capacity, tail, head)
}

// closeInherited closes every descriptor from lowest up that this
// process inherited: those without close-on-exec. The Go runtime and
// packages initialised before this one may have opened descriptors of
// their own (the netpoller's epoll and event fds), always close-on-exec,
// and they must stay.
func closeInherited(lowest int) {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < lowest {
			continue
		}
		if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && flags&unix.FD_CLOEXEC == 0 {
			unix.Close(fd)
		}
	}
}
