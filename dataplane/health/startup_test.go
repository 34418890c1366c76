package health

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoal-lb/shoal/migrate"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestTrackerUnchecked: a server with no verdict goes in on its first
// passing check whatever rise and reentry say, and out on its first failing
// one; from then on rise and reentry apply as to any server that failed.
func TestTrackerUnchecked(t *testing.T) {
	const s = time.Second
	r := rules{Rise: 3, Fall: 2, Reentry: 15 * s}
	clk := newFakeClock()
	obs := func(tr *tracker, ok bool) (transition, bool) {
		start := clk.Now()
		clk.Advance(10 * time.Millisecond)
		var err error
		if !ok {
			err = errors.New("connect 10.0.0.1:80: connection refused")
		}
		return tr.observe(observation{Start: start, End: clk.Now(), Err: err})
	}

	tr := newUncheckedTracker(r, clk.Now())
	if tr.up || !tr.unchecked {
		t.Fatalf("new tracker: up %t unchecked %t", tr.up, tr.unchecked)
	}
	got, changed := obs(&tr, true)
	if !changed || !got.Up || got.From != stateUnchecked || got.Reason != "first check passed" || !tr.up || tr.unchecked {
		t.Fatalf("first pass: %+v changed %t; tracker up %t unchecked %t", got, changed, tr.up, tr.unchecked)
	}
	// Up now, it needs fall failures to go down, as any up server.
	if _, changed := obs(&tr, false); changed {
		t.Fatal("one failure took a server with fall 2 down")
	}
	if got, changed := obs(&tr, false); !changed || got.Up || got.From != StateUp {
		t.Fatalf("second failure: %+v changed %t", got, changed)
	}

	tr = newUncheckedTracker(r, clk.Now())
	got, changed = obs(&tr, false)
	if !changed || got.Up || got.From != stateUnchecked || !strings.Contains(got.Reason, "connection refused") || tr.unchecked {
		t.Fatalf("first failure: %+v changed %t", got, changed)
	}
	// It failed: now it needs rise passes spanning reentry.
	var at time.Duration
	for at = 0; at < 30*s && !tr.up; at += 2 * s {
		clk.Advance(2 * s)
		obs(&tr, true)
	}
	if at < 14*s || at > 18*s {
		t.Errorf("a failed server came back after %s of passes, want the 15s of reentry", at)
	}

	// A changed check keeps "no verdict yet".
	tr = newUncheckedTracker(r, clk.Now()).withRules(rules{Rise: 1, Fall: 1})
	if !tr.unchecked || tr.up {
		t.Fatal("withRules gave an unchecked server a verdict")
	}
}

// toggleServer answers send-expect checks with "HTTP/1.0 200 OK" while ok
// is set, "ERR" otherwise, and counts the checks.
type toggleServer struct {
	ap     netip.AddrPort
	ok     atomic.Bool
	checks atomic.Int64
}

func serveToggle(t *testing.T) *toggleServer {
	s := &toggleServer{}
	s.ok.Store(true)
	s.ap = serveTCP(t, func(c net.Conn) {
		s.checks.Add(1)
		_, _ = bufio.NewReader(c).ReadString('\n')
		if s.ok.Load() {
			_, _ = c.Write([]byte("HTTP/1.0 200 OK\r\n\r\n"))
		} else {
			_, _ = c.Write([]byte("ERR\r\n"))
		}
	})
	return s
}

// idle says no check is in flight: every server is back on the schedule, so
// moving the fake clock cannot race a result.
func idle(m *Monitor) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.servers {
		for _, c := range s.checkers {
			if c.idx < 0 && c.probe.kind != KindNone {
				return false
			}
		}
	}
	return true
}

func reasonOf(m *Monitor, ap netip.AddrPort) string {
	for _, st := range m.Status() {
		if st.Port == uint32(ap.Port()) {
			return st.Reason
		}
	}
	return ""
}

// TestCutOverAfterImport models issue 23's report: a NAT lvs.cf with
// reentry = 15, imported into a cluster whose routers start checking its
// real server. The server has never failed, so it goes in on its first
// passing check, at once, not after 15s of passes; reentry keeps out only a
// server that failed. An lvsd restart is the same: no verdict, first check.
func TestCutOverAfterImport(t *testing.T) {
	srv := serveToggle(t)
	lvscf := fmt.Sprintf(`network = nat
virtual web {
	address = 192.0.2.250 eth0:1
	port = %d
	send = "GET / HTTP/1.0\r\n\r\n"
	expect = "HTTP"
	scheduler = wlc
	protocol = tcp
	timeout = 6
	reentry = 15
	server real1 {
		address = %s
		weight = 1
	}
}
`, srv.ap.Port(), srv.ap.Addr())
	res, err := migrate.Import([]byte(lvscf), migrate.Options{Format: migrate.FormatLVSCF})
	if err != nil {
		t.Fatal(err)
	}
	cfg := res.Config
	hc := cfg.GetServices()[0].GetHealthCheck()
	interval := hc.GetInterval().AsDuration()
	if hc.GetReentry().AsDuration() != 15*time.Second || hc.GetInitiallyUp() {
		t.Fatalf("imported check %v", hc)
	}

	clk := newFakeClock()
	m, _ := startMonitor(t, Options{Clock: clk})
	m.SetConfig(cfg)
	t0 := clk.Now()
	if m.Healthy("web", srv.ap) || !m.Unchecked("web", srv.ap) {
		t.Fatal("a new server has a verdict before its first check")
	}
	clk.Advance(firstCheckSpread)
	eventually(t, 5*time.Second, "the first passing check brings the server in", func() bool { return m.Healthy("web", srv.ap) })
	if took := clk.Now().Sub(t0); took >= interval {
		t.Errorf("in after %s, want within one interval (%s)", took, interval)
	}
	if n := srv.checks.Load(); n != 1 || reasonOf(m, srv.ap) != "first check passed" {
		t.Errorf("in after %d checks, reason %q; want 1, first check passed", n, reasonOf(m, srv.ap))
	}

	// step moves to the next check and waits for its result.
	step := func() {
		t.Helper()
		eventually(t, 5*time.Second, "no check in flight", func() bool { return idle(m) })
		n := srv.checks.Load()
		clk.Advance(interval + interval/10) // past any jittered interval, never past two
		eventually(t, 5*time.Second, "a check ran", func() bool { return srv.checks.Load() > n })
		eventually(t, 5*time.Second, "its result is in", func() bool { return idle(m) })
	}
	// It fails: out after fall (3) failures.
	srv.ok.Store(false)
	for i := 0; i < 3 && m.Healthy("web", srv.ap); i++ {
		step()
	}
	if m.Healthy("web", srv.ap) {
		t.Fatal("still in after 3 failing checks")
	}
	// It recovers: now reentry applies, 15s of passes.
	srv.ok.Store(true)
	var passing time.Duration
	step()
	for !m.Healthy("web", srv.ap) && passing < time.Minute {
		step()
		passing += interval + interval/10
	}
	if passing < 15*time.Second || passing > 15*time.Second+2*interval {
		t.Errorf("a server that failed came back after %s of passes, want reentry's 15s", passing)
	}
	if !strings.Contains(reasonOf(m, srv.ap), "(reentry 15s)") {
		t.Errorf("reason %q", reasonOf(m, srv.ap))
	}

	// lvsd restarts: a new monitor knows no verdicts, and takes the server
	// back on its first passing check, not after reentry.
	m2, _ := startMonitor(t, Options{Clock: clk})
	m2.SetConfig(cfg)
	if !m2.Unchecked("web", srv.ap) {
		t.Fatal("after a restart the server has a verdict before its first check")
	}
	t1 := clk.Now()
	clk.Advance(firstCheckSpread)
	eventually(t, 5*time.Second, "after a restart, the first passing check brings the server in", func() bool { return m2.Healthy("web", srv.ap) })
	if took := clk.Now().Sub(t1); took >= interval {
		t.Errorf("in after %s after a restart", took)
	}
}

// TestConfigApplyAddsServer: a server added to a service with reentry goes
// in on its first passing check, while the servers already in stay in.
func TestConfigApplyAddsServer(t *testing.T) {
	a, b := serveToggle(t), serveToggle(t)
	clk := newFakeClock()
	m, _ := startMonitor(t, Options{Clock: clk})
	hc := fastCheck()
	hc.Kind, hc.Send, hc.Expect = KindSendExpect, "GET / HTTP/1.0\\r\\n\\r\\n", "HTTP"
	hc.Reentry = durationpb.New(15 * time.Second)
	hc.Interval = durationpb.New(2 * time.Second)
	cfg := &shoalv1.Config{Services: []*shoalv1.VirtualService{service("web", hc, a.ap)}}
	m.SetConfig(cfg)
	clk.Advance(firstCheckSpread)
	eventually(t, 5*time.Second, "a comes in", func() bool { return m.Healthy("web", a.ap) })

	cfg = &shoalv1.Config{Services: []*shoalv1.VirtualService{service("web", hc, a.ap, b.ap)}}
	m.SetConfig(cfg)
	if !m.Healthy("web", a.ap) || m.Healthy("web", b.ap) || !m.Unchecked("web", b.ap) || m.Unchecked("web", a.ap) {
		t.Fatal("adding b changed a, or gave b a verdict before its check")
	}
	clk.Advance(firstCheckSpread)
	eventually(t, 5*time.Second, "b comes in on its first check", func() bool { return m.Healthy("web", b.ap) })
}
