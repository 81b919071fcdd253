package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// daemonize runs lockfs again in the foreground as a child in its own
// session, with its output detached, and returns once the child reports
// that the mount is ready. If the child fails first, its reason is
// returned (exit status 32). This is the gocryptfs pattern: a Go program
// cannot fork, so it re-executes itself with a readiness pipe.
func daemonize(o *mountOptions) error {
	exe, err := os.Executable()
	if err != nil {
		return &exitError{exitMountFailed, fmt.Errorf("find own executable: %w", err)}
	}
	logFile := o.logFile
	if logFile == "" {
		logFile = daemonLogPath(o.mountpoint)
		if err := os.MkdirAll(filepath.Dir(logFile), 0o750); err != nil {
			return &exitError{exitMountFailed, fmt.Errorf("create log directory: %w", err)}
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return &exitError{exitMountFailed, err}
	}
	defer r.Close()
	args := []string{"mount", "--foreground", "--ready-fd", "3", "--log-file", logFile,
		"--log-level", o.logLevel, "--source", o.source,
		fmt.Sprintf("--max-file-size=%d", o.maxFileSize),
		fmt.Sprintf("--max-files=%d", o.maxFiles),
		fmt.Sprintf("--max-bytes=%d", o.maxBytes),
		fmt.Sprintf("--allow-other=%t", o.allowOther),
		fmt.Sprintf("--no-default-permissions=%t", o.noDefaultPermissions),
		fmt.Sprintf("--debug=%t", o.debug),
	}
	if o.logFormat != "" {
		args = append(args, "--log-format", o.logFormat)
	}
	args = append(args, "--", o.mountpoint)
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return &exitError{exitMountFailed, err}
	}
	defer devnull.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		w.Close()
		return &exitError{exitMountFailed, fmt.Errorf("start daemon: %w", err)}
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	switch {
	case line == "ready":
		_ = cmd.Process.Release()
		return nil
	case strings.HasPrefix(line, "error "):
		_ = cmd.Wait()
		return &exitError{exitMountFailed, fmt.Errorf("%s", strings.TrimPrefix(line, "error "))}
	}
	err = cmd.Wait()
	return &exitError{exitMountFailed, fmt.Errorf("daemon exited before the mount was ready (%v); see %s", err, logFile)}
}

// readiness reports the outcome of mounting to the process that started
// the daemon (a no-op in the foreground).
type readiness struct {
	f *os.File
}

func newReadiness(fd int) *readiness {
	if fd < 0 {
		return &readiness{}
	}
	return &readiness{f: os.NewFile(uintptr(fd), "ready")}
}

func (r *readiness) ok() {
	if r.f != nil {
		fmt.Fprintln(r.f, "ready")
		r.f.Close()
		r.f = nil
	}
}

func (r *readiness) fail(err error) {
	if r.f != nil {
		fmt.Fprintln(r.f, "error "+strings.ReplaceAll(err.Error(), "\n", " "))
		r.f.Close()
		r.f = nil
	}
}
