package dataplane

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// addrRef is an address on a device.
type addrRef struct {
	dev    string
	prefix netip.Prefix
	label  string
}

func (a addrRef) key() string { return a.dev + "|" + a.prefix.String() }

// String is the form NodeStatus.addresses uses: "addr/prefix dev".
func (a addrRef) String() string { return a.prefix.String() + " " + a.dev }

// heldAddr is an address this node raised, with its announcement schedule.
type heldAddr struct {
	addrRef
	burstLeft int       // announcements of the takeover burst still to send
	next      time.Time // when the next burst announcement is due
	refreshAt time.Time // when the next refresh is due, after the burst
	// renewed is when its kernel lifetime was last set (Dataplane.now);
	// guarded by addrMu alone.
	renewed time.Time
}

// lostAddr is an address the kernel lost while this node held it as
// leader, waiting to be raised again.
type lostAddr struct {
	reason    string    // "expired" (its lifetime ran out) or "repair" (removed by somebody)
	notBefore time.Time // not raised again before (Dataplane.now)
}

// lifetimeFuzz is how early the kernel may drop an address: it rounds the
// age up by HZ/50 (ADDRCONF_TIMER_FUZZ_MINUS, 20 ms) before comparing it
// with the lifetime. An address gone sooner than its lifetime less this
// was removed by somebody, not expired.
const lifetimeFuzz = 50 * time.Millisecond

// announcing is the announcement policy of a config.
type announcing struct {
	count    int
	interval time.Duration
	refresh  time.Duration
}

func announcingOf(c *shoalv1.Config) announcing {
	g := c.GetGlobal()
	a := announcing{count: int(g.GetGarpCount()), interval: config.DefaultGARPInterval, refresh: config.DefaultGARPRefresh}
	if a.count == 0 {
		a.count = config.DefaultGARPCount
	}
	if g.GetGarpInterval() != nil {
		a.interval = g.GetGarpInterval().AsDuration()
	}
	if g.GetGarpRefresh() != nil {
		a.refresh = g.GetGarpRefresh().AsDuration() // 0 turns the refresh off
	}
	return a
}

// addressRefusal is why a configured address is not raised.
type addressRefusal string

const (
	refuseNoInterface addressRefusal = "no_interface"
	refuseInvalid     addressRefusal = "invalid_address"
	refuseAddFailed   addressRefusal = "add_failed"
	refuseLinkDown    addressRefusal = "link_down"
)

// addrTable is the addresses the leader holds for a configuration, cfg:
// the VIP of every active l2-mode service and the NAT router address, each
// once (want, by addrRef.key), and the configured ones it cannot raise
// (refused). It is kept from one configuration to the next and brought up
// to date by update, which costs the services that changed: at 10,000
// services making it again was an O(services) part of every change on the
// leader, and of every renewal.
type addrTable struct {
	cfg     *shoalv1.Config
	want    map[string]addrRef
	refused map[string]addressRefusal
	// users counts the services (and the NAT router) that want each
	// address; of is each service's own, by pointer.
	users map[string]int
	of    map[*shoalv1.VirtualService]serviceAddr
	// mixed is set when two users of one address want it differently (a
	// label): only the whole table, in config order, then says which.
	mixed bool
}

// serviceAddr is what one service adds to an addrTable: an address (key
// set), a refusal (what set), or nothing.
type serviceAddr struct {
	key  string
	ref  addrRef
	what string
	why  addressRefusal
}

// addressOf is what a (the service's VIP or the NAT router address,
// named by what) adds to the addresses the leader holds.
func addressOf(what string, a *shoalv1.Address, defaultDev string) serviceAddr {
	if a.GetAddress() == "" {
		return serviceAddr{}
	}
	ip, err := netip.ParseAddr(a.GetAddress())
	if err != nil {
		return serviceAddr{what: what + " " + a.GetAddress(), why: refuseInvalid}
	}
	ip = ip.Unmap()
	bits := int(a.GetPrefixLength())
	if bits == 0 || bits > ip.BitLen() {
		bits = ip.BitLen()
	}
	dev := a.GetInterface()
	if dev == "" {
		dev = defaultDev
	}
	if dev == "" {
		return serviceAddr{what: what + " " + ip.String(), why: refuseNoInterface}
	}
	r := addrRef{dev: dev, prefix: netip.PrefixFrom(ip, bits), label: a.GetLabel()}
	return serviceAddr{key: r.key(), ref: r}
}

// serviceAddress is what vs adds to the addresses the leader holds for c.
func serviceAddress(c *shoalv1.Config, vs *shoalv1.VirtualService, defaultDev string) serviceAddr {
	// A bgp-mode VIP is held on lo by every router (dataplane/bgp),
	// not by the leader on its interface.
	if !isActive(vs.Active) || config.ServiceAnnounce(c, vs) == config.AnnounceBGP {
		return serviceAddr{}
	}
	return addressOf("service "+vs.GetName(), vs.GetVip(), defaultDev)
}

// add counts a in (sign 1) or out (-1).
func (t *addrTable) add(a serviceAddr, sign int) {
	switch {
	case a.key != "":
		t.users[a.key] += sign
		switch {
		case t.users[a.key] == 0:
			delete(t.users, a.key)
			delete(t.want, a.key)
		case sign > 0:
			if had, ok := t.want[a.key]; ok && had != a.ref {
				t.mixed = true
			}
			t.want[a.key] = a.ref // the last in config order, as a whole table has it
		}
	case a.what != "":
		if sign > 0 {
			t.refused[a.what] = a.why
		} else {
			delete(t.refused, a.what)
		}
	}
}

// update makes t the addresses the leader holds for c. c is compared with
// the configuration t was made from by pointer, service by service, as
// desiredState.update does; a change of the global settings (the NAT
// router, the announcement mode) makes it again whole.
func (t *addrTable) update(c *shoalv1.Config, defaultDev string) {
	if c == t.cfg {
		return
	}
	if t.cfg == nil || t.mixed || c.GetGlobal() != t.cfg.GetGlobal() {
		*t = addrTable{cfg: c, want: map[string]addrRef{}, refused: map[string]addressRefusal{},
			users: map[string]int{}, of: make(map[*shoalv1.VirtualService]serviceAddr, len(c.GetServices()))}
		for _, vs := range c.GetServices() {
			a := serviceAddress(c, vs, defaultDev)
			t.of[vs] = a
			t.add(a, 1)
		}
		t.add(addressOf("nat_router", c.GetGlobal().GetNatRouter(), defaultDev), 1)
		return
	}
	gone, came := changedServices(t.cfg.GetServices(), c.GetServices())
	for _, vs := range gone {
		t.add(t.of[vs], -1)
		delete(t.of, vs)
	}
	for _, vs := range came {
		a := serviceAddress(c, vs, defaultDev)
		t.of[vs] = a
		t.add(a, 1)
	}
	t.cfg = c
	if t.mixed {
		t.cfg = nil // which of them wins is the whole table's to say
		t.update(c, defaultDev)
	}
}

// wanted is what this node must hold now: the config's addresses while it
// leads with its monitored links up, none otherwise, and why configured
// addresses are left out.
func (d *Dataplane) wanted() (leader bool, cfg *shoalv1.Config, want map[string]addrRef, refused map[string]addressRefusal) {
	d.mu.Lock()
	leader, cfg = d.leader && !d.released.Load(), d.cfg
	d.mu.Unlock()
	want = map[string]addrRef{}
	if !leader {
		return leader, cfg, want, nil
	}
	// Called with addrMu held, which guards addrs. want and refused are
	// addrs' own: not to be modified.
	d.addrs.update(cfg, d.o.DefaultInterface)
	want, refused = d.addrs.want, d.addrs.refused
	if d.o.Links != nil {
		if down := d.o.Links.Down(); len(down) > 0 {
			// A node cut off from a monitored network must not attract
			// traffic it cannot deliver.
			want = map[string]addrRef{}
			refused = map[string]addressRefusal{fmt.Sprintf("any address (links down: %v)", down): refuseLinkDown}
		}
	}
	return leader, cfg, want, refused
}

// syncAddresses makes the held addresses equal to what this node must hold:
// the config's addresses while leading, none otherwise. Removals come first.
// New addresses get their first announcement before it returns; the rest of
// the burst is left to announceLoop. With verify, addresses are also checked
// in the kernel and raised again when somebody removed them (see
// checkHeldLocked for those whose lifetime ran out).
func (d *Dataplane) syncAddresses(reason string, verify bool) error {
	d.addrMu.Lock()
	defer d.addrMu.Unlock()
	leader, cfg, want, refused := d.wanted()
	if !leader {
		// Whatever was lost is not this node's to raise any more.
		clear(d.lost)
	}
	var errs []error
	changed := false

	// Drop first.
	var keep []addrRef
	for _, s := range d.stale {
		if _, ok := want[s.key()]; ok {
			continue // raised again below, and announced
		}
		if err := d.o.Addresses.RemoveAddress(s.dev, s.prefix); err != nil {
			errs = append(errs, err)
			keep = append(keep, s) // retried on the next sync
			continue
		}
		vipChangesTotal.WithLabelValues("remove", "stale").Inc()
		d.log.Info("address dropped", "vip", s.prefix, "dev", s.dev, "reason", "stale")
	}
	if len(keep) != len(d.stale) {
		d.stale, changed = keep, true
		d.mu.Lock()
		d.staleSnapshot = slices.Clone(keep)
		d.mu.Unlock()
	}
	for k, h := range d.held {
		if _, ok := want[k]; ok {
			continue
		}
		if err := d.o.Addresses.RemoveAddress(h.dev, h.prefix); err != nil {
			// Still held, no longer renewed: retried on the next resync,
			// and gone with its lifetime at the latest.
			errs = append(errs, err)
			continue
		}
		d.mu.Lock()
		delete(d.held, k)
		d.mu.Unlock()
		changed = true
		r := reason
		if leader && reason != "link" {
			r = "config"
		}
		vipChangesTotal.WithLabelValues("remove", r).Inc()
		d.log.Info("address dropped", "vip", h.prefix, "dev", h.dev, "reason", r)
	}

	for what, why := range refused {
		vipRefusedTotal.WithLabelValues(string(why)).Inc()
		errs = append(errs, fmt.Errorf("not raising %s: %s", what, why))
	}
	now := d.now()
	if verify && leader {
		lost, err := d.checkHeldLocked(now, want, false)
		errs = append(errs, err)
		changed = changed || lost
	}
	r := reason
	if verify {
		r = "repair"
	}
	added, err := d.raiseLocked(now, want, r, false, announcingOf(cfg))
	errs = append(errs, err)
	if added || changed {
		if err := d.saveState(); err != nil {
			errs = append(errs, err)
		}
	}
	err = joinErrors(errs)
	d.mu.Lock()
	d.addrErr = ""
	if err != nil {
		d.addrErr = err.Error()
	}
	d.mu.Unlock()
	return err
}

// checkHeldLocked looks for the wanted held addresses in the kernel and,
// with renew, gives those it finds a fresh lifetime. One that is gone is no
// longer held and is raised again by raiseLocked: at once when somebody
// removed it, but only a renewal interval later when its lifetime ran out.
// That happens only when this process did not run for a whole lifetime —
// longer than any leader lease — so leadership has most likely moved on,
// and the leadership signal gets that interval to say so before this node
// announces the address again. It reports whether an address was lost.
// Called with addrMu held, while leading.
func (d *Dataplane) checkHeldLocked(now time.Time, want map[string]addrRef, renew bool) (lost bool, err error) {
	var errs []error
	var renewals []*heldAddr
	present := map[string]bool{}
	listed := map[string]bool{}
	unlisted := map[string]bool{} // devices whose listing failed
	for _, k := range slices.Sorted(maps.Keys(d.held)) {
		h := d.held[k]
		if _, ok := want[k]; !ok {
			continue // on its way out: not renewed, whatever happens
		}
		if !listed[h.dev] {
			listed[h.dev] = true
			got, err := d.o.Addresses.ListAddresses(h.dev)
			if err != nil {
				errs = append(errs, err)
				unlisted[h.dev] = true
			}
			for _, p := range got {
				present[addrRef{dev: h.dev, prefix: p}.key()] = true
			}
		}
		// An address that could not be looked for is not missing: it is
		// renewed all the same (which raises it again if it was gone).
		if present[k] || unlisted[h.dev] {
			if renew {
				renewals = append(renewals, h)
			}
			continue
		}
		unrenewed := now.Sub(h.renewed)
		l := lostAddr{reason: "repair", notBefore: now}
		if d.lifetime > 0 && unrenewed >= d.lifetime-lifetimeFuzz {
			l = lostAddr{reason: "expired", notBefore: now.Add(d.renewEvery())}
			vipExpiredTotal.Inc()
			d.log.Warn("address expired: its lifetime was not renewed in time; raising it again after a renewal interval if this node still leads",
				"vip", h.prefix, "dev", h.dev, "unrenewed", unrenewed.Round(time.Millisecond), "lifetime", d.lifetime)
		} else {
			d.log.Warn("address missing from the kernel, raising it again", "vip", h.prefix, "dev", h.dev)
		}
		d.lost[k] = l
		d.mu.Lock()
		delete(d.held, k)
		d.mu.Unlock()
		lost = true
	}
	adds := make([]AddressAdd, len(renewals))
	for i, h := range renewals {
		adds[i] = d.addressAdd(h.addrRef)
	}
	for i, err := range d.addAddresses(adds) {
		h := renewals[i]
		if err != nil {
			d.log.Warn("renewing an address's lifetime failed", "vip", h.prefix, "dev", h.dev,
				"unrenewed", now.Sub(h.renewed).Round(time.Millisecond), "lifetime", d.lifetime, "err", err)
			errs = append(errs, fmt.Errorf("renew lifetime: %w", err))
			continue
		}
		h.renewed = now
	}
	return lost, joinErrors(errs)
}

// addressAdd is r raised or renewed with this node's address lifetime.
func (d *Dataplane) addressAdd(r addrRef) AddressAdd {
	return AddressAdd{Dev: r.dev, Prefix: r.prefix, Label: r.label, Lifetime: d.lifetime}
}

// addAddresses raises or renews adds: in one call when the backend can
// (AddressAdder), one by one when not.
func (d *Dataplane) addAddresses(adds []AddressAdd) []error {
	if a, ok := d.o.Addresses.(AddressAdder); ok {
		return a.AddAddresses(adds)
	}
	errs := make([]error, len(adds))
	for i, a := range adds {
		errs[i] = d.o.Addresses.AddAddress(a.Dev, a.Prefix, a.Label, a.Lifetime)
	}
	return errs
}

// raiseLocked raises the wanted addresses that are not held, each with a
// takeover burst whose first announcement leaves before it returns, and
// counts them under reason, or under the reason they were lost for. A lost
// address waits until it may be raised again; onlyLost raises nothing
// else. It reports whether it raised any. Called with addrMu held.
func (d *Dataplane) raiseLocked(now time.Time, want map[string]addrRef, reason string, onlyLost bool, ann announcing) (added bool, err error) {
	var errs []error
	for k := range d.lost {
		if _, ok := want[k]; !ok {
			delete(d.lost, k)
		}
	}
	wall := time.Now() // the announcements' clock
	var raise []string // sorted, but only those not held: not every VIP on every change
	for k := range want {
		if _, ok := d.held[k]; !ok {
			raise = append(raise, k)
		}
	}
	slices.Sort(raise)
	type raising struct{ key, why string }
	var todo []raising
	for _, k := range raise {
		if l, ok := d.lost[k]; ok {
			if !now.Before(l.notBefore) {
				todo = append(todo, raising{k, l.reason})
			}
		} else if !onlyLost {
			todo = append(todo, raising{k, reason})
		}
	}
	// In batches (AddressAdder), each VIP's first announcement as soon
	// as its batch is raised, not after the rest of a takeover's VIPs:
	// with 1,000 of them that was 0.1 s (seconds in the VM lab) before
	// the first client moved.
	for batch := range slices.Chunk(todo, maxBatch) {
		adds := make([]AddressAdd, len(batch))
		for i, x := range batch {
			adds[i] = d.addressAdd(want[x.key])
		}
		for i, err := range d.addAddresses(adds) {
			k, r := batch[i].key, want[batch[i].key]
			if err != nil {
				vipRefusedTotal.WithLabelValues(string(refuseAddFailed)).Inc()
				errs = append(errs, err)
				continue
			}
			delete(d.lost, k)
			d.announce(r, "burst")
			d.mu.Lock()
			d.held[k] = &heldAddr{addrRef: r, burstLeft: ann.count - 1, next: wall.Add(ann.interval),
				refreshAt: wall.Add(ann.refresh), renewed: now}
			d.mu.Unlock()
			added = true
			vipChangesTotal.WithLabelValues("add", batch[i].why).Inc()
			d.log.Info("address raised", "vip", r.prefix, "dev", r.dev, "reason", batch[i].why)
		}
	}
	if added {
		// The rest of the bursts: announceLoop.
		select {
		case d.annKick <- struct{}{}:
		default:
		}
	}
	return added, joinErrors(errs)
}

// renewEvery is the renewal interval: a third of the lifetime, so that a
// renewal may be late by up to two of them before the address lapses.
func (d *Dataplane) renewEvery() time.Duration { return d.lifetime / 3 }

// renewLoop renews the lifetime of the held addresses while Run runs, a
// renewal interval after the end of the previous round (so the round after a
// stall comes a whole interval after the one that found the damage).
func (d *Dataplane) renewLoop(ctx context.Context) {
	t := time.NewTimer(d.renewEvery())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_ = d.renewAddresses()
		t.Reset(d.renewEvery())
	}
}

// renewAddresses is one round of renewals: every address this node holds
// as leader gets a fresh lifetime, and what the kernel lost is raised again
// (checkHeldLocked says when). A follower renews nothing: what it still
// holds, because a removal failed, lapses by itself.
func (d *Dataplane) renewAddresses() error {
	if d.lifetime <= 0 {
		return nil
	}
	d.addrMu.Lock()
	defer d.addrMu.Unlock()
	leader, cfg, want, _ := d.wanted()
	if !leader {
		d.mu.Lock()
		d.renewErr = ""
		d.mu.Unlock()
		return nil
	}
	now := d.now()
	lost, err := d.checkHeldLocked(now, want, true)
	errs := []error{err}
	added, err := d.raiseLocked(now, want, "repair", true, announcingOf(cfg))
	errs = append(errs, err)
	if lost || added {
		errs = append(errs, d.saveState())
	}
	err = joinErrors(errs)
	d.mu.Lock()
	d.renewErr = ""
	if err != nil {
		d.renewErr = err.Error()
	}
	d.mu.Unlock()
	return err
}

// release drops every address: Run's last act.
func (d *Dataplane) release() {
	d.released.Store(true)
	if d.o.Mode == ModeNone {
		return
	}
	if err := d.syncAddresses("shutdown", false); err != nil {
		d.log.Error("dropping addresses at shutdown", "err", err)
	}
	// A node that leaves stops sending as a master; its backup daemon
	// goes on receiving, so that it comes back with the table.
	if err := d.reconcileSync("shutdown"); err != nil {
		d.log.Error("stopping the master sync daemon at shutdown", "err", err)
	}
}

// announceLoop sends the rest of every takeover burst and the periodic
// refreshes while addresses are held.
func (d *Dataplane) announceLoop(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		d.addrMu.Lock()
		d.mu.Lock()
		ann := announcingOf(d.cfg)
		d.mu.Unlock()
		next := d.announceDueLocked(time.Now(), ann)
		d.addrMu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-d.annKick:
		case <-t.C:
		}
	}
}

// announceDueLocked sends the announcements due at now and returns when the
// next one is due (zero: none). Called with addrMu held, so an address cannot
// be dropped while it is being announced.
func (d *Dataplane) announceDueLocked(now time.Time, ann announcing) time.Time {
	type due struct {
		ref  addrRef
		kind string
	}
	var send []due
	var next time.Time
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	d.mu.Lock()
	keys := make([]string, 0, len(d.held))
	for k := range d.held {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		h := d.held[k]
		switch {
		case h.burstLeft > 0 && !now.Before(h.next):
			send = append(send, due{h.addrRef, "burst"})
			h.burstLeft--
			h.next = now.Add(ann.interval)
			h.refreshAt = now.Add(ann.refresh)
		case h.burstLeft == 0 && ann.refresh > 0 && !h.refreshAt.IsZero() && !now.Before(h.refreshAt):
			send = append(send, due{h.addrRef, "refresh"})
			h.refreshAt = now.Add(ann.refresh)
		}
		if h.burstLeft > 0 {
			later(h.next)
		} else if ann.refresh > 0 {
			later(h.refreshAt)
		}
	}
	d.mu.Unlock()
	for _, s := range send {
		d.announce(s.ref, s.kind)
	}
	return next
}

// announce sends one announcement of r, of kind "burst" or "refresh".
func (d *Dataplane) announce(r addrRef, kind string) {
	if err := d.o.Announcer.Announce(r.dev, r.prefix.Addr()); err != nil {
		garpSentTotal.WithLabelValues(kind, "error").Inc()
		d.log.Warn("announcement failed", "vip", r.prefix.Addr(), "dev", r.dev, "err", err)
		return
	}
	garpSentTotal.WithLabelValues(kind, "ok").Inc()
}
