// Command lockfs mounts a lock directory whose locks are served, shown
// and audited by lockfs. See `lockfs --help`.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
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

// reportedError is an error the daemon child has already reported to
// the process that started it (through the readiness pipe), which prints
// it: the child only exits with its code.
type reportedError struct{ error }

func (e *reportedError) Unwrap() error { return e.error }

func usageError(format string, args ...any) error {
	return &exitError{exitUsage, fmt.Errorf(format, args...)}
}

func main() {
	root := newRootCommand()
	err := rewriteCommandLine(root, os.Args[1:])
	if err == nil {
		err = root.Execute()
	}
	if err == nil {
		os.Exit(exitOK)
	}
	var rep *reportedError
	if !errors.As(err, &rep) {
		fmt.Fprintf(os.Stderr, "lockfs: %v\n", err)
	}
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
	root.AddCommand(newMountCommand(), newUnmountCommand(), newLocksCommand())
	root.CompletionOptions.DisableDefaultCmd = true
	return root
}

// rewriteCommandLine gives root the command line to parse: the mount
// helper form and -o options rewritten into flags (args.go).
func rewriteCommandLine(root *cobra.Command, args []string) error {
	var mountFlags *pflag.FlagSet
	for _, c := range root.Commands() {
		if c.Name() == "mount" {
			mountFlags = c.Flags()
		}
	}
	args, err := rewriteArgs(args, commandNames(root), mountFlags)
	if err != nil {
		return err
	}
	root.SetArgs(args)
	return nil
}
