package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/shoal-lb/shoal/dataplane/ipvssync"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Connection sync on a real kernel. The scenarios share one set-up: echo
// servers on both real servers (TCP and UDP port 7), an echo service on the
// NAT VIP and one on the DR VIP (TCP), and a UDP echo service on the NAT
// VIP. The client keeps 50 connections busy through each TCP service, each
// sending a message every 20 ms and checking its echo, and 10 UDP flows;
// then the leader goes away and the figures say how many kept working.

const (
	syncFlows   = 50 // TCP connections per service
	syncUDP     = 10 // UDP flows
	syncIface   = "eth1"
	syncID      = 7
	clientHex   = "0A000164" // clientIP as /proc/net/ip_vs_conn prints it
	syncTimeout = 120 * time.Second
)

var (
	natEcho = net.JoinHostPort(natVIP, strconv.Itoa(echoPort))
	drEcho  = net.JoinHostPort(drVIP, strconv.Itoa(echoPort))
)

// syncKernel drives the kernel's sync daemons with dataplane/ipvssync
// directly, in a scratch namespace: start, list, refuse a second one,
// stop, and the sysctls and connection table it reads.
func syncKernel(r *run) error {
	m, err := newMachine("syncscratch")
	if err != nil {
		return err
	}
	defer m.ns.Close()
	// A veth pair inside the namespace: the daemons need a multicast
	// interface, the master one with an IPv4 address to send from.
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "s0"}, PeerName: "s1"}
	if err := m.nl.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth: %w", err)
	}
	for _, n := range []string{"s0", "s1"} {
		l, err := m.nl.LinkByName(n)
		if err != nil {
			return err
		}
		if n == "s0" {
			if err := m.nl.AddrAdd(l, mustAddr("192.0.2.1/24")); err != nil {
				return err
			}
		}
		if err := m.nl.LinkSetUp(l); err != nil {
			return err
		}
	}
	h, err := ipvssync.OpenAt(m.ns)
	if err != nil {
		return err
	}
	defer h.Close()
	backup := ipvssync.Daemon{State: ipvssync.Backup, Interface: "s0", SyncID: 7, MaxLen: 1400, Port: 8850, TTL: 2,
		Group: netip.MustParseAddr("239.1.2.3")}
	master := ipvssync.Daemon{State: ipvssync.Master, Interface: "s0", SyncID: 9}
	if err := h.StartDaemon(backup); err != nil {
		return err
	}
	if err := h.StartDaemon(master); err != nil {
		return err
	}
	ds, err := h.Daemons()
	if err != nil {
		return err
	}
	var got []string
	for _, d := range ds {
		got = append(got, d.String())
	}
	rep.info("sync-kernel", "kernel lists: %s", strings.Join(got, "; "))
	want := []string{
		"master on s0 syncid 9 group 224.0.0.81 port 8848 ttl 1 maxlen 1472",
		"backup on s0 syncid 7 group 239.1.2.3 port 8850 ttl 2 maxlen 1400",
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("kernel lists %q, want %q", got, want)
	}
	if err := h.StartDaemon(backup); !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("a second backup: %v, want EEXIST", err)
	}
	if err := h.StartDaemon(ipvssync.Daemon{State: ipvssync.Backup, Interface: "nope0"}); err == nil {
		return errors.New("a daemon on a missing interface started")
	}
	stop := time.Now()
	if err := h.StopDaemon(ipvssync.Master); err != nil {
		return err
	}
	if took := time.Since(stop); took > time.Second {
		// Once a stop went unanswered for the socket's whole minute.
		rep.info("sync-kernel", "stopping the master took %v", took.Round(time.Millisecond))
	}
	if err := h.StopDaemon(ipvssync.Master); !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping a stopped master: %v, want ESRCH", err)
	}
	if ds, err := h.Daemons(); err != nil || len(ds) != 1 || ds[0].State != ipvssync.Backup {
		return fmt.Errorf("after stopping the master: %v, %v", ds, err)
	}
	if err := h.StopDaemon(ipvssync.Backup); err != nil {
		return err
	}
	var thr string
	var conns []ipvssync.Conn
	err = m.do(func() error {
		var err error
		if thr, err = (ipvssync.Sysctls{}).Sysctl(ipvssync.SysctlThreshold); err != nil {
			return err
		}
		conns, err = ipvssync.ConnTable{}.Conns()
		return err
	})
	if err != nil {
		return err
	}
	if thr != "3 50" || len(conns) != 0 {
		return fmt.Errorf("scratch namespace: sync_threshold %q, %d connections", thr, len(conns))
	}
	return nil
}

// syncLabConfig is labConfig with the echo services and connection sync
// on or off; more adds an IPv6 DR echo service and a tunnel one.
func syncLabConfig(on, more bool) *shoalv1.Config {
	c := labConfig()
	check := func() *shoalv1.HealthCheck {
		h := labConfig().Services[0].HealthCheck
		h.Kind = "tcp"
		return h
	}
	c.Services = append(c.Services,
		&shoalv1.VirtualService{Name: "echo-nat", Vip: &shoalv1.Address{Address: natVIP, PrefixLength: 32}, Port: echoPort,
			Protocol: "tcp", Scheduler: "rr", Forward: "nat", HealthCheck: check(),
			RealServers: []*shoalv1.RealServer{{Address: "10.0.2.11", Name: "rs1"}, {Address: "10.0.2.12", Name: "rs2"}}},
		&shoalv1.VirtualService{Name: "echo-dr", Vip: &shoalv1.Address{Address: drVIP, PrefixLength: 32}, Port: echoPort,
			Protocol: "tcp", Scheduler: "rr", Forward: "dr", HealthCheck: check(),
			RealServers: []*shoalv1.RealServer{{Address: "10.0.1.11", Name: "rs1"}, {Address: "10.0.1.12", Name: "rs2"}}},
		&shoalv1.VirtualService{Name: "persist-nat", Vip: &shoalv1.Address{Address: natVIP, PrefixLength: 32}, Port: persistPort,
			Protocol: "tcp", Scheduler: "rr", Forward: "nat", PersistenceTimeout: 300, HealthCheck: check(),
			RealServers: []*shoalv1.RealServer{{Address: "10.0.2.11", Name: "rs1"}, {Address: "10.0.2.12", Name: "rs2"}}},
		&shoalv1.VirtualService{Name: "uecho-nat", Vip: &shoalv1.Address{Address: natVIP, PrefixLength: 32}, Port: echoPort,
			Protocol: "udp", Scheduler: "rr", Forward: "nat", HealthCheck: &shoalv1.HealthCheck{Kind: "none"},
			RealServers: []*shoalv1.RealServer{{Address: "10.0.2.11", Name: "rs1"}, {Address: "10.0.2.12", Name: "rs2"}}},
	)
	if more {
		c.Services = append(c.Services,
			&shoalv1.VirtualService{Name: "echo-dr6", Vip: &shoalv1.Address{Address: drVIP6, PrefixLength: 128}, Port: echoPort,
				Protocol: "tcp", Scheduler: "rr", Forward: "dr", HealthCheck: check(),
				RealServers: []*shoalv1.RealServer{{Address: outsideV6("10.0.1.11"), Name: "rs1"}, {Address: outsideV6("10.0.1.12"), Name: "rs2"}}},
			&shoalv1.VirtualService{Name: "echo-tun", Vip: &shoalv1.Address{Address: tunVIP, PrefixLength: 32}, Port: echoPort,
				Protocol: "tcp", Scheduler: "rr", Forward: "tun", HealthCheck: check(),
				RealServers: []*shoalv1.RealServer{{Address: "10.0.1.11", Name: "rs1"}, {Address: "10.0.1.12", Name: "rs2"}}},
		)
	}
	c.Global.ConnectionSync = &shoalv1.ConnectionSync{Enabled: on, Interface: syncIface, SyncId: syncID}
	return c
}

// echoLab starts the echo servers (once), applies syncLabConfig(on, more)
// and waits until every director's kernel has the echo services and, with
// sync on, runs a backup daemon, and the leader a master.
func (r *run) echoLab(on, more bool) error {
	for _, rs := range r.lab.servers {
		if r.echod[rs.name] != nil {
			continue
		}
		cmd := exec.Command("/init", "echod", rs.name)
		if err := rs.start(cmd); err != nil {
			return fmt.Errorf("echod on %s: %w", rs.name, err)
		}
		r.echod[rs.name] = cmd
	}
	if _, err := r.cluster.apply(r.ctx, syncLabConfig(on, more)); err != nil {
		return err
	}
	keys := map[string][2]string{
		"tcp 10.0.1.10:8": {"10.0.2.11:8", "10.0.2.12:8"},
		"tcp 10.0.1.10:7": {"10.0.2.11:7", "10.0.2.12:7"},
		"tcp 10.0.1.20:7": {"10.0.1.11:7", "10.0.1.12:7"},
		"udp 10.0.1.10:7": {"10.0.2.11:7", "10.0.2.12:7"},
	}
	if more {
		keys["tcp [2001:db8:1::20]:7"] = [2]string{"[2001:db8:1::11]:7", "[2001:db8:1::12]:7"}
		keys["tcp 10.0.1.30:7"] = [2]string{"10.0.1.11:7", "10.0.1.12:7"}
	}
	if err := r.waitKernels(90*time.Second, func(d *director, t table) error {
		for svc, ds := range keys {
			got := t.dests(svc)
			for _, a := range ds {
				if w := got[a]; !strings.HasSuffix(w, " w1") {
					return fmt.Errorf("%s kernel: %s has %v", d.name, svc, got)
				}
			}
		}
		return nil
	}); err != nil {
		return err
	}
	return r.waitSyncDaemons(on, nil, 60*time.Second)
}

// waitSyncDaemons waits until every live director (but skip) reports the
// daemons it must run: with sync on a backup everywhere and a master on
// the leader alone; with it off, none.
func (r *run) waitSyncDaemons(on bool, skip *director, timeout time.Duration) error {
	return eventually(r.ctx, timeout, func() error {
		for _, d := range r.cluster.live() {
			if d == skip {
				continue
			}
			st, err := d.status(r.ctx)
			if err != nil {
				return err
			}
			var states []string
			for _, sd := range st.GetSyncDaemons() {
				states = append(states, sd.GetState())
				if sd.GetInterface() != syncIface || sd.GetSyncId() != syncID {
					return fmt.Errorf("%s runs %v", d.name, sd)
				}
			}
			want := []string{}
			if on {
				want = []string{"backup"}
				if st.GetRole() == "leader" {
					want = []string{"master", "backup"}
				}
			}
			if strings.Join(states, ",") != strings.Join(want, ",") {
				return fmt.Errorf("%s (%s) runs sync daemons %v, want %v", d.name, st.GetRole(), states, want)
			}
		}
		return nil
	})
}

// clientPorts reads which client ports d's kernel has connection entries
// for, by protocol ("TCP 40000").
func clientPorts(d *director) (map[string]bool, error) {
	var conns []ipvssync.Conn
	err := d.do(func() error {
		var err error
		conns, err = ipvssync.ConnTable{}.Conns()
		return err
	})
	if err != nil {
		return nil, err
	}
	client6 := netip.MustParseAddr(outsideV6(clientIP)).StringExpanded()
	out := map[string]bool{}
	for _, c := range conns {
		f := strings.Fields(c.Key)
		if len(f) < 3 || (f[1] != clientHex && f[1] != client6) {
			continue
		}
		port, err := strconv.ParseUint(f[2], 16, 16)
		if err != nil {
			continue
		}
		out[f[0]+" "+strconv.FormatUint(port, 10)] = true
	}
	return out, nil
}

// syncLag: with sync on, new connections opened on the leader one every
// 250 ms, and how long each takes to appear in each follower's kernel.
func syncLag(r *run) error {
	if err := r.echoLab(true, false); err != nil {
		return err
	}
	leader, err := r.cluster.leader(r.ctx, 60*time.Second)
	if err != nil {
		return err
	}
	var followers []*director
	for _, d := range r.cluster.live() {
		if err := syncStatusShown(r, d); err != nil {
			return err
		}
		if d != leader {
			followers = append(followers, d)
		}
	}
	if out, err := r.cluster.lvsctl(r.ctx, leader, "status"); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.HasPrefix(l, "connections:") || strings.HasPrefix(l, "sync daemons:") || strings.HasPrefix(l, "role:") {
				rep.line("lvsctl status| %s", l)
			}
		}
	}
	ctx, cancel := context.WithTimeout(r.ctx, 3*time.Minute)
	defer cancel()
	const n = 20
	first := map[string]map[string]time.Time{} // follower -> "TCP port" -> first seen
	for _, f := range followers {
		first[f.name] = map[string]time.Time{}
	}
	poll := func() {
		now := time.Now()
		for _, f := range followers {
			ports, err := clientPorts(f)
			if err != nil {
				continue
			}
			for p := range ports {
				if _, ok := first[f.name][p]; !ok {
					first[f.name][p] = now
				}
			}
		}
	}
	// Entries left by earlier connections do not count.
	poll()
	stale := map[string]bool{}
	for _, m := range first {
		for p := range m {
			stale[p] = true
		}
	}
	cmd := execCommand(ctx, "/init", "conns", natEcho, strconv.Itoa(n), "20ms", "250ms")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := r.lab.client.start(cmd); err != nil {
		return err
	}
	s := &flowSession{name: "conns (lag)", cmd: cmd, stdin: stdin, cond: make(chan []string, 4), mark: make(chan struct{}, 4), done: make(chan struct{})}
	go s.read(stdout)
	defer s.close()
	deadline := time.Now().Add(90 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		poll()
		opened := s.opened()
		complete := len(opened) == n
		for _, o := range opened {
			key := "TCP " + strconv.Itoa(o.port)
			if stale[key] {
				continue // a port an earlier connection left an entry for: not measured
			}
			for _, f := range followers {
				if _, ok := first[f.name][key]; !ok {
					complete = false
				}
			}
		}
		if complete {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after 90s, %d of %d connections opened and not every one reached both followers", len(opened), n)
		}
		<-tick.C
	}
	var lags []time.Duration
	for _, o := range s.opened() {
		key := "TCP " + strconv.Itoa(o.port)
		if stale[key] {
			continue
		}
		for _, f := range followers {
			lags = append(lags, max(first[f.name][key].Sub(o.at), 0))
		}
	}
	if len(lags) == 0 {
		return errors.New("no connection could be measured")
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	rep.info("sync-lag", "new connection on the leader %s -> its entry in a follower's kernel (%d connections x %d followers, polled every 50 ms): median %d ms, p90 %d ms, max %d ms",
		leader.name, n, len(followers), lags[len(lags)/2].Milliseconds(), lags[len(lags)*9/10].Milliseconds(), lags[len(lags)-1].Milliseconds())
	return nil
}

// takeoverKind is how a scenario makes the leader go.
type takeoverKind string

const (
	byKill     takeoverKind = "SIGKILL of the leader's lvsd"
	byCut      takeoverKind = "every cable of the leader pulled"
	byTransfer takeoverKind = "lvsctl cluster transfer"
)

// syncFigures is what one takeover did to the client's flows.
type syncFigures struct {
	name               string
	total, survived    int
	moved, broken      int
	longest, median    time.Duration
	reasons            []string
	resumedAfterMarker bool
}

func (f syncFigures) String() string {
	s := fmt.Sprintf("%s %d/%d survived", f.name, f.survived, f.total)
	if f.survived > 0 {
		s += fmt.Sprintf(", longest stall %d ms (median %d)", f.longest.Milliseconds(), f.median.Milliseconds())
	}
	if f.broken > 0 || f.moved > 0 {
		s += fmt.Sprintf(", %d broken, %d moved to another server", f.broken, f.moved)
	}
	return s
}

func figures(name string, rs []flowReport) syncFigures {
	f := syncFigures{name: name, total: len(rs)}
	var gaps []time.Duration
	reasons := map[string]int{}
	for _, r := range rs {
		switch {
		case r.state == "ok" && r.sinceMark > 0:
			f.survived++
			gaps = append(gaps, r.maxGap)
		case r.state == "moved":
			f.moved++
			reasons[r.why]++
		case r.state == "broken":
			f.broken++
			reasons[shortWhy(r.why)]++
		default:
			f.broken++
			reasons["no echo since the takeover"]++
		}
	}
	if len(gaps) > 0 {
		slices.Sort(gaps)
		f.longest, f.median = gaps[len(gaps)-1], gaps[len(gaps)/2]
	}
	for why, n := range reasons {
		f.reasons = append(f.reasons, fmt.Sprintf("%d× %s", n, why))
	}
	sort.Strings(f.reasons)
	return f
}

// flowSpec is one kind of flow a takeover carries: a client program, the
// address it talks to, how many, and the name its figures go under.
type flowSpec struct {
	name, program, addr string
	n                   int
}

// defaultFlows are the flows of the NAT, DR and UDP figures.
var defaultFlows = []flowSpec{
	{"NAT", "conns", natEcho, syncFlows},
	{"DR", "conns", drEcho, syncFlows},
	{"UDP", "udpflows", natEcho, syncUDP},
}

// syncTakeover runs the flows, takes the leader away by kind, waits for a
// new one and for the flows to come back, and returns the figures (and, for
// the default flows, those of persistence). The old leader is brought back
// (restarted, or its cables plugged in) and must come back with the
// leader's IPVS table and only a backup daemon.
func (r *run) syncTakeover(name string, kind takeoverKind, syncOn bool, specs []flowSpec) ([]syncFigures, error) {
	leader, err := r.cluster.leader(r.ctx, 60*time.Second)
	if err != nil {
		return nil, err
	}
	if err := r.onlyHolder(leader, 30*time.Second); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Minute)
	defer cancel()
	var sessions []*flowSession
	defer func() {
		for _, s := range sessions {
			s.close()
		}
	}()
	persist := len(specs) == len(defaultFlows) && specs[0] == defaultFlows[0]
	for _, spec := range specs {
		s, err := startFlows(ctx, r.lab.client, spec.program, spec.addr, spec.n)
		if err != nil {
			return nil, err
		}
		sessions = append(sessions, s)
	}
	var followers []*director
	for _, d := range r.cluster.live() {
		if d != leader {
			followers = append(followers, d)
		}
	}
	// A crash can carry over only what the leader has sent: wait until the
	// followers hold every connection (the transfer waits by itself).
	if syncOn && kind != byTransfer {
		start := time.Now()
		if err := eventually(ctx, 60*time.Second, func() error {
			for _, f := range followers {
				ports, err := clientPorts(f)
				if err != nil {
					return err
				}
				for _, s := range sessions {
					proto := "TCP"
					if strings.HasPrefix(s.name, "udpflows") {
						proto = "UDP"
					}
					for _, o := range s.opened() {
						if !ports[proto+" "+strconv.Itoa(o.port)] {
							return fmt.Errorf("%s lacks %s %d", f.name, proto, o.port)
						}
					}
				}
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("followers never held the leader's connections: %w", err)
		}
		rep.logf("%s: both followers hold all %d flows %.1fs after they opened", name, 2*syncFlows+syncUDP, time.Since(start).Seconds())
	} else if !syncOn {
		// Some traffic first, as the synced runs have.
		time.Sleep(2 * time.Second) // letting the flows run, not synchronisation
	}
	// Persistence: short connections to the persistent service all go to
	// one real server, before the takeover and after it.
	persistAddr := net.JoinHostPort(natVIP, strconv.Itoa(persistPort))
	var persistBefore []string
	if persist {
		var perrs []string
		persistBefore, perrs, err = onceFrom(ctx, r.lab.client, persistAddr, 6)
		if err != nil || len(perrs) > 0 {
			return nil, fmt.Errorf("persistent service before the takeover: %v %v", perrs, err)
		}
	}
	if persist && syncOn && kind != byTransfer {
		// Its template reaches the followers with the connections it
		// controls; give it the kernel's flush time.
		if err := eventually(ctx, 30*time.Second, func() error {
			for _, f := range followers {
				var conns []ipvssync.Conn
				if err := f.do(func() error {
					var err error
					conns, err = ipvssync.ConnTable{}.Conns()
					return err
				}); err != nil {
					return err
				}
				// A template is the client (port 0) to the service's VIP
				// and port; the protocol is the service's (IP for fwmark).
				found := false
				for _, c := range conns {
					fs := strings.Fields(c.Key)
					found = found || (len(fs) == 7 && fs[1] == clientHex && fs[2] == "0000" && fs[4] == fmt.Sprintf("%04X", persistPort))
				}
				if !found {
					return fmt.Errorf("%s has no persistence template of the client", f.name)
				}
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	for _, s := range sessions {
		if err := s.doMark(ctx); err != nil {
			return nil, err
		}
	}

	gone := time.Now()
	transferOut := ""
	switch kind {
	case byKill:
		leader.kill(syscall.SIGKILL)
	case byCut:
		if err := leader.setLinks(false); err != nil {
			return nil, err
		}
	case byTransfer:
		out, err := r.cluster.lvsctl(ctx, leader, "cluster", "transfer")
		if err != nil {
			return nil, err
		}
		transferOut = oneLine(out)
	}
	rep.logf("%s: %s (%s)", name, kind, leader.name)
	newLeader, err := r.leaderBesides(ctx, leader, 90*time.Second)
	if err != nil {
		return nil, err
	}
	took := time.Since(gone)
	if t, ok := newLeader.tookOver(gone); ok {
		took = t.Sub(gone)
	}

	// Wait for every flow that still works to answer again.
	var reports [][]flowReport
	deadline := time.Now().Add(syncTimeout)
	for {
		reports = nil
		waiting := 0
		for _, s := range sessions {
			rs, err := s.report(ctx)
			if err != nil {
				return nil, err
			}
			reports = append(reports, rs)
			for _, x := range rs {
				if x.state == "ok" && x.sinceMark == 0 {
					waiting++
				}
			}
		}
		if waiting == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second) // polling the client's report
	}
	// A second of traffic on the new leader, and the final word.
	time.Sleep(time.Second) // letting the flows run, not synchronisation
	reports = nil
	for _, s := range sessions {
		rs, err := s.report(ctx)
		if err != nil {
			return nil, err
		}
		reports = append(reports, rs)
	}
	var figs []syncFigures
	var parts []string
	for i, spec := range specs {
		f := figures(spec.name, reports[i])
		figs = append(figs, f)
		parts = append(parts, f.String())
	}
	if persist {
		persistAfter, perrs, err := onceFrom(ctx, r.lab.client, persistAddr, 6)
		if err != nil || len(perrs) > 0 {
			return figs, fmt.Errorf("persistent service after the takeover: %v %v", perrs, err)
		}
		pf := syncFigures{name: "persistence", total: 1}
		all := append(slices.Clone(persistBefore), persistAfter...)
		if slices.IndexFunc(all, func(s string) bool { return s != all[0] }) < 0 {
			pf.survived = 1
		} else {
			pf.reasons = []string{fmt.Sprintf("before %v, after %v", persistBefore, persistAfter)}
		}
		rep.info(name, "persistence: 6 new connections before the takeover went to %v, 6 after it to %v", persistBefore, persistAfter)
		figs = append(figs, pf)
	}
	rep.info(name, "%s (%s); %s took over %d ms later: %s", kind, leader.name, newLeader.name, took.Milliseconds(), strings.Join(parts, "; "))
	if transferOut != "" {
		rep.info(name, "lvsctl cluster transfer said: %s", transferOut)
	}
	for _, f := range figs {
		if len(f.reasons) > 0 {
			rep.info(name, "%s: %s", f.name, strings.Join(f.reasons, "; "))
		}
	}

	// The old leader comes back with its tables right.
	switch kind {
	case byKill:
		if err := leader.startLvsd(); err != nil {
			return figs, err
		}
	case byCut:
		if err := leader.setLinks(true); err != nil {
			return figs, err
		}
	}
	back := time.Now()
	if _, err := r.cluster.leader(r.ctx, 90*time.Second); err != nil {
		return figs, fmt.Errorf("after %s came back: %w", leader.name, err)
	}
	if err := r.onlyHolder(newLeader, 60*time.Second); err != nil {
		return figs, err
	}
	if err := r.waitSyncDaemons(syncOn, nil, 90*time.Second); err != nil {
		return figs, fmt.Errorf("after %s came back: %w", leader.name, err)
	}
	if err := eventually(r.ctx, 60*time.Second, func() error {
		lt, err := readTable(newLeader.machine)
		if err != nil {
			return err
		}
		t, err := readTable(leader.machine)
		if err != nil {
			return err
		}
		if t.String() != lt.String() {
			return fmt.Errorf("%s kernel: %s; leader %s kernel: %s", leader.name, t, newLeader.name, lt)
		}
		return nil
	}); err != nil {
		return figs, err
	}
	if kind != byTransfer {
		how := map[takeoverKind]string{byKill: "its lvsd was started again", byCut: "its cables were plugged back in"}[kind]
		rep.info(name, "%s came back as a follower with the leader's IPVS table and %s, %.1fs after %s", leader.name,
			map[bool]string{true: "a backup sync daemon only", false: "no sync daemon"}[syncOn], time.Since(back).Seconds(), how)
	}
	return figs, nil
}

// leaderBesides waits until a director other than old leads and holds the
// VIPs, asking only the others (old may be cut off).
func (r *run) leaderBesides(ctx context.Context, old *director, timeout time.Duration) (*director, error) {
	var found *director
	err := eventually(ctx, timeout, func() error {
		for _, d := range r.cluster.live() {
			if d == old {
				continue
			}
			st, err := d.status(ctx)
			if err != nil {
				continue
			}
			if st.GetRole() == "leader" && st.GetHoldsVips() {
				found = d
				return nil
			}
		}
		return errors.New("no other director leads and holds the VIPs yet")
	})
	return found, err
}

// syncOff: without connection sync, a crash of the leader breaks the
// established connections (so the scenarios with sync can fail).
func syncOff(r *run) error {
	if err := r.echoLab(false, false); err != nil {
		return err
	}
	figs, err := r.syncTakeover("sync-off", byKill, false, defaultFlows)
	if err != nil {
		return err
	}
	for _, f := range figs[:2] {
		if f.survived == f.total {
			return fmt.Errorf("without sync every %s connection survived the crash: the scenario cannot tell sync from none", f.name)
		}
	}
	return nil
}

func syncCrash(r *run) error    { return r.syncScenario("sync-crash", byKill, false) }
func syncCut(r *run) error      { return r.syncScenario("sync-cut", byCut, false) }
func syncTransfer(r *run) error { return r.syncScenario("sync-transfer", byTransfer, false) }

// syncV6Tun: the same over an IPv6 DR VIP (raised with unsolicited
// neighbour advertisements) and tunnel forwarding, through a crash.
func syncV6Tun(r *run) error { return r.syncScenario("sync-v6-tun", byKill, true) }

// syncScenario: with sync on, every connection and UDP flow survives the
// takeover on the same real server (and persistence holds).
func (r *run) syncScenario(name string, kind takeoverKind, more bool) error {
	if err := r.echoLab(true, more); err != nil {
		return err
	}
	specs := defaultFlows
	if more {
		specs = []flowSpec{
			{"IPv6 DR", "conns", net.JoinHostPort(drVIP6, strconv.Itoa(echoPort)), 20},
			{"TUN", "conns", net.JoinHostPort(tunVIP, strconv.Itoa(echoPort)), 20},
		}
	}
	figs, err := r.syncTakeover(name, kind, true, specs)
	if err != nil {
		return err
	}
	var lost []string
	for _, f := range figs {
		if f.survived != f.total {
			lost = append(lost, fmt.Sprintf("%s %d/%d (%s)", f.name, f.survived, f.total, strings.Join(f.reasons, "; ")))
		}
	}
	if len(lost) > 0 {
		return fmt.Errorf("with sync on, not every flow survived %s: %s", kind, strings.Join(lost, "; "))
	}
	return nil
}

// syncStatusShown: lvsctl status on d shows its sync daemons and
// connection count.
func syncStatusShown(r *run, d *director) error {
	out, err := r.cluster.lvsctl(r.ctx, d, "status", "-o", "json")
	if err != nil {
		return err
	}
	var resp shoalv1.GetNodeStatusResponse
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(out), &resp); err != nil {
		return err
	}
	if len(resp.GetStatus().GetSyncDaemons()) == 0 || resp.GetStatus().GetConnections() == nil {
		return fmt.Errorf("%s status lacks sync daemons or connections: %s", d.name, oneLine(out))
	}
	return nil
}

// shortWhy drops the addresses from a Go network error, so that the same
// failure of many connections is counted once: "read: read tcp
// 10.0.1.100:47682->10.0.1.10:7: read: connection reset by peer" is "read:
// connection reset by peer".
func shortWhy(why string) string {
	op, _, ok := strings.Cut(why, ":")
	i := strings.LastIndex(why, ": ")
	if !ok || i < 0 {
		return why
	}
	return op + ": " + why[i+2:]
}
