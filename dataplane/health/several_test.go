package health

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func TestCombine(t *testing.T) {
	up := func() *checker { return &checker{tr: tracker{up: true}} }
	down := func() *checker { return &checker{tr: tracker{}} }
	unchecked := func() *checker { return &checker{tr: tracker{unchecked: true}} }
	tests := []struct {
		name                string
		checks              []*checker
		wantUp, wantUnknown bool
		culprit             int
	}{
		{"one up", []*checker{up()}, true, false, -1},
		{"all up", []*checker{up(), up(), up()}, true, false, -1},
		{"one down", []*checker{up(), down(), up()}, false, false, 1},
		{"unchecked", []*checker{up(), unchecked()}, false, true, 1},
		// A check that failed decides alone, whatever the others have yet
		// to say: keepalived takes a server out at its first failed checker.
		{"down beats unchecked", []*checker{unchecked(), down()}, false, false, 1},
		{"first down is the culprit", []*checker{down(), down()}, false, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotUp, gotUnknown, culprit := combine(tt.checks)
			if gotUp != tt.wantUp || gotUnknown != tt.wantUnknown || culprit != tt.culprit {
				t.Errorf("combine = up %t unchecked %t culprit %d, want %t %t %d", gotUp, gotUnknown, culprit, tt.wantUp, tt.wantUnknown, tt.culprit)
			}
		})
	}
}

// toggleListener is a TCP port that can be closed and opened again.
type toggleListener struct {
	t    *testing.T
	ap   netip.AddrPort
	mu   sync.Mutex
	ln   net.Listener
	done chan struct{}
}

func listenToggle(t *testing.T) *toggleListener {
	l := &toggleListener{t: t}
	l.open("127.0.0.1:0")
	l.ap = netip.MustParseAddrPort(l.ln.Addr().String())
	t.Cleanup(l.close)
	return l
}

func (l *toggleListener) open(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		l.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	l.mu.Lock()
	l.ln, l.done = ln, done
	l.mu.Unlock()
}

func (l *toggleListener) close() {
	l.mu.Lock()
	ln, done := l.ln, l.done
	l.ln = nil
	l.mu.Unlock()
	if ln != nil {
		ln.Close()
		<-done
	}
}

// TestSeveralChecks: a real server with two checks (TCP on its port and TCP
// on a status port) is up only while both pass; its status shows each
// check, and its reason names the one that took it down.
func TestSeveralChecks(t *testing.T) {
	svcPort := listenToggle(t)
	status := listenToggle(t)
	m, _ := startMonitor(t, Options{})
	hc := fastCheck()
	statusCheck := fastCheck()
	statusCheck.Port = uint32(status.ap.Port())
	cfg := &shoalv1.Config{Services: []*shoalv1.VirtualService{service("web", fastCheck(), svcPort.ap)}}
	cfg.Services[0].RealServers[0].HealthChecks = []*shoalv1.HealthCheck{hc, statusCheck}
	m.SetConfig(cfg)
	eventually(t, 5*time.Second, "server up with both checks passing", func() bool { return m.Healthy("web", svcPort.ap) })
	st := m.Status()[0]
	if len(st.Checks) != 2 || st.Checks[0].State != StateUp || st.Checks[1].State != StateUp || st.Checks[1].Port != uint32(status.ap.Port()) {
		t.Fatalf("status: %v", st)
	}

	status.close()
	eventually(t, 5*time.Second, "server down when its status port fails", func() bool { return !m.Healthy("web", svcPort.ap) })
	st = m.Status()[0]
	label := "check 1 (tcp:" + strconv.Itoa(int(status.ap.Port())) + ")"
	if st.State != StateDown || !strings.HasPrefix(st.Reason, label+": ") || st.Checks[0].State != StateUp || st.Checks[1].State != StateDown {
		t.Fatalf("status after the status port failed: %v", st)
	}
	if !strings.HasPrefix(st.LastError, label) {
		t.Errorf("last error %q does not name %s", st.LastError, label)
	}

	status.open(status.ap.String())
	eventually(t, 5*time.Second, "server up again", func() bool { return m.Healthy("web", svcPort.ap) })
	if st = m.Status()[0]; st.Reason != "all 2 checks up" {
		t.Errorf("reason %q", st.Reason)
	}

	// Back to the service's one check: the verdict stands, the per-check
	// entries go.
	cfg = proto.Clone(cfg).(*shoalv1.Config)
	cfg.Services[0].RealServers[0].HealthChecks = nil
	m.SetConfig(cfg)
	if !m.Healthy("web", svcPort.ap) || m.Unchecked("web", svcPort.ap) {
		t.Fatal("dropping the server's own checks dropped its verdict")
	}
	if st = m.Status()[0]; len(st.Checks) != 0 {
		t.Errorf("one check, yet per-check entries: %v", st.Checks)
	}
}

// TestAddedCheckTakesVerdict: a check added to a server that is up starts
// up, so the server never goes back to having no verdict (the dataplane
// would leave it as the kernel has it); the new check then decides on its
// own results.
func TestAddedCheckTakesVerdict(t *testing.T) {
	svcPort := listenToggle(t)
	dead := listenToggle(t)
	dead.close()
	m, _ := startMonitor(t, Options{})
	cfg := &shoalv1.Config{Services: []*shoalv1.VirtualService{service("web", fastCheck(), svcPort.ap)}}
	m.SetConfig(cfg)
	eventually(t, 5*time.Second, "server up", func() bool { return m.Healthy("web", svcPort.ap) })

	cfg = proto.Clone(cfg).(*shoalv1.Config)
	deadCheck := fastCheck()
	deadCheck.Port = uint32(dead.ap.Port())
	cfg.Services[0].RealServers[0].HealthChecks = []*shoalv1.HealthCheck{fastCheck(), deadCheck}
	m.SetConfig(cfg)
	if !m.Healthy("web", svcPort.ap) || m.Unchecked("web", svcPort.ap) {
		t.Fatal("adding a check took the server's verdict away")
	}
	eventually(t, 5*time.Second, "the added check takes the server down", func() bool { return !m.Healthy("web", svcPort.ap) })
	if st := m.Status()[0]; !strings.Contains(st.Reason, "check 1 (tcp:") {
		t.Errorf("reason %q does not name the added check", st.Reason)
	}
}

// TestMovedCheckKeepsItsState: a check keeps its state (the same checker,
// counters and schedule) when the list around it changes: reordered, or
// another check removed before it.
func TestMovedCheckKeepsItsState(t *testing.T) {
	svcPort := listenToggle(t)
	dead := listenToggle(t)
	dead.close()
	m, _ := startMonitor(t, Options{})
	a := fastCheck()
	b := fastCheck()
	b.Port = uint32(dead.ap.Port())
	cfg := &shoalv1.Config{Services: []*shoalv1.VirtualService{service("web", fastCheck(), svcPort.ap)}}
	set := func(checks ...*shoalv1.HealthCheck) {
		cfg = proto.Clone(cfg).(*shoalv1.Config)
		cfg.Services[0].RealServers[0].HealthChecks = checks
		m.SetConfig(cfg)
	}
	checkers := func() []*checker {
		m.mu.Lock()
		defer m.mu.Unlock()
		return append([]*checker(nil), m.servers[key{"web", svcPort.ap}].checkers...)
	}
	set(a, b)
	eventually(t, 5*time.Second, "a up, b down", func() bool {
		st := m.Status()[0]
		return len(st.Checks) == 2 && st.Checks[0].State == StateUp && st.Checks[1].State == StateDown
	})
	before := checkers()

	set(b, a)
	after := checkers()
	if after[0] != before[1] || after[1] != before[0] {
		t.Fatal("reordered checks were replaced")
	}
	if st := m.Status()[0]; st.Checks[0].Port != uint32(dead.ap.Port()) || st.Checks[0].State != StateDown || st.Checks[1].State != StateUp {
		t.Errorf("status after the reorder: %v", st.Checks)
	}

	set(b)
	if after = checkers(); len(after) != 1 || after[0] != before[1] {
		t.Fatal("removing the check before b replaced b")
	}
	if m.Healthy("web", svcPort.ap) {
		t.Error("b is down, yet the server is up")
	}
}
