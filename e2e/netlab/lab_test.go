package netlab

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLab(t *testing.T) {
	SkipUnlessRoot(t)
	l, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	nss := []string{l.SwitchNS, l.Client.NS}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		for _, ns := range nss {
			if _, err := os.Stat("/run/netns/" + ns); err == nil {
				t.Errorf("namespace %s left behind", ns)
			}
		}
	})
	for _, r := range l.Routers {
		resp, err := r.Serve(r.Name, "0.0.0.0:80")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resp.Close() })
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pctx, stop := context.WithCancel(ctx)
	defer stop()

	arp, err := l.Client.WatchARP(pctx)
	if err != nil {
		t.Fatal(err)
	}

	// Each router answers on its own address with its name.
	for _, r := range l.Routers {
		p := l.Client.NewProber(netip.AddrPortFrom(r.Addr, 80), ProberOptions{})
		done := make(chan struct{})
		rctx, rstop := context.WithCancel(pctx)
		go func() { defer close(done); p.Run(rctx) }()
		res, err := p.Wait(ctx, 3, func(r ProbeResult) bool { return r.OK })
		rstop()
		<-done
		if err != nil || res.Router != r.Name {
			t.Fatalf("probe %s: got %+v, %v; want an answer from %s", r.Addr, res, err, r.Name)
		}
	}

	// The client resolved every router: their ARP replies were recorded.
	for _, r := range l.Routers {
		found := false
		for _, p := range arp.Packets() {
			found = found || (p.Op == 2 && p.SenderIP == r.Addr && p.SenderMAC.String() == r.MAC.String() && !p.Gratuitous())
		}
		if !found {
			t.Errorf("no ARP reply from %s (%s) recorded in the client: %+v", r.Name, r.MAC, arp.Packets())
		}
	}

	// A hand-made VIP on r1: the client reaches r1 through it and learns
	// r1's MAC for it.
	vip := netip.PrefixFrom(l.Host(250), 24)
	if err := l.Routers[0].AddAddr(vip); err != nil {
		t.Fatal(err)
	}
	if h, err := l.Holders(vip.Addr()); err != nil || Names(h) != "r1" {
		t.Fatalf("holders = %s, %v; want r1", Names(h), err)
	}
	p := l.Client.NewProber(netip.AddrPortFrom(vip.Addr(), 80), ProberOptions{})
	done := make(chan struct{})
	go func() { defer close(done); p.Run(pctx) }()
	if _, err := p.Wait(ctx, 5, func(r ProbeResult) bool { return r.OK && r.Router == "r1" }); err != nil {
		t.Fatalf("no answer from r1 on the VIP: %v", err)
	}
	nb, ok, err := l.Client.Neighbour(vip.Addr())
	if err != nil || !ok || l.RouterByMAC(nb.MAC) != l.Routers[0] {
		t.Fatalf("client neighbour for VIP = %v %v %v; want r1's MAC %s", nb, ok, err, l.Routers[0].MAC)
	}

	// Unplugging r1 cuts the VIP off; plugging it back restores it.
	if err := l.Routers[0].Unplug(); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	if _, err := p.Wait(ctx, 3, func(r ProbeResult) bool { return !r.OK && r.Start.After(cut) }); err != nil {
		t.Fatalf("probes still succeed with r1 unplugged: %v", err)
	}
	if err := l.Routers[0].Plug(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	if _, err := p.Wait(ctx, 1, func(r ProbeResult) bool { return r.OK && r.Start.After(back) }); err != nil {
		t.Fatalf("no success after replugging r1: %v", err)
	}
	stop()
	<-done
	arp.Wait()
	f, ok := AnalyzeFailover(p.Results(), cut, "nobody")
	if !ok || f.Fails == 0 || f.New != "r1" {
		t.Errorf("analysis of the unplug = %+v, %v; want failures then r1", f, ok)
	}

	// Processes run inside the namespace, in their own group.
	var out strings.Builder
	cmd := l.Routers[1].Command(ctx, "ip", "-o", "-4", "addr", "show", "dev", Iface)
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil || !strings.Contains(out.String(), l.Routers[1].Addr.String()+"/24") {
		t.Fatalf("ip addr in r2: %q, %v", out.String(), err)
	}
	proc, err := l.Routers[1].Start(nil, "sleep", "60")
	if err != nil {
		t.Fatal(err)
	}
	proc.Kill()
	if exited, _ := proc.Exited(); !exited {
		t.Fatal("sleep survived Kill")
	}
}

func TestParseAnswer(t *testing.T) {
	for _, tc := range []struct {
		in, router, err string
	}{
		{"HTTP/1.0 200 OK\r\nX-Router: r1\r\n\r\nr1\n", "r1", ""},
		{"HTTP/1.1 503 Service Unavailable\r\n\r\nr1\n", "", "badresponse"},
		{"HTTP/1.0 200 OK\r\n\r\n", "", "emptybody"},
		{"garbage", "", "badresponse"},
	} {
		r, e := parseAnswer(tc.in)
		if r != tc.router || e != tc.err {
			t.Errorf("parseAnswer(%q) = %q, %q; want %q, %q", tc.in, r, e, tc.router, tc.err)
		}
	}
}

func TestAnalyzeFailover(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ok := func(s, e int, r string) ProbeResult {
		return ProbeResult{Start: at(s), End: at(e), OK: true, Router: r}
	}
	fail := func(s, e int, k string) ProbeResult { return ProbeResult{Start: at(s), End: at(e), Err: k} }
	rs := []ProbeResult{
		ok(0, 1, "r1"), ok(5, 6, "r1"),
		ok(10, 11, "r1"), // kill at 10.5: started before, so not "after the kill"
		fail(15, 65, "connect-timeout"), ok(20, 21, "r1"), fail(25, 75, "connect-timeout"),
		ok(100, 102, "r2"), ok(105, 106, "r2"),
	}
	f, good := AnalyzeFailover(rs, at(10).Add(500*time.Microsecond), "r1")
	if !good {
		t.Fatal("no failover found")
	}
	if f.New != "r2" || f.Outage != 96*time.Millisecond || f.Fails != 2 || f.OldAfterKill != 1 {
		t.Errorf("got %+v; want new r2, outage 96ms (6 -> 102: the 11 ms success ended after the kill), 2 fails, 1 old answer", f)
	}
	if g := MaxGap(rs, at(10), at(200)); g != 81*time.Millisecond {
		t.Errorf("MaxGap = %v, want 81ms (21 -> 102)", g)
	}
}

func TestHolderChurn(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	h := &HolderLog{log: []HolderSample{
		{at(0), "r1"},
		{at(100), "-"}, {at(150), "r1"}, // dropped and taken back: a drop, no move
		{at(200), "r1,r2"}, {at(210), "r2"}, // a move through a shared state
		{at(300), "-"}, {at(500), "r3"}, // a move through nobody, 200 ms without a holder
	}, dual: []time.Time{at(200)}}
	got := h.Churn(at(50), at(600))
	want := Churn{Moves: 2, Drops: 3, Dual: 1, NoHolder: 200 * time.Millisecond}
	if got != want {
		t.Errorf("Churn = %+v, want %+v", got, want)
	}
}
