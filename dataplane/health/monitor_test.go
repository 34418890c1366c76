package health

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startMonitor runs a monitor until the test ends.
func startMonitor(t *testing.T, o Options) (*Monitor, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	o.NodeID = "n1"
	o.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	m := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return m, reg
}

// countingListener accepts connections on 127.0.0.1 and counts them.
type countingListener struct {
	ap       netip.AddrPort
	accepted atomic.Int64
}

func listenCounting(t *testing.T) *countingListener {
	l := &countingListener{}
	l.ap = serveTCP(t, func(c net.Conn) { l.accepted.Add(1); io.Copy(io.Discard, c) })
	return l
}

func fastCheck() *shoalv1.HealthCheck {
	return &shoalv1.HealthCheck{Kind: "tcp", Interval: durationpb.New(20 * time.Millisecond),
		Timeout: durationpb.New(5 * time.Second), Rise: 1, Fall: 1}
}

func service(name string, hc *shoalv1.HealthCheck, servers ...netip.AddrPort) *shoalv1.VirtualService {
	s := &shoalv1.VirtualService{Name: name, Vip: &shoalv1.Address{Address: "192.0.2.1"}, Port: 80, Protocol: "tcp", HealthCheck: hc}
	for _, ap := range servers {
		s.RealServers = append(s.RealServers, &shoalv1.RealServer{Address: ap.Addr().String(), Port: uint32(ap.Port())})
	}
	return s
}

func TestMonitorUpDownAndOnChange(t *testing.T) {
	up := listenCounting(t)
	down := closedPort(t)
	var changes atomic.Int64
	m, reg := startMonitor(t, Options{OnChange: func() { changes.Add(1) }})
	events, cancel := m.Subscribe(16)
	defer cancel()
	m.SetConfig(&shoalv1.Config{Services: []*shoalv1.VirtualService{service("web", fastCheck(), up.ap, down)}})

	eventually(t, 5*time.Second, "listening server comes up", func() bool { return m.Healthy("web", up.ap) })
	// The verdict is visible as soon as it is taken; OnChange follows
	// once the monitor's lock is released.
	eventually(t, 5*time.Second, "OnChange called after a transition", func() bool { return changes.Load() > 0 })
	// Each server's first check gives it a verdict, and a transition event:
	// up for the listener, down for the closed port.
	got := map[uint16]string{}
	for len(got) < 2 {
		select {
		case ev := <-events:
			if ev.Address != "127.0.0.1" || ev.Node != "n1" || ev.Service != "web" {
				t.Errorf("event %v", ev)
			}
			got[uint16(ev.Port)] = ev.State
		case <-time.After(5 * time.Second):
			t.Fatalf("transition events: %v", got)
		}
	}
	if got[up.ap.Port()] != "up" || got[down.Port()] != "down" {
		t.Errorf("first transitions %v, want up for %d and down for %d", got, up.ap.Port(), down.Port())
	}
	// The closed port has been checked and stays down with a reason.
	eventually(t, 5*time.Second, "down server reports its error", func() bool {
		for _, st := range m.Status() {
			if st.Port == uint32(down.Port()) {
				return strings.Contains(st.LastError, "connection refused") && st.State == "down"
			}
		}
		return false
	})
	if m.Healthy("web", down) {
		t.Error("closed port judged healthy")
	}
	st := m.Status()
	if len(st) != 2 || st[0].LastLatency == nil || st[0].Since == nil || st[0].Node != "n1" {
		t.Fatalf("status %v", st)
	}

	upLabels := map[string]string{"service": "web", "server": up.ap.String()}
	downLabels := map[string]string{"service": "web", "server": down.String()}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   func(float64) bool
	}{
		{"shoal_health_transitions_total", map[string]string{"service": "web", "to": "up"}, func(v float64) bool { return v >= 1 }},
		{"shoal_health_check_failures_total", map[string]string{"service": "web", "cause": "refused"}, func(v float64) bool { return v >= 1 }},
		{"shoal_health_check_duration_seconds", map[string]string{"service": "web", "result": "ok"}, func(v float64) bool { return v >= 1 }},
		{"shoal_health_up", upLabels, func(v float64) bool { return v == 1 }},
		{"shoal_health_up", downLabels, func(v float64) bool { return v == 0 }},
	} {
		if v, ok := metricValue(t, reg, c.name, c.labels); !ok || !c.want(v) {
			t.Errorf("%s%v = %v (present %t)", c.name, c.labels, v, ok)
		}
	}
	m.SetConfig(&shoalv1.Config{})
	if _, ok := metricValue(t, reg, "shoal_health_up", upLabels); ok {
		t.Error("removed server keeps its shoal_health_up series")
	}
}

// metricValue returns the value of a counter or gauge, or a histogram's
// sample count, with exactly the given labels.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func TestMonitorConfigChangeKeepsState(t *testing.T) {
	a, b := listenCounting(t), listenCounting(t)
	m, _ := startMonitor(t, Options{})
	hc := fastCheck()
	hc.Rise = 1
	hc.Fall = 1000 // once up, stays up whatever happens: the test is about keeping state
	cfg := &shoalv1.Config{Services: []*shoalv1.VirtualService{service("web", hc, a.ap)}}
	m.SetConfig(cfg)
	eventually(t, 5*time.Second, "a comes up", func() bool { return m.Healthy("web", a.ap) })
	sinceOf := func(ap netip.AddrPort) time.Time {
		for _, st := range m.Status() {
			if st.Port == uint32(ap.Port()) {
				return st.Since.AsTime()
			}
		}
		t.Fatalf("%s not in status", ap)
		return time.Time{}
	}
	since := sinceOf(a.ap)
	m.mu.Lock()
	before := m.servers[key{"web", a.ap}].checkers[0]
	m.mu.Unlock()

	same := func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.servers[key{"web", a.ap}].checkers[0] == before && before.tr.up
	}
	// A weight change and another server's arrival leave a alone.
	cfg = proto.Clone(cfg).(*shoalv1.Config)
	cfg.Services[0].RealServers[0].Weight = proto.Uint32(50)
	cfg.Services[0].RealServers = append(cfg.Services[0].RealServers,
		&shoalv1.RealServer{Address: "127.0.0.1", Port: uint32(b.ap.Port())})
	m.SetConfig(cfg)
	if !same() {
		t.Fatal("weight change or a new neighbour reset a's state")
	}
	eventually(t, 5*time.Second, "b comes up", func() bool { return m.Healthy("web", b.ap) })
	if got := sinceOf(a.ap); !got.Equal(since) {
		t.Errorf("a's since moved from %s to %s", since, got)
	}

	// A changed check definition keeps the verdict.
	cfg = proto.Clone(cfg).(*shoalv1.Config)
	cfg.Services[0].HealthCheck.Timeout = durationpb.New(2 * time.Second)
	m.SetConfig(cfg)
	if same() {
		t.Fatal("changed check kept the old definition")
	}
	if !m.Healthy("web", a.ap) || !m.Healthy("web", b.ap) {
		t.Fatal("changed check dropped the verdict")
	}
}

func TestMonitorRemovedServerStops(t *testing.T) {
	// The server accepts and never answers; the check's timeout is a minute,
	// so only the removal can end it.
	var (
		mu     sync.Mutex
		open   int
		closed = make(chan struct{}, 16)
	)
	hang := serveTCP(t, func(c net.Conn) {
		mu.Lock()
		open++
		mu.Unlock()
		io.Copy(io.Discard, c) // returns when the checker closes
		closed <- struct{}{}
	})
	m, _ := startMonitor(t, Options{})
	hc := &shoalv1.HealthCheck{Kind: "send-expect", Expect: "never", Interval: durationpb.New(10 * time.Millisecond),
		Timeout: durationpb.New(time.Minute)}
	m.SetConfig(&shoalv1.Config{Services: []*shoalv1.VirtualService{service("web", hc, hang)}})
	eventually(t, 5*time.Second, "check connects", func() bool { mu.Lock(); defer mu.Unlock(); return open == 1 })

	m.SetConfig(&shoalv1.Config{})
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("removed server's running check was not stopped")
	}
	if st := m.Status(); len(st) != 0 {
		t.Fatalf("status after removal: %v", st)
	}
	m.mu.Lock()
	queued := m.queue.Len()
	m.mu.Unlock()
	if queued != 0 {
		t.Fatalf("%d checks still scheduled", queued)
	}
}

func TestMonitorInactiveNotChecked(t *testing.T) {
	l := listenCounting(t)
	m, _ := startMonitor(t, Options{})
	off := service("off", fastCheck(), l.ap)
	off.Active = proto.Bool(false)
	on := service("on", fastCheck(), l.ap)
	on.RealServers[0].Active = proto.Bool(false)
	other := listenCounting(t)
	on.RealServers = append(on.RealServers, &shoalv1.RealServer{Address: "127.0.0.1", Port: uint32(other.ap.Port())})
	m.SetConfig(&shoalv1.Config{Services: []*shoalv1.VirtualService{off, on}})
	eventually(t, 5*time.Second, "active server is checked", func() bool { return m.Healthy("on", other.ap) })
	if n := l.accepted.Load(); n != 0 {
		t.Fatalf("inactive servers were checked %d times", n)
	}
	if st := m.Status(); len(st) != 1 {
		t.Fatalf("status lists inactive servers: %v", st)
	}
}

func TestMonitorKindNoneAndInitiallyUp(t *testing.T) {
	var changes atomic.Int64
	m, _ := startMonitor(t, Options{OnChange: func() { changes.Add(1) }})
	nowhere := closedPort(t)
	none := service("none", &shoalv1.HealthCheck{Kind: "none"}, nowhere)
	hc := fastCheck()
	hc.InitiallyUp = true
	hc.Fall = 3
	hc.Interval = durationpb.New(time.Hour) // first run lands within the hour: never, in this test
	initUp := service("initup", hc, nowhere)
	m.SetConfig(&shoalv1.Config{Services: []*shoalv1.VirtualService{initUp, none}})
	if !m.Healthy("none", nowhere) || !m.Healthy("initup", nowhere) {
		t.Fatal("kind none or initially_up server not up at once")
	}
	if changes.Load() == 0 {
		t.Error("new up servers did not trigger OnChange")
	}
	// Port 0 is read as the service port.
	svc := service("port0", &shoalv1.HealthCheck{Kind: "none"})
	svc.RealServers = []*shoalv1.RealServer{{Address: "10.0.0.1"}}
	m.SetConfig(&shoalv1.Config{Services: []*shoalv1.VirtualService{svc}})
	if !m.Healthy("port0", netip.MustParseAddrPort("10.0.0.1:0")) || !m.Healthy("port0", netip.MustParseAddrPort("10.0.0.1:80")) {
		t.Fatal("port-0 real server not found by its service port")
	}
	if m.Healthy("none", nowhere) {
		t.Fatal("removed service still healthy")
	}
}

func TestMonitorSchedulesByClock(t *testing.T) {
	// With a fake clock nothing runs until time moves: the scheduler waits
	// on the clock's timer, not on sleeps of its own.
	l := listenCounting(t)
	clk := newFakeClock()
	m, _ := startMonitor(t, Options{Clock: clk})
	hc := fastCheck()
	hc.Interval = durationpb.New(10 * time.Second)
	m.SetConfig(&shoalv1.Config{Services: []*shoalv1.VirtualService{service("web", hc, l.ap)}})
	for i := 1; i <= 3; i++ {
		clk.Advance(11 * time.Second) // past the first run (< interval) and each jittered interval (≤ 11s)
		eventually(t, 5*time.Second, "check runs after the clock moves", func() bool { return l.accepted.Load() >= int64(i) })
	}
	if !m.Healthy("web", l.ap) {
		t.Fatal("not up after three passing checks")
	}
	if n := l.accepted.Load(); n != 3 {
		t.Fatalf("%d checks after 3 advances, want 3", n)
	}
}

func TestMonitorConcurrencyBound(t *testing.T) {
	// Ten servers that never answer; at most two checks may hold a
	// connection at any moment.
	var mu sync.Mutex
	var open, peak, total int
	hang := serveTCP(t, func(c net.Conn) {
		mu.Lock()
		open++
		total++
		peak = max(peak, open)
		mu.Unlock()
		io.Copy(io.Discard, c)
		mu.Lock()
		open--
		mu.Unlock()
	})
	m, _ := startMonitor(t, Options{Concurrency: 2})
	hc := &shoalv1.HealthCheck{Kind: "send-expect", Expect: "x", Interval: durationpb.New(10 * time.Millisecond),
		Timeout: durationpb.New(30 * time.Millisecond)}
	var svcs []*shoalv1.VirtualService
	for i := range 10 {
		svcs = append(svcs, service(string(rune('a'+i)), hc, hang))
	}
	m.SetConfig(&shoalv1.Config{Services: svcs})
	eventually(t, 10*time.Second, "20 checks ran", func() bool { mu.Lock(); defer mu.Unlock(); return total >= 20 })
	mu.Lock()
	defer mu.Unlock()
	// The server notices a close a moment after the checker's slot frees,
	// so a freed slot's next connection may overlap the old one: up to 2×2,
	// still well below the 10 an unbounded monitor would open.
	if peak > 4 {
		t.Fatalf("%d checks connected at once with Concurrency 2", peak)
	}
}

func TestMonitorIPv6AndMappedQueries(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	v6 := netip.MustParseAddrPort(ln.Addr().String())
	v4 := listenCounting(t)
	m, _ := startMonitor(t, Options{})
	m.SetConfig(&shoalv1.Config{Services: []*shoalv1.VirtualService{service("web", fastCheck(), v6, v4.ap)}})
	eventually(t, 5*time.Second, "IPv6 server comes up", func() bool { return m.Healthy("web", v6) })
	// The dataplane may hand IPv4 addresses over in their 16-byte form.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(v4.ap.Addr().As16()), v4.ap.Port())
	eventually(t, 5*time.Second, "IPv4 server found by its mapped address", func() bool { return m.Healthy("web", mapped) })
}

// TestMonitorChangeCostsOneService: a service whose pointer is the one the
// last SetConfig had is not read again (raftfsm shares every service a
// change did not touch); a new, replaced, removed or deactivated service
// is. The servers of the shared services keep their state.
func TestMonitorChangeCostsOneService(t *testing.T) {
	m := New(Options{NodeID: "n1", Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	none := &shoalv1.HealthCheck{Kind: KindNone}
	ap := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	a := service("a", none, ap("10.0.0.1:80"), ap("10.0.0.2:80"))
	b := service("b", none, ap("10.0.1.1:80"))
	c := service("c", none, ap("10.0.2.1:80"))
	m.SetConfig(&shoalv1.Config{Services: []*shoalv1.VirtualService{a, b, c}})
	servers := func(svc string) *svcServers {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.svcs[svc]
	}
	status := func() []string {
		var out []string
		for _, st := range m.Status() {
			out = append(out, st.Service+" "+st.Address)
		}
		return out
	}
	a1 := servers("a")

	// b replaced (one server out, one in), d new; a and c shared.
	b2 := proto.Clone(b).(*shoalv1.VirtualService)
	b2.RealServers = []*shoalv1.RealServer{{Address: "10.0.1.2"}}
	d := service("d", none, ap("10.0.3.1:80"))
	m.SetConfig(&shoalv1.Config{Services: []*shoalv1.VirtualService{a, b2, c, d}})
	if got, want := strings.Join(status(), ","), "a 10.0.0.1,a 10.0.0.2,b 10.0.1.2,c 10.0.2.1,d 10.0.3.1"; got != want {
		t.Fatalf("servers %s, want %s", got, want)
	}
	if servers("a") != a1 {
		t.Error("a shared service's servers were made again")
	}
	// A port-0 question resolves with the replaced service's port.
	if !m.Healthy("b", ap("10.0.1.2:0")) || m.Healthy("b", ap("10.0.1.1:0")) {
		t.Error("port-0 question about b answered from the old service")
	}

	// A shared service is not read again: not even an edit in place, which
	// SetConfig's contract forbids, is seen.
	a.RealServers = append(a.RealServers, &shoalv1.RealServer{Address: "10.0.0.3", Port: 80})
	// c deactivated, b gone, d shared.
	c2 := proto.Clone(c).(*shoalv1.VirtualService)
	c2.Active = proto.Bool(false)
	m.SetConfig(&shoalv1.Config{Services: []*shoalv1.VirtualService{a, c2, d}})
	if got, want := strings.Join(status(), ","), "a 10.0.0.1,a 10.0.0.2,d 10.0.3.1"; got != want {
		t.Fatalf("servers %s, want %s", got, want)
	}
	if m.Healthy("b", ap("10.0.1.2:0")) || m.Healthy("c", ap("10.0.2.1:80")) {
		t.Error("a removed or inactive service's server is still healthy")
	}

	// c active again, as it was: checked again.
	m.SetConfig(&shoalv1.Config{Services: []*shoalv1.VirtualService{a, c, d}})
	if !m.Healthy("c", ap("10.0.2.1:80")) {
		t.Error("c's server not back")
	}
	m.SetConfig(nil)
	if got := status(); len(got) != 0 {
		t.Errorf("after SetConfig(nil): %v", got)
	}
}

// BenchmarkSetConfigOneChange is what a weight change costs the monitor on
// every node at 10,000 services × 10 real servers (unchecked, kind none):
// the table as raftfsm hands it over, every other service shared.
func BenchmarkSetConfigOneChange(b *testing.B) {
	const n = 10000
	c := scaleConfig(n, 10, &shoalv1.HealthCheck{Kind: KindNone})
	m := New(Options{NodeID: "n1", Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	m.SetConfig(c)
	b.ResetTimer()
	for i := range b.N {
		next := &shoalv1.Config{Serial: c.Serial + 1, Services: slices.Clone(c.Services)}
		vs := proto.Clone(c.Services[n/2]).(*shoalv1.VirtualService)
		vs.RealServers[3].Weight = proto.Uint32(uint32(i%100 + 1))
		next.Services[n/2] = vs
		c = next
		m.SetConfig(c)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/change")
}
