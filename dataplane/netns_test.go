package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/shoal-lb/shoal/dataplane/kernelfake"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// newNetNS creates an anonymous network namespace that lives as long as the
// test, without moving the test's own threads into it.
func newNetNS(t *testing.T) netns.NsHandle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func nlHandle(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// lab is two routers (a, b) and an observer (c) whose bridge joins them:
// a:eth0 — c:va ┐
//
//	br0 192.0.2.100/24, 2001:db8::100/64
//
// b:eth0 — c:vb ┘
type lab struct {
	a, b, c    netns.NsHandle
	ha, hb, hc *netlink.Handle
	macA, macB net.HardwareAddr
}

func newLab(t *testing.T) *lab {
	l := &lab{a: newNetNS(t), b: newNetNS(t), c: newNetNS(t)}
	l.ha, l.hb, l.hc = nlHandle(t, l.a), nlHandle(t, l.b), nlHandle(t, l.c)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	must(l.hc.LinkAdd(br))
	for _, r := range []struct {
		peer string
		ns   netns.NsHandle
		h    *netlink.Handle
		mac  *net.HardwareAddr
	}{{"va", l.a, l.ha, &l.macA}, {"vb", l.b, l.hb, &l.macB}} {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: r.peer, MasterIndex: 0}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(r.ns))}
		must(l.hc.LinkAdd(v))
		link, err := l.hc.LinkByName(r.peer)
		must(err)
		must(l.hc.LinkSetMaster(link, br))
		must(l.hc.LinkSetUp(link))
		eth, err := r.h.LinkByName("eth0")
		must(err)
		must(r.h.LinkSetUp(eth))
		*r.mac = eth.Attrs().HardwareAddr
		lo, err := r.h.LinkByName("lo")
		must(err)
		must(r.h.LinkSetUp(lo))
	}
	brl, err := l.hc.LinkByName("br0")
	must(err)
	must(l.hc.LinkSetUp(brl))
	must(l.hc.AddrAdd(brl, &netlink.Addr{IPNet: prefixIPNet(netip.MustParsePrefix("192.0.2.100/24"))}))
	must(l.hc.AddrAdd(brl, &netlink.Addr{IPNet: prefixIPNet(netip.MustParsePrefix("2001:db8::100/64")), Flags: unix.IFA_F_NODAD}))
	return l
}

// seed puts a stale neighbour entry for ip on the observer's bridge, as if it
// had talked to the VIP before: Linux only updates (never creates) entries on
// unsolicited announcements unless arp_accept / accept_untracked_na is set.
func (l *lab) seed(t *testing.T, ip netip.Addr) {
	t.Helper()
	brl, err := l.hc.LinkByName("br0")
	if err != nil {
		t.Fatal(err)
	}
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	err = l.hc.NeighSet(&netlink.Neigh{LinkIndex: brl.Attrs().Index, Family: fam, State: netlink.NUD_STALE,
		IP: net.IP(ip.AsSlice()), HardwareAddr: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}})
	if err != nil {
		t.Fatal(err)
	}
}

// neighMAC is the observer's idea of ip's hardware address.
func (l *lab) neighMAC(ip netip.Addr) string {
	brl, err := l.hc.LinkByName("br0")
	if err != nil {
		return ""
	}
	ns, err := l.hc.NeighList(brl.Attrs().Index, netlink.FAMILY_ALL)
	if err != nil {
		return ""
	}
	for _, n := range ns {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip {
			return n.HardwareAddr.String()
		}
	}
	return ""
}

func (l *lab) router(t *testing.T, ns netns.NsHandle, id string) (*Dataplane, *NetlinkAddresses, *LinkMonitor) {
	t.Helper()
	addrs, err := NewNetlinkAddressesAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { addrs.Close() })
	ann, err := NewNetAnnouncerAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ann.Close() })
	links := NewLinkMonitor(LinkMonitorOptions{Logger: quietLogger(), NetNS: ns})
	d, err := New(Options{Mode: ModeVIP, NodeID: id, DefaultInterface: "eth0", Logger: quietLogger(),
		Addresses: addrs, Announcer: ann, Links: links})
	if err != nil {
		t.Fatal(err)
	}
	return d, addrs, links
}

func runCtx(t *testing.T, d *Dataplane) func() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = d.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

func TestKernelVIPMoveWithGARPAndNA(t *testing.T) {
	l := newLab(t)
	v4 := netip.MustParseAddr("192.0.2.10")
	v6 := netip.MustParseAddr("2001:db8::10")
	l.seed(t, v4)
	l.seed(t, v6)
	cfg := &shoalv1.Config{Serial: 1,
		Global: &shoalv1.Global{MonitorLinks: []string{"eth0"}},
		Services: []*shoalv1.VirtualService{
			{Name: "web", Vip: &shoalv1.Address{Address: "192.0.2.10", PrefixLength: 24, Label: "eth0:1"}, Port: 80},
			{Name: "web6", Vip: &shoalv1.Address{Address: "2001:db8::10", PrefixLength: 64}, Port: 80},
		}}
	da, addrsA, linksA := l.router(t, l.a, "a")
	db, addrsB, _ := l.router(t, l.b, "b")
	da.SetConfig(cfg)
	db.SetConfig(cfg)
	runCtx(t, da)
	stopB := runCtx(t, db)
	eventually(t, 5*time.Second, "a's link monitor sees eth0 up", func() bool {
		return linksA.Known() && linksA.AllUp()
	})

	start := time.Now()
	da.SetLeader(true)
	raised := time.Since(start)
	eventually(t, 5*time.Second, "observer learns a's MAC for the IPv4 VIP", func() bool { return l.neighMAC(v4) == l.macA.String() })
	learned4 := time.Since(start)
	eventually(t, 5*time.Second, "observer learns a's MAC for the IPv6 VIP", func() bool { return l.neighMAC(v6) == l.macA.String() })
	t.Logf("a: SetLeader(true) returned after %v; IPv4 neighbour updated after %v, IPv6 after %v", raised, learned4, time.Since(start))
	got, err := addrsA.ListAddresses("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, netip.MustParsePrefix("192.0.2.10/24")) || !slices.Contains(got, netip.MustParsePrefix("2001:db8::10/64")) {
		t.Fatalf("a's eth0 has %v", got)
	}

	// Move: a steps down (drops first), b takes over.
	start = time.Now()
	da.SetLeader(false)
	db.SetLeader(true)
	eventually(t, 5*time.Second, "observer follows the IPv4 VIP to b", func() bool { return l.neighMAC(v4) == l.macB.String() })
	eventually(t, 5*time.Second, "observer follows the IPv6 VIP to b", func() bool { return l.neighMAC(v6) == l.macB.String() })
	t.Logf("move a→b: observer updated after %v", time.Since(start))
	if got, _ := addrsA.ListAddresses("eth0"); slices.Contains(got, netip.MustParsePrefix("192.0.2.10/24")) {
		t.Error("a still holds the VIP after SetLeader(false)")
	}
	var st shoalv1.NodeStatus
	db.Status(&st)
	if !st.HoldsVips || !slices.Equal(st.Addresses, []string{"192.0.2.10/24 eth0", "2001:db8::10/64 eth0"}) {
		t.Errorf("b status: %v %v", st.HoldsVips, st.Addresses)
	}

	// b's Run returning releases its addresses.
	stopB()
	if got, _ := addrsB.ListAddresses("eth0"); slices.Contains(got, netip.MustParsePrefix("192.0.2.10/24")) {
		t.Error("b still holds the VIP after Run returned")
	}

	// A monitored link going down takes the VIPs from a leader and keeps
	// them away until it is back.
	da.SetLeader(true)
	eth0, err := l.ha.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.ha.LinkSetDown(eth0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "link monitor reports eth0 down", func() bool { return slices.Equal(linksA.Down(), []string{"eth0"}) })
	eventually(t, 5*time.Second, "a drops the VIPs with eth0 down", func() bool {
		da.Status(&st)
		return !st.HoldsVips
	})
	if err := l.ha.LinkSetUp(eth0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a raises the VIPs again", func() bool {
		da.Status(&st)
		return len(st.Addresses) == 2
	})
}

func TestKernelAddressesIdempotent(t *testing.T) {
	l := newLab(t)
	a, err := NewNetlinkAddressesAt(l.a)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	p := netip.MustParsePrefix("198.51.100.7/32")
	for i := 0; i < 2; i++ {
		if err := a.AddAddress("eth0", p, "eth0:7", 0); err != nil {
			t.Fatalf("add #%d: %v", i, err)
		}
	}
	got, err := a.ListAddresses("eth0")
	if err != nil || !slices.Contains(got, p) {
		t.Fatalf("list: %v %v", got, err)
	}
	for i := 0; i < 2; i++ {
		if err := a.RemoveAddress("eth0", p); err != nil {
			t.Fatalf("remove #%d: %v", i, err)
		}
	}
	if err := a.RemoveAddress("nosuchdev", p); err != nil {
		t.Errorf("remove from a missing device: %v", err)
	}
	if err := a.AddAddress("nosuchdev", p, "", 0); err == nil {
		t.Error("add on a missing device succeeded")
	}
}

// figure logs a measured figure and, when SHOAL_E2E_FIGURES names a file,
// appends it there: go test shows a passing test's log only with -v, and
// make test prints that file at the end.
func figure(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf("dataplane: "+format, args...)
	t.Log(line)
	if path := os.Getenv("SHOAL_E2E_FIGURES"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Logf("figures file: %v", err)
			return
		}
		defer f.Close()
		fmt.Fprintln(f, line)
	}
}

// vethNS is a namespace with an up veth pair, eth0 and peer0, and its
// address events as `ip monitor address` would show them.
type vethNS struct {
	ns     netns.NsHandle
	h      *netlink.Handle
	mu     sync.Mutex
	events []addrEvent
}

type addrEvent struct {
	at     time.Time
	prefix netip.Prefix
	added  bool // RTM_NEWADDR (a new address or a renewal); else RTM_DELADDR
}

func newVethNS(t *testing.T) *vethNS {
	t.Helper()
	v := &vethNS{ns: newNetNS(t)}
	v.h = nlHandle(t, v.ns)
	if err := v.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"lo", "eth0", "peer0"} {
		linkUpIn(t, v.h, n)
	}
	ch := make(chan netlink.AddrUpdate, 1024)
	done := make(chan struct{})
	var closing atomic.Bool
	// A buffer for every event of TestKernelAddressRenewedInPlace's
	// back-to-back renewals, which outpace this reader.
	if err := netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{Namespace: &v.ns,
		ReceiveBufferSize: 4 << 20, ReceiveBufferForceSize: true,
		ErrorCallback: func(err error) {
			if !closing.Load() {
				t.Errorf("address events: %v", err)
			}
		}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for u := range ch {
			ip, _ := netip.AddrFromSlice(u.LinkAddress.IP)
			ones, _ := u.LinkAddress.Mask.Size()
			v.mu.Lock()
			v.events = append(v.events, addrEvent{at: time.Now(), prefix: netip.PrefixFrom(ip.Unmap(), ones), added: u.NewAddr})
			v.mu.Unlock()
		}
	}()
	t.Cleanup(func() { closing.Store(true); close(done); wg.Wait() })
	return v
}

// kernelAddrs is what the kernel lists on dev.
func (v *vethNS) kernelAddrs(t *testing.T, dev string) []netlink.Addr {
	t.Helper()
	link, err := v.h.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	as, err := v.h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	return as
}

// seen returns the events of p so far: how many RTM_NEWADDR, and the time of
// every RTM_DELADDR.
func (v *vethNS) seen(p netip.Prefix) (added int, deleted []time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, e := range v.events {
		switch {
		case e.prefix != p:
		case e.added:
			added++
		default:
			deleted = append(deleted, e.at)
		}
	}
	return added, deleted
}

// skipWithoutIPv6 skips when the kernel will not put p on eth0.
func (v *vethNS) skipWithoutIPv6(t *testing.T, p netip.Prefix) {
	t.Helper()
	if !p.Addr().Is6() {
		return
	}
	link, err := v.h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	// Another address than p, whose events the test watches.
	probe := &netlink.Addr{IPNet: prefixIPNet(netip.MustParsePrefix("2001:db8:ffff::1/128")), Flags: unix.IFA_F_NODAD}
	if err := v.h.AddrAdd(link, probe); err != nil {
		t.Skipf("no IPv6 in this namespace: %v", err)
	}
	if err := v.h.AddrDel(link, probe); err != nil {
		t.Fatal(err)
	}
}

func TestKernelAddressRenewedInPlace(t *testing.T) {
	for _, p := range []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24"), netip.MustParsePrefix("2001:db8::10/64")} {
		t.Run(p.String(), func(t *testing.T) {
			v := newVethNS(t)
			v.skipWithoutIPv6(t, p)
			a, err := NewNetlinkAddressesAt(v.ns)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if err := a.AddAddress("eth0", p, "eth0:1", 2*time.Second); err != nil {
				t.Fatal(err)
			}
			// Renew back to back while another socket looks for the
			// address as fast as it can.
			stop := make(chan struct{})
			missing := make(chan int, 1)
			go func() {
				polls, gone := 0, 0
				// Logged before the answer: the test may end as soon as it has it.
				defer func() { t.Logf("%d polls during the renewals", polls); missing <- gone }()
				for {
					select {
					case <-stop:
						return
					default:
					}
					got, err := a.ListAddresses("eth0")
					if err == nil && !slices.Contains(got, p) {
						gone++
					}
					polls++
				}
			}()
			const renewals = 500
			for i := 0; i < renewals; i++ {
				if err := a.AddAddress("eth0", p, "eth0:1", 2*time.Second); err != nil {
					t.Fatalf("renewal %d: %v", i, err)
				}
			}
			close(stop)
			if n := <-missing; n > 0 {
				t.Errorf("the address was missing from %d listings during the renewals", n)
			}
			eventually(t, 2*time.Second, "every renewal reported", func() bool {
				added, _ := v.seen(p)
				return added >= renewals+1
			})
			if _, deleted := v.seen(p); len(deleted) > 0 {
				t.Errorf("RTM_DELADDR during the renewals at %v", deleted)
			}
			kernelAddr := func() netlink.Addr {
				t.Helper()
				for _, x := range v.kernelAddrs(t, "eth0") {
					if x.IPNet.String() == prefixIPNet(p).String() {
						return x
					}
				}
				t.Fatalf("%s not on eth0", p)
				return netlink.Addr{}
			}
			if k := kernelAddr(); k.ValidLft < 1 || k.ValidLft > 2 || k.PreferedLft != k.ValidLft || k.Flags&unix.IFA_F_PERMANENT != 0 {
				t.Errorf("renewed: valid_lft %d preferred_lft %d flags %#x", k.ValidLft, k.PreferedLft, k.Flags)
			}
			// No lifetime makes a finite address permanent again.
			if err := a.AddAddress("eth0", p, "eth0:1", 0); err != nil {
				t.Fatal(err)
			}
			if k := kernelAddr(); k.Flags&unix.IFA_F_PERMANENT == 0 {
				t.Errorf("without a lifetime: valid_lft %d flags %#x, want permanent", k.ValidLft, k.Flags)
			}
		})
	}
}

// TestKernelAddAddressesAsAddrReplace: the batch of AddAddresses leaves
// the kernel with the addresses netlink's own AddrReplace leaves (label,
// broadcast, flags, lifetimes) in a twin namespace, more than a write's
// worth of them, and answers a missing device and a refused address
// each with an error of its own, the others raised.
func TestKernelAddAddressesAsAddrReplace(t *testing.T) {
	a, b := newVethNS(t), newVethNS(t)
	p6 := netip.MustParsePrefix("2001:db8::10/64")
	a.skipWithoutIPv6(t, p6)
	adds := []AddressAdd{
		{Dev: "eth0", Prefix: netip.MustParsePrefix("192.0.2.10/24"), Label: "eth0:1", Lifetime: 5 * time.Second},
		{Dev: "eth0", Prefix: netip.MustParsePrefix("198.51.100.1/32")},
		{Dev: "eth0", Prefix: netip.MustParsePrefix("198.51.100.2/30"), Label: "other:1"}, // not eth0's: no label
		{Dev: "eth0", Prefix: p6, Lifetime: 3 * time.Second},
		{Dev: "nope0", Prefix: netip.MustParsePrefix("203.0.113.1/32")},
		{Dev: "peer0", Prefix: netip.MustParsePrefix("203.0.113.2/32"), Lifetime: 2 * time.Second},
	}
	for i := range 2 * maxBatch {
		adds = append(adds, AddressAdd{Dev: "eth0", Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 7, 0, byte(i)}), 32)})
	}
	na, err := NewNetlinkAddressesAt(a.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer na.Close()
	errs := na.AddAddresses(adds)
	for i, err := range errs {
		if (err != nil) != (adds[i].Dev == "nope0") {
			t.Errorf("%s on %s: %v", adds[i].Prefix, adds[i].Dev, err)
		}
	}
	if !errors.Is(errs[4], syscall.ENODEV) {
		t.Errorf("a missing device: %v, want ENODEV", errs[4])
	}
	// A refused address fails alone: IPv6 with a prefix length of 129.
	bad := []AddressAdd{adds[0], {Dev: "eth0", Prefix: netip.PrefixFrom(netip.MustParseAddr("2001:db8::99"), 129)}, adds[1]}
	if errs := na.AddAddresses(bad); errs[0] != nil || errs[1] == nil || errs[2] != nil {
		t.Errorf("with a refused address: %v", errs)
	}

	// The twin, as the dataplane did it before, with netlink.AddrReplace.
	for _, ad := range adds {
		if ad.Dev == "nope0" {
			continue
		}
		link, err := b.h.LinkByName(ad.Dev)
		if err != nil {
			t.Fatal(err)
		}
		x := &netlink.Addr{IPNet: prefixIPNet(ad.Prefix)}
		if ad.Label != "" && strings.HasPrefix(ad.Label, ad.Dev) {
			x.Label = ad.Label
		}
		if ad.Prefix.Addr().Is6() {
			x.Flags = unix.IFA_F_NODAD
		}
		x.ValidLft = lifetimeSeconds(ad.Lifetime)
		x.PreferedLft = x.ValidLft
		if err := b.h.AddrReplace(link, x); err != nil {
			t.Fatal(err)
		}
	}
	type kernelAddr struct {
		desc        string
		valid, pref int
	}
	show := func(v *vethNS) map[string]kernelAddr {
		out := map[string]kernelAddr{}
		for _, dev := range []string{"eth0", "peer0"} {
			for _, x := range v.kernelAddrs(t, dev) {
				if x.IP.IsLinkLocalUnicast() {
					continue
				}
				out[dev+" "+x.IPNet.String()] = kernelAddr{fmt.Sprintf("label=%q brd=%v flags=%#x scope=%d", x.Label, x.Broadcast, x.Flags, x.Scope),
					x.ValidLft, x.PreferedLft}
			}
		}
		return out
	}
	got, want := show(a), show(b)
	for k, w := range want {
		g, ok := got[k]
		// Lifetimes count down in whole seconds, the twin's from a
		// moment later.
		if !ok || g.desc != w.desc || max(g.valid-w.valid, w.valid-g.valid) > 1 || max(g.pref-w.pref, w.pref-g.pref) > 1 {
			t.Errorf("%s: AddAddresses left %+v, AddrReplace %+v", k, g, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("AddAddresses left %d addresses, AddrReplace %d", len(got), len(want))
	}
	if len(got) < len(adds)-1 {
		t.Errorf("%d addresses in the kernel, want %d", len(got), len(adds)-1)
	}
}

// TestKernelAddressLifetimeBoundsAHungLvsd raises a VIP through a running
// Dataplane, watches the renewals keep it for more than three lifetimes,
// then hangs the dataplane (as SIGSTOP, or SIGKILL, would) and measures how
// long the kernel keeps the address after the last renewal.
func TestKernelAddressLifetimeBoundsAHungLvsd(t *testing.T) {
	L := DefaultAddressLifetime
	if testing.Short() {
		L = time.Second
	}
	for _, vip := range []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24"), netip.MustParsePrefix("2001:db8::10/64")} {
		t.Run(vip.String(), func(t *testing.T) {
			t.Parallel()
			v := newVethNS(t)
			v.skipWithoutIPv6(t, vip)
			addrs, err := NewNetlinkAddressesAt(v.ns)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { addrs.Close() })
			ann, err := NewNetAnnouncerAt(v.ns)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ann.Close() })
			d, err := New(Options{Mode: ModeVIP, NodeID: "a", DefaultInterface: "eth0", Logger: quietLogger(),
				Addresses: addrs, Announcer: ann, Links: kernelfake.NewLinks(), AddressLifetime: L})
			if err != nil {
				t.Fatal(err)
			}
			d.SetConfig(&shoalv1.Config{Serial: 1, Services: []*shoalv1.VirtualService{
				{Name: "web", Vip: &shoalv1.Address{Address: vip.Addr().String(), PrefixLength: uint32(vip.Bits())}, Port: 80},
			}})
			runCtx(t, d)
			held := func() bool {
				got, err := addrs.ListAddresses("eth0")
				return err == nil && slices.Contains(got, vip)
			}
			d.SetLeader(true)
			if !held() {
				t.Fatal("VIP not raised")
			}

			// Renewed: never gone, however closely one looks.
			watch := 3*L + L/2
			start := time.Now()
			polls := 0
			for time.Since(start) < watch {
				if !held() {
					t.Fatalf("VIP missing %v after it was raised, while renewed", time.Since(start))
				}
				polls++
				time.Sleep(time.Millisecond) // a polling rate, not a synchronisation
			}
			renewals, deleted := v.seen(vip)
			if len(deleted) > 0 {
				t.Fatalf("RTM_DELADDR while renewed: %v", deleted)
			}
			t.Logf("lifetime %v: kept for %v (%d polls), %d RTM_NEWADDR (raise + renewals every %v)", L, watch, polls, renewals, d.renewEvery())

			// Hang the dataplane: nothing of it touches addresses while
			// addrMu is taken, as in a stopped or killed lvsd.
			expired := counterValue(t, vipExpiredTotal)
			d.addrMu.Lock()
			var last time.Time
			for _, h := range d.held {
				last = h.renewed
			}
			eventually(t, L+3*time.Second, "the kernel drops the VIP of a hung lvsd", func() bool {
				_, deleted := v.seen(vip)
				return len(deleted) > 0
			})
			_, deleted = v.seen(vip)
			kept := deleted[0].Sub(last)
			fam := "IPv4"
			if vip.Addr().Is6() {
				fam = "IPv6"
			}
			figure(t, "%s VIP with lifetime %v: a hung lvsd's router dropped it %v after the last renewal",
				fam, L, kept.Round(time.Millisecond))
			if kept < L-lifetimeFuzz || kept > L+time.Second {
				t.Errorf("kept %v after the last renewal, want within [%v, %v]", kept, L-lifetimeFuzz, L+time.Second)
			}
			if held() {
				t.Error("VIP listed after RTM_DELADDR")
			}

			// lvsd runs again and still leads: the VIP comes back a renewal
			// interval later, counted as expired.
			resumed := time.Now()
			d.addrMu.Unlock()
			eventually(t, L+time.Second, "the VIP is raised again", held)
			t.Logf("raised again %v after lvsd resumed", time.Since(resumed).Round(time.Millisecond))
			if counterValue(t, vipExpiredTotal) <= expired {
				t.Error("expiry not counted in shoal_vip_expired_total")
			}
			d.SetLeader(false)
			if held() {
				t.Error("VIP held after SetLeader(false)")
			}
		})
	}
}
