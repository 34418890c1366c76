package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Peer is one BGP session to open.
type Peer struct {
	Address  netip.Addr
	ASN      uint32
	Port     uint16
	HoldTime time.Duration // 0: no keepalives (RFC 4271)
}

// Attributes go with every announced prefix.
type Attributes struct {
	Communities []uint32
	MED         *uint32
}

// Session is the state of one BGP session as the speaker sees it.
type Session struct {
	Peer  netip.Addr
	ASN   uint32
	State string // idle, connect, active, opensent, openconfirm, established
	// Since is when the session last reached or left established (zero if
	// never).
	Since time.Time
}

// Established says whether routes flow over the session.
func (s Session) Established() bool { return s.State == "established" }

// Speaker is a BGP implementation as the Announcer needs it. Every method
// converges: calling it again with the same arguments changes nothing.
type Speaker interface {
	// SetPeers makes the sessions exactly peers: it opens the new ones,
	// closes the ones not listed and re-opens those whose settings changed.
	SetPeers(ctx context.Context, localASN uint32, peers []Peer) error
	// Announce advertises p to every peer, or re-advertises it when the
	// attributes changed.
	Announce(ctx context.Context, p netip.Prefix, a Attributes) error
	// Withdraw stops advertising p; an unknown p is not an error.
	Withdraw(ctx context.Context, p netip.Prefix) error
	Sessions() []Session
}

// Loopback holds addresses on lo; dataplane.NetlinkAddresses is the real one.
type Loopback interface {
	AddAddress(dev string, p netip.Prefix, label string, lifetime time.Duration) error
	RemoveAddress(dev string, p netip.Prefix) error
}

// Reason is why this router does not announce; empty means it does.
type Reason string

// Reasons not to announce, in the order they are reported when several hold.
const (
	ReasonStopping  Reason = "stopping"            // lvsd is shutting down
	ReasonDrained   Reason = "drained"             // an operator drained the router
	ReasonNoQuorum  Reason = "no_majority"         // out of contact with a Raft majority
	ReasonUnhealthy Reason = "dataplane_unhealthy" // the last reconcile of IPVS failed
	ReasonStarting  Reason = "starting"            // no verdict on the above yet
	ReasonNoConfig  Reason = "no_bgp_config"       // no global.bgp in the config
	ReasonNoSpeaker Reason = "no_router_id"        // lvsd runs without --bgp-router-id
)

// LoDevice is where bgp-mode VIPs are held.
const LoDevice = "lo"

// resync repairs what failed or was changed behind our back (ip addr del).
const resync = 5 * time.Second

// Options configures an Announcer.
type Options struct {
	// Speaker is nil when this router has no BGP identity (lvsd without
	// --bgp-router-id): VIPs are then held on lo but never announced.
	Speaker  Speaker
	Loopback Loopback // nil: VIPs are not held on lo (tests of the speaker alone)
	Logger   *slog.Logger
}

// Announcer converges the speaker and lo with the config and eligibility.
// Its methods are safe for concurrent use.
type Announcer struct {
	o    Options
	log  *slog.Logger
	kick chan struct{}

	mu       sync.Mutex // guards the fields below
	cfg      *shoalv1.Config
	blocked  Reason
	released bool
	err      string

	recMu     sync.Mutex // one convergence at a time; guards the fields below
	announced map[netip.Prefix]Attributes
	held      map[netip.Prefix]bool
	peersSet  string // fmt of the last peers applied, to skip re-applying
	// published copies for Status (guarded by mu)
	announcedCopy []netip.Prefix
	changedAt     time.Time
}

// New returns an Announcer that announces nothing until SetConfig and an
// empty SetBlocked.
func New(o Options) *Announcer {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Announcer{
		o: o, log: o.Logger, kick: make(chan struct{}, 1),
		blocked: ReasonStarting, announced: map[netip.Prefix]Attributes{}, held: map[netip.Prefix]bool{},
	}
}

// SetConfig hands over a committed configuration.
func (a *Announcer) SetConfig(c *shoalv1.Config) {
	a.mu.Lock()
	a.cfg = c
	a.mu.Unlock()
	a.poke()
}

// SetBlocked says why this router must not announce now, or "" when it may.
// A change is applied at once (the caller need not wait for Run's loop).
func (a *Announcer) SetBlocked(r Reason) {
	a.mu.Lock()
	changed := a.blocked != r
	a.blocked = r
	a.mu.Unlock()
	if changed {
		if r == "" {
			a.log.Info("bgp: announcing")
		} else {
			a.log.Info("bgp: withdrawing", "reason", string(r))
		}
		a.poke()
	}
}

func (a *Announcer) poke() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Run converges on every change and every few seconds until ctx ends. It
// does not withdraw on return: call Release.
func (a *Announcer) Run(ctx context.Context) error {
	t := time.NewTicker(resync)
	defer t.Stop()
	for {
		a.converge(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-a.kick:
		case <-t.C:
		}
	}
}

// Release withdraws every prefix and drops the VIPs from lo, and keeps
// them withdrawn whatever comes later. It returns when the speaker took
// the withdrawals (or ctx ended).
func (a *Announcer) Release(ctx context.Context) error {
	a.mu.Lock()
	a.released = true
	a.blocked = ReasonStopping
	a.mu.Unlock()
	return a.converge(ctx)
}

// desired is what to announce and hold now.
type desired struct {
	peers    []Peer
	asn      uint32
	attrs    Attributes
	hold     map[netip.Prefix]bool
	announce bool
}

func (a *Announcer) desired() (desired, Reason) {
	a.mu.Lock()
	cfg, blocked, released := a.cfg, a.blocked, a.released
	a.mu.Unlock()
	d := desired{hold: map[netip.Prefix]bool{}}
	if !released {
		for _, p := range Prefixes(cfg) {
			d.hold[p] = true
		}
	}
	b := cfg.GetGlobal().GetBgp()
	if b != nil {
		d.asn = b.LocalAsn
		d.peers = Peers(b)
		d.attrs = attributes(b)
	}
	switch {
	case blocked != "" || len(d.hold) == 0:
	case a.o.Speaker == nil:
		blocked = ReasonNoSpeaker
	case b == nil:
		blocked = ReasonNoConfig
	}
	d.announce = blocked == "" && !released
	return d, blocked
}

// converge makes the speaker and lo match desired, withdrawing before it
// drops an address and raising an address before it announces it.
func (a *Announcer) converge(ctx context.Context) error {
	a.recMu.Lock()
	defer a.recMu.Unlock()
	d, _ := a.desired()
	var errs []error

	sp := a.o.Speaker
	if sp == nil {
		sp = noSpeaker{}
	}
	if key := fmt.Sprint(d.asn, d.peers); key != a.peersSet {
		if err := sp.SetPeers(ctx, d.asn, d.peers); err != nil {
			errs = append(errs, fmt.Errorf("set BGP peers: %w", err))
		} else {
			a.peersSet = key
		}
	}
	// Withdrawals first: a prefix must leave the peers before its address
	// leaves lo, or flows routed here meanwhile would be dropped.
	for p := range a.announced {
		if d.announce && d.hold[p] {
			continue
		}
		if err := sp.Withdraw(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("withdraw %s: %w", p, err))
			continue
		}
		delete(a.announced, p)
		a.log.Info("bgp: withdrew", "prefix", p)
	}
	if a.o.Loopback != nil {
		for p := range a.held {
			if d.hold[p] {
				continue
			}
			if _, still := a.announced[p]; still {
				continue // its withdrawal failed: keep serving it
			}
			if err := a.o.Loopback.RemoveAddress(LoDevice, p); err != nil {
				errs = append(errs, fmt.Errorf("drop %s from %s: %w", p, LoDevice, err))
				continue
			}
			delete(a.held, p)
		}
	}
	for _, p := range sortedPrefixes(d.hold) {
		if a.o.Loopback != nil {
			// Renewed on every pass: a hand-removed address comes back.
			if err := a.o.Loopback.AddAddress(LoDevice, p, "", 0); err != nil {
				errs = append(errs, fmt.Errorf("hold %s on %s: %w", p, LoDevice, err))
				continue
			}
			a.held[p] = true
		}
		if !d.announce {
			continue
		}
		if cur, ok := a.announced[p]; ok && sameAttrs(cur, d.attrs) {
			continue
		}
		if err := sp.Announce(ctx, p, d.attrs); err != nil {
			errs = append(errs, fmt.Errorf("announce %s: %w", p, err))
			continue
		}
		a.announced[p] = d.attrs
		a.log.Info("bgp: announced", "prefix", p)
	}
	err := errors.Join(errs...)
	a.mu.Lock()
	a.err = ""
	if err != nil {
		a.err = err.Error()
	}
	prev := a.announcedCopy
	a.announcedCopy = sortedPrefixes(boolKeys(a.announced))
	if !slices.Equal(prev, a.announcedCopy) {
		a.changedAt = time.Now()
	}
	a.mu.Unlock()
	return err
}

// Status is what this router announces and why not.
type Status struct {
	Sessions []Session
	// Announced are the prefixes the speaker advertises now.
	Announced []netip.Prefix
	// Configured are the bgp-mode VIPs of the config.
	Configured []netip.Prefix
	// Blocked is why Configured are not announced; empty when they are.
	Blocked Reason
	// Error is the last convergence's failure, if any.
	Error string
	// Since is when Announced last changed.
	Since time.Time
}

// Status reports the sessions and announcements.
func (a *Announcer) Status() Status {
	d, blocked := a.desired()
	a.mu.Lock()
	st := Status{
		Announced: slices.Clone(a.announcedCopy), Configured: sortedPrefixes(d.hold),
		Blocked: blocked, Error: a.err, Since: a.changedAt,
	}
	a.mu.Unlock()
	if a.o.Speaker != nil {
		st.Sessions = a.o.Speaker.Sessions()
	}
	return st
}

// noSpeaker stands in for a missing speaker: it holds no session and is
// never asked to announce (desired blocks that).
type noSpeaker struct{}

func (noSpeaker) SetPeers(context.Context, uint32, []Peer) error           { return nil }
func (noSpeaker) Announce(context.Context, netip.Prefix, Attributes) error { return nil }
func (noSpeaker) Withdraw(context.Context, netip.Prefix) error             { return nil }
func (noSpeaker) Sessions() []Session                                      { return nil }

// Prefixes are the host prefixes (/32, /128) of c's active bgp-mode VIPs.
func Prefixes(c *shoalv1.Config) []netip.Prefix {
	set := map[netip.Prefix]bool{}
	for _, s := range c.GetServices() {
		if config.ServiceAnnounce(c, s) != config.AnnounceBGP || (s.Active != nil && !s.GetActive()) {
			continue
		}
		ip, err := netip.ParseAddr(s.GetVip().GetAddress())
		if err != nil {
			continue
		}
		ip = ip.Unmap()
		set[netip.PrefixFrom(ip, ip.BitLen())] = true
	}
	return sortedPrefixes(set)
}

// Peers maps the config's peers, each with its own or the global hold time.
func Peers(b *shoalv1.Bgp) []Peer {
	hold := config.DefaultBGPHoldTime
	if b.HoldTime != nil {
		hold = b.HoldTime.AsDuration()
	}
	var out []Peer
	for _, p := range b.GetPeers() {
		ip, err := netip.ParseAddr(p.GetAddress())
		if err != nil {
			continue
		}
		peer := Peer{Address: ip.Unmap(), ASN: p.Asn, Port: uint16(p.Port), HoldTime: hold}
		if peer.Port == 0 {
			peer.Port = config.DefaultBGPPort
		}
		if p.HoldTime != nil {
			peer.HoldTime = p.HoldTime.AsDuration()
		}
		out = append(out, peer)
	}
	return out
}

func attributes(b *shoalv1.Bgp) Attributes {
	var a Attributes
	for _, s := range b.GetCommunities() {
		if v, err := config.ParseCommunity(s); err == nil {
			a.Communities = append(a.Communities, v)
		}
	}
	if b.Med != nil {
		m := b.GetMed()
		a.MED = &m
	}
	return a
}

func sameAttrs(x, y Attributes) bool {
	if (x.MED == nil) != (y.MED == nil) || (x.MED != nil && *x.MED != *y.MED) {
		return false
	}
	return slices.Equal(x.Communities, y.Communities)
}

func boolKeys[V any](m map[netip.Prefix]V) map[netip.Prefix]bool {
	out := make(map[netip.Prefix]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func sortedPrefixes(m map[netip.Prefix]bool) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}
