package dataplane

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetlinkAddresses raises and drops addresses with rtnetlink.
type NetlinkAddresses struct {
	h   *netlink.Handle
	ifs *ifaces
}

var _ Addresses = (*NetlinkAddresses)(nil)

// NewNetlinkAddresses works in the current network namespace.
func NewNetlinkAddresses() (*NetlinkAddresses, error) {
	return NewNetlinkAddressesAt(netns.None())
}

// NewNetlinkAddressesAt works in network namespace ns (netns.None() = current).
func NewNetlinkAddressesAt(ns netns.NsHandle) (*NetlinkAddresses, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink: %w", err)
	}
	f, err := openIfaces(ns)
	if err != nil {
		h.Close()
		return nil, err
	}
	return &NetlinkAddresses{h: h, ifs: f}, nil
}

// Close releases the netlink sockets.
func (n *NetlinkAddresses) Close() error {
	n.h.Close()
	n.ifs.Close()
	return nil
}

func (n *NetlinkAddresses) AddAddress(dev string, p netip.Prefix, label string, lifetime time.Duration) error {
	idx, err := n.ifs.index(dev)
	if err != nil {
		return fmt.Errorf("add %s on %s: %w", p, dev, err)
	}
	a := &netlink.Addr{IPNet: prefixIPNet(p), LinkIndex: idx}
	if label != "" && strings.HasPrefix(label, dev) && len(label) <= 15 {
		a.Label = label
	}
	if p.Addr().Is6() {
		// A VIP is moved, not discovered: duplicate address detection would
		// keep it tentative (unusable, unannounceable) for a second or more.
		// (A renewal must repeat the flag: the kernel replaces the flags.)
		a.Flags = unix.IFA_F_NODAD
	}
	// Without the attribute the kernel makes the address permanent (and so
	// does a replace of a finite one). Preferred = valid: an IPv6 address
	// past its preferred lifetime is deprecated, no longer a source address.
	a.ValidLft = lifetimeSeconds(lifetime)
	a.PreferedLft = a.ValidLft
	// Replace (NLM_F_CREATE|NLM_F_REPLACE) adds an absent address and, on one
	// that is there, only sets the new lifetimes and restarts their clock:
	// both IPv4 and IPv6 update it in place and report RTM_NEWADDR, never a
	// RTM_DELADDR (TestKernelAddressRenewedInPlace).
	if err := n.h.AddrReplace(nil, a); err != nil {
		return fmt.Errorf("add %s on %s: %w", p, dev, err)
	}
	return nil
}

// lifetimeSeconds is a lifetime as the kernel takes it: whole seconds,
// rounded up; 0 (no lifetime) leaves the attribute out, which is forever.
func lifetimeSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	s := (d + time.Second - 1) / time.Second
	// Lifetimes of 2^31/HZ seconds and more are forever to the kernel anyway.
	return int(min(s, math.MaxInt32))
}

func (n *NetlinkAddresses) RemoveAddress(dev string, p netip.Prefix) error {
	idx, err := n.ifs.index(dev)
	if errors.Is(err, syscall.ENODEV) {
		return nil // the device, and so the address, is gone
	}
	if err != nil {
		return fmt.Errorf("remove %s from %s: %w", p, dev, err)
	}
	err = n.h.AddrDel(nil, &netlink.Addr{IPNet: prefixIPNet(p), LinkIndex: idx})
	if err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("remove %s from %s: %w", p, dev, err)
	}
	return nil
}

func (n *NetlinkAddresses) ListAddresses(dev string) ([]netip.Prefix, error) {
	idx, err := n.ifs.index(dev)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", dev, err)
	}
	as, err := n.h.AddrList(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: idx}}, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", dev, err)
	}
	out := make([]netip.Prefix, 0, len(as))
	for _, a := range as {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}

func prefixIPNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}
