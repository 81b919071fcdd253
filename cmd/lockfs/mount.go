package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	lockfs "github.com/lockfs/lockfs/fs"
	"github.com/lockfs/lockfs/logging"
	"github.com/lockfs/lockfs/semaphores"
)

// mountOptions is everything the command line says about one mount.
type mountOptions struct {
	mountpoint  string
	tempestConf string // take the mountpoint from this tempest.conf
	source      string // the backend: "mem"
	fsname      string // shown as the mount's source; default: source
	foreground  bool
	pidfile     string

	logFile   string
	logLevel  string
	logFormat string

	allowOther           bool
	noDefaultPermissions bool
	defaultPermissions   bool // -o default_permissions: wins over noDefaultPermissions
	noExec               bool
	uid, gid, mode       string // of the root directory, as given
	rootUID, rootGID     uint32 // … as resolved by check
	rootMode             uint32
	maxFileSize          int64
	maxFiles             int64
	maxBytes             int64
	debug                bool
	tuning               lockfs.Tuning // kernel cache and queue settings

	lazyUnmount bool // on SIGTERM with files still open, detach the mount
	recover     bool // lazily unmount a stale mount at the mountpoint first
	nonempty    bool // mount over a directory that has files

	// readyFD is set on the daemon child: where to report readiness.
	readyFD int
	// notify tells systemd (Type=notify) when the mount is ready.
	notify *notifier

	views viewOptions // --metrics-listen, --warn-held (mount_views.go)
}

func newMountCommand() *cobra.Command {
	o := &mountOptions{}
	cmd := &cobra.Command{
		Use:   "mount [flags] MOUNTPOINT",
		Short: "Mount lockfs on a directory and serve it",
		Long: `Mount an empty lockfs on MOUNTPOINT and serve its locks.

MOUNTPOINT is created, with its parents, when it does not exist, so a
lock_path such as /opt/stack/data/tempest works on a fresh machine. A
MOUNTPOINT with files in it is refused unless --nonempty: the mount would
hide them, and any lock a program holds on one of them. With
--tempest-conf the mountpoint is the [oslo_concurrency] lock_path of that
tempest.conf.

Without --foreground, lockfs returns once the mount is ready and keeps
serving in the background, logging to --log-file; if mounting fails it
exits with status 32 (2 for a bad command line) and the reason on
stderr. With --foreground it stays attached and tells systemd when the
mount is ready ($NOTIFY_SOCKET, Type=notify).

SIGINT and SIGTERM unmount and exit. While files in the mount are still
open the kernel refuses (EBUSY): lockfs logs who holds or waits for which
lock and keeps serving, or with --lazy-unmount detaches the mount and
exits once the last of those files is closed. SIGHUP reopens the log
file.

A stale mount at MOUNTPOINT ("Transport endpoint is not connected", left
by a lockfs that was killed) is reported with the command that removes
it; --recover removes it (a lazy unmount) and mounts again.

Every flag can also be given as a mount option, as mount(8) passes them:
-o allow_other,log_file=/var/log/lockfs.log,mode=1777. The form
'lockfs SOURCE MOUNTPOINT -o OPTIONS' (what mount.fuse3 runs for an fstab
line of type fuse.lockfs) is 'lockfs mount --source SOURCE'. The
options rw, dev, suid, nodev, nosuid, exec, async, defaults, nofail,
_netdev, auto, noauto, user, users, nouser, owner, group, user=*,
comment=* and x-* are ignored; ro is refused.`,
		Example: `  lockfs mount -f /tmp/tempest-lock
  lockfs mount --allow-other --mode 1777 /opt/stack/data/tempest
  lockfs mount --tempest-conf /opt/stack/tempest/etc/tempest.conf --allow-other --mode 1777
  lockfs mem /opt/stack/data/tempest -o allow_other,mode=1777,pidfile=/run/lockfs.pid`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0 && o.tempestConf != "":
			case len(args) == 1 && o.tempestConf != "":
				return usageError("give either MOUNTPOINT or --tempest-conf, not both")
			case len(args) != 1:
				return usageError("mount needs exactly one MOUNTPOINT (got %d arguments); see 'lockfs mount --help'", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.mountpoint = args[0]
			}
			o.notify = takeNotifier()
			return runMount(o, cmd.Flags())
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.BoolVarP(&o.foreground, "foreground", "f", false, "stay in the foreground (for tests and systemd)")
	f.StringVar(&o.tempestConf, "tempest-conf", "", "mount at the [oslo_concurrency] lock_path of this tempest.conf")
	f.StringVar(&o.logFile, "log-file", "", "write the log here (default: stderr in the foreground, "+defaultDaemonLog+" as a daemon)")
	f.StringVar(&o.logLevel, "log-level", "info", "trace, debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "", "json or console (default: console on a terminal, else json)")
	f.StringVar(&o.pidfile, "pidfile", "", "write the serving process's pid here once mounted; removed at exit")
	f.StringVar(&o.source, "source", "mem", "backend: only mem (in memory) exists")
	f.StringVar(&o.fsname, "fsname", "", "name shown as the mount's source in /proc/mounts and df (default: the backend)")
	f.BoolVar(&o.allowOther, "allow-other", false, "let other users use the mount (needs user_allow_other in /etc/fuse.conf for non-root)")
	f.BoolVar(&o.noDefaultPermissions, "no-default-permissions", false, "do not let the kernel enforce file modes (default_permissions is on)")
	f.BoolVar(&o.defaultPermissions, "default-permissions", false, "let the kernel enforce file modes (the default; wins over --no-default-permissions)")
	f.StringVar(&o.uid, "uid", "", "owner of the root directory, a user name or number (default: the mounting user)")
	f.StringVar(&o.gid, "gid", "", "group of the root directory, a group name or number (default: the mounting user's group)")
	f.StringVar(&o.mode, "mode", "", "mode of the root directory, octal (default: 0755; 1777 lets every user create lock files)")
	f.BoolVar(&o.noExec, "noexec", false, "do not allow executing files in the mount")
	f.Int64Var(&o.maxFileSize, "max-file-size", lockfs.DefaultMaxFileSize, "largest content of one file in bytes (EFBIG past it)")
	f.Int64Var(&o.maxFiles, "max-files", 0, "most files and directories (ENOSPC past it; 0: no limit)")
	f.Int64Var(&o.maxBytes, "max-bytes", 0, "most content bytes in all files (ENOSPC past it; 0: no limit)")
	f.BoolVar(&o.lazyUnmount, "lazy-unmount", false, "on SIGTERM/SIGINT while files are open, detach the mount and exit when they are closed")
	f.BoolVar(&o.recover, "recover", false, "lazily unmount a stale lockfs mount (left by a killed lockfs) at MOUNTPOINT first")
	f.BoolVar(&o.nonempty, "nonempty", false, "mount even if MOUNTPOINT has files, hiding them (and any lock held on them)")
	f.BoolVar(&o.debug, "debug", false, "log every FUSE request (very verbose)")
	f.DurationVar(&o.tuning.EntryTimeout, "entry-timeout", lockfs.DefaultTuning.EntryTimeout, "how long the kernel may cache a name lookup")
	f.DurationVar(&o.tuning.AttrTimeout, "attr-timeout", lockfs.DefaultTuning.AttrTimeout, "how long the kernel may cache a file's attributes")
	f.DurationVar(&o.tuning.NegativeTimeout, "negative-timeout", lockfs.DefaultTuning.NegativeTimeout, "how long the kernel may cache that a name does not exist")
	f.IntVar(&o.tuning.MaxBackground, "max-background", lockfs.DefaultTuning.MaxBackground, "most asynchronous FUSE requests (RELEASE among them) the kernel keeps in flight")
	f.BoolVar(&o.tuning.NoReaddirPlus, "no-readdirplus", lockfs.DefaultTuning.NoReaddirPlus, "list directories without attributes (READDIR instead of READDIRPLUS)")
	addViewFlags(f, &o.views)
	f.IntVar(&o.readyFD, "ready-fd", -1, "internal: report readiness on this fd")
	_ = f.MarkHidden("ready-fd")
	return cmd
}

// defaultDaemonLog is where a backgrounded lockfs logs without --log-file.
const defaultDaemonLog = "/var/log/lockfs/MOUNTPOINT.log"

// daemonLogPath turns /opt/stack/data/tempest into
// /var/log/lockfs/opt-stack-data-tempest.log (root) or the same name under
// $XDG_STATE_HOME/lockfs (other users).
func daemonLogPath(mountpoint string) string {
	name := strings.ReplaceAll(strings.Trim(mountpoint, "/"), "/", "-")
	if name == "" {
		name = "root"
	}
	dir := "/var/log/lockfs"
	if os.Geteuid() != 0 {
		state := os.Getenv("XDG_STATE_HOME")
		if !filepath.IsAbs(state) { // unset, or invalid per the XDG spec
			home, err := os.UserHomeDir()
			if err != nil || !filepath.IsAbs(home) {
				return "" // the caller asks for --log-file
			}
			state = filepath.Join(home, ".local", "state")
		}
		dir = filepath.Join(state, "lockfs")
	}
	return filepath.Join(dir, name+".log")
}

// runMount mounts and serves in the foreground (and as the daemon
// child), or starts the daemon and returns once it has mounted.
func runMount(o *mountOptions, flags *pflag.FlagSet) error {
	if err := o.check(); err != nil {
		return err
	}
	if !o.foreground && o.readyFD < 0 {
		return daemonize(o, flags)
	}
	ready := newReadiness(o.readyFD)
	err := serve(o, ready)
	if err != nil && ready.fail(err) {
		return &reportedError{err}
	}
	return err
}

// check validates the options and resolves what the daemon child needs
// resolved (it runs in /): the mountpoint, the log and pid files become
// absolute, the root's owner and mode numbers. Everything that a look at
// the command line can refuse is refused here, before daemonizing, as a
// usage error.
func (o *mountOptions) check() error {
	if o.tempestConf != "" {
		p, err := tempestLockPath(o.tempestConf)
		if err != nil {
			return usageError("%v", err)
		}
		o.mountpoint = p
	}
	if _, ok := fuseFdMountpoint(o.mountpoint); ok {
		return usageError("mountpoint %s: an already opened /dev/fuse (mount.fuse3's drop_privileges) is not supported; "+
			"use setuid=USER in the fstab entry, or mount as that user", o.mountpoint)
	}
	mnt, err := canonicalMountpoint(o.mountpoint)
	if err != nil {
		return usageError("mountpoint %q: %v", o.mountpoint, err)
	}
	o.mountpoint = mnt
	if o.source != "mem" {
		return usageError("unknown backend %q: SOURCE (the first argument of 'lockfs SOURCE MOUNTPOINT', "+
			"the first field of a fuse.lockfs fstab line) names the backend, and only \"mem\" (in memory) exists "+
			"(a mistyped command? see 'lockfs --help')", o.source)
	}
	if o.fsname == "" {
		o.fsname = o.source
	}
	if strings.ContainsAny(o.fsname, ", \t\n") {
		return usageError("--fsname %q: no commas or white space", o.fsname)
	}
	switch o.logFormat {
	case "", "json", "console":
	default:
		return usageError("--log-format must be json or console, not %q", o.logFormat)
	}
	if l, err := zerolog.ParseLevel(strings.ToLower(o.logLevel)); err != nil || l == zerolog.NoLevel || o.logLevel == "" {
		return usageError("--log-level must be trace, debug, info, warn or error, not %q", o.logLevel)
	}
	if o.maxFileSize <= 0 {
		return usageError("--max-file-size must be positive")
	}
	if o.maxFiles < 0 || o.maxBytes < 0 {
		return usageError("--max-files and --max-bytes must not be negative")
	}
	if o.rootUID, err = lookupUID(o.uid); err != nil {
		return usageError("--uid: %v", err)
	}
	if o.rootGID, err = lookupGID(o.gid); err != nil {
		return usageError("--gid: %v", err)
	}
	if o.rootMode, err = parseMode(o.mode); err != nil {
		return usageError("--mode: %v", err)
	}
	for _, p := range []*string{&o.logFile, &o.pidfile} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return usageError("%v", err)
			}
		}
	}
	if o.allowOther && os.Geteuid() != 0 && !fuseConfAllowsOther() {
		return &exitError{exitMountFailed, errors.New("allow_other: a user other than root may only use it when " +
			"/etc/fuse.conf has a line 'user_allow_other' (fusermount3 enforces this); add it as root, or mount as root")}
	}
	return nil
}

// lookupUID resolves a user name or number; "" is the caller.
func lookupUID(s string) (uint32, error) {
	if s == "" {
		return uint32(os.Geteuid()), nil
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	return uint32(n), err
}

// lookupGID resolves a group name or number; "" is the caller's group.
func lookupGID(s string) (uint32, error) {
	if s == "" {
		return uint32(os.Getegid()), nil
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(g.Gid, 10, 32)
	return uint32(n), err
}

// parseMode parses an octal mode such as 1777 or 0755; "" is 0755.
func parseMode(s string) (uint32, error) {
	if s == "" {
		return 0o755, nil
	}
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n == 0 || n > 0o7777 {
		return 0, fmt.Errorf("%q is not an octal mode between 1 and 7777 (such as 1777 or 0755)", s)
	}
	return uint32(n), nil
}

// fuseConfAllowsOther reports whether /etc/fuse.conf lets users other
// than root mount with allow_other (fuse(8)).
func fuseConfAllowsOther() bool {
	b, err := os.ReadFile("/etc/fuse.conf")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "user_allow_other" {
			return true
		}
	}
	return false
}

// fuseFdMountpoint recognises the /dev/fd/N mountpoint of a /dev/fuse
// opened by someone else (go-fuse's "magic mountpoint").
func fuseFdMountpoint(p string) (int, bool) {
	rest, ok := strings.CutPrefix(p, "/dev/fd/")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n >= 0
}

// serve mounts and serves until the mount goes away: unmounted from
// outside, or by a signal.
func serve(o *mountOptions, ready *readiness) error {
	// Caught from the start: a SIGTERM that arrives while mounting is
	// handled once mounted, instead of killing lockfs with the mount
	// left behind, stale. Buffered: a signal that arrives while we
	// handle another is kept.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	recovered, err := prepareMountpoint(o.mountpoint, o.recover, o.nonempty)
	if err != nil {
		return &exitError{exitMountFailed, err}
	}
	logger, err := logging.New(logging.Config{File: o.logFile, Level: o.logLevel, Format: logging.Format(o.logFormat)})
	if err != nil {
		return &exitError{exitMountFailed, err}
	}
	defer logger.Close()
	if recovered != "" {
		logger.Warn().Str("event", "recovered").Str("mountpoint", o.mountpoint).Msg(recovered)
	}

	fsys := lockfs.New(lockfs.Options{
		MaxFileSize: o.maxFileSize,
		MaxFiles:    o.maxFiles,
		MaxBytes:    o.maxBytes,
		RootMode:    o.rootMode,
		RootUID:     o.rootUID,
		RootGID:     o.rootGID,
	})
	audit := logging.NewAudit(logger, func(node uint64) (string, string) {
		name, rel := fsys.Name(node)
		return name, filepath.Join(o.mountpoint, rel)
	})
	defer audit.Close() // writes the queued events before the log closes
	table, stopViews, err := startViews(&o.views, logger, audit, fsys)
	if err != nil {
		return err
	}
	defer stopViews()
	defaultPermissions := !o.noDefaultPermissions || o.defaultPermissions
	m, err := lockfs.Mount(fsys, lockfs.MountConfig{
		Mountpoint:           o.mountpoint,
		Source:               o.fsname,
		Engine:               table,
		AllowOther:           o.allowOther,
		NoDefaultPermissions: !defaultPermissions,
		NoExec:               o.noExec,
		Debug:                o.debug,
		Tuning:               &o.tuning,
		Logger:               log.New(zerologWriter{logger.Logger, zerolog.WarnLevel}, "go-fuse: ", 0),
		PanicHandler: func(v any) fuse.Status {
			logger.Error().Interface("panic", v).Msg("request handler panicked; answered EIO")
			return fuse.EIO
		},
	})
	if err != nil {
		return &exitError{exitMountFailed, fmt.Errorf("mount %s: %w", o.mountpoint, err)}
	}
	if o.pidfile != "" {
		if err := writePidfile(o.pidfile, os.Getpid()); err != nil {
			if uerr := m.Unmount(); uerr != nil {
				logger.Error().Err(uerr).Msg("unmount after the pidfile failed")
			}
			return &exitError{exitMountFailed, err}
		}
		defer removePidfile(o.pidfile, os.Getpid())
	}
	logger.Info().Str("event", "mounted").Str("mountpoint", o.mountpoint).Int("pid", os.Getpid()).
		Str("source", o.source).Bool("allow_other", o.allowOther).Bool("default_permissions", defaultPermissions).
		Uint32("uid", o.rootUID).Uint32("gid", o.rootGID).Str("mode", fmt.Sprintf("%04o", o.rootMode)).
		Msg("lockfs mounted at " + o.mountpoint)
	if o.readyFD >= 0 {
		detachStderr(o.logFile)
	}
	ready.ok()
	if err := o.notify.notify("READY=1", "STATUS=Serving "+o.mountpoint, fmt.Sprintf("MAINPID=%d", os.Getpid())); err != nil {
		logger.Error().Err(err).Msg("cannot tell systemd the mount is ready")
	}
	return waitUnmounted(o, sigs, logger, m, table, fsys)
}

// waitUnmounted serves until the mount is gone. SIGINT and SIGTERM
// unmount it; when the kernel refuses because files are still open,
// lockfs logs who holds what and keeps serving, or with --lazy-unmount
// detaches the mount and serves the open files until they are closed.
// SIGHUP reopens the log file.
func waitUnmounted(o *mountOptions, sigs <-chan os.Signal, logger *logging.Logger, m *lockfs.Mounted, table *semaphores.Table, fsys *lockfs.FS) error {
	served := make(chan struct{})
	go func() {
		m.Wait()
		close(served)
	}()
	detached := false
	for {
		select {
		case <-served:
			// Unmounted from outside (lockfs unmount, fusermount3 -u,
			// umount), or detached and the last open file closed.
			logger.Info().Str("event", "unmounted").Str("mountpoint", o.mountpoint).Msg("lockfs unmounted")
			return nil
		case s := <-sigs:
			if s == syscall.SIGHUP {
				if err := logger.Reopen(); err != nil {
					logger.Error().Err(err).Msg("SIGHUP: cannot reopen log file")
				} else {
					logger.Info().Str("event", "log_reopened").Msg("log file reopened")
				}
				continue
			}
			if detached {
				logger.Warn().Str("event", "still_detached").Str("signal", s.String()).
					Msg("already detached from " + o.mountpoint + "; exiting once its open files are closed")
				continue
			}
			err := unmountRetry(o.mountpoint, false)
			if err == nil {
				_ = o.notify.notify("STOPPING=1")
				<-served
				logger.Info().Str("event", "unmounted").Str("mountpoint", o.mountpoint).Str("signal", s.String()).Msg("lockfs unmounted")
				return nil
			}
			if !errors.Is(err, syscall.EBUSY) {
				logger.Error().Str("event", "unmount_failed").Err(err).Msg("cannot unmount " + o.mountpoint + "; still serving")
				continue
			}
			held := logHolders(logger, table, fsys, o.mountpoint, err, o.lazyUnmount)
			if !o.lazyUnmount {
				_ = o.notify.notify(fmt.Sprintf("STATUS=Unmount refused: files still open, %d locked; still serving %s", held, o.mountpoint))
				continue
			}
			if err := unmountFS(o.mountpoint, true); err != nil {
				logger.Error().Str("event", "unmount_failed").Err(err).Msg("cannot detach " + o.mountpoint + "; still serving")
				continue
			}
			detached = true
			_ = o.notify.notify("STOPPING=1", "STATUS=Detached; serving the files still open")
			logger.Warn().Str("event", "detached").Str("mountpoint", o.mountpoint).Str("signal", s.String()).
				Msg("lazily unmounted " + o.mountpoint + ": the files still open keep their locks until they are closed; " +
					"lockfs exits then")
		}
	}
}

// logHolders explains a refused unmount: who still holds or waits for
// what. It returns the number of files with locks or waiters.
func logHolders(logger *logging.Logger, table *semaphores.Table, fsys *lockfs.FS, mnt string, err error, lazy bool) int {
	snap := table.Snapshot()
	next := "still serving (--lazy-unmount detaches instead)"
	if lazy {
		next = "detaching it (--lazy-unmount)"
	}
	logger.Warn().Str("event", "unmount_refused").Err(err).Int("locked_files", len(snap.Files)).
		Msg(fmt.Sprintf("unmount refused: files in %s are still open (%d with locks); %s", mnt, len(snap.Files), next))
	for _, f := range snap.Files {
		name, rel := fsys.Name(f.Node)
		for _, l := range f.Locks {
			cmd := processName(l.Pid)
			logger.Warn().Str("event", "still_held").Str("lock", name).Str("path", filepath.Join(mnt, rel)).
				Str("kind", l.Class.String()).Str("mode", l.Type.String()).Uint32("pid", l.Pid).Str("command", cmd).
				Msg(fmt.Sprintf("still held: %s by pid %d (%s)", name, l.Pid, cmd))
		}
		for _, w := range f.Waiters {
			cmd := processName(w.Pid)
			logger.Warn().Str("event", "still_waiting").Str("lock", name).Str("path", filepath.Join(mnt, rel)).
				Str("kind", w.Class.String()).Str("mode", w.Type.String()).Uint32("pid", w.Pid).Str("command", cmd).
				Msg(fmt.Sprintf("still waiting: %s by pid %d (%s)", name, w.Pid, cmd))
		}
	}
	return len(snap.Files)
}

// processName is the command name of pid, or "?" once it has exited.
func processName(pid uint32) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// prepareMountpoint makes mnt ready to mount on: it creates it with its
// parents when missing, and refuses a file, a live lockfs mount, a stale
// FUSE mount left by a killed lockfs - which with recover it lazily
// unmounts, returning what it did, for the log - and, unless nonempty, a
// directory with files in it. Mounting over files hides them, and a
// program that holds a lock on one of them would no longer exclude the
// programs that open the same name in lockfs (libfuse 2 refused a
// non-empty mountpoint for similar reasons; fusermount3 no longer does).
// Debian's /etc/tempest/tempest.conf, for one, sets lock_path =
// /var/lock, the system's lock directory.
func prepareMountpoint(mnt string, recover, nonempty bool) (recovered string, err error) {
	for try := 0; ; try++ {
		// A FUSE mount is stale when its server is gone. stat(2) can
		// still answer from the attribute cache; statfs(2) always asks
		// the server.
		if e, ok, _ := mountAt(mnt); ok && strings.HasPrefix(e.FSType, "fuse") {
			var sfs unix.Statfs_t
			err := unix.Statfs(mnt, &sfs)
			switch {
			case !isStale(err) && e.isLockfs():
				return recovered, fmt.Errorf("%s is already a lockfs mount; unmount it first ('lockfs unmount %s')", mnt, mnt)
			case !isStale(err):
			case !e.isLockfs():
				return recovered, fmt.Errorf("%s is a stale %s mount (transport endpoint is not connected), not a lockfs one; "+
					"unmount it with 'fusermount3 -uz %s'", mnt, e.FSType, mnt)
			case !recover:
				return recovered, fmt.Errorf("%s is a stale lockfs mount (transport endpoint is not connected: the lockfs "+
					"serving it was killed, and every lock in it is lost); unmount it with 'fusermount3 -uz %s' "+
					"(or 'lockfs unmount --lazy %s') and mount again, or mount with --recover", mnt, mnt, mnt)
			case try == 10:
				return recovered, fmt.Errorf("%s: still stale after %d lazy unmounts", mnt, try)
			default:
				if err := unmountFS(mnt, true); err != nil {
					return recovered, fmt.Errorf("--recover: %w", err)
				}
				recovered = "recovered: lazily unmounted the stale lockfs mount at " + mnt + " (the lockfs serving it was killed)"
				continue // another one may be under it
			}
		}
		st, err := os.Stat(mnt)
		switch {
		case err == nil && !st.IsDir():
			return recovered, fmt.Errorf("mountpoint %s is not a directory", mnt)
		case err == nil:
			if names := dirEntries(mnt, 3); len(names) > 0 && !nonempty {
				return recovered, fmt.Errorf("mountpoint %s is not empty (%s): lockfs would hide those files, and any lock "+
					"a program holds on one of them; remove them if nothing uses them, or mount with --nonempty", mnt, strings.Join(names, ", "))
			}
			return recovered, nil
		case errors.Is(err, os.ErrNotExist):
			if err := os.MkdirAll(mnt, 0o755); err != nil {
				return recovered, fmt.Errorf("create mountpoint: %w", err)
			}
			return recovered, nil
		default:
			return recovered, fmt.Errorf("mountpoint: %w", err)
		}
	}
}

// dirEntries returns up to n names in dir, and none when it cannot be
// read (a user may own a mountpoint that it cannot list).
func dirEntries(dir string, n int) []string {
	f, err := os.Open(dir)
	if err != nil {
		return nil
	}
	defer f.Close()
	names, _ := f.Readdirnames(n)
	if len(names) == n {
		names[n-1] = "…"
	}
	return names
}

// isStale reports whether err is what a FUSE mount whose server is gone
// answers: ENOTCONN after the server died, ECONNABORTED after an abort
// through /sys/fs/fuse/connections.
func isStale(err error) bool {
	return errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED)
}

// zerologWriter adapts the standard logger go-fuse uses.
type zerologWriter struct {
	l     zerolog.Logger
	level zerolog.Level
}

func (w zerologWriter) Write(p []byte) (int, error) {
	w.l.WithLevel(w.level).Msg(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = zerologWriter{}
