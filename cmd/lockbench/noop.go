package main

// The no-op lock server: the floor lockfs is measured against. It has
// lockfs's shape (fs.NewNodeFS over an in-memory tree, with ExternalNodeID,
// one-second entry and attribute timeouts and default_permissions, wrapped
// by a RawFileSystem that takes the lock messages; EnableLocks on; go-
// fuse's default concurrency, LOCK-SEMANTICS G4/G5), but its lock handlers
// answer success at once and remember nothing. Mutual exclusion does not
// hold on it: two processes both "get" the same write lock. Its numbers
// are the cost of a FUSE round trip through go-fuse and nothing else.
//
// It runs as `lockbench __serve-noop [-log FILE] MOUNTPOINT`, always in a
// process of its own: a process that locks files on a mount it serves
// itself can deadlock (go-fuse fs/api.go, "Deadlocks"), and the
// measurement would share its CPU and garbage collector with the server.
//
// With -log it also writes one zerolog JSON line per SETLK/SETLKW, shaped
// like a lockfs audit event (same fields, name resolved from the node,
// command read from /proc and cached), to estimate what the audit log
// costs by itself.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"
)

// noopFSType is the FUSE subtype of the no-op mount: it shows as
// "fuse.lockbench-noop" in /proc/self/mountinfo.
const noopFSType = "lockbench-noop"

// serveNoop is the hidden __serve-noop subcommand. It prints "ready" on
// stdout once mounted, and unmounts and exits on SIGTERM or SIGINT.
func serveNoop(args []string) int {
	fl := flag.NewFlagSet("__serve-noop", flag.ContinueOnError)
	logPath := fl.String("log", "", "write one JSON line per lock request to this file")
	if err := fl.Parse(args); err != nil || fl.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: lockbench __serve-noop [-log FILE] MOUNTPOINT")
		return exitUsage
	}
	mnt := fl.Arg(0)

	tree := &noopTree{}
	tree.lastIno.Store(fuse.FUSE_ROOT_ID)
	raw := &noopRaw{}
	if *logPath != "" {
		f, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			fmt.Fprintln(os.Stderr, "lockbench __serve-noop:", err)
			return exitFailure
		}
		defer f.Close()
		tree.named = true
		raw.log = &opLogger{log: zerolog.New(&lockedWriter{f: f}), tree: tree, mnt: mnt}
	}
	root := &noopNode{tree: tree, mode: syscall.S_IFDIR | 0o755}
	mo := fuse.MountOptions{
		FsName:      "noop",
		Name:        noopFSType,
		EnableLocks: true,
		DirectMount: os.Geteuid() == 0,
		Options:     []string{"default_permissions"},
	}
	timeout := time.Second // as lockfs's attrTimeout
	raw.RawFileSystem = gofs.NewNodeFS(root, &gofs.Options{
		MountOptions:    mo,
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NullPermissions: true,
		ExternalNodeID:  true,
	})
	// Signals are caught before mounting. WaitMount opens and closes a
	// file on the new mount (go-fuse's poll hack); a SIGTERM's default
	// action in that moment kills the process while a thread waits in
	// close() for the FLUSH it should answer itself, and the half-dead
	// server hangs until the connection is aborted (seen in CI: a stop
	// right after the mount appeared).
	sigs := make(chan os.Signal, 4) // buffered: a second signal is kept
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	srv, err := fuse.NewServer(raw, mnt, &mo)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lockbench __serve-noop: mount:", err)
		return exitFailure
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		_ = srv.Unmount()
		fmt.Fprintln(os.Stderr, "lockbench __serve-noop: mount:", err)
		return exitFailure
	}
	fmt.Println("ready")

	served := make(chan struct{})
	go func() { srv.Wait(); close(served) }()
	for {
		select {
		case <-served:
			return exitOK
		case <-sigs:
			// EBUSY while the orchestrator still has files open: retry
			// for a bounded time, then let it detach the mount.
			var err error
			for deadline := time.Now().Add(stopTimeout / 2); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if err = srv.Unmount(); err == nil {
					<-served
					return exitOK
				}
			}
			fmt.Fprintln(os.Stderr, "lockbench __serve-noop: unmount:", err)
		}
	}
}

// noopRaw answers every lock request with success and keeps nothing.
// Flush and Release go to the node bridge unchanged (the embedded
// RawFileSystem), as lockfs's do after telling its engine.
type noopRaw struct {
	fuse.RawFileSystem
	log *opLogger // nil unless -log
}

func (r *noopRaw) GetLk(cancel <-chan struct{}, in *fuse.LkIn, out *fuse.LkOut) fuse.Status {
	out.Lk = in.Lk
	out.Lk.Typ = syscall.F_UNLCK // nothing ever conflicts
	return fuse.OK
}

func (r *noopRaw) SetLk(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	if r.log != nil {
		r.log.event(in)
	}
	return fuse.OK
}

func (r *noopRaw) SetLkw(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	if r.log != nil {
		r.log.event(in)
	}
	return fuse.OK
}

// noopTree is the in-memory namespace: one kind of directory node and one
// kind of file node, attributes fixed at creation.
type noopTree struct {
	lastIno atomic.Uint64
	// named is set with -log: nodes are indexed by inode number (==
	// NodeId, ExternalNodeID) so a lock message can be named, as lockfs
	// does for its audit events.
	named bool
	nodes sync.Map // uint64 → *gofs.Inode
}

// noopNode is a directory or a regular file.
type noopNode struct {
	gofs.Inode
	tree *noopTree
	mode uint32
}

var (
	_ gofs.NodeGetattrer   = (*noopNode)(nil)
	_ gofs.NodeSetattrer   = (*noopNode)(nil)
	_ gofs.NodeCreater     = (*noopNode)(nil)
	_ gofs.NodeOpener      = (*noopNode)(nil)
	_ gofs.NodeMkdirer     = (*noopNode)(nil)
	_ gofs.NodeUnlinker    = (*noopNode)(nil)
	_ gofs.NodeRmdirer     = (*noopNode)(nil)
	_ gofs.NodeOnForgetter = (*noopNode)(nil)
	// Lookup and Readdir: go-fuse's defaults over the Inode children.
)

// noopHandle is the file handle of one open: like lockfs, every open
// gets its own (G6), so the kernel's Fh names the open file description.
type noopHandle struct{}

var epoch = time.Now()

func (n *noopNode) fill(out *fuse.Attr) {
	out.Ino = n.StableAttr().Ino
	out.Mode = n.mode
	out.Nlink = 1
	if n.mode&syscall.S_IFMT == syscall.S_IFDIR {
		out.Nlink = 2
	}
	out.Blksize = 4096
	out.SetTimes(&epoch, &epoch, &epoch)
}

func (n *noopNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fill(&out.Attr)
	return 0
}

// Setattr accepts and ignores every change (touch, chmod, truncate of an
// empty file).
func (n *noopNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	n.fill(&out.Attr)
	return 0
}

func (n *noopNode) child(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) *gofs.Inode {
	c := &noopNode{tree: n.tree, mode: mode}
	ch := n.NewPersistentInode(ctx, c, gofs.StableAttr{Mode: mode & syscall.S_IFMT, Ino: n.tree.lastIno.Add(1)})
	if n.tree.named {
		n.tree.nodes.Store(ch.StableAttr().Ino, ch)
	}
	c.fill(&out.Attr)
	return ch
}

func (n *noopNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if ch := n.GetChild(name); ch != nil { // a stale negative dentry
		if flags&syscall.O_EXCL != 0 {
			return nil, nil, 0, syscall.EEXIST
		}
		ch.Operations().(*noopNode).fill(&out.Attr)
		return ch, &noopHandle{}, 0, 0
	}
	return n.child(ctx, name, syscall.S_IFREG|mode&0o7777, out), &noopHandle{}, 0, 0
}

func (n *noopNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return &noopHandle{}, 0, 0
}

func (n *noopNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.GetChild(name) != nil {
		return nil, syscall.EEXIST
	}
	return n.child(ctx, name, syscall.S_IFDIR|mode&0o7777, out), 0
}

func (n *noopNode) Unlink(ctx context.Context, name string) syscall.Errno {
	ch := n.GetChild(name)
	if ch == nil {
		return syscall.ENOENT
	}
	ch.ForgetPersistent() // the bridge removes the name
	return 0
}

func (n *noopNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	ch := n.GetChild(name)
	if ch == nil {
		return syscall.ENOENT
	}
	if len(ch.Children()) > 0 {
		return syscall.ENOTEMPTY
	}
	ch.ForgetPersistent()
	return 0
}

func (n *noopNode) OnForget() {
	if n.tree.named {
		n.tree.nodes.Delete(n.StableAttr().Ino)
	}
}

// lockedWriter writes each line with one write(2) under a mutex, as
// lockfs's logging does.
type lockedWriter struct {
	mu sync.Mutex
	f  *os.File
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f.Write(p)
}

// opLogger writes one audit-shaped line per lock request.
type opLogger struct {
	log  zerolog.Logger
	tree *noopTree
	mnt  string

	mu       sync.Mutex
	commands map[uint32]commandEntry
}

type commandEntry struct {
	name string
	at   time.Time
}

func (l *opLogger) event(in *fuse.LkIn) {
	now := time.Now()
	name, path := l.name(in.NodeId)
	kind, event, mode := "posix", "acquired", "write"
	if in.LkFlags&fuse.FUSE_LK_FLOCK != 0 {
		kind = "flock"
	}
	switch in.Lk.Typ {
	case syscall.F_UNLCK:
		event, mode = "released", "unlock"
	case syscall.F_RDLCK:
		mode = "read"
	}
	ev := l.log.Info().Time(zerolog.TimestampFieldName, now).
		Str("event", event).Str("lock", name).Str("path", path).
		Str("kind", kind).Str("mode", mode).
		Uint64("start", in.Lk.Start).Uint64("end", in.Lk.End).
		Uint32("pid", in.Lk.Pid).Str("command", l.command(in.Lk.Pid, now)).
		Uint32("uid", in.Caller.Uid).Str("owner", fmt.Sprintf("%016x", in.Owner)).Uint64("fh", in.Fh)
	msg := "Got file lock"
	if event == "released" {
		ev.Float64("held_s", 0).Str("reason", "unlock")
		msg = "Released file lock"
	} else {
		ev.Float64("waited_s", 0).Int("attempts", 1)
	}
	ev.Msg(msg + " " + strconv.Quote(name) + " at " + path)
}

// name resolves a node to its name and absolute path by walking its
// parents.
func (l *opLogger) name(ino uint64) (string, string) {
	v, ok := l.tree.nodes.Load(ino)
	if !ok {
		return "", ""
	}
	var segs []string
	for p := v.(*gofs.Inode); ; {
		nm, parent := p.Parent()
		if parent == nil {
			break
		}
		segs = append(segs, nm)
		p = parent
	}
	if len(segs) == 0 {
		return "", l.mnt
	}
	path := l.mnt
	for i := len(segs) - 1; i >= 0; i-- {
		path += "/" + segs[i]
	}
	return segs[0], path
}

// command reads /proc/PID/comm, cached for two seconds per pid.
func (l *opLogger) command(pid uint32, now time.Time) string {
	l.mu.Lock()
	e, ok := l.commands[pid]
	l.mu.Unlock()
	if ok && now.Sub(e.at) < 2*time.Second {
		return e.name
	}
	b, _ := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/comm")
	name := strings.TrimSuffix(string(b), "\n") // "" once the process is gone
	l.mu.Lock()
	if l.commands == nil || len(l.commands) > 4096 {
		l.commands = make(map[uint32]commandEntry)
	}
	l.commands[pid] = commandEntry{name, now}
	l.mu.Unlock()
	return name
}
