package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/shoal-lb/shoal/e2e/harness"
	"github.com/shoal-lb/shoal/e2e/netlab"
)

// The BGP lab's addresses: the VIP announced by the routers, and the
// client's network behind the upstream router.
var (
	bgpVIP       = netip.MustParseAddr("198.51.100.10")
	bgpClientNet = netip.MustParsePrefix("10.99.0.0/24")
	bgpClientGW  = netip.MustParseAddr("10.99.0.1")
	bgpClient    = netip.MustParseAddr("10.99.0.2")
)

// TestNetnsBGP runs three real lvsd in bgp mode (dataplane vip: the host
// kernel has no IPVS, each router answers for the VIP itself) behind BIRD 2
// as the upstream router, which installs the VIP as one ECMP route
// (merge paths, fib_multipath_hash_policy=1) in its kernel, and a client
// behind BIRD. It checks and times what BIRD's FIB shows as routers join,
// are partitioned from the Raft majority, crash (the hold time), come back
// and stop, and that the client's flows spread over every router.
func TestNetnsBGP(t *testing.T) {
	netlab.SkipUnlessRoot(t)
	if _, err := exec.LookPath("bird"); err != nil {
		t.Skip("needs BIRD 2 (Debian bird2) as the upstream router")
	}
	lvsd, lvsctl := harness.Build(t, "cmd/lvsd"), harness.Build(t, "cmd/lvsctl")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	lab, err := netlab.New(netlab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	dir := labDir(t, lab)
	up := lab.Client // the upstream router: BIRD, and lvsctl's namespace
	cl := newBGPClient(t, lab, up)
	birdLog := startBIRD(t, lab, up, dir)

	for _, r := range lab.Routers {
		resp, err := r.Serve(r.Name, "0.0.0.0:80")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resp.Close() })
		// Replies to the client go back through the upstream router.
		if out, err := exec.Command("ip", "-n", r.NS, "route", "add", bgpClientNet.String(), "via", up.Addr.String()).CombinedOutput(); err != nil {
			t.Fatalf("route in %s: %v: %s", r.NS, err, out)
		}
	}
	sh := &netlab.Shoal{Lab: lab, Lvsd: lvsd, Lvsctl: lvsctl, Dir: dir}
	// Registered first, so it runs after the routers' logs.
	t.Cleanup(func() {
		if b, err := os.ReadFile(birdLog); err == nil && t.Failed() {
			t.Logf("--- bird.log (tail)\n%s", tail(string(b), 30))
		}
	})
	stopWithLogs(t, sh)
	r1, r2, r3 := lab.Routers[0], lab.Routers[1], lab.Routers[2]
	want := func(rs ...*netlab.Node) string { return netlab.Names(rs) }
	// waitRoute waits until BIRD's FIB sends the VIP to exactly rs and
	// returns how long that took since from.
	waitRoute := func(what string, from time.Time, rs ...*netlab.Node) time.Duration {
		t.Helper()
		w := want(rs...)
		var got string
		for {
			got = ecmpNextHops(t, lab, up)
			if got == w {
				d := time.Since(from)
				t.Logf("%-40s FIB next hops [%s] after %v", what+":", got, d.Round(time.Millisecond))
				return d
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: FIB next hops [%s], want [%s]", what, got, w)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// 1. Routers join: nothing is announced without a majority and a
	// config; two routers form one, and the config makes both announce.
	for _, r := range []*netlab.Node{r1, r2} {
		if err := sh.Start(r); err != nil {
			t.Fatal(err)
		}
	}
	cfgFile := filepath.Join(dir, "bgp.yaml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(`global:
  announce: bgp
  bgp:
    local_asn: 65001
    hold_time: 3s
    peers:
    - address: %s
      asn: 65000
services:
- name: web
  vip: {address: %s}
  port: 80
  health_check: {kind: none}
`, up.Addr, bgpVIP)), 0o644); err != nil {
		t.Fatal(err)
	}
	applied := time.Now()
	if out, err := sh.CtlRetry(ctx, "config", "apply", "-f", cfgFile); err != nil {
		t.Fatalf("lvsctl config apply: %v: %s", err, out)
	}
	waitRoute("r1, r2 up, config applied", applied, r1, r2)
	started := time.Now()
	if err := sh.Start(r3); err != nil {
		t.Fatal(err)
	}
	waitRoute("r3 joins", started, r1, r2, r3)

	if m, err := sh.Metrics(ctx, r1); err != nil {
		t.Error(err)
	} else {
		for _, want := range []string{
			fmt.Sprintf(`shoal_bgp_session_established{asn="65000",peer="%s",state="established"} 1`, up.Addr),
			fmt.Sprintf(`shoal_bgp_announced{prefix="%s/32"} 1`, bgpVIP),
		} {
			if !strings.Contains(m, want) {
				t.Errorf("r1 /metrics lacks %s", want)
			}
		}
	}

	// 2. Flows from many client ports spread over every router.
	split := cl.split(t, 300)
	t.Logf("300 connections from distinct client ports: %v", split)
	for _, r := range lab.Routers {
		if split[r.Name] == 0 {
			t.Errorf("router %s carried no flow: %v", r.Name, split)
		}
	}

	// 3. The leader, drained, withdraws its route and hands leadership
	// away (what l2 mode needs of a drain); lvsctl waits until it has.
	// Undrain brings the route back.
	// The leader, waiting out an election (a loaded host may have one).
	leader := func() string {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			out, err := sh.CtlRetry(ctx, "cluster", "status", "-o", "json")
			var cs struct {
				LeaderID string `json:"leader_id"`
			}
			if err != nil || json.Unmarshal([]byte(out), &cs) != nil {
				t.Fatalf("lvsctl cluster status: %v: %s", err, out)
			}
			if cs.LeaderID != "" || time.Now().After(deadline) {
				return cs.LeaderID
			}
		}
	}
	dr := lab.Router(leader())
	if dr == nil {
		t.Fatal("no leader")
	}
	var rest []*netlab.Node
	for _, r := range lab.Routers {
		if r != dr {
			rest = append(rest, r)
		}
	}
	drained := time.Now()
	out, err := sh.CtlRetry(ctx, "node", "drain", dr.Name, "--timeout", "20s")
	if err != nil || !strings.Contains(out, "node "+dr.Name+" is drained") {
		t.Fatalf("lvsctl node drain %s: %v: %s", dr.Name, err, out)
	}
	t.Logf("lvsctl node drain %s (the leader) returned after %v", dr.Name, time.Since(drained).Round(time.Millisecond))
	waitRoute("leader "+dr.Name+" drained", drained, rest...)
	for l := leader(); l == dr.Name || l == ""; l = leader() {
		if ctx.Err() != nil {
			t.Fatalf("drained %s still leads", dr.Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("leadership left the drained %s after %v", dr.Name, time.Since(drained).Round(time.Millisecond))
	if st, err := sh.Ctl(ctx, dr, "status"); err != nil || !strings.Contains(st, "withdrawn: drained") || !strings.Contains(st, "established") {
		t.Errorf("lvsctl status on %s does not say it is drained with its session up: %v\n%s", dr.Name, err, st)
	}
	if m, err := sh.Metrics(ctx, dr); err != nil || !strings.Contains(m, `shoal_bgp_withdrawn{reason="drained"} 1`) || !strings.Contains(m, fmt.Sprintf(`shoal_bgp_announced{prefix="%s/32"} 0`, bgpVIP)) {
		t.Errorf("%s /metrics does not show the drain (%v)", dr.Name, err)
	}
	undrained := time.Now()
	if out, err := sh.CtlRetry(ctx, "node", "undrain", dr.Name); err != nil {
		t.Fatalf("lvsctl node undrain %s: %v: %s", dr.Name, err, out)
	}
	waitRoute(dr.Name+" undrained", undrained, r1, r2, r3)

	// 4. Partitioned from the majority, r3 withdraws while its BGP session
	// to the upstream stays up; healed, it announces again.
	if netlab.NftInstalled() {
		cut := time.Now()
		if err := r3.Drop([]netip.Addr{r1.Addr, r2.Addr}, []netip.Addr{r1.Addr, r2.Addr}); err != nil {
			t.Fatal(err)
		}
		waitRoute("r3 partitioned from r1, r2", cut, r1, r2)
		healed := time.Now()
		if err := r3.ClearDrops(); err != nil {
			t.Fatal(err)
		}
		waitRoute("partition healed", healed, r1, r2, r3)
	} else {
		t.Log("nft not installed: partition step skipped")
	}

	// 5. A router that dies without a word (its link cut: no FIN, no
	// NOTIFICATION) loses its route with the hold time (3s, so 2-3s after the
	// last keepalive of 1s); a daemon that
	// crashes on a live kernel loses it at once, as the kernel closes the
	// session's socket.
	cut := time.Now()
	if err := r3.Unplug(); err != nil {
		t.Fatal(err)
	}
	if d := waitRoute("r3's link cut (hold time 3s)", cut, r1, r2); d < 1500*time.Millisecond || d > 5*time.Second {
		t.Errorf("route of a silent router left after %v, hold time is 3s", d)
	}
	plugged := time.Now()
	if err := r3.Plug(); err != nil {
		t.Fatal(err)
	}
	waitRoute("r3's link back", plugged, r1, r2, r3)
	killed := time.Now()
	sh.Kill(r3)
	if d := waitRoute("r3's lvsd killed (SIGKILL)", killed, r1, r2); d > 5*time.Second {
		t.Errorf("route of a dead router stayed %v, hold time is 3s", d)
	}
	restarted := time.Now()
	if err := sh.Start(r3); err != nil {
		t.Fatal(err)
	}
	waitRoute("r3 restarted", restarted, r1, r2, r3)

	// 6. SIGTERM withdraws before exit: the route leaves at once.
	stopped := time.Now()
	if err := sh.Process(r3).Stop(10 * time.Second); err != nil {
		t.Logf("lvsd on r3 exited: %v", err)
	}
	if d := waitRoute("r3 stopped (SIGTERM)", stopped, r1, r2); d > 2*time.Second {
		t.Errorf("a stopping router's route stayed %v", d)
	}
	split = cl.split(t, 100)
	if split["r3"] != 0 || split["r1"] == 0 || split["r2"] == 0 || split["error"] != 0 {
		t.Errorf("after r3 stopped: %v", split)
	}
}

// startBIRD runs BIRD 2 in n with one eBGP session per router and the
// kernel protocol merging equal routes into one multipath route.
func startBIRD(t *testing.T, lab *netlab.Lab, n *netlab.Node, dir string) string {
	t.Helper()
	for k, v := range map[string]string{"net.ipv4.ip_forward": "1", "net.ipv4.fib_multipath_hash_policy": "1"} {
		if err := n.Sysctl(k, v); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "router id %s;\nlog \"%s\" all;\nprotocol device { scan time 1; }\n", n.Addr, filepath.Join(dir, "bird.log"))
	b.WriteString("protocol kernel { ipv4 { import none; export all; }; merge paths on; }\n")
	for _, r := range lab.Routers {
		fmt.Fprintf(&b, `protocol bgp %s {
  local %s as 65000;
  neighbor %s as 65001;
  hold time 3; keepalive time 1;
  connect retry time 1; connect delay time 1; error wait time 1, 2;
  ipv4 { import all; export none; };
}
`, r.Name, n.Addr, r.Addr)
	}
	conf := filepath.Join(dir, "bird.conf")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "bird.out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = out.Close() })
	p, err := n.Start(out, "bird", "-f", "-c", conf, "-s", filepath.Join(dir, "bird.ctl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(2 * time.Second) })
	return filepath.Join(dir, "bird.log")
}

// ecmpNextHops lists the routers BIRD's kernel route to the VIP points at,
// by name, as netlab.Names does ("" without a route).
func ecmpNextHops(t *testing.T, lab *netlab.Lab, n *netlab.Node) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", n.NS, "-j", "route", "show", bgpVIP.String()+"/32").Output()
	if err != nil {
		t.Fatalf("ip route in %s: %v", n.NS, err)
	}
	var routes []struct {
		Gateway  string `json:"gateway"`
		Nexthops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		t.Fatalf("ip -j route: %v: %s", err, out)
	}
	var hops []*netlab.Node
	add := func(gw string) {
		for _, r := range lab.Routers {
			if r.Addr.String() == gw {
				hops = append(hops, r)
			}
		}
	}
	for _, r := range routes {
		add(r.Gateway)
		for _, h := range r.Nexthops {
			add(h.Gateway)
		}
	}
	slices.SortFunc(hops, func(a, b *netlab.Node) int { return strings.Compare(a.Name, b.Name) })
	return netlab.Names(hops)
}

// bgpClientNS is a namespace behind the upstream router, so that its flows
// cross the upstream's ECMP route as a site's clients' would.
type bgpClientNS struct {
	name string
	ns   netns.NsHandle
}

func newBGPClient(t *testing.T, lab *netlab.Lab, up *netlab.Node) *bgpClientNS {
	t.Helper()
	c := &bgpClientNS{name: lab.Prefix + "-cl"}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", c.name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", c.name).Run() })
	run("link", "add", "cl0", "netns", up.NS, "type", "veth", "peer", "name", "eth0", "netns", c.name)
	run("-n", up.NS, "addr", "add", netip.PrefixFrom(bgpClientGW, 24).String(), "dev", "cl0")
	run("-n", up.NS, "link", "set", "cl0", "up")
	run("-n", c.name, "addr", "add", netip.PrefixFrom(bgpClient, 24).String(), "dev", "eth0")
	run("-n", c.name, "link", "set", "lo", "up")
	run("-n", c.name, "link", "set", "eth0", "up")
	run("-n", c.name, "route", "add", "default", "via", bgpClientGW.String())
	h, err := netns.GetFromName(c.name)
	if err != nil {
		t.Fatal(err)
	}
	c.ns = h
	t.Cleanup(func() { _ = h.Close() })
	return c
}

// split opens n connections to the VIP, each from a new source port, and
// counts which router answered each ("error" for failures).
func (c *bgpClientNS) split(t *testing.T, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	errc := make(chan error, 1)
	go func() {
		// The thread goes back to its namespace and is unlocked after:
		// a thread that ends kills the lvsd it may have forked earlier
		// (netlab starts them with Pdeathsig), as netlab.Node.Do knows.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(c.ns); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		for range n {
			got[askRouter()]++
		}
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return got
}

func askRouter() string {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.Dial("tcp", netip.AddrPortFrom(bgpVIP, 80).String())
	if err != nil {
		return "error"
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
	br := bufio.NewReader(conn)
	last := "error"
	for {
		line, err := br.ReadString('\n')
		if s := strings.TrimSpace(line); s != "" {
			last = s
		}
		if err != nil {
			return last
		}
	}
}
