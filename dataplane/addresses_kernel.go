package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetlinkAddresses raises and drops addresses with rtnetlink.
type NetlinkAddresses struct {
	h *netlink.Handle
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
	return &NetlinkAddresses{h: h}, nil
}

// Close releases the netlink socket.
func (n *NetlinkAddresses) Close() error { n.h.Close(); return nil }

func (n *NetlinkAddresses) AddAddress(dev string, p netip.Prefix, label string) error {
	link, err := n.h.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("add %s on %s: %w", p, dev, err)
	}
	a := &netlink.Addr{IPNet: prefixIPNet(p)}
	if label != "" && strings.HasPrefix(label, dev) && len(label) <= 15 {
		a.Label = label
	}
	if p.Addr().Is6() {
		// A VIP is moved, not discovered: duplicate address detection would
		// keep it tentative (unusable, unannounceable) for a second or more.
		a.Flags = unix.IFA_F_NODAD
	}
	if err := n.h.AddrAdd(link, a); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("add %s on %s: %w", p, dev, err)
	}
	return nil
}

func (n *NetlinkAddresses) RemoveAddress(dev string, p netip.Prefix) error {
	link, err := n.h.LinkByName(dev)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil // the device, and so the address, is gone
		}
		return fmt.Errorf("remove %s from %s: %w", p, dev, err)
	}
	err = n.h.AddrDel(link, &netlink.Addr{IPNet: prefixIPNet(p)})
	if err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("remove %s from %s: %w", p, dev, err)
	}
	return nil
}

func (n *NetlinkAddresses) ListAddresses(dev string) ([]netip.Prefix, error) {
	link, err := n.h.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", dev, err)
	}
	as, err := n.h.AddrList(link, netlink.FAMILY_ALL)
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
