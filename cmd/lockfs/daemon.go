package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/lockfs/lockfs/logging"
)

// daemonReadyTimeout bounds how long the starting lockfs waits for its
// daemon to mount. Mounting takes milliseconds; a daemon that has not
// mounted after this is stuck, and mount(8) (boot, a systemd .mount
// unit) must not wait for it forever.
const daemonReadyTimeout = time.Minute

// daemonize runs lockfs again, in the foreground, as a child in its own
// session, and returns once the child reports that the mount is ready -
// the gocryptfs pattern: a Go program cannot fork, so it re-executes
// itself with a readiness pipe (fd 3). Until then the child's stderr is
// a pipe to this process, so that what goes wrong while mounting (a
// message of fusermount3, say) reaches the caller's stderr; once
// mounted the child points its stderr at its log file. If the child
// fails, its reason and exit status are returned; if it dies or hangs
// before it is ready, the status is 32.
//
// The child gets every flag that was set on the command line, so flags
// added to `lockfs mount` later need nothing here, and runs in /, so
// that it keeps no directory busy: check has made the paths it needs
// absolute.
func daemonize(o *mountOptions, flags *pflag.FlagSet) error {
	exe, err := os.Executable()
	if err != nil {
		return &exitError{exitMountFailed, fmt.Errorf("find own executable: %w", err)}
	}
	if o.logFile == "" {
		if o.logFile = daemonLogPath(o.mountpoint); o.logFile == "" {
			return usageError("no home directory for the default log file ($XDG_STATE_HOME/lockfs/…): give --log-file")
		}
		if err := os.MkdirAll(filepath.Dir(o.logFile), 0o750); err != nil {
			return &exitError{exitMountFailed, fmt.Errorf("create log directory (choose another log file with --log-file): %w", err)}
		}
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return &exitError{exitMountFailed, err}
	}
	defer readyR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return &exitError{exitMountFailed, err}
	}
	defer errR.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		readyW.Close()
		errW.Close()
		return &exitError{exitMountFailed, err}
	}
	defer devnull.Close()

	cmd := exec.Command(exe, daemonArgs(o, flags)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, errW
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	err = cmd.Start()
	readyW.Close()
	errW.Close()
	if err != nil {
		return &exitError{exitMountFailed, fmt.Errorf("start daemon: %w", err)}
	}
	stderr := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(errR, 64<<10))
		stderr <- b
	}()
	// childStderr returns what the child wrote to stderr, once it has
	// let go of the pipe (bounded: a grandchild could hold it).
	childStderr := func() string {
		select {
		case b := <-stderr:
			return strings.TrimSpace(string(b))
		case <-time.After(5 * time.Second):
			return ""
		}
	}

	_ = readyR.SetReadDeadline(time.Now().Add(daemonReadyTimeout))
	line, readErr := bufio.NewReader(readyR).ReadString('\n')
	line = strings.TrimSpace(line)
	switch {
	case line == "ready":
		if msg := childStderr(); msg != "" {
			fmt.Fprintln(os.Stderr, msg) // warnings from mounting
		}
		if err := o.notify.notify("READY=1", "STATUS=Serving "+o.mountpoint, fmt.Sprintf("MAINPID=%d", cmd.Process.Pid)); err != nil {
			fmt.Fprintf(os.Stderr, "lockfs: %v\n", err)
		}
		_ = cmd.Process.Release()
		return nil
	case strings.HasPrefix(line, "error "):
		code, msg := parseReadinessError(strings.TrimPrefix(line, "error "))
		_ = cmd.Wait()
		if out := childStderr(); out != "" {
			fmt.Fprintln(os.Stderr, out) // fusermount3's own words, say
		}
		return &exitError{code, errors.New(msg)}
	case errors.Is(readErr, os.ErrDeadlineExceeded):
		_ = cmd.Process.Signal(syscall.SIGTERM)
		return &exitError{exitMountFailed, fmt.Errorf("daemon (pid %d) not ready after %v; stopped it; see %s",
			cmd.Process.Pid, daemonReadyTimeout, o.logFile)}
	}
	err = cmd.Wait()
	if out := childStderr(); out != "" {
		fmt.Fprintln(os.Stderr, out)
	}
	return &exitError{exitMountFailed, fmt.Errorf("daemon exited before the mount was ready (%v); see %s", err, o.logFile)}
}

// daemonArgs is the daemon child's command line: `mount --foreground`,
// the readiness fd, the log file, every other flag that was set, and
// the resolved mountpoint (which replaces --tempest-conf).
func daemonArgs(o *mountOptions, flags *pflag.FlagSet) []string {
	args := []string{"mount", "--foreground", "--ready-fd=3", "--log-file=" + o.logFile}
	flags.Visit(func(f *pflag.Flag) {
		switch f.Name {
		case "foreground", "ready-fd", "log-file", "tempest-conf":
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				args = append(args, "--"+f.Name+"="+v)
			}
			return
		}
		// Set to its default: leave it out, as some flag types print
		// their zero value as "", which they do not parse back.
		if v := f.Value.String(); v != f.DefValue {
			args = append(args, "--"+f.Name+"="+v)
		}
	})
	return append(args, "--", o.mountpoint)
}

// parseReadinessError splits "CODE message" as written by readiness.fail.
func parseReadinessError(s string) (int, string) {
	codeText, msg, ok := strings.Cut(s, " ")
	code, err := strconv.Atoi(codeText)
	if !ok || err != nil || code <= 0 {
		return exitMountFailed, s
	}
	return code, msg
}

// readiness reports the outcome of mounting to the process that started
// the daemon (a no-op in the foreground): one line, "ready" or "error
// CODE message".
type readiness struct {
	f *os.File
}

func newReadiness(fd int) *readiness {
	if fd < 0 {
		return &readiness{}
	}
	// Keep the pipe from fusermount3 and any other process we start:
	// the starter takes end-of-file for "the daemon died".
	unix.CloseOnExec(fd)
	return &readiness{f: os.NewFile(uintptr(fd), "ready")}
}

func (r *readiness) ok() {
	if r.f != nil {
		fmt.Fprintln(r.f, "ready")
		r.f.Close()
		r.f = nil
	}
}

// fail reports err, unless readiness was already reported (or there
// is nobody to report to); it returns whether it reported.
func (r *readiness) fail(err error) bool {
	if r.f == nil {
		return false
	}
	code := exitMountFailed
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	fmt.Fprintf(r.f, "error %d %s\n", code, msg)
	r.f.Close()
	r.f = nil
	return true
}

// detachStderr points the daemon's stderr, until now a pipe to the
// process that started it (which exits once the mount is ready), at the
// log file: a Go runtime crash report then lands in the log, and no
// write meets a closed pipe (which would kill lockfs with SIGPIPE).
func detachStderr(logFile string) {
	var f *os.File
	var err error
	if logFile != "" {
		f, err = os.OpenFile(logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, logging.LogFileMode)
	}
	if f == nil || err != nil {
		if f, err = os.OpenFile(os.DevNull, os.O_WRONLY, 0); err != nil {
			return
		}
	}
	defer f.Close()
	_ = unix.Dup3(int(f.Fd()), 2, 0)
}
