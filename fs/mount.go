package fs

import (
	"fmt"
	"log"
	"os"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lockfs/lockfs/semaphores"
)

// FilesystemType is the FUSE subtype: mounts show as "fuse.lockfs" in
// /proc/self/mountinfo, which is how `lockfs locks` finds them.
const FilesystemType = "lockfs"

// MountConfig describes one mount.
type MountConfig struct {
	// Mountpoint is the directory to mount on; it must exist.
	Mountpoint string
	// Source is the backend name shown as the mount's source ("mem").
	Source string
	// Engine serves the locks.
	Engine semaphores.Engine
	// AllowOther lets other users use the mount (FUSE allow_other).
	AllowOther bool
	// NoDefaultPermissions turns off kernel permission checking
	// (default_permissions, on by default so that file modes are
	// enforced as on tmpfs).
	NoDefaultPermissions bool
	// NoExec forbids executing files in the mount (noexec). A lockfs
	// mount is always nosuid and nodev.
	NoExec bool
	// Debug logs every FUSE request through Logger.
	Debug bool
	// Tuning sets the kernel's caches and queue; nil means
	// DefaultTuning.
	Tuning *Tuning
	// Logger receives go-fuse's own messages; nil: the standard logger.
	Logger *log.Logger
	// PanicHandler turns a panic in a request handler into an errno; go-
	// fuse's default prints a stack trace and answers EIO.
	PanicHandler func(any) fuse.Status
}

// Mounted is a live mount.
type Mounted struct {
	*fuse.Server
	FS *FS
}

// Tuning is what the kernel may cache and queue. Every change to the
// tree goes through the kernel, which invalidates what it changes, so
// caching entries, attributes and even absent names is coherent; the
// .lockfs views, whose content changes behind the kernel's back, set
// their own zero timeouts. No value here changes lock semantics: lock
// requests are never cached.
type Tuning struct {
	EntryTimeout    time.Duration
	AttrTimeout     time.Duration
	NegativeTimeout time.Duration
	// MaxBackground is FUSE's max_background (go-fuse's default, 12,
	// when 0); RELEASE is a background request.
	MaxBackground int
	// NoReaddirPlus lists directories with READDIR rather than
	// READDIRPLUS.
	NoReaddirPlus bool
}

// DefaultTuning is what lockfs uses unless told otherwise; the choices
// are measured in README's "Performance" section.
var DefaultTuning = Tuning{
	EntryTimeout: time.Second,
	AttrTimeout:  time.Second,
}

// Mount mounts the namespace fsys at cfg.Mountpoint and starts serving
// it. The kernel forwards every lock request to lockfs (EnableLocks, R1);
// requests are served concurrently (never SingleThreaded, no inflight
// byte cap: a blocked SETLKW must not stop the unlock that frees it, G4).
func Mount(fsys *FS, cfg MountConfig) (*Mounted, error) {
	if cfg.Engine == nil {
		return nil, fmt.Errorf("lockfs: no lock engine")
	}
	mo := fuse.MountOptions{
		FsName:       cfg.Source,
		Name:         FilesystemType,
		EnableLocks:  true,
		AllowOther:   cfg.AllowOther,
		DirectMount:  os.Geteuid() == 0,
		Debug:        cfg.Debug,
		Logger:       cfg.Logger,
		PanicHandler: cfg.PanicHandler,
		// O_TRUNC arrives with OPEN instead of as a separate SETATTR,
		// so that lockFile.Open can set the times as tmpfs does.
		ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC,
	}
	if !cfg.NoDefaultPermissions {
		mo.Options = append(mo.Options, "default_permissions")
	}
	// go-fuse turns these into mount flags for a direct mount, and
	// fusermount3 understands them; fusermount3 always adds nosuid and
	// nodev for a user other than root.
	mo.Options = append(mo.Options, "nosuid", "nodev")
	if cfg.NoExec {
		mo.Options = append(mo.Options, "noexec")
	}
	fsys.SetLockState(cfg.Engine, cfg.Mountpoint) // for .lockfs and the user.lockfs.* xattrs
	tune := DefaultTuning
	if cfg.Tuning != nil {
		tune = *cfg.Tuning
	}
	mo.MaxBackground = tune.MaxBackground
	mo.DisableReadDirPlus = tune.NoReaddirPlus
	var negative *time.Duration
	if tune.NegativeTimeout > 0 {
		negative = &tune.NegativeTimeout
	}
	raw := gofs.NewNodeFS(fsys.Root(), &gofs.Options{
		MountOptions:    mo,
		EntryTimeout:    &tune.EntryTimeout,
		AttrTimeout:     &tune.AttrTimeout,
		NegativeTimeout: negative,
		NullPermissions: true, // a mode of 000 stays 000
		ExternalNodeID:  true, // NodeId == our inode number
		RootStableAttr:  &gofs.StableAttr{Ino: fuse.FUSE_ROOT_ID},
	})
	srv, err := fuse.NewServer(&lockRaw{RawFileSystem: raw, fsys: fsys, eng: cfg.Engine}, cfg.Mountpoint, &mo)
	if err != nil {
		return nil, err
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		_ = srv.Unmount()
		return nil, err
	}
	return &Mounted{Server: srv, FS: fsys}, nil
}
