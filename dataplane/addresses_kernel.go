package dataplane

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetlinkAddresses raises and drops addresses with rtnetlink.
type NetlinkAddresses struct {
	h   *netlink.Handle
	ifs *ifaces

	// mu guards the sequence numbers of AddAddresses, whose requests go
	// on ifs's socket.
	mu  sync.Mutex
	seq uint32
}

var (
	_ Addresses    = (*NetlinkAddresses)(nil)
	_ AddressAdder = (*NetlinkAddresses)(nil)
)

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
	if err := f.s.SetReceiveTimeout(&nl.SocketTimeoutTv); err != nil {
		h.Close()
		f.Close()
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

// AddAddress is AddAddresses of one.
func (n *NetlinkAddresses) AddAddress(dev string, p netip.Prefix, label string, lifetime time.Duration) error {
	return n.AddAddresses([]AddressAdd{{Dev: dev, Prefix: p, Label: label, Lifetime: lifetime}})[0]
}

// AddAddresses implements AddressAdder: up to maxBatch addresses a write
// to the kernel (sendBatch), each device looked up once.
func (n *NetlinkAddresses) AddAddresses(adds []AddressAdd) []error {
	n.mu.Lock()
	defer n.mu.Unlock()
	errs := make([]error, len(adds))
	type lookup struct {
		index int
		err   error
	}
	devs := map[string]lookup{}
	for start := 0; start < len(adds); start += maxBatch {
		var reqs []byte
		var sent []int // the positions in adds of reqs's requests
		first := n.seq + 1
		for i := start; i < min(start+maxBatch, len(adds)); i++ {
			a := adds[i]
			l, ok := devs[a.Dev]
			if !ok {
				l.index, l.err = n.ifs.index(a.Dev)
				devs[a.Dev] = l
			}
			if l.err != nil {
				errs[i] = fmt.Errorf("add %s on %s: %w", a.Prefix, a.Dev, l.err)
				continue
			}
			n.seq++
			reqs = append(reqs, addrRequest(n.seq, l.index, a)...)
			sent = append(sent, i)
		}
		if len(sent) == 0 {
			continue
		}
		got := make([]error, len(sent))
		werr := sendBatch(n.ifs.s, first, reqs, got)
		for k, i := range sent {
			if err := cmp.Or(got[k], werr); err != nil {
				errs[i] = fmt.Errorf("add %s on %s: %w", adds[i].Prefix, adds[i].Dev, err)
			}
		}
		if werr != nil {
			// The socket's answers are lost with the write: the rest
			// are not tried.
			for i := start + maxBatch; i < len(adds); i++ {
				errs[i] = fmt.Errorf("add %s on %s: not tried: %w", adds[i].Prefix, adds[i].Dev, werr)
			}
			break
		}
	}
	return errs
}

// addrRequest is a's RTM_NEWADDR, encoded as netlink's AddrReplace encodes
// it, with NLM_F_CREATE|NLM_F_REPLACE: that adds an absent address and, on
// one that is there, only sets the new lifetimes and restarts their clock;
// both IPv4 and IPv6 update it in place and report RTM_NEWADDR, never a
// RTM_DELADDR (TestKernelAddressRenewedInPlace).
func addrRequest(seq uint32, index int, a AddressAdd) []byte {
	req := nl.NewNetlinkRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE|unix.NLM_F_ACK)
	req.Seq = seq
	ip := a.Prefix.Addr()
	msg := nl.NewIfAddrmsg(netlink.FAMILY_V4)
	if ip.Is6() {
		msg.Family = netlink.FAMILY_V6
		// A VIP is moved, not discovered: duplicate address detection
		// would keep it tentative (unusable, unannounceable) for a second
		// or more. (A renewal must repeat the flag: the kernel replaces
		// the flags.)
		msg.Flags = unix.IFA_F_NODAD
	}
	msg.Index = uint32(index)
	msg.Prefixlen = uint8(a.Prefix.Bits())
	req.AddData(msg)
	b := ip.AsSlice()
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, b))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, b))
	if ip.Is4() {
		// The broadcast address of a subnet that has one (RFC 3021).
		if bits := a.Prefix.Bits(); bits < 31 {
			bc := binary.BigEndian.Uint32(b) | ^uint32(0)>>bits
			req.AddData(nl.NewRtAttr(unix.IFA_BROADCAST, binary.BigEndian.AppendUint32(nil, bc)))
		}
		if a.Label != "" && strings.HasPrefix(a.Label, a.Dev) && len(a.Label) <= 15 {
			req.AddData(nl.NewRtAttr(unix.IFA_LABEL, nl.ZeroTerminated(a.Label)))
		}
	}
	// Without the attribute the kernel makes the address permanent (and so
	// does a replace of a finite one). Preferred = valid: an IPv6 address
	// past its preferred lifetime is deprecated, no longer a source address.
	if s := lifetimeSeconds(a.Lifetime); s > 0 {
		ci := nl.IfaCacheInfo{IfaCacheinfo: unix.IfaCacheinfo{Valid: uint32(s), Prefered: uint32(s)}}
		req.AddData(nl.NewRtAttr(unix.IFA_CACHEINFO, ci.Serialize()))
	}
	return req.Serialize()
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
	// A change of an address while the kernel dumps them (a renewal,
	// every second on a leader) marks the dump interrupted, and its list
	// may lack an address that never left: seen as an IPv6 VIP missing
	// at a renewal. Dumped again, a few times.
	var as []netlink.Addr
	for range dumpAttempts {
		as, err = n.h.AddrList(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: idx}}, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
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

// dumpAttempts is how many times ListAddresses dumps while the kernel says
// its dump was interrupted.
const dumpAttempts = 5

func prefixIPNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}
