package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The lab's network. Two bridges in the VM's root namespace are the two
// segments; every other machine is a network namespace with veth legs:
//
//	outside 10.0.1.0/24 (br-out): client .100, directors .1-.3 (eth0),
//	        real servers .11/.12 (eth1, for DR), NAT VIP .10, DR VIP .20,
//	        the root namespace .250 (management: API calls)
//	inside  10.0.2.0/24 (br-in):  directors .1-.3 (eth1), real servers
//	        .11/.12 (eth0), NAT router address .254 (floating)
//
// Real servers answer NAT traffic (source 10.0.2.x) through the NAT router,
// by a source rule, and DR traffic (source = DR VIP, held on lo) straight to
// the client on the outside segment, which is what DR promises.
const (
	natVIP    = "10.0.1.10"
	drVIP     = "10.0.1.20"
	natRouter = "10.0.2.254"
	mgmtAddr  = "10.0.1.250/24"
	clientIP  = "10.0.1.100"
	// The outside segment also carries IPv6 (2001:db8:1::X for 10.0.1.X),
	// with a DR VIP the real servers hold on lo; and a VIP for tunnel
	// (IP-in-IP) forwarding, which the real servers hold on lo as well
	// and receive through tunl0.
	outside6 = "2001:db8:1::"
	drVIP6   = "2001:db8:1::20"
	tunVIP   = "10.0.1.30"
)

// outsideV6 is the IPv6 address of a machine's outside address.
func outsideV6(v4 string) string {
	return outside6 + v4[strings.LastIndexByte(v4, '.')+1:]
}

type machine struct {
	name string
	ns   netns.NsHandle
	nl   *netlink.Handle
	out  string // address on the outside segment
	in   string // address on the inside segment, if any
}

// nsPath names the namespace for libraries that open it by path.
func (m *machine) nsPath() string { return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(m.ns)) }

type lab struct {
	directors []*machine
	servers   []*machine
	client    *machine
	all       map[string]*machine
}

func buildLab() (*lab, error) {
	l := &lab{all: map[string]*machine{}}
	root, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	defer root.Close()
	bridges := map[string]*netlink.Bridge{}
	for _, name := range []string{"br-out", "br-in"} {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := root.LinkAdd(br); err != nil {
			return nil, fmt.Errorf("add bridge %s: %w", name, err)
		}
		if err := root.LinkSetUp(br); err != nil {
			return nil, fmt.Errorf("up bridge %s: %w", name, err)
		}
		bridges[name] = br
	}
	if err := root.AddrAdd(bridges["br-out"], mustAddr(mgmtAddr)); err != nil {
		return nil, fmt.Errorf("management address: %w", err)
	}

	add := func(name, out, in string) (*machine, error) {
		m, err := newMachine(name)
		if err != nil {
			return nil, err
		}
		m.out, m.in = out, in
		l.all[name] = m
		// Directors: eth0 outside, eth1 inside. Real servers: eth0 inside
		// (NAT), eth1 outside (DR). The client: eth0 outside.
		legs := []struct{ dev, br, addr string }{{"eth0", "br-out", out}}
		if in != "" {
			legs = append(legs, struct{ dev, br, addr string }{"eth1", "br-in", in})
		}
		if strings.HasPrefix(name, "rs") {
			legs = []struct{ dev, br, addr string }{{"eth0", "br-in", in}, {"eth1", "br-out", out}}
		}
		for _, leg := range legs {
			host := fmt.Sprintf("%s-%s", name, leg.dev)
			veth := &netlink.Veth{
				LinkAttrs:     netlink.LinkAttrs{Name: host, MasterIndex: bridges[leg.br].Index},
				PeerName:      leg.dev,
				PeerNamespace: netlink.NsFd(int(m.ns)),
			}
			if err := root.LinkAdd(veth); err != nil {
				return nil, fmt.Errorf("veth %s: %w", host, err)
			}
			if err := root.LinkSetUp(veth); err != nil {
				return nil, fmt.Errorf("up %s: %w", host, err)
			}
			link, err := m.nl.LinkByName(leg.dev)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", name, leg.dev, err)
			}
			if err := m.nl.AddrAdd(link, mustAddr(leg.addr+"/24")); err != nil {
				return nil, fmt.Errorf("%s %s address: %w", name, leg.dev, err)
			}
			if leg.br == "br-out" {
				// No duplicate address detection: the address is usable
				// at once, and the lab has no duplicates.
				a := mustAddr(outsideV6(leg.addr) + "/64")
				a.Flags = unix.IFA_F_NODAD
				if err := m.nl.AddrAdd(link, a); err != nil {
					return nil, fmt.Errorf("%s %s IPv6 address: %w", name, leg.dev, err)
				}
			}
			if err := m.nl.LinkSetUp(link); err != nil {
				return nil, fmt.Errorf("%s up %s: %w", name, leg.dev, err)
			}
		}
		return m, nil
	}

	for i := 1; i <= 3; i++ {
		d, err := add(fmt.Sprintf("d%d", i), fmt.Sprintf("10.0.1.%d", i), fmt.Sprintf("10.0.2.%d", i))
		if err != nil {
			return nil, err
		}
		// NAT needs forwarding; IPVS only rewrites, the kernel routes.
		if err := d.sysctls(map[string]string{"net/ipv4/ip_forward": "1"}); err != nil {
			return nil, err
		}
		l.directors = append(l.directors, d)
	}
	for i := 1; i <= 2; i++ {
		rs, err := add(fmt.Sprintf("rs%d", i), fmt.Sprintf("10.0.1.%d", 10+i), fmt.Sprintf("10.0.2.%d", 10+i))
		if err != nil {
			return nil, err
		}
		if err := rs.realServerRouting(); err != nil {
			return nil, err
		}
		l.servers = append(l.servers, rs)
	}
	c, err := add("client", clientIP, "")
	if err != nil {
		return nil, err
	}
	l.client = c
	return l, nil
}

// newMachine creates a network namespace, kept alive by its handle rather
// than a bind mount, and brings its loopback up.
func newMachine(name string) (*machine, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("new netns %s: %w", name, err)
	}
	if err := netns.Set(orig); err != nil {
		// Stay locked: the runtime retires a thread whose goroutine ends
		// locked, so none other runs in the wrong namespace.
		return nil, fmt.Errorf("leave new netns %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", name, err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("%s lo: %w", name, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return nil, fmt.Errorf("%s up lo: %w", name, err)
	}
	return &machine{name: name, ns: ns, nl: h}, nil
}

// realServerRouting makes a real server answer NAT traffic through the NAT
// router and DR traffic directly, and hides the DR VIP from ARP.
func (m *machine) realServerRouting() error {
	inside, err := m.nl.LinkByName("eth0")
	if err != nil {
		return err
	}
	lo, err := m.nl.LinkByName("lo")
	if err != nil {
		return err
	}
	_, insideNet, _ := net.ParseCIDR("10.0.2.0/24")
	for _, r := range []*netlink.Route{
		{LinkIndex: inside.Attrs().Index, Dst: insideNet, Table: 100, Scope: netlink.SCOPE_LINK},
		{LinkIndex: inside.Attrs().Index, Gw: net.ParseIP(natRouter), Table: 100},
	} {
		if err := m.nl.RouteAdd(r); err != nil {
			return fmt.Errorf("%s route %v: %w", m.name, r, err)
		}
	}
	rule := netlink.NewRule()
	rule.Src = &net.IPNet{IP: net.ParseIP(m.in).To4(), Mask: net.CIDRMask(32, 32)}
	rule.Table = 100
	if err := m.nl.RuleAdd(rule); err != nil {
		return fmt.Errorf("%s rule: %w", m.name, err)
	}
	if err := m.nl.AddrAdd(lo, mustAddr(drVIP+"/32")); err != nil {
		return fmt.Errorf("%s DR VIP on lo: %w", m.name, err)
	}
	// IPv6 answers neighbour solicitations only for addresses of the
	// interface asked, so the DR VIP on lo stays hidden without sysctls.
	v6 := mustAddr(drVIP6 + "/128")
	v6.Flags = unix.IFA_F_NODAD
	if err := m.nl.AddrAdd(lo, v6); err != nil {
		return fmt.Errorf("%s IPv6 DR VIP on lo: %w", m.name, err)
	}
	// Tunnel forwarding: the director wraps the packet in IP-in-IP to the
	// real server's own address; tunl0 (made by the ipip module in every
	// namespace) unwraps it for the VIP on lo.
	if err := m.nl.AddrAdd(lo, mustAddr(tunVIP+"/32")); err != nil {
		return fmt.Errorf("%s tunnel VIP on lo: %w", m.name, err)
	}
	tunl, err := m.nl.LinkByName("tunl0")
	if err != nil {
		return fmt.Errorf("%s tunl0 (is ipip loaded?): %w", m.name, err)
	}
	if err := m.nl.LinkSetUp(tunl); err != nil {
		return fmt.Errorf("%s up tunl0: %w", m.name, err)
	}
	return m.sysctls(map[string]string{
		"net/ipv4/conf/tunl0/rp_filter": "0",
		// The classic DR real-server settings: never answer ARP for the VIP
		// held on lo, never use it as the source of an ARP request.
		"net/ipv4/conf/all/arp_ignore":    "1",
		"net/ipv4/conf/all/arp_announce":  "2",
		"net/ipv4/conf/eth1/arp_ignore":   "1",
		"net/ipv4/conf/eth1/arp_announce": "2",
		// NAT requests arrive on eth0 from a client that is routed via eth1.
		"net/ipv4/conf/all/rp_filter":  "0",
		"net/ipv4/conf/eth0/rp_filter": "0",
		"net/ipv4/conf/eth1/rp_filter": "0",
	})
}

// sysctls writes /proc/sys entries as seen from the machine's namespace: the
// network sysctls a thread sees follow the namespace it is in when it opens
// them.
func (m *machine) sysctls(kv map[string]string) error {
	return m.do(func() error {
		for k, v := range kv {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
				return fmt.Errorf("%s sysctl %s=%s: %w", m.name, k, v, err)
			}
		}
		return nil
	})
}

// do runs fn on a thread switched into the machine's namespace.
func (m *machine) do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(m.ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter %s: %w", m.name, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: Go retires it when this goroutine ends,
		// so no other goroutine runs in the wrong namespace.
		return errors.Join(ferr, fmt.Errorf("leave %s: %w", m.name, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// start starts cmd inside the machine's namespace: a child forked from a
// thread inside a namespace is born in it.
func (m *machine) start(cmd *exec.Cmd) error {
	return m.do(cmd.Start)
}

// setLinks brings the machine's host-side veth ends up or down: down is how
// the lab pulls a dead machine's cables.
func (m *machine) setLinks(up bool) error {
	root, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, dev := range []string{"eth0", "eth1"} {
		link, err := root.LinkByName(m.name + "-" + dev)
		if err != nil {
			continue
		}
		if up {
			err = root.LinkSetUp(link)
		} else {
			err = root.LinkSetDown(link)
		}
		if err != nil {
			return fmt.Errorf("set %s up=%v: %w", link.Attrs().Name, up, err)
		}
	}
	return nil
}

func mustAddr(s string) *netlink.Addr {
	a, err := netlink.ParseAddr(s)
	if err != nil {
		panic(err)
	}
	return a
}

// holdsVIP reports whether the machine's kernel has addr on any interface:
// what decides where the outside segment's traffic for it goes.
func (m *machine) holdsVIP(addr string) (bool, error) {
	addrs, err := m.nl.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return false, fmt.Errorf("%s addresses: %w", m.name, err)
	}
	for _, a := range addrs {
		if a.IP.String() == addr {
			return true, nil
		}
	}
	return false, nil
}
