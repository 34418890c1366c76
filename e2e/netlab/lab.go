package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Iface is the name of the interface each router and the client see.
const Iface = "eth0"

// Options shape a lab. The zero value gives three routers on 192.168.77.0/24.
type Options struct {
	// Prefix of every namespace name; empty = "shl" + 6 random hex digits.
	Prefix string
	// Routers is the number of router namespaces (default 3).
	Routers int
	// Subnet of the lab's L2 segment (default 192.168.77.0/24). Router i
	// (1-based) gets host .10+i, the client gets host .100.
	Subnet netip.Prefix
	Logger *slog.Logger
}

// Lab is a switch (bridge br0 in its own namespace), routers r1..rN and a
// client c, each with eth0 plugged into the bridge.
type Lab struct {
	Prefix  string
	Subnet  netip.Prefix
	Routers []*Node
	Client  *Node
	// SwitchNS is the name of the namespace that holds the bridge.
	SwitchNS string

	log    *slog.Logger
	swns   netns.NsHandle
	swnl   *netlink.Handle // netlink in the switch namespace: Unplug without a fork
	mu     sync.Mutex
	procs  []*Process
	closed bool
}

// Node is one namespace plugged into the lab's switch.
type Node struct {
	// Name is the short name (r1, r2, ..., c).
	Name string
	// NS is the network namespace name (Prefix-Name).
	NS   string
	Addr netip.Addr
	MAC  net.HardwareAddr
	// Port is the node's veth end on the switch (in SwitchNS).
	Port string

	lab *Lab
	ns  netns.NsHandle
	nl  *netlink.Handle
}

// SkipUnlessRoot skips t when the process cannot build namespaces.
func SkipUnlessRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netlab: needs root (network namespaces, veth, bridge); run the e2e tests as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("netlab: needs iproute2 (`ip`) in PATH")
	}
}

// New builds the lab. On error everything already created is removed.
func New(o Options) (_ *Lab, err error) {
	if o.Routers == 0 {
		o.Routers = 3
	}
	if !o.Subnet.IsValid() {
		o.Subnet = netip.MustParsePrefix("192.168.77.0/24")
	}
	if !o.Subnet.Addr().Is4() || o.Subnet.Bits() > 24 {
		return nil, fmt.Errorf("netlab: subnet %s: need an IPv4 /24 or larger", o.Subnet)
	}
	if o.Routers < 1 || o.Routers > 80 {
		return nil, fmt.Errorf("netlab: %d routers: want 1..80", o.Routers)
	}
	if o.Prefix == "" {
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		o.Prefix = "shl" + hex.EncodeToString(b)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Lab{Prefix: o.Prefix, Subnet: o.Subnet.Masked(), SwitchNS: o.Prefix + "-sw", log: o.Logger, swns: -1}
	defer func() {
		if err != nil {
			_ = l.Close()
		}
	}()
	base := l.Subnet.Addr().As4()
	host := func(h byte) netip.Addr { a := base; a[3] = h; return netip.AddrFrom4(a) }
	for i := 1; i <= o.Routers; i++ {
		l.Routers = append(l.Routers, l.node("r"+strconv.Itoa(i), host(byte(10+i)), net.HardwareAddr{0x02, 0x77, 0, 0, 0, byte(0x10 + i)}))
	}
	l.Client = l.node("c", host(100), net.HardwareAddr{0x02, 0x77, 0, 0, 1, 0})

	for _, ns := range l.namespaces() {
		if _, err := netns.GetFromName(ns); err == nil {
			return nil, fmt.Errorf("netlab: namespace %s already exists; choose another prefix", ns)
		}
	}
	if err := ipCmd("netns", "add", l.SwitchNS); err != nil {
		return nil, err
	}
	if err := ipBatch(l.SwitchNS, []string{
		"link set lo up",
		"link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0",
		"link set br0 up",
	}); err != nil {
		return nil, err
	}
	if l.swns, err = netns.GetFromName(l.SwitchNS); err != nil {
		return nil, fmt.Errorf("netlab: open namespace %s: %w", l.SwitchNS, err)
	}
	if l.swnl, err = netlink.NewHandleAt(l.swns); err != nil {
		return nil, fmt.Errorf("netlab: netlink handle in %s: %w", l.SwitchNS, err)
	}
	for _, n := range l.Nodes() {
		if err := n.create(); err != nil {
			return nil, err
		}
	}
	l.log.Debug("netlab up", "prefix", l.Prefix, "routers", len(l.Routers))
	return l, nil
}

func (l *Lab) node(name string, addr netip.Addr, mac net.HardwareAddr) *Node {
	return &Node{Name: name, NS: l.Prefix + "-" + name, Addr: addr, MAC: mac, Port: "p-" + name, lab: l, ns: -1}
}

// Nodes returns the routers followed by the client.
func (l *Lab) Nodes() []*Node {
	return append(append([]*Node(nil), l.Routers...), l.Client)
}

// Router returns the router with the given short name, or nil.
func (l *Lab) Router(name string) *Node {
	for _, r := range l.Routers {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// RouterByMAC returns the router owning mac, or nil.
func (l *Lab) RouterByMAC(mac net.HardwareAddr) *Node {
	for _, r := range l.Routers {
		if bytes.Equal(r.MAC, mac) {
			return r
		}
	}
	return nil
}

// Host returns the address of host h in the lab subnet (e.g. 250 for a VIP).
func (l *Lab) Host(h byte) netip.Addr {
	a := l.Subnet.Addr().As4()
	a[3] = h
	return netip.AddrFrom4(a)
}

func (l *Lab) namespaces() []string {
	out := []string{l.SwitchNS}
	for _, n := range l.Nodes() {
		out = append(out, n.NS)
	}
	return out
}

func (n *Node) create() error {
	if err := ipCmd("netns", "add", n.NS); err != nil {
		return err
	}
	// Both veth ends are created inside lab namespaces: nothing appears in
	// the root namespace, not even for a moment.
	if err := ipCmd("link", "add", Iface, "netns", n.NS, "address", n.MAC.String(), "type", "veth",
		"peer", "name", n.Port, "netns", n.lab.SwitchNS); err != nil {
		return err
	}
	if err := ipCmd("-n", n.lab.SwitchNS, "link", "set", n.Port, "master", "br0", "up"); err != nil {
		return err
	}
	// IPv6 off: DAD and router solicitations only add noise to captures.
	if err := writeSysctls(n, map[string]string{
		"net.ipv6.conf.all.disable_ipv6":     "1",
		"net.ipv6.conf.default.disable_ipv6": "1",
	}); err != nil {
		return err
	}
	if err := ipBatch(n.NS, []string{
		"link set lo up",
		fmt.Sprintf("addr add %s/%d dev %s", n.Addr, n.lab.Subnet.Bits(), Iface),
		"link set " + Iface + " up",
	}); err != nil {
		return err
	}
	h, err := netns.GetFromName(n.NS)
	if err != nil {
		return fmt.Errorf("netlab: open namespace %s: %w", n.NS, err)
	}
	n.ns = h
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return fmt.Errorf("netlab: netlink handle in %s: %w", n.NS, err)
	}
	n.nl = nl
	return nil
}

func writeSysctls(n *Node, kv map[string]string) error {
	args := []string{"netns", "exec", n.NS, "sysctl", "-q", "-w"}
	for k, v := range kv {
		args = append(args, k+"="+v)
	}
	return ipCmd(args...)
}

// Sysctl sets a sysctl inside the node's namespace.
func (n *Node) Sysctl(key, value string) error {
	return writeSysctls(n, map[string]string{key: value})
}

// Close kills every process started in the lab, then deletes its
// namespaces. It is safe to call more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.closed = true
	l.mu.Unlock()
	for _, p := range procs {
		p.Kill()
	}
	var errs []error
	if l.swnl != nil {
		l.swnl.Close()
		l.swnl = nil
	}
	if l.swns >= 0 {
		_ = l.swns.Close()
		l.swns = -1
	}
	for _, n := range l.Nodes() {
		if n.nl != nil {
			n.nl.Close()
			n.nl = nil
		}
		if n.ns >= 0 {
			_ = n.ns.Close()
			n.ns = -1
		}
	}
	for _, ns := range l.namespaces() {
		if _, err := os.Stat("/run/netns/" + ns); err != nil {
			continue
		}
		// Whatever still runs in a lab namespace was started for the lab
		// (the prefix is ours): a forked child of a daemon, say.
		if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if err := ipCmd("netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Unplug takes the node's switch port down: the node vanishes from the L2
// segment (its own eth0 loses carrier, as when a cable or a switch port
// fails). It is one netlink call, no fork, so a benchmark can time it.
func (n *Node) Unplug() error { return n.setPort(false) }

// Plug brings the node's switch port back up.
func (n *Node) Plug() error { return n.setPort(true) }

func (n *Node) setPort(up bool) error {
	link, err := n.lab.swnl.LinkByName(n.Port)
	if err != nil {
		return fmt.Errorf("netlab: switch port %s: %w", n.Port, err)
	}
	if up {
		err = n.lab.swnl.LinkSetUp(link)
	} else {
		err = n.lab.swnl.LinkSetDown(link)
	}
	if err != nil {
		return fmt.Errorf("netlab: switch port %s up=%t: %w", n.Port, up, err)
	}
	return nil
}

// Addrs lists the IPv4 addresses on the node's eth0.
func (n *Node) Addrs() ([]netip.Prefix, error) {
	link, err := n.nl.LinkByName(Iface)
	if err != nil {
		return nil, fmt.Errorf("netlab: %s: find %s: %w", n.NS, Iface, err)
	}
	as, err := n.nl.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("netlab: %s: list addresses: %w", n.NS, err)
	}
	out := make([]netip.Prefix, 0, len(as))
	for _, a := range as {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if !ok {
			continue
		}
		bits, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip, bits))
	}
	return out, nil
}

// HasAddr reports whether addr is configured on the node's eth0.
func (n *Node) HasAddr(addr netip.Addr) (bool, error) {
	as, err := n.Addrs()
	if err != nil {
		return false, err
	}
	for _, p := range as {
		if p.Addr() == addr {
			return true, nil
		}
	}
	return false, nil
}

// AddAddr and DelAddr configure eth0 by hand (lab self-tests, competing
// daemons); lvsd manages its VIPs itself.
func (n *Node) AddAddr(p netip.Prefix) error {
	return ipCmd("-n", n.NS, "addr", "add", p.String(), "dev", Iface)
}

// DelAddr removes p from eth0.
func (n *Node) DelAddr(p netip.Prefix) error {
	return ipCmd("-n", n.NS, "addr", "del", p.String(), "dev", Iface)
}

// Neighbour is one entry of a node's neighbour (ARP) table.
type Neighbour struct {
	MAC   net.HardwareAddr
	State string // as `ip neigh` prints it: REACHABLE, STALE, ...
}

// Neighbour returns the node's ARP entry for addr; ok is false when there is
// none or it is incomplete/failed.
func (n *Node) Neighbour(addr netip.Addr) (nb Neighbour, ok bool, err error) {
	link, err := n.nl.LinkByName(Iface)
	if err != nil {
		return nb, false, fmt.Errorf("netlab: %s: find %s: %w", n.NS, Iface, err)
	}
	ns, err := n.nl.NeighList(link.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		return nb, false, fmt.Errorf("netlab: %s: list neighbours: %w", n.NS, err)
	}
	for _, e := range ns {
		ip, _ := netip.AddrFromSlice(e.IP.To4())
		if ip != addr || len(e.HardwareAddr) == 0 || e.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) != 0 {
			continue
		}
		return Neighbour{MAC: e.HardwareAddr, State: neighState(e.State)}, true, nil
	}
	return nb, false, nil
}

func neighState(s int) string {
	for _, c := range []struct {
		bit  int
		name string
	}{{netlink.NUD_REACHABLE, "REACHABLE"}, {netlink.NUD_STALE, "STALE"}, {netlink.NUD_DELAY, "DELAY"},
		{netlink.NUD_PROBE, "PROBE"}, {netlink.NUD_PERMANENT, "PERMANENT"}, {netlink.NUD_NOARP, "NOARP"}} {
		if s&c.bit != 0 {
			return c.name
		}
	}
	return "0x" + strconv.FormatInt(int64(s), 16)
}

// Holders returns the routers that have addr on eth0, in router order.
func (l *Lab) Holders(addr netip.Addr) ([]*Node, error) {
	var out []*Node
	for _, r := range l.Routers {
		ok, err := r.HasAddr(addr)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// Names joins the short names of nodes ("r1,r3"; "-" for none).
func Names(nodes []*Node) string {
	if len(nodes) == 0 {
		return "-"
	}
	s := make([]string, len(nodes))
	for i, n := range nodes {
		s[i] = n.Name
	}
	return strings.Join(s, ",")
}

// Command returns a command that runs name inside the node's namespace
// (`ip netns exec`, which also gives it a matching /sys).
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.NS, name}, args...)...)
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netlab: ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ipBatch runs several ip commands inside ns with one fork.
func ipBatch(ns string, lines []string) error {
	cmd := exec.Command("ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("netlab: ip -n %s -batch (%s): %w: %s", ns, strings.Join(lines, "; "), err, bytes.TrimSpace(out))
	}
	return nil
}
