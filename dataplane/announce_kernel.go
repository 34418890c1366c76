package dataplane

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"
)

const (
	etherTypeIPv6 = 0x86dd
	ipProtoICMPv6 = 58
)

var (
	allNodes    = netip.MustParseAddr("ff02::1")
	allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	zeroMAC     = net.HardwareAddr{0, 0, 0, 0, 0, 0}
)

// NetAnnouncer sends gratuitous ARP and unsolicited neighbour advertisements
// as raw Ethernet frames on a packet socket. Raw frames rather than an ICMPv6
// socket because they need no usable source address on the interface: a
// link-local address may still be tentative when a VIP moves.
//
// Sockets are kept open per interface and protocol: opening and closing a
// packet socket waits for an RCU grace period (synchronize_net), milliseconds
// that a takeover must not spend. They carry a drop-everything filter, so they
// never queue the traffic they could see.
type NetAnnouncer struct {
	ns  netns.NsHandle
	ifs *ifaces

	mu    sync.Mutex
	conns map[connKey]*packet.Conn
}

type connKey struct{ ifindex, proto int }

var _ Announcer = (*NetAnnouncer)(nil)

// NewNetAnnouncer announces in the current network namespace.
func NewNetAnnouncer() (*NetAnnouncer, error) { return NewNetAnnouncerAt(netns.None()) }

// NewNetAnnouncerAt announces in network namespace ns (netns.None() = current).
func NewNetAnnouncerAt(ns netns.NsHandle) (*NetAnnouncer, error) {
	f, err := openIfaces(ns)
	if err != nil {
		return nil, err
	}
	return &NetAnnouncer{ns: ns, ifs: f, conns: map[connKey]*packet.Conn{}}, nil
}

// Close releases the sockets.
func (a *NetAnnouncer) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, c := range a.conns {
		c.Close()
		delete(a.conns, k)
	}
	a.ifs.Close()
	return nil
}

// Announce sends one announcement of addr on dev.
func (a *NetAnnouncer) Announce(dev string, addr netip.Addr) error {
	// Looked up for every announcement: a bond may change its address.
	idx, mac, err := a.ifs.ethernet(dev)
	if err != nil {
		return fmt.Errorf("announce %s on %s: %w", addr, dev, err)
	}
	ifi := &net.Interface{Index: idx, Name: dev, HardwareAddr: mac}
	var frame []byte
	var proto int
	if addr.Unmap().Is4() {
		frame, err = garpFrame(ifi.HardwareAddr, addr.Unmap())
		proto = int(ethernet.EtherTypeARP)
	} else {
		frame, err = unsolicitedNAFrame(ifi.HardwareAddr, addr)
		proto = etherTypeIPv6
	}
	if err != nil {
		return fmt.Errorf("announce %s on %s: %w", addr, dev, err)
	}
	dst := net.HardwareAddr(ethernet.Broadcast)
	if proto == etherTypeIPv6 {
		dst = allNodesMAC
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	key := connKey{ifi.Index, proto}
	// A cached socket may belong to an interface that was replaced: one
	// retry on a fresh socket.
	for attempt := 0; ; attempt++ {
		c, ok := a.conns[key]
		if !ok {
			c, err = a.listen(ifi, proto)
			if err != nil {
				return fmt.Errorf("announce %s on %s: %w", addr, dev, err)
			}
			a.conns[key] = c
		}
		_, err = c.WriteTo(frame, &packet.Addr{HardwareAddr: dst})
		if err == nil {
			return nil
		}
		c.Close()
		delete(a.conns, key)
		if attempt > 0 || !ok {
			return fmt.Errorf("announce %s on %s: %w", addr, dev, err)
		}
	}
}

// dropAll is a socket filter that accepts nothing: the sockets only send.
var dropAll, _ = bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})

// listen opens the packet socket inside a.ns: a socket keeps the namespace it
// was created in, so only creation needs the thread switched.
func (a *NetAnnouncer) listen(ifi *net.Interface, proto int) (*packet.Conn, error) {
	if !a.ns.IsOpen() {
		return packet.Listen(ifi, packet.Raw, proto, &packet.Config{Filter: dropAll})
	}
	type result struct {
		c   *packet.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		if err := netns.Set(a.ns); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		c, err := packet.Listen(ifi, packet.Raw, proto, &packet.Config{Filter: dropAll})
		if netns.Set(orig) == nil {
			// Only a thread back in its own namespace may serve other
			// goroutines; otherwise it dies with this one.
			runtime.UnlockOSThread()
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// garpFrame is an ARP request with sender = target = addr (RFC 5227
// announcement), broadcast: Linux treats it as gratuitous and overrides the
// cached hardware address at once, without waiting for locktime.
func garpFrame(mac net.HardwareAddr, addr netip.Addr) ([]byte, error) {
	p, err := arp.NewPacket(arp.OperationRequest, mac, addr, zeroMAC, addr)
	if err != nil {
		return nil, err
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	f := &ethernet.Frame{Destination: ethernet.Broadcast, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: pb}
	return f.MarshalBinary()
}

// unsolicitedNAFrame is a neighbour advertisement for addr with the override
// flag, to all nodes, carrying mac as target link-layer address (RFC 4861
// 7.2.6).
func unsolicitedNAFrame(mac net.HardwareAddr, addr netip.Addr) ([]byte, error) {
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: addr,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}
	icmp, err := ndp.MarshalMessageChecksum(na, addr, allNodes)
	if err != nil {
		return nil, err
	}
	ip := make([]byte, 40, 40+len(icmp))
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(icmp)))
	ip[6] = ipProtoICMPv6
	ip[7] = ndp.HopLimit
	src, dst := addr.As16(), allNodes.As16()
	copy(ip[8:24], src[:])
	copy(ip[24:40], dst[:])
	f := &ethernet.Frame{Destination: allNodesMAC, Source: mac, EtherType: etherTypeIPv6, Payload: append(ip, icmp...)}
	return f.MarshalBinary()
}
