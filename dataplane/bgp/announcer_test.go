package bgp

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
)

// fakeSpeaker records what a Speaker was told, with the order of calls.
type fakeSpeaker struct {
	mu     sync.Mutex
	asn    uint32
	peers  []Peer
	paths  map[netip.Prefix]Attributes
	calls  []string
	failOn string // a call ("announce", "withdraw") that fails
}

func newFakeSpeaker() *fakeSpeaker { return &fakeSpeaker{paths: map[netip.Prefix]Attributes{}} }

func (f *fakeSpeaker) SetPeers(_ context.Context, asn uint32, peers []Peer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asn, f.peers = asn, slices.Clone(peers)
	f.calls = append(f.calls, "peers")
	return nil
}

func (f *fakeSpeaker) Announce(_ context.Context, p netip.Prefix, a Attributes) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failOn == "announce" {
		return errors.New("speaker down")
	}
	f.paths[p] = a
	f.calls = append(f.calls, "announce "+p.String())
	return nil
}

func (f *fakeSpeaker) Withdraw(_ context.Context, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failOn == "withdraw" {
		return errors.New("speaker down")
	}
	delete(f.paths, p)
	f.calls = append(f.calls, "withdraw "+p.String())
	return nil
}

func (f *fakeSpeaker) Sessions() []Session { return nil }

func (f *fakeSpeaker) announced() []netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sortedPrefixes(boolKeys(f.paths))
}

// fakeLo is lo's addresses, recording the order of changes in the same
// log as the speaker so that "withdraw before drop" can be checked.
type fakeLo struct {
	mu    sync.Mutex
	addrs map[netip.Prefix]bool
	log   *fakeSpeaker
}

func (l *fakeLo) AddAddress(dev string, p netip.Prefix, _ string, _ time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if dev != LoDevice {
		return errors.New("not lo")
	}
	l.addrs[p] = true
	return nil
}

func (l *fakeLo) RemoveAddress(_ string, p netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.addrs, p)
	l.log.mu.Lock()
	l.log.calls = append(l.log.calls, "drop "+p.String())
	l.log.mu.Unlock()
	return nil
}

func (l *fakeLo) held() []netip.Prefix {
	l.mu.Lock()
	defer l.mu.Unlock()
	return sortedPrefixes(l.addrs)
}

func bgpConfig() *shoalv1.Config {
	c := &shoalv1.Config{
		Global: &shoalv1.Global{Announce: "bgp", Bgp: &shoalv1.Bgp{
			LocalAsn: 65001, Communities: []string{"65000:7"}, Med: proto.Uint32(20),
			Peers: []*shoalv1.BgpPeer{{Address: "10.1.0.1", Asn: 65000}},
		}},
		Services: []*shoalv1.VirtualService{
			{Name: "web", Vip: &shoalv1.Address{Address: "192.0.2.10"}, Port: 80},
			{Name: "web6", Vip: &shoalv1.Address{Address: "2001:db8::10"}, Port: 80},
			{Name: "dns", Vip: &shoalv1.Address{Address: "192.0.2.10"}, Port: 53, Protocol: "udp"},
			{Name: "old", Announce: "l2", Vip: &shoalv1.Address{Address: "192.0.2.20"}, Port: 80},
			{Name: "off", Vip: &shoalv1.Address{Address: "192.0.2.30"}, Port: 80, Active: proto.Bool(false)},
		},
	}
	config.Normalize(c)
	return c
}

func prefixes(s ...string) []netip.Prefix {
	out := []netip.Prefix{}
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

func TestAnnouncerFollowsEligibility(t *testing.T) {
	sp := newFakeSpeaker()
	lo := &fakeLo{addrs: map[netip.Prefix]bool{}, log: sp}
	a := New(Options{Speaker: sp, Loopback: lo})
	ctx := context.Background()
	a.SetConfig(bgpConfig())
	vips := prefixes("192.0.2.10/32", "2001:db8::10/128")

	// Until told otherwise it is starting: VIPs held, nothing announced.
	if err := a.converge(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sp.announced(); len(got) != 0 {
		t.Fatalf("announced %v before being eligible", got)
	}
	if got := lo.held(); !slices.Equal(got, vips) {
		t.Fatalf("lo holds %v, want %v", got, vips)
	}
	if st := a.Status(); st.Blocked != ReasonStarting {
		t.Fatalf("blocked %q, want %q", st.Blocked, ReasonStarting)
	}
	if sp.asn != 65001 || len(sp.peers) != 1 || sp.peers[0].HoldTime != config.DefaultBGPHoldTime || sp.peers[0].Port != 179 {
		t.Fatalf("speaker peers AS%d %+v", sp.asn, sp.peers)
	}

	a.SetBlocked("")
	a.converge(ctx)
	if got := sp.announced(); !slices.Equal(got, vips) {
		t.Fatalf("announced %v, want %v", got, vips)
	}
	attrs := sp.paths[vips[0]]
	if attrs.MED == nil || *attrs.MED != 20 || !slices.Equal(attrs.Communities, []uint32{65000<<16 | 7}) {
		t.Fatalf("attributes %+v", attrs)
	}

	for _, r := range []Reason{ReasonNoQuorum, ReasonUnhealthy, ReasonDrained} {
		a.SetBlocked(r)
		a.converge(ctx)
		if got := sp.announced(); len(got) != 0 {
			t.Fatalf("%s: still announces %v", r, got)
		}
		// Flows still on their way keep being served.
		if got := lo.held(); !slices.Equal(got, vips) {
			t.Fatalf("%s: lo holds %v, want %v", r, got, vips)
		}
		if st := a.Status(); st.Blocked != r || len(st.Announced) != 0 {
			t.Fatalf("%s: status %+v", r, st)
		}
		a.SetBlocked("")
		a.converge(ctx)
		if got := sp.announced(); !slices.Equal(got, vips) {
			t.Fatalf("after %s: announced %v", r, got)
		}
	}

	// A MED change re-announces; removing the service withdraws before
	// the address leaves lo.
	c := bgpConfig()
	c.Global.Bgp.Med = proto.Uint32(30)
	c.Services = slices.DeleteFunc(c.Services, func(s *shoalv1.VirtualService) bool { return s.Name == "web6" })
	sp.calls = nil
	a.SetConfig(c)
	a.converge(ctx)
	if got := sp.announced(); !slices.Equal(got, vips[:1]) || *sp.paths[vips[0]].MED != 30 {
		t.Fatalf("announced %v MED %v", got, sp.paths[vips[0]].MED)
	}
	if i, j := slices.Index(sp.calls, "withdraw 2001:db8::10/128"), slices.Index(sp.calls, "drop 2001:db8::10/128"); i < 0 || j < i {
		t.Fatalf("calls %v: want the withdrawal before the drop", sp.calls)
	}

	// Release withdraws everything, drops lo, and stays released.
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	a.SetBlocked("")
	a.converge(ctx)
	if got, held := sp.announced(), lo.held(); len(got) != 0 || len(held) != 0 {
		t.Fatalf("after release: announced %v, lo %v", got, held)
	}
}

func TestAnnouncerKeepsAddressWhoseWithdrawalFailed(t *testing.T) {
	sp := newFakeSpeaker()
	lo := &fakeLo{addrs: map[netip.Prefix]bool{}, log: sp}
	a := New(Options{Speaker: sp, Loopback: lo})
	ctx := context.Background()
	a.SetConfig(bgpConfig())
	a.SetBlocked("")
	a.converge(ctx)
	sp.failOn = "withdraw"
	a.SetConfig(&shoalv1.Config{Global: bgpConfig().Global})
	if err := a.converge(ctx); err == nil {
		t.Fatal("a failed withdrawal was not reported")
	}
	if got := lo.held(); len(got) != 2 {
		t.Fatalf("lo holds %v: an address still announced was dropped", got)
	}
	if st := a.Status(); st.Error == "" || len(st.Announced) != 2 {
		t.Fatalf("status %+v", st)
	}
	sp.failOn = ""
	a.converge(ctx)
	if got, held := sp.announced(), lo.held(); len(got) != 0 || len(held) != 0 {
		t.Fatalf("announced %v, lo %v", got, held)
	}
}

func TestAnnouncerWithoutBGPConfig(t *testing.T) {
	sp := newFakeSpeaker()
	a := New(Options{Speaker: sp})
	c := bgpConfig()
	c.Global.Bgp = nil
	a.SetConfig(c)
	a.SetBlocked("")
	a.converge(context.Background())
	if st := a.Status(); st.Blocked != ReasonNoConfig || len(sp.announced()) != 0 {
		t.Fatalf("status %+v announced %v", st, sp.announced())
	}
}
