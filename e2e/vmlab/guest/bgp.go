package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"google.golang.org/protobuf/types/known/durationpb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// bgpVIP is the active-active scenario's VIP: every director holds it on lo
// and the real servers hold it on lo for direct routing.
const bgpVIP = "10.0.1.40"

// bgpLabConfig is labConfig with a bgp-mode echo service over both real
// servers (mh and dr by default). The BGP peer is the client's address,
// where nobody listens: this scenario stands in for the upstream router
// itself (a static ECMP route in the client); the BGP side is proven with
// BIRD in e2e/bgp_netns_test.go.
func bgpLabConfig() *shoalv1.Config {
	c := labConfig()
	c.Global.Bgp = &shoalv1.Bgp{LocalAsn: 65001, HoldTime: durationpb.New(3 * time.Second),
		Peers: []*shoalv1.BgpPeer{{Address: clientIP, Asn: 65000}}}
	check := labConfig().Services[0].HealthCheck
	check.Kind = "tcp"
	c.Services = append(c.Services, &shoalv1.VirtualService{
		Name: "echo-bgp", Announce: "bgp", Vip: &shoalv1.Address{Address: bgpVIP}, Port: echoPort, HealthCheck: check,
		RealServers: []*shoalv1.RealServer{{Address: "10.0.1.11", Name: "rs1"}, {Address: "10.0.1.12", Name: "rs2"}},
	})
	return c
}

// destOrder is the kernel's destination list of the bgp service in d, in
// list order (what mh builds its table from).
func destOrder(m *machine) ([]string, error) {
	h, err := ipvs.New(m.nsPath())
	if err != nil {
		return nil, err
	}
	defer h.Close()
	ds, err := h.GetDestinations(bgpService())
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range ds {
		out = append(out, d.Address.String())
	}
	return out, nil
}

func bgpService() *ipvs.Service {
	return &ipvs.Service{Address: net.ParseIP(bgpVIP), Protocol: syscall.IPPROTO_TCP, Port: echoPort, AddressFamily: syscall.AF_INET}
}

// clientRoute points the client's route to the VIP at the given directors,
// one ECMP route (what the upstream router does with their BGP routes).
func (r *run) clientRoute(ds []*director) error {
	dst := &net.IPNet{IP: net.ParseIP(bgpVIP).To4(), Mask: net.CIDRMask(32, 32)}
	link, err := r.lab.client.nl.LinkByName("eth0")
	if err != nil {
		return err
	}
	rt := &netlink.Route{Dst: dst}
	for _, d := range ds {
		rt.MultiPath = append(rt.MultiPath, &netlink.NexthopInfo{LinkIndex: link.Attrs().Index, Gw: net.ParseIP(d.out)})
	}
	return r.lab.client.nl.RouteReplace(rt)
}

// activeAgainst counts the established connections each director's IPVS
// has for the bgp service.
func activeAgainst(ds []*director) (map[string]int, error) {
	out := map[string]int{}
	for _, d := range ds {
		h, err := ipvs.New(d.nsPath())
		if err != nil {
			return nil, err
		}
		dests, err := h.GetDestinations(bgpService())
		h.Close()
		if err != nil {
			return nil, err
		}
		for _, x := range dests {
			out[d.name] += x.ActiveConnections
		}
	}
	return out, nil
}

// activeActive: every director forwards a share of the flows of a bgp-mode
// DR service; a director whose destination list was built in another order
// is put back in the common order; and when one director dies, the flows it
// carried go on through the others to the same real servers while the
// others' flows carry on undisturbed.
func activeActive(r *run) error {
	for _, rs := range r.lab.servers {
		if r.echod[rs.name] == nil {
			cmd := exec.Command("/init", "echod", rs.name)
			if err := rs.start(cmd); err != nil {
				return fmt.Errorf("echod on %s: %w", rs.name, err)
			}
			r.echod[rs.name] = cmd
		}
		lo, err := rs.nl.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := rs.nl.AddrReplace(lo, mustAddr(bgpVIP+"/32")); err != nil {
			return fmt.Errorf("%s: bgp VIP on lo: %w", rs.name, err)
		}
	}
	if _, err := r.cluster.apply(r.ctx, bgpLabConfig()); err != nil {
		return err
	}
	ds := r.cluster.live()
	if len(ds) != 3 {
		return fmt.Errorf("%d live directors, want 3", len(ds))
	}
	defer func() {
		// Leave the lab as found: the cables, the route, the config, and
		// the sysctls bgp mode set (after the config that set them left).
		for _, d := range ds {
			d.setLinks(true)
		}
		r.lab.client.nl.RouteDel(&netlink.Route{Dst: &net.IPNet{IP: net.ParseIP(bgpVIP).To4(), Mask: net.CIDRMask(32, 32)}})
		r.cluster.apply(r.ctx, labConfig())
		for _, d := range ds {
			d.sysctls(map[string]string{"net/ipv4/vs/sloppy_tcp": "0", "net/ipv4/vs/sloppy_sctp": "0"})
		}
	}()
	want := []string{"10.0.1.12", "10.0.1.11"} // descending: the order shoal keeps
	if err := eventually(r.ctx, 60*time.Second, func() error {
		for _, d := range ds {
			t, err := readTable(d.machine)
			if err != nil {
				return err
			}
			key := "tcp " + bgpVIP + ":7"
			if t.scheduler(key) != "mh" {
				return fmt.Errorf("%s: %s scheduler %q, want mh (%v)", d.name, key, t.scheduler(key), t[key])
			}
			if got, err := destOrder(d.machine); err != nil || !slices.Equal(got, want) {
				return fmt.Errorf("%s: destinations %v (%v), want %v", d.name, got, err, want)
			}
			if ok, err := d.holdsVIP(bgpVIP); err != nil || !ok {
				return fmt.Errorf("%s does not hold %s (%v)", d.name, bgpVIP, err)
			}
			var sloppy []byte
			if err := d.do(func() (err error) { sloppy, err = os.ReadFile("/proc/sys/net/ipv4/vs/sloppy_tcp"); return err }); err != nil || strings.TrimSpace(string(sloppy)) != "1" {
				return fmt.Errorf("%s: sloppy_tcp %q (%v)", d.name, sloppy, err)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	h, err := ipvs.New(ds[0].nsPath())
	if err != nil {
		return err
	}
	svc, err := h.GetService(bgpService())
	if err != nil {
		h.Close()
		return err
	}
	rep.info("active-active", "every director: mh with flags %#x, destinations %v, sloppy_tcp 1, VIP on lo", svc.Flags&^0x2, want)

	// Another history on d1: rs1 taken out and put back goes to the head
	// of the kernel's list, which would give d1 another Maglev table.
	rs1 := &ipvs.Destination{Address: net.ParseIP("10.0.1.11"), Port: echoPort, Weight: 1, ConnectionFlags: ipvs.ConnectionFlagDirectRoute, AddressFamily: syscall.AF_INET}
	if err := h.DelDestination(svc, rs1); err != nil {
		h.Close()
		return fmt.Errorf("perturb d1: %w", err)
	}
	if err := h.NewDestination(svc, rs1); err != nil {
		h.Close()
		return fmt.Errorf("perturb d1: %w", err)
	}
	h.Close()
	perturbed, _ := destOrder(ds[0].machine)
	start := time.Now()
	if err := eventually(r.ctx, 60*time.Second, func() error {
		if got, err := destOrder(ds[0].machine); err != nil || !slices.Equal(got, want) {
			return fmt.Errorf("d1 destinations %v (%v), want %v", got, err, want)
		}
		return nil
	}); err != nil {
		return err
	}
	rep.info("active-active", "d1's list made %v by hand; back to %v %.1fs later (the next resync)", perturbed, want, time.Since(start).Seconds())

	// The client's flows spread over the three directors by ECMP.
	if err := r.lab.client.sysctls(map[string]string{"net/ipv4/fib_multipath_hash_policy": "1"}); err != nil {
		return err
	}
	if err := r.clientRoute(ds); err != nil {
		return err
	}
	const n = 30
	flows, err := startFlows(r.ctx, r.lab.client, "conns", bgpVIP+":7", n)
	if err != nil {
		return err
	}
	defer flows.close()
	split, err := activeAgainst(ds)
	if err != nil {
		return err
	}
	servers := map[string]int{}
	for _, o := range flows.opened() {
		servers[o.server]++
	}
	rep.info("active-active", "%d connections: by director %s; by real server %s", n, fmtCounts(split), fmtCounts(servers))
	for _, d := range ds {
		if split[d.name] == 0 {
			return fmt.Errorf("director %s carries no connection: %s", d.name, fmtCounts(split))
		}
	}
	onVictim, err := clientPorts(ds[2])
	if err != nil {
		return err
	}

	// d3 dies: its cables are pulled, and the upstream drops its next hop
	// (as BIRD does after the hold time).
	if err := flows.doMark(r.ctx); err != nil {
		return err
	}
	cut := time.Now()
	if err := ds[2].setLinks(false); err != nil {
		return err
	}
	if err := r.clientRoute(ds[:2]); err != nil {
		return err
	}
	var rep1 []flowReport
	if err := eventually(r.ctx, 60*time.Second, func() error {
		rep1, err = flows.report(r.ctx)
		if err != nil {
			return permanent{err}
		}
		for i, f := range rep1 {
			if f.state != "ok" {
				return permanent{fmt.Errorf("flow %d %s: %s", i, f.state, f.why)}
			}
			if f.sinceMark < 20 {
				return fmt.Errorf("flow %d: %d echoes since the cut", i, f.sinceMark)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	moved := 0
	for _, o := range flows.opened() {
		if onVictim["TCP "+fmt.Sprint(o.port)] {
			moved++
		}
	}
	// Echoes since the cut, per group: a flow that never paused has about
	// one per 20 ms interval (and its round trip).
	elapsed := time.Since(cut)
	minMoved, minStayed := -1, -1
	for _, o := range flows.opened() {
		if o.flow < 0 || o.flow >= len(rep1) {
			continue
		}
		e := rep1[o.flow].sinceMark
		if onVictim["TCP "+fmt.Sprint(o.port)] {
			if minMoved < 0 || e < minMoved {
				minMoved = e
			}
		} else if minStayed < 0 || e < minStayed {
			minStayed = e
		}
	}
	rep.info("active-active", "d3 cut: %d of %d connections were on d3; all %d go on with the same real server; in the %.1fs since the cut the fewest echoes were %d on a moved connection and %d on one of the others (20 ms interval)",
		moved, n, n, elapsed.Seconds(), minMoved, minStayed)
	if moved == 0 {
		return fmt.Errorf("no connection was on d3: nothing moved")
	}
	return nil
}
