package dataplane

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/moby/ipvs"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/shoal-lb/shoal/dataplane/kernelfake"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// fakeHealth is a settable health verdict; unknown servers are up.
type fakeHealth struct {
	mu    sync.Mutex
	down  map[string]bool
	asked int    // Healthy calls
	told  func() // the dataplane's HealthChanged, as lvsd wires the monitor's OnChange
}

func (h *fakeHealth) Healthy(service string, rs netip.AddrPort) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.asked++
	return !h.down[service+" "+rs.String()]
}

func (h *fakeHealth) set(service, rs string, up bool) {
	h.mu.Lock()
	if h.down == nil {
		h.down = map[string]bool{}
	}
	h.down[service+" "+rs] = !up
	told := h.told
	h.mu.Unlock()
	if told != nil {
		told()
	}
}

// questions returns the number of Healthy calls since the last call.
func (h *fakeHealth) questions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.asked
	h.asked = 0
	return n
}

type rig struct {
	d       *Dataplane
	ipvs    *kernelfake.IPVS
	addrs   *kernelfake.Addresses
	ann     *kernelfake.Announcer
	health  *fakeHealth
	links   *kernelfake.Links
	sync    *kernelfake.SyncDaemons
	sysctls *kernelfake.Sysctls
	conns   *kernelfake.Conns
	state   string
	// changes makes apply reconcile as Run does after a change (by the
	// difference) rather than with a whole comparison.
	changes bool
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newRig(t *testing.T, mode Mode, state string) *rig {
	t.Helper()
	r := &rig{ipvs: kernelfake.NewIPVS(), addrs: kernelfake.NewAddresses(), health: &fakeHealth{}, links: kernelfake.NewLinks(), state: state,
		sync: kernelfake.NewSyncDaemons(), sysctls: kernelfake.NewSysctls(), conns: &kernelfake.Conns{}}
	r.ann = &kernelfake.Announcer{Addresses: r.addrs}
	r.reopen(t, mode)
	return r
}

// reopen builds a new Dataplane over the same fake kernel: a restart.
func (r *rig) reopen(t *testing.T, mode Mode) {
	t.Helper()
	r.reopenWith(t, mode, nil)
}

// reopenWith is reopen with options changed by set.
func (r *rig) reopenWith(t *testing.T, mode Mode, set func(*Options)) {
	t.Helper()
	o := Options{Mode: mode, NodeID: "n1", DefaultInterface: "eth0", Logger: quietLogger(),
		Health: r.health, IPVS: r.ipvs, Addresses: r.addrs, Announcer: r.ann, Links: r.links, StateFile: r.state,
		SyncDaemons: r.sync, Sysctls: r.sysctls, Conns: r.conns}
	if set != nil {
		set(&o)
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	r.d = d
	r.health.mu.Lock()
	r.health.told = d.HealthChanged
	r.health.mu.Unlock()
}

func (r *rig) apply(t *testing.T, c *shoalv1.Config) {
	t.Helper()
	// A copy, as raftfsm hands over a new configuration for every change:
	// the tests change theirs in place.
	r.d.SetConfig(proto.Clone(c).(*shoalv1.Config))
	if r.changes {
		r.change(t)
		return
	}
	if err := r.d.Reconcile(); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
}

// change reconciles as Run does after a change of config or health: by
// the difference from what the last reconcile left, without listing the
// kernel. It then checks that this left the kernel where a whole
// comparison would: a Dataplane that compares a copy of the kernel with
// the same config and health must find nothing to change.
func (r *rig) change(t *testing.T) {
	t.Helper()
	known := r.d.known
	r.ipvs.Reads()
	if err := r.d.reconcile(compareChange); err != nil {
		t.Fatalf("reconcile a change: %v", err)
	}
	if reads := r.ipvs.Reads(); known && reads != 0 {
		t.Errorf("a change listed the kernel's table %d times", reads)
	}
	copyOf := r.ipvs.Clone()
	d, err := New(Options{Mode: ModeIPVS, Logger: quietLogger(), Health: r.d.o.Health, IPVS: copyOf,
		Addresses: kernelfake.NewAddresses(), Announcer: &kernelfake.Announcer{}, Links: kernelfake.NewLinks()})
	if err != nil {
		t.Fatal(err)
	}
	r.d.mu.Lock()
	d.SetConfig(r.d.cfg)
	r.d.mu.Unlock()
	if err := d.Reconcile(); err != nil {
		t.Fatalf("whole comparison after a change: %v", err)
	}
	if ops := copyOf.Ops(); len(ops) > 0 {
		t.Errorf("a change left the kernel short of what it should be; a whole comparison did %q", ops)
	}
}

// bothWays runs a test of the reconciler twice: every reconcile a whole
// comparison with the kernel (Reconcile, the periodic resync), and every
// reconcile after the first a change applied as its difference (what Run
// does on SetConfig and HealthChanged).
func bothWays(t *testing.T, test func(t *testing.T, r *rig)) {
	for _, changes := range []bool{false, true} {
		name := "whole"
		if changes {
			name = "changes"
		}
		t.Run(name, func(t *testing.T) {
			r := newRig(t, ModeIPVS, "")
			r.changes = changes
			test(t, r)
		})
	}
}

func rs(a string, weight ...uint32) *shoalv1.RealServer {
	r := &shoalv1.RealServer{Address: a}
	if len(weight) > 0 {
		r.Weight = proto.Uint32(weight[0])
	}
	return r
}

func webConfig() *shoalv1.Config {
	return &shoalv1.Config{
		Serial: 1,
		Services: []*shoalv1.VirtualService{{
			Name: "web", Vip: addr("192.0.2.10"), Port: 80, Protocol: "tcp", Scheduler: "wlc", Forward: "nat",
			RealServers: []*shoalv1.RealServer{rs("10.0.0.1"), rs("10.0.0.2", 2)},
		}},
	}
}

// dests renders a service's destinations as "addr:port fwd weight".
func (r *rig) dests(t *testing.T, key string) []string {
	t.Helper()
	_, ds, ok := r.ipvs.Service(key)
	if !ok {
		t.Fatalf("service %s missing; have %v", key, r.ipvs.Keys())
	}
	var out []string
	for _, d := range ds {
		out = append(out, kernelfake.DestKey(&d)+" "+forwardName(d.ConnectionFlags)+" "+itoa(d.Weight))
	}
	return out
}

func itoa(i int) string {
	return fmt.Sprintf("%05d", i)
}

func eq(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got  %q\n want %q", what, got, want)
	}
}

func TestReconcileChangesInPlace(t *testing.T) {
	bothWays(t, func(t *testing.T, r *rig) {
		c := webConfig()
		r.apply(t, c)
		eq(t, "first ops", r.ipvs.Ops(), []string{
			"NewService tcp/192.0.2.10:80",
			"NewDestination tcp/192.0.2.10:80 10.0.0.1:80",
			"NewDestination tcp/192.0.2.10:80 10.0.0.2:80",
		})
		eq(t, "dests", r.dests(t, "tcp/192.0.2.10:80"), []string{"10.0.0.1:80 nat 00001", "10.0.0.2:80 nat 00002"})

		// Nothing changed: nothing done.
		r.apply(t, c)
		eq(t, "idle ops", r.ipvs.Ops(), nil)

		steps := []struct {
			name   string
			change func(*shoalv1.VirtualService)
			ops    []string
		}{
			{"weight", func(vs *shoalv1.VirtualService) { vs.RealServers[0].Weight = proto.Uint32(5) },
				[]string{"UpdateDestination tcp/192.0.2.10:80 10.0.0.1:80"}},
			// A threshold is an edit of the destination, never a delete and
			// add, which would drop its connections.
			{"thresholds", func(vs *shoalv1.VirtualService) {
				vs.RealServers[1].UpperThreshold, vs.RealServers[1].LowerThreshold = 100, 60
			}, []string{"UpdateDestination tcp/192.0.2.10:80 10.0.0.2:80"}},
			{"upper threshold only", func(vs *shoalv1.VirtualService) { vs.RealServers[1].LowerThreshold = 0 },
				[]string{"UpdateDestination tcp/192.0.2.10:80 10.0.0.2:80"}},
			{"scheduler", func(vs *shoalv1.VirtualService) { vs.Scheduler = "rr" },
				[]string{"UpdateService tcp/192.0.2.10:80"}},
			{"persistence", func(vs *shoalv1.VirtualService) { vs.PersistenceTimeout = 300; vs.PersistencePrefix = 24 },
				[]string{"UpdateService tcp/192.0.2.10:80"}},
			{"forwarding of the service", func(vs *shoalv1.VirtualService) { vs.Forward = "dr" },
				[]string{"UpdateDestination tcp/192.0.2.10:80 10.0.0.1:80", "UpdateDestination tcp/192.0.2.10:80 10.0.0.2:80"}},
			{"forwarding of one server", func(vs *shoalv1.VirtualService) { vs.RealServers[1].Forward = "tun" },
				[]string{"UpdateDestination tcp/192.0.2.10:80 10.0.0.2:80"}},
			{"add server", func(vs *shoalv1.VirtualService) { vs.RealServers = append(vs.RealServers, rs("10.0.0.3")) },
				[]string{"NewDestination tcp/192.0.2.10:80 10.0.0.3:80"}},
			{"remove server", func(vs *shoalv1.VirtualService) { vs.RealServers = vs.RealServers[1:] },
				[]string{"DelDestination tcp/192.0.2.10:80 10.0.0.1:80"}},
			{"inactive server", func(vs *shoalv1.VirtualService) { vs.RealServers[0].Active = proto.Bool(false) },
				[]string{"DelDestination tcp/192.0.2.10:80 10.0.0.2:80"}},
			{"active again", func(vs *shoalv1.VirtualService) { vs.RealServers[0].Active = proto.Bool(true) },
				[]string{"NewDestination tcp/192.0.2.10:80 10.0.0.2:80"}},
			{"inactive service", func(vs *shoalv1.VirtualService) { vs.Active = proto.Bool(false) },
				[]string{"DelService tcp/192.0.2.10:80"}},
			{"active service", func(vs *shoalv1.VirtualService) { vs.Active = nil },
				[]string{"NewService tcp/192.0.2.10:80", "NewDestination tcp/192.0.2.10:80 10.0.0.2:80", "NewDestination tcp/192.0.2.10:80 10.0.0.3:80"}},
		}
		for _, s := range steps {
			s.change(c.Services[0])
			c.Serial++
			r.apply(t, c)
			eq(t, s.name, r.ipvs.Ops(), s.ops)
		}
		svc, _, _ := r.ipvs.Service("tcp/192.0.2.10:80")
		if svc.SchedName != "rr" || svc.Timeout != 300 || svc.Flags&svcFlagPersistent == 0 || persistencePrefix(&svc) != 24 {
			t.Errorf("service after updates: %+v", svc)
		}
		eq(t, "final dests", r.dests(t, "tcp/192.0.2.10:80"), []string{"10.0.0.2:80 tun 00002", "10.0.0.3:80 dr 00001"})
		_, ds, _ := r.ipvs.Service("tcp/192.0.2.10:80")
		if ds[0].UpperThreshold != 100 || ds[0].LowerThreshold != 0 || ds[1].UpperThreshold != 0 {
			t.Errorf("thresholds in the kernel: %+v", ds)
		}

		c.Services = nil
		r.apply(t, c)
		eq(t, "service removed", r.ipvs.Ops(), []string{"DelService tcp/192.0.2.10:80"})
		eq(t, "kernel empty", r.ipvs.Keys(), nil)
	})
}

func TestHealthQuiesceAndSorryServer(t *testing.T) {
	bothWays(t, func(t *testing.T, r *rig) {
		c := webConfig()
		vs := c.Services[0]
		vs.SorryServer = &shoalv1.RealServer{Address: "10.9.9.9", Port: 8080}
		key := "tcp/192.0.2.10:80"
		r.apply(t, c)

		r.health.set("web", "10.0.0.1:80", false)
		r.apply(t, c)
		eq(t, "down, removed", r.dests(t, key), []string{"10.0.0.2:80 nat 00002"})

		vs.Quiesce = true
		r.apply(t, c)
		eq(t, "down, quiesced", r.dests(t, key), []string{"10.0.0.1:80 nat 00000", "10.0.0.2:80 nat 00002"})
		r.ipvs.Ops()

		r.health.set("web", "10.0.0.2:80", false)
		r.apply(t, c)
		eq(t, "all down: sorry server alone", r.dests(t, key), []string{"10.9.9.9:8080 nat 00001"})
		eq(t, "sorry added before the others leave", r.ipvs.Ops(), []string{
			"NewDestination tcp/192.0.2.10:80 10.9.9.9:8080",
			"DelDestination tcp/192.0.2.10:80 10.0.0.1:80",
			"DelDestination tcp/192.0.2.10:80 10.0.0.2:80",
		})

		r.health.set("web", "10.0.0.2:80", true)
		r.apply(t, c)
		eq(t, "one back: sorry server leaves", r.dests(t, key), []string{"10.0.0.1:80 nat 00000", "10.0.0.2:80 nat 00002"})

		// Without a sorry server, all down and not quiescing means no destination.
		vs.SorryServer, vs.Quiesce = nil, false
		r.health.set("web", "10.0.0.2:80", false)
		r.apply(t, c)
		eq(t, "all down, no sorry server", r.dests(t, key), nil)
	})
}

func TestDriftRepairAfterFlush(t *testing.T) {
	r := newRig(t, ModeIPVS, "")
	c := webConfig()
	c.Services = append(c.Services, &shoalv1.VirtualService{Name: "mark", Fwmark: 5, Scheduler: "sh",
		RealServers: []*shoalv1.RealServer{{Address: "10.0.0.5", Port: 443}}})
	r.apply(t, c)
	want := r.ipvs.Keys()
	r.ipvs.Flush()
	r.ipvs.Ops()
	r.apply(t, c)
	eq(t, "repaired", r.ipvs.Keys(), want)
	if len(r.ipvs.Ops()) != 5 {
		t.Error("expected 2 services + 3 destinations re-added")
	}
	// Out-of-band weight change and extra destination are undone too.
	svc, _, _ := r.ipvs.Service("tcp/192.0.2.10:80")
	_ = r.ipvs.UpdateDestination(&svc, &ipvs.Destination{Address: netip.MustParseAddr("10.0.0.1").AsSlice(), Port: 80, Weight: 50})
	_ = r.ipvs.NewDestination(&svc, &ipvs.Destination{Address: netip.MustParseAddr("10.0.0.66").AsSlice(), Port: 80, Weight: 1})
	r.ipvs.Ops()
	r.apply(t, c)
	eq(t, "hand edits undone", r.dests(t, "tcp/192.0.2.10:80"), []string{"10.0.0.1:80 nat 00001", "10.0.0.2:80 nat 00002"})
}

func foreignService(t *testing.T, f *kernelfake.IPVS, vip string, port uint16, dest string) {
	t.Helper()
	s := &ipvs.Service{Address: netip.MustParseAddr(vip).AsSlice(), Port: port, Protocol: 6, SchedName: "rr", AddressFamily: 2, Netmask: 0xffffffff}
	if err := f.NewService(s); err != nil {
		t.Fatal(err)
	}
	if err := f.NewDestination(s, &ipvs.Destination{Address: netip.MustParseAddr(dest).AsSlice(), Port: port, Weight: 1}); err != nil {
		t.Fatal(err)
	}
	f.Ops()
}

func TestForeignEntriesAndTakeOver(t *testing.T) {
	state := filepath.Join(t.TempDir(), "dataplane.json")
	r := newRig(t, ModeIPVS, state)
	foreignService(t, r.ipvs, "198.51.100.1", 25, "10.5.5.5") // somebody else's
	foreignService(t, r.ipvs, "192.0.2.10", 80, "10.6.6.6")   // in the way of "web"
	c := webConfig()
	r.apply(t, c)
	eq(t, "collision taken over", r.ipvs.Ops(), []string{
		"UpdateService tcp/192.0.2.10:80",
		"NewDestination tcp/192.0.2.10:80 10.0.0.1:80",
		"NewDestination tcp/192.0.2.10:80 10.0.0.2:80",
		"DelDestination tcp/192.0.2.10:80 10.6.6.6:80",
	})
	eq(t, "foreign left alone", r.dests(t, "tcp/198.51.100.1:25"), []string{"10.5.5.5:25 nat 00001"})

	// A restart still knows what is shoal's: dropping the service from the
	// config deletes it, the foreign one stays.
	r.reopen(t, ModeIPVS)
	c.Services = nil
	r.apply(t, c)
	eq(t, "after restart", r.ipvs.Ops(), []string{"DelService tcp/192.0.2.10:80"})
	eq(t, "left", r.ipvs.Keys(), []string{"tcp/198.51.100.1:25"})
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) == "" {
		t.Error("state file empty")
	}
}

func TestNoConfigYetTouchesNothing(t *testing.T) {
	state := filepath.Join(t.TempDir(), "dataplane.json")
	r := newRig(t, ModeIPVS, state)
	r.apply(t, webConfig())
	r.ipvs.Ops()
	r.reopen(t, ModeIPVS)
	if err := r.d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	eq(t, "restart before the first config", r.ipvs.Ops(), nil)
}

func TestTimeouts(t *testing.T) {
	bothWays(t, func(t *testing.T, r *rig) {
		c := webConfig()
		c.Global = &shoalv1.Global{TcpTimeout: durationpb(600), UdpTimeout: durationpb(30)}
		r.apply(t, c)
		got, _ := r.ipvs.GetConfig()
		if got.TimeoutTCP.Seconds() != 600 || got.TimeoutUDP.Seconds() != 30 || got.TimeoutTCPFin.Seconds() != 120 {
			t.Errorf("timeouts %+v", got)
		}
		r.ipvs.Ops()
		r.apply(t, c)
		eq(t, "timeouts set once", r.ipvs.Ops(), nil)
	})
}

func TestBadServiceDoesNotHoldBackOthers(t *testing.T) {
	r := newRig(t, ModeIPVS, "")
	c := webConfig()
	c.Services = append(c.Services, &shoalv1.VirtualService{Name: "bad", Vip: addr("192.0.2.11"), Port: 80, Scheduler: "nope"})
	r.d.SetConfig(c)
	if err := r.d.Reconcile(); err == nil {
		t.Fatal("want an error for the bad scheduler")
	}
	eq(t, "good service programmed", r.dests(t, "tcp/192.0.2.10:80"), []string{"10.0.0.1:80 nat 00001", "10.0.0.2:80 nat 00002"})
	var st shoalv1.NodeStatus
	r.d.Status(&st)
	if st.ReconcileError == "" || st.ReconciledSerial != 0 {
		t.Errorf("status after failure: %q serial %d", st.ReconcileError, st.ReconciledSerial)
	}
}

// TestBadServiceDoesNotHoldBackTheSweep: a service that does not map is
// reported by every reconcile, and the periodic resync still repairs the
// others.
func TestBadServiceDoesNotHoldBackTheSweep(t *testing.T) {
	r := newRig(t, ModeIPVS, "")
	c := webConfig()
	c.Services = append(c.Services, &shoalv1.VirtualService{Name: "bad", Vip: addr("not-an-address"), Port: 80})
	r.d.SetConfig(c)
	if err := r.d.Reconcile(); err == nil {
		t.Fatal("want an error for the service that does not map")
	}
	svc, ds, _ := r.ipvs.Service("tcp/192.0.2.10:80")
	ds[0].Weight = 50
	_ = r.ipvs.UpdateDestination(&svc, &ds[0])
	if err := r.d.sweep(nil); err == nil || !strings.Contains(err.Error(), "not-an-address") {
		t.Errorf("sweep: %v, want the bad service's error", err)
	}
	eq(t, "good service repaired", r.dests(t, "tcp/192.0.2.10:80"), []string{"10.0.0.1:80 nat 00001", "10.0.0.2:80 nat 00002"})
}

// TestChangeCostsWhatItChanges: on a table of 100 services × 10, one weight
// change is one destination update and no listing of the kernel; the
// periodic resync lists everything and finds nothing to do.
func TestChangeCostsWhatItChanges(t *testing.T) {
	r := newRig(t, ModeIPVS, "")
	c := bigConfig(100, 10)
	// Not r.apply's copy: the next configuration shares c's services.
	r.d.SetConfig(c)
	if err := r.d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	r.ipvs.Ops()

	// As raftfsm makes the next configuration: every other service shared.
	c = withService(c, 42, func(vs *shoalv1.VirtualService) { vs.RealServers[7].Weight = proto.Uint32(9) })
	r.d.SetConfig(c)
	r.ipvs.Reads()
	r.health.questions()
	if err := r.d.reconcile(compareChange); err != nil {
		t.Fatal(err)
	}
	eq(t, "one weight change", r.ipvs.Ops(), []string{"UpdateDestination tcp/10.100.42.1:80 172.16.42.8:80"})
	if n := r.ipvs.Reads(); n != 0 {
		t.Errorf("a weight change listed the kernel %d times, want 0", n)
	}
	// No verdict changed since the last reconcile: only the changed
	// service's servers are asked about.
	if n := r.health.questions(); n != 10 {
		t.Errorf("a weight change asked about %d servers' health, want the service's 10", n)
	}
	// The status a poller asks for (NODE_STATUS_VIEW_BASIC) lists nothing.
	var st shoalv1.NodeStatus
	r.d.Status(&st)
	if st.ReconciledSerial != c.Serial || st.Ipvs != nil || st.Connections != nil {
		t.Errorf("basic status: %v", &st)
	}
	if n := r.ipvs.Reads(); n != 0 {
		t.Errorf("the basic status listed the kernel %d times, want 0", n)
	}

	// A health verdict changes under a service that did not change.
	r.health.set("svc0017", "172.16.17.3:80", false)
	if err := r.d.reconcile(compareChange); err != nil {
		t.Fatal(err)
	}
	eq(t, "one server down", r.ipvs.Ops(), []string{"DelDestination tcp/10.100.17.1:80 172.16.17.3:80"})
	r.health.set("svc0017", "172.16.17.3:80", true)
	if err := r.d.reconcile(compareChange); err != nil {
		t.Fatal(err)
	}
	eq(t, "up again", r.ipvs.Ops(), []string{"NewDestination tcp/10.100.17.1:80 172.16.17.3:80"})

	if err := r.d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	eq(t, "idle resync", r.ipvs.Ops(), nil)
	if n := r.ipvs.Reads(); n != 1+100 {
		t.Errorf("a resync listed %d times, want the services and each one's destinations (101)", n)
	}

	// A global setting the services depend on (the announcement mode)
	// changes under services that did not: they are computed again.
	c = withService(c, 3, func(vs *shoalv1.VirtualService) { vs.Scheduler = "mh" })
	r.d.SetConfig(c)
	if err := r.d.reconcile(compareChange); err != nil {
		t.Fatal(err)
	}
	if svc, _, _ := r.ipvs.Service("tcp/10.100.3.1:80"); svc.SchedName != "mh" || svc.Flags&(svcFlagSchedSH1|svcFlagSchedSH2) != 0 {
		t.Errorf("mh service announced by l2: %+v", svc)
	}
	c = &shoalv1.Config{Serial: c.Serial + 1, Global: &shoalv1.Global{Announce: "bgp"}, Services: c.Services}
	r.d.SetConfig(c)
	if err := r.d.reconcile(compareChange); err != nil {
		t.Fatal(err)
	}
	if svc, _, _ := r.ipvs.Service("tcp/10.100.3.1:80"); svc.Flags&(svcFlagSchedSH1|svcFlagSchedSH2) == 0 {
		t.Errorf("the same service once bgp announces every service: %+v", svc)
	}
}

// withService is c's next configuration as raftfsm makes it: a new
// configuration and a new copy of service i, changed by edit, every other
// service shared.
func withService(c *shoalv1.Config, i int, edit func(*shoalv1.VirtualService)) *shoalv1.Config {
	next := &shoalv1.Config{Serial: c.Serial + 1, Global: c.Global, Services: slices.Clone(c.Services)}
	vs := proto.Clone(c.Services[i]).(*shoalv1.VirtualService)
	edit(vs)
	next.Services[i] = vs
	return next
}

// TestDriftRepairedByResync: entries changed behind shoal's back that no
// change touches stay as they are until the next resync, which repairs
// them; a change that runs into drift compares the whole table at once.
func TestDriftRepairedByResync(t *testing.T) {
	r := newRig(t, ModeIPVS, "")
	c := bigConfig(3, 2)
	r.apply(t, c)
	want := map[string][]string{}
	for _, k := range r.ipvs.Keys() {
		want[k] = r.dests(t, k)
	}
	svc0, _, _ := r.ipvs.Service("tcp/10.100.0.1:80")
	svc1, _, _ := r.ipvs.Service("tcp/10.100.1.1:80")
	// By hand: a weight, a destination out, a whole service out.
	_ = r.ipvs.UpdateDestination(&svc0, &ipvs.Destination{Address: netip.MustParseAddr("172.16.0.1").AsSlice(), Port: 80, Weight: 50})
	_ = r.ipvs.DelDestination(&svc1, &ipvs.Destination{Address: netip.MustParseAddr("172.16.1.2").AsSlice(), Port: 80})
	svc2, _, _ := r.ipvs.Service("tcp/10.100.2.1:80")
	_ = r.ipvs.DelService(&svc2)
	r.ipvs.Ops()

	// A change elsewhere applies itself alone and leaves the drift be.
	c = proto.Clone(c).(*shoalv1.Config)
	c.Serial++
	c.Services[0].RealServers[1].Weight = proto.Uint32(3)
	r.d.SetConfig(c)
	if err := r.d.reconcile(compareChange); err != nil {
		t.Fatal(err)
	}
	eq(t, "the change alone", r.ipvs.Ops(), []string{"UpdateDestination tcp/10.100.0.1:80 172.16.0.2:80"})
	eq(t, "drift not yet repaired", r.ipvs.Keys(), []string{"tcp/10.100.0.1:80", "tcp/10.100.1.1:80"})

	// The resync repairs it.
	if err := r.d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	want["tcp/10.100.0.1:80"] = []string{"172.16.0.1:80 nat 00001", "172.16.0.2:80 nat 00003"}
	for _, k := range r.ipvs.Keys() {
		eq(t, "repaired "+k, r.dests(t, k), want[k])
	}
	eq(t, "services repaired", r.ipvs.Keys(), []string{"tcp/10.100.0.1:80", "tcp/10.100.1.1:80", "tcp/10.100.2.1:80"})

	// A change that meets an entry removed by hand fails, and the same
	// reconcile compares everything and repairs it.
	_ = r.ipvs.DelDestination(&svc1, &ipvs.Destination{Address: netip.MustParseAddr("172.16.1.1").AsSlice(), Port: 80})
	c = proto.Clone(c).(*shoalv1.Config)
	c.Serial++
	c.Services[1].RealServers[0].Weight = proto.Uint32(4)
	r.d.SetConfig(c)
	if err := r.d.reconcile(compareChange); err != nil {
		t.Fatalf("a change that met drift: %v", err)
	}
	eq(t, "repaired in the same reconcile", r.dests(t, "tcp/10.100.1.1:80"), []string{"172.16.1.1:80 nat 00004", "172.16.1.2:80 nat 00001"})

	// A failed change leaves the state unknown: the next change compares
	// the whole table, and the one after is a difference again.
	r.ipvs.FailNext("UpdateDestination", syscall.EIO)
	c = proto.Clone(c).(*shoalv1.Config)
	c.Serial++
	c.Services[2].RealServers[0].Weight = proto.Uint32(6)
	r.d.SetConfig(c)
	if err := r.d.reconcile(compareChange); err != nil {
		t.Fatalf("the whole comparison after a failed change: %v", err)
	}
	eq(t, "applied by the whole comparison", r.dests(t, "tcp/10.100.2.1:80"), []string{"172.16.2.1:80 nat 00006", "172.16.2.2:80 nat 00001"})
	r.ipvs.Reads()
	c = proto.Clone(c).(*shoalv1.Config)
	c.Serial++
	c.Services[2].RealServers[0].Weight = proto.Uint32(7)
	r.d.SetConfig(c)
	if err := r.d.reconcile(compareChange); err != nil {
		t.Fatal(err)
	}
	if n := r.ipvs.Reads(); n != 0 {
		t.Errorf("after a clean whole comparison a change listed the kernel %d times", n)
	}
}

// TestSweepComparesAPartEachPeriod: the periodic resync of a table larger
// than sweepEntries reads the services of one part alone, with their
// destinations, and looks for a few others; a destination changed by hand
// in every service is repaired part by part, all of them within
// sweepParts periods, as is a service deleted or changed by hand and a
// verdict nobody told of; a flush is repaired at the next period,
// whatever the parts.
func TestSweepComparesAPartEachPeriod(t *testing.T) {
	r := newRig(t, ModeIPVS, "")
	const services = 40
	c := bigConfig(services, 9) // 400 entries
	r.apply(t, c)
	r.d.sweepEntries = 100 // 4 parts
	const parts = 4
	weight := func(key string) string { return r.dests(t, key)[0] }
	want := map[string]string{}
	for _, k := range r.ipvs.Keys() {
		want[k] = weight(k)
		svc, ds, _ := r.ipvs.Service(k)
		d := ds[0]
		d.Weight = 50
		_ = r.ipvs.UpdateDestination(&svc, &d)
	}
	r.ipvs.Ops()
	sweep := func() (reads int) {
		r.ipvs.Reads()
		if err := r.d.sweep(nil); err != nil {
			t.Fatal(err)
		}
		return r.ipvs.Reads()
	}
	repaired := func() (n int) {
		for k, w := range want {
			if weight(k) == w {
				n++
			}
		}
		return n
	}
	total := 0
	for i := range parts {
		reads := sweep()
		got := repaired()
		part := got - total
		total = got
		// A read of each of the part's services and a listing of its
		// destinations, and the sentinels: no listing of every service.
		if wantReads := 2*part + min(sweepSentinels, services-part); part == 0 || part >= services || reads != wantReads {
			t.Errorf("sweep %d repaired %d services with %d reads, want a part and %d reads", i, part, reads, wantReads)
		}
	}
	if total != services {
		t.Errorf("%d sweeps repaired %d services, want all %d", parts, total, services)
	}
	if got := testutil.ToFloat64(resyncParts); got != parts {
		t.Errorf("shoal_dataplane_resync_parts %v, want %d", got, parts)
	}
	if n := len(r.ipvs.Ops()); n != services {
		t.Errorf("%d sweeps made %d changes, want one a service (%d)", parts, n, services)
	}

	// A service deleted or changed by hand: within as many periods.
	for _, k := range []string{"tcp/10.100.3.1:80", "tcp/10.100.17.1:80"} {
		svc, _, _ := r.ipvs.Service(k)
		_ = r.ipvs.DelService(&svc)
	}
	svc, _, _ := r.ipvs.Service("tcp/10.100.5.1:80")
	svc.SchedName = "rr"
	_ = r.ipvs.UpdateService(&svc)
	for range parts {
		sweep()
	}
	if got := len(r.ipvs.Keys()); got != services {
		t.Errorf("after %d sweeps %d services, want %d", parts, got, services)
	}
	if s, _, _ := r.ipvs.Service("tcp/10.100.5.1:80"); s.SchedName != "wlc" {
		t.Errorf("scheduler changed by hand still %s after %d sweeps", s.SchedName, parts)
	}

	// A flush: at the next period, every service and destination.
	r.ipvs.Flush()
	sweep()
	if got := len(r.ipvs.Keys()); got != services {
		t.Errorf("after a flush and one sweep %d services, want %d", got, services)
	}
	if got := repaired(); got != services {
		t.Errorf("after a flush and one sweep %d services as configured, want %d", got, services)
	}

	// A verdict the health checker did not tell of (a missed
	// HealthChanged): asked about again within as many periods, a part
	// at a time.
	r.health.mu.Lock()
	told := r.health.told
	r.health.told = nil
	r.health.mu.Unlock()
	r.health.set("svc0007", "172.16.7.1:80", false)
	r.health.questions()
	for i := range parts {
		sweep()
		if q := r.health.questions(); q == 0 || q >= services*9 {
			t.Errorf("sweep %d asked about %d real servers, want a part of the %d", i, q, services*9)
		}
	}
	if got := r.dests(t, "tcp/10.100.7.1:80"); len(got) != 8 || strings.HasPrefix(got[0], "172.16.7.1:80 ") {
		t.Errorf("a server down without a word: after %d sweeps %q", parts, got)
	}
	r.health.mu.Lock()
	r.health.told = told
	r.health.mu.Unlock()
	r.health.set("svc0007", "172.16.7.1:80", true)
	if err := r.d.reconcile(compareChange); err != nil {
		t.Fatal(err)
	}

	// A change the reconcile loop has not applied yet when the resync
	// comes is applied by it, whatever part its service is in.
	for i := range services {
		c = withService(c, i, func(vs *shoalv1.VirtualService) { vs.RealServers[1].Weight = proto.Uint32(7) })
	}
	r.d.SetConfig(c)
	sweep()
	for _, k := range r.ipvs.Keys() {
		if got := r.dests(t, k)[1]; !strings.HasSuffix(got, " 00007") {
			t.Errorf("%s: %s after the sweep, want weight 7", k, got)
		}
	}
}

// TestChangeGoesBetweenSweepSlices: a periodic resync holds the reconcile
// lock for one slice of its part at a time; a change made between two
// slices is applied there, and the rest of the sweep compares the kernel
// with the table the change made, leaving it be.
func TestChangeGoesBetweenSweepSlices(t *testing.T) {
	r := newRig(t, ModeIPVS, "")
	const services = 200
	c := bigConfig(services, 2)
	r.d.SetConfig(c)
	if err := r.d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	r.ipvs.Ops()
	slicesSeen := 0
	var changed []string
	err := r.d.sweep(func() bool {
		slicesSeen++
		if slicesSeen > 1 {
			return true
		}
		// What Run does between two slices when a change is waiting.
		for i := range services {
			if i%20 == 0 {
				c = withService(c, i, func(vs *shoalv1.VirtualService) { vs.RealServers[0].Weight = proto.Uint32(5) })
			}
		}
		r.d.SetConfig(c)
		if err := r.d.reconcile(compareChange); err != nil {
			t.Fatal(err)
		}
		changed = r.ipvs.Ops()
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := (services + sweepSlice - 1) / sweepSlice; slicesSeen != want-1 {
		t.Errorf("the sweep of %d services let changes go %d times, want between each of its %d slices", services, slicesSeen, want)
	}
	if len(changed) != services/20 {
		t.Errorf("the change between two slices made %q, want %d weight updates", changed, services/20)
	}
	if ops := r.ipvs.Ops(); len(ops) != 0 {
		t.Errorf("the rest of the sweep changed %q, want nothing", ops)
	}
	for i := 0; i < services; i += 20 {
		if got := r.dests(t, fmt.Sprintf("tcp/10.%d.%d.1:80", 100+i/250, i%250))[0]; !strings.HasSuffix(got, " 00005") {
			t.Errorf("service %d: %s, want weight 5", i, got)
		}
	}
}

// TestChangeCostsTheServicesItChanges: applying a change of k services
// (SetConfig as the leader, then the reconcile of the difference) costs
// about the same at 10,000 services as at 1,000: nothing is made for every
// service of the table, neither by the dataplane's desired table nor by the
// leader's addresses.
func TestChangeCostsTheServicesItChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("programs 10,000 services")
	}
	allocs := map[int]float64{}
	for _, n := range []int{1000, 10000} {
		r := newRig(t, ModeIPVS, "")
		c := bigConfig(n, 10)
		r.d.SetConfig(c)
		r.d.SetLeader(true)
		if err := r.d.Reconcile(); err != nil {
			t.Fatal(err)
		}
		weight := uint32(1)
		next := make([]*shoalv1.Config, 0, 40)
		for range cap(next) {
			weight++
			// k = 3 services changed per configuration, made
			// beforehand: raftfsm's work, not the dataplane's.
			for _, i := range []int{n / 3, n / 2, n - 1} {
				c = withService(c, i, func(vs *shoalv1.VirtualService) { vs.RealServers[4].Weight = proto.Uint32(weight) })
			}
			next = append(next, c)
		}
		r.ipvs.Ops()
		i := 0
		allocs[n] = testing.AllocsPerRun(len(next)-1, func() {
			r.d.SetConfig(next[i])
			i++
			if err := r.d.reconcile(compareChange); err != nil {
				t.Fatal(err)
			}
		})
		if ops := r.ipvs.Ops(); len(ops) != 3*len(next) {
			t.Fatalf("%d changes of 3 weights made %d kernel changes", len(next), len(ops))
		}
	}
	t.Logf("allocations per change of 3 services: %.0f at 1,000 services, %.0f at 10,000", allocs[1000], allocs[10000])
	if allocs[10000] > allocs[1000]*1.2+10 {
		t.Errorf("a change of 3 services allocates %.0f times at 10,000 services, %.0f at 1,000: it costs the table, not the change", allocs[10000], allocs[1000])
	}
}
