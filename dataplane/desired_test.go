package dataplane

import (
	"net"
	"syscall"
	"testing"

	"github.com/moby/ipvs"
	"google.golang.org/protobuf/proto"
	durpb "google.golang.org/protobuf/types/known/durationpb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func addr(a string) *shoalv1.Address { return &shoalv1.Address{Address: a} }

// mask4 is the Netmask value moby/ipvs must carry for an IPv4 mask: the mask's
// network-order bytes read in native order.
func mask4(bits int) uint32 {
	m := net.CIDRMask(bits, 32)
	return uint32(m[0]) | uint32(m[1])<<8 | uint32(m[2])<<16 | uint32(m[3])<<24 // little endian hosts
}

func TestServiceMapping(t *testing.T) {
	for _, tc := range []struct {
		name string
		vs   *shoalv1.VirtualService
		want ipvs.Service
	}{
		{"tcp defaults", &shoalv1.VirtualService{Vip: addr("192.0.2.1"), Port: 80},
			ipvs.Service{Address: net.ParseIP("192.0.2.1").To4(), Port: 80, Protocol: syscall.IPPROTO_TCP, SchedName: "wlc", AddressFamily: syscall.AF_INET, Netmask: mask4(32)}},
		{"udp rr", &shoalv1.VirtualService{Vip: addr("192.0.2.1"), Port: 53, Protocol: "udp", Scheduler: "rr"},
			ipvs.Service{Address: net.ParseIP("192.0.2.1").To4(), Port: 53, Protocol: syscall.IPPROTO_UDP, SchedName: "rr", AddressFamily: syscall.AF_INET, Netmask: mask4(32)}},
		{"sctp", &shoalv1.VirtualService{Vip: addr("192.0.2.1"), Port: 3868, Protocol: "sctp", Scheduler: "sh"},
			ipvs.Service{Address: net.ParseIP("192.0.2.1").To4(), Port: 3868, Protocol: 132, SchedName: "sh", AddressFamily: syscall.AF_INET, Netmask: mask4(32)}},
		{"persistent /24", &shoalv1.VirtualService{Vip: addr("192.0.2.1"), Port: 443, PersistenceTimeout: 300, PersistencePrefix: 24},
			ipvs.Service{Address: net.ParseIP("192.0.2.1").To4(), Port: 443, Protocol: syscall.IPPROTO_TCP, SchedName: "wlc", AddressFamily: syscall.AF_INET, Flags: svcFlagPersistent, Timeout: 300, Netmask: mask4(24)}},
		{"persistent default prefix", &shoalv1.VirtualService{Vip: addr("192.0.2.1"), Port: 443, PersistenceTimeout: 60},
			ipvs.Service{Address: net.ParseIP("192.0.2.1").To4(), Port: 443, Protocol: syscall.IPPROTO_TCP, SchedName: "wlc", AddressFamily: syscall.AF_INET, Flags: svcFlagPersistent, Timeout: 60, Netmask: mask4(32)}},
		{"ipv6", &shoalv1.VirtualService{Vip: addr("2001:db8::1"), Port: 80, Scheduler: "mh"},
			ipvs.Service{Address: net.ParseIP("2001:db8::1"), Port: 80, Protocol: syscall.IPPROTO_TCP, SchedName: "mh", AddressFamily: syscall.AF_INET6, Netmask: 128}},
		{"ipv6 persistent /64", &shoalv1.VirtualService{Vip: addr("2001:db8::1"), Port: 80, PersistenceTimeout: 10, PersistencePrefix: 64},
			ipvs.Service{Address: net.ParseIP("2001:db8::1"), Port: 80, Protocol: syscall.IPPROTO_TCP, SchedName: "wlc", AddressFamily: syscall.AF_INET6, Flags: svcFlagPersistent, Timeout: 10, Netmask: 64}},
		{"fwmark v4", &shoalv1.VirtualService{Vip: addr("192.0.2.1"), Fwmark: 7, Scheduler: "lblc"},
			ipvs.Service{FWMark: 7, SchedName: "lblc", AddressFamily: syscall.AF_INET, Netmask: mask4(32)}},
		{"fwmark without vip", &shoalv1.VirtualService{Fwmark: 8},
			ipvs.Service{FWMark: 8, SchedName: "wlc", AddressFamily: syscall.AF_INET, Netmask: mask4(32)}},
		{"fwmark v6 from real servers", &shoalv1.VirtualService{Fwmark: 9, RealServers: []*shoalv1.RealServer{{Address: "2001:db8::10"}}},
			ipvs.Service{FWMark: 9, SchedName: "wlc", AddressFamily: syscall.AF_INET6, Netmask: 128}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ipvsService(tc.vs)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Address.Equal(tc.want.Address) || got.Port != tc.want.Port || got.Protocol != tc.want.Protocol ||
				got.FWMark != tc.want.FWMark || got.SchedName != tc.want.SchedName || got.Flags != tc.want.Flags ||
				got.Timeout != tc.want.Timeout || got.Netmask != tc.want.Netmask || got.AddressFamily != tc.want.AddressFamily {
				t.Errorf("got  %+v\nwant %+v", *got, tc.want)
			}
			if tc.vs.GetPersistencePrefix() != 0 && persistencePrefix(got) != tc.vs.GetPersistencePrefix() {
				t.Errorf("persistence prefix reads back as %d", persistencePrefix(got))
			}
		})
	}
}

func TestEverySchedulerMaps(t *testing.T) {
	for _, s := range []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf"} {
		got, err := ipvsService(&shoalv1.VirtualService{Vip: addr("192.0.2.1"), Port: 80, Scheduler: s})
		if err != nil || got.SchedName != s {
			t.Errorf("scheduler %s: got %q, %v", s, got.SchedName, err)
		}
	}
}

func TestDestinationMapping(t *testing.T) {
	vs := &shoalv1.VirtualService{Vip: addr("192.0.2.1"), Port: 80, Forward: "dr"}
	for _, tc := range []struct {
		name       string
		rs         *shoalv1.RealServer
		port       uint16
		weight     int
		flags      uint32
		forwardOut string
	}{
		{"service forward and port", &shoalv1.RealServer{Address: "10.0.0.1"}, 80, 1, ipvs.ConnectionFlagDirectRoute, "dr"},
		{"own port", &shoalv1.RealServer{Address: "10.0.0.1", Port: 8080}, 8080, 1, ipvs.ConnectionFlagDirectRoute, "dr"},
		{"nat override", &shoalv1.RealServer{Address: "10.0.0.1", Forward: "nat", Weight: proto.Uint32(7)}, 80, 7, ipvs.ConnectionFlagMasq, "nat"},
		{"tun override", &shoalv1.RealServer{Address: "10.0.0.1", Forward: "tun"}, 80, 1, ipvs.ConnectionFlagTunnel, "tun"},
		{"explicit weight 0", &shoalv1.RealServer{Address: "10.0.0.1", Weight: proto.Uint32(0)}, 80, 0, ipvs.ConnectionFlagDirectRoute, "dr"},
		{"max weight", &shoalv1.RealServer{Address: "10.0.0.1", Weight: proto.Uint32(65535)}, 80, 65535, ipvs.ConnectionFlagDirectRoute, "dr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ipvsDestination(vs, tc.rs, configuredWeight(tc.rs))
			if err != nil {
				t.Fatal(err)
			}
			if d.Port != tc.port || d.Weight != tc.weight || d.ConnectionFlags != tc.flags || !d.Address.Equal(net.ParseIP("10.0.0.1")) {
				t.Errorf("got %+v", *d)
			}
			if forwardName(d.ConnectionFlags) != tc.forwardOut {
				t.Errorf("forward reads back as %s", forwardName(d.ConnectionFlags))
			}
		})
	}
	if _, err := ipvsDestination(vs, &shoalv1.RealServer{Address: "10.0.0.1", Forward: "bogus"}, 1); err == nil {
		t.Error("unknown forward accepted")
	}
}

func TestServiceKeys(t *testing.T) {
	for _, tc := range []struct {
		vs   *shoalv1.VirtualService
		want string
	}{
		{&shoalv1.VirtualService{Vip: addr("192.0.2.1"), Port: 80}, "tcp/192.0.2.1:80"},
		{&shoalv1.VirtualService{Vip: addr("2001:db8::1"), Port: 53, Protocol: "udp"}, "udp/[2001:db8::1]:53"},
		{&shoalv1.VirtualService{Fwmark: 3}, "fwmark/inet/3"},
		{&shoalv1.VirtualService{Fwmark: 3, Vip: addr("2001:db8::1")}, "fwmark/inet6/3"},
	} {
		s, err := ipvsService(tc.vs)
		if err != nil {
			t.Fatal(err)
		}
		if got := serviceKey(s); got != tc.want {
			t.Errorf("key %q, want %q", got, tc.want)
		}
	}
}

func durationpb(sec int64) *durationpbT { return &durationpbT{Seconds: sec} }

type durationpbT = durpb.Duration
