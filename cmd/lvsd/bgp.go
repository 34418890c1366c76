package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/dataplane"
	"github.com/shoal-lb/shoal/dataplane/bgp"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"github.com/shoal-lb/shoal/raftfsm"
)

// bgpWiring runs the BGP announcer of bgp-mode services: it tells the
// announcer, several times a second, whether this router may announce
// (in contact with a Raft majority, dataplane reconciled) and withdraws
// everything before lvsd exits.
type bgpWiring struct {
	log     *slog.Logger
	id      string
	ann     *bgp.Announcer
	speaker *bgp.GoBGP // nil without --bgp-router-id
	dp      interface{ Ready() (bool, string) }
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
	w := &bgpWiring{log: log, id: f.id, dp: dp, contact: contact}
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

// handAwayEvery spaces the leadership transfers of a drained leader: one
// normally suffices, but raft may elect it again.
const handAwayEvery = 2 * time.Second

func (w *bgpWiring) followEligibility(ctx context.Context, node *raftfsm.Node) {
	t := time.NewTicker(eligibilityEvery)
	defer t.Stop()
	var lastHandAway time.Time
	for {
		st := node.Status()
		drained := config.Drained(node.FSM().State().GetConfig(), w.id)
		if drained {
			w.ann.SetBlocked(bgp.ReasonDrained)
		} else {
			w.ann.SetBlocked(w.blocked(st))
		}
		// In l2 mode a drained router must not hold the VIPs: it hands
		// leadership to another voter (and again should raft elect it).
		if drained && st.Role == "leader" && time.Since(lastHandAway) > handAwayEvery {
			lastHandAway = time.Now()
			w.log.Info("drained: handing leadership away")
			if err := node.Raft().LeadershipTransfer().Error(); err != nil {
				w.log.Warn("drained: leadership transfer failed; retrying", "err", err)
			}
		}
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

// status adds the announcer's view to a node status.
func (w *bgpWiring) status(st *shoalv1.NodeStatus) {
	a := w.ann.Status()
	if len(a.Configured) == 0 && len(a.Sessions) == 0 {
		st.Bgp = nil
		return
	}
	out := &shoalv1.BgpStatus{WithdrawnReason: string(a.Blocked), Error: a.Error}
	if !a.Since.IsZero() {
		out.Since = timestamppb.New(a.Since)
	}
	for _, p := range a.Announced {
		out.Announced = append(out.Announced, p.String())
	}
	for _, p := range a.Configured {
		out.Configured = append(out.Configured, p.String())
	}
	for _, s := range a.Sessions {
		bs := &shoalv1.BgpSession{Peer: s.Peer.String(), Asn: s.ASN, State: s.State}
		if !s.Since.IsZero() {
			bs.Since = timestamppb.New(s.Since)
		}
		out.Sessions = append(out.Sessions, bs)
	}
	st.Bgp = out
}
