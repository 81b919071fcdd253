package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// writePidfile writes pid and a newline to path, atomically: a reader
// sees the old content or the new one, never a partial number. The
// directory must exist.
func writePidfile(path string, pid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".")
	if err != nil {
		return fmt.Errorf("pidfile: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := fmt.Fprintf(tmp, "%d\n", pid); err != nil {
		tmp.Close()
		return fmt.Errorf("pidfile: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("pidfile: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("pidfile: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("pidfile: %w", err)
	}
	return nil
}

// removePidfile removes path if it still holds pid: a lockfs started
// later on the same pidfile keeps its own.
func removePidfile(path string, pid int) {
	b, err := os.ReadFile(path)
	if err != nil || string(bytes.TrimSpace(b)) != strconv.Itoa(pid) {
		return
	}
	os.Remove(path)
}
