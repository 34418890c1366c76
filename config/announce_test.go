package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// bgpWeb is web() announced by BGP with one peer.
func bgpWeb() *shoalv1.Config {
	c := web()
	c.Global = &shoalv1.Global{Announce: "bgp", Bgp: &shoalv1.Bgp{
		LocalAsn: 65001,
		Peers:    []*shoalv1.BgpPeer{{Address: "10.1.0.1", Asn: 65000}},
	}}
	return c
}

func TestNormalizeBGP(t *testing.T) {
	c := bgpWeb()
	c.Services = append(c.Services, &shoalv1.VirtualService{Name: "l2", Announce: " L2 ", Vip: &shoalv1.Address{Address: "192.0.2.11"}, Port: 80})
	Normalize(c)
	ws, l2 := c.Services[1], c.Services[0]
	if ws.Scheduler != "mh" || ws.Forward != "dr" {
		t.Errorf("bgp service got scheduler %q forward %q, want mh dr", ws.Scheduler, ws.Forward)
	}
	if l2.Announce != "l2" || l2.Scheduler != DefaultScheduler || l2.Forward != DefaultForward {
		t.Errorf("l2 service got announce %q scheduler %q forward %q", l2.Announce, l2.Scheduler, l2.Forward)
	}
	if got := c.Global.Bgp.HoldTime.AsDuration(); got != DefaultBGPHoldTime {
		t.Errorf("hold time %v, want %v", got, DefaultBGPHoldTime)
	}
	c.Global.DrainedNodes = []string{" r2", "r1", "r2"}
	Normalize(c)
	if got := c.Global.DrainedNodes; !slices.Equal(got, []string{"r1", "r2"}) || !Drained(c, "r2") || Drained(c, "r3") {
		t.Errorf("drained nodes %q", got)
	}
	if got := c.Global.Bgp.Peers[0].Port; got != DefaultBGPPort {
		t.Errorf("peer port %d, want %d", got, DefaultBGPPort)
	}
	if err := Validate(c); err != nil {
		t.Fatalf("normalised bgp config: %v", err)
	}

	// A config without bgp keeps global.announce empty, so what was
	// committed before bgp mode existed normalises to the same bytes.
	old := web()
	Normalize(old)
	if old.Global.Announce != "" || old.Global.Bgp != nil {
		t.Errorf("l2 config grew announce %q bgp %v", old.Global.Announce, old.Global.Bgp)
	}
}

func TestValidateBGP(t *testing.T) {
	svc := func(c *shoalv1.Config) *shoalv1.VirtualService { return c.Services[0] }
	bgp := func(c *shoalv1.Config) *shoalv1.Bgp { return c.Global.Bgp }
	tests := []struct {
		name   string
		change func(c *shoalv1.Config)
		want   []string
	}{
		{"valid", func(c *shoalv1.Config) {}, nil},
		{"valid tun", func(c *shoalv1.Config) { svc(c).Forward = "tun" }, nil},
		{"valid communities med hold", func(c *shoalv1.Config) {
			bgp(c).Communities = []string{"65000:100", "no-export"}
			bgp(c).Med = proto.Uint32(10)
			bgp(c).HoldTime = durationpb.New(0)
			bgp(c).Peers[0].HoldTime = durationpb.New(30 * time.Second)
		}, nil},
		{"valid per-service bgp", func(c *shoalv1.Config) { c.Global.Announce = ""; svc(c).Announce = "bgp" }, nil},
		{"valid l2 service in bgp cluster keeps nat", func(c *shoalv1.Config) { svc(c).Announce = "l2"; svc(c).Forward = "nat"; svc(c).Scheduler = "wlc" }, nil},
		{"mode", func(c *shoalv1.Config) { c.Global.Announce = "ospf" }, []string{`global.announce: "ospf" is not one of l2 bgp`}},
		{"service mode", func(c *shoalv1.Config) { svc(c).Announce = "arp" }, []string{`services[web].announce: "arp" is not one of l2 bgp`}},
		{"nat refused", func(c *shoalv1.Config) { svc(c).Forward = "nat" }, []string{"services[web].forward: nat cannot be used in bgp mode"}},
		{"rs nat refused", func(c *shoalv1.Config) { svc(c).RealServers[0].Forward = "nat" }, []string{"services[web].real_servers[10.0.0.2:80].forward: nat cannot be used in bgp mode"}},
		{"scheduler refused", func(c *shoalv1.Config) { svc(c).Scheduler = "wlc" }, []string{`services[web].scheduler: "wlc" cannot be used in bgp mode`}},
		{"bgp missing", func(c *shoalv1.Config) { c.Global.Bgp = nil }, []string{"global.bgp: required"}},
		{"no peers", func(c *shoalv1.Config) { bgp(c).Peers = nil }, []string{"global.bgp.peers: at least one"}},
		{"asn", func(c *shoalv1.Config) { bgp(c).LocalAsn = 0; bgp(c).Peers[0].Asn = 0 }, []string{"global.bgp.local_asn: required", "global.bgp.peers[0].asn: required"}},
		{"peer address", func(c *shoalv1.Config) { bgp(c).Peers[0].Address = "router" }, []string{`global.bgp.peers[0].address: "router" is not an IP address`}},
		{"peer multicast", func(c *shoalv1.Config) { bgp(c).Peers[0].Address = "224.0.0.5" }, []string{"global.bgp.peers[0].address: 224.0.0.5 is not a unicast address"}},
		{"peer twice", func(c *shoalv1.Config) {
			bgp(c).Peers = append(bgp(c).Peers, &shoalv1.BgpPeer{Address: "10.1.0.1", Asn: 65002})
		}, []string{"global.bgp.peers[1].address: 10.1.0.1 is listed twice"}},
		{"peer port", func(c *shoalv1.Config) { bgp(c).Peers[0].Port = 70000 }, []string{"global.bgp.peers[0].port: 70000 is outside"}},
		{"hold short", func(c *shoalv1.Config) { bgp(c).HoldTime = durationpb.New(time.Second) }, []string{"global.bgp.hold_time: 1s is outside 3s..65535s"}},
		{"hold fraction", func(c *shoalv1.Config) { bgp(c).Peers[0].HoldTime = durationpb.New(4500 * time.Millisecond) }, []string{"global.bgp.peers[0].hold_time: 4.5s is not whole seconds"}},
		{"community", func(c *shoalv1.Config) { bgp(c).Communities = []string{"65000:70000", "blackhole"} }, []string{
			"global.bgp.communities[0]: \"65000:70000\": both halves", "global.bgp.communities[1]: \"blackhole\" is not ASN:VALUE",
		}},
		{"drained", func(c *shoalv1.Config) { c.Global.DrainedNodes = []string{"r1", "r 2"} }, []string{`global.drained_nodes[0]: "r 2" is not a node id`}},
		{"vip in two modes", func(c *shoalv1.Config) {
			c.Services = append(c.Services, &shoalv1.VirtualService{Name: "x", Announce: "l2", Vip: &shoalv1.Address{Address: "192.0.2.10"}, Port: 443})
		}, []string{`services[x].announce: l2 here, but VIP 192.0.2.10 is announced by bgp (service "web")`}},
		{"fwmark without vip", func(c *shoalv1.Config) { svc(c).Vip, svc(c).Port, svc(c).Fwmark = nil, 0, 7 }, []string{"services[web].vip.address: required in bgp mode"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := bgpWeb()
			tt.change(c)
			err := Validate(c)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("got %v, want config.Errors", err)
			}
			if len(errs) != len(tt.want) {
				t.Errorf("got %d errors, want %d: %v", len(errs), len(tt.want), err)
			}
			for _, w := range tt.want {
				found := false
				for _, e := range errs {
					found = found || strings.HasPrefix(e.Error(), w)
				}
				if !found {
					t.Errorf("missing error %q in %v", w, err)
				}
			}
		})
	}
}

func TestParseCommunity(t *testing.T) {
	for in, want := range map[string]uint32{"65000:100": 65000<<16 | 100, "0:0": 0, "no-export": 0xFFFFFF01} {
		if got, err := ParseCommunity(in); err != nil || got != want {
			t.Errorf("ParseCommunity(%q) = %#x, %v; want %#x", in, got, err, want)
		}
	}
	for _, in := range []string{"", "65000", "a:b", "65536:1", "-1:2"} {
		if _, err := ParseCommunity(in); err == nil {
			t.Errorf("ParseCommunity(%q) succeeded", in)
		}
	}
}
