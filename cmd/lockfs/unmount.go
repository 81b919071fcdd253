package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

func newUnmountCommand() *cobra.Command {
	var lazy bool
	cmd := &cobra.Command{
		Use:     "unmount [--lazy] MOUNTPOINT",
		Aliases: []string{"umount"},
		Short:   "Unmount a lockfs mount",
		Long: `Unmount the lockfs mount at MOUNTPOINT; the lockfs serving it then exits.

As root this is umount(2); other users go through 'fusermount3 -u', which
only unmounts their own mounts. Only a lockfs mount is unmounted.

While files in the mount are open (a lock is held only while its file is
open) the kernel refuses: lockfs unmount fails with status 1 and says so
('lockfs locks MOUNTPOINT' shows who holds what). --lazy detaches the
mount anyway: programs that have files open keep using them, and their
locks, until they close them, while new opens of MOUNTPOINT see the
directory underneath - so two programs can then believe they hold the
same lock. A stale mount left by a killed lockfs ("Transport endpoint is
not connected") is unmounted too.`,
		Example: `  lockfs unmount /opt/stack/data/tempest
  lockfs unmount --lazy /tmp/tempest-lock`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("unmount needs exactly one MOUNTPOINT (got %d arguments)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUnmount(args[0], lazy)
		},
	}
	cmd.Flags().BoolVarP(&lazy, "lazy", "z", false, "detach the mount even while files in it are open")
	return cmd
}

func runUnmount(path string, lazy bool) error {
	mnt, err := canonicalMountpoint(path)
	if err != nil {
		return usageError("mountpoint %q: %v", path, err)
	}
	e, ok, err := mountAt(mnt)
	switch {
	case err != nil:
		return &exitError{exitFailure, fmt.Errorf("read the mount table: %w", err)}
	case !ok:
		return &exitError{exitFailure, fmt.Errorf("%s is not mounted", mnt)}
	case !e.isLockfs():
		return &exitError{exitFailure, fmt.Errorf("%s is a %s mount, not lockfs; lockfs unmount only unmounts lockfs", mnt, e.FSType)}
	}
	err = unmountRetry(mnt, lazy)
	if errors.Is(err, syscall.EBUSY) {
		return &exitError{exitFailure, fmt.Errorf("%s is busy: files in it are still open (see who holds locks "+
			"with 'lockfs locks %s'); close them and retry, or detach it now with 'lockfs unmount --lazy %s'", mnt, mnt, mnt)}
	}
	if err != nil {
		return &exitError{exitFailure, err}
	}
	return nil
}

// unmountFS unmounts the FUSE mount at mnt: umount2(2) as root,
// `fusermount3 -u` (which checks that the caller mounted it) otherwise.
// With lazy the mount is detached even while files in it are open
// (MNT_DETACH, fusermount3 -z); it lives on, served, until the last of
// them is closed. A refusal because files are open wraps syscall.EBUSY.
func unmountFS(mnt string, lazy bool) error {
	if os.Geteuid() == 0 {
		flags := 0
		if lazy {
			flags = unix.MNT_DETACH
		}
		if err := unix.Unmount(mnt, flags); err != nil {
			return &os.PathError{Op: "umount", Path: mnt, Err: err}
		}
		return nil
	}
	bin, err := fusermountPath()
	if err != nil {
		return err
	}
	args := []string{"-u"}
	if lazy {
		args = append(args, "-z")
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, append(args, "--", mnt)...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return &fusermountError{command: bin + " " + strings.Join(args, " ") + " " + mnt, msg: msg}
	}
	return nil
}

// fusermountError is a failed fusermount3 run. Unwrap recovers the errno
// from its message ("fusermount3: failed to unmount /x: Device or
// resource busy"), so that callers can test for EBUSY.
type fusermountError struct {
	command, msg string
}

func (e *fusermountError) Error() string { return e.command + ": " + e.msg }

func (e *fusermountError) Unwrap() error {
	for _, errno := range []syscall.Errno{syscall.EBUSY, syscall.EINVAL, syscall.EPERM, syscall.EACCES, syscall.ENOENT} {
		if strings.Contains(strings.ToLower(e.msg), errno.Error()) { // Go spells strerror in lower case
			return errno
		}
	}
	return nil
}

// unmountRetry is unmountFS, retried for a moment while the mount is
// busy: the last close of a file by a process that is exiting (a lock
// holder killed a moment ago) may still be on its way.
func unmountRetry(mnt string, lazy bool) error {
	delay := 10 * time.Millisecond
	for try := 0; ; try++ {
		err := unmountFS(mnt, lazy)
		if err == nil || !errors.Is(err, syscall.EBUSY) || try == 4 {
			return err
		}
		time.Sleep(delay)
		delay *= 2
	}
}

// fusermountPath finds fusermount3 (or the older fusermount), in PATH or
// in /bin, as go-fuse does: mount(8) runs its helpers without PATH.
func fusermountPath() (string, error) {
	for _, name := range []string{"fusermount3", "fusermount"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		for _, dir := range []string{"/usr/bin", "/bin"} {
			p := dir + "/" + name
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				return p, nil
			}
		}
	}
	return "", errors.New("fusermount3 not found (install the fuse3 package)")
}
