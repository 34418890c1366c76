package kernelfake

import (
	"maps"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"
)

// Addresses is an in-memory set of addresses per device. Every device exists
// unless named in Missing. Lifetimes run out on a clock of its own that moves
// only with Advance, as the kernel's do on its: an address is gone once its
// lifetime has passed since it was last added or renewed.
type Addresses struct {
	mu      sync.Mutex
	addrs   map[string]map[netip.Prefix]time.Time // when each expires; zero: never
	now     time.Time
	ops     []string
	missing map[string]bool
	fail    map[string]error
}

// NewAddresses returns devices without addresses.
func NewAddresses() *Addresses {
	return &Addresses{addrs: map[string]map[netip.Prefix]time.Time{}, missing: map[string]bool{}, fail: map[string]error{},
		now: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// Now is the time on the fake's clock.
func (a *Addresses) Now() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.now
}

// Advance moves the clock on by d and drops the addresses whose lifetime ran
// out ("expire 10.0.0.1/32 eth0" in Ops).
func (a *Addresses) Advance(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.now = a.now.Add(d)
	for _, dev := range slices.Sorted(maps.Keys(a.addrs)) {
		for _, p := range sortedPrefixes(a.addrs[dev]) {
			if exp := a.addrs[dev][p]; !exp.IsZero() && !a.now.Before(exp) {
				delete(a.addrs[dev], p)
				a.ops = append(a.ops, "expire "+p.String()+" "+dev)
			}
		}
	}
}

// Lifetime is how long p has left on dev, and false when that is forever or
// p is not there.
func (a *Addresses) Lifetime(dev string, p netip.Prefix) (time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	exp, ok := a.addrs[dev][p]
	if !ok || exp.IsZero() {
		return 0, false
	}
	return exp.Sub(a.now), true
}

// SetMissing makes dev absent (ENODEV) or present again.
func (a *Addresses) SetMissing(dev string, missing bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.missing[dev] = missing
}

// FailNext makes the next call of op ("AddAddress", "RemoveAddress",
// "ListAddresses") fail with err.
func (a *Addresses) FailNext(op string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail[op] = err
}

func (a *Addresses) failing(op string) error {
	if err, ok := a.fail[op]; ok {
		delete(a.fail, op)
		return err
	}
	return nil
}

// AddAddress adds p, or renews its lifetime when it is there (a renewal is
// not in Ops).
func (a *Addresses) AddAddress(dev string, p netip.Prefix, label string, lifetime time.Duration) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.failing("AddAddress"); err != nil {
		return err
	}
	if a.missing[dev] {
		return syscall.ENODEV
	}
	if a.addrs[dev] == nil {
		a.addrs[dev] = map[netip.Prefix]time.Time{}
	}
	if _, ok := a.addrs[dev][p]; !ok {
		a.ops = append(a.ops, "add "+p.String()+" "+dev)
	}
	var exp time.Time
	if lifetime > 0 {
		exp = a.now.Add(lifetime)
	}
	a.addrs[dev][p] = exp
	return nil
}

func (a *Addresses) RemoveAddress(dev string, p netip.Prefix) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.failing("RemoveAddress"); err != nil {
		return err
	}
	if _, ok := a.addrs[dev][p]; ok {
		delete(a.addrs[dev], p)
		a.ops = append(a.ops, "remove "+p.String()+" "+dev)
	}
	return nil
}

func (a *Addresses) ListAddresses(dev string) ([]netip.Prefix, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.failing("ListAddresses"); err != nil {
		return nil, err
	}
	if a.missing[dev] {
		return nil, syscall.ENODEV
	}
	return sortedPrefixes(a.addrs[dev]), nil
}

func sortedPrefixes[V any](m map[netip.Prefix]V) []netip.Prefix {
	var out []netip.Prefix
	for p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// Held lists every address as "addr/prefix dev", sorted.
func (a *Addresses) Held() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for dev, ps := range a.addrs {
		for p := range ps {
			out = append(out, p.String()+" "+dev)
		}
	}
	sort.Strings(out)
	return out
}

// Ops returns the changes so far ("add 10.0.0.1/32 eth0", "remove ...",
// "expire ...") and forgets them.
func (a *Addresses) Ops() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.ops
	a.ops = nil
	return out
}

// Announcement is one gratuitous ARP / unsolicited NA.
type Announcement struct {
	Dev  string
	Addr netip.Addr
	At   time.Time
}

// Announcer records announcements.
type Announcer struct {
	mu      sync.Mutex
	sent    []Announcement
	refused []Announcement
	// Addresses, when set, makes Announce fail for an address not held:
	// announcing an address the node does not have misdirects traffic.
	Addresses *Addresses
}

func (n *Announcer) Announce(dev string, addr netip.Addr) error {
	if n.Addresses != nil {
		n.Addresses.mu.Lock()
		held := false
		for p := range n.Addresses.addrs[dev] {
			held = held || p.Addr() == addr
		}
		n.Addresses.mu.Unlock()
		if !held {
			n.mu.Lock()
			n.refused = append(n.refused, Announcement{Dev: dev, Addr: addr, At: time.Now()})
			n.mu.Unlock()
			return syscall.EADDRNOTAVAIL
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sent = append(n.sent, Announcement{Dev: dev, Addr: addr, At: time.Now()})
	return nil
}

// Sent returns every announcement so far.
func (n *Announcer) Sent() []Announcement {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Announcement(nil), n.sent...)
}

// Refused returns the announcements of addresses that were not held (only
// recorded when Addresses is set): each one is a bug.
func (n *Announcer) Refused() []Announcement {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Announcement(nil), n.refused...)
}

// Count is how many announcements of addr were sent.
func (n *Announcer) Count(addr netip.Addr) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, s := range n.sent {
		if s.Addr == addr {
			c++
		}
	}
	return c
}
