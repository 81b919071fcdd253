package main

// `lockfs locks`: lslocks(8) for lockfs mounts.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	lockfs "github.com/lockfs/lockfs/fs"
	"github.com/lockfs/lockfs/views"
)

// locksOptions are lslocks's options.
type locksOptions struct {
	json       bool
	output     string
	outputAll  bool
	noHeadings bool
	raw        bool
	noTruncate bool
	pid        int
}

func newLocksCommand() *cobra.Command {
	o := &locksOptions{}
	cmd := &cobra.Command{
		Use:   "locks [flags] [MOUNTPOINT...]",
		Short: "List who holds and who waits for the locks of lockfs mounts (like lslocks)",
		Long: `List the locks of lockfs mounts the way lslocks(8) lists the kernel's: one
line per lock held and per process waiting for one. lslocks and /proc/locks
cannot see locks served by a FUSE file system; this can, and it also shows
the waiters that never block in the kernel: fasteners and oslo.concurrency
retry F_SETLK every 10-100 ms, and count as waiting (MODE with "*",
STATE polling, ATTEMPTS so far) from their first refused attempt until they
get the lock or close the file.

Without MOUNTPOINT, every lockfs mount of the machine is listed (those of
type fuse.lockfs in /proc/self/mountinfo). The listing is read from
MOUNTPOINT/.lockfs/locks.json, one consistent snapshot per mount; a mount
that does not answer within 5 seconds (its lockfs stopped or hung), or is
stale, is reported on stderr, the others are listed, and the exit status
is 1.

Columns as lslocks: COMMAND PID TYPE (POSIX, OFDLCK, FLOCK) SIZE MODE
(READ/WRITE, "*" for a waiter) M START END (0: to end of file) PATH BLOCKER
(pid of the first lock in a waiter's way), then WAITED and HELD (how long
it has waited, or held the lock) and ATTEMPTS (a waiter's requests so far).
Unlike lslocks, which prints pid -1 for OFD locks, lockfs shows the pid that
took them. -J prints lslocks's JSON ({"locks":[...]}) with WAITED and HELD
in seconds and the extra keys lock, owner, uid, inode, state and since.

Available output columns:
` + columnHelp() + `
Exit status: 0 success, 1 failure (not a lockfs mount, a mount that cannot
be read), 2 usage error.`,
		Example: `  lockfs locks
  lockfs locks /opt/stack/data/tempest
  lockfs locks -J | jq '.locks[] | select(.mode | endswith("*"))'
  lockfs locks -o +LOCK,STATE -p 8358`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLocks(o, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.BoolVarP(&o.json, "json", "J", false, "use JSON output format")
	f.StringVarP(&o.output, "output", "o", "", "output columns, comma-separated; +LIST adds them to the default")
	f.BoolVar(&o.outputAll, "output-all", false, "output all columns")
	f.BoolVarP(&o.noHeadings, "noheadings", "n", false, "don't print headings")
	f.BoolVarP(&o.raw, "raw", "r", false, "use the raw output format")
	f.BoolVarP(&o.noTruncate, "notruncate", "u", false, "don't truncate text in columns")
	f.IntVarP(&o.pid, "pid", "p", 0, "display only locks held by or awaited by this process")
	return cmd
}

func columnHelp() string {
	var b strings.Builder
	for _, c := range views.AllColumns() {
		fmt.Fprintf(&b, "  %10s  %s\n", c.Name(), c.Help())
	}
	return b.String()
}

func runLocks(o *locksOptions, args []string, stdout, stderr io.Writer) error {
	vo := views.Options{JSON: o.json, Raw: o.raw, NoHeadings: o.noHeadings}
	def := views.DefaultColumns
	if o.json {
		def = views.DefaultJSONColumns
	}
	switch {
	case o.outputAll:
		vo.Columns = views.AllColumns()
	case o.output != "":
		cols, err := views.ParseColumns(o.output, def)
		if err != nil {
			return usageError("--output: %v", err)
		}
		vo.Columns = cols
	}
	if o.pid < 0 {
		return usageError("--pid: %d is not a process id", o.pid)
	}
	mounts, err := lockfsMounts(args)
	if err != nil {
		return &exitError{exitFailure, err}
	}
	// Read every mount at once, so that unresponsive ones cost one
	// timeout in all; list them in mount table order.
	type result struct {
		rows []views.Row
		err  error
	}
	results := make([]chan result, len(mounts))
	for i, mnt := range mounts {
		results[i] = make(chan result, 1)
		go func() {
			rows, err := readLocks(mnt)
			results[i] <- result{rows, err}
		}()
	}
	var rows []views.Row
	var failed []error
	for _, ch := range results {
		r := <-ch
		if r.err != nil {
			failed = append(failed, r.err)
			continue
		}
		rows = append(rows, r.rows...)
	}
	if o.pid != 0 {
		rows = slices.DeleteFunc(rows, func(r views.Row) bool { return r.PID != int64(o.pid) })
	}
	if !o.json && !o.raw && !o.noTruncate {
		vo.Width = terminalWidth(stdout)
	}
	if err := views.Write(stdout, rows, vo); err != nil {
		return &exitError{exitFailure, err}
	}
	if len(failed) > 0 {
		for _, err := range failed[:len(failed)-1] {
			fmt.Fprintf(stderr, "lockfs: %v\n", err)
		}
		return &exitError{exitFailure, failed[len(failed)-1]}
	}
	return nil
}

// lockfsMounts returns the mount points to list: those given, each of
// which must be a lockfs mount point, or every lockfs mount.
func lockfsMounts(args []string) ([]string, error) {
	table, err := readMountTable()
	if err != nil {
		return nil, fmt.Errorf("read the mount table: %w", err)
	}
	if len(args) == 0 {
		var mounts []string
		for _, m := range table {
			if m.isLockfs() && !slices.Contains(mounts, m.Mountpoint) {
				mounts = append(mounts, m.Mountpoint)
			}
		}
		return mounts, nil
	}
	mounts := make([]string, 0, len(args))
	for _, arg := range args {
		dir, err := canonicalMountpoint(arg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", arg, err)
		}
		var top *mountTableEntry
		for i := range table {
			if table[i].Mountpoint == dir {
				top = &table[i] // later lines are mounted on top
			}
		}
		switch {
		case top == nil:
			return nil, fmt.Errorf("%s is not a lockfs mount: nothing is mounted on %s%s", arg, dir, insideLockfs(table, dir))
		case !top.isLockfs():
			return nil, fmt.Errorf("%s is not a lockfs mount: %s is a %s mount", arg, dir, top.FSType)
		}
		mounts = append(mounts, dir)
	}
	return mounts, nil
}

// insideLockfs says which lockfs mount holds dir, if one does.
func insideLockfs(table []mountTableEntry, dir string) string {
	best := ""
	for _, m := range table {
		if m.isLockfs() && strings.HasPrefix(dir, strings.TrimSuffix(m.Mountpoint, "/")+"/") && len(m.Mountpoint) > len(best) {
			best = m.Mountpoint
		}
	}
	if best == "" {
		return ""
	}
	return " (it is inside the lockfs mount " + best + ")"
}

// mountReadTimeout bounds how long `lockfs locks` waits for one mount to
// answer. A lockfs that is stopped (SIGSTOP, a debugger) or hung never
// answers, and without a bound one such mount would hang the listing of
// every other.
const mountReadTimeout = 5 * time.Second

// readLocks reads the listing of one mount, giving up after
// mountReadTimeout (the reading goroutine then stays blocked until the
// command exits).
func readLocks(mnt string) ([]views.Row, error) {
	type result struct {
		rows []views.Row
		err  error
	}
	done := make(chan result, 1)
	go func() {
		rows, err := readLocksNow(mnt)
		done <- result{rows, err}
	}()
	select {
	case r := <-done:
		return r.rows, r.err
	case <-time.After(mountReadTimeout):
		return nil, fmt.Errorf("%s: no answer within %v (is the lockfs serving it stopped or hung?)", mnt, mountReadTimeout)
	}
}

func readLocksNow(mnt string) ([]views.Row, error) {
	path := filepath.Join(mnt, lockfs.ViewDirName, "locks.json")
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, syscall.ENOTCONN) {
			return nil, fmt.Errorf("%s: stale mount (transport endpoint is not connected: the lockfs serving it died); "+
				"'lockfs unmount %s' removes it", mnt, mnt)
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: no %s (served by a lockfs older than its lock views?)", mnt, path)
		}
		return nil, fmt.Errorf("%s: cannot read its lock listing: %w", mnt, err)
	}
	defer f.Close()
	rows, err := views.ParseJSON(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rows, nil
}

// terminalWidth is the width of the terminal w writes to, or 0.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return 0
	}
	return int(ws.Col)
}
