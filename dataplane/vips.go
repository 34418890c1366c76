package dataplane

import (
	"context"
	"fmt"
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
}

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

// desiredAddresses lists the addresses the leader holds for c: the VIP of
// every active service and the NAT router address, each once.
func desiredAddresses(c *shoalv1.Config, defaultDev string) (map[string]addrRef, map[string]addressRefusal) {
	want := map[string]addrRef{}
	refused := map[string]addressRefusal{}
	add := func(what string, a *shoalv1.Address) {
		if a.GetAddress() == "" {
			return
		}
		ip, err := netip.ParseAddr(a.GetAddress())
		if err != nil {
			refused[what+" "+a.GetAddress()] = refuseInvalid
			return
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
			refused[what+" "+ip.String()] = refuseNoInterface
			return
		}
		r := addrRef{dev: dev, prefix: netip.PrefixFrom(ip, bits), label: a.GetLabel()}
		want[r.key()] = r
	}
	for _, vs := range c.GetServices() {
		if isActive(vs.Active) {
			add("service "+vs.GetName(), vs.GetVip())
		}
	}
	add("nat_router", c.GetGlobal().GetNatRouter())
	return want, refused
}

// syncAddresses makes the held addresses equal to what this node must hold:
// the config's addresses while leading, none otherwise. Removals come first.
// New addresses get their first announcement before it returns; the rest of
// the burst is left to announceLoop. With verify, addresses are also checked
// in the kernel and raised again when somebody removed them.
func (d *Dataplane) syncAddresses(reason string, verify bool) error {
	d.addrMu.Lock()
	defer d.addrMu.Unlock()
	d.mu.Lock()
	leader, cfg := d.leader && !d.released.Load(), d.cfg
	d.mu.Unlock()

	want := map[string]addrRef{}
	var refused map[string]addressRefusal
	if leader {
		want, refused = desiredAddresses(cfg, d.o.DefaultInterface)
		if d.o.Links != nil {
			if down := d.o.Links.Down(); len(down) > 0 {
				// A node cut off from a monitored network must not
				// attract traffic it cannot deliver.
				want = map[string]addrRef{}
				refused = map[string]addressRefusal{fmt.Sprintf("any address (links down: %v)", down): refuseLinkDown}
			}
		}
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
			errs = append(errs, err) // still held: retried on the next resync
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
	if verify && leader {
		present := map[string]bool{}
		for k, h := range d.held {
			if _, listed := present[h.dev+"|"]; !listed {
				present[h.dev+"|"] = true
				got, err := d.o.Addresses.ListAddresses(h.dev)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				for _, p := range got {
					present[addrRef{dev: h.dev, prefix: p}.key()] = true
				}
			}
			if !present[k] {
				d.log.Warn("address missing from the kernel, raising it again", "vip", h.prefix, "dev", h.dev)
				d.mu.Lock()
				delete(d.held, k)
				d.mu.Unlock()
			}
		}
	}
	now := time.Now()
	ann := announcingOf(cfg)
	added := 0
	for k, r := range want {
		if _, ok := d.held[k]; ok {
			continue
		}
		if err := d.o.Addresses.AddAddress(r.dev, r.prefix, r.label); err != nil {
			vipRefusedTotal.WithLabelValues(string(refuseAddFailed)).Inc()
			errs = append(errs, err)
			continue
		}
		d.mu.Lock()
		d.held[k] = &heldAddr{addrRef: r, burstLeft: ann.count, next: now}
		d.mu.Unlock()
		changed, added = true, added+1
		r2 := reason
		if verify {
			r2 = "repair"
		}
		vipChangesTotal.WithLabelValues("add", r2).Inc()
		d.log.Info("address raised", "vip", r.prefix, "dev", r.dev, "reason", r2)
	}
	if added > 0 {
		d.announceDueLocked(now, ann)
		select {
		case d.annKick <- struct{}{}:
		default:
		}
	}
	if changed {
		if err := d.saveState(); err != nil {
			errs = append(errs, err)
		}
	}
	err := joinErrors(errs)
	d.mu.Lock()
	d.addrErr = ""
	if err != nil {
		d.addrErr = err.Error()
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
		if err := d.o.Announcer.Announce(s.ref.dev, s.ref.prefix.Addr()); err != nil {
			garpSentTotal.WithLabelValues(s.kind, "error").Inc()
			d.log.Warn("announcement failed", "vip", s.ref.prefix.Addr(), "dev", s.ref.dev, "err", err)
			continue
		}
		garpSentTotal.WithLabelValues(s.kind, "ok").Inc()
	}
	return next
}
