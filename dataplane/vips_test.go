package dataplane

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moby/ipvs"

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
