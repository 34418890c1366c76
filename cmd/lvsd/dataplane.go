package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/dataplane"
	"github.com/shoal-lb/shoal/dataplane/health"
	"github.com/shoal-lb/shoal/dataplane/hook"
	"github.com/shoal-lb/shoal/dataplane/script"
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
	hooks    *hook.Dispatcher
	bgp      *bgpWiring
	stopping atomic.Bool
	cfg      atomic.Pointer[shoalv1.Config] // the last one handed over, for the hooks' events

	reconcileErr string // the last reconcile error a hook heard of; reconciles run one at a time
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
	dirs := f.scriptDirs
	if len(dirs) == 0 {
		dirs = []string{script.DefaultDir}
	}
	scripts, err := script.New(script.Options{Dirs: dirs, User: f.scriptUser, AllowShell: f.allowShell})
	if err != nil {
		return nil, fmt.Errorf("--script-dir/--script-user: %w", err)
	}
	if !scripts.Switches() && os.Geteuid() == 0 {
		log.Warn("exec checks and hooks run as root (--script-user)", "user", f.scriptUser)
	}
	log.Info("scripts", "dirs", scripts.Dirs(), "user", scripts.User(), "switch_user", scripts.Switches(), "shell", f.allowShell)
	w.hooks = hook.New(hook.Options{Node: f.id, Scripts: scripts, Logger: log})
	w.mon = health.New(health.Options{
		NodeID: f.id, Logger: log, Scripts: scripts,
		// The dataplane exists by the time a check can finish: the
		// monitor only runs once start is called.
		OnChange: func() { w.dp.HealthChanged() },
	})
	dp, err := dataplane.New(dataplane.Options{
		Mode: dataplane.Mode(f.dataplane), NodeID: f.id, DefaultInterface: f.iface,
		Logger: log, Health: w.mon, StateFile: filepath.Join(f.dataDir, "dataplane.json"),
		AddressLifetime: f.addressLifetime, OnReconcile: w.reconciled,
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

func (w *dataplaneWiring) IPVSStatus(st *shoalv1.NodeStatus) { w.dp.IPVSStatus(st) }

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
	g.Go(func() error { w.followHealth(ctx); return nil })
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
	// After the VIPs are gone, so that a shutdown hook may tell a peer or
	// a firewall they moved. It runs while raft hands leadership over;
	// finishHooks waits for it after that.
	w.hooks.Emit(w.event(config.EventShutdown, "lvsd stopping"))
}

// finishHooks waits for the hooks still queued or running (the shutdown
// hooks among them), at most their longest timeout, then kills the rest.
// Call it after raft has shut down, so that no hook delays a takeover.
func (w *dataplaneWiring) finishHooks() {
	if w.hooks == nil {
		return
	}
	if !w.hooks.Flush(config.MaxHookTimeout) {
		w.log.Warn("hooks still running at shutdown; killing them")
	}
	w.hooks.Close()
}

// followConfig hands every committed configuration to the monitor and the
// dataplane (every node, leader or not).
func (w *dataplaneWiring) followConfig(ctx context.Context, node *raftfsm.Node) {
	for ctx.Err() == nil {
		events, cancel := node.FSM().Subscribe(0)
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
	if w.cfg.Swap(cfg) == cfg {
		// The events of one raft batch all carry the state after it.
		return
	}
	w.hooks.SetHooks(cfg.GetGlobal().GetHooks())
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
	leader, leading := false, false
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
		// SetLeader returns after the VIPs moved: the hooks hear of it then.
		if leader != leading {
			leading = leader
			name, why := config.EventFollower, "stopped leading"
			if leader {
				name, why = config.EventLeader, "became leader"
			}
			w.hooks.Emit(w.event(name, why))
		}
		if leader && !linksUp {
			down := w.dp.Links().Down()
			w.log.Warn("a monitored link is down; handing leadership away", "links", down)
			if err := node.Raft().LeadershipTransfer().Error(); err != nil {
				w.log.Error("leadership transfer for a down link failed; keeping leadership", "links", down, "err", err)
			}
		}
	}
}

// event is a leadership event with the config's addresses.
func (w *dataplaneWiring) event(name, reason string) hook.Event {
	cfg := w.cfg.Load()
	return hook.Event{Name: name, VIPs: vipsOf(cfg), Reason: reason, Serial: cfg.GetSerial()}
}

// vipsOf lists the addresses a leader holds for cfg: the services' VIPs
// and the NAT router address, each once.
func vipsOf(cfg *shoalv1.Config) []string {
	var out []string
	add := func(a *shoalv1.Address) {
		if a.GetAddress() != "" && !slices.Contains(out, a.GetAddress()) {
			out = append(out, a.GetAddress())
		}
	}
	for _, s := range cfg.GetServices() {
		add(s.GetVip())
	}
	add(cfg.GetGlobal().GetNatRouter())
	return out
}

// stalled hears raftfsm's moments worth explaining; a fence lapse is a
// hook event.
func (w *dataplaneWiring) stalled(what string) {
	if w.hooks != nil && what == "fence-lapse" {
		w.hooks.Emit(w.event(config.EventFenceLapse, "leader fence lapsed: VIPs dropped until a quorum answers"))
	}
}

// reconciled turns a new reconcile error into a hook event, once per
// distinct error rather than on every resync.
func (w *dataplaneWiring) reconciled(serial uint64, err error) {
	if err == nil {
		w.reconcileErr = ""
		return
	}
	if err.Error() == w.reconcileErr {
		return
	}
	w.reconcileErr = err.Error()
	w.hooks.Emit(hook.Event{Name: config.EventReconcileError, Reason: err.Error(), Serial: serial})
}

// followHealth turns real servers' verdicts into server-up and
// server-down events. A server's first verdict is an event only when it is
// down: a restarted router does not page for every server that is fine.
func (w *dataplaneWiring) followHealth(ctx context.Context) {
	known := map[string]string{}
	for ctx.Err() == nil {
		ch, cancel := w.mon.Subscribe(256)
		w.followHealthOnce(ctx, ch, known)
		cancel()
	}
}

func (w *dataplaneWiring) followHealthOnce(ctx context.Context, ch <-chan *shoalv1.RealServerHealth, known map[string]string) {
	for {
		select {
		case <-ctx.Done():
			return
		case st, ok := <-ch:
			if !ok {
				return
			}
			server := net.JoinHostPort(st.GetAddress(), strconv.Itoa(int(st.GetPort())))
			k := st.GetService() + "|" + server
			prev, seen := known[k]
			known[k] = st.GetState()
			if prev == st.GetState() || (!seen && st.GetState() == "up") {
				continue
			}
			name := config.EventServerDown
			if st.GetState() == "up" {
				name = config.EventServerUp
			}
			w.hooks.Emit(hook.Event{Name: name, Service: st.GetService(), Server: server, Reason: st.GetReason(),
				Serial: w.cfg.Load().GetSerial()})
		}
	}
}
