package dataplane

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/metrics"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/shoal-lb/shoal/dataplane/ipvssync"
	"github.com/shoal-lb/shoal/dataplane/kernelfake"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// scaleConfig is n direct-routing services of 10 real servers each, ten
// ports to a VIP (n/10 VIPs), as a large site might have them.
func scaleConfig(n int) *shoalv1.Config {
	c := &shoalv1.Config{Serial: 1}
	for i := 0; i < n; i++ {
		v := i / 10
		vs := &shoalv1.VirtualService{Name: fmt.Sprintf("s%05d", i), Vip: addr(fmt.Sprintf("10.%d.%d.1", 100+v/250, v%250)),
			Port: uint32(8000 + i%10), Protocol: "tcp", Scheduler: "wlc", Forward: "dr"}
		for j := 0; j < 10; j++ {
			vs.RealServers = append(vs.RealServers, rs(fmt.Sprintf("172.16.%d.%d", v%250, 10*(i%10)+j+1)))
		}
		c.Services = append(c.Services, vs)
	}
	return c
}

// connsVIP is the VIP of the UDP service whose connection table the scale
// test fills; it is the director's own address on eth0, the client's
// gateway.
const connsVIP = "10.98.255.254"

// fillConnTable creates about want IPVS connections on connsVIP:53/udp: a
// client namespace behind the director's eth0 sends one UDP datagram from
// each of want source address and port pairs (a raw socket, so no socket
// per flow), and IPVS makes a connection of each (300 s UDP timeout). It
// returns how many the kernel holds.
func fillConnTable(t *testing.T, h *netlink.Handle, director netns.NsHandle, want int) int {
	t.Helper()
	client := newNetNS(t)
	peer, err := h.LinkByName("peer0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetNsFd(peer, int(client)); err != nil {
		t.Fatal(err)
	}
	hc := nlHandle(t, client)
	linkUpIn(t, hc, "lo")
	p := linkUpIn(t, hc, "peer0")
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		h    *netlink.Handle
		l    netlink.Link
		addr string
	}{{h, eth0, connsVIP + "/16"}, {hc, p, "10.98.255.1/16"}} {
		pfx, _ := netlink.ParseAddr(a.addr)
		if err := a.h.AddrAdd(a.l, pfx); err != nil {
			t.Fatal(err)
		}
	}
	inNetNS(t, client, func() {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
		if err != nil {
			t.Error(err)
			return
		}
		defer syscall.Close(fd)
		dst := [4]byte{10, 98, 255, 254}
		pkt := make([]byte, 28)
		for i := range want {
			// IPv4 header (the kernel fills in the checksum, the length
			// and an id), then UDP without a checksum.
			pkt[0], pkt[8], pkt[9] = 0x45, 64, syscall.IPPROTO_UDP
			copy(pkt[12:16], []byte{10, 98, byte(i % 200), 1 + byte(i/200%200)})
			copy(pkt[16:20], dst[:])
			binary.BigEndian.PutUint16(pkt[20:], uint16(1024+i/40000))
			binary.BigEndian.PutUint16(pkt[22:], 53)
			binary.BigEndian.PutUint16(pkt[24:], 8)
			if err := syscall.Sendto(fd, pkt, 0, &syscall.SockaddrInet4{Addr: dst}); err != nil {
				t.Errorf("send datagram %d: %v", i, err)
				return
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	var have int
	inNetNS(t, director, func() {
		cs, err := ipvssync.ConnTable{}.Conns()
		if err != nil {
			t.Error(err)
		}
		have = len(cs)
	})
	if have < want*9/10 {
		t.Fatalf("the kernel holds %d IPVS connections after %d datagrams", have, want)
	}
	return have
}

// oneByOne is an IPVS without Add: one netlink round trip per entry.
type oneByOne struct{ IPVS }

// mobyListing lists the table through moby/ipvs, as KernelIPVS did before
// it had a dump of its own.
type mobyListing struct{ *KernelIPVS }

func (m mobyListing) GetServices() ([]*ipvs.Service, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.h.GetServices()
}

func (m mobyListing) GetDestinations(s *ipvs.Service) ([]*ipvs.Destination, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.h.GetDestinations(s)
}

// ipvsadmRules is scaleConfig as `ipvsadm -R` reads it.
func ipvsadmRules(c *shoalv1.Config) string {
	var b []byte
	for _, vs := range c.Services {
		b = fmt.Appendf(b, "-A -t %s:%d -s %s\n", vs.Vip.Address, vs.Port, vs.Scheduler)
		for _, r := range vs.RealServers {
			b = fmt.Appendf(b, "-a -t %s:%d -r %s:%d -g -w %d\n", vs.Vip.Address, vs.Port, r.Address, vs.Port, configuredWeight(r))
		}
	}
	return string(b)
}

func cpuTime() time.Duration {
	u, s := cpuSplit()
	return u + s
}

// cpuSplit is the process's CPU so far, in user space and in the kernel.
func cpuSplit() (user, sys time.Duration) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// gcCPU is the runtime's estimate of the CPU its garbage collector has
// used, as of the last collection.
func gcCPU() time.Duration {
	m := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(m)
	if m[0].Value.Kind() != metrics.KindFloat64 {
		return 0
	}
	return time.Duration(m[0].Value.Float64() * float64(time.Second))
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + " ms"
}

// TestScaleRealIPVS measures the reconciler against the running kernel's
// IPVS at the size SHOAL_IPVS_SCALE names (services × 10 real servers),
// beside ipvsadm doing the same in the same kernel: issue 22's VM-lab
// benchmark. Each figure is printed as "dataplane: scale ...". The VM lab's
// scale scenario runs it; elsewhere it skips.
func TestScaleRealIPVS(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SHOAL_IPVS_SCALE"))
	if n <= 0 {
		t.Skip("set SHOAL_IPVS_SCALE=<services> (the VM lab's scale scenario does)")
	}
	k, ns := kernelIPVS(t)
	c := scaleConfig(n)
	dests := 10 * n

	if path, err := exec.LookPath("ipvsadm"); err != nil {
		figure(t, "scale ipvsadm: not found, no baseline (%v)", err)
	} else {
		ipvsadmBaseline(t, path, c)
	}

	// shoal, logging at Info to a file as lvsd does.
	logf, err := os.Create(filepath.Join(t.TempDir(), "lvsd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	h := nlHandle(t, ns)
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0"}); err != nil {
		t.Fatal(err)
	}
	linkUpIn(t, h, "eth0")
	linkUpIn(t, h, "peer0")
	var d *Dataplane
	ann := &firstAnnouncement{}
	inNetNS(t, ns, func() {
		a, err := NewNetlinkAddresses()
		if err != nil {
			t.Error(err)
			return
		}
		if ann.Announcer, err = NewNetAnnouncer(); err != nil {
			t.Error(err)
			return
		}
		d, err = New(Options{Mode: ModeIPVS, NodeID: "vm", DefaultInterface: "eth0", Logger: slog.New(slog.NewTextHandler(logf, nil)),
			IPVS: k, Addresses: a, Announcer: ann, Links: kernelfake.NewLinks(), AddressLifetime: -1})
		if err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	// From empty, one netlink round trip per entry (as before KernelIPVS.Add)
	// in a namespace of its own, then in batches.
	{
		k1, _ := kernelIPVS(t)
		d1, err := New(Options{Mode: ModeIPVS, Logger: slog.New(slog.NewTextHandler(logf, nil)), IPVS: oneByOne{k1},
			Addresses: kernelfake.NewAddresses(), Announcer: &kernelfake.Announcer{}, Links: kernelfake.NewLinks()})
		if err != nil {
			t.Fatal(err)
		}
		d1.SetConfig(c)
		t0 := time.Now()
		if err := d1.Reconcile(); err != nil {
			t.Fatal(err)
		}
		took := time.Since(t0)
		countTable(t, k1, n, dests)
		figure(t, "scale shoal from empty, one call per entry (before): %d services, %d destinations in %s", n, dests, ms(took))
		emptyAll(t, d1)
	}
	d.SetConfig(c)
	t0 := time.Now()
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	fromEmpty := time.Since(t0)
	countTable(t, k, n, dests)
	figure(t, "scale shoal from empty, batches of %d (after): %d services, %d destinations in %s", maxBatch, n, dests, ms(fromEmpty))

	// The whole comparison with nothing to change, wall time and CPU: the
	// table listed through moby/ipvs as before, then by KernelIPVS's own
	// dump.
	idle := func(what string) {
		var resyncs, cpus, gcs []time.Duration
		for range 3 {
			g0, c0, t0 := gcCPU(), cpuTime(), time.Now()
			if err := d.Reconcile(); err != nil {
				t.Fatal(err)
			}
			resyncs, cpus = append(resyncs, time.Since(t0)), append(cpus, cpuTime()-c0)
			gcs = append(gcs, gcCPU()-g0)
		}
		cpu := median(cpus)
		figure(t, "scale shoal idle resync, %s: %s wall, %s CPU (median of 3; garbage collector about %s); at the %v period %.2f%% of a core",
			what, ms(median(resyncs)), ms(cpu), ms(median(gcs)), DefaultResync, 100*cpu.Seconds()/DefaultResync.Seconds())
	}
	// The listing alone, without the comparison.
	list := func(k IPVS) time.Duration {
		c0 := cpuTime()
		countTable(t, k, n, dests)
		return cpuTime() - c0
	}
	figure(t, "scale listing the table alone, CPU: moby/ipvs %s, own dump %s", ms(list(mobyListing{k})), ms(list(k)))
	d.o.IPVS = mobyListing{k}
	idle("listed through moby/ipvs (before)")
	d.o.IPVS = k
	idle("own dump (after)")
	// What Run does every period: one part of the services, each read
	// alone with its destinations, and a few others looked for, in
	// slices between which a change may go.
	periods(t, d, k, "")
	calibrate(t)

	// One weight change: as every change was applied before (a whole
	// comparison), and as Run applies it now (the difference).
	vs := c.Services[n/2]
	key := fmt.Sprintf("tcp/%s:%d", vs.Vip.Address, vs.Port)
	weight := uint32(2)
	change := func(how compare) time.Duration {
		weight++
		c = withService(c, n/2, func(vs *shoalv1.VirtualService) { vs.RealServers[3].Weight = proto.Uint32(weight) })
		d.SetConfig(c)
		t0 := time.Now()
		if err := d.reconcile(how); err != nil {
			t.Fatal(err)
		}
		took := time.Since(t0)
		svc := d.want.services[key].svc
		ds, err := k.GetDestinations(svc)
		if err != nil {
			t.Fatal(err)
		}
		got := -1
		for _, x := range ds {
			if destKey(x) == fmt.Sprintf("%s:%d", vs.RealServers[3].Address, vs.Port) {
				got = x.Weight
			}
		}
		if got != int(weight) {
			t.Fatalf("weight in the kernel %d, want %d", got, weight)
		}
		return took
	}
	var whole, diff []time.Duration
	for range 3 {
		whole = append(whole, change(compareWhole))
	}
	for range 11 {
		diff = append(diff, change(compareChange))
	}
	figure(t, "scale shoal weight change, whole comparison (before): %s (median of 3)", ms(median(whole)))
	figure(t, "scale shoal weight change, difference (after): %s (median of 11)", ms(median(diff)))

	// The resync with a large connection table: 10 connections a service
	// (100,000 at 10,000 services) on one UDP service of the config.
	conns := 10 * n
	c = &shoalv1.Config{Serial: c.Serial + 1, Services: slices.Clone(c.Services)}
	c.Services = append(c.Services, &shoalv1.VirtualService{Name: "conns", Vip: addr(connsVIP), Port: 53, Protocol: "udp",
		Scheduler: "rr", Forward: "dr", RealServers: []*shoalv1.RealServer{rs("172.31.0.1")}})
	c.Serial++
	d.SetConfig(c)
	if err := d.reconcile(compareChange); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	have := fillConnTable(t, h, ns, conns)
	fill := time.Since(t0)
	var resyncs, cpus []time.Duration
	for range 3 {
		c0, t0 := cpuTime(), time.Now()
		if err := d.Reconcile(); err != nil {
			t.Fatal(err)
		}
		resyncs, cpus = append(resyncs, time.Since(t0)), append(cpus, cpuTime()-c0)
	}
	figure(t, "scale shoal idle resync with %d IPVS connections: %s wall, %s CPU (median of 3; the table took %s to fill)",
		have, ms(median(resyncs)), ms(median(cpus)), fill.Round(time.Second))
	c = &shoalv1.Config{Serial: c.Serial + 1, Services: c.Services[:n]}
	d.SetConfig(c)
	if err := d.reconcile(compareChange); err != nil {
		t.Fatal(err)
	}

	// A leader change: every VIP raised and announced, with a resync of
	// the whole table running at the same time, against a table of one
	// service.
	vips := n / 10
	ann.reset()
	t0 = time.Now()
	done := make(chan time.Duration)
	go func() {
		t0 := time.Now()
		d.Reconcile()
		done <- time.Since(t0)
	}()
	d.SetLeader(true)
	lead, first := time.Since(t0), ann.first().Sub(t0)
	held, _ := d.o.Addresses.ListAddresses("eth0")
	resync := <-done
	d.SetLeader(false)
	if len(held) < vips {
		t.Fatalf("%d addresses on eth0 while leading, want %d VIPs", len(held), vips)
	}
	d.SetConfig(scaleConfig(1))
	t0 = time.Now()
	if err := d.reconcile(compareChange); err != nil {
		t.Fatal(err)
	}
	figure(t, "scale shoal delete %d services (one call each): %s", n-1, ms(time.Since(t0)))
	t0 = time.Now()
	d.SetLeader(true)
	small := time.Since(t0)
	d.SetLeader(false)
	figure(t, "scale shoal leader change: %d VIPs held and announced in %s (%s a VIP; a resync of the whole table ran alongside, %s), the first announced after %s; 1 VIP: %s",
		vips, ms(lead), ms(lead/time.Duration(vips)), ms(resync), ms(first), ms(small))

	// The kernel finds a service in a hash of 256 chains keyed by the
	// last octet of its address, its protocol and its port
	// (ip_vs_svc_hashkey): every VIP of scaleConfig ends in .1, so its
	// services share about 10 chains of 1,000, and each read of one, each
	// listing of its destinations and each change walks one. The same
	// periods again on a table of the same size whose VIPs' last octets
	// differ, as addresses handed out in order do.
	spread := scaleConfig(n)
	for i, vs := range spread.Services {
		v := i / 10
		vs.Vip = addr(fmt.Sprintf("10.%d.%d.%d", 100+v/250, v%250, 1+v%250))
	}
	spread.Serial = c.Serial + 1
	d.SetConfig(spread)
	if err := d.reconcile(compareChange); err != nil {
		t.Fatal(err)
	}
	countTable(t, k, n, dests)
	periods(t, d, k, ", VIPs spread over the kernel's service hash")
	emptyAll(t, d)
}

// periods times what Run does each period, a part's services each read
// alone with their destinations and a few others looked for, in slices
// between which a change may go, for as many periods as there are parts,
// and prints where one of them spends its CPU.
func periods(t *testing.T, d *Dataplane, k *KernelIPVS, what string) {
	t.Helper()
	var sweeps, slice []time.Duration
	parts := int(d.sweepParts(&d.want))
	for range max(parts, 3) {
		c0, t0 := cpuTime(), time.Now()
		if err := d.sweep(func() bool {
			slice = append(slice, time.Since(t0))
			t0 = time.Now()
			return true
		}); err != nil {
			t.Fatal(err)
		}
		slice = append(slice, time.Since(t0))
		sweeps = append(sweeps, cpuTime()-c0)
	}
	cpu := median(sweeps)
	figure(t, "scale shoal idle resync%s, one part of %d (after, what Run does each period): %s CPU median, %s max of %d; at the %v period %.2f%% of a core; a change waits for at most one slice: %s median, %s max of %d",
		what, parts, ms(cpu), ms(slices.Max(sweeps)), len(sweeps), DefaultResync, 100*cpu.Seconds()/DefaultResync.Seconds(),
		ms(median(slice)), ms(slices.Max(slice)), len(slice))
	resyncBreakdown(t, d, k, what)
}

// emptyAll deletes every service d programmed, one call each, before the
// namespace goes: the kernel would flush the table in one go at namespace
// exit, which under emulation holds a CPU long enough for a soft-lockup
// report.
func emptyAll(t *testing.T, d *Dataplane) {
	t.Helper()
	d.SetConfig(&shoalv1.Config{Serial: 1 << 40})
	t0 := time.Now()
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	figure(t, "scale shoal delete every service (one call each): %s", ms(time.Since(t0)))
}

// ipvsadmBaseline times `ipvsadm -R` of c into an empty namespace, one
// `ipvsadm -e` on that table (the process's start included, as an operator
// runs it) and `ipvsadm -C`.
func ipvsadmBaseline(t *testing.T, path string, c *shoalv1.Config) {
	ns := newNetNS(t)
	linkUpIn(t, nlHandle(t, ns), "lo")
	rules := filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(rules, []byte(ipvsadmRules(c)), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(stdin string, args ...string) time.Duration {
		var took time.Duration
		inNetNS(t, ns, func() {
			cmd := exec.Command(path, args...)
			if stdin != "" {
				f, err := os.Open(stdin)
				if err != nil {
					t.Error(err)
					return
				}
				defer f.Close()
				cmd.Stdin = f
			}
			t0 := time.Now()
			out, err := cmd.CombinedOutput()
			took = time.Since(t0)
			if err != nil {
				t.Errorf("ipvsadm %v: %v: %s", args, err, out)
			}
		})
		if t.Failed() {
			t.FailNow()
		}
		return took
	}
	n := len(c.Services)
	restore := run(rules, "-R")
	var k *KernelIPVS
	inNetNS(t, ns, func() {
		var err error
		if k, err = NewKernelIPVS(); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	defer k.Close()
	countTable(t, k, n, 10*n)
	figure(t, "scale ipvsadm -R: %d services, %d destinations in %s", n, 10*n, ms(restore))
	vs := c.Services[n/2]
	var edits []time.Duration
	for w := range 11 {
		edits = append(edits, run("", "-e", "-t", fmt.Sprintf("%s:%d", vs.Vip.Address, vs.Port),
			"-r", fmt.Sprintf("%s:%d", vs.RealServers[3].Address, vs.Port), "-g", "-w", strconv.Itoa(w+2)))
	}
	figure(t, "scale ipvsadm -e: one weight in %s (median of 11, process start included)", ms(median(edits)))
	figure(t, "scale ipvsadm -C: %s", ms(run("", "-C")))
}

// countTable checks that the kernel holds services services and dests
// destinations.
func countTable(t *testing.T, k IPVS, services, dests int) {
	t.Helper()
	svcs, err := k.GetServices()
	if err != nil {
		t.Fatal(err)
	}
	nd := 0
	for _, s := range svcs {
		ds, err := k.GetDestinations(s)
		if err != nil {
			t.Fatal(err)
		}
		nd += len(ds)
	}
	if len(svcs) != services || nd != dests {
		t.Fatalf("kernel holds %d services, %d destinations; want %d, %d", len(svcs), nd, services, dests)
	}
}

// resyncBreakdown prints where one period of the idle resync spends its
// CPU, in user space and in the kernel: the part's services read alone,
// their destinations listed, and the period as Run does it, so that what
// the emulated CPU costs can be scaled by calibrate's figures.
func resyncBreakdown(t *testing.T, d *Dataplane, k *KernelIPVS, what string) {
	t.Helper()
	d.recMu.Lock()
	part, _ := d.sweepKeys(&d.want)
	d.recMu.Unlock()
	d.sweeps-- // the next period is the one this one looked at
	phase := func(each func(*ipvs.Service) error) (user, sys time.Duration) {
		u0, s0 := cpuSplit()
		for _, key := range part {
			if err := each(d.want.services[key].svc); err != nil {
				t.Fatal(err)
			}
		}
		u1, s1 := cpuSplit()
		return u1 - u0, s1 - s0
	}
	su, ss := phase(func(s *ipvs.Service) error { _, err := k.GetService(s); return err })
	du, dsys := phase(func(s *ipvs.Service) error { _, err := k.GetDestinations(s); return err })
	u0, s0 := cpuSplit()
	if err := d.sweep(nil); err != nil {
		t.Fatal(err)
	}
	u1, s1 := cpuSplit()
	figure(t, "scale shoal idle resync%s, where one period goes (%d services of the part): the services read alone %s user + %s system; their destinations listed %s + %s; the whole period %s + %s",
		what, len(part), ms(su), ms(ss), ms(du), ms(dsys), ms(u1-u0), ms(s1-s0))
}

// calibrate prints what two kinds of work cost this machine, to scale
// figures of the VM lab (emulated, no KVM) to the host's CPU: the Go side
// of an idle resync against the in-memory kernel (user space only), and a
// generic netlink round trip (CTRL_CMD_GETFAMILY, answered by every
// kernel, as IPVS's commands are: a request written, a message read).
// TestScaleCalibration prints the same on the host.
func calibrate(t *testing.T) {
	t.Helper()
	const n = 1000
	d, err := New(Options{Mode: ModeIPVS, Logger: quietLogger(), IPVS: kernelfake.NewIPVS(),
		Addresses: kernelfake.NewAddresses(), Announcer: &kernelfake.Announcer{}, Links: kernelfake.NewLinks()})
	if err != nil {
		t.Fatal(err)
	}
	d.SetConfig(scaleConfig(n))
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	var goCPU []time.Duration
	for range 5 {
		u0, s0 := cpuSplit()
		d.recMu.Lock()
		d.todo, d.sentinels = d.sweepKeys(&d.want)
		d.recMu.Unlock()
		if err := d.sweep(nil); err != nil {
			t.Fatal(err)
		}
		u1, s1 := cpuSplit()
		goCPU = append(goCPU, u1-u0+s1-s0)
	}

	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	req := genlGetFamily("nlctrl")
	buf := make([]byte, 8192)
	const trips = 20000
	u0, s0 := cpuSplit()
	for range trips {
		if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := unix.Recvfrom(fd, buf, 0); err != nil {
			t.Fatal(err)
		}
	}
	u1, s1 := cpuSplit()
	figure(t, "scale calibration: the Go side of a resync of %d services against the in-memory kernel %s CPU (median of 5, %.1f µs a service); a generic netlink round trip %.1f µs CPU (%.1f user + %.1f system, %d trips)",
		n, ms(median(goCPU)), float64(median(goCPU).Nanoseconds())/1e3/n,
		float64((u1-u0+s1-s0).Nanoseconds())/1e3/trips, float64((u1-u0).Nanoseconds())/1e3/trips, float64((s1-s0).Nanoseconds())/1e3/trips, trips)
}

// genlGetFamily is a CTRL_CMD_GETFAMILY request for the family name.
func genlGetFamily(name string) []byte {
	r := binary.NativeEndian.AppendUint32(nil, 0)
	r = binary.NativeEndian.AppendUint16(r, unix.GENL_ID_CTRL)
	r = binary.NativeEndian.AppendUint16(r, unix.NLM_F_REQUEST)
	r = binary.NativeEndian.AppendUint32(r, 1)
	r = binary.NativeEndian.AppendUint32(r, 0)
	r = append(r, unix.CTRL_CMD_GETFAMILY, 1, 0, 0)
	r = appendAttr(r, unix.CTRL_ATTR_FAMILY_NAME, append([]byte(name), 0))
	binary.NativeEndian.PutUint32(r, uint32(len(r)))
	return r
}

// TestScaleCalibration prints calibrate's figures for this machine, to set
// beside those TestScaleRealIPVS prints in the VM lab.
func TestScaleCalibration(t *testing.T) {
	if os.Getenv("SHOAL_SCALE_CALIBRATE") == "" {
		t.Skip("set SHOAL_SCALE_CALIBRATE=1 to print this machine's calibration figures")
	}
	calibrate(t)
}
