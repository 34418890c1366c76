package bgp

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

func eventually(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t *testing.T, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Skipf("cannot listen on %s: %v", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// routes lists the prefixes an upstream GoBGP learned, with their next hops.
func routes(t *testing.T, g *GoBGP, v4 bool) map[netip.Prefix]string {
	t.Helper()
	out := map[netip.Prefix]string{}
	g.mu.Lock()
	srv := g.srv
	g.mu.Unlock()
	err := srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: family(v4)}, func(d *api.Destination) {
		for _, p := range d.Paths {
			if p.IsWithdraw {
				continue
			}
			pfx, err := netip.ParsePrefix(d.Prefix)
			if err == nil {
				out[pfx] = p.GetNeighborIp()
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGoBGPAnnouncesToAPeer runs the real speaker against a second GoBGP
// acting as the upstream router, over loopback TCP: the session comes up,
// announced prefixes arrive with the router as next hop, withdrawals and
// a stop remove them.
func TestGoBGPAnnouncesToAPeer(t *testing.T) {
	port := freePort(t, "127.0.0.2")
	ctx := context.Background()
	up, err := NewGoBGP(GoBGPOptions{RouterID: netip.MustParseAddr("10.255.0.1"), Source: netip.MustParseAddr("127.0.0.2"), ListenPort: port})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Stop()
	if err := up.SetPeers(ctx, 65000, []Peer{{Address: netip.MustParseAddr("127.0.0.1"), ASN: 65001, Port: 179, HoldTime: 3 * time.Second}}); err != nil {
		t.Fatal(err)
	}

	r, err := NewGoBGP(GoBGPOptions{RouterID: netip.MustParseAddr("10.255.0.2"), Source: netip.MustParseAddr("127.0.0.1"), ConnectRetry: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	a := New(Options{Speaker: r})
	c := bgpConfig()
	c.Global.Bgp.Peers[0].Address, c.Global.Bgp.Peers[0].Port = "127.0.0.2", uint32(port)
	c.Global.Bgp.HoldTime = nil
	a.SetConfig(c)
	a.SetBlocked("")
	start := time.Now()
	if err := a.converge(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "session established", func() bool {
		s := r.Sessions()
		return len(s) == 1 && s[0].Established()
	})
	eventually(t, 5*time.Second, "192.0.2.10/32 learned by the peer", func() bool {
		return routes(t, up, true)[netip.MustParsePrefix("192.0.2.10/32")] == "127.0.0.1"
	})
	t.Logf("session up and route learned %v after start", time.Since(start).Round(time.Millisecond))
	if got := routes(t, up, false); len(got) != 1 {
		t.Errorf("IPv6 routes %v, want 2001:db8::10/128", got)
	}
	st := a.Status()
	if len(st.Sessions) != 1 || st.Sessions[0].ASN != 65000 || st.Sessions[0].Since.IsZero() || !slices.Equal(st.Announced, prefixes("192.0.2.10/32", "2001:db8::10/128")) {
		t.Errorf("status %+v", st)
	}

	a.SetBlocked(ReasonDrained)
	a.converge(ctx)
	eventually(t, 5*time.Second, "route withdrawn", func() bool { return len(routes(t, up, true)) == 0 })

	// The same AS again changes nothing; the session stays up.
	a.SetBlocked("")
	a.converge(ctx)
	eventually(t, 5*time.Second, "route back", func() bool { return len(routes(t, up, true)) == 1 })

	// Stop sends a Cease: the peer drops the routes at once, not after
	// the hold time.
	stopped := time.Now()
	r.Stop()
	eventually(t, 2*time.Second, "routes gone after stop", func() bool { return len(routes(t, up, true)) == 0 })
	t.Logf("routes gone %v after stop", time.Since(stopped).Round(time.Millisecond))
}
