package health

import (
	"cmp"
	"container/heap"
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/dataplane/script"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// defaultConcurrency bounds the checks in flight when Options.Concurrency
// is 0: half the process's file descriptors, between 256 and 4096. The bound
// cuts both ways. When servers hang, in-flight checks are rate × timeout
// (10,000 servers at a 1s interval, 40% blackholed with a 1s timeout, need
// 4,000) and a low bound stretches every server's interval. When the CPU is
// short, a high bound lets runnable checks pile up until their own timeouts
// expire in the scheduler's queue and healthy servers fail (seen in TestLoad
// on a starved machine with 8,000 in flight). 4096 keeps both in reach.
func defaultConcurrency() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	return int(min(max(lim.Cur/2, 256), 4096))
}

// Options configure a Monitor.
type Options struct {
	// NodeID names this node in RealServerHealth.node.
	NodeID string
	Logger *slog.Logger
	// Clock is nil for the real clock.
	Clock Clock
	// OnChange is called after a real server changed state (or new servers
	// start up); the dataplane reconciles on it. Calls come one at a time,
	// in order. It must not block for long and must not call SetConfig;
	// Healthy and Status are fine.
	OnChange func()
	// Concurrency bounds the checks running at once; 0 = half the file
	// descriptor limit, between 256 and 4096.
	// Due checks wait for a free slot, so an overloaded node checks less
	// often instead of opening unbounded sockets.
	Concurrency int
	// Registerer receives the metrics; nil = prometheus.DefaultRegisterer.
	Registerer prometheus.Registerer
	// Scripts runs the exec checks' programs under the router's script
	// policy; nil refuses every exec check.
	Scripts *script.Runner
}

// Monitor runs the health checks of every active real server of the
// configuration and keeps one verdict (up or down) per server: the verdict
// of its only check, or, for a server with several (its own
// health_checks), up only while every one of them is up, as keepalived
// judges a real server with several checkers.
type Monitor struct {
	nodeID   string
	log      *slog.Logger
	clock    Clock
	onChange func()
	scripts  *script.Runner
	metrics  *metrics
	sem      chan struct{}
	wake     chan struct{}

	// cfgMu serialises SetConfig and guards services and epoch.
	cfgMu    sync.Mutex
	services map[string]*svcEntry // active services by name, as last set
	epoch    uint64

	mu      sync.Mutex
	servers map[key]*server // the real servers with a check to run
	svcs    map[string]*svcServers
	noCheck int // real servers without a check to run, in every svcs
	queue   schedule

	// emitMu keeps transitions in the order they happened: it is taken
	// under mu when a verdict changes and held while the change is logged,
	// published and handed to OnChange.
	emitMu sync.Mutex

	subMu   sync.Mutex
	subs    map[int]chan *shoalv1.RealServerHealth
	nextSub int

	// observed, when set by tests, sees the latency of every check.
	observed func(time.Duration, error)
}

// key identifies a real server: its service and its address with the
// resolved port (the real server's, or the service's when that is 0).
type key struct {
	service string
	addr    netip.AddrPort
}

// server is one checked real server: its checkers and the verdict they
// make together.
type server struct {
	key
	checkers []*checker
	verdict
}

// checker is one check of one real server, scheduled on its own. A new
// check definition makes a new checker value (carrying the verdict over), so
// a running check can tell from pointer identity whether its result still
// counts.
type checker struct {
	srv     *server
	index   int // position in the server's checkers (its health_checks)
	probe   *probe
	tr      tracker
	due     time.Time
	idx     int // position in the schedule; -1 when not queued
	running context.CancelFunc
}

// current says whether c is still one of the configuration's checkers.
func (m *Monitor) currentLocked(c *checker) bool {
	s := c.srv
	return m.servers[s.key] == s && c.index < len(s.checkers) && s.checkers[c.index] == c
}

// New returns a Monitor; it checks nothing until SetConfig and Run.
func New(o Options) *Monitor {
	m := &Monitor{
		nodeID:   o.NodeID,
		log:      o.Logger,
		clock:    o.Clock,
		onChange: o.OnChange,
		scripts:  o.Scripts,
		wake:     make(chan struct{}, 1),
		servers:  map[key]*server{},
		services: map[string]*svcEntry{},
		svcs:     map[string]*svcServers{},
		subs:     map[int]chan *shoalv1.RealServerHealth{},
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.log = m.log.With("component", "health")
	if m.clock == nil {
		m.clock = realClock{}
	}
	n := o.Concurrency
	if n <= 0 {
		n = defaultConcurrency()
	}
	m.sem = make(chan struct{}, n)
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	m.metrics = newMetrics(reg)
	return m
}

// batchWindow is how early a check may run to share a wake-up of the
// scheduler with others; small against the ±10% jitter of any interval.
const batchWindow = 5 * time.Millisecond

// firstCheckSpread bounds how long a server without a verdict waits for its
// first check: it takes no traffic until then (on an import or a config
// apply that adds it). The spread keeps a large config from opening every
// connection in the same millisecond; Options.Concurrency bounds the rest.
const firstCheckSpread = 100 * time.Millisecond

// dispatch is a check taken off the schedule, to run on a worker.
type dispatch struct {
	c     *checker
	probe *probe
	ctx   context.Context
}

// Run schedules the checks until ctx is done, then cancels the checks in
// flight and waits for them. One goroutine keeps a single timer on the
// earliest due check; checks run on workers that come and go with the load,
// at most Options.Concurrency at once. Run returns nil on cancellation; call
// it once.
func (m *Monitor) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	timer := m.clock.NewTimer(time.Hour)
	defer timer.Stop()
	work := make(chan dispatch) // unbuffered: a send succeeds only to an idle worker
	for {
		now := m.clock.Now()
		var due []dispatch
		next := time.Hour
		m.mu.Lock()
		for m.queue.Len() > 0 {
			c := m.queue[0]
			// Checks due within batchWindow go now: 10,000 checks a second
			// then cost 200 wake-ups, not 10,000.
			if c.due.After(now.Add(batchWindow)) {
				next = c.due.Sub(now)
				break
			}
			heap.Pop(&m.queue)
			cctx, ccancel := context.WithCancel(ctx)
			c.running = ccancel
			due = append(due, dispatch{c: c, probe: c.probe, ctx: cctx})
		}
		m.mu.Unlock()

		for i, d := range due {
			select {
			case m.sem <- struct{}{}:
			case <-ctx.Done():
				for _, d := range due[i:] {
					m.finish(d, nil)
				}
				return nil
			}
			select {
			case work <- d: // an idle worker took it
			default:
				wg.Go(func() { m.worker(ctx, work, d) })
			}
		}
		if len(due) > 0 {
			continue // dispatching took time: look again before sleeping
		}
		timer.Reset(next)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C():
		case <-m.wake:
		}
	}
}

// worker runs d, then further checks handed to it, and exits after
// workerIdle without work. Workers outlive a check because a fresh
// goroutine per check spent ~9% of the CPU of a 10,000-check load growing
// its stack during the dial; their number follows the load, bounded by
// the concurrency semaphore that each check holds.
func (m *Monitor) worker(ctx context.Context, work <-chan dispatch, d dispatch) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		m.check(d)
		<-m.sem
		idle.Reset(workerIdle)
		select {
		case d = <-work:
		case <-idle.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// workerIdle is how long an idle worker waits for a check before exiting.
const workerIdle = 10 * time.Second

// check runs one check and feeds its result to the server's state machine.
func (m *Monitor) check(d dispatch) {
	p := d.probe
	start := m.clock.Now()
	ctx, cancel := context.WithTimeout(d.ctx, p.timeout)
	err := p.run(ctx)
	cancel()
	end := m.clock.Now()
	if d.ctx.Err() != nil {
		// Cancelled: the server was removed, its check replaced, or the
		// monitor is stopping. The result says nothing about the server.
		m.finish(d, nil)
		return
	}
	result := "ok"
	if err != nil {
		result = "fail"
		m.metrics.failures.WithLabelValues(d.c.srv.service, string(CauseOf(err))).Inc()
	}
	m.metrics.duration.WithLabelValues(d.c.srv.service, result).Observe(end.Sub(start).Seconds())
	if m.observed != nil {
		m.observed(end.Sub(start), err)
	}
	m.finish(d, &observation{Start: start, End: end, Err: err})
}

// finish records an observation (if any) and puts the checker back on the
// schedule unless it left the configuration meanwhile.
func (m *Monitor) finish(d dispatch, o *observation) {
	m.mu.Lock()
	c := d.c
	if c.running != nil {
		c.running()
		c.running = nil
	}
	if !m.currentLocked(c) {
		m.mu.Unlock()
		return
	}
	var (
		ctr     transition
		changed bool
	)
	now := m.clock.Now()
	if o != nil {
		first := c.tr.unchecked
		ctr, changed = c.tr.observe(*o)
		if first {
			// The first check ran at once; the next lands anywhere in
			// the interval, so that servers that arrived together are
			// not checked in lockstep ever after.
			c.due = o.Start.Add(c.probe.interval/10 + rand.N(c.probe.interval))
		} else {
			c.due = o.Start.Add(jitter(c.probe.interval))
		}
	} else {
		c.due = now.Add(jitter(c.probe.interval))
	}
	if c.due.Before(now) {
		c.due = now
	}
	heap.Push(&m.queue, c)
	// The scheduler sleeps until the earliest due check; it needs waking
	// only when this one became the earliest (rare: it was just run).
	earliest := m.queue[0] == c
	if !changed {
		m.mu.Unlock()
		if earliest {
			m.poke()
		}
		return
	}
	s := c.srv
	if len(s.checkers) > 1 {
		m.log.Info("check "+stateString(ctr.Up), "service", s.service, "server", s.addr.String(),
			"check", c.index, "kind", c.probe.kind, "port", c.probe.target.Port(), "reason", ctr.Reason)
	}
	tr, changed := s.judge(ctr.At, ctr)
	if !changed {
		m.mu.Unlock()
		if earliest {
			m.poke()
		}
		return
	}
	m.metrics.up.WithLabelValues(s.service, s.addr.String()).Set(b2f(tr.Up))
	st := m.statusLocked(s)
	m.emitMu.Lock()
	m.mu.Unlock()
	if earliest {
		m.poke()
	}
	m.transitioned(s.key, tr, CauseOf(o.Err), st)
	m.emitMu.Unlock()
}

// transitioned reports a verdict change everywhere it is due: log,
// transition counter, subscribers, the dataplane. The server's
// shoal_health_up is set under mu, where it is made and deleted, so that a
// server removed meanwhile does not get its series back.
func (m *Monitor) transitioned(k key, tr transition, cause Cause, st *shoalv1.RealServerHealth) {
	to := stateString(tr.Up)
	attrs := []any{"service", k.service, "server", k.addr.String(), "from", tr.From, "to", to, "reason", tr.Reason}
	if cause != "" {
		attrs = append(attrs, "cause", string(cause))
	}
	m.log.Info("real server "+to, attrs...)
	m.metrics.transitions.WithLabelValues(k.service, to).Inc()
	m.publish(st)
	if m.onChange != nil {
		m.onChange()
	}
}

func (m *Monitor) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// SetConfig makes the monitor check the active real servers of c (nil
// removes everything). A check whose definition is unchanged keeps its
// state, counters and schedule, even when it moved within the server's
// list; a changed check restarts the counters but
// keeps its verdict; a check added to a server starts without a verdict; a
// removed server's checks stop at once. Call it before handing the same
// config to the dataplane, so that the dataplane finds the new servers'
// initial verdicts.
//
// c must not be modified afterwards (raftfsm's committed configurations
// never are): a service is recognised as unchanged by its pointer, and its
// real servers are not looked at again, so that a change of one service
// costs one service, not every real server of the table (at 100,000 real
// servers that was most of a second per change on every node).
func (m *Monitor) SetConfig(c *shoalv1.Config) {
	m.cfgMu.Lock()
	defer m.cfgMu.Unlock()
	m.epoch++
	type svcWants struct {
		svc   *shoalv1.VirtualService
		wants []want
	}
	var changedSvcs []svcWants
	for _, svc := range c.GetServices() {
		if svc.Active != nil && !svc.GetActive() {
			continue
		}
		e := m.services[svc.GetName()]
		if e != nil {
			e.seen = m.epoch
			if e.svc == svc {
				continue
			}
		}
		changedSvcs = append(changedSvcs, svcWants{svc, m.wantsOf(svc)})
	}
	var removedSvcs []string
	for name, e := range m.services {
		if e.seen != m.epoch {
			removedSvcs = append(removedSvcs, name)
		}
	}

	var events []event
	notify := false
	now := m.clock.Now()
	var n counts
	m.mu.Lock()
	for _, sw := range changedSvcs {
		name := sw.svc.GetName()
		old := m.svcs[name]
		withoutChecks := 0
		for _, w := range sw.wants {
			if len(w.probes) == 0 {
				withoutChecks++
			}
		}
		// Both exactly sized: at 100,000 servers append's slack is megabytes.
		keys := make([]key, 0, len(sw.wants)-withoutChecks)
		ss := &svcServers{port: sw.svc.GetPort(), noCheck: make([]noCheckServer, 0, withoutChecks)}
		for _, w := range sw.wants {
			var (
				up bool
				ev *event
			)
			if len(w.probes) == 0 {
				var nc noCheckServer
				nc, up, ev = m.noCheckLocked(old, w.k, now, &n)
				ss.noCheck = append(ss.noCheck, nc)
			} else {
				keys = append(keys, w.k)
				up, ev = m.applyLocked(w, old.find(w.k.addr), now, &n)
			}
			notify = notify || up
			if ev != nil {
				events = append(events, *ev)
			}
		}
		slices.SortFunc(ss.noCheck, func(a, b noCheckServer) int { return a.addr.Compare(b.addr) })
		if e := m.services[name]; e != nil && len(e.keys) > 0 {
			kept := make(map[key]bool, len(keys))
			for _, k := range keys {
				kept[k] = true
			}
			for _, k := range e.keys {
				if !kept[k] {
					m.removeLocked(k, &n) // nothing left to do for one that lost its checks
				}
			}
		}
		if old != nil {
			for _, nc := range old.noCheck {
				// Gone, unless it still has no check or now has one.
				if ss.find(nc.addr) == nil && m.servers[key{name, nc.addr}] == nil {
					n.removed++
				}
			}
			m.noCheck -= len(old.noCheck)
		}
		m.noCheck += len(ss.noCheck)
		m.svcs[name] = ss
		m.services[name] = &svcEntry{svc: sw.svc, keys: keys, seen: m.epoch}
	}
	for _, name := range removedSvcs {
		for _, k := range m.services[name].keys {
			m.removeLocked(k, &n)
		}
		if ss := m.svcs[name]; ss != nil {
			n.removed += len(ss.noCheck)
			m.noCheck -= len(ss.noCheck)
		}
		delete(m.services, name)
		delete(m.svcs, name)
	}
	for i := range events {
		if events[i].st == nil {
			events[i].st = m.statusLocked(m.servers[events[i].k])
		}
	}
	total := len(m.servers) + m.noCheck
	m.emitMu.Lock()
	m.mu.Unlock()
	m.poke()
	if n.added+n.changed+n.removed > 0 {
		m.log.Info("health checks updated", "serial", c.GetSerial(), "servers", total,
			"added", n.added, "changed", n.changed, "removed", n.removed)
	}
	for _, e := range events {
		m.transitioned(e.k, e.tr, "", e.st)
	}
	if notify && len(events) == 0 && m.onChange != nil {
		m.onChange()
	}
	m.emitMu.Unlock()
}

// svcEntry is an active service as the monitor last saw it, and the keys
// of its real servers with a check to run.
type svcEntry struct {
	svc  *shoalv1.VirtualService
	keys []key
	seen uint64 // the SetConfig that last found the service (Monitor.epoch)
}

// want is one active real server of a service and the probes of its
// checks; none when it has no check to run (kind none).
type want struct {
	k      key
	probes []*probe
}

// event is a verdict changed by SetConfig, reported once the lock is gone.
type event struct {
	k  key
	tr transition
	st *shoalv1.RealServerHealth
}

// counts are SetConfig's servers added, changed and removed, for its log line.
type counts struct{ added, changed, removed int }

// wantsOf resolves the checks of every active real server of svc.
func (m *Monitor) wantsOf(svc *shoalv1.VirtualService) []want {
	var wants []want
	for _, rs := range svc.GetRealServers() {
		if rs.Active != nil && !rs.GetActive() {
			continue
		}
		addr, err := netip.ParseAddr(rs.GetAddress())
		if err != nil {
			m.log.Warn("real server not checked: bad address", "service", svc.GetName(), "server", rs.GetAddress(), "err", err)
			continue
		}
		addr = addr.Unmap()
		// The server's own checks replace the service's.
		checks := rs.GetHealthChecks()
		if len(checks) == 0 {
			checks = []*shoalv1.HealthCheck{svc.GetHealthCheck()}
		}
		w := want{k: key{svc.GetName(), netip.AddrPortFrom(addr, uint16(config.RealServerPort(svc, rs)))}}
		if runsNoCheck(checks) {
			wants = append(wants, w)
			continue
		}
		for _, hc := range checks {
			p, err := newProbe(svc, rs, addr, hc)
			if p != nil {
				p.scripts = m.scripts
			}
			if err != nil {
				// Validation should have refused this; keep the server out
				// with the reason rather than trusting it blindly.
				p = &probe{kind: "invalid", target: netip.AddrPortFrom(addr, 0), interval: config.DefaultCheckInterval,
					timeout: config.DefaultCheckTimeout, rules: rules{Rise: 1, Fall: 1}, invalid: err,
					fingerprint: "invalid|" + err.Error()}
			}
			w.probes = append(w.probes, p)
		}
		wants = append(wants, w)
	}
	return wants
}

// applyLocked makes one server's checkers those of w. It reports whether a
// new server starts up (the dataplane is to hear of it) and the verdict
// change of a server whose checks changed, if any. was is the server when
// it had no check to run until now (nil otherwise).
func (m *Monitor) applyLocked(w want, was *noCheckServer, now time.Time, n *counts) (newUp bool, ev *event) {
	s := m.servers[w.k]
	isNew := s == nil
	if isNew {
		s = &server{key: w.k}
		m.servers[w.k] = s
	}
	if isNew && was != nil {
		// Its kind none check becomes a real one: as for any changed
		// check, the server keeps its verdict (up, since and reason) until
		// the new check says otherwise. The none check it had is stood
		// for by a checker that is never scheduled.
		isNew = false
		since := time.Unix(0, was.since)
		s.verdict = verdict{up: true, since: since, reason: reasonNoCheck}
		s.checkers = []*checker{{srv: s, probe: &probe{kind: KindNone}, idx: -1,
			tr: newTracker(rules{}, true, since, reasonNoCheck)}}
		m.metrics.up.WithLabelValues(w.k.service, w.k.addr.String()).Set(1)
	}
	// An unchanged check is found wherever it moved in the list and
	// keeps everything; a changed one takes over the state of the check
	// that was at its place.
	touched := len(w.probes) != len(s.checkers)
	kept := map[*checker]bool{}
	same := make([]*checker, len(w.probes))
	for i, p := range w.probes {
		for _, old := range s.checkers {
			if !kept[old] && old.probe.fingerprint == p.fingerprint {
				kept[old], same[i] = true, old
				touched = touched || old.index != i
				old.index = i
				break
			}
		}
	}
	var checkers []*checker
	for i, p := range w.probes {
		if same[i] != nil {
			checkers = append(checkers, same[i])
			continue
		}
		touched = true
		var old *checker
		if i < len(s.checkers) && !kept[s.checkers[i]] {
			old = s.checkers[i]
			kept[old] = true
		}
		ck := &checker{srv: s, index: i, probe: p, idx: -1}
		switch {
		case old != nil:
			ck.tr = old.tr.withRules(p.rules)
			m.dropLocked(old)
		case !isNew && !s.unchecked && p.kind != KindNone:
			// A check added to a server with a verdict takes that
			// verdict, as a changed one keeps its own: changing the
			// checks does not bounce traffic, and the server never
			// goes back to having no verdict, which the dataplane
			// relies on.
			ck.tr = newTracker(p.rules, s.up, now, "check added to a server that was "+stateString(s.up))
		case p.kind == KindNone:
			ck.tr = newTracker(p.rules, true, now, reasonNoCheck)
		case p.initUp:
			ck.tr = newTracker(p.rules, true, now, "new server, initially_up")
		default:
			ck.tr = newUncheckedTracker(p.rules, now)
		}
		if p.kind == KindNone && !ck.tr.up {
			ck.tr.set(true, now, reasonNoCheck)
		}
		if p.kind != KindNone {
			// Spread first runs over the interval so that a large config
			// does not fire all its checks at once; a server without a
			// verdict is out until its first check, which runs at once
			// (within firstCheckSpread).
			spread := p.interval
			if ck.tr.unchecked {
				spread = min(spread, firstCheckSpread)
			}
			ck.due = now.Add(rand.N(spread))
			heap.Push(&m.queue, ck)
		}
		checkers = append(checkers, ck)
	}
	for _, old := range s.checkers {
		if !kept[old] {
			m.dropLocked(old)
		}
	}
	s.checkers = checkers
	switch {
	case isNew:
		n.added++
		s.verdict = s.initialVerdict(now)
		m.metrics.up.WithLabelValues(w.k.service, w.k.addr.String()).Set(b2f(s.up))
		return s.up, nil
	case touched:
		n.changed++
		if tr, ok := s.judge(now, transition{}); ok {
			m.metrics.up.WithLabelValues(w.k.service, w.k.addr.String()).Set(b2f(tr.Up))
			return false, &event{k: w.k, tr: tr}
		}
	}
	return false, nil
}

// removeLocked stops checking the server k.
func (m *Monitor) removeLocked(k key, n *counts) {
	s := m.servers[k]
	if s == nil {
		return
	}
	for _, c := range s.checkers {
		m.dropLocked(c)
	}
	delete(m.servers, k)
	n.removed++
	m.metrics.up.DeleteLabelValues(k.service, k.addr.String())
}

// dropLocked takes c off the schedule and cancels its running check.
func (m *Monitor) dropLocked(c *checker) {
	if c.idx >= 0 {
		heap.Remove(&m.queue, c.idx)
	}
	if c.running != nil {
		c.running()
		c.running = nil
	}
}

// Healthy reports this node's verdict on a real server. rs carries the real
// server's resolved port; port 0 is read as the service's port. A server the
// monitor does not check (inactive, unknown) is not healthy, nor is one
// not checked yet. One whose check is kind none is always healthy.
func (m *Monitor) Healthy(service string, rs netip.AddrPort) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, noCheck := m.lookupLocked(service, rs)
	return noCheck || s != nil && s.up
}

// Unchecked reports whether a real server the monitor checks has no verdict
// yet: it is new, or lvsd has just started, and its first check has not
// finished. The dataplane leaves such a server as the kernel has it, so
// that a restarted lvsd does not withdraw servers that were in.
func (m *Monitor) Unchecked(service string, rs netip.AddrPort) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, _ := m.lookupLocked(service, rs)
	return s != nil && s.unchecked
}

// lookupLocked finds a real server: s when it has checks to run, noCheck
// when it has none; neither when the monitor does not know it.
func (m *Monitor) lookupLocked(service string, rs netip.AddrPort) (s *server, noCheck bool) {
	rs = netip.AddrPortFrom(rs.Addr().Unmap(), rs.Port())
	if s := m.servers[key{service, rs}]; s != nil {
		return s, false
	}
	ss := m.svcs[service]
	if ss == nil {
		return nil, false
	}
	if ss.find(rs) != nil {
		return nil, true
	}
	if rs.Port() != 0 {
		return nil, false
	}
	rs = netip.AddrPortFrom(rs.Addr(), uint16(ss.port))
	if s := m.servers[key{service, rs}]; s != nil {
		return s, false
	}
	return nil, ss.find(rs) != nil
}

// Status returns the verdict on every active real server, sorted by
// service, address and port: those with checks, and those whose check is
// kind none (up, "no health check").
func (m *Monitor) Status() []*shoalv1.RealServerHealth {
	type row struct {
		k key
		h *shoalv1.RealServerHealth
	}
	m.mu.Lock()
	rows := make([]row, 0, len(m.servers)+m.noCheck)
	for _, s := range m.servers {
		rows = append(rows, row{s.key, m.statusLocked(s)})
	}
	for name, ss := range m.svcs {
		for _, nc := range ss.noCheck {
			rows = append(rows, row{key{name, nc.addr}, m.noCheckStatus(name, nc)})
		}
	}
	m.mu.Unlock()
	slices.SortFunc(rows, func(a, b row) int {
		if c := cmp.Compare(a.k.service, b.k.service); c != 0 {
			return c
		}
		return a.k.addr.Compare(b.k.addr)
	})
	out := make([]*shoalv1.RealServerHealth, len(rows))
	for i, r := range rows {
		out[i] = r.h
	}
	return out
}

func (m *Monitor) statusLocked(s *server) *shoalv1.RealServerHealth {
	h := &shoalv1.RealServerHealth{
		Service: s.service,
		Address: s.addr.Addr().String(),
		Port:    uint32(s.addr.Port()),
		State:   stateString(s.up),
		Since:   timestamppb.New(s.since),
		Reason:  s.reason,
		Node:    m.nodeID,
	}
	if len(s.checkers) == 1 {
		c := s.checkers[0]
		h.LastError = c.tr.lastErr
		if c.tr.checked {
			h.LastLatency = durationpb.New(c.tr.lastLatency)
		}
		return h
	}
	// Several checks: each has its own entry; the server's last error is
	// the first failing check's, its latency the slowest check's.
	var slowest time.Duration
	for _, c := range s.checkers {
		state := stateString(c.tr.up)
		if c.tr.unchecked {
			state = stateUnchecked
		}
		ch := &shoalv1.CheckHealth{
			Index:     uint32(c.index),
			Kind:      c.probe.kind,
			Port:      uint32(c.probe.target.Port()),
			State:     state,
			Since:     timestamppb.New(c.tr.since),
			Reason:    c.tr.reason,
			LastError: c.tr.lastErr,
		}
		if c.tr.checked {
			ch.LastLatency = durationpb.New(c.tr.lastLatency)
			if h.LastLatency == nil || c.tr.lastLatency > slowest {
				slowest = c.tr.lastLatency
				h.LastLatency = durationpb.New(slowest)
			}
		}
		if h.LastError == "" && c.tr.lastErr != "" {
			h.LastError = checkLabel(c) + ": " + c.tr.lastErr
		}
		h.Checks = append(h.Checks, ch)
	}
	return h
}

// Subscribe streams every transition of every real server. A subscriber
// that does not keep up loses transitions (counted in
// shoal_health_events_dropped_total) rather than stalling the checks; it can
// re-read Status. The returned function ends the subscription and closes the
// channel.
func (m *Monitor) Subscribe(buf int) (<-chan *shoalv1.RealServerHealth, func()) {
	ch := make(chan *shoalv1.RealServerHealth, buf)
	m.subMu.Lock()
	id := m.nextSub
	m.nextSub++
	m.subs[id] = ch
	m.subMu.Unlock()
	return ch, func() {
		m.subMu.Lock()
		defer m.subMu.Unlock()
		if _, ok := m.subs[id]; ok {
			delete(m.subs, id)
			close(ch)
		}
	}
}

func (m *Monitor) publish(st *shoalv1.RealServerHealth) {
	m.subMu.Lock()
	defer m.subMu.Unlock()
	for _, ch := range m.subs {
		select {
		case ch <- st:
		default:
			m.metrics.dropped.Inc()
		}
	}
}

// jitter spreads repeated checks by ±10% so that checks started together
// drift apart instead of firing in lockstep forever.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// schedule is a min-heap of checkers by due time.
type schedule []*checker

func (q schedule) Len() int           { return len(q) }
func (q schedule) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q schedule) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].idx, q[j].idx = i, j
}
func (q *schedule) Push(x any) {
	c := x.(*checker)
	c.idx = len(*q)
	*q = append(*q, c)
}
func (q *schedule) Pop() any {
	old := *q
	c := old[len(old)-1]
	old[len(old)-1] = nil
	c.idx = -1
	*q = old[:len(old)-1]
	return c
}
