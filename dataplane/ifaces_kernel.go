package dataplane

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"unsafe"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ifaces looks interfaces up by name with ioctls on a socket of their
// namespace. A netlink lookup (RTM_GETLINK) has the kernel build the whole
// link and netlink parse it, about 70 µs here, which a takeover and the
// leader's lifetime renewals paid for every VIP (1,000 VIPs: a tenth of a
// core, every second); SIOCGIFINDEX is a few µs and as fresh, so nothing is
// cached that a renamed or re-created interface could make stale.
type ifaces struct {
	s *nl.NetlinkSocket
}

func openIfaces(ns netns.NsHandle) (*ifaces, error) {
	// Any socket answers these ioctls for its own namespace; a netlink
	// one needs no IP stack.
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink: %w", err)
	}
	return &ifaces{s: s}, nil
}

func (f *ifaces) Close() { f.s.Close() }

// index is dev's interface index; a missing dev is syscall.ENODEV.
func (f *ifaces) index(dev string) (int, error) {
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(f.s.GetFd(), unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, err
	}
	return int(ifr.Uint32()), nil
}

// ifreqHW is struct ifreq with its union read as ifr_hwaddr (struct
// sockaddr), which x/sys/unix's Ifreq has no accessor for.
type ifreqHW struct {
	name   [unix.IFNAMSIZ]byte
	family uint16
	data   [14]byte
	_      [8]byte
}

// ethernet is dev's index and Ethernet address; a device of another
// kind (a tunnel, the loopback device) is an error.
func (f *ifaces) ethernet(dev string) (int, net.HardwareAddr, error) {
	idx, err := f.index(dev)
	if err != nil {
		return 0, nil, err
	}
	var r ifreqHW
	copy(r.name[:unix.IFNAMSIZ-1], dev)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(f.s.GetFd()), unix.SIOCGIFHWADDR, uintptr(unsafe.Pointer(&r))); e != 0 {
		return 0, nil, e
	}
	if r.family != unix.ARPHRD_ETHER {
		return 0, nil, errors.New("no Ethernet address")
	}
	return idx, net.HardwareAddr(slices.Clone(r.data[:6])), nil
}
