// Command lockbench measures file-lock performance of directories side by
// side: by default a fresh tmpfs (kernel locks, the physical limit), a
// no-op go-fuse lock server it builds itself (the FUSE floor; it tracks
// no locks), and a real lockfs mount started from the lockfs binary.
//
//	go run ./cmd/lockbench [flags] [[LABEL=]DIR...]
//	go run ./cmd/lockbench plot IN.json OUT.png
//	go run ./cmd/lockbench report IN.json
//
// Every measurement runs on every target once per round, targets back to
// back (their order rotates each round), so that the noise of a shared
// machine hits all columns alike; the table gives the median of the
// rounds and the cost ratios between targets, round by round. See
// `lockbench -h` and usage below.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lockfs/lockfs/internal/bench"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // a measurement, a mount or a cleanup failed
	exitUsage   = 2
	// exitInterrupted: SIGINT/SIGTERM; everything started was cleaned up.
	exitInterrupted = 130
)

// Hidden subcommands: lockbench re-executes itself to serve the no-op
// mount and to run the lock-taking worker processes.
const (
	cmdServeNoop = "__serve-noop"
	cmdWorker    = "__worker"
)

const usage = `lockbench measures file-lock performance of directories side by side.

usage:
  lockbench [flags] [[LABEL=]DIR...]   measure the reference targets and DIRs
  lockbench plot IN.json OUT.png       draw the chart of an earlier -json result
  lockbench report IN.json             print the table of an earlier -json result

Reference targets (-targets, default tmpfs,noop,lockfs), set up and torn
down by lockbench (root: it mounts):
  tmpfs         a fresh tmpfs: kernel locks, the physical limit
  noop          a no-op go-fuse lock server in its own process: lockfs's
                shape, but every lock request succeeds at once and nothing is
                tracked. NO MUTUAL EXCLUSION: its handoff and shared-file
                numbers are not real and are shown in [brackets]
  lockfs        lockfs mount -f --log-file F --log-format json, from -lockfs
                BIN or built with 'go build ./cmd/lockfs'
  noop-log      noop that also writes one zerolog JSON line per lock request
  lockfs-quiet  lockfs with --log-level warn (audit events not written)
Each DIR is measured as it is (RSS n/a); LABEL names its column. The
reference servers run in lockbench's session; -own-session starts each in
a session of its own, as a daemon runs, for a DIR served that way.

Measurements (-only takes groups or measurement ids, comma-separated):
  setlk       F_SETLK write lock + unlock on an open fd (µs per pair)
  ofd         the same with F_OFD_SETLK
  flock       flock(LOCK_EX|LOCK_NB) + flock(LOCK_UN)
  oslo        oslo.concurrency/fasteners cycle: open(O_WRONLY|O_CREAT|O_APPEND),
              F_SETLK write (whole file), F_SETLKW unlock, close
  sparse      the oslo cycle once every 10 ms (40 times): median time, and
              the server's CPU time per cycle (with its children)
  handoff     two processes alternate one F_SETLKW write lock: rate and
              latency from the holder's unlock to the waiter's return
  throughput  P=1,2,4,8 processes, F_SETLKW lock + F_SETLK unlock, on P
              distinct files and on one shared file (ops/s, all processes)
  files       create, readdir, unlink of 1k, 10k, 100k files (<= -scale-max)
  locks       one process holds 1k and 10k whole-file write locks, one per
              file; times lock+unlock of one more while they are held
  ranges      the same with 1k and 10k byte-range locks on one file (bytes
              0, 2, 4, …): the worst case for a per-file lock list
  scale       files, locks and ranges
RSS (VmRSS) of the serving process is read after each scale step.

flags:
`

// config is the command line.
type config struct {
	rounds   int
	duration time.Duration
	n        int
	only     []string
	scaleMax int
	// scaleRounds is how many rounds (the first ones) run the scale
	// steps: 100k files take minutes on a loaded machine.
	scaleRounds int
	quick       bool
	targets     []string
	lockfs      string
	jsonOut     string
	pngOut      string
	keep        bool
	verbose     bool
	// ownSession starts each reference server in a session of its own.
	ownSession bool
	dirs       []string
	args       []string
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case cmdServeNoop:
			os.Exit(serveNoop(os.Args[2:]))
		case cmdWorker:
			os.Exit(workerMain(os.Args[2:]))
		case "plot":
			os.Exit(plotMain(os.Args[2:]))
		case "report":
			os.Exit(reportMain(os.Args[2:]))
		}
	}
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(exitOK)
		}
		fmt.Fprintln(os.Stderr, "lockbench:", err)
		os.Exit(exitUsage)
	}
	os.Exit(run(cfg))
}

func parseFlags(args []string) (*config, error) {
	cfg := &config{args: args}
	fl := flag.NewFlagSet("lockbench", flag.ContinueOnError)
	fl.Usage = func() {
		fmt.Fprint(fl.Output(), usage)
		fl.PrintDefaults()
	}
	fl.IntVar(&cfg.rounds, "rounds", 5, "rounds; each runs every measurement on every target (-quick: 3)")
	fl.DurationVar(&cfg.duration, "duration", 300*time.Millisecond, "time per measurement, per target, per round, after a warm-up of a tenth of it (-quick: 100ms)")
	fl.IntVar(&cfg.n, "n", 0, "iterations per measurement (per process) instead of -duration")
	only := fl.String("only", "", "comma-separated groups or measurement ids to run (default: all)")
	fl.IntVar(&cfg.scaleMax, "scale-max", 100000, "largest file count of the files step (steps 1000, 10000, 100000 up to it); lock counts stop at min(it, 10000) (-quick: 1000)")
	fl.IntVar(&cfg.scaleRounds, "scale-rounds", 1, "run the scale steps (files, locks, ranges) in the first N rounds only; 0: in every round")
	fl.BoolVar(&cfg.quick, "quick", false, "a run of about a minute: -rounds 3 -duration 100ms -scale-max 1000")
	targets := fl.String("targets", "tmpfs,noop,lockfs", "reference targets to set up: tmpfs, noop, lockfs, noop-log, lockfs-quiet, or none")
	fl.StringVar(&cfg.lockfs, "lockfs", "", "lockfs binary (default: go build ./cmd/lockfs of the module in the current directory)")
	fl.StringVar(&cfg.jsonOut, "json", "", "write the result as JSON to this file")
	fl.StringVar(&cfg.pngOut, "png", "", "draw the chart to this PNG file")
	fl.BoolVar(&cfg.ownSession, "own-session", false, "start each reference server in its own session (setsid), as 'lockfs mount' without -f and services run; the kernel then schedules it as a group of its own (autogroup), which changes the numbers: use it to compare with a DIR served that way")
	fl.BoolVar(&cfg.keep, "keep", false, "keep the work directory (server logs) instead of removing it")
	fl.BoolVar(&cfg.verbose, "v", false, "print every measurement as it is taken")
	if err := fl.Parse(args); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fl.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if cfg.quick {
		if !set["rounds"] {
			cfg.rounds = 3
		}
		if !set["duration"] {
			cfg.duration = 100 * time.Millisecond
		}
		if !set["scale-max"] {
			cfg.scaleMax = 1000
		}
	}
	if cfg.rounds < 1 {
		return nil, fmt.Errorf("-rounds must be at least 1")
	}
	if cfg.n < 0 || (cfg.n == 0 && cfg.duration <= 0) {
		return nil, fmt.Errorf("-n must be positive, or -duration must be")
	}
	if cfg.scaleRounds <= 0 || cfg.scaleRounds > cfg.rounds {
		cfg.scaleRounds = cfg.rounds
	}
	if cfg.scaleMax < 1000 {
		return nil, fmt.Errorf("-scale-max must be at least 1000 (the smallest step)")
	}
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.only = append(cfg.only, s)
		}
	}
	if err := checkOnly(cfg.only); err != nil {
		return nil, err
	}
	if *targets != "none" {
		for _, s := range strings.Split(*targets, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			if _, ok := referenceKinds[s]; !ok {
				return nil, fmt.Errorf("-targets: unknown target %q (want tmpfs, noop, lockfs, noop-log, lockfs-quiet or none)", s)
			}
			cfg.targets = append(cfg.targets, s)
		}
	}
	cfg.dirs = fl.Args()
	if len(cfg.targets)+len(cfg.dirs) == 0 {
		return nil, fmt.Errorf("nothing to measure: no -targets and no DIR")
	}
	return cfg, nil
}

// interrupted is set by SIGINT/SIGTERM; measurement loops poll it, and
// runCtx, cancelled at the same time, stops the commands lockbench runs
// (go build).
var (
	interrupted       atomic.Bool
	runCtx, cancelRun = context.WithCancel(context.Background())
)

var errInterrupted = errors.New("interrupted")

// checkInterrupted returns errInterrupted once a signal arrived.
func checkInterrupted() error {
	if interrupted.Load() {
		return errInterrupted
	}
	return nil
}

// cleanups is the stack of teardown actions (unmounts, process stops,
// the work directory). It runs once, last in first out, on a normal end,
// on an error, or from the signal handler if the run does not wind down
// by itself in time.
type cleanups struct {
	mu   sync.Mutex
	fns  []func() error
	done bool
	errs []error
}

func (c *cleanups) add(fn func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, fn)
}

func (c *cleanups) run() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return nil
	}
	c.done = true
	for i := len(c.fns) - 1; i >= 0; i-- {
		if err := c.fns[i](); err != nil {
			c.errs = append(c.errs, err)
		}
	}
	return c.errs
}

// signalGrace is how long a signalled run may take to stop measuring and
// close its files before the handler tears the targets down under it.
const signalGrace = 3 * time.Second

func run(cfg *config) int {
	var cl cleanups
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	// measured is closed once measure returned: from then on the main
	// goroutine cleans up and reports by itself, and later signals are
	// ignored (they stay caught).
	measured := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(os.Stderr, "\nlockbench: %v: stopping and cleaning up\n", s)
			interrupted.Store(true)
			cancelRun()
			select {
			case <-measured:
			case <-time.After(signalGrace):
				// Stuck in a call on a mount: tear the targets down
				// under it (the call then fails) and leave.
				fmt.Fprintln(os.Stderr, "lockbench: still busy; unmounting under it")
				for _, err := range cl.run() {
					fmt.Fprintln(os.Stderr, "lockbench: cleanup:", err)
				}
				os.Exit(exitInterrupted)
			}
		case <-measured:
		}
	}()

	res, err := measure(cfg, &cl)
	close(measured)
	cleanupErrs := cl.run()
	for _, e := range cleanupErrs {
		fmt.Fprintln(os.Stderr, "lockbench: cleanup:", e)
	}
	if res != nil && len(res.Measurements) > 0 {
		printReport(os.Stdout, res)
		if err := writeOutputs(cfg, res); err != nil {
			fmt.Fprintln(os.Stderr, "lockbench:", err)
			return exitFailure
		}
	}
	switch {
	case errors.Is(err, errInterrupted):
		return exitInterrupted
	case err != nil:
		fmt.Fprintln(os.Stderr, "lockbench:", err)
		return exitFailure
	case len(cleanupErrs) > 0:
		return exitFailure
	}
	return exitOK
}

func writeOutputs(cfg *config, res *bench.Result) error {
	if cfg.jsonOut != "" {
		if err := res.Save(cfg.jsonOut); err != nil {
			return fmt.Errorf("write %s: %w", cfg.jsonOut, err)
		}
		fmt.Fprintln(os.Stderr, "lockbench: wrote", cfg.jsonOut)
	}
	if cfg.pngOut != "" {
		if err := bench.WritePNG(res, cfg.pngOut); err != nil {
			return fmt.Errorf("write %s: %w", cfg.pngOut, err)
		}
		fmt.Fprintln(os.Stderr, "lockbench: wrote", cfg.pngOut)
	}
	return nil
}

// reportMain is `lockbench report IN.json`.
func reportMain(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: lockbench report IN.json")
		return exitUsage
	}
	res, err := bench.Load(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "lockbench report:", err)
		return exitFailure
	}
	printReport(os.Stdout, res)
	return exitOK
}

// plotMain is `lockbench plot IN.json OUT.png`.
func plotMain(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: lockbench plot IN.json OUT.png")
		return exitUsage
	}
	res, err := bench.Load(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "lockbench plot:", err)
		return exitFailure
	}
	if err := bench.WritePNG(res, args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "lockbench plot:", err)
		return exitFailure
	}
	return exitOK
}
