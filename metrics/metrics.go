// Package metrics exports lockfs's lock activity as Prometheus metrics
// (github.com/prometheus/client_golang), served by `lockfs mount
// --metrics-listen ADDR` at /metrics:
//
//	lockfs_lock_acquisitions_total{lock,kind,mode}  counter: acquired events
//	lockfs_lock_contentions_total{lock}             counter: waits begun (an owner refused or blocked)
//	lockfs_lock_denied_total{lock}                  counter: F_SETLK/LOCK_NB requests refused with EAGAIN
//	lockfs_lock_wait_seconds{lock,mode}             histogram: wait before each acquisition (0 when none)
//	lockfs_lock_hold_seconds{lock,mode}             histogram: hold time of each released lock
//	lockfs_locks_held{lock}                         gauge: applied lock records now
//	lockfs_lock_waiters{lock}                       gauge: waiters now, pollers included
//	lockfs_build_info{version,goversion}            gauge: 1
//
// plus the standard go_* and process_* metrics. kind is posix, ofd or
// flock; mode read or write; lock is the file's path relative to the
// mount (its name for a file in the root).
//
// Counters and histograms come from the engine's audit events (Metrics is
// a semaphores.Observer); the gauges are read from an engine snapshot at
// each scrape, so they can never drift. Denials are counted from the
// attempt counts the engine folds into events (it does not report each
// refusal): they are added when the wait ends, with the acquisition or
// the give-up, so a poller that is still waiting shows in
// lockfs_lock_waiters but not yet in lockfs_lock_denied_total.
//
// Cardinality: the first MaxLocks distinct lock names get their own label
// value; every later one is counted under lock="_other". A name keeps its
// label for the life of the process, so counters never move between
// series.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lockfs/lockfs/semaphores"
)

// DefaultMaxLocks is the default cap on distinct lock label values:
// far more than Tempest's handful of lock names, few enough to keep a
// Prometheus server comfortable.
const DefaultMaxLocks = 100

// OtherLock is the lock label value of the locks past the cap.
const OtherLock = "_other"

// Buckets of the wait and hold histograms, in seconds: from a
// millisecond to an hour (a Tempest test class can hold a lock for
// minutes).
var Buckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600}

// Options configure Metrics.
type Options struct {
	// Name returns the lock label of a node: its path relative to the
	// mount. It is called from LockEvent, under the engine's file mutex,
	// and must not call the engine.
	Name func(node uint64) string
	// MaxLocks caps the distinct lock label values; 0 means
	// DefaultMaxLocks.
	MaxLocks int
}

// Metrics is the lockfs metrics registry and the observer feeding it.
type Metrics struct {
	reg    *prometheus.Registry
	name   func(uint64) string
	labels *labelSet

	acquisitions *prometheus.CounterVec
	contentions  *prometheus.CounterVec
	denied       *prometheus.CounterVec
	wait         *prometheus.HistogramVec
	hold         *prometheus.HistogramVec

	// snapshot reads the engine for the gauges; nil until SetSource.
	snapshot atomic.Pointer[func() semaphores.Snapshot]

	// mu guards interrupted: per waiting owner, the blocked requests of
	// its current wait that ended in EINTR. They count as attempts in
	// the engine's events but were not refusals.
	mu          sync.Mutex
	interrupted map[waitKey]int
}

type waitKey struct {
	node, owner uint64
	flock       bool
}

var _ semaphores.Observer = (*Metrics)(nil)

// New returns a registry with every lockfs metric at zero.
func New(opts Options) *Metrics {
	if opts.MaxLocks <= 0 {
		opts.MaxLocks = DefaultMaxLocks
	}
	if opts.Name == nil {
		opts.Name = func(uint64) string { return "" }
	}
	m := &Metrics{
		reg:    prometheus.NewRegistry(),
		name:   opts.Name,
		labels: newLabelSet(opts.MaxLocks),
		acquisitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockfs_lock_acquisitions_total",
			Help: "Lock acquisitions (audit event acquired), by lock file, kind (posix, ofd, flock) and mode (read, write).",
		}, []string{"lock", "kind", "mode"}),
		contentions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockfs_lock_contentions_total",
			Help: "Waits begun: an owner was refused (F_SETLK) or blocked (F_SETLKW) on a lock held by another (audit event waiting).",
		}, []string{"lock"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockfs_lock_denied_total",
			Help: "Non-blocking lock requests refused with EAGAIN, counted when the wait ends (acquired or gave_up).",
		}, []string{"lock"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lockfs_lock_wait_seconds",
			Help:    "Time from an owner's first refusal or block to the acquisition (0 without contention).",
			Buckets: Buckets,
		}, []string{"lock", "mode"}),
		hold: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lockfs_lock_hold_seconds",
			Help:    "Time each released lock record had been held.",
			Buckets: Buckets,
		}, []string{"lock", "mode"}),
		interrupted: make(map[waitKey]int),
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "lockfs_build_info",
		Help: "lockfs build information; the value is always 1.",
	}, []string{"version", "goversion"})
	info.WithLabelValues(version(), runtime.Version()).Set(1)
	m.reg.MustRegister(m.acquisitions, m.contentions, m.denied, m.wait, m.hold, info,
		&stateCollector{m: m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// version is the main module's version, "(devel)" for a build from a
// work tree.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// SetSource gives the gauges their engine. Until it is called they
// report nothing.
func (m *Metrics) SetSource(snapshot func() semaphores.Snapshot) {
	m.snapshot.Store(&snapshot)
}

// Registry is the registry holding every metric.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// LockEvent updates the counters and histograms for one engine event.
func (m *Metrics) LockEvent(e semaphores.Event) {
	lock := m.labels.get(m.name(e.Node))
	key := waitKey{node: e.Node, owner: e.Owner, flock: e.Class == semaphores.ClassFlock}
	switch e.Kind {
	case semaphores.EventWaiting:
		m.contentions.WithLabelValues(lock).Inc()
	case semaphores.EventAcquired:
		m.acquisitions.WithLabelValues(lock, e.Class.String(), e.Type.String()).Inc()
		m.wait.WithLabelValues(lock, e.Type.String()).Observe(e.Waited.Seconds())
		// Every attempt but the granted one and the interrupted
		// blocked ones was refused.
		m.addDenied(lock, e.Attempts-1-m.endWait(key))
	case semaphores.EventGaveUp:
		m.addDenied(lock, e.Attempts-m.endWait(key))
	case semaphores.EventInterrupted:
		m.mu.Lock()
		m.interrupted[key]++
		m.mu.Unlock()
	case semaphores.EventReleased:
		m.hold.WithLabelValues(lock, e.Type.String()).Observe(e.Held.Seconds())
	}
}

// endWait forgets the owner's interrupted count and returns it.
func (m *Metrics) endWait(key waitKey) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.interrupted[key]
	if ok {
		delete(m.interrupted, key)
	}
	return n
}

func (m *Metrics) addDenied(lock string, n int) {
	c := m.denied.WithLabelValues(lock) // the series exists from the first wait
	if n > 0 {
		c.Add(float64(n))
	}
}

// stateCollector reports the gauges from a snapshot taken at scrape time.
// Every lock label seen so far is reported, at 0 when the file is free,
// so that a series does not vanish between two waits.
type stateCollector struct {
	m *Metrics
}

var (
	heldDesc = prometheus.NewDesc("lockfs_locks_held",
		"Applied lock records now, by lock file.", []string{"lock"}, nil)
	waitersDesc = prometheus.NewDesc("lockfs_lock_waiters",
		"Owners waiting for a lock now (blocked in F_SETLKW or flock, or polling with F_SETLK), by lock file.",
		[]string{"lock"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- heldDesc
	ch <- waitersDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.m.snapshot.Load()
	if src == nil {
		return
	}
	snap := (*src)()
	held := map[string]int{}
	waiters := map[string]int{}
	for _, f := range snap.Files {
		lock := c.m.labels.get(c.m.name(f.Node))
		held[lock] += len(f.Locks)
		waiters[lock] += len(f.Waiters)
	}
	for _, lock := range c.m.labels.values() {
		ch <- prometheus.MustNewConstMetric(heldDesc, prometheus.GaugeValue, float64(held[lock]), lock)
		ch <- prometheus.MustNewConstMetric(waitersDesc, prometheus.GaugeValue, float64(waiters[lock]), lock)
	}
}

// labelSet maps lock names to label values, capped.
type labelSet struct {
	mu    sync.Mutex
	max   int
	known map[string]bool
	order []string // known names, then OtherLock once used
	other bool
}

func newLabelSet(max int) *labelSet {
	return &labelSet{max: max, known: make(map[string]bool)}
}

// get returns name's label value: name itself while fewer than max names
// are known, OtherLock for names past the cap.
func (l *labelSet) get(name string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.known[name] {
		return name
	}
	if len(l.known) < l.max {
		l.known[name] = true
		l.order = append(l.order, name)
		return name
	}
	if !l.other {
		l.other = true
		l.order = append(l.order, OtherLock)
	}
	return OtherLock
}

// values lists every label value handed out, in first-use order.
func (l *labelSet) values() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.order...)
}

// Server is a running metrics endpoint.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen starts serving /metrics on addr (host:port; ":9464" for every
// address). It returns once the socket listens, so that a busy port is
// reported before lockfs mounts. onError, if not nil, is told when the
// server stops on an error later.
func (m *Metrics) Listen(addr string, onError func(error)) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("lockfs metrics: /metrics\n"))
	})
	s := &Server{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		ln:  ln,
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && onError != nil {
			onError(err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on (with the port chosen by the
// kernel when addr asked for port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server, waiting a little for scrapes in progress.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
