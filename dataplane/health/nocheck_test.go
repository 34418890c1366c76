package health

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestCheckBecomesNoneAndBack: a service's check changed to kind none
// stops every check and series of its servers and brings the down one up
// (with a transition, as before); changed back, the servers keep their
// verdict, get their series again and are checked from then on.
func TestCheckBecomesNoneAndBack(t *testing.T) {
	l := listenCounting(t)
	nowhere := closedPort(t)
	var changes atomic.Int64
	// Checks run only when the test moves the clock: a check given back
	// must not run before the test has looked at the kept verdict.
	clk := newFakeClock()
	m, reg := startMonitor(t, Options{Clock: clk, OnChange: func() { changes.Add(1) }})
	events, cancel := m.Subscribe(16)
	defer cancel()
	hc := fastCheck()
	hc.Interval = durationpb.New(10 * time.Second)
	checked := &shoalv1.Config{Services: []*shoalv1.VirtualService{service("web", hc, l.ap, nowhere)}}
	m.SetConfig(checked)
	clk.Advance(firstCheckSpread)
	judged := func(ap netip.AddrPort) bool { return !m.Unchecked("web", ap) }
	eventually(t, 5*time.Second, "both judged", func() bool { return judged(l.ap) && judged(nowhere) })
	if !m.Healthy("web", l.ap) || m.Healthy("web", nowhere) {
		t.Fatal("want the listener up and the closed port down")
	}
	for len(events) > 0 {
		<-events // the first checks' transitions
	}
	upSince := statusOf(t, m, l.ap).Since.AsTime()
	if n := seriesOf(t, reg, "shoal_health_up"); n != 2 {
		t.Fatalf("%d shoal_health_up series for 2 checked servers", n)
	}

	none := proto.Clone(checked).(*shoalv1.Config)
	none.Services[0].HealthCheck = &shoalv1.HealthCheck{Kind: KindNone}
	before := changes.Load()
	m.SetConfig(none)
	if !m.Healthy("web", l.ap) || !m.Healthy("web", nowhere) || m.Unchecked("web", nowhere) {
		t.Fatal("kind none servers not up")
	}
	select {
	case ev := <-events:
		if ev.Port != uint32(nowhere.Port()) || ev.State != StateUp || ev.Reason != reasonNoCheck {
			t.Errorf("event %v, want %s up: %s", ev, nowhere, reasonNoCheck)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no transition for the down server that lost its check")
	}
	if changes.Load() == before {
		t.Error("the dataplane was not told of the server that came up")
	}
	select {
	case ev := <-events:
		t.Errorf("second event %v: the up server did not change", ev)
	default:
	}
	st := statusOf(t, m, l.ap)
	if st.State != StateUp || st.Reason != reasonNoCheck || !st.Since.AsTime().Equal(upSince) || st.LastError != "" {
		t.Errorf("status of the server that was up: %v (since %s before)", st, upSince)
	}
	if st := statusOf(t, m, nowhere); st.State != StateUp || st.Reason != reasonNoCheck {
		t.Errorf("status of the server that was down: %v", st)
	}
	if n := seriesOf(t, reg, "shoal_health_up"); n != 0 {
		t.Errorf("%d shoal_health_up series left for servers without checks", n)
	}
	if v, _ := metricValue(t, reg, "shoal_health_transitions_total", map[string]string{"service": "web", "to": "up"}); v != 2 {
		t.Errorf("transitions to up %v, want 2 (the listener's first check, the closed port's none)", v)
	}
	m.mu.Lock()
	servers, queued := len(m.servers), m.queue.Len()
	m.mu.Unlock()
	if servers != 0 || queued != 0 {
		t.Errorf("%d servers with checkers, %d checks scheduled after the checks became none", servers, queued)
	}

	// Checked again: up, as a changed check keeps its verdict, until the
	// check says otherwise.
	m.SetConfig(checked)
	if !m.Healthy("web", l.ap) || !m.Healthy("web", nowhere) || m.Unchecked("web", nowhere) {
		t.Fatal("servers given a check again lost their verdict at once")
	}
	if st := statusOf(t, m, l.ap); !st.Since.AsTime().Equal(upSince) || st.Reason != reasonNoCheck {
		t.Errorf("status once checked again: %v", st)
	}
	if n := seriesOf(t, reg, "shoal_health_up"); n != 2 {
		t.Errorf("%d shoal_health_up series once checked again, want 2", n)
	}
	eventually(t, 5*time.Second, "checks back on the schedule", func() bool { return idle(m) })
	clk.Advance(hc.Interval.AsDuration())
	eventually(t, 5*time.Second, "the closed port's check takes it down", func() bool { return !m.Healthy("web", nowhere) })
	if !m.Healthy("web", l.ap) {
		t.Error("the listener went down")
	}
	if v, ok := metricValue(t, reg, "shoal_health_up", map[string]string{"service": "web", "server": nowhere.String()}); !ok || v != 0 {
		t.Errorf("shoal_health_up of the closed port %v (present %t), want 0", v, ok)
	}
}

// TestNoCheckServersComeAndGo: servers without checks of a changed service
// are added and removed as its list says, keep their since while they
// stay, and answer a question about port 0 by the service's port.
func TestNoCheckServersComeAndGo(t *testing.T) {
	clk := newFakeClock()
	m, reg := startMonitor(t, Options{Clock: clk})
	none := &shoalv1.HealthCheck{Kind: KindNone}
	ap := netip.MustParseAddrPort
	svc := service("web", none, ap("10.0.0.2:80"), ap("10.0.0.1:80"))
	m.SetConfig(&shoalv1.Config{Services: []*shoalv1.VirtualService{svc}})
	t0 := clk.Now()
	clk.Advance(time.Minute)

	svc2 := proto.Clone(svc).(*shoalv1.VirtualService)
	svc2.Port = 8080
	svc2.RealServers = []*shoalv1.RealServer{{Address: "10.0.0.1", Port: 80}, {Address: "10.0.0.3"}, {Address: "10.0.0.4", Port: 80, Active: proto.Bool(false)}}
	m.SetConfig(&shoalv1.Config{Services: []*shoalv1.VirtualService{svc2}})
	var got []string
	for _, st := range m.Status() {
		got = append(got, netip.AddrPortFrom(netip.MustParseAddr(st.Address), uint16(st.Port)).String()+" "+st.State+" "+st.Since.AsTime().Sub(t0).String())
	}
	want := []string{"10.0.0.1:80 up 0s", "10.0.0.3:8080 up 1m0s"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("status %q, want %q", got, want)
	}
	for _, c := range []struct {
		ap      string
		healthy bool
	}{
		{"10.0.0.1:80", true},
		{"10.0.0.2:80", false}, // removed
		{"10.0.0.3:8080", true},
		{"10.0.0.3:0", true}, // the service's port
		{"10.0.0.4:80", false},
		{"[::ffff:10.0.0.1]:80", true},
	} {
		if h := m.Healthy("web", ap(c.ap)); h != c.healthy {
			t.Errorf("Healthy(web, %s) = %t, want %t", c.ap, h, c.healthy)
		}
	}
	m.SetConfig(nil)
	if st := m.Status(); len(st) != 0 || m.Healthy("web", ap("10.0.0.1:80")) {
		t.Errorf("after SetConfig(nil): %v", st)
	}
	m.mu.Lock()
	left := m.noCheck
	m.mu.Unlock()
	if left != 0 || seriesOf(t, reg, "shoal_health_up") != 0 {
		t.Errorf("%d servers without checks counted after SetConfig(nil)", left)
	}
}

func statusOf(t *testing.T, m *Monitor, ap netip.AddrPort) *shoalv1.RealServerHealth {
	t.Helper()
	for _, st := range m.Status() {
		if st.Port == uint32(ap.Port()) && st.Address == ap.Addr().String() {
			return st
		}
	}
	t.Fatalf("%s not in status", ap)
	return nil
}
