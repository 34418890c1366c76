package dataplane

import (
	"fmt"
	"net"
	"reflect"
	"syscall"
	"testing"

	"github.com/moby/ipvs"
	"google.golang.org/protobuf/proto"

	"github.com/shoal-lb/shoal/dataplane/kernelfake"
)

// TestKernelIPVSDumpMatchesMoby: KernelIPVS's own listing returns exactly
// what moby/ipvs returns for the same kernel table, field by field (stats
// included), on a table with a service of every kind shoal makes (TCP, UDP,
// SCTP and fwmark; IPv4 and IPv6; schedulers, persistence, flags, weights,
// thresholds, every forwarding method), entries made by hand beside them,
// a service whose destinations take several reads of a dump and enough
// services that their dump takes several too.
func TestKernelIPVSDumpMatchesMoby(t *testing.T) {
	k, _ := kernelIPVS(t)
	d, err := New(Options{Mode: ModeIPVS, Logger: quietLogger(), IPVS: k,
		Addresses: kernelfake.NewAddresses(), Announcer: &kernelfake.Announcer{}, Links: kernelfake.NewLinks()})
	if err != nil {
		t.Fatal(err)
	}
	c := everyKind()
	c.Services[0].RealServers[0].UpperThreshold = 100
	c.Services[0].RealServers[0].LowerThreshold = 20
	c.Services[1].RealServers[1].Weight = proto.Uint32(0)
	c.Services[6].RealServers[0].Weight = proto.Uint32(65535)
	d.SetConfig(c)
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}

	// By hand, as ipvsadm would: flags shoal never sets, and many entries.
	v4 := func(a string) net.IP { return net.ParseIP(a).To4() }
	byHand := []*ipvs.Service{
		{AddressFamily: syscall.AF_INET, Protocol: syscall.IPPROTO_UDP, Address: v4("198.51.100.1"), Port: 5060,
			SchedName: "sh", Flags: svcFlagOnePkt | svcFlagSchedSH1 | svcFlagSchedSH2, Netmask: 0xffffffff},
		{AddressFamily: syscall.AF_INET6, FWMark: 77, SchedName: "lblcr", Flags: svcFlagPersistent, Timeout: 3600, Netmask: 48},
		{AddressFamily: syscall.AF_INET, Protocol: syscall.IPPROTO_TCP, Address: v4("198.51.100.2"), Port: 80,
			SchedName: "wrr", Netmask: 0xffffffff},
	}
	for i := range 600 {
		byHand = append(byHand, &ipvs.Service{AddressFamily: syscall.AF_INET, Protocol: syscall.IPPROTO_TCP,
			Address: v4(fmt.Sprintf("198.51.%d.%d", 101+i/250, i%250+1)), Port: 443, SchedName: "rr", Netmask: 0xffffffff})
	}
	var entries []IPVSEntry
	for _, s := range byHand {
		entries = append(entries, IPVSEntry{Service: s})
	}
	for i := range 500 { // about 100 KB of answers: several reads
		entries = append(entries, IPVSEntry{Service: byHand[2], Dest: &ipvs.Destination{AddressFamily: syscall.AF_INET,
			Address: v4(fmt.Sprintf("10.50.%d.%d", i/250, i%250+1)), Port: uint16(1000 + i), Weight: i % 7,
			ConnectionFlags: []uint32{ipvs.ConnectionFlagMasq, ipvs.ConnectionFlagDirectRoute, ipvs.ConnectionFlagTunnel}[i%3],
			UpperThreshold:  uint32(i), LowerThreshold: uint32(i / 2)}})
	}
	entries = append(entries, IPVSEntry{Service: byHand[1], Dest: &ipvs.Destination{AddressFamily: syscall.AF_INET6,
		Address: net.ParseIP("2001:db8:5::1"), Port: 0, Weight: 2, ConnectionFlags: ipvs.ConnectionFlagDirectRoute}})
	for i, err := range k.Add(entries) {
		if err != nil {
			t.Fatalf("entry %d by hand: %v", i, err)
		}
	}

	want, err := k.h.GetServices()
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.GetServices()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || len(want) != len(c.Services)+len(byHand) {
		t.Fatalf("%d services listed, moby/ipvs lists %d; %d made", len(got), len(want), len(c.Services)+len(byHand))
	}
	dests := 0
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("service %d:\n got %+v\nwant %+v", i, *got[i], *want[i])
			continue
		}
		// One service read by its key is the same as in the dump.
		if one, err := k.GetService(want[i]); err != nil || !reflect.DeepEqual(one, want[i]) {
			t.Errorf("service %d read alone: %v\n got %+v\nwant %+v", i, err, one, *want[i])
		}
		wd, err := k.h.GetDestinations(want[i])
		if err != nil {
			t.Fatal(err)
		}
		gd, err := k.GetDestinations(got[i])
		if err != nil {
			t.Fatal(err)
		}
		if len(gd) != len(wd) {
			t.Errorf("service %s: %d destinations, moby/ipvs lists %d", serviceKey(want[i]), len(gd), len(wd))
			continue
		}
		for j := range wd {
			if !reflect.DeepEqual(gd[j], wd[j]) {
				t.Errorf("service %s destination %d:\n got %+v\nwant %+v", serviceKey(want[i]), j, *gd[j], *wd[j])
			}
		}
		dests += len(wd)
	}
	made := 500 + 1
	for _, vs := range c.Services {
		made += len(vs.RealServers)
	}
	if dests != made {
		t.Errorf("compared %d destinations, %d made", dests, made)
	}

	// A service that is not there has no destinations, as with moby/ipvs.
	ghost := &ipvs.Service{AddressFamily: syscall.AF_INET, Protocol: syscall.IPPROTO_TCP, Address: v4("203.0.113.9"), Port: 1}
	if gd, err := k.GetDestinations(ghost); err != nil || len(gd) != 0 {
		t.Errorf("destinations of a missing service: %v, %v", gd, err)
	}
	// Read alone, it is the kernel's ESRCH, and the socket stays in step.
	if s, err := k.GetService(ghost); !absent(err) {
		t.Errorf("a missing service read alone: %+v, %v; want ESRCH", s, err)
	}
	if s, err := k.GetService(want[0]); err != nil || serviceKey(s) != serviceKey(want[0]) {
		t.Errorf("a service read after a missing one: %+v, %v", s, err)
	}
	// The socket is still in step after all that: a change and a listing.
	if err := k.DelService(byHand[0]); err != nil {
		t.Fatal(err)
	}
	if got, err := k.GetServices(); err != nil || len(got) != len(want)-1 {
		t.Errorf("after one delete: %d services, %v", len(got), err)
	}
}
