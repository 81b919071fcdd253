// Command lockfs mounts a lock directory whose locks are served, shown
// and audited by lockfs. See `lockfs --help`.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes (documented in README and `lockfs --help`).
const (
	exitOK = 0
	// exitFailure: an error while running (including a failed unmount).
	exitFailure = 1
	// exitUsage: bad command line.
	exitUsage = 2
	// exitMountFailed: the mount could not be made; the same code
	// mount(8) uses for "mount failure".
	exitMountFailed = 32
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageError(format string, args ...any) error {
	return &exitError{exitUsage, fmt.Errorf(format, args...)}
}

func main() {
	root := newRootCommand()
	err := root.Execute()
	if err == nil {
		os.Exit(exitOK)
	}
	fmt.Fprintf(os.Stderr, "lockfs: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	os.Exit(exitUsage) // cobra's own errors are usage errors
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "lockfs",
		Short: "A lock directory whose locks you can see",
		Long: `lockfs is a FUSE filesystem mounted at a lock directory (such as Tempest's
[oslo_concurrency] lock_path). Programs keep creating lock files there and
locking them with fcntl/lockf, OFD locks or flock(2); lockfs serves every lock
itself, with the semantics the Linux kernel gives on tmpfs, and records each
acquire, release and wait as a JSON audit event.

Exit status: 0 success, 1 failure, 2 usage error, 32 mount failure.`,
		Example: `  lockfs mount -f --log-file /var/log/lockfs.log /opt/stack/data/tempest
  lockfs mount /tmp/tempest-lock`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newMountCommand())
	root.CompletionOptions.DisableDefaultCmd = true
	return root
}
