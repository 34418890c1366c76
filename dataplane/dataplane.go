package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/ipvs"

	"github.com/shoal-lb/shoal/dataplane/ipvssync"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Mode says how much of the kernel the dataplane drives.
type Mode string

const (
	// ModeIPVS programs IPVS and holds addresses (production).
	ModeIPVS Mode = "ipvs"
	// ModeVIP holds and announces addresses only: kernels without IPVS,
	// network-namespace labs.
	ModeVIP Mode = "vip"
	// ModeNone touches nothing: control-plane tests, API-only nodes.
	ModeNone Mode = "none"
)

// DefaultResync is how often the kernel is compared with the desired state
// even when nothing changed, to repair out-of-band edits (ipvsadm -C): the
// services of a part of the table with their destinations (sweepEntries),
// and a few others looked for (sweepSentinels); a comparison that takes
// longer than a tenth of it is run less often (resyncShare).
const DefaultResync = 10 * time.Second

// DefaultAddressLifetime is the kernel lifetime of the addresses a leader
// holds; it renews them every third of it. It bounds how long a router
// whose lvsd died or hangs keeps answering for them (the kernel's timer may
// take up to a second more; 0.3 s at most was measured). It is long enough
// that only a stall of two seconds — far
// longer than the leader lease of any timing profile (wan: 900 ms), after
// which the node has lost its authority anyway — lets an address lapse
// under a live lvsd, and the renewals cost one netlink round trip per
// address per second.
const DefaultAddressLifetime = 3 * time.Second

// Health is the health checker's verdict on one real server of a service.
type Health interface {
	Healthy(service string, rs netip.AddrPort) bool
}

// Links is what the Dataplane needs of a link monitor; *LinkMonitor is the
// real one.
type Links interface {
	SetLinks(names []string)
	// Down lists the monitored links that are down.
	Down() []string
	// Subscribe carries "all monitored links up" after each change of it.
	Subscribe() (<-chan bool, func())
	Run(ctx context.Context) error
}

// Options configures a Dataplane. Nil kernel interfaces mean the real ones
// (in the current network namespace).
type Options struct {
	Mode             Mode
	NodeID           string
	DefaultInterface string // carries addresses whose interface is empty
	Logger           *slog.Logger
	Health           Health // nil: every active real server is up
	IPVS             IPVS
	Addresses        Addresses
	Announcer        Announcer
	Resync           time.Duration // 0 = DefaultResync
	// AddressLifetime is the kernel lifetime (valid_lft = preferred_lft) of
	// the addresses this node raises. While leading it renews them every
	// third of it, so a router whose lvsd was killed or hangs drops them by
	// itself within that time. Whole seconds (the kernel counts no finer);
	// 0 = DefaultAddressLifetime; negative = none (kept until removed).
	AddressLifetime time.Duration
	// Links watches global.monitor_links; nil = a LinkMonitor in the current
	// network namespace (modes ipvs and vip). Run runs it.
	Links Links
	// StateFile remembers which IPVS services and addresses shoal created,
	// so that a restarted node still removes them (and nothing else). Empty
	// keeps that knowledge in memory only.
	StateFile string
	// SyncDaemons, Sysctls and Conns are the kernel's connection sync
	// (global.connection_sync), mode ipvs only. nil means the real ones in
	// the current network namespace when New opened the kernel's IPVS
	// itself; when the caller passes IPVS, nil means none (a config that
	// turns sync on then reports an error, and a planned transfer does not
	// wait for sync).
	SyncDaemons SyncDaemons
	Sysctls     Sysctls
	Conns       Conns
	// OnReconcile, if set, hears the outcome of every reconcile (nil: the
	// kernel matches serial), at its end. It must not block or call back
	// into the Dataplane: lvsd hands it to the hooks.
	OnReconcile func(serial uint64, err error)
}

// Dataplane reconciles the kernel with the committed config and health, and
// holds the addresses while told it leads. Its methods are safe for concurrent
// use.
type Dataplane struct {
	o       Options
	log     *slog.Logger
	kick    chan struct{} // a reconcile is wanted
	annKick chan struct{} // announcements were scheduled
	running atomic.Bool
	// released is set when Run returns: from then on the node holds no
	// address whatever SetLeader says, so a late leadership notification
	// during shutdown cannot raise a VIP again.
	released atomic.Bool

	recMu sync.Mutex // one reconcile at a time; guards owned, conns, want, known, todo, sentinels and sweeps
	owned map[string]bool
	// conns are each configured service's connections when its
	// destinations were last listed.
	conns map[string]connCounts
	// sweeps counts periodic resyncs, whose parts of the table they
	// compare follow it; sweepEntries is sweepEntries but in tests. todo
	// is what is left of this period's part, sentinels the services it
	// looks for first (sweepSlice).
	sweeps       uint64
	sweepEntries int
	todo         []string
	sentinels    []string
	// want is the desired IPVS table of the last reconcile, made with the
	// verdicts as they were at healthGen wantHealthGen. known says the
	// kernel holds it (false before the first reconcile and after a
	// failure): a change is then applied as its difference from it.
	// appliedTimeouts are the timeouts the kernel was last given.
	want            desiredState
	wantHealthGen   uint64
	known           bool
	appliedTimeouts ipvs.Config
	// healthGen counts HealthChanged calls. While it stands still no
	// verdict changed, so a change of config asks the health checker only
	// about the services it changed: reading the verdicts of every real
	// server was most of a weight change's time at 100,000 of them.
	healthGen atomic.Uint64

	// syncMu serialises changes of the sync daemons and guards syncOwned
	// (the daemons shoal started, kept in the state file) and syncStarted
	// (what this process started each with).
	syncMu      sync.Mutex
	syncOwned   map[ipvssync.State]bool
	syncStarted map[ipvssync.State]ipvssync.Daemon

	stateMu sync.Mutex // one state-file write at a time

	// addrMu serialises every address change and announcement, so that no
	// announcement leaves after the address it announces was dropped.
	addrMu sync.Mutex
	held   map[string]*heldAddr // guarded by addrMu and mu (writes need both)
	stale  []addrRef            // from the state file; guarded by addrMu
	lost   map[string]lostAddr  // guarded by addrMu
	addrs  addrTable            // the config's addresses; guarded by addrMu
	// lifetime is the addresses' kernel lifetime (0: none); now is the clock
	// of their renewals, which tests replace with the fake kernel's.
	lifetime time.Duration
	now      func() time.Time

	mu                sync.Mutex
	cfg               *shoalv1.Config
	leader            bool
	names             map[string]string       // IPVS service key → service name
	ownedSnapshot     map[string]bool         // copy of owned for saveState
	staleSnapshot     []addrRef               // copy of stale for saveState
	syncOwnedSnapshot map[ipvssync.State]bool // copy of syncOwned for saveState
	reconciledSerial  uint64
	reconcileErr      string
	addrErr           string
	renewErr          string
	syncErr           string
	lastReconcile     time.Time
}

// New builds a Dataplane. In mode ipvs without an IPVS implementation it opens
// the kernel's, and fails at once on a kernel without IPVS.
func New(o Options) (*Dataplane, error) {
	if o.Mode == "" {
		o.Mode = ModeIPVS
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Resync <= 0 {
		o.Resync = DefaultResync
	}
	switch {
	case o.AddressLifetime == 0:
		o.AddressLifetime = DefaultAddressLifetime
	case o.AddressLifetime < 0:
		o.AddressLifetime = 0
	case o.AddressLifetime%time.Second != 0:
		return nil, fmt.Errorf("address lifetime %v: want whole seconds, as the kernel counts them", o.AddressLifetime)
	}
	switch o.Mode {
	case ModeIPVS:
		if o.IPVS == nil {
			k, err := NewKernelIPVS()
			if err != nil {
				return nil, err
			}
			o.IPVS = k
			if o.SyncDaemons == nil {
				h, err := ipvssync.Open()
				if err != nil {
					return nil, fmt.Errorf("open IPVS sync daemons: %w", err)
				}
				o.SyncDaemons = h
			}
			if o.Sysctls == nil {
				o.Sysctls = ipvssync.Sysctls{}
			}
			if o.Conns == nil {
				o.Conns = ipvssync.ConnTable{}
			}
		}
	case ModeVIP:
		o.IPVS, o.SyncDaemons, o.Sysctls, o.Conns = nil, nil, nil, nil
	case ModeNone:
		o.IPVS, o.Links = nil, nil
		o.SyncDaemons, o.Sysctls, o.Conns = nil, nil, nil
	default:
		return nil, fmt.Errorf("unknown dataplane mode %q (want ipvs, vip or none)", o.Mode)
	}
	if o.Mode != ModeNone {
		if o.Addresses == nil {
			a, err := NewNetlinkAddresses()
			if err != nil {
				return nil, err
			}
			o.Addresses = a
		}
		if o.Links == nil {
			o.Links = NewLinkMonitor(LinkMonitorOptions{Logger: o.Logger})
		}
		if o.Announcer == nil {
			a, err := NewNetAnnouncer()
			if err != nil {
				return nil, err
			}
			o.Announcer = a
		}
	}
	d := &Dataplane{
		o:        o,
		log:      o.Logger.With("component", "dataplane", "mode", string(o.Mode)),
		kick:     make(chan struct{}, 1),
		annKick:  make(chan struct{}, 1),
		owned:    map[string]bool{},
		conns:    map[string]connCounts{},
		held:     map[string]*heldAddr{},
		lost:     map[string]lostAddr{},
		lifetime: o.AddressLifetime,
		now:      time.Now,
		names:    map[string]string{},

		sweepEntries: sweepEntries,

		syncOwned:   map[ipvssync.State]bool{},
		syncStarted: map[ipvssync.State]ipvssync.Daemon{},
	}
	if o.StateFile != "" {
		st, err := loadState(o.StateFile)
		if err != nil {
			return nil, err
		}
		for _, k := range st.IPVSServices {
			d.owned[k] = true
		}
		d.stale = st.addrRefs()
		d.staleSnapshot = d.stale
		for _, s := range st.SyncDaemons {
			switch s {
			case ipvssync.Master.String():
				d.syncOwned[ipvssync.Master] = true
			case ipvssync.Backup.String():
				d.syncOwned[ipvssync.Backup] = true
			}
		}
	}
	d.ownedSnapshot = maps.Clone(d.owned)
	d.syncOwnedSnapshot = maps.Clone(d.syncOwned)
	return d, nil
}

// Run owns the reconcile loop, the announcements and the renewal of the
// addresses' lifetimes until ctx ends. It reconciles at once, on every
// SetConfig and HealthChanged (the difference), and compares the
// kernel's table every Resync, part by part on a large one (or ten times as
// long as the comparison took, if longer).
// On return the addresses are released for good (SetLeader(true) raises
// nothing afterwards); IPVS is left as it is, so that a restarted node
// serves on at once. Run may be called once.
func (d *Dataplane) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return errors.New("dataplane: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		d.release()
		cancel()
		wg.Wait()
	}()
	if d.o.Mode == ModeNone {
		<-ctx.Done()
		return nil
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.announceLoop(ctx)
	}()
	if d.lifetime > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.renewLoop(ctx)
		}()
	}
	if d.o.Links != nil {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := d.o.Links.Run(ctx); err != nil && ctx.Err() == nil {
				d.log.Error("link monitor stopped; monitored links are not watched", "err", err)
			}
		}()
		changes, unsubscribe := d.o.Links.Subscribe()
		go func() {
			defer wg.Done()
			defer unsubscribe()
			for {
				select {
				case <-ctx.Done():
					return
				case <-changes:
					_ = d.syncAddresses("link", false)
				}
			}
		}()
	}
	t := time.NewTimer(d.resync(ctx))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.kick:
			// A change of config or health: apply what it changes.
			_ = d.reconcile(compareChange)
		case <-t.C:
			t.Reset(d.resync(ctx))
		}
	}
}

// resyncShare bounds the time the periodic resync may take: the next one
// starts Options.Resync after the last started, or resyncShare times as
// long as it took, whichever is later. Listing a table of 100,000
// destinations takes seconds of CPU (10 s under emulation in the VM lab);
// without the bound a resync period shorter than that would keep a core
// busy comparing a table that did not change. Changes do not wait for it.
const resyncShare = 10

// resync runs the periodic comparison and returns how long to wait for
// the next. A change that comes meanwhile is applied between two slices
// of it (sweep), and its time is not the resync's.
func (d *Dataplane) resync(ctx context.Context) time.Duration {
	start := time.Now()
	var changes time.Duration
	_ = d.sweep(func() bool {
		select {
		case <-d.kick:
			t0 := time.Now()
			_ = d.reconcile(compareChange)
			changes += time.Since(t0)
		default:
		}
		return ctx.Err() == nil
	})
	took := time.Since(start) - changes
	if wait := resyncShare * took; wait > d.o.Resync {
		d.log.Debug("resync period stretched", "took", took, "next_in", wait-took)
		return wait - took
	}
	return max(d.o.Resync-took-changes, 0)
}

// SetConfig hands over the committed configuration. Addresses follow at once
// when leading; IPVS follows in the reconcile loop. c must not be modified
// afterwards (raftfsm's committed configurations never are): a service is
// recognised as unchanged by its pointer, so that a change of one service
// costs one service.
func (d *Dataplane) SetConfig(c *shoalv1.Config) {
	d.mu.Lock()
	d.cfg = c
	leader := d.leader
	d.mu.Unlock()
	if d.o.Links != nil {
		d.o.Links.SetLinks(c.GetGlobal().GetMonitorLinks())
	}
	switch {
	case d.o.Mode == ModeNone:
	case leader:
		d.syncAddresses("config", false)
	default:
		// A follower keeps its table of addresses up to date too, at the
		// cost of the services that changed, so that a takeover raises
		// the first VIP at once instead of after reading every service
		// (10,000 of them: 6 ms on this host).
		d.addrMu.Lock()
		d.addrs.update(c, d.o.DefaultInterface)
		d.addrMu.Unlock()
	}
	d.wake()
}

// SetLeader says whether this node leads. true raises the VIPs and the NAT
// router address and sends the first announcement of each before it returns;
// false drops them before it returns.
func (d *Dataplane) SetLeader(leader bool) {
	d.mu.Lock()
	changed := d.leader != leader
	d.leader = leader
	d.mu.Unlock()
	if changed {
		d.log.Info("leadership changed", "leader", leader, "node", d.o.NodeID)
	}
	if d.o.Mode == ModeNone {
		return
	}
	reason := "follower"
	if leader {
		reason = "leader"
	}
	d.syncAddresses(reason, false)
	// The master sync daemon follows at once, after the addresses: a new
	// leader sends its connections from its first moment, and one that
	// stops leading stops sending.
	if changed {
		if err := d.reconcileSync(reason); err != nil {
			d.log.Warn("sync daemons after a leadership change", "leader", leader, "err", err)
		}
	}
}

// Links returns the link monitor the Dataplane runs (nil in mode none), for
// the caller to hand leadership away while a monitored link is down.
func (d *Dataplane) Links() Links { return d.o.Links }

// HealthChanged says health verdicts changed: reconcile soon. The health
// checker must call it after every change of a verdict (Health), including
// a server's first: until it does, a change of config may go on using the
// verdicts of the services it did not touch as they were.
func (d *Dataplane) HealthChanged() {
	d.healthGen.Add(1)
	d.wake()
}

func (d *Dataplane) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Reconcile makes the kernel equal to config ⊕ health now, comparing the
// whole of the kernel's IPVS table with it and applying only the
// difference, and records the outcome for Status. Run's periodic resync
// compares a part of it at a time (compareSweep); tests and tools may call
// Reconcile for all of it at once.
func (d *Dataplane) Reconcile() error { return d.reconcile(compareWhole) }

// compare says how much of the kernel's IPVS table a reconcile lists.
type compare int

const (
	// compareChange applies only what changed since the last reconcile,
	// listing nothing (a change of config or health; see reconcileIPVS).
	compareChange compare = iota
	// compareSweep applies what changed as compareChange does, then
	// leaves the next part of the table for sweepSlice to compare with
	// the kernel and ask the health checker about again (the periodic
	// resync; see sweep).
	compareSweep
	// compareWhole lists every service and every destination.
	// compareChange and compareSweep do too when what the kernel holds
	// is not known.
	compareWhole
)

// reconcile is Reconcile, comparing as much of the kernel's table as how
// says.
func (d *Dataplane) reconcile(how compare) error {
	if d.o.Mode == ModeNone {
		return nil
	}
	d.recMu.Lock()
	defer d.recMu.Unlock()
	start := time.Now()
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()

	var errs []error
	// Until the first config arrives the desired IPVS table is unknown, not
	// empty: a restarting node must not delete what it will program again.
	if cfg != nil && d.o.IPVS != nil {
		if err := d.reconcileIPVS(cfg, how); err != nil {
			errs = append(errs, err)
		}
	}
	// A change leaves the addresses to SetConfig, which brought them up
	// to date before it kicked this reconcile (a verdict does not move
	// them): even a comparison that does not look in the kernel costs
	// every VIP. The periodic resync retries what failed (a stale address
	// to drop, one that could not be raised) and, without lifetimes, looks
	// for the held ones in the kernel, a listing of every address on the
	// device; with lifetimes the renewals do that every third of one.
	if how != compareChange {
		if err := d.syncAddresses("repair", how == compareWhole || d.lifetime <= 0); err != nil {
			errs = append(errs, err)
		}
	}
	if err := d.reconcileSync("repair"); err != nil {
		errs = append(errs, err)
	}
	err := joinErrors(errs)
	reconcileSeconds.Observe(time.Since(start).Seconds())

	d.mu.Lock()
	d.lastReconcile = time.Now()
	if err != nil {
		d.reconcileErr = err.Error()
	} else {
		d.reconcileErr = ""
		if cfg != nil {
			d.reconciledSerial = cfg.GetSerial()
		}
	}
	d.mu.Unlock()
	if err != nil {
		reconcileTotal.WithLabelValues("error").Inc()
		d.log.Warn("reconcile incomplete", "serial", cfg.GetSerial(), "err", err)
	} else {
		reconcileTotal.WithLabelValues("ok").Inc()
		d.log.Debug("reconciled", "serial", cfg.GetSerial(), "took", time.Since(start))
	}
	if d.o.OnReconcile != nil {
		d.o.OnReconcile(cfg.GetSerial(), err)
	}
	return err
}

// joinErrors is errors.Join whose message keeps to one line (it goes into
// NodeStatus.reconcile_error and log lines).
func joinErrors(errs []error) error {
	var nonNil []error
	for _, e := range errs {
		if e != nil {
			nonNil = append(nonNil, e)
		}
	}
	switch len(nonNil) {
	case 0:
		return nil
	case 1:
		return nonNil[0]
	}
	return multiError(nonNil)
}

type multiError []error

func (m multiError) Error() string {
	s := m[0].Error()
	for _, e := range m[1:] {
		s += "; " + e.Error()
	}
	return s
}

func (m multiError) Unwrap() []error { return m }
