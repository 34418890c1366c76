package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/shoal-lb/shoal/dataplane"
	"github.com/shoal-lb/shoal/dataplane/bgp"
	"github.com/shoal-lb/shoal/raftfsm"
)

// bgpWiring runs the BGP announcer of bgp-mode services: it tells the
// announcer, several times a second, whether this router may announce
// (in contact with a Raft majority, dataplane reconciled) and withdraws
// everything before lvsd exits.
type bgpWiring struct {
	log     *slog.Logger
	ann     *bgp.Announcer
	speaker *bgp.GoBGP // nil without --bgp-router-id
	dp      *dataplane.Dataplane
	// contact is how long a follower may go without hearing from a leader
	// and still count as in contact with a majority: raft's own election
	// timeout, after which it would stop believing in that leader too.
	contact time.Duration
}

// bgpFlags are a router's own BGP identity: they differ per router, so
// they are flags, not replicated config.
type bgpFlags struct {
	routerID, source string
	listenPort       int
}

func newBGP(f *flags, log *slog.Logger, dp *dataplane.Dataplane, contact time.Duration) (*bgpWiring, error) {
	lo, err := dataplane.NewNetlinkAddresses()
	if err != nil {
		return nil, fmt.Errorf("open netlink for lo: %w", err)
	}
	w := &bgpWiring{log: log, dp: dp, contact: contact}
	var source netip.Addr
	if f.bgp.source != "" {
		if source, err = netip.ParseAddr(f.bgp.source); err != nil {
			return nil, fmt.Errorf("--bgp-source %q: not an IP address", f.bgp.source)
		}
	}
	id := f.bgp.routerID
	if id == "" {
		id = defaultRouterID(source, f.raftAddr)
	}
	opts := bgp.Options{Loopback: lo, Logger: log}
	if id != "" {
		rid, err := netip.ParseAddr(id)
		if err != nil || !rid.Is4() {
			return nil, fmt.Errorf("--bgp-router-id %q: want an IPv4 address", id)
		}
		if f.bgp.listenPort < 0 || f.bgp.listenPort > 65535 {
			return nil, fmt.Errorf("--bgp-listen-port %d: want 0..65535", f.bgp.listenPort)
		}
		sp, err := bgp.NewGoBGP(bgp.GoBGPOptions{RouterID: rid, Source: source, ListenPort: f.bgp.listenPort, Logger: log})
		if err != nil {
			return nil, err
		}
		w.speaker, opts.Speaker = sp, sp
	}
	w.ann = bgp.New(opts)
	if err := prometheus.Register(bgp.Collector{A: w.ann}); err != nil {
		return nil, fmt.Errorf("register BGP metrics: %w", err)
	}
	return w, nil
}

func (w *bgpWiring) start(ctx context.Context, g *errgroup.Group, node *raftfsm.Node) {
	g.Go(func() error { return w.ann.Run(ctx) })
	g.Go(func() error { w.followEligibility(ctx, node); return nil })
}

// eligibilityEvery is how often eligibility is judged: well under the
// time BGP itself takes to spread a withdrawal.
const eligibilityEvery = 100 * time.Millisecond

func (w *bgpWiring) followEligibility(ctx context.Context, node *raftfsm.Node) {
	t := time.NewTicker(eligibilityEvery)
	defer t.Stop()
	for {
		w.ann.SetBlocked(w.blocked(node.Status()))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// blocked is why this router must not announce now, or "".
func (w *bgpWiring) blocked(st raftfsm.Status) bgp.Reason {
	switch {
	case st.Role == "leader":
		// A leader that loses its majority steps down within its lease.
	case st.Role == "follower" && st.LeaderID != "" && st.LastContact < w.contact:
	default:
		return bgp.ReasonNoQuorum
	}
	if ok, _ := w.dp.Ready(); !ok {
		return bgp.ReasonUnhealthy
	}
	return ""
}

// release withdraws every route and closes the sessions (a Cease tells
// the peers at once, without waiting for the hold time).
func (w *bgpWiring) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := w.ann.Release(ctx); err != nil {
		w.log.Error("bgp: withdraw on shutdown", "err", err)
	}
	if w.speaker != nil {
		w.speaker.Stop()
	}
}

// defaultRouterID is --bgp-source when it is IPv4, else the address of
// --raft-addr when that is a routable IPv4 address (routers usually bind
// Raft to their own address), else "" (no speaker).
func defaultRouterID(source netip.Addr, raftAddr string) string {
	if source.Is4() {
		return source.String()
	}
	ap, err := netip.ParseAddrPort(raftAddr)
	if err != nil {
		return ""
	}
	if a := ap.Addr().Unmap(); a.Is4() && !a.IsLoopback() && !a.IsUnspecified() {
		return a.String()
	}
	return ""
}
