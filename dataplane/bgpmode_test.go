package dataplane

import (
	"net"
	"testing"

	"github.com/moby/ipvs"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestBGPMode: a bgp-mode service is programmed with Maglev hashing over
// source address and port with fallback, the sloppy sysctls are set, and
// the leader does not raise its VIP (dataplane/bgp holds it on lo on every
// router); an l2 service beside it is unchanged.
func TestBGPMode(t *testing.T) {
	r := newRig(t, ModeIPVS, "")
	c := &shoalv1.Config{
		Serial: 1,
		Global: &shoalv1.Global{Announce: "bgp", Bgp: &shoalv1.Bgp{LocalAsn: 65001, Peers: []*shoalv1.BgpPeer{{Address: "10.1.0.1", Asn: 65000}}}},
		Services: []*shoalv1.VirtualService{
			{Name: "web", Vip: addr("192.0.2.10"), Port: 80, RealServers: []*shoalv1.RealServer{rs("10.0.0.1"), rs("10.0.0.2")}},
			{Name: "old", Announce: "l2", Vip: addr("192.0.2.20"), Port: 80, RealServers: []*shoalv1.RealServer{rs("10.0.0.1")}},
		},
	}
	config.Normalize(c)
	if err := config.Validate(c); err != nil {
		t.Fatal(err)
	}
	r.apply(t, c)
	svc, dests, ok := r.ipvs.Service("tcp/192.0.2.10:80")
	if !ok {
		t.Fatalf("bgp service missing; have %v", r.ipvs.Keys())
	}
	if svc.SchedName != "mh" || svc.Flags&(svcFlagSchedSH1|svcFlagSchedSH2) != svcFlagSchedSH1|svcFlagSchedSH2 {
		t.Errorf("bgp service scheduler %q flags %#x, want mh with mh-fallback|mh-port", svc.SchedName, svc.Flags)
	}
	for _, d := range dests {
		if forwardName(d.ConnectionFlags) != "dr" {
			t.Errorf("destination %v forwards %s, want dr", d.Address, forwardName(d.ConnectionFlags))
		}
	}
	if old, _, ok := r.ipvs.Service("tcp/192.0.2.20:80"); !ok || old.SchedName != "wlc" || old.Flags&(svcFlagSchedSH1|svcFlagSchedSH2) != 0 {
		t.Errorf("l2 service %+v", old)
	}
	for _, name := range sloppySysctls {
		if v, _ := r.sysctls.Sysctl(name); v != "1" {
			t.Errorf("net.ipv4.vs.%s = %q, want 1", name, v)
		}
	}
	r.d.SetLeader(true)
	eq(t, "leader holds", r.addrs.Held(), []string{"192.0.2.20/32 eth0"})
}

// TestBGPModeDestinationOrder: the kernel lists destinations newest first,
// and mh builds its table in list order, so a router that saw a server go
// and come back must end with the same list as one that started fresh.
func TestBGPModeDestinationOrder(t *testing.T) {
	cfg := func() *shoalv1.Config {
		c := &shoalv1.Config{
			Serial: 1,
			Global: &shoalv1.Global{Announce: "bgp", Bgp: &shoalv1.Bgp{LocalAsn: 65001, Peers: []*shoalv1.BgpPeer{{Address: "10.1.0.1", Asn: 65000}}}},
			Services: []*shoalv1.VirtualService{{Name: "web", Vip: addr("192.0.2.10"), Port: 80,
				RealServers: []*shoalv1.RealServer{rs("10.0.0.1"), rs("10.0.0.2"), rs("10.0.0.3")}}},
		}
		config.Normalize(c)
		return c
	}
	const key = "tcp/192.0.2.10:80"
	fresh := newRig(t, ModeIPVS, "")
	fresh.apply(t, cfg())
	want := fresh.ipvs.List(key)
	eq(t, "fresh router's list", want, []string{"10.0.0.3:80", "10.0.0.2:80", "10.0.0.1:80"})

	old := newRig(t, ModeIPVS, "")
	old.apply(t, cfg())
	old.health.set("web", "10.0.0.2:80", false)
	old.apply(t, cfg())
	eq(t, "server down", old.ipvs.List(key), []string{"10.0.0.3:80", "10.0.0.1:80"})
	old.health.set("web", "10.0.0.2:80", true)
	old.apply(t, cfg())
	eq(t, "server back", old.ipvs.List(key), want)

	// A server added in the middle, and an l2 service, which is left in
	// the order of its history.
	c := cfg()
	c.Services[0].RealServers = append(c.Services[0].RealServers, rs("10.0.0.0"), rs("10.0.0.4"))
	config.Normalize(c)
	old.apply(t, c)
	eq(t, "servers added", old.ipvs.List(key), []string{"10.0.0.4:80", "10.0.0.3:80", "10.0.0.2:80", "10.0.0.1:80", "10.0.0.0:80"})
}

func TestReorderFrom(t *testing.T) {
	for _, tc := range []struct {
		list []string
		want int
	}{
		{nil, 0},
		{[]string{"a"}, 0},
		{[]string{"c", "b", "a"}, 0},
		{[]string{"b", "c", "a"}, 2},
		{[]string{"a", "c", "b"}, 3},
		{[]string{"d", "c", "a", "b"}, 4},
		{[]string{"b", "d", "c", "a"}, 3},
		{[]string{"d", "b", "c", "a"}, 3},
		{[]string{"e", "d", "b", "c", "a"}, 4},
	} {
		var ds []*ipvs.Destination
		for _, k := range tc.list {
			ds = append(ds, &ipvs.Destination{Address: net.ParseIP("10.0.0.1"), Port: uint16(k[0]) + 100}) // three digits: destKey compares as text
		}
		if got := reorderFrom(ds); got != tc.want {
			t.Errorf("reorderFrom(%v) = %d, want %d", tc.list, got, tc.want)
		}
	}
}
