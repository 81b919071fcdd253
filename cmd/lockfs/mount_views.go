package main

// The mount flags of the lock views: the Prometheus endpoint and the
// held-too-long warning. (The .lockfs directory and the user.lockfs.*
// attributes need no flag: every mount has them.)

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	lockfs "github.com/lockfs/lockfs/fs"
	"github.com/lockfs/lockfs/logging"
	"github.com/lockfs/lockfs/metrics"
	"github.com/lockfs/lockfs/semaphores"
)

// viewOptions are the view flags of `lockfs mount`. Each is checked as it
// is parsed, so a bad value is a usage error before lockfs daemonizes.
type viewOptions struct {
	metricsListen   listenAddr
	metricsMaxLocks positiveInt
	warnHeld        durationFlag
}

// addViewFlags adds the view flags to the mount command.
func addViewFlags(f *pflag.FlagSet, o *viewOptions) {
	o.metricsMaxLocks = metrics.DefaultMaxLocks
	f.Var(&o.metricsListen, "metrics-listen",
		"serve Prometheus metrics at http://ADDR/metrics, ADDR as HOST:PORT (e.g. 127.0.0.1:9464; default: off)")
	f.Var(&o.metricsMaxLocks, "metrics-max-locks",
		`label at most this many distinct lock files in metrics; the others are counted under lock="_other"`)
	f.Var(&o.warnHeld, "warn-held",
		"log a held_long warning, once per hold, for every lock held longer than this (e.g. 10m; default: off)")
}

// startViews creates the lock table with its observers (the audit log,
// and the metrics when --metrics-listen is set), starts the metrics
// endpoint (before mounting, so that a busy port fails the mount) and
// the held-too-long watcher. stop ends them.
func startViews(o *viewOptions, logger *logging.Logger, audit *logging.Audit, fsys *lockfs.FS) (table *semaphores.Table, stop func(), err error) {
	observers := semaphores.Observers{audit}
	var m *metrics.Metrics
	if o.metricsListen != "" {
		m = metrics.New(metrics.Options{
			MaxLocks: int(o.metricsMaxLocks),
			Name: func(node uint64) string {
				_, rel := fsys.Name(node)
				return strings.TrimSuffix(rel, " (deleted)")
			},
		})
		observers = append(observers, m)
	}
	table = semaphores.NewTable(semaphores.Options{Observer: observers})
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	if m != nil {
		m.SetSource(table.Snapshot)
		srv, err := m.Listen(string(o.metricsListen), func(err error) {
			logger.Error().Str("event", "metrics_failed").Err(err).Msg("metrics endpoint stopped")
		})
		if err != nil {
			return nil, nil, &exitError{exitMountFailed, fmt.Errorf("--metrics-listen: %w", err)}
		}
		stops = append(stops, func() { _ = srv.Close() })
		logger.Info().Str("event", "metrics_listening").Str("addr", srv.Addr()).
			Msg("serving Prometheus metrics at http://" + srv.Addr() + "/metrics")
	}
	if o.warnHeld > 0 {
		stops = append(stops, audit.WatchHeld(table.Snapshot, time.Duration(o.warnHeld)).Stop)
	}
	return table, stop, nil
}

// listenAddr is a HOST:PORT to listen on.
type listenAddr string

func (a *listenAddr) String() string { return string(*a) }
func (a *listenAddr) Type() string   { return "ADDR" }
func (a *listenAddr) Set(s string) error {
	if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
		return fmt.Errorf("%q is not HOST:PORT (such as 127.0.0.1:9464 or :9464)", s)
	}
	*a = listenAddr(s)
	return nil
}

// positiveInt is an integer of at least 1.
type positiveInt int

func (n *positiveInt) String() string { return strconv.Itoa(int(*n)) }
func (n *positiveInt) Type() string   { return "N" }
func (n *positiveInt) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		return fmt.Errorf("%q is not a positive integer", s)
	}
	*n = positiveInt(v)
	return nil
}

// durationFlag is a Go duration (10m, 90s, 1h30m) that is not negative;
// 0 turns the feature off.
type durationFlag time.Duration

func (d *durationFlag) String() string {
	if *d == 0 {
		return ""
	}
	return time.Duration(*d).String()
}
func (d *durationFlag) Type() string { return "DURATION" }
func (d *durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration such as 10m, 90s or 1h30m")
	}
	if v < 0 {
		return fmt.Errorf("%q is negative", s)
	}
	*d = durationFlag(v)
	return nil
}
