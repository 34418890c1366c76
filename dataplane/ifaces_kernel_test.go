package dataplane

import (
	"errors"
	"syscall"
	"testing"
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
