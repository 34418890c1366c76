package config

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func TestAdmit(t *testing.T) {
	vip := func(addr string, prefix uint32, iface string) func(*shoalv1.Config) {
		return func(c *shoalv1.Config) {
			c.Services[0].Vip = &shoalv1.Address{Address: addr, PrefixLength: prefix, Interface: iface}
			if a, _ := netip.ParseAddr(addr); a.Is6() {
				for _, rs := range c.Services[0].RealServers {
					rs.Address = "2001:db8::" + rs.Address[len("10.0.0."):]
				}
			}
		}
	}
	real := func(addr string) func(*shoalv1.Config) {
		return func(c *shoalv1.Config) { c.Services[0].RealServers[0].Address = addr }
	}
	tests := []struct {
		name   string
		change func(*shoalv1.Config)
		want   []string // field: reason, exactly
	}{
		{"valid", func(*shoalv1.Config) {}, nil},
		{"exec check, relative program", func(c *shoalv1.Config) {
			c.Services[0].HealthCheck = &shoalv1.HealthCheck{Kind: "exec", Command: []string{"check-web", "%h"}}
		}, []string{"services[web].health_check.command[0]: \"check-web\" is not an absolute path; routers run only programs in their script directories (lvsd --script-dir)"}},
		{"exec check, unclean program", func(c *shoalv1.Config) {
			c.Services[0].HealthCheck = &shoalv1.HealthCheck{Kind: "exec", Command: []string{"/etc/shoal/scripts/../../../bin/sh"}}
		}, []string{"services[web].health_check.command[0]: \"/etc/shoal/scripts/../../../bin/sh\" is not a clean path (write /bin/sh)"}},
		{"a real server's exec check, relative program", func(c *shoalv1.Config) {
			c.Services[0].RealServers[0].HealthChecks = []*shoalv1.HealthCheck{{Kind: "tcp"}, {Kind: "exec", Command: []string{"pg-check"}}}
		}, []string{"services[web].real_servers[10.0.0.2:80].health_checks[1].command[0]: \"pg-check\" is not an absolute path; routers run only programs in their script directories (lvsd --script-dir)"}},
		{"exec check through a shell", func(c *shoalv1.Config) {
			c.Services[0].HealthCheck = &shoalv1.HealthCheck{Kind: "exec", Command: []string{"check-web %h | grep OK"}, Shell: true}
		}, nil},
		{"unspecified VIP", vip("0.0.0.0", 0, ""), []string{
			"services[web].vip.address: 0.0.0.0 is the unspecified address; a VIP must be a unicast address clients can reach"}},
		{"unspecified IPv6 VIP", vip("::", 0, ""), []string{
			"services[web].vip.address: :: is the unspecified address; a VIP must be a unicast address clients can reach"}},
		{"loopback VIP", vip("127.0.0.1", 0, ""), []string{
			"services[web].vip.address: 127.0.0.1 is a loopback address, which no other host can reach; a VIP must be an address clients can reach"}},
		{"loopback VIP in 127/8", vip("127.1.2.3", 8, "lo"), []string{
			"services[web].vip.address: 127.1.2.3 is a loopback address, which no other host can reach; a VIP must be an address clients can reach"}},
		{"IPv6 loopback VIP", vip("::1", 0, ""), []string{
			"services[web].vip.address: ::1 is a loopback address, which no other host can reach; a VIP must be an address clients can reach"}},
		{"mapped loopback VIP", vip("::ffff:127.0.0.1", 0, ""), []string{
			"services[web].vip.address: 127.0.0.1 is a loopback address, which no other host can reach; a VIP must be an address clients can reach"}},
		{"multicast VIP", vip("224.0.0.1", 0, ""), []string{
			"services[web].vip.address: 224.0.0.1 is a multicast address; a VIP must be a unicast address clients can reach"}},
		{"IPv6 multicast VIP", vip("ff02::1", 0, "eth0"), []string{
			"services[web].vip.address: ff02::1 is a multicast address; a VIP must be a unicast address clients can reach"}},
		{"broadcast VIP", vip("255.255.255.255", 0, ""), []string{
			"services[web].vip.address: 255.255.255.255 is the broadcast address; a VIP must be a unicast address clients can reach"}},
		{"subnet broadcast VIP", vip("192.0.2.255", 24, ""), []string{
			"services[web].vip.address: 192.0.2.255 is the broadcast address of 192.0.2.0/24; a VIP must be a host address"}},
		{"subnet broadcast of a /30", vip("192.0.2.3", 30, ""), []string{
			"services[web].vip.address: 192.0.2.3 is the broadcast address of 192.0.2.0/30; a VIP must be a host address"}},
		{"last address of a /31 is a host", vip("192.0.2.255", 31, ""), nil},
		{"last address as a /32", vip("192.0.2.255", 32, ""), nil},
		{"network address is allowed", vip("192.0.2.0", 24, ""), nil},
		{"link-local VIP without interface", vip("fe80::1", 0, ""), []string{
			"services[web].vip.interface: required for the link-local address fe80::1, which means something only on its own link"}},
		{"IPv4 link-local VIP without interface", vip("169.254.1.1", 16, ""), []string{
			"services[web].vip.interface: required for the link-local address 169.254.1.1, which means something only on its own link"}},
		{"link-local VIP on an interface", vip("fe80::1", 64, "eth0"), nil},
		{"NAT router", func(c *shoalv1.Config) {
			c.Global = &shoalv1.Global{NatRouter: &shoalv1.Address{Address: "127.0.0.1"}}
		}, []string{
			"global.nat_router.address: 127.0.0.1 is a loopback address, which no other host can reach; a NAT router address must be an address clients can reach"}},
		{"NAT router link-local", func(c *shoalv1.Config) {
			c.Global = &shoalv1.Global{NatRouter: &shoalv1.Address{Address: "fe80::1"}}
		}, []string{
			"global.nat_router.interface: required for the link-local address fe80::1, which means something only on its own link"}},
		{"unspecified real server", real("0.0.0.0"), []string{
			"services[web].real_servers[0.0.0.0:80].address: 0.0.0.0 is the unspecified address; IPVS forwards each connection to one server"}},
		{"multicast real server", real("224.0.0.5"), []string{
			"services[web].real_servers[224.0.0.5:80].address: 224.0.0.5 is a multicast address; IPVS forwards each connection to one server"}},
		{"broadcast real server", real("255.255.255.255"), []string{
			"services[web].real_servers[255.255.255.255:80].address: 255.255.255.255 is the broadcast address; IPVS forwards each connection to one server"}},
		{"loopback real server is IPVS's local node", real("127.0.0.1"), nil},
		{"sorry server", func(c *shoalv1.Config) {
			c.Services[0].SorryServer = &shoalv1.RealServer{Address: "0.0.0.0", Port: 8080}
		}, []string{
			"services[web].sorry_server.address: 0.0.0.0 is the unspecified address; IPVS forwards each connection to one server"}},
		{"loopback sorry server", func(c *shoalv1.Config) {
			c.Services[0].SorryServer = &shoalv1.RealServer{Address: "127.0.0.1", Port: 8080}
		}, nil},
		{"every problem, each once", func(c *shoalv1.Config) {
			c.Services[0].Vip.Address = "0.0.0.0"
			c.Services[0].RealServers[0].Address = "224.0.0.5"
			c.Services[0].RealServers[1].Address = "0.0.0.0"
		}, []string{
			"services[web].vip.address: 0.0.0.0 is the unspecified address; a VIP must be a unicast address clients can reach",
			"services[web].real_servers[0.0.0.0:80].address: 0.0.0.0 is the unspecified address; IPVS forwards each connection to one server",
			"services[web].real_servers[224.0.0.5:80].address: 224.0.0.5 is a multicast address; IPVS forwards each connection to one server"}},
		{"unparsable addresses are Validate's", func(c *shoalv1.Config) {
			c.Services[0].Vip.Address = "nope"
			c.Services[0].RealServers[0].Address = "fe80::1%eth0"
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := web()
			tt.change(c)
			before := proto.Clone(c)
			err := Admit(nil, c)
			if !proto.Equal(before, c) {
				t.Error("Admit changed its input")
			}
			var got []string
			var fe Errors
			if errors.As(err, &fe) {
				for _, e := range fe {
					got = append(got, e.Error())
				}
			} else if err != nil {
				t.Fatalf("error %v is not an Errors", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Admit:\n got %q\nwant %q", got, tt.want)
			}
			// An address that cannot work is nonetheless valid as the state
			// machine sees it (see Admit), unless it does not parse.
			if tt.want != nil {
				if err := Validate(c); err != nil {
					t.Errorf("Validate refused what only Admit should: %v", err)
				}
			}
		})
	}
}

func TestAdmitKeepsWhatWasThere(t *testing.T) {
	old := web()
	old.Services[0].Vip.Address = "127.0.0.1"
	// An unrelated change to a configuration committed before the rules
	// existed goes through; the old problem is not the change's.
	c := proto.Clone(old).(*shoalv1.Config)
	c.Services[0].RealServers = append(c.Services[0].RealServers, &shoalv1.RealServer{Address: "10.0.0.3"})
	if err := Admit(old, c); err != nil {
		t.Fatalf("unrelated change refused: %v", err)
	}
	// A new problem is refused, the old one still not reported.
	c.Services[0].RealServers = append(c.Services[0].RealServers, &shoalv1.RealServer{Address: "0.0.0.0"})
	var fe Errors
	if err := Admit(old, c); !errors.As(err, &fe) || len(fe) != 1 || fe[0].Field != "services[web].real_servers[0.0.0.0:80].address" {
		t.Fatalf("Admit = %v, want the new real server only", err)
	}
	// The same address moved to another service is new there.
	c = proto.Clone(old).(*shoalv1.Config)
	c.Services[0].Name = "www"
	if err := Admit(old, c); !errors.As(err, &fe) || len(fe) != 1 || fe[0].Field != "services[www].vip.address" {
		t.Fatalf("Admit = %v, want the renamed service's VIP", err)
	}
}

// TestAdmitSortedMatchesWhole holds Admit's walk over two sorted
// configurations (changedAddressProblems) to the whole comparison it
// replaces, on pairs with problems old and new, shared and not.
func TestAdmitSortedMatchesWhole(t *testing.T) {
	svc := func(name, vip string, reals ...string) *shoalv1.VirtualService {
		s := &shoalv1.VirtualService{Name: name, Vip: &shoalv1.Address{Address: vip}, Port: 80}
		for _, r := range reals {
			s.RealServers = append(s.RealServers, &shoalv1.RealServer{Address: r})
		}
		return s
	}
	a, b := svc("a", "127.0.0.1", "10.0.0.1"), svc("b", "192.0.2.2", "0.0.0.0")
	c, d := svc("c", "192.0.2.3", "10.0.0.3"), svc("d", "224.0.0.1", "255.255.255.255")
	cfg := func(g *shoalv1.Global, ss ...*shoalv1.VirtualService) *shoalv1.Config {
		return &shoalv1.Config{Global: g, Services: ss}
	}
	lo := &shoalv1.Global{NatRouter: &shoalv1.Address{Address: "127.0.0.9"}}
	pairs := []struct{ old, new *shoalv1.Config }{
		{cfg(nil, a, b, c), cfg(nil, a, b, c)},
		{cfg(nil, a, c), cfg(nil, a, b, c)},
		{cfg(nil, a, b, c), cfg(nil, a, c)},
		{cfg(nil, a, b), cfg(nil, a, b, c, d)},
		{cfg(nil, b, c), cfg(nil, proto.Clone(b).(*shoalv1.VirtualService), c, d)},
		{cfg(nil, a), cfg(lo, a)},
		{cfg(lo, a), cfg(proto.Clone(lo).(*shoalv1.Global), a, d)},
		{cfg(nil), cfg(nil, a, b, c, d)},
		{cfg(nil, a, b, c, d), cfg(nil, svc("a", "127.0.0.1", "10.0.0.1", "0.0.0.0"), b, svc("c", "0.0.0.0"), d)},
	}
	for i, p := range pairs {
		whole := addressProblems(p.new)
		had := addressProblems(p.old)
		var want Errors
		for _, e := range whole {
			if !slices.Contains(had, e) {
				want = append(want, e)
			}
		}
		if !sortedByName(p.old) || !sortedByName(p.new) {
			t.Fatalf("pair %d is not sorted", i)
		}
		if got := changedAddressProblems(p.old, p.new); !slices.Equal(got, want) {
			t.Errorf("pair %d: walk %v, whole %v", i, got, want)
		}
	}
}
