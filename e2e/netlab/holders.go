package netlab

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// HolderSample is the set of routers holding an address from At on.
type HolderSample struct {
	At      time.Time
	Holders string // "r1", "r1,r2", "-" for none
}

// HolderLog samples which routers hold an address every Interval (netlink,
// no fork) and keeps the transitions, so tests can assert that two routers
// never held a VIP at once and benchmarks can count VIP moves.
type HolderLog struct {
	// Interval between samples (default 10 ms).
	Interval time.Duration

	mu      sync.Mutex
	log     []HolderSample
	dual    []time.Time // every sample with two or more holders
	errs    int
	changed chan struct{}
}

// Run samples until ctx ends.
func (h *HolderLog) Run(ctx context.Context, l *Lab, addr netip.Addr) {
	iv := h.Interval
	if iv == 0 {
		iv = 10 * time.Millisecond
	}
	tick := time.NewTicker(iv)
	defer tick.Stop()
	for {
		hs, err := l.Holders(addr)
		now := time.Now()
		h.mu.Lock()
		if err != nil {
			h.errs++
		} else {
			cur := Names(hs)
			if len(hs) > 1 {
				h.dual = append(h.dual, now)
			}
			if n := len(h.log); n == 0 || h.log[n-1].Holders != cur {
				h.log = append(h.log, HolderSample{At: now, Holders: cur})
			}
			if h.changed != nil {
				close(h.changed)
				h.changed = nil
			}
		}
		h.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Current is the latest sample ("" before the first).
func (h *HolderLog) Current() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.log) == 0 {
		return ""
	}
	return h.log[len(h.log)-1].Holders
}

// Samples returns the transitions so far.
func (h *HolderLog) Samples() []HolderSample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]HolderSample(nil), h.log...)
}

func (h *HolderLog) wait() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.changed == nil {
		h.changed = make(chan struct{})
	}
	return h.changed
}

// Until waits until cond holds for the current holders ("r1", "-", ...)
// and returns them.
func (h *HolderLog) Until(ctx context.Context, cond func(holders string) bool) (string, error) {
	for {
		ch := h.wait()
		if cur := h.Current(); cur != "" && cond(cur) {
			return cur, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// Stable waits until exactly one router has held the address for at least
// d, and returns its name.
func (h *HolderLog) Stable(ctx context.Context, d time.Duration) (string, error) {
	for {
		ch := h.wait()
		h.mu.Lock()
		var last HolderSample
		if n := len(h.log); n > 0 {
			last = h.log[n-1]
		}
		h.mu.Unlock()
		if last.Holders != "" && last.Holders != "-" && !strings.Contains(last.Holders, ",") && time.Since(last.At) >= d {
			return last.Holders, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// DualSince counts samples since t in which two or more routers held the
// address.
func (h *HolderLog) DualSince(t time.Time) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, at := range h.dual {
		if !at.Before(t) {
			n++
		}
	}
	return n
}

// DualBetween lists the sample times in [from, to] with two or more holders.
func (h *HolderLog) DualBetween(from, to time.Time) []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []time.Time
	for _, at := range h.dual {
		if !at.Before(from) && !at.After(to) {
			out = append(out, at)
		}
	}
	return out
}

// Churn is what happened to an address over a window.
type Churn struct {
	// Moves counts changes to a different single holder; Drops counts
	// times a single holder let go (to nobody or to a shared state), even
	// when the same router takes it back.
	Moves, Drops int
	// Dual counts samples with two or more holders.
	Dual int
	// NoHolder is the longest stretch without any holder.
	NoHolder time.Duration
}

// Churn analyses [from, to].
func (h *HolderLog) Churn(from, to time.Time) Churn {
	h.mu.Lock()
	defer h.mu.Unlock()
	var c Churn
	prev, cur := "", ""
	var noneSince time.Time
	for _, s := range h.log {
		if s.At.After(to) {
			break
		}
		single := s.Holders != "-" && !strings.Contains(s.Holders, ",")
		if s.At.Before(from) {
			if single {
				prev = s.Holders
			}
			cur = s.Holders
			noneSince = time.Time{}
			if s.Holders == "-" {
				noneSince = from
			}
			continue
		}
		if !noneSince.IsZero() {
			c.NoHolder = max(c.NoHolder, s.At.Sub(noneSince))
			noneSince = time.Time{}
		}
		if s.Holders == "-" {
			noneSince = s.At
		}
		if !single && cur != "" && cur != "-" && !strings.Contains(cur, ",") {
			c.Drops++
		}
		if single && s.Holders != prev {
			if prev != "" {
				c.Moves++
			}
			prev = s.Holders
		}
		cur = s.Holders
	}
	if !noneSince.IsZero() {
		c.NoHolder = max(c.NoHolder, to.Sub(noneSince))
	}
	for _, at := range h.dual {
		if !at.Before(from) && !at.After(to) {
			c.Dual++
		}
	}
	return c
}
