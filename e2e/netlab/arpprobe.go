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

// ARPRound is one ARP request a node sent for an address and the routers'
// MACs that answered it before the next request went out.
type ARPRound struct {
	At   time.Time
	MACs []string
}

// ARPAsker asks "who has ADDR?" from a node every interval with its own
// packet socket and records which MACs answer each request: two MACs for
// one request are two hosts claiming the address at once, as the node's
// neighbours see it (the kernel of a holder answers even while its daemon
// is stopped).
type ARPAsker struct {
	mu     sync.Mutex
	rounds []ARPRound
	done   chan struct{}
}

// AskARP starts asking for target from the node's eth0 every interval until
// ctx ends; Wait returns once it has stopped.
func (n *Node) AskARP(ctx context.Context, target netip.Addr, interval time.Duration) (*ARPAsker, error) {
	ifi, err := n.nl.LinkByName(Iface)
	if err != nil {
		return nil, fmt.Errorf("netlab: %s: find %s: %w", n.NS, Iface, err)
	}
	proto := htons(unix.ETH_P_ARP)
	var fd int
	err = n.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Attrs().Index})
	})
	if err != nil {
		if fd > 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("netlab: %s: ARP socket: %w", n.NS, err)
	}
	tv := unix.NsecToTimeval((20 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlab: %s: ARP socket timeout: %w", n.NS, err)
	}
	a := &ARPAsker{done: make(chan struct{})}
	req := arpRequest(n.MAC, n.Addr, target)
	to := &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Attrs().Index, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	go func() {
		defer close(a.done)
		defer unix.Close(fd)
		buf := make([]byte, 1600)
		next := time.Now()
		for ctx.Err() == nil {
			if now := time.Now(); !now.Before(next) {
				if unix.Sendto(fd, req, 0, to) == nil {
					a.mu.Lock()
					a.rounds = append(a.rounds, ARPRound{At: now})
					a.mu.Unlock()
				}
				next = now.Add(interval)
			}
			k, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					continue
				}
				return
			}
			p, ok := parseARP(buf[:k])
			if !ok || p.Op != 2 || p.SenderIP != target || p.TargetIP != n.Addr {
				continue
			}
			a.mu.Lock()
			if r := len(a.rounds) - 1; r >= 0 {
				mac := p.SenderMAC.String()
				seen := false
				for _, m := range a.rounds[r].MACs {
					seen = seen || m == mac
				}
				if !seen {
					a.rounds[r].MACs = append(a.rounds[r].MACs, mac)
				}
			}
			a.mu.Unlock()
		}
	}()
	return a, nil
}

// arpRequest is a broadcast Ethernet frame asking who has target.
func arpRequest(mac net.HardwareAddr, from, target netip.Addr) []byte {
	b := make([]byte, 14+28)
	copy(b[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(b[6:12], mac)
	binary.BigEndian.PutUint16(b[12:14], unix.ETH_P_ARP)
	a := b[14:]
	binary.BigEndian.PutUint16(a[0:2], 1)             // Ethernet
	binary.BigEndian.PutUint16(a[2:4], unix.ETH_P_IP) // IPv4
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], 1) // request
	copy(a[8:14], mac)
	f, t := from.As4(), target.As4()
	copy(a[14:18], f[:])
	copy(a[24:28], t[:])
	return b
}

// Rounds returns every request so far with the MACs that answered it.
func (a *ARPAsker) Rounds() []ARPRound {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]ARPRound, len(a.rounds))
	for i, r := range a.rounds {
		out[i] = ARPRound{At: r.At, MACs: append([]string(nil), r.MACs...)}
	}
	return out
}

// Wait blocks until the asker has stopped (after ctx ended).
func (a *ARPAsker) Wait() { <-a.done }
