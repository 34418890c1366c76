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

// web is a small valid configuration that the tests below change one thing of.
func web() *shoalv1.Config {
	return &shoalv1.Config{Services: []*shoalv1.VirtualService{{
		Name: "web",
		Vip:  &shoalv1.Address{Address: "192.0.2.10"},
		Port: 80,
		RealServers: []*shoalv1.RealServer{
			{Address: "10.0.0.2"},
			{Address: "10.0.0.1"},
		},
	}}}
}

func TestNormalize(t *testing.T) {
	c := &shoalv1.Config{Services: []*shoalv1.VirtualService{
		{
			Name: "zeta", Vip: &shoalv1.Address{Address: "2001:0db8:0::1"}, Port: 53, Protocol: "UDP",
			RealServers: []*shoalv1.RealServer{{Address: "2001:db8::20", Port: 5353}, {Address: "2001:db8::3"}},
		},
		{
			Name: "alpha", Vip: &shoalv1.Address{Address: " 192.0.2.1 "}, Port: 443,
			HealthCheck: &shoalv1.HealthCheck{Kind: "HTTPS"},
			RealServers: []*shoalv1.RealServer{{Address: "10.0.0.10"}, {Address: "10.0.0.9", Weight: proto.Uint32(0), Active: proto.Bool(false)}},
		},
	}}
	Normalize(c)

	g := c.Global
	if g.GarpCount != 5 || g.GarpInterval.AsDuration() != 10*time.Millisecond || g.GarpRefresh.AsDuration() != 30*time.Second {
		t.Errorf("global defaults: %v", g)
	}
	if c.Services[0].Name != "alpha" || c.Services[1].Name != "zeta" {
		t.Fatalf("services not sorted by name: %s, %s", c.Services[0].Name, c.Services[1].Name)
	}
	a, z := c.Services[0], c.Services[1]
	if a.Vip.Address != "192.0.2.1" || a.Vip.PrefixLength != 32 || z.Vip.Address != "2001:db8::1" || z.Vip.PrefixLength != 128 {
		t.Errorf("VIPs not canonical: %v %v", a.Vip, z.Vip)
	}
	if a.Protocol != "tcp" || a.Scheduler != "wlc" || a.Forward != "nat" || !a.GetActive() || z.Protocol != "udp" {
		t.Errorf("service defaults: %v", a)
	}
	h := a.HealthCheck
	if h.Kind != "https" || h.HttpPath != "/" || h.Interval.AsDuration() != 2*time.Second || h.Timeout.AsDuration() != time.Second || h.Rise != 1 || h.Fall != 3 {
		t.Errorf("check defaults: %v", h)
	}
	if z.HealthCheck.Kind != "none" {
		t.Errorf("udp service without a check kind got %q, want none", z.HealthCheck.Kind)
	}
	if got := []string{a.RealServers[0].Address, a.RealServers[1].Address}; !slices.Equal(got, []string{"10.0.0.9", "10.0.0.10"}) {
		t.Errorf("real servers not sorted numerically: %v", got)
	}
	if rs := a.RealServers[0]; rs.GetWeight() != 0 || rs.GetActive() {
		t.Errorf("explicit weight 0 / active false overwritten: %v", rs)
	}
	if rs := a.RealServers[1]; rs.GetWeight() != 1 || !rs.GetActive() {
		t.Errorf("real server defaults: %v", rs)
	}
	if got := []string{RealServerKey(z, z.RealServers[0]), RealServerKey(z, z.RealServers[1])}; !slices.Equal(got, []string{"[2001:db8::3]:53", "[2001:db8::20]:5353"}) {
		t.Errorf("v6 real servers: %v", got)
	}

	again := proto.Clone(c).(*shoalv1.Config)
	Normalize(again)
	if !proto.Equal(c, again) {
		t.Error("Normalize is not idempotent")
	}
}

func TestNormalizeSync(t *testing.T) {
	c := &shoalv1.Config{Global: &shoalv1.Global{ConnectionSync: &shoalv1.ConnectionSync{Enabled: true, Interface: " eth1 ", Group: "FF02:0::81"}}}
	Normalize(c)
	cs := c.Global.ConnectionSync
	if cs.Interface != "eth1" || cs.Group != "ff02::81" || cs.Port != 8848 || cs.Ttl != 1 || cs.SyncId != 0 || cs.MaxLen != 0 {
		t.Errorf("normalised sync: %v", cs)
	}
	if cs.SyncThreshold != nil || cs.SyncRefreshPeriod != nil || cs.SyncPersistMode != nil {
		t.Errorf("sysctls not left unset: %v", cs)
	}
	c.Global.ConnectionSync = &shoalv1.ConnectionSync{}
	Normalize(c)
	if g := c.Global.ConnectionSync.Group; g != DefaultSyncGroup {
		t.Errorf("default group %q", g)
	}
	off := &shoalv1.Config{}
	Normalize(off)
	if off.Global.ConnectionSync != nil {
		t.Errorf("Normalize made a connection_sync nobody asked for: %v", off.Global.ConnectionSync)
	}
}

func TestDiffSync(t *testing.T) {
	a := web()
	a.Global = &shoalv1.Global{ConnectionSync: &shoalv1.ConnectionSync{Enabled: true, SyncThreshold: proto.Uint32(3)}}
	Normalize(a)
	b := proto.Clone(a).(*shoalv1.Config)
	b.Global.ConnectionSync.Port = 8849
	b.Global.ConnectionSync.SyncThreshold = nil
	b.Global.ConnectionSync.SyncRefreshPeriod = durationpb.New(time.Minute)
	var got []string
	for _, ch := range Diff(a, b) {
		got = append(got, ch.Detail)
	}
	want := []string{"connection_sync.port: 8848 -> 8849, connection_sync.sync_threshold: 3 -> unset, connection_sync.sync_refresh_period: none -> 1m0s"}
	if !slices.Equal(got, want) {
		t.Errorf("Diff:\n got %q\nwant %q", got, want)
	}
}

func TestNormalizeKeepsExplicitZeroRefresh(t *testing.T) {
	c := &shoalv1.Config{Global: &shoalv1.Global{GarpRefresh: durationpb.New(0)}}
	Normalize(c)
	if c.Global.GarpRefresh.AsDuration() != 0 {
		t.Errorf("garp_refresh 0 (off) replaced by %s", c.Global.GarpRefresh.AsDuration())
	}
}

func TestValidate(t *testing.T) {
	svc := func(c *shoalv1.Config) *shoalv1.VirtualService { return c.Services[0] }
	tests := []struct {
		name   string
		change func(c *shoalv1.Config)
		want   []string // "field: reason fragment"
	}{
		{"valid", func(c *shoalv1.Config) {}, nil},
		{"valid fwmark without vip", func(c *shoalv1.Config) { svc(c).Vip, svc(c).Port, svc(c).Fwmark = nil, 0, 7 }, nil},
		{"valid dr same port", func(c *shoalv1.Config) { svc(c).Forward = "dr"; svc(c).RealServers[0].Port = 80 }, nil},
		{"valid timeout above interval", func(c *shoalv1.Config) {
			svc(c).HealthCheck = &shoalv1.HealthCheck{Interval: durationpb.New(time.Second), Timeout: durationpb.New(5 * time.Second)}
		}, nil},
		{"bad name", func(c *shoalv1.Config) { svc(c).Name = "-web" }, []string{"services[-web].name: \"-web\" must match"}},
		{"missing name", func(c *shoalv1.Config) { svc(c).Name = "" }, []string{"services[0].name: required"}},
		{"duplicate name", func(c *shoalv1.Config) {
			s := proto.Clone(svc(c)).(*shoalv1.VirtualService)
			s.Port = 81
			c.Services = append(c.Services, s)
		}, []string{"services[web].name: \"web\" is used by another service"}},
		{"vip required", func(c *shoalv1.Config) { svc(c).Vip = nil }, []string{"services[web].vip.address: required"}},
		{"vip invalid", func(c *shoalv1.Config) { svc(c).Vip.Address = "192.0.2.300" }, []string{"services[web].vip.address: \"192.0.2.300\" is not an IP address"}},
		{"vip prefix", func(c *shoalv1.Config) { svc(c).Vip.PrefixLength = 33 }, []string{"services[web].vip.prefix_length: 33 is outside 1..32"}},
		{"vip interface", func(c *shoalv1.Config) { svc(c).Vip.Interface = "eth0:1" }, []string{"services[web].vip.interface: "}},
		{"port zero", func(c *shoalv1.Config) { svc(c).Port = 0 }, []string{"services[web].port: 0 is outside 1..65535"}},
		{"port big", func(c *shoalv1.Config) { svc(c).Port = 70000 }, []string{"services[web].port: 70000 is outside"}},
		{"fwmark with port", func(c *shoalv1.Config) { svc(c).Fwmark = 3 }, []string{"services[web].port: must be 0 for a fwmark service"}},
		{"protocol", func(c *shoalv1.Config) { svc(c).Protocol = "icmp" }, []string{"services[web].protocol: \"icmp\" is not one of tcp udp sctp"}},
		{"scheduler", func(c *shoalv1.Config) { svc(c).Scheduler = "random" }, []string{"services[web].scheduler: \"random\""}},
		{"forward", func(c *shoalv1.Config) { svc(c).Forward = "gre" }, []string{"services[web].forward: \"gre\""}},
		{"persistence prefix", func(c *shoalv1.Config) { svc(c).PersistencePrefix = 64 }, []string{"services[web].persistence_prefix: 64 is longer than 32"}},
		{"rs weight", func(c *shoalv1.Config) { svc(c).RealServers[0].Weight = proto.Uint32(70000) }, []string{"services[web].real_servers[10.0.0.2:80].weight: 70000 is above 65535"}},
		{"rs address", func(c *shoalv1.Config) { svc(c).RealServers[0].Address = "host" }, []string{"services[web].real_servers[host:80].address: \"host\" is not an IP address"}},
		{"rs address missing", func(c *shoalv1.Config) { svc(c).RealServers[0].Address = "" }, []string{"services[web].real_servers[:80].address: required"}},
		{"rs family", func(c *shoalv1.Config) { svc(c).RealServers[0].Address = "2001:db8::1" }, []string{"services[web].real_servers[[2001:db8::1]:80].address: 2001:db8::1 is IPv6 but the VIP"}},
		{"rs forward", func(c *shoalv1.Config) { svc(c).RealServers[0].Forward = "x" }, []string{"services[web].real_servers[10.0.0.2:80].forward: \"x\""}},
		{"rs duplicate via port", func(c *shoalv1.Config) { svc(c).RealServers[0].Address, svc(c).RealServers[0].Port = "10.0.0.1", 80 }, []string{"services[web].real_servers[10.0.0.1:80]: 10.0.0.1:80 is listed twice"}},
		{"dr changes port", func(c *shoalv1.Config) { svc(c).RealServers[0].Port, svc(c).RealServers[0].Forward = 8080, "dr" }, []string{"services[web].real_servers[10.0.0.2:8080].port: dr forwarding cannot change the port"}},
		{"tun service changes port", func(c *shoalv1.Config) { svc(c).Forward = "tun"; svc(c).RealServers[1].Port = 8080 }, []string{"services[web].real_servers[10.0.0.1:8080].port: tun forwarding"}},
		{"same vip port protocol", func(c *shoalv1.Config) {
			s := proto.Clone(svc(c)).(*shoalv1.VirtualService)
			s.Name = "web2"
			c.Services = append(c.Services, s)
		}, []string{"services[web2]: 192.0.2.10:80/tcp is also used by service \"web\""}},
		{"same vip port other protocol ok", func(c *shoalv1.Config) {
			s := proto.Clone(svc(c)).(*shoalv1.VirtualService)
			s.Name, s.Protocol = "web2", "udp"
			c.Services = append(c.Services, s)
		}, nil},
		{"same fwmark and family", func(c *shoalv1.Config) {
			svc(c).Fwmark, svc(c).Port = 5, 0
			s := proto.Clone(svc(c)).(*shoalv1.VirtualService)
			s.Name = "web2"
			s.Vip.Address = "192.0.2.11"
			c.Services = append(c.Services, s)
		}, []string{"services[web2].fwmark: fwmark 5 (IPv4) is also used by service \"web\""}},
		{"thresholds", func(c *shoalv1.Config) {
			svc(c).RealServers[0].UpperThreshold, svc(c).RealServers[0].LowerThreshold = 100, 50
			svc(c).RealServers[1].UpperThreshold = 10
		}, nil},
		{"lower equals upper", func(c *shoalv1.Config) {
			svc(c).RealServers[0].UpperThreshold, svc(c).RealServers[0].LowerThreshold = 10, 10
		}, nil},
		{"lower above upper", func(c *shoalv1.Config) {
			svc(c).RealServers[0].UpperThreshold, svc(c).RealServers[0].LowerThreshold = 10, 11
		}, []string{"services[web].real_servers[10.0.0.2:80].lower_threshold: 11 is above upper_threshold 10"}},
		{"lower without upper", func(c *shoalv1.Config) { svc(c).RealServers[1].LowerThreshold = 5 }, []string{"services[web].real_servers[10.0.0.1:80].lower_threshold: 5 needs an upper_threshold"}},
		{"sorry server thresholds", func(c *shoalv1.Config) {
			svc(c).SorryServer = &shoalv1.RealServer{Address: "10.0.0.9", UpperThreshold: 1, LowerThreshold: 2}
		}, []string{"services[web].sorry_server.lower_threshold: 2 is above upper_threshold 1"}},
		{"several checks", func(c *shoalv1.Config) {
			svc(c).RealServers[0].HealthChecks = []*shoalv1.HealthCheck{{Kind: "tcp"}, {Kind: "http", Port: 8081, HttpPath: "/status"}}
		}, nil},
		{"one none check", func(c *shoalv1.Config) {
			svc(c).RealServers[0].HealthChecks = []*shoalv1.HealthCheck{{Kind: "none"}}
		}, nil},
		{"several checks problems", func(c *shoalv1.Config) {
			svc(c).RealServers[0].HealthChecks = []*shoalv1.HealthCheck{
				{Kind: "tcp"}, {Kind: "tcp", Rise: 1}, {Kind: "ping"}, {Kind: "none"}, {Kind: "tcp", Interval: durationpb.New(2 * time.Second)}, {Kind: "http", Fall: 0, Timeout: durationpb.New(-time.Second)},
			}
		}, []string{
			"services[web].real_servers[10.0.0.2:80].health_checks[1]: same check as health_checks[0]",
			"services[web].real_servers[10.0.0.2:80].health_checks[2].kind: \"ping\" is not one of",
			"services[web].real_servers[10.0.0.2:80].health_checks[3].kind: none cannot be one of several checks",
			"services[web].real_servers[10.0.0.2:80].health_checks[4]: same check as health_checks[0]",
			"services[web].real_servers[10.0.0.2:80].health_checks[5].timeout: must be positive",
		}},
		{"sorry server checks", func(c *shoalv1.Config) {
			svc(c).SorryServer = &shoalv1.RealServer{Address: "10.0.0.9", HealthChecks: []*shoalv1.HealthCheck{{}}}
		}, []string{"services[web].sorry_server.health_checks: the sorry server is never checked"}},
		{"sorry server is real server", func(c *shoalv1.Config) { svc(c).SorryServer = &shoalv1.RealServer{Address: "10.0.0.1", Port: 80} }, []string{"services[web].sorry_server: 10.0.0.1:80 is also a real server"}},
		{"sorry server invalid", func(c *shoalv1.Config) { svc(c).SorryServer = &shoalv1.RealServer{Address: "nope"} }, []string{"services[web].sorry_server.address: \"nope\""}},
		{"check kind", func(c *shoalv1.Config) { svc(c).HealthCheck = &shoalv1.HealthCheck{Kind: "ping"} }, []string{"services[web].health_check.kind: \"ping\""}},
		{"check durations", func(c *shoalv1.Config) {
			svc(c).HealthCheck = &shoalv1.HealthCheck{Interval: durationpb.New(0), Timeout: durationpb.New(-time.Second), Reentry: durationpb.New(-time.Second)}
		}, []string{
			"services[web].health_check.interval: must be positive",
			"services[web].health_check.timeout: must be positive",
			"services[web].health_check.reentry: -1s is negative",
		}},
		{"check regex", func(c *shoalv1.Config) {
			svc(c).HealthCheck = &shoalv1.HealthCheck{Kind: "send-expect", Regex: true, Expect: "("}
		}, []string{"services[web].health_check.expect: regex:"}},
		{"check exec", func(c *shoalv1.Config) { svc(c).HealthCheck = &shoalv1.HealthCheck{Kind: "exec"} }, []string{"services[web].health_check.command: required"}},
		{"check exec shell line", func(c *shoalv1.Config) {
			svc(c).HealthCheck = &shoalv1.HealthCheck{Kind: "exec", Command: []string{"check-web %h | grep OK"}, Shell: true}
		}, nil},
		{"valid hooks", func(c *shoalv1.Config) {
			c.Global = &shoalv1.Global{Hooks: []*shoalv1.Hook{
				{Events: []string{"leader", "follower"}, Command: []string{"/etc/shoal/scripts/notify", "--page"}},
				{Events: []string{"server-down"}, Command: []string{"/etc/shoal/scripts/page"}, Service: "web", RealServer: "10.0.0.1:80", Timeout: durationpb.New(time.Minute)},
			}}
		}, nil},
		{"bad hooks", func(c *shoalv1.Config) {
			c.Global = &shoalv1.Global{Hooks: []*shoalv1.Hook{
				{Command: []string{"notify"}},
				{Events: []string{"master", "leader", "leader"}, Command: []string{"/x"}, Timeout: durationpb.New(time.Hour)},
				{Events: []string{"leader"}, Service: "db", RealServer: "host"},
			}}
		}, []string{
			"global.hooks[0].events: required",
			"global.hooks[0].command[0]: \"notify\" is not an absolute path",
			"global.hooks[1].events[0]: \"master\" is not one of",
			"global.hooks[1].events[2]: \"leader\" named twice",
			"global.hooks[1].timeout: 1h0m0s is above 5m0s",
			"global.hooks[2].command: required",
			"global.hooks[2].service: no service \"db\"",
			"global.hooks[2].service: applies to server-up and server-down only",
			"global.hooks[2].real_server: \"host\" is not an address",
			"global.hooks[2].real_server: applies to server-up and server-down only",
		}},
		{"check http status", func(c *shoalv1.Config) { svc(c).HealthCheck = &shoalv1.HealthCheck{Kind: "http", HttpStatus: 99} }, []string{"services[web].health_check.http_status: 99 is outside 100..599"}},
		{"nat router", func(c *shoalv1.Config) {
			c.Global = &shoalv1.Global{NatRouter: &shoalv1.Address{Address: "10.0.0.254", PrefixLength: 40}}
		}, []string{"global.nat_router.prefix_length: 40"}},
		{"nat router missing address", func(c *shoalv1.Config) { c.Global = &shoalv1.Global{NatRouter: &shoalv1.Address{Interface: "eth1"}} }, []string{"global.nat_router.address: required"}},
		{"global durations", func(c *shoalv1.Config) {
			c.Global = &shoalv1.Global{GarpInterval: durationpb.New(-time.Millisecond), TcpTimeout: durationpb.New(-time.Second)}
		}, []string{"global.garp_interval: -1ms is negative", "global.tcp_timeout: -1s is negative"}},
		{"monitor links", func(c *shoalv1.Config) {
			c.Global = &shoalv1.Global{MonitorLinks: []string{"eth0", "", "a/b", "averyveryverylongname"}}
		}, []string{"global.monitor_links[1]: empty", "global.monitor_links[2]: ", "global.monitor_links[3]: "}},
		{"sync valid", func(c *shoalv1.Config) {
			c.Global = &shoalv1.Global{ConnectionSync: &shoalv1.ConnectionSync{Enabled: true, Interface: "eth1", SyncId: 255, MaxLen: 1472,
				SyncThreshold: proto.Uint32(3), SyncPeriod: proto.Uint32(0), SyncRefreshPeriod: durationpb.New(time.Minute), SyncPersistMode: proto.Bool(true)}}
		}, nil},
		{"sync ipv6 group", func(c *shoalv1.Config) {
			c.Global = &shoalv1.Global{ConnectionSync: &shoalv1.ConnectionSync{Enabled: true, Group: "ff02::81", MaxLen: 65487}}
		}, nil},
		{"sync fields", func(c *shoalv1.Config) {
			c.Global = &shoalv1.Global{ConnectionSync: &shoalv1.ConnectionSync{Enabled: true, Interface: "eth0:1", SyncId: 256, Group: "10.0.0.1",
				Port: 70000, Ttl: 300, MaxLen: 100}}
		}, []string{
			"global.connection_sync.interface: ",
			"global.connection_sync.sync_id: 256 is outside 0..255",
			"global.connection_sync.group: 10.0.0.1 is not a multicast address",
			"global.connection_sync.port: 70000 is outside 1..65535",
			"global.connection_sync.ttl: 300 is outside 1..255",
			"global.connection_sync.max_len: 100 is outside 1024..65507",
		}},
		{"sync bad group", func(c *shoalv1.Config) {
			c.Global = &shoalv1.Global{ConnectionSync: &shoalv1.ConnectionSync{Group: "sync.example"}}
		}, []string{"global.connection_sync.group: \"sync.example\" is not an IP address"}},
		{"sync ipv6 max len", func(c *shoalv1.Config) {
			c.Global = &shoalv1.Global{ConnectionSync: &shoalv1.ConnectionSync{Group: "ff02::81", MaxLen: 65507}}
		}, []string{"global.connection_sync.max_len: 65507 is outside 1024..65487"}},
		{"sync threshold and period", func(c *shoalv1.Config) {
			c.Global = &shoalv1.Global{ConnectionSync: &shoalv1.ConnectionSync{SyncThreshold: proto.Uint32(50), SyncPeriod: proto.Uint32(50),
				SyncRefreshPeriod: durationpb.New(1500 * time.Millisecond)}}
		}, []string{
			"global.connection_sync.sync_threshold: 50 must be below sync_period 50",
			"global.connection_sync.sync_refresh_period: 1.5s is not whole seconds",
		}},
		{"sync negative refresh", func(c *shoalv1.Config) {
			c.Global = &shoalv1.Global{ConnectionSync: &shoalv1.ConnectionSync{SyncRefreshPeriod: durationpb.New(-time.Second)}}
		}, []string{"global.connection_sync.sync_refresh_period: -1s is negative"}},
		{"every problem at once", func(c *shoalv1.Config) {
			svc(c).Scheduler = "x"
			svc(c).Port = 0
			svc(c).RealServers[1].Weight = proto.Uint32(1 << 20)
		}, []string{"services[web].port:", "services[web].scheduler:", "services[web].real_servers[10.0.0.1:0].weight:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := web()
			tt.change(c)
			before := proto.Clone(c)
			err := Validate(c)
			if !proto.Equal(before, c) {
				t.Error("Validate changed its argument")
			}
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
					if strings.HasPrefix(e.Error(), w) {
						found = true
					}
				}
				if !found {
					t.Errorf("missing error %q in %v", w, err)
				}
			}
		})
	}
}

func TestDiff(t *testing.T) {
	base := web()
	Normalize(base)
	tests := []struct {
		name   string
		change func(c *shoalv1.Config)
		want   []string // "action service real_server: detail"
	}{
		{"identical", func(c *shoalv1.Config) {}, nil},
		{"serial ignored", func(c *shoalv1.Config) { c.Serial = 9 }, nil},
		{"scheduler", func(c *shoalv1.Config) { c.Services[0].Scheduler = "rr" }, []string{"MODIFIED web : scheduler: wlc -> rr"}},
		{"check interval", func(c *shoalv1.Config) { c.Services[0].HealthCheck.Interval = durationpb.New(5 * time.Second) }, []string{"MODIFIED web : health_check.interval: 2s -> 5s"}},
		{"global", func(c *shoalv1.Config) {
			c.Global.GarpCount = 3
			c.Global.NatRouter = &shoalv1.Address{Address: "10.0.0.254", PrefixLength: 24}
		}, []string{"MODIFIED  : nat_router: none -> 10.0.0.254/24, garp_count: 5 -> 3"}},
		{"service added", func(c *shoalv1.Config) {
			c.Services = append(c.Services, &shoalv1.VirtualService{Name: "dns", Vip: &shoalv1.Address{Address: "192.0.2.53"}, Port: 53, Protocol: "udp",
				RealServers: []*shoalv1.RealServer{{Address: "10.0.0.5"}}})
			Normalize(c)
		}, []string{"ADDED dns : 192.0.2.53:53/udp wlc nat, 1 real servers", "ADDED dns 10.0.0.5:53: weight 1"}},
		{"service removed", func(c *shoalv1.Config) { c.Services = nil }, []string{"REMOVED web : 192.0.2.10:80/tcp wlc nat, 2 real servers"}},
		{"real servers", func(c *shoalv1.Config) {
			s := c.Services[0]
			s.RealServers[0].Weight = proto.Uint32(5)
			s.RealServers = append(s.RealServers[:1], &shoalv1.RealServer{Address: "10.0.0.3", Port: 8080, Weight: proto.Uint32(1), Active: proto.Bool(true)})
		}, []string{
			"MODIFIED web 10.0.0.1:80: weight: 1 -> 5",
			"REMOVED web 10.0.0.2:80: weight 1",
			"ADDED web 10.0.0.3:8080: weight 1",
		}},
		{"thresholds and checks", func(c *shoalv1.Config) {
			s := c.Services[0]
			s.RealServers[0].UpperThreshold, s.RealServers[0].LowerThreshold = 100, 80
			s.RealServers[1].HealthChecks = []*shoalv1.HealthCheck{{Kind: "tcp"}, {Kind: "http", Port: 8081}}
			s.RealServers = append(s.RealServers, &shoalv1.RealServer{Address: "10.0.0.3", UpperThreshold: 10, HealthChecks: []*shoalv1.HealthCheck{{Kind: "tcp"}}})
			Normalize(c)
		}, []string{
			"MODIFIED web 10.0.0.1:80: upper_threshold: 0 -> 100, lower_threshold: 0 -> 80",
			"MODIFIED web 10.0.0.2:80: health_checks: [] -> [tcp http:8081]",
			"ADDED web 10.0.0.3:80: weight 1 upper_threshold 10 1 own check",
		}},
		{"service port keeps real servers", func(c *shoalv1.Config) { c.Services[0].Port = 8080 }, []string{"MODIFIED web : port: 80 -> 8080"}},
		{"sync on", func(c *shoalv1.Config) {
			c.Global.ConnectionSync = &shoalv1.ConnectionSync{Enabled: true, SyncId: 7}
			Normalize(c)
		}, []string{"MODIFIED  : connection_sync.enabled: false -> true, connection_sync.sync_id: 0 -> 7, connection_sync.group: \"\" -> 224.0.0.81, connection_sync.port: 0 -> 8848, connection_sync.ttl: 0 -> 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := proto.Clone(base).(*shoalv1.Config)
			tt.change(c)
			var got []string
			for _, ch := range Diff(base, c) {
				got = append(got, strings.TrimPrefix(ch.Action.String(), "CHANGE_ACTION_")+" "+ch.Service+" "+ch.RealServer+": "+ch.Detail)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Diff:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
	if got := Diff(nil, nil); len(got) != 0 {
		t.Errorf("Diff(nil, nil) = %v", got)
	}
}
