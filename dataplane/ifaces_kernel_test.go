package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestKernelIfaces: the ioctl lookups agree with netlink's, see a rename at
// once, and say ENODEV for a device that is not there.
func TestKernelIfaces(t *testing.T) {
	l := newLab(t)
	f, err := openIfaces(l.a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	link, err := l.ha.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	idx, mac, err := f.ethernet("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if idx != link.Attrs().Index || mac.String() != link.Attrs().HardwareAddr.String() {
		t.Errorf("index %d, address %s; netlink says %d, %s", idx, mac, link.Attrs().Index, link.Attrs().HardwareAddr)
	}
	// No Ethernet address, as netlink says of it too.
	if _, _, err := f.ethernet("lo"); err == nil {
		t.Error("lo has an Ethernet address")
	}
	if _, err := f.index("nope0"); !errors.Is(err, syscall.ENODEV) {
		t.Errorf("a missing device: %v, want ENODEV", err)
	}
	if _, _, err := f.ethernet("nope0"); !errors.Is(err, syscall.ENODEV) {
		t.Errorf("a missing device's address: %v, want ENODEV", err)
	}

	// A renamed device: found under its new name, gone under the old.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.ha.LinkSetDown(link))
	must(l.ha.LinkSetName(link, "wan0"))
	if idx, err := f.index("wan0"); err != nil || idx != link.Attrs().Index {
		t.Errorf("renamed: index %d, %v; want %d", idx, err, link.Attrs().Index)
	}
	if _, err := f.index("eth0"); !errors.Is(err, syscall.ENODEV) {
		t.Errorf("the old name: %v, want ENODEV", err)
	}
}

// TestKernelAddAddressesAsAddrReplace: the batch of AddAddresses leaves
// the kernel with the addresses netlink's own AddrReplace leaves (label,
// broadcast, flags, lifetimes) in a twin namespace, more than a write's
// worth of them, and answers a missing device and a refused address
// each with an error of its own, the others raised.
func TestKernelAddAddressesAsAddrReplace(t *testing.T) {
	a, b := newVethNS(t), newVethNS(t)
	p6 := netip.MustParsePrefix("2001:db8::10/64")
	a.skipWithoutIPv6(t, p6)
	adds := []AddressAdd{
		{Dev: "eth0", Prefix: netip.MustParsePrefix("192.0.2.10/24"), Label: "eth0:1", Lifetime: 5 * time.Second},
		{Dev: "eth0", Prefix: netip.MustParsePrefix("198.51.100.1/32")},
		{Dev: "eth0", Prefix: netip.MustParsePrefix("198.51.100.2/30"), Label: "other:1"}, // not eth0's: no label
		{Dev: "eth0", Prefix: p6, Lifetime: 3 * time.Second},
		{Dev: "nope0", Prefix: netip.MustParsePrefix("203.0.113.1/32")},
		{Dev: "peer0", Prefix: netip.MustParsePrefix("203.0.113.2/32"), Lifetime: 2 * time.Second},
	}
	for i := range 2 * maxBatch {
		adds = append(adds, AddressAdd{Dev: "eth0", Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 7, 0, byte(i)}), 32)})
	}
	na, err := NewNetlinkAddressesAt(a.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer na.Close()
	errs := na.AddAddresses(adds)
	for i, err := range errs {
		if (err != nil) != (adds[i].Dev == "nope0") {
			t.Errorf("%s on %s: %v", adds[i].Prefix, adds[i].Dev, err)
		}
	}
	if !errors.Is(errs[4], syscall.ENODEV) {
		t.Errorf("a missing device: %v, want ENODEV", errs[4])
	}
	// A refused address fails alone: IPv6 with a prefix length of 129.
	bad := []AddressAdd{adds[0], {Dev: "eth0", Prefix: netip.PrefixFrom(netip.MustParseAddr("2001:db8::99"), 129)}, adds[1]}
	if errs := na.AddAddresses(bad); errs[0] != nil || errs[1] == nil || errs[2] != nil {
		t.Errorf("with a refused address: %v", errs)
	}

	// The twin, as the dataplane did it before, with netlink.AddrReplace.
	for _, ad := range adds {
		if ad.Dev == "nope0" {
			continue
		}
		link, err := b.h.LinkByName(ad.Dev)
		if err != nil {
			t.Fatal(err)
		}
		x := &netlink.Addr{IPNet: prefixIPNet(ad.Prefix)}
		if ad.Label != "" && strings.HasPrefix(ad.Label, ad.Dev) {
			x.Label = ad.Label
		}
		if ad.Prefix.Addr().Is6() {
			x.Flags = unix.IFA_F_NODAD
		}
		x.ValidLft = lifetimeSeconds(ad.Lifetime)
		x.PreferedLft = x.ValidLft
		if err := b.h.AddrReplace(link, x); err != nil {
			t.Fatal(err)
		}
	}
	type kernelAddr struct {
		desc        string
		valid, pref int
	}
	show := func(v *vethNS) map[string]kernelAddr {
		out := map[string]kernelAddr{}
		for _, dev := range []string{"eth0", "peer0"} {
			for _, x := range v.kernelAddrs(t, dev) {
				if x.IP.IsLinkLocalUnicast() {
					continue
				}
				out[dev+" "+x.IPNet.String()] = kernelAddr{fmt.Sprintf("label=%q brd=%v flags=%#x scope=%d", x.Label, x.Broadcast, x.Flags, x.Scope),
					x.ValidLft, x.PreferedLft}
			}
		}
		return out
	}
	got, want := show(a), show(b)
	for k, w := range want {
		g, ok := got[k]
		// Lifetimes count down in whole seconds, the twin's from a
		// moment later.
		if !ok || g.desc != w.desc || max(g.valid-w.valid, w.valid-g.valid) > 1 || max(g.pref-w.pref, w.pref-g.pref) > 1 {
			t.Errorf("%s: AddAddresses left %+v, AddrReplace %+v", k, g, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("AddAddresses left %d addresses, AddrReplace %d", len(got), len(want))
	}
	if len(got) < len(adds)-1 {
		t.Errorf("%d addresses in the kernel, want %d", len(got), len(adds)-1)
	}
}
