package dataplane

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/dataplane/kernelfake"
)

// TestKernelTakeoverOfManyVIPs is issue 22's "a leader change at that
// size" on the host's kernel: 10,000 services on 1,000 VIPs (ten ports
// each), a whole resync of the (in-memory) IPVS table running alongside
// as in the VM lab's scale scenario, and leadership arriving. Every VIP
// must be in the kernel when SetLeader returns, its first announcement
// sent. It prints the time, which grows with the number of VIPs (one
// address and one announcement each), not of services or real servers;
// when the first VIP was announced, which should not; and what one round
// of the leader's lifetime renewals costs (every VIP, every second).
func TestKernelTakeoverOfManyVIPs(t *testing.T) {
	l := newLab(t)
	addrs, err := NewNetlinkAddressesAt(l.a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { addrs.Close() })
	netAnn, err := NewNetAnnouncerAt(l.a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netAnn.Close() })
	ann := &firstAnnouncement{Announcer: netAnn}
	d, err := New(Options{Mode: ModeIPVS, NodeID: "a", DefaultInterface: "eth0", Logger: quietLogger(),
		IPVS: kernelfake.NewIPVS(), Addresses: addrs, Announcer: ann, Links: kernelfake.NewLinks()})
	if err != nil {
		t.Fatal(err)
	}
	c := scaleConfig(10000)
	d.SetConfig(c)
	if err := d.reconcile(compareChange); err != nil {
		t.Fatal(err)
	}

	var firsts, renewals []time.Duration
	takeover := func() time.Duration {
		t.Helper()
		ann.reset()
		t0 := time.Now()
		d.SetLeader(true)
		took := time.Since(t0)
		firsts = append(firsts, ann.first().Sub(t0))
		held, err := addrs.ListAddresses("eth0")
		if err != nil {
			t.Fatal(err)
		}
		have := map[netip.Prefix]bool{}
		for _, p := range held {
			have[p] = true
		}
		for _, s := range c.Services {
			if p := netip.MustParsePrefix(s.Vip.Address + "/32"); !have[p] {
				t.Fatalf("%s is not on eth0 after SetLeader", p)
			}
		}
		t0 = time.Now()
		if err := d.renewAddresses(); err != nil {
			t.Fatal(err)
		}
		renewals = append(renewals, time.Since(t0))
		d.SetLeader(false)
		return took
	}
	alone := takeover()
	resynced := make(chan time.Duration)
	go func() {
		t0 := time.Now()
		_ = d.Reconcile()
		resynced <- time.Since(t0)
	}()
	alongside := takeover()
	vips := len(c.Services) / 10
	figure(t, "takeover of %d VIPs (%d services): %s alone (%s a VIP), %s with a whole resync alongside (%s); the first VIP announced after %s and %s; one round of lifetime renewals %s and %s",
		vips, len(c.Services), ms(alone), (alone / time.Duration(vips)).Round(time.Microsecond), ms(alongside), ms(<-resynced),
		ms(firsts[0]), ms(firsts[1]), ms(renewals[0]), ms(renewals[1]))
}

// firstAnnouncement is an Announcer that notes when it was first called
// since the last reset.
type firstAnnouncement struct {
	Announcer
	mu sync.Mutex
	at time.Time
}

func (f *firstAnnouncement) Announce(dev string, addr netip.Addr) error {
	f.mu.Lock()
	if f.at.IsZero() {
		f.at = time.Now()
	}
	f.mu.Unlock()
	return f.Announcer.Announce(dev, addr)
}

func (f *firstAnnouncement) reset() {
	f.mu.Lock()
	f.at = time.Time{}
	f.mu.Unlock()
}

func (f *firstAnnouncement) first() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.at
}
