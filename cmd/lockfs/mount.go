package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	lockfs "github.com/lockfs/lockfs/fs"
	"github.com/lockfs/lockfs/logging"
	"github.com/lockfs/lockfs/semaphores"
)

// mountOptions is everything the command line says about one mount.
type mountOptions struct {
	mountpoint string
	source     string
	foreground bool

	logFile   string
	logLevel  string
	logFormat string

	allowOther           bool
	noDefaultPermissions bool
	maxFileSize          int64
	maxFiles             int64
	maxBytes             int64
	debug                bool

	// readyFD is set on the daemon child: where to report readiness.
	readyFD int
}

func newMountCommand() *cobra.Command {
	o := &mountOptions{}
	cmd := &cobra.Command{
		Use:   "mount [flags] MOUNTPOINT",
		Short: "Mount lockfs on a directory and serve it",
		Long: `Mount an empty lockfs on MOUNTPOINT and serve its locks.

MOUNTPOINT is created, with its parents, when it does not exist, so a
lock_path such as /opt/stack/data/tempest works on a fresh machine.

Without --foreground, lockfs returns once the mount is ready and keeps
serving in the background; if mounting fails it exits with status 32 and
the reason on stderr. With --foreground it stays attached; SIGINT and
SIGTERM unmount and exit (while lock files are still open the unmount is
refused: lockfs logs who holds what and keeps serving). SIGHUP reopens
the log file.`,
		Example: `  lockfs mount -f /tmp/tempest-lock
  lockfs mount --log-file /var/log/lockfs.log /opt/stack/data/tempest`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("mount needs exactly one MOUNTPOINT (got %d arguments); see 'lockfs mount --help'", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.mountpoint = args[0]
			return runMount(o)
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.BoolVarP(&o.foreground, "foreground", "f", false, "stay in the foreground (for tests and systemd)")
	f.StringVar(&o.logFile, "log-file", "", "write the log here (default: stderr in the foreground, "+defaultDaemonLog+" as a daemon)")
	f.StringVar(&o.logLevel, "log-level", "info", "trace, debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "", "json or console (default: console on a terminal, else json)")
	f.StringVar(&o.source, "source", "mem", "backend name, shown as the mount's source")
	f.BoolVar(&o.allowOther, "allow-other", false, "let other users use the mount (needs user_allow_other in /etc/fuse.conf for non-root)")
	f.BoolVar(&o.noDefaultPermissions, "no-default-permissions", false, "do not let the kernel enforce file modes (default_permissions is on)")
	f.Int64Var(&o.maxFileSize, "max-file-size", lockfs.DefaultMaxFileSize, "largest content of one file in bytes (EFBIG past it)")
	f.Int64Var(&o.maxFiles, "max-files", 0, "most files and directories (ENOSPC past it; 0: no limit)")
	f.Int64Var(&o.maxBytes, "max-bytes", 0, "most content bytes in all files (ENOSPC past it; 0: no limit)")
	f.BoolVar(&o.debug, "debug", false, "log every FUSE request (very verbose)")
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
		if state == "" {
			home, _ := os.UserHomeDir()
			state = filepath.Join(home, ".local", "state")
		}
		dir = filepath.Join(state, "lockfs")
	}
	return filepath.Join(dir, name+".log")
}

func runMount(o *mountOptions) error {
	mnt, err := filepath.Abs(o.mountpoint)
	if err != nil {
		return usageError("mountpoint %q: %v", o.mountpoint, err)
	}
	o.mountpoint = mnt
	switch o.logFormat {
	case "", "json", "console":
	default:
		return usageError("--log-format must be json or console, not %q", o.logFormat)
	}
	if o.maxFileSize <= 0 {
		return usageError("--max-file-size must be positive")
	}
	if !o.foreground && o.readyFD < 0 {
		return daemonize(o)
	}
	ready := newReadiness(o.readyFD)
	err = serve(o, ready)
	if err != nil {
		ready.fail(err)
	}
	return err
}

// serve mounts and serves until a signal unmounts the mount.
func serve(o *mountOptions, ready *readiness) error {
	if err := prepareMountpoint(o.mountpoint); err != nil {
		return &exitError{exitMountFailed, err}
	}
	logger, err := logging.New(logging.Config{File: o.logFile, Level: o.logLevel, Format: logging.Format(o.logFormat)})
	if err != nil {
		return usageError("%v", err)
	}
	defer logger.Close()

	fsys := lockfs.New(lockfs.Options{
		MaxFileSize: o.maxFileSize,
		MaxFiles:    o.maxFiles,
		MaxBytes:    o.maxBytes,
	})
	audit := logging.NewAudit(logger, func(node uint64) (string, string) {
		name, rel := fsys.Name(node)
		return name, filepath.Join(o.mountpoint, rel)
	})
	table := semaphores.NewTable(semaphores.Options{Observer: audit})
	m, err := lockfs.Mount(fsys, lockfs.MountConfig{
		Mountpoint:           o.mountpoint,
		Source:               o.source,
		Engine:               table,
		AllowOther:           o.allowOther,
		NoDefaultPermissions: o.noDefaultPermissions,
		Debug:                o.debug,
		Logger:               log.New(zerologWriter{logger.Logger, zerolog.WarnLevel}, "go-fuse: ", 0),
		PanicHandler: func(v any) fuse.Status {
			logger.Error().Interface("panic", v).Msg("request handler panicked; answered EIO")
			return fuse.EIO
		},
	})
	if err != nil {
		return &exitError{exitMountFailed, fmt.Errorf("mount %s: %w", o.mountpoint, err)}
	}
	logger.Info().Str("event", "mounted").Str("mountpoint", o.mountpoint).Int("pid", os.Getpid()).
		Str("source", o.source).Msg("lockfs mounted at " + o.mountpoint)
	ready.ok()

	// Buffered: a signal that arrives while we handle another is kept.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	served := make(chan struct{})
	go func() {
		m.Wait()
		close(served)
	}()
	for {
		select {
		case <-served:
			// Unmounted from outside (fusermount3 -u, umount).
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
			if err := m.Unmount(); err != nil {
				logHolders(logger, table, fsys, o.mountpoint, err)
				continue
			}
			<-served
			logger.Info().Str("event", "unmounted").Str("mountpoint", o.mountpoint).Str("signal", s.String()).Msg("lockfs unmounted")
			return nil
		}
	}
}

// logHolders explains a refused unmount: who still holds or waits for
// what.
func logHolders(logger *logging.Logger, table *semaphores.Table, fsys *lockfs.FS, mnt string, err error) {
	snap := table.Snapshot()
	logger.Warn().Str("event", "unmount_refused").Err(err).Int("locked_files", len(snap.Files)).
		Msg("unmount refused: files in " + mnt + " are still open; still serving")
	for _, f := range snap.Files {
		name, rel := fsys.Name(f.Node)
		for _, l := range f.Locks {
			logger.Warn().Str("event", "still_held").Str("lock", name).Str("path", filepath.Join(mnt, rel)).
				Str("kind", l.Class.String()).Str("mode", l.Type.String()).Uint32("pid", l.Pid).
				Msg("still held: " + name)
		}
		for _, w := range f.Waiters {
			logger.Warn().Str("event", "still_waiting").Str("lock", name).Str("path", filepath.Join(mnt, rel)).
				Str("kind", w.Class.String()).Str("mode", w.Type.String()).Uint32("pid", w.Pid).
				Msg("still waiting: " + name)
		}
	}
}

// prepareMountpoint creates the mountpoint with its parents, and explains
// a stale FUSE mount left by a killed lockfs.
func prepareMountpoint(mnt string) error {
	_, err := os.Stat(mnt)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ENOTCONN):
		return fmt.Errorf("%s is a stale FUSE mount (transport endpoint is not connected: the lockfs serving it died); "+
			"unmount it with 'fusermount3 -u %s' (or 'umount -l %s') and mount again", mnt, mnt, mnt)
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(mnt, 0o755); err != nil {
			return fmt.Errorf("create mountpoint: %w", err)
		}
		return nil
	}
	return fmt.Errorf("mountpoint: %w", err)
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
