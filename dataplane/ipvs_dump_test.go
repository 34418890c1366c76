package dataplane

import (
	"encoding/binary"
	"fmt"
	"net"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/ipvs"
	"golang.org/x/sys/unix"
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

// keyServices are a service of each key shape: IPv4 TCP (its address
// given in net.ParseIP's 16 bytes), IPv6 with a persistence engine, and
// fwmark.
var keyServices = []*ipvs.Service{
	{AddressFamily: syscall.AF_INET, Protocol: syscall.IPPROTO_TCP, Address: net.ParseIP("192.0.2.10"), Port: 443,
		SchedName: "wlc", Flags: svcFlagPersistent, Timeout: 300, Netmask: 0xffffffff},
	{AddressFamily: syscall.AF_INET6, Protocol: syscall.IPPROTO_UDP, Address: net.ParseIP("2001:db8::53"), Port: 5060,
		SchedName: "sh", PEName: "sip", Flags: svcFlagSchedSH1, Netmask: 128},
	{AddressFamily: syscall.AF_INET, FWMark: 0x2a, SchedName: "rr", Netmask: 0xffffffff},
}

// TestServiceEncoding pins, byte for byte, what is sent to the kernel for
// a service: its key in the listings' requests, and the whole service in
// Add's. The bytes were taken from the encoders as they were when the
// listings were checked against moby/ipvs in the kernel; a change here is
// a change on the wire.
func TestServiceEncoding(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the bytes are pinned in little-endian order")
	}
	hexOf := func(s string) string { return strings.ReplaceAll(s, " ", "") }
	for i, c := range []struct {
		get, dests, add string // GetService, GetDestinations, Add's service attribute
	}{{
		get: "38000000 1c00 0100 01000000 00000000 04010000" + // nlmsghdr (NLM_F_REQUEST), genlmsghdr
			"24000100" + // IPVS_CMD_ATTR_SERVICE
			"06000100 0200 0000" + // AF_INET
			"06000200 0600 0000" + // IPPROTO_TCP
			"08000300 c000020a" + // 192.0.2.10
			"06000400 01bb 0000", // port 443
		dests: "38000000 1c00 0103 02000000 00000000 08010000" + // NLM_F_REQUEST|NLM_F_DUMP
			"24000100 06000100 02000000 06000200 06000000 08000300 c000020a 06000400 01bb0000",
		add: "48000100 06000100 02000000 06000200 06000000 08000300 c000020a 06000400 01bb0000" +
			"08000600 776c6300" + // "wlc"
			"0c000700 01000000 ffffffff" + // flags, mask
			"08000800 2c010000" + // timeout
			"08000900 ffffffff", // netmask
	}, {
		get: "44000000 1c00 0100 01000000 00000000 04010000" +
			"30000100" +
			"06000100 0a00 0000" + // AF_INET6
			"06000200 1100 0000" + // IPPROTO_UDP
			"14000300 20010db8 00000000 00000000 00000053" +
			"06000400 13c4 0000", // port 5060
		dests: "44000000 1c00 0103 02000000 00000000 08010000" +
			"30000100 06000100 0a000000 06000200 11000000 14000300 20010db8000000000000000000000053 06000400 13c40000",
		add: "5c000100 06000100 0a000000 06000200 11000000 14000300 20010db8000000000000000000000053 06000400 13c40000" +
			"07000600 73680000" + // "sh"
			"08000b00 73697000" + // PE "sip"
			"0c000700 08000000 ffffffff" +
			"08000800 00000000" +
			"08000900 80000000",
	}, {
		get: "28000000 1c00 0100 01000000 00000000 04010000" +
			"14000100" +
			"06000100 0200 0000" + // AF_INET
			"08000500 2a000000", // fwmark 42
		dests: "28000000 1c00 0103 02000000 00000000 08010000" +
			"14000100 06000100 02000000 08000500 2a000000",
		add: "38000100 06000100 02000000 08000500 2a000000" +
			"07000600 72720000" + // "rr"
			"0c000700 00000000 ffffffff" +
			"08000800 00000000" +
			"08000900 ffffffff",
	}} {
		s := keyServices[i]
		b := &batchSocket{family: 0x1c}
		if got := fmt.Sprintf("%x", b.request(ipvsCmdGetService, 0, s)); got != hexOf(c.get) {
			t.Errorf("service %d, GetService request:\n got %s\nwant %s", i, got, hexOf(c.get))
		}
		if got := fmt.Sprintf("%x", b.request(ipvsCmdGetDest, unix.NLM_F_DUMP, s)); got != hexOf(c.dests) {
			t.Errorf("service %d, GetDestinations request:\n got %s\nwant %s", i, got, hexOf(c.dests))
		}
		if got := fmt.Sprintf("%x", serviceAttr(s).Serialize()); got != hexOf(c.add) {
			t.Errorf("service %d, Add's service attribute:\n got %s\nwant %s", i, got, hexOf(c.add))
		}
	}
	// The resync builds these two requests for every service it compares.
	b := &batchSocket{family: 0x1c}
	if n := testing.AllocsPerRun(100, func() {
		for _, s := range keyServices {
			b.request(ipvsCmdGetService, 0, s)
			b.request(ipvsCmdGetDest, unix.NLM_F_DUMP, s)
		}
	}); n != 0 && !raceEnabled {
		t.Errorf("building a service's listing requests allocates %.0f times", n)
	}
	b = &batchSocket{family: 0x1c}
	want := "14000000 1c00 0103 01000000 00000000 04010000" // GetServices: no key
	if got := fmt.Sprintf("%x", b.request(ipvsCmdGetService, unix.NLM_F_DUMP, nil)); got != hexOf(want) {
		t.Errorf("GetServices request:\n got %s\nwant %s", got, hexOf(want))
	}
}

// BenchmarkServiceRequest builds the request of a service's GetService
// and of its GetDestinations, as the resync does for every service it
// compares; allocs/op is what building them costs the resync.
func BenchmarkServiceRequest(b *testing.B) {
	sock := &batchSocket{family: 0x1c}
	b.ReportAllocs()
	for range b.N {
		for _, s := range keyServices {
			sock.request(ipvsCmdGetService, 0, s)
			sock.request(ipvsCmdGetDest, unix.NLM_F_DUMP, s)
		}
	}
}
