package netlab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ARPPacket is one ARP frame a node received.
type ARPPacket struct {
	At        time.Time
	Op        uint16 // 1 request, 2 reply
	SenderMAC net.HardwareAddr
	SenderIP  netip.Addr
	TargetIP  netip.Addr
}

// Gratuitous reports a gratuitous ARP (sender IP = target IP), the kind a
// new VIP holder sends so that neighbours move their entries to its MAC.
func (p ARPPacket) Gratuitous() bool { return p.SenderIP == p.TargetIP }

// ARPWatch records every ARP frame arriving on a node's eth0, as the
// reference lab's tcpdump did, so a benchmark can split a failover into
// "kill → first GARP of the new holder" and "GARP → first answer".
type ARPWatch struct {
	mu   sync.Mutex
	pkts []ARPPacket
	done chan struct{}
	fd   int
}

// WatchARP starts recording ARP on the node's eth0 until ctx ends; Wait
// returns once the reader has stopped.
func (n *Node) WatchARP(ctx context.Context) (*ARPWatch, error) {
	ifi, err := n.nl.LinkByName(Iface)
	if err != nil {
		return nil, fmt.Errorf("netlab: %s: find %s: %w", n.NS, Iface, err)
	}
	proto := int(htons(unix.ETH_P_ARP))
	var fd int
	err = n.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Attrs().Index})
	})
	if err != nil {
		if fd > 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("netlab: %s: ARP socket: %w", n.NS, err)
	}
	// A receive timeout lets the reader notice ctx without closing the
	// socket under a blocked recvfrom.
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlab: %s: ARP socket timeout: %w", n.NS, err)
	}
	w := &ARPWatch{done: make(chan struct{}), fd: fd}
	go w.read(ctx)
	return w, nil
}

func (w *ARPWatch) read(ctx context.Context) {
	defer close(w.done)
	defer unix.Close(w.fd)
	buf := make([]byte, 1600)
	for ctx.Err() == nil {
		n, _, err := unix.Recvfrom(w.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if p, ok := parseARP(buf[:n]); ok {
			p.At = time.Now()
			w.mu.Lock()
			w.pkts = append(w.pkts, p)
			w.mu.Unlock()
		}
	}
}

// parseARP reads an Ethernet frame carrying an IPv4-over-Ethernet ARP
// packet (a SOCK_RAW packet socket keeps the Ethernet header).
func parseARP(b []byte) (ARPPacket, bool) {
	const eth = 14
	if len(b) < eth+28 || binary.BigEndian.Uint16(b[12:14]) != unix.ETH_P_ARP {
		return ARPPacket{}, false
	}
	a := b[eth:]
	if binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != unix.ETH_P_IP || a[4] != 6 || a[5] != 4 {
		return ARPPacket{}, false
	}
	return ARPPacket{
		Op:        binary.BigEndian.Uint16(a[6:8]),
		SenderMAC: net.HardwareAddr(append([]byte(nil), a[8:14]...)),
		SenderIP:  netip.AddrFrom4([4]byte(a[14:18])),
		TargetIP:  netip.AddrFrom4([4]byte(a[24:28])),
	}, true
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Packets returns what was recorded so far.
func (w *ARPWatch) Packets() []ARPPacket {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]ARPPacket(nil), w.pkts...)
}

// FirstGARP returns the first gratuitous ARP for addr from mac at or after t.
func (w *ARPWatch) FirstGARP(addr netip.Addr, mac net.HardwareAddr, t time.Time) (ARPPacket, bool) {
	for _, p := range w.Packets() {
		if !p.At.Before(t) && p.Gratuitous() && p.SenderIP == addr && p.SenderMAC.String() == mac.String() {
			return p, true
		}
	}
	return ARPPacket{}, false
}

// Wait blocks until the reader has stopped (after ctx ended).
func (w *ARPWatch) Wait() { <-w.done }
