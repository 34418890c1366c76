// Package hook runs the configuration's hooks (global.hooks) on this
// router's events: it became leader or follower, a real server went up or
// down, the leader's fence lapsed, a reconcile failed, lvsd is stopping.
//
// Emit never blocks: the dataplane, the health checker and the leadership
// loop call it from paths where a takeover must not wait for anybody's
// script. Each hook has a queue of its own, so a hook sees its events in the
// order they happened and a slow one delays only itself; a full queue drops
// the event and counts it. A global limit bounds how many programs run at
// once. Programs run through a script.Runner (the router's script policy)
// with the event in SHOAL_* environment variables, never in arguments or
// through a shell.
package hook

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/dataplane/script"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Event is one thing that happened on this router.
type Event struct {
	// Name is one of config.HookEvents.
	Name string
	// VIPs are the addresses the event concerns (leader, follower,
	// fence-lapse, shutdown): the configuration's VIPs and NAT router
	// address.
	VIPs []string
	// Service and Server name the real server of server-up and
	// server-down (Server as address:port).
	Service, Server string
	// Reason says why, e.g. a health check's failure or a reconcile error.
	Reason string
	// Serial is the configuration's serial when it happened.
	Serial uint64
}

// Defaults of Options.
const (
	DefaultQueue       = 16
	DefaultConcurrency = 4
)

// maxLogOutput bounds the output a run puts into its log line.
const maxLogOutput = 2048

// Options configures a Dispatcher.
type Options struct {
	// Node is this router's id (SHOAL_NODE).
	Node string
	// Scripts runs the programs; nil refuses every hook (and says so).
	Scripts *script.Runner
	Logger  *slog.Logger
	// Queue is each hook's queue length; 0 = DefaultQueue.
	Queue int
	// Concurrency bounds the programs running at once; 0 = DefaultConcurrency.
	Concurrency int
	// Registerer receives the metrics; nil = prometheus.DefaultRegisterer.
	Registerer prometheus.Registerer
}

// Dispatcher delivers events to the hooks of the current configuration.
// Its methods are safe for concurrent use.
type Dispatcher struct {
	o       Options
	log     *slog.Logger
	sem     chan struct{}
	metrics *metrics
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu      sync.Mutex
	workers map[string]*worker // by the hook's definition
	order   []*worker          // the config's order, for Emit
	pending int                // events queued or running
	closed  bool
}

type worker struct {
	hook  *shoalv1.Hook
	queue chan Event
	stop  chan struct{} // closed when the hook left the config
	// dropping is set from the first drop until an event is queued again
	// (guarded by Dispatcher.mu).
	dropping bool
}

// New returns a Dispatcher with no hooks. Close stops it.
func New(o Options) *Dispatcher {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Dispatcher{
		o: o, log: o.Logger.With("component", "hook"), sem: make(chan struct{}, o.Concurrency),
		metrics: newMetrics(reg), ctx: ctx, cancel: cancel, workers: map[string]*worker{},
	}
}

// SetHooks replaces the hooks. A hook whose definition did not change keeps
// its queue; a removed one finishes the run in progress and drops the rest.
func (d *Dispatcher) SetHooks(hs []*shoalv1.Hook) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	next := map[string]*worker{}
	order := make([]*worker, 0, len(hs))
	for _, h := range hs {
		k := hookKey(h)
		w, ok := next[k]
		if ok {
			continue // the same hook twice runs once
		}
		if w, ok = d.workers[k]; !ok {
			w = &worker{hook: proto.Clone(h).(*shoalv1.Hook), queue: make(chan Event, d.o.Queue), stop: make(chan struct{})}
			d.wg.Add(1)
			go d.work(w)
		}
		next[k] = w
		order = append(order, w)
	}
	for k, w := range d.workers {
		if _, ok := next[k]; !ok {
			close(w.stop)
		}
	}
	d.workers, d.order = next, order
}

func hookKey(h *shoalv1.Hook) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(h)
	return string(b)
}

// Emit queues e for every hook that wants it and returns at once; a hook
// whose queue is full loses it (shoal_hook_events_dropped_total).
func (d *Dispatcher) Emit(e Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	for _, w := range d.order {
		if !matches(w.hook, e) {
			continue
		}
		select {
		case w.queue <- e:
			d.pending++
			w.dropping = false
		default:
			d.metrics.dropped.WithLabelValues(e.Name).Inc()
			if !w.dropping {
				// Once per run of drops: a flood of events behind a stuck
				// hook must not flood the log too.
				d.log.Warn("hook queue full; dropping events until it drains", "event", e.Name, "program", w.hook.GetCommand()[0])
				w.dropping = true
			}
		}
	}
}

func matches(h *shoalv1.Hook, e Event) bool {
	if !slices.Contains(h.GetEvents(), e.Name) {
		return false
	}
	if h.GetService() != "" && h.GetService() != e.Service {
		return false
	}
	if rs := h.GetRealServer(); rs != "" && rs != e.Server {
		ap, err := netip.ParseAddrPort(e.Server)
		if err != nil || rs != ap.Addr().String() {
			return false
		}
	}
	return true
}

func (d *Dispatcher) work(w *worker) {
	defer d.wg.Done()
	for {
		select {
		case <-d.ctx.Done():
			d.discard(w)
			return
		case <-w.stop:
			d.discard(w)
			return
		case e := <-w.queue:
			select {
			case d.sem <- struct{}{}:
				d.run(w.hook, e)
				<-d.sem
			case <-d.ctx.Done():
			}
			d.done(1)
		}
	}
}

// discard drops what a stopped worker still had queued.
func (d *Dispatcher) discard(w *worker) {
	for {
		select {
		case e := <-w.queue:
			d.metrics.dropped.WithLabelValues(e.Name).Inc()
			d.done(1)
		default:
			return
		}
	}
}

func (d *Dispatcher) done(n int) {
	d.mu.Lock()
	d.pending -= n
	d.mu.Unlock()
}

// Result labels of shoal_hook_runs_total.
const (
	resultOK      = "ok"
	resultExit    = "exit"
	resultTimeout = "timeout"
	resultRefused = "refused"
	resultError   = "error"
)

func (d *Dispatcher) run(h *shoalv1.Hook, e Event) {
	prog := h.GetCommand()[0]
	attrs := []any{"event", e.Name, "program", prog, "serial", e.Serial}
	if e.Service != "" {
		attrs = append(attrs, "service", e.Service, "server", e.Server)
	}
	if d.o.Scripts == nil {
		d.metrics.runs.WithLabelValues(e.Name, resultRefused).Inc()
		d.log.Warn("hook not run: this router runs no scripts", attrs...)
		return
	}
	timeout := config.HookTimeout(h)
	res := d.o.Scripts.Run(d.ctx, script.Command{Argv: h.GetCommand(), Env: d.env(e), Timeout: timeout})
	result := resultOf(res.Err)
	d.metrics.runs.WithLabelValues(e.Name, result).Inc()
	d.metrics.duration.WithLabelValues(e.Name).Observe(res.Duration.Seconds())
	attrs = append(attrs, "result", result, "took", res.Duration.Round(time.Millisecond))
	if out := strings.TrimSpace(string(res.Output)); out != "" {
		if len(out) > maxLogOutput {
			out = out[:maxLogOutput] + "…"
		}
		attrs = append(attrs, "output", out)
	}
	switch result {
	case resultOK:
		d.log.Info("hook ran", attrs...)
	case resultTimeout:
		d.log.Warn("hook killed after its timeout", append(attrs, "timeout", timeout)...)
	default:
		d.log.Warn("hook failed", append(attrs, "err", res.Err)...)
	}
}

func resultOf(err error) string {
	var re *script.RefusedError
	var ee *exec.ExitError
	switch {
	case err == nil:
		return resultOK
	case errors.As(err, &re):
		return resultRefused
	case errors.Is(err, context.DeadlineExceeded):
		return resultTimeout
	case errors.As(err, &ee):
		return resultExit
	}
	return resultError
}

// env is the event as the program sees it. Values cannot hold NUL, which
// the kernel would refuse; everything else passes as it is.
func (d *Dispatcher) env(e Event) []string {
	clean := func(s string) string { return strings.ReplaceAll(s, "\x00", "") }
	return []string{
		"SHOAL_EVENT=" + e.Name,
		"SHOAL_NODE=" + clean(d.o.Node),
		"SHOAL_VIPS=" + clean(strings.Join(e.VIPs, " ")),
		"SHOAL_SERVICE=" + clean(e.Service),
		"SHOAL_SERVER=" + clean(e.Server),
		"SHOAL_REASON=" + clean(e.Reason),
		"SHOAL_SERIAL=" + strconv.FormatUint(e.Serial, 10),
	}
}

// Flush waits until every queued event has run, or timeout passed; it
// reports whether the queues drained. lvsd calls it at shutdown so that
// the shutdown hooks run before it exits.
func (d *Dispatcher) Flush(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		d.mu.Lock()
		n := d.pending
		d.mu.Unlock()
		if n == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Close kills running programs, drops queued events and waits for the
// workers. Emit does nothing afterwards.
func (d *Dispatcher) Close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
}

type metrics struct {
	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	dropped  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_hook_runs_total",
			Help: "Hook programs run, by event and result (ok, exit, timeout, refused, error).",
		}, []string{"event", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shoal_hook_duration_seconds",
			Help:    "How long hook programs ran, by event.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9), // 1ms .. 65s
		}, []string{"event"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_hook_events_dropped_total",
			Help: "Events a hook did not get because its queue was full or it left the config, by event.",
		}, []string{"event"}),
	}
	m.runs = register(reg, m.runs)
	m.duration = register(reg, m.duration)
	m.dropped = register(reg, m.dropped)
	return m
}

// register returns the collector already registered under the same name,
// so that several Dispatchers (tests) share one.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
