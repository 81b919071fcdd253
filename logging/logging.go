// Package logging builds lockfs's zerolog logger and turns lock-engine
// events into audit lines.
//
// Output is JSON lines (one object per event) to a file or to stderr, or
// zerolog's human console format. Writes hold a mutex, so lines never
// interleave, and the file can be reopened (SIGHUP, after logrotate
// renamed it) without losing or duplicating a line.
//
// Audit events are never sampled or dropped, and they are durable: the
// lock engine queues them while it holds a file's mutex, and the lock
// call hands them to the log output (Audit.Sync) once the mutex is
// released and before it is answered. Concurrent calls combine: one
// hand-over carries every event queued so far, in the order they
// happened.
//
// A log file (a regular file) is written through a spool
// (logging/spool): while calls keep coming, a hand-over copies the
// lines into shared memory, costing no syscall, and they are in the
// file within about a millisecond; a hand-over after a pause writes them
// itself. A keeper process writes what is left if lockfs is killed,
// so an answered call's events are never lost. Other outputs (stderr, a
// terminal, a pipe) are written directly.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/lockfs/lockfs/logging/spool"
)

// TimeFormat is RFC 3339 with microseconds, the precision at which wait
// and hold ordering matters.
const TimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// LogFileMode is the mode of a log file lockfs creates: readable by the
// owner's group (adm-style log readers), never world-readable or
// -writable.
const LogFileMode = 0o640

// Format selects the line format.
type Format string

const (
	FormatJSON    Format = "json"
	FormatConsole Format = "console"
	// FormatAuto is console when the output is a terminal, else JSON.
	FormatAuto Format = ""
)

// Config describes where and how to log.
type Config struct {
	// File is the log file path; empty means stderr.
	File string
	// Level is a zerolog level name (trace, debug, info, warn, error);
	// empty means info.
	Level string
	// Format is json, console, or empty for auto.
	Format Format
}

// Logger is the process's logger.
type Logger struct {
	zerolog.Logger
	// audit writes events with their own timestamp (no automatic one).
	audit   zerolog.Logger
	out     output
	console bool
	level   zerolog.Level
}

// output is where lines go: a spool for a log file, else a reopener.
type output interface {
	io.Writer
	Reopen() error
	Close() error
}

// New opens the log output described by cfg.
func New(cfg Config) (*Logger, error) {
	level := zerolog.InfoLevel
	if cfg.Level != "" {
		l, err := zerolog.ParseLevel(strings.ToLower(cfg.Level))
		if err != nil || l == zerolog.NoLevel {
			return nil, fmt.Errorf("invalid log level %q (want trace, debug, info, warn or error)", cfg.Level)
		}
		level = l
	}
	switch cfg.Format {
	case FormatJSON, FormatConsole, FormatAuto:
	default:
		return nil, fmt.Errorf("invalid log format %q (want json or console)", cfg.Format)
	}
	l := &Logger{level: level}
	direct := &reopener{path: cfg.File}
	if cfg.File == "" {
		direct.f = os.Stderr
	} else if err := direct.open(); err != nil {
		return nil, err
	}
	l.out = direct
	terminal := isTerminal(direct.f)
	built := make(chan struct{}) // closed once l can log
	if st, err := direct.f.Stat(); cfg.File != "" && err == nil && st.Mode().IsRegular() {
		s, err := spool.Open(cfg.File, spool.Options{
			Mode: LogFileMode,
			Open: openLogFile,
			OnKeeperExit: func(err error) {
				<-built
				l.keeperExited(err)
			},
		})
		if err == nil {
			direct.f.Close()
			l.out = s
		} else {
			// Still a working log, only without the crash-safe spool:
			// every hand-over is then a write(2).
			fmt.Fprintf(os.Stderr, "lockfs: %v; writing %s directly\n", err, cfg.File)
		}
	}
	l.console = cfg.Format == FormatConsole || cfg.Format == FormatAuto && terminal
	var w io.Writer = l.out
	if l.console {
		w = consoleWriterTo(l.out, terminal)
	}
	zerolog.TimeFieldFormat = TimeFormat
	base := zerolog.New(w).Level(level)
	l.Logger = base.With().Timestamp().Logger()
	l.audit = base
	close(built)
	return l, nil
}

// keeperExited reports that the log spool's keeper went away: the log
// goes on, each hand-over now a write(2).
func (l *Logger) keeperExited(err error) {
	l.Warn().Str("event", "log_keeper_exited").Err(err).
		Msg("the log spool's keeper process exited; audit lines are now written before each call is answered")
}

// consoleWriterTo formats lines for humans into out, in colour if color.
func consoleWriterTo(out io.Writer, color bool) io.Writer {
	return zerolog.ConsoleWriter{Out: out, TimeFormat: "15:04:05.000000", NoColor: !color}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		if r, ok := w.(*reopener); ok {
			f = r.f
		}
	}
	if f == nil {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Reopen reopens the log file at its path (for SIGHUP after a rotation).
// Lines written before it went to the old file, lines after to the new
// one; none is lost or written twice. With stderr it does nothing.
func (l *Logger) Reopen() error { return l.out.Reopen() }

// Close writes what is pending and closes the log file.
func (l *Logger) Close() error { return l.out.Close() }

// reopener is a file that can be swapped for a freshly opened one. mu
// guards f and serialises writes.
type reopener struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func (r *reopener) open() error {
	f, err := openLogFile(r.path)
	if err != nil {
		return fmt.Errorf("open log file: %w", err)
	}
	r.f = f
	return nil
}

// openLogFile opens path for appending, creating it with LogFileMode. An
// existing file that others could write to (an audit trail anyone could
// forge lines in) has its group and world write bits removed.
func openLogFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, LogFileMode)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o022 != 0 {
		if err := f.Chmod(st.Mode().Perm() &^ 0o022); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s is writable by others (mode %v) and cannot be made private: %w", path, st.Mode().Perm(), err)
		}
	}
	return f, nil
}

func (r *reopener) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Write(p)
}

// Reopen opens the path again; with stderr it does nothing.
func (r *reopener) Reopen() error {
	if r.path == "" {
		return nil
	}
	f, err := openLogFile(r.path)
	if err != nil {
		return fmt.Errorf("reopen log file: %w", err)
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	return old.Close()
}

// Close closes the file (not stderr).
func (r *reopener) Close() error {
	if r.path == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}
