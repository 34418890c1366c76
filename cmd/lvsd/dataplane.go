package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shoal-lb/shoal/dataplane"
	"github.com/shoal-lb/shoal/dataplane/health"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"github.com/shoal-lb/shoal/raftfsm"
	"github.com/shoal-lb/shoal/server"
)

// The monitor tells the dataplane which servers it has not checked yet, so
// that a restarted lvsd leaves them as the kernel has them.
var _ dataplane.Unchecked = (*health.Monitor)(nil)

// dataplaneWiring connects the committed configuration, the health monitor
// and this node's leadership to the dataplane. With --dataplane none it holds
// nothing and does nothing.
type dataplaneWiring struct {
	log      *slog.Logger
	dp       *dataplane.Dataplane
	mon      *health.Monitor
	bgp      *bgpWiring
	stopping atomic.Bool
}

// contact is how long a follower may go unheard by the leader and still
// announce bgp-mode VIPs.
func newDataplane(f *flags, log *slog.Logger, contact time.Duration) (*dataplaneWiring, error) {
	w := &dataplaneWiring{log: log}
	switch f.dataplane {
	case "none":
		return w, nil
	case "ipvs", "vip":
	default:
		return nil, fmt.Errorf("--dataplane %q: want ipvs, vip or none", f.dataplane)
	}
	w.mon = health.New(health.Options{
		NodeID: f.id, Logger: log,
		// The dataplane exists by the time a check can finish: the
		// monitor only runs once start is called.
		OnChange: func() { w.dp.HealthChanged() },
	})
	dp, err := dataplane.New(dataplane.Options{
		Mode: dataplane.Mode(f.dataplane), NodeID: f.id, DefaultInterface: f.iface,
		Logger: log, Health: w.mon, StateFile: filepath.Join(f.dataDir, "dataplane.json"),
		AddressLifetime: f.addressLifetime,
	})
	if err != nil {
		// Without IPVS the error already names --dataplane vip|none.
		return nil, fmt.Errorf("--dataplane %s: %w", f.dataplane, err)
	}
	w.dp = dp
	if w.bgp, err = newBGP(f, log, dp, contact); err != nil {
		return nil, err
	}
	return w, nil
}

// status and health are nil interfaces (not typed nils) when absent, so the
// server sees "no provider".
func (w *dataplaneWiring) status() server.DataplaneStatus {
	if w.dp == nil {
		return nil
	}
	return w
}

// Status is the dataplane's status with the BGP announcer's.
func (w *dataplaneWiring) Status(st *shoalv1.NodeStatus) {
	w.dp.Status(st)
	w.bgp.status(st)
}

// sync is the connection table a planned transfer waits on (nil
// interface without a dataplane).
func (w *dataplaneWiring) sync() server.ConnectionSync {
	if w.dp == nil {
		return nil
	}
	return w.dp
}

func (w *dataplaneWiring) health() server.HealthStatus {
	if w.mon == nil {
		return nil
	}
	return w.mon
}

// start runs the dataplane, the health monitor and the loops that feed them
// in g until ctx ends. Call release first on shutdown.
func (w *dataplaneWiring) start(ctx context.Context, g *errgroup.Group, node *raftfsm.Node) {
	if w.dp == nil {
		return
	}
	g.Go(func() error { return w.dp.Run(ctx) })
	g.Go(func() error { return w.mon.Run(ctx) })
	g.Go(func() error { w.followConfig(ctx, node); return nil })
	g.Go(func() error { w.followLeadership(ctx, node); return nil })
	w.bgp.start(ctx, g, node)
}

// release drops the VIPs at once, before raft shuts down, and keeps them
// dropped: a leader that is leaving must not hold addresses a moment longer.
func (w *dataplaneWiring) release() {
	if w.dp == nil {
		return
	}
	w.stopping.Store(true)
	w.dp.SetLeader(false)
	w.bgp.release()
}

// followConfig hands every committed configuration to the monitor and the
// dataplane (every node, leader or not).
func (w *dataplaneWiring) followConfig(ctx context.Context, node *raftfsm.Node) {
	for ctx.Err() == nil {
		events, cancel := node.FSM().Subscribe(64)
		// Subscribe first, then read the state: nothing falls in between.
		w.setConfig(node)
		for open := true; open; {
			select {
			case <-ctx.Done():
				cancel()
				return
			case _, ok := <-events:
				if !ok {
					// Dropped for falling behind; State() has everything.
					w.log.Warn("config events fell behind; resyncing from state")
					open = false
					continue
				}
				w.setConfig(node)
			}
		}
		cancel()
	}
}

func (w *dataplaneWiring) setConfig(node *raftfsm.Node) {
	cfg := node.FSM().State().GetConfig()
	w.mon.SetConfig(cfg)
	w.dp.SetConfig(cfg)
	w.bgp.ann.SetConfig(cfg)
}

// followLeadership raises the VIPs while this node leads and its monitored
// links are up; a leader with a monitored link down hands leadership away.
func (w *dataplaneWiring) followLeadership(ctx context.Context, node *raftfsm.Node) {
	lead, stopLead := node.Leadership()
	defer stopLead()
	var links <-chan bool
	linksUp := true
	if l := w.dp.Links(); l != nil {
		ch, stopLinks := l.Subscribe()
		defer stopLinks()
		links = ch
	}
	leader := false
	for {
		select {
		case <-ctx.Done():
			return
		case v, ok := <-lead:
			if !ok {
				lead, v = nil, false
			}
			leader = v
		case v, ok := <-links:
			if !ok {
				links, v = nil, true
			}
			linksUp = v
		}
		if w.stopping.Load() {
			continue
		}
		w.dp.SetLeader(leader)
		if leader && !linksUp {
			down := w.dp.Links().Down()
			w.log.Warn("a monitored link is down; handing leadership away", "links", down)
			if err := node.Raft().LeadershipTransfer().Error(); err != nil {
				w.log.Error("leadership transfer for a down link failed; keeping leadership", "links", down, "err", err)
			}
		}
	}
}
