package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/ipvs"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/shoal-lb/shoal/dataplane/kernelfake"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// run starts d.Run and returns a stop function that waits for it.
func run(t *testing.T, d *Dataplane) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := d.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

func vipConfig() *shoalv1.Config {
	c := webConfig()
	c.Global = &shoalv1.Global{
		NatRouter:    &shoalv1.Address{Address: "10.0.0.254", PrefixLength: 24, Interface: "eth1", Label: "eth1:1"},
		GarpCount:    3,
		GarpInterval: &durationpbT{Nanos: int32(5 * time.Millisecond)},
		GarpRefresh:  &durationpbT{Nanos: int32(50 * time.Millisecond)},
	}
	c.Services = append(c.Services,
		&shoalv1.VirtualService{Name: "web-tls", Vip: addr("192.0.2.10"), Port: 443}, // same VIP: raised once
		&shoalv1.VirtualService{Name: "dns6", Vip: &shoalv1.Address{Address: "2001:db8::53", Interface: "eth2"}, Port: 53, Protocol: "udp"},
		&shoalv1.VirtualService{Name: "off", Vip: addr("192.0.2.99"), Port: 80, Active: protoBool(false)},
	)
	return c
}

func protoBool(b bool) *bool { return &b }

var (
	vip   = netip.MustParseAddr("192.0.2.10")
	nat   = netip.MustParseAddr("10.0.0.254")
	vip6  = netip.MustParseAddr("2001:db8::53")
	wantA = []string{"10.0.0.254/24 eth1", "192.0.2.10/32 eth0", "2001:db8::53/128 eth2"}
)

func TestLeadershipRaisesAndDropsAddresses(t *testing.T) {
	r := newRig(t, ModeIPVS, "")
	r.d.SetConfig(vipConfig())
	stop := run(t, r.d)

	start := time.Now()
	r.d.SetLeader(true)
	took := time.Since(start)
	// Addresses and the first announcement of each are done when SetLeader
	// returns, not after a reconcile.
	eq(t, "held after SetLeader(true)", r.addrs.Held(), wantA)
	for _, a := range []netip.Addr{vip, nat, vip6} {
		if r.ann.Count(a) < 1 {
			t.Errorf("%s not announced when SetLeader returned", a)
		}
	}
	t.Logf("SetLeader(true) took %v", took)
	eventually(t, 2*time.Second, "burst of 3 + a refresh", func() bool {
		return r.ann.Count(vip) >= 4 && r.ann.Count(nat) >= 4 && r.ann.Count(vip6) >= 4
	})
	var st shoalv1.NodeStatus
	r.d.Status(&st)
	if !st.HoldsVips || len(st.Addresses) != 3 || st.Dataplane != "ipvs" {
		t.Errorf("status %v %v %q", st.HoldsVips, st.Addresses, st.Dataplane)
	}

	// Config changes while leading move addresses.
	c := vipConfig()
	c.Services[0].Vip = addr("192.0.2.20")
	c.Services[1].Vip = addr("192.0.2.20")
	r.d.SetConfig(c)
	eq(t, "after VIP change", r.addrs.Held(), []string{"10.0.0.254/24 eth1", "192.0.2.20/32 eth0", "2001:db8::53/128 eth2"})
	if r.ann.Count(netip.MustParseAddr("192.0.2.20")) < 1 {
		t.Error("new VIP not announced")
	}

	r.d.SetLeader(false)
	eq(t, "held after SetLeader(false)", r.addrs.Held(), nil)
	r.d.Status(&st)
	if st.HoldsVips || len(st.Addresses) != 0 {
		t.Errorf("status after step-down %v %v", st.HoldsVips, st.Addresses)
	}

	r.d.SetLeader(true)
	eq(t, "held again", r.addrs.Held(), []string{"10.0.0.254/24 eth1", "192.0.2.20/32 eth0", "2001:db8::53/128 eth2"})
	stop()
	eq(t, "held after Run returned", r.addrs.Held(), nil)
	r.d.SetLeader(true) // a late notification during shutdown
	eq(t, "held after a late SetLeader(true)", r.addrs.Held(), nil)
	// The fake announcer refuses addresses that are not held: an
	// announcement after a drop would show here.
	if n := len(r.ann.Refused()); n > 0 {
		t.Errorf("%d announcements of addresses not held: %v", n, r.ann.Refused())
	}
}

func TestAddressDriftRepairedWhileLeading(t *testing.T) {
	r := newRig(t, ModeVIP, "")
	r.d.SetConfig(vipConfig())
	r.d.SetLeader(true)
	if err := r.addrs.RemoveAddress("eth0", netip.MustParsePrefix("192.0.2.10/32")); err != nil {
		t.Fatal(err)
	}
	before := r.ann.Count(vip)
	if err := r.d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	eq(t, "repaired", r.addrs.Held(), wantA)
	if r.ann.Count(vip) <= before {
		t.Error("repaired VIP not announced")
	}
	eq(t, "vip mode leaves IPVS alone", r.ipvs.Keys(), nil)
}

func TestStaleAddressesDroppedAfterRestart(t *testing.T) {
	state := filepath.Join(t.TempDir(), "dataplane.json")
	r := newRig(t, ModeVIP, state)
	r.d.SetConfig(vipConfig())
	r.d.SetLeader(true)
	eq(t, "held", r.addrs.Held(), wantA)
	// The process dies holding them (no Run return); a new one starts as a
	// follower and must drop them even before it has a config.
	r.reopen(t, ModeVIP)
	if err := r.d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	eq(t, "dropped after restart", r.addrs.Held(), nil)
}

func TestNoInterfaceIsRefusedNotFatal(t *testing.T) {
	r := newRig(t, ModeVIP, "")
	r.d.o.DefaultInterface = ""
	r.d.SetConfig(vipConfig())
	r.d.SetLeader(true)
	eq(t, "only addresses with an interface", r.addrs.Held(), []string{"10.0.0.254/24 eth1", "2001:db8::53/128 eth2"})
	var st shoalv1.NodeStatus
	r.d.Status(&st)
	if st.ReconcileError == "" {
		t.Error("refusal not reported")
	}
}

func TestModeNoneTouchesNothing(t *testing.T) {
	r := newRig(t, ModeNone, "")
	stop := run(t, r.d)
	r.d.SetConfig(vipConfig())
	r.d.SetLeader(true)
	if err := r.d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	stop()
	eq(t, "addresses", r.addrs.Held(), nil)
	eq(t, "ipvs", r.ipvs.Keys(), nil)
	var st shoalv1.NodeStatus
	r.d.Status(&st)
	if st.Dataplane != "none" {
		t.Errorf("mode %q", st.Dataplane)
	}
}

func TestRunReconcilesOnConfigAndHealth(t *testing.T) {
	r := newRig(t, ModeIPVS, "")
	run(t, r.d)
	c := webConfig()
	c.Serial = 7
	r.d.SetConfig(c)
	serial := func() uint64 {
		var st shoalv1.NodeStatus
		r.d.Status(&st)
		return st.ReconciledSerial
	}
	eventually(t, 2*time.Second, "serial 7 reconciled", func() bool { return serial() == 7 })
	r.health.set("web", "10.0.0.1:80", false)
	r.d.HealthChanged()
	eventually(t, 2*time.Second, "down server removed", func() bool {
		_, ds, _ := r.ipvs.Service("tcp/192.0.2.10:80")
		return len(ds) == 1
	})
	if err := r.ipvs.SetStats("tcp/192.0.2.10:80", "10.0.0.2:80", ipvs.SvcStats{Connections: 3, PacketsIn: 4, PacketsOut: 5, BytesIn: 6, BytesOut: 7}, 8, 9); err != nil {
		t.Fatal(err)
	}
	var st shoalv1.NodeStatus
	r.d.Status(&st)
	r.d.IPVSStatus(&st)
	if d := st.GetIpvs()[0].GetDestinations()[0]; d.GetActiveConnections() != 8 || d.GetInactiveConnections() != 9 ||
		d.GetStats().GetConnections() != 3 || d.GetStats().GetPacketsIn() != 4 || d.GetStats().GetPacketsOut() != 5 ||
		d.GetStats().GetBytesIn() != 6 || d.GetStats().GetBytesOut() != 7 {
		t.Errorf("destination stats %v", d)
	}
	if len(st.Ipvs) != 1 || st.Ipvs[0].Name != "web" || st.Ipvs[0].Scheduler != "wlc" || len(st.Ipvs[0].Destinations) != 1 ||
		st.Ipvs[0].Destinations[0].Forward != "nat" || st.Ipvs[0].Destinations[0].Weight != 2 || st.LastReconcile == nil {
		t.Errorf("status ipvs %v", st.Ipvs)
	}
}

func TestResyncRepairsFlush(t *testing.T) {
	r := newRig(t, ModeIPVS, "")
	r.d.o.Resync = 20 * time.Millisecond
	r.d.SetConfig(webConfig())
	run(t, r.d)
	eventually(t, 2*time.Second, "programmed", func() bool { return len(r.ipvs.Keys()) == 1 })
	r.ipvs.Flush()
	eventually(t, 2*time.Second, "repaired by resync", func() bool { return len(r.ipvs.Keys()) == 1 })
}

func TestMonitoredLinkDownRefusesAddresses(t *testing.T) {
	r := newRig(t, ModeVIP, "")
	run(t, r.d)
	c := vipConfig()
	c.Global.MonitorLinks = []string{"eth0", "eth1"}
	r.d.SetConfig(c)
	r.d.SetLeader(true)
	eq(t, "held with links up", r.addrs.Held(), wantA)

	r.links.SetUp("eth1", false)
	eventually(t, 2*time.Second, "addresses dropped while eth1 is down", func() bool { return len(r.addrs.Held()) == 0 })
	if err := r.d.Reconcile(); err == nil {
		t.Error("refusal not reported")
	}
	r.links.SetUp("eth9", false) // not monitored: no effect
	r.links.SetUp("eth1", true)
	eventually(t, 2*time.Second, "addresses back with eth1", func() bool { return len(r.addrs.Held()) == 3 })
}

func TestStaleAddressKeptUntilDropped(t *testing.T) {
	state := filepath.Join(t.TempDir(), "dataplane.json")
	r := newRig(t, ModeVIP, state)
	r.d.SetConfig(vipConfig())
	r.d.SetLeader(true)
	r.reopen(t, ModeVIP)
	r.addrs.FailNext("RemoveAddress", errors.New("netlink busy"))
	if err := r.d.Reconcile(); err == nil {
		t.Fatal("want the failed removal reported")
	}
	r.reopen(t, ModeVIP) // and another restart before the retry
	if err := r.d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	eq(t, "stale addresses dropped in the end", r.addrs.Held(), nil)
}

// lifetimeRig is a rig whose address renewals run on the fake kernel's
// clock: Advance is time passing, renewAddresses a tick of renewLoop.
func lifetimeRig(t *testing.T) *rig {
	t.Helper()
	r := newRig(t, ModeVIP, "")
	r.d.now = r.addrs.Now
	r.d.SetConfig(vipConfig())
	return r
}

// heldPrefixes are wantA as the fake's keys.
var heldPrefixes = []struct {
	dev string
	p   netip.Prefix
}{
	{"eth1", netip.MustParsePrefix("10.0.0.254/24")},
	{"eth0", netip.MustParsePrefix("192.0.2.10/32")},
	{"eth2", netip.MustParsePrefix("2001:db8::53/128")},
}

func checkLifetimes(t *testing.T, r *rig, what string, want time.Duration) {
	t.Helper()
	for _, h := range heldPrefixes {
		left, finite := r.addrs.Lifetime(h.dev, h.p)
		if !finite || left != want {
			t.Errorf("%s: %s on %s has %v left (finite %v), want %v", what, h.p, h.dev, left, finite, want)
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestAddressLifetimeRenewedEveryThird(t *testing.T) {
	r := lifetimeRig(t)
	L := DefaultAddressLifetime
	if got := r.d.renewEvery(); got != time.Second {
		t.Fatalf("renewal interval %v, want a third of %v", got, L)
	}
	r.d.SetLeader(true)
	checkLifetimes(t, r, "raised", L)
	r.addrs.Ops()

	for i := 0; i < 12; i++ { // four lifetimes
		r.addrs.Advance(r.d.renewEvery())
		if err := r.d.renewAddresses(); err != nil {
			t.Fatal(err)
		}
		checkLifetimes(t, r, fmt.Sprintf("renewal %d", i+1), L)
	}
	// A renewal late by all but a moment of the lifetime still keeps them.
	r.addrs.Advance(L - time.Millisecond)
	if err := r.d.renewAddresses(); err != nil {
		t.Fatal(err)
	}
	checkLifetimes(t, r, "late renewal", L)

	// A failed listing does not stop the renewals; a failed renewal is
	// reported, and the next one makes up for it.
	r.addrs.Advance(r.d.renewEvery())
	r.addrs.FailNext("ListAddresses", errors.New("netlink busy"))
	if err := r.d.renewAddresses(); err == nil {
		t.Error("failed listing not reported")
	}
	checkLifetimes(t, r, "renewed without a listing", L)
	r.addrs.Advance(r.d.renewEvery())
	r.addrs.FailNext("AddAddress", errors.New("no buffer space"))
	if err := r.d.renewAddresses(); err == nil {
		t.Error("failed renewal not reported")
	}
	var st shoalv1.NodeStatus
	r.d.Status(&st)
	if !strings.Contains(st.ReconcileError, "renew lifetime: no buffer space") {
		t.Errorf("status error %q", st.ReconcileError)
	}
	r.addrs.Advance(r.d.renewEvery())
	if err := r.d.renewAddresses(); err != nil {
		t.Fatal(err)
	}
	checkLifetimes(t, r, "after a failed renewal", L)
	r.d.Status(&st)
	if st.ReconcileError != "" {
		t.Errorf("status error %q after a good renewal", st.ReconcileError)
	}
	eq(t, "nothing left the kernel while renewed", r.addrs.Ops(), nil)

	// A follower renews nothing, not even an address whose removal failed:
	// the kernel drops it one lifetime after the last renewal.
	r.addrs.FailNext("RemoveAddress", errors.New("netlink busy"))
	r.d.SetLeader(false)
	if len(r.addrs.Held()) != 1 {
		t.Fatalf("want one address left by the failed removal, have %v", r.addrs.Held())
	}
	r.addrs.Advance(r.d.renewEvery())
	if err := r.d.renewAddresses(); err != nil {
		t.Fatal(err)
	}
	r.addrs.Advance(L - r.d.renewEvery())
	eq(t, "the failed removal ends with the lifetime", r.addrs.Held(), nil)
	if err := r.d.Reconcile(); err != nil { // retries the removal: already gone is fine
		t.Fatal(err)
	}
	r.d.Status(&st)
	if st.HoldsVips {
		t.Errorf("follower still holds %v", st.Addresses)
	}
}

func TestExpiredAddressRaisedAfterARenewalInterval(t *testing.T) {
	r := lifetimeRig(t)
	r.d.SetLeader(true)
	expired := counterValue(t, vipExpiredTotal)
	raised := counterValue(t, vipChangesTotal.WithLabelValues("add", "expired"))
	announced := r.ann.Count(vip)

	// lvsd does not run for a whole lifetime: the kernel drops everything.
	r.addrs.Advance(DefaultAddressLifetime)
	eq(t, "kernel after a lifetime without renewal", r.addrs.Held(), nil)

	// Whichever of the resync and the renewal loop runs first after the
	// stall notices, counts, and waits a renewal interval: leadership has
	// most likely moved on, and SetLeader(false) would be on its way.
	if err := r.d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if err := r.d.renewAddresses(); err != nil {
		t.Fatal(err)
	}
	var st shoalv1.NodeStatus
	r.d.Status(&st)
	if st.HoldsVips {
		t.Errorf("status still holds %v", st.Addresses)
	}
	if got := counterValue(t, vipExpiredTotal) - expired; got != 3 {
		t.Errorf("shoal_vip_expired_total grew by %v, want 3", got)
	}
	r.addrs.Advance(r.d.renewEvery() - time.Millisecond)
	if err := r.d.renewAddresses(); err != nil {
		t.Fatal(err)
	}
	eq(t, "within the renewal interval", r.addrs.Held(), nil)
	if r.ann.Count(vip) != announced {
		t.Error("an expired address was announced within the renewal interval")
	}

	// Still leading a renewal interval later: raised and announced again.
	r.addrs.Advance(time.Millisecond)
	if err := r.d.renewAddresses(); err != nil {
		t.Fatal(err)
	}
	eq(t, "raised again", r.addrs.Held(), wantA)
	checkLifetimes(t, r, "raised again", DefaultAddressLifetime)
	if r.ann.Count(vip) <= announced {
		t.Error("the address raised again was not announced")
	}
	if got := counterValue(t, vipChangesTotal.WithLabelValues("add", "expired")) - raised; got != 3 {
		t.Errorf(`shoal_vip_changes_total{action="add",reason="expired"} grew by %v, want 3`, got)
	}
	if n := len(r.ann.Refused()); n > 0 {
		t.Errorf("%d announcements of addresses not held", n)
	}
}

func TestExpiredAddressFollowsLeadership(t *testing.T) {
	r := lifetimeRig(t)
	r.d.SetLeader(true)
	r.addrs.Advance(DefaultAddressLifetime)
	if err := r.d.renewAddresses(); err != nil {
		t.Fatal(err)
	}
	// The fence lapsed during the stall (SetLeader(false)) and a quorum
	// answered again (SetLeader(true)): that is fresh word, acted on at once.
	r.d.SetLeader(false)
	r.d.SetLeader(true)
	eq(t, "raised by the new leadership", r.addrs.Held(), wantA)

	// Deposed during the stall: nothing comes back.
	r.addrs.Advance(DefaultAddressLifetime)
	if err := r.d.renewAddresses(); err != nil {
		t.Fatal(err)
	}
	r.d.SetLeader(false)
	r.addrs.Advance(r.d.renewEvery())
	if err := r.d.renewAddresses(); err != nil {
		t.Fatal(err)
	}
	if err := r.d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	eq(t, "a deposed leader raises nothing", r.addrs.Held(), nil)
}

func TestRemovedAddressRaisedAtOnceByRenewal(t *testing.T) {
	r := lifetimeRig(t)
	r.d.SetLeader(true)
	expired := counterValue(t, vipExpiredTotal)
	repaired := counterValue(t, vipChangesTotal.WithLabelValues("add", "repair"))
	announced := r.ann.Count(vip)
	r.addrs.Advance(r.d.renewEvery())
	if err := r.addrs.RemoveAddress("eth0", netip.MustParsePrefix("192.0.2.10/32")); err != nil { // ip addr del
		t.Fatal(err)
	}
	if err := r.d.renewAddresses(); err != nil {
		t.Fatal(err)
	}
	eq(t, "raised again at once", r.addrs.Held(), wantA)
	checkLifetimes(t, r, "after the repair", DefaultAddressLifetime)
	if r.ann.Count(vip) <= announced {
		t.Error("repaired VIP not announced")
	}
	if got := counterValue(t, vipChangesTotal.WithLabelValues("add", "repair")) - repaired; got != 1 {
		t.Errorf(`shoal_vip_changes_total{action="add",reason="repair"} grew by %v, want 1`, got)
	}
	if counterValue(t, vipExpiredTotal) != expired {
		t.Error("a removal was counted as an expiry")
	}
}

func TestAddressLifetimeOption(t *testing.T) {
	for _, c := range []struct {
		set, want time.Duration
		err       bool
	}{
		{0, DefaultAddressLifetime, false},
		{-1, 0, false},
		{time.Second, time.Second, false},
		{10 * time.Second, 10 * time.Second, false},
		{1500 * time.Millisecond, 0, true},
		{time.Millisecond, 0, true},
	} {
		addrs := kernelfake.NewAddresses()
		d, err := New(Options{Mode: ModeVIP, DefaultInterface: "eth0", Logger: quietLogger(), AddressLifetime: c.set,
			Addresses: addrs, Announcer: &kernelfake.Announcer{}, Links: kernelfake.NewLinks()})
		if (err != nil) != c.err {
			t.Errorf("AddressLifetime %v: err %v, want an error: %v", c.set, err, c.err)
			continue
		}
		if err != nil {
			continue
		}
		if d.lifetime != c.want {
			t.Errorf("AddressLifetime %v: lifetime %v, want %v", c.set, d.lifetime, c.want)
		}
		d.SetConfig(vipConfig())
		d.SetLeader(true)
		left, finite := addrs.Lifetime("eth0", netip.MustParsePrefix("192.0.2.10/32"))
		if finite != (c.want > 0) || left != c.want {
			t.Errorf("AddressLifetime %v: kernel lifetime %v (finite %v)", c.set, left, finite)
		}
	}
}

func TestRunRenewsAddresses(t *testing.T) {
	r := newRig(t, ModeVIP, "")
	r.reopenWith(t, ModeVIP, func(o *Options) { o.AddressLifetime = time.Second })
	r.d.now = r.addrs.Now
	r.d.SetConfig(vipConfig())
	run(t, r.d)
	r.d.SetLeader(true)
	p := netip.MustParsePrefix("192.0.2.10/32")
	r.addrs.Advance(900 * time.Millisecond)
	eventually(t, 2*time.Second, "Run's renewal loop renews the lifetime", func() bool {
		left, _ := r.addrs.Lifetime("eth0", p)
		return left == time.Second
	})
}
