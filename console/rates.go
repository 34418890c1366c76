package console

import (
	"fmt"
	"html/template"
	"net/netip"
	"strings"
	"sync"
	"time"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// rates keeps the last samples of each real server's IPVS counters on
// this node, for the services page's rates and sparklines. Nothing else
// keeps them: a restart starts them again, which is what a glance needs.
type rates struct {
	mu   sync.Mutex
	keep int
	last map[string]counter
	hist map[string][]rate
}

type counter struct {
	at               time.Time
	conns, in, outBy uint64
}

// rate is one interval's new connections and bytes per second.
type rate struct {
	Conns, BytesIn, BytesOut float64
}

func newRates(keep int) *rates {
	return &rates{keep: keep, last: map[string]counter{}, hist: map[string][]rate{}}
}

// destKey names a real server of a service in the samples.
func destKey(service, addr string, port uint32) string {
	if a, err := netip.ParseAddr(addr); err == nil && port <= 65535 {
		return service + "/" + netip.AddrPortFrom(a, uint16(port)).String()
	}
	return fmt.Sprintf("%s/%s:%d", service, addr, port)
}

// reset forgets every sample.
func (r *rates) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.last)
	clear(r.hist)
}

func (r *rates) add(now time.Time, svcs []*shoalv1.IpvsService) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, s := range svcs {
		if s.GetName() == "" {
			continue
		}
		for _, d := range s.GetDestinations() {
			k := destKey(s.GetName(), d.GetAddress(), d.GetPort())
			seen[k] = true
			c := counter{at: now, conns: d.GetStats().GetConnections(), in: d.GetStats().GetBytesIn(), outBy: d.GetStats().GetBytesOut()}
			prev, ok := r.last[k]
			r.last[k] = c
			// A counter that went back was reset (the destination was
			// removed and added again): no rate for that interval.
			if !ok || c.conns < prev.conns || c.in < prev.in || c.outBy < prev.outBy {
				continue
			}
			secs := c.at.Sub(prev.at).Seconds()
			if secs <= 0 {
				continue
			}
			h := append(r.hist[k], rate{
				Conns: float64(c.conns-prev.conns) / secs, BytesIn: float64(c.in-prev.in) / secs, BytesOut: float64(c.outBy-prev.outBy) / secs,
			})
			if len(h) > r.keep {
				h = h[len(h)-r.keep:]
			}
			r.hist[k] = h
		}
	}
	for k := range r.last {
		if !seen[k] {
			delete(r.last, k)
			delete(r.hist, k)
		}
	}
}

// get is a copy of a real server's rates, oldest first.
func (r *rates) get(k string) []rate {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]rate(nil), r.hist[k]...)
}

func rateString(v float64, unit string) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.1f G%s/s", v/1e9, unit)
	case v >= 1e6:
		return fmt.Sprintf("%.1f M%s/s", v/1e6, unit)
	case v >= 1e3:
		return fmt.Sprintf("%.1f k%s/s", v/1e3, unit)
	}
	return fmt.Sprintf("%.1f %s/s", v, unit)
}

// sparkline draws new connections per second as an inline SVG polyline,
// scaled to its own peak; no samples yet draws nothing.
func sparkline(rs []rate) template.HTML {
	if len(rs) < 2 {
		return ""
	}
	const w, h = 120.0, 24.0
	peak := 0.0
	for _, r := range rs {
		peak = max(peak, r.Conns)
	}
	var pts strings.Builder
	for i, r := range rs {
		y := h - 1
		if peak > 0 {
			y = h - 1 - r.Conns/peak*(h-2)
		}
		fmt.Fprintf(&pts, "%.1f,%.1f ", float64(i)*w/float64(len(rs)-1), y)
	}
	// Numbers only, formatted here: nothing from a user reaches the markup.
	return template.HTML(fmt.Sprintf(`<svg class="spark" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="new connections per second, last %d samples, peak %.1f"><polyline fill="none" stroke="currentColor" stroke-width="1.5" points="%s"/></svg>`,
		w, h, w, h, len(rs), peak, strings.TrimSpace(pts.String())))
}
