package dataplane

import (
	"testing"

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
