package netlab

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ProbeResult is one probe: a new TCP connection and `GET /`.
type ProbeResult struct {
	Start, End time.Time
	OK         bool
	// Router is the body of the answer (the responder's name) when OK.
	Router string
	// Err classifies a failure: connect-timeout, connect-refused,
	// read-reset, badresponse, ...
	Err string
}

// ProberOptions tune a Prober; zero values give the failover benchmark's
// settings (a probe every 5 ms, 50 ms connect timeout, 100 ms response
// deadline, at most 64 probes in flight).
type ProberOptions struct {
	Interval, ConnectTimeout, ResponseTimeout time.Duration
	MaxInflight                               int
}

// Prober starts a probe against Target every Interval from the client
// namespace and keeps every result.
type Prober struct {
	node   *Node
	target netip.AddrPort
	o      ProberOptions

	mu      sync.Mutex
	results []ProbeResult
	changed chan struct{} // closed and replaced on every new result
	skipped int
}

// NewProber prepares a prober from node to target; Run starts it.
func (n *Node) NewProber(target netip.AddrPort, o ProberOptions) *Prober {
	if o.Interval == 0 {
		o.Interval = 5 * time.Millisecond
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 50 * time.Millisecond
	}
	if o.ResponseTimeout == 0 {
		o.ResponseTimeout = 100 * time.Millisecond
	}
	if o.MaxInflight == 0 {
		o.MaxInflight = 64
	}
	return &Prober{node: n, target: target, o: o, changed: make(chan struct{})}
}

// Run probes until ctx ends, then waits for the probes in flight.
func (p *Prober) Run(ctx context.Context) {
	tick := time.NewTicker(p.o.Interval)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, p.o.MaxInflight)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			p.mu.Lock()
			p.skipped++
			p.mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := p.probeOnce()
			<-sem
			p.mu.Lock()
			p.results = append(p.results, r)
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}()
	}
}

// Results returns a copy of every result so far, ordered by end time.
func (p *Prober) Results() []ProbeResult {
	p.mu.Lock()
	rs := slices.Clone(p.results)
	p.mu.Unlock()
	slices.SortFunc(rs, func(a, b ProbeResult) int { return a.End.Compare(b.End) })
	return rs
}

// Skipped is the number of ticks skipped because MaxInflight probes were
// outstanding.
func (p *Prober) Skipped() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.skipped
}

// Wait blocks until count results satisfy match, and returns the last of
// them, or fails when ctx ends.
func (p *Prober) Wait(ctx context.Context, count int, match func(ProbeResult) bool) (ProbeResult, error) {
	seen := 0
	next := 0
	for {
		p.mu.Lock()
		rs := p.results[next:]
		next = len(p.results)
		ch := p.changed
		p.mu.Unlock()
		for _, r := range rs {
			if match(r) {
				if seen++; seen >= count {
					return r, nil
				}
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ProbeResult{}, ctx.Err()
		}
	}
}

func (p *Prober) probeOnce() ProbeResult {
	r := ProbeResult{Start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), p.o.ConnectTimeout)
	c, err := p.node.DialContext(ctx, "tcp", p.target.String())
	cancel()
	if err != nil {
		r.End = time.Now()
		r.Err = "connect-" + classify(err)
		return r
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(p.o.ResponseTimeout))
	if _, err := c.Write([]byte("GET / HTTP/1.0\r\nHost: vip\r\n\r\n")); err != nil {
		r.End = time.Now()
		r.Err = "write-" + classify(err)
		return r
	}
	b, err := io.ReadAll(io.LimitReader(c, 4096))
	r.End = time.Now()
	if err != nil {
		r.Err = "read-" + classify(err)
		return r
	}
	r.Router, r.Err = parseAnswer(string(b))
	r.OK = r.Err == ""
	return r
}

func parseAnswer(s string) (router, errKind string) {
	status, _, _ := strings.Cut(s, "\r\n")
	if !strings.HasPrefix(status, "HTTP/1.") || !strings.Contains(status, " 200") {
		return "", "badresponse"
	}
	_, body, ok := strings.Cut(s, "\r\n\r\n")
	if !ok {
		return "", "badresponse"
	}
	if router = strings.TrimSpace(body); router == "" {
		return "", "emptybody"
	}
	return router, ""
}

func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "hostunreach"
	case errors.Is(err, syscall.ENETUNREACH):
		return "netunreach"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return strings.ReplaceAll(s, " ", "_")
}

// Failover is what a client saw around a crash at Kill of router Old.
type Failover struct {
	// Outage runs from the end of the last success that completed before
	// the kill to the end of the first success answered by another router
	// (the benchmark's headline number).
	Outage time.Duration
	// KillToNew runs from the kill to that first success.
	KillToNew time.Duration
	// New is the router that answered first after the kill; "" if none did.
	New string
	// Fails counts failed probes started between the kill and that success;
	// FailKinds breaks them down by Err.
	Fails     int
	FailKinds map[string]int
	// OldAfterKill counts successes answered by Old that started after the
	// kill (the crashed daemon's VIP still on a live interface).
	OldAfterKill int
}

// AnalyzeFailover measures a failover from the prober's results.
func AnalyzeFailover(rs []ProbeResult, kill time.Time, old string) (Failover, bool) {
	var lastOK, first *ProbeResult
	for i := range rs {
		r := &rs[i]
		if r.OK && r.End.Before(kill) && (lastOK == nil || r.End.After(lastOK.End)) {
			lastOK = r
		}
		if r.OK && !r.Start.Before(kill) && r.Router != old && (first == nil || r.End.Before(first.End)) {
			first = r
		}
	}
	if lastOK == nil || first == nil {
		return Failover{}, false
	}
	f := Failover{Outage: first.End.Sub(lastOK.End), KillToNew: first.End.Sub(kill), New: first.Router, FailKinds: map[string]int{}}
	for _, r := range rs {
		if r.Start.Before(kill) {
			continue
		}
		if !r.OK && r.Start.Before(first.Start) {
			f.Fails++
			f.FailKinds[r.Err]++
		}
		if r.OK && r.Router == old {
			f.OldAfterKill++
		}
	}
	return f, true
}

// MaxGap is the longest time between two consecutive successes ending in
// [from, to], counted from the last success before from.
func MaxGap(rs []ProbeResult, from, to time.Time) time.Duration {
	var prev time.Time
	var gap time.Duration
	for _, r := range rs {
		if !r.OK || r.End.After(to) {
			continue
		}
		if r.End.Before(from) {
			prev = r.End
			continue
		}
		if !prev.IsZero() && r.End.Sub(prev) > gap {
			gap = r.End.Sub(prev)
		}
		prev = r.End
	}
	return gap
}
