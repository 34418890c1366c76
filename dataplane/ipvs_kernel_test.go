package dataplane

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"google.golang.org/protobuf/proto"
	durpb "google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoal-lb/shoal/dataplane/kernelfake"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// These tests drive the real IPVS of the running kernel, each in a network
// namespace of its own (IPVS tables are per namespace), so they can run on a
// host or VM that also runs lvsd. They skip where the kernel has no IPVS; the
// VM lab (e2e/vmlab) runs them with a Debian kernel that has it.

func TestNewFailsAtOnceWithoutIPVS(t *testing.T) {
	if hasIPVS() {
		t.Skip("this kernel has IPVS")
	}
	start := time.Now()
	_, err := New(Options{Mode: ModeIPVS, Logger: quietLogger()})
	if err == nil || !errors.Is(err, ErrNoIPVS) || !strings.Contains(err.Error(), "--dataplane vip or none") {
		t.Fatalf("New(ipvs) on a kernel without IPVS: %v", err)
	}
	t.Logf("failed in %v: %v", time.Since(start), err)
}

// recordingIPVS counts the changes a Dataplane makes to the kernel.
type recordingIPVS struct {
	IPVS
	mu  sync.Mutex
	ops []string
}

func (r *recordingIPVS) rec(op string, s *ipvs.Service, d *ipvs.Destination) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := op + " " + serviceKey(s)
	if d != nil {
		e += " " + destKey(d)
	}
	r.ops = append(r.ops, e)
}

func (r *recordingIPVS) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.ops
	r.ops = nil
	return out
}

func (r *recordingIPVS) NewService(s *ipvs.Service) error {
	r.rec("NewService", s, nil)
	return r.IPVS.NewService(s)
}
func (r *recordingIPVS) UpdateService(s *ipvs.Service) error {
	r.rec("UpdateService", s, nil)
	return r.IPVS.UpdateService(s)
}
func (r *recordingIPVS) DelService(s *ipvs.Service) error {
	r.rec("DelService", s, nil)
	return r.IPVS.DelService(s)
}
func (r *recordingIPVS) NewDestination(s *ipvs.Service, d *ipvs.Destination) error {
	r.rec("NewDestination", s, d)
	return r.IPVS.NewDestination(s, d)
}
func (r *recordingIPVS) UpdateDestination(s *ipvs.Service, d *ipvs.Destination) error {
	r.rec("UpdateDestination", s, d)
	return r.IPVS.UpdateDestination(s, d)
}
func (r *recordingIPVS) DelDestination(s *ipvs.Service, d *ipvs.Destination) error {
	r.rec("DelDestination", s, d)
	return r.IPVS.DelDestination(s, d)
}

// inNetNS runs fn on a thread inside ns: sockets fn creates stay in ns.
func inNetNS(t *testing.T, ns netns.NsHandle, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			t.Error(err)
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			t.Error(err)
			runtime.UnlockOSThread()
			return
		}
		fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	<-done
}

// kernelIPVS opens the real IPVS in a fresh namespace, or skips.
func kernelIPVS(t *testing.T) (*KernelIPVS, netns.NsHandle) {
	t.Helper()
	ns := newNetNS(t)
	var k *KernelIPVS
	var err error
	inNetNS(t, ns, func() { k, err = NewKernelIPVS() })
	if errors.Is(err, ErrNoIPVS) {
		t.Skipf("kernel has no IPVS: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	// A namespace whose lo is down has no local routing table yet, and
	// IPVS then refuses every IPv4 destination (inet_addr_type answers
	// "broadcast"): EINVAL. A real node always has one.
	linkUpIn(t, nlHandle(t, ns), "lo")
	return k, ns
}

func linkUpIn(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return l
}

// kernelTable renders the namespace's IPVS table one line per service, e.g.
// "tcp/192.0.2.1:80 wlc flags=0 timeout=0 prefix=32 | 10.0.0.1:80 nat w1".
func kernelTable(t *testing.T, k IPVS) []string {
	t.Helper()
	svcs, err := k.GetServices()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range svcs {
		line := fmt.Sprintf("%s %s flags=%d timeout=%d prefix=%d |", serviceKey(s), s.SchedName, s.Flags&^svcFlagHashed, s.Timeout, persistencePrefix(s))
		ds, err := k.GetDestinations(s)
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(ds, func(a, b *ipvs.Destination) int { return strings.Compare(destKey(a), destKey(b)) })
		for _, d := range ds {
			line += fmt.Sprintf(" %s %s w%d", destKey(d), forwardName(d.ConnectionFlags), d.Weight)
			if d.UpperThreshold != 0 || d.LowerThreshold != 0 {
				line += fmt.Sprintf(" x%d y%d", d.UpperThreshold, d.LowerThreshold)
			}
		}
		out = append(out, line)
	}
	slices.Sort(out)
	return out
}

func kernelRig(t *testing.T) (*rig, *recordingIPVS, IPVS, netns.NsHandle) {
	var k IPVS
	var ns netns.NsHandle
	if os.Getenv("SHOAL_DATAPLANE_FAKE_KERNEL") != "" && !hasIPVS() {
		// Checks these tests' own expectations where no IPVS kernel is at
		// hand; it proves nothing about the kernel.
		k, ns = kernelfake.NewIPVS(), newNetNS(t)
	} else {
		k, ns = kernelIPVS(t)
	}
	rec := &recordingIPVS{IPVS: k}
	r := &rig{ipvs: nil, addrs: kernelfake.NewAddresses(), health: &fakeHealth{}, links: kernelfake.NewLinks()}
	r.ann = &kernelfake.Announcer{Addresses: r.addrs}
	d, err := New(Options{Mode: ModeIPVS, NodeID: "vm", DefaultInterface: "eth0", Logger: quietLogger(),
		Health: r.health, IPVS: rec, Addresses: r.addrs, Announcer: r.ann, Links: r.links})
	if err != nil {
		t.Fatal(err)
	}
	r.d = d
	return r, rec, k, ns
}

// everyKind is one service of each kind the model can express.
func everyKind() *shoalv1.Config {
	return &shoalv1.Config{Serial: 1, Services: []*shoalv1.VirtualService{
		{Name: "a-tcp-nat", Vip: addr("192.0.2.1"), Port: 80, Scheduler: "wlc",
			RealServers: []*shoalv1.RealServer{rs("10.0.0.1"), {Address: "10.0.0.2", Port: 8080, Weight: proto.Uint32(3)}}},
		{Name: "b-udp-dr", Vip: addr("192.0.2.2"), Port: 53, Protocol: "udp", Scheduler: "rr", Forward: "dr",
			RealServers: []*shoalv1.RealServer{rs("10.0.0.1"), rs("10.0.0.2")}},
		{Name: "c-sctp-tun", Vip: addr("192.0.2.3"), Port: 3868, Protocol: "sctp", Scheduler: "sh", Forward: "tun",
			RealServers: []*shoalv1.RealServer{rs("10.0.0.3")}},
		{Name: "d-persistent", Vip: addr("192.0.2.4"), Port: 443, PersistenceTimeout: 300, PersistencePrefix: 24,
			RealServers: []*shoalv1.RealServer{rs("10.0.0.1"), {Address: "10.0.0.2", Forward: "dr"}}},
		{Name: "e-fwmark4", Vip: addr("192.0.2.5"), Fwmark: 5, Scheduler: "lc",
			RealServers: []*shoalv1.RealServer{{Address: "10.0.0.5", Port: 80}}},
		{Name: "f-fwmark6", Vip: addr("2001:db8::6"), Fwmark: 6, Scheduler: "wrr",
			RealServers: []*shoalv1.RealServer{{Address: "2001:db8:1::6", Port: 80, Weight: proto.Uint32(9)}}},
		{Name: "g-tcp6", Vip: addr("2001:db8::7"), Port: 80, Scheduler: "mh", Forward: "dr",
			RealServers: []*shoalv1.RealServer{rs("2001:db8:1::7"), rs("2001:db8:1::8")}},
		{Name: "h-persistent6", Vip: addr("2001:db8::8"), Port: 443, PersistenceTimeout: 60, PersistencePrefix: 64,
			RealServers: []*shoalv1.RealServer{rs("2001:db8:1::9")}},
	}}
}

var everyKindTable = []string{
	"fwmark/inet/5 lc flags=0 timeout=0 prefix=32 | 10.0.0.5:80 nat w1",
	"fwmark/inet6/6 wrr flags=0 timeout=0 prefix=128 | [2001:db8:1::6]:80 nat w9",
	"sctp/192.0.2.3:3868 sh flags=0 timeout=0 prefix=32 | 10.0.0.3:3868 tun w1",
	"tcp/192.0.2.1:80 wlc flags=0 timeout=0 prefix=32 | 10.0.0.1:80 nat w1 10.0.0.2:8080 nat w3",
	"tcp/192.0.2.4:443 wlc flags=1 timeout=300 prefix=24 | 10.0.0.1:443 nat w1 10.0.0.2:443 dr w1",
	"tcp/[2001:db8::7]:80 mh flags=0 timeout=0 prefix=128 | [2001:db8:1::7]:80 dr w1 [2001:db8:1::8]:80 dr w1",
	"tcp/[2001:db8::8]:443 wlc flags=1 timeout=60 prefix=64 | [2001:db8:1::9]:443 nat w1",
	"udp/192.0.2.2:53 rr flags=0 timeout=0 prefix=32 | 10.0.0.1:53 dr w1 10.0.0.2:53 dr w1",
}

func TestKernelIPVSEveryKind(t *testing.T) {
	r, rec, k, _ := kernelRig(t)
	c := everyKind()
	r.apply(t, c)
	eq(t, "kernel table", kernelTable(t, k), everyKindTable)
	rec.take()

	// Converged: a second reconcile changes nothing.
	r.apply(t, c)
	eq(t, "idle reconcile", rec.take(), nil)

	// Status reads the same table back with names.
	var st shoalv1.NodeStatus
	r.d.IPVSStatus(&st)
	if len(st.Ipvs) != len(everyKindTable) {
		t.Fatalf("status has %d services", len(st.Ipvs))
	}
	for _, s := range st.Ipvs {
		if s.Name == "" {
			t.Errorf("unnamed status entry %v", s)
		}
		if s.Name == "d-persistent" && (s.PersistenceTimeout != 300 || s.PersistencePrefix != 24 || !slices.Contains(s.Flags, "persistent")) {
			t.Errorf("persistence in status: %v", s)
		}
	}

	// Empty config: everything shoal made goes, one delete per service.
	c.Services = nil
	r.apply(t, c)
	eq(t, "kernel table after removing all", kernelTable(t, k), nil)
	if got := rec.take(); len(got) != len(everyKindTable) {
		t.Errorf("removal took %d changes: %v", len(got), got)
	}
}

func TestKernelIPVSEverySchedulerInPlace(t *testing.T) {
	r, rec, k, _ := kernelRig(t)
	c := webConfig()
	r.apply(t, c)
	rec.take()
	for _, s := range []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf"} {
		c.Services[0].Scheduler = s
		c.Serial++
		r.apply(t, c)
		eq(t, "scheduler "+s+" ops", rec.take(), []string{"UpdateService tcp/192.0.2.10:80"})
		got, _ := k.GetServices()
		if len(got) != 1 || got[0].SchedName != s {
			t.Errorf("scheduler %s: kernel has %+v", s, got)
		}
	}
}

func TestKernelIPVSUpdatesInPlace(t *testing.T) {
	r, rec, k, _ := kernelRig(t)
	c := webConfig()
	c.Services[0].SorryServer = &shoalv1.RealServer{Address: "10.9.9.9"}
	r.apply(t, c)
	rec.take()
	vs := c.Services[0]
	key := "tcp/192.0.2.10:80"
	steps := []struct {
		name   string
		change func()
		ops    []string
		table  string
	}{
		{"weight", func() { vs.RealServers[0].Weight = proto.Uint32(100) },
			[]string{"UpdateDestination " + key + " 10.0.0.1:80"},
			key + " wlc flags=0 timeout=0 prefix=32 | 10.0.0.1:80 nat w100 10.0.0.2:80 nat w2"},
		// Thresholds are edits of the destination: its connections stay.
		{"thresholds", func() { vs.RealServers[1].UpperThreshold, vs.RealServers[1].LowerThreshold = 500, 400 },
			[]string{"UpdateDestination " + key + " 10.0.0.2:80"},
			key + " wlc flags=0 timeout=0 prefix=32 | 10.0.0.1:80 nat w100 10.0.0.2:80 nat w2 x500 y400"},
		{"upper threshold alone", func() { vs.RealServers[1].LowerThreshold = 0 },
			[]string{"UpdateDestination " + key + " 10.0.0.2:80"},
			key + " wlc flags=0 timeout=0 prefix=32 | 10.0.0.1:80 nat w100 10.0.0.2:80 nat w2 x500 y0"},
		{"no thresholds", func() { vs.RealServers[1].UpperThreshold = 0 },
			[]string{"UpdateDestination " + key + " 10.0.0.2:80"},
			key + " wlc flags=0 timeout=0 prefix=32 | 10.0.0.1:80 nat w100 10.0.0.2:80 nat w2"},
		{"persistence", func() { vs.PersistenceTimeout = 120; vs.PersistencePrefix = 16 },
			[]string{"UpdateService " + key},
			key + " wlc flags=1 timeout=120 prefix=16 | 10.0.0.1:80 nat w100 10.0.0.2:80 nat w2"},
		{"no persistence", func() { vs.PersistenceTimeout = 0; vs.PersistencePrefix = 0 },
			[]string{"UpdateService " + key},
			key + " wlc flags=0 timeout=0 prefix=32 | 10.0.0.1:80 nat w100 10.0.0.2:80 nat w2"},
		{"forwarding", func() { vs.Forward = "dr"; vs.RealServers[1].Forward = "tun" },
			[]string{"UpdateDestination " + key + " 10.0.0.1:80", "UpdateDestination " + key + " 10.0.0.2:80"},
			key + " wlc flags=0 timeout=0 prefix=32 | 10.0.0.1:80 dr w100 10.0.0.2:80 tun w2"},
		{"quiesce a down server", func() { vs.Quiesce = true; r.health.set("web", "10.0.0.1:80", false) },
			[]string{"UpdateDestination " + key + " 10.0.0.1:80"},
			key + " wlc flags=0 timeout=0 prefix=32 | 10.0.0.1:80 dr w0 10.0.0.2:80 tun w2"},
		{"sorry server in", func() { r.health.set("web", "10.0.0.2:80", false) },
			[]string{"NewDestination " + key + " 10.9.9.9:80", "DelDestination " + key + " 10.0.0.1:80", "DelDestination " + key + " 10.0.0.2:80"},
			key + " wlc flags=0 timeout=0 prefix=32 | 10.9.9.9:80 dr w1"},
		{"sorry server out", func() { r.health.set("web", "10.0.0.1:80", true) },
			[]string{"NewDestination " + key + " 10.0.0.1:80", "NewDestination " + key + " 10.0.0.2:80", "DelDestination " + key + " 10.9.9.9:80"},
			key + " wlc flags=0 timeout=0 prefix=32 | 10.0.0.1:80 dr w100 10.0.0.2:80 tun w0"},
	}
	for _, s := range steps {
		s.change()
		c.Serial++
		r.apply(t, c)
		eq(t, s.name+" ops", rec.take(), s.ops)
		eq(t, s.name+" table", kernelTable(t, k), []string{s.table})
	}
}

func TestKernelIPVSForeignEntriesAndDrift(t *testing.T) {
	r, rec, k, _ := kernelRig(t)
	foreign := &ipvs.Service{Address: net.ParseIP("198.51.100.1").To4(), Port: 25, Protocol: 6, SchedName: "rr", AddressFamily: 2, Netmask: 0xffffffff}
	colliding := &ipvs.Service{Address: net.ParseIP("192.0.2.10").To4(), Port: 80, Protocol: 6, SchedName: "rr", AddressFamily: 2, Netmask: 0xffffffff}
	for _, s := range []*ipvs.Service{foreign, colliding} {
		if err := k.NewService(s); err != nil {
			t.Fatal(err)
		}
		if err := k.NewDestination(s, &ipvs.Destination{Address: net.ParseIP("10.6.6.6").To4(), Port: s.Port, Weight: 1}); err != nil {
			t.Fatal(err)
		}
	}
	c := webConfig()
	r.apply(t, c)
	eq(t, "taken over, foreign kept", kernelTable(t, k), []string{
		"tcp/192.0.2.10:80 wlc flags=0 timeout=0 prefix=32 | 10.0.0.1:80 nat w1 10.0.0.2:80 nat w2",
		"tcp/198.51.100.1:25 rr flags=0 timeout=0 prefix=32 | 10.6.6.6:25 nat w1",
	})
	rec.take()

	// ipvsadm -C behind shoal's back, and a hand edit.
	if err := k.DelService(colliding); err != nil {
		t.Fatal(err)
	}
	r.apply(t, c)
	eq(t, "repaired after a flush", kernelTable(t, k)[:1], []string{"tcp/192.0.2.10:80 wlc flags=0 timeout=0 prefix=32 | 10.0.0.1:80 nat w1 10.0.0.2:80 nat w2"})
	if err := k.UpdateDestination(colliding, &ipvs.Destination{Address: net.ParseIP("10.0.0.1").To4(), Port: 80, Weight: 42}); err != nil {
		t.Fatal(err)
	}
	rec.take()
	r.apply(t, c)
	eq(t, "hand edit undone", rec.take(), []string{"UpdateDestination tcp/192.0.2.10:80 10.0.0.1:80"})

	c.Services = nil
	r.apply(t, c)
	eq(t, "only the foreign service is left", kernelTable(t, k), []string{"tcp/198.51.100.1:25 rr flags=0 timeout=0 prefix=32 | 10.6.6.6:25 nat w1"})
}

func TestKernelIPVSTimeouts(t *testing.T) {
	r, _, k, _ := kernelRig(t)
	c := webConfig()
	c.Global = &shoalv1.Global{TcpTimeout: durpb.New(901 * time.Second), TcpfinTimeout: durpb.New(61 * time.Second), UdpTimeout: durpb.New(31 * time.Second)}
	r.apply(t, c)
	got, err := k.GetConfig()
	if err != nil {
		t.Fatal(err)
	}
	if got.TimeoutTCP != 901*time.Second || got.TimeoutTCPFin != 61*time.Second || got.TimeoutUDP != 31*time.Second {
		t.Errorf("timeouts %+v", got)
	}
}

// TestKernelIPVSTrafficAndStats sends real connections through a NAT service:
// a client namespace, the director (the namespace IPVS runs in) and a real
// server namespace whose default route is the director, as in a Piranha NAT
// setup. It then reads the counters back through Status.
//
//	client eth0 192.168.77.2 — dc 192.168.77.1 + VIP .100 [director] dr 10.77.1.1 — eth0 10.77.1.2:8080 real server
func TestKernelIPVSTrafficAndStats(t *testing.T) {
	r, _, k, dir := kernelRig(t)
	if _, fake := k.(*kernelfake.IPVS); fake {
		t.Skip("needs the kernel's IPVS")
	}
	client, real := newNetNS(t), newNetNS(t)
	hd := nlHandle(t, dir)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, side := range []struct {
		ns         netns.NsHandle
		local      string
		dirAddr    string
		remote, gw string
	}{
		{client, "dc", "192.168.77.1/24", "192.168.77.2/24", "192.168.77.1"},
		{real, "dr", "10.77.1.1/24", "10.77.1.2/24", "10.77.1.1"},
	} {
		must(hd.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: side.local}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(side.ns))}))
		l := linkUpIn(t, hd, side.local)
		must(hd.AddrAdd(l, &netlink.Addr{IPNet: prefixIPNet(netip.MustParsePrefix(side.dirAddr))}))
		h := nlHandle(t, side.ns)
		linkUpIn(t, h, "lo")
		e := linkUpIn(t, h, "eth0")
		must(h.AddrAdd(e, &netlink.Addr{IPNet: prefixIPNet(netip.MustParsePrefix(side.remote))}))
		must(h.RouteAdd(&netlink.Route{LinkIndex: e.Attrs().Index, Gw: net.ParseIP(side.gw)}))
	}
	dc, err := hd.LinkByName("dc")
	must(err)
	must(hd.AddrAdd(dc, &netlink.Addr{IPNet: prefixIPNet(netip.MustParsePrefix("192.168.77.100/32"))}))
	inNetNS(t, dir, func() { err = os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) })
	must(err)

	var ln net.Listener
	inNetNS(t, real, func() { ln, err = net.Listen("tcp", "10.77.1.2:8080") })
	must(err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.WriteString(c, "hello from the real server\n") }()
		}
	}()
	r.apply(t, &shoalv1.Config{Serial: 1, Services: []*shoalv1.VirtualService{{
		Name: "nat", Vip: addr("192.168.77.100"), Port: 80, Scheduler: "rr",
		RealServers: []*shoalv1.RealServer{{Address: "10.77.1.2", Port: 8080}},
	}}})
	const conns = 3
	for i := 0; i < conns; i++ {
		var got []byte
		var derr error
		inNetNS(t, client, func() {
			c, err := net.DialTimeout("tcp", "192.168.77.100:80", 2*time.Second)
			if err != nil {
				derr = err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			got, derr = io.ReadAll(c)
		})
		if derr != nil || !strings.HasPrefix(string(got), "hello") {
			t.Fatalf("connection %d through IPVS NAT: %v, %q", i, derr, got)
		}
	}
	var st shoalv1.NodeStatus
	eventually(t, 5*time.Second, "statistics counted", func() bool {
		r.d.IPVSStatus(&st)
		return len(st.Ipvs) == 1 && st.Ipvs[0].GetStats().GetConnections() >= conns &&
			len(st.Ipvs[0].Destinations) == 1 && st.Ipvs[0].Destinations[0].GetStats().GetConnections() >= conns
	})
	s := st.Ipvs[0]
	d := s.Destinations[0]
	t.Logf("service %s conns=%d pkts in/out=%d/%d bytes in/out=%d/%d; destination %s:%d %s active=%d inactive=%d",
		s.Name, s.Stats.Connections, s.Stats.PacketsIn, s.Stats.PacketsOut, s.Stats.BytesIn, s.Stats.BytesOut,
		d.Address, d.Port, d.Forward, d.ActiveConnections, d.InactiveConnections)
	if s.Stats.PacketsIn == 0 || s.Stats.PacketsOut == 0 || s.Stats.BytesIn == 0 || s.Stats.BytesOut == 0 {
		t.Errorf("packet/byte counters empty: %v", s.Stats)
	}
	if d.ActiveConnections+d.InactiveConnections == 0 {
		t.Errorf("no connection entries for the destination")
	}

	// A weight change in place keeps the connection entries and counters.
	r.apply(t, &shoalv1.Config{Serial: 2, Services: []*shoalv1.VirtualService{{
		Name: "nat", Vip: addr("192.168.77.100"), Port: 80, Scheduler: "wrr",
		RealServers: []*shoalv1.RealServer{{Address: "10.77.1.2", Port: 8080, Weight: proto.Uint32(5)}},
	}}})
	var after shoalv1.NodeStatus
	r.d.IPVSStatus(&after)
	if a := after.Ipvs[0]; a.Stats.Connections < s.Stats.Connections || a.Destinations[0].Weight != 5 || a.Scheduler != "wrr" {
		t.Errorf("after in-place update: %v", a)
	}
}

// TestKernelIPVSAddInBatches: KernelIPVS.Add, which the reconciler uses to
// add many entries (the recording rigs above go one call at a time), makes
// the same table as one call each, and answers for each entry of a write
// longer than one batch.
func TestKernelIPVSAddInBatches(t *testing.T) {
	k, _ := kernelIPVS(t)
	d, err := New(Options{Mode: ModeIPVS, Logger: quietLogger(), IPVS: k,
		Addresses: kernelfake.NewAddresses(), Announcer: &kernelfake.Announcer{}, Links: kernelfake.NewLinks()})
	if err != nil {
		t.Fatal(err)
	}
	d.SetConfig(everyKind())
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	eq(t, "kernel table", kernelTable(t, k), everyKindTable)

	svc := func(vip string) *ipvs.Service {
		s, err := ipvsService(&shoalv1.VirtualService{Vip: addr(vip), Port: 80, Scheduler: "wlc"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	dst := func(a string) *ipvs.Destination {
		return &ipvs.Destination{Address: net.ParseIP(a), Port: 80, Weight: 1, ConnectionFlags: ipvs.ConnectionFlagMasq, AddressFamily: syscall.AF_INET}
	}
	existing := d.want.services["tcp/192.0.2.1:80"].svc
	ghost, fresh := svc("192.0.2.99"), svc("192.0.2.100")
	entries := []IPVSEntry{{Service: existing}, {Service: ghost, Dest: dst("10.0.0.1")}, {Service: fresh}}
	for i := range 2 * maxBatch {
		entries = append(entries, IPVSEntry{Service: fresh, Dest: dst(fmt.Sprintf("10.1.%d.%d", i/250, i%250+1))})
	}
	errs := k.Add(entries)
	if !errors.Is(errs[0], syscall.EEXIST) || !errors.Is(errs[1], syscall.ESRCH) {
		t.Errorf("existing service: %v; destination of a missing service: %v", errs[0], errs[1])
	}
	for i, err := range errs[2:] {
		if err != nil {
			t.Errorf("entry %d: %v", i+2, err)
		}
	}
	ds, err := k.GetDestinations(fresh)
	if err != nil || len(ds) != 2*maxBatch {
		t.Errorf("the new service has %d destinations (%v), want %d", len(ds), err, 2*maxBatch)
	}
}
