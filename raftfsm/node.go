package raftfsm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/shoal-lb/shoal/liveness"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// logCacheSize is how many recent log entries are served from memory; a
// few seconds of writes at hundreds per second.
const logCacheSize = 1024

// Timing maps onto raft.Config: HeartbeatTimeout, ElectionTimeout,
// LeaderLeaseTimeout and CommitTimeout. Zero fields take raft's defaults.
// Probe, if set, is the timeout of the kernel probes (package liveness):
// a follower then also finds the leader gone when its router has not
// answered them for Probe, or at once when its daemon exits, so the
// heartbeat timeout is left for a leader whose daemon hangs.
type Timing struct {
	Heartbeat, Election, LeaderLease, Commit time.Duration
	Probe                                    time.Duration
}

// Validate checks the rule that keeps two nodes from holding the VIPs at
// once: no follower starts an election sooner than a heartbeat timeout
// after it last accepted a request from the leader, and the leader's fence
// drops the VIPs one leader lease after it sent the quorum's oldest such
// request. The lease must leave a tenth of the heartbeat timeout, at
// least, for taking the VIPs down.
func (t Timing) Validate() error {
	if t.LeaderLease > t.Heartbeat-t.Heartbeat/10 {
		return fmt.Errorf("leader lease %s must be at most nine tenths of the heartbeat timeout %s, "+
			"or a leader that lost touch could keep the VIPs after a new leader has taken them",
			t.LeaderLease, t.Heartbeat)
	}
	if t.Probe < 0 || t.Probe > 0 && (t.Probe < 8*time.Millisecond || t.Probe >= t.Heartbeat) {
		return fmt.Errorf("probe timeout %s must be 0 (no kernel probes) or at least 8ms and shorter than the heartbeat timeout %s",
			t.Probe, t.Heartbeat)
	}
	return nil
}

// Probes is kernel-level evidence of the leader's health, for a follower,
// and of what the followers know of it, for the leader; *liveness.Checker
// implements it.
type Probes interface {
	// Follow probes the leader at its raft address (zero: stop) and says
	// whether it is down and since when.
	Follow(now time.Time, leader netip.AddrPort) (since time.Time, v liveness.Verdict)
	// Down tells at once when the followed leader's daemon is found dead.
	Down() <-chan struct{}
	// Evidence returns, for each peer, a time no later than which its
	// probes of this node were answered (zero: it sent none).
	Evidence(now time.Time, peers []netip.Addr) []time.Time
}

// Options configures Open.
type Options struct {
	// ID is this node's raft server ID; RaftAddr is where peers reach it.
	ID, RaftAddr string
	// DataDir holds raft.db (log and stable store) and snapshots/.
	DataDir string
	// Bootstrap is the initial configuration; it is used only when the stores
	// hold no state, so passing it again on every start is safe.
	Bootstrap []raft.Server
	// ClusterID is the cluster this node belongs to: ClusterIDFor the
	// bootstrap configuration, or what a join answered. Every Raft
	// connection shows it and refuses a peer of another (clusterid.go).
	// Open keeps it in DataDir (ClusterIDFile) and refuses a data dir
	// with raft state that belongs to another cluster
	// (*ClusterIDMismatchError). Empty: the one DataDir holds, else
	// ClusterIDFor(Bootstrap); a node that knows none takes no part in
	// Raft until it has one.
	ClusterID string
	Timing    Timing
	Logger    *slog.Logger
	// Transport nil means TCP on RaftAddr. A given transport belongs to the
	// caller, which closes it after Shutdown.
	Transport raft.Transport
	// TLS, if set, carries the TCP transport and the kernel probes' daemon
	// watch over mutual TLS.
	TLS *TransportTLS
	// InMemory uses in-memory log, stable and snapshot stores (tests).
	InMemory bool
	// Snapshots says when raft snapshots the state and compacts its log;
	// zero values keep raft's defaults.
	Snapshots SnapshotPolicy
	// Stalled, if set, hears of the moments an operator wants explained:
	// "fence-lapse" when this leader drops its VIPs for want of a quorum's
	// answer, "leader-silent" when this follower starts an election because
	// the leader went quiet. It is called from raftfsm's own goroutines and
	// must return at once.
	Stalled func(event string)
}

// SnapshotPolicy is when raft snapshots the state and compacts its log.
// A node that joins, or one that was away, and needs entries older than
// the log keeps, receives the latest snapshot (InstallSnapshot) instead.
type SnapshotPolicy struct {
	// Interval is how often raft checks whether to snapshot (raft picks a
	// random time between it and twice it); Threshold is how many entries
	// since the last snapshot make one; TrailingLogs is how many entries
	// the log keeps behind a snapshot, for followers that lag a little.
	Interval     time.Duration
	Threshold    uint64
	TrailingLogs uint64
}

// Status is what a node reports of itself.
type Status struct {
	ID string
	// Role is leader, follower, candidate or shutdown.
	Role                            string
	LeaderID, LeaderAddr            string
	Term, CommitIndex, AppliedIndex uint64
	// LastContact is how long ago this node last heard from the leader; 0 on
	// the leader itself.
	LastContact time.Duration
}

// Node is one member of the Raft group: raft, its stores and the FSM.
type Node struct {
	id     string
	log    *slog.Logger
	fsm    *FSM
	raft   *raft.Raft
	closer []io.Closer // stores and an owned transport, closed after raft

	leaders  *leadership
	detector *detector
	join     net.Listener
	ident    *identity
	// disk is what the stores share about failed writes; nil in memory.
	disk *diskFailures
	// live is raft once it runs, for the TLS stream's handshakes, which
	// start before Open has finished.
	live atomic.Pointer[raft.Raft]

	// readyTerm is the term in which a barrier has proved that every entry
	// of earlier terms is applied here (see ReadIndex).
	readyMu   sync.Mutex
	readyTerm uint64

	shutdownOnce sync.Once
	shutdownErr  error
}

// Open starts a raft node. It bootstraps the cluster only when the stores are
// empty and Bootstrap is given. A data dir that is damaged is refused with
// a *DataDirError before raft reads it (diskcheck.go).
func Open(o Options) (n *Node, err error) {
	// raft and bbolt panic on some damage that the checks cannot see
	// coming; here, in the caller's goroutine, that is an error too.
	err = guard(func() error {
		var err error
		n, err = open(o)
		return err
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

func open(o Options) (*Node, error) {
	if o.ID == "" {
		return nil, errors.New("open raft: empty node ID")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	logger := o.Logger.With("node", o.ID)
	conf, err := raftConfig(o, logger)
	if err != nil {
		return nil, err
	}
	n := &Node{id: o.ID, log: logger, fsm: NewFSM()}
	ok := false
	defer func() {
		if !ok {
			n.closeAll()
		}
	}()

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if o.InMemory {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		if o.DataDir == "" {
			return nil, errors.New("open raft: empty data directory")
		}
		if err := os.MkdirAll(o.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("open raft: %w", err)
		}
		if err := checkDataDir(o.DataDir, logger); err != nil {
			return nil, err
		}
		file := filepath.Join(o.DataDir, raftDBFile)
		bolt, err := raftboltdb.New(raftboltdb.Options{Path: file, BoltOptions: &bbolt.Options{Timeout: boltOpenTimeout}})
		if err != nil {
			return nil, fmt.Errorf("open raft log store %s: %w", file, err)
		}
		n.closer = append(n.closer, bolt)
		n.disk = &diskFailures{limiter: logLimiter{every: 10 * time.Second}}
		logWrites := diskWrites{store: "log", log: logger, slow: slowDiskWrite, file: file, fails: n.disk}
		stableWrites := diskWrites{store: "stable", log: logger, slow: slowDiskWrite, file: file, fails: n.disk}
		// The leader reads back every entry it replicates, and a follower
		// the entry before each batch it receives: from the cache, not from
		// bolt, whose read transactions allocate and so bring on the GC
		// cycles that can delay a heartbeat.
		// diskFailpoint slows the writes down only in builds for the
		// nemesis test (-tags nemesis).
		cached := newLogCache(logCacheSize, timedLogs{diskFailpoint(o.ID, bolt), logWrites})
		logs, stable = cached, timedStable{bolt, stableWrites}
		snaps, err = raft.NewFileSnapshotStoreWithLogger(o.DataDir, snapshotRetain, conf.Logger)
		if err != nil {
			return nil, fmt.Errorf("open raft snapshot store in %s: %w", o.DataDir, err)
		}
	}

	exists, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return nil, fmt.Errorf("open raft: inspect stores: %w", err)
	}
	id, learn, err := resolveClusterID(o, exists, logger)
	if err != nil {
		return nil, err
	}
	n.ident = newIdentity(o.ID, id, logger.With("component", "raft-transport"))
	n.ident.learn = learn

	trans := o.Transport
	var hello func(net.Conn) error
	if trans == nil {
		// The timeout bounds dials and I/O to peers. raft's Shutdown waits for
		// dials in flight, and a partition that drops packets (rather than
		// refusing them) keeps a dial hanging for the whole timeout: keep it a
		// few heartbeats, not raft's customary 10 s, so a cut-off node stops
		// promptly on SIGTERM.
		var tcp *raft.NetworkTransport
		if o.TLS != nil {
			stream, err := newTLSStream(o.RaftAddr, *o.TLS, n.ident, n.admits, logger.With("component", "raft-tls"))
			if err != nil {
				return nil, fmt.Errorf("open raft transport on %s: %w", o.RaftAddr, err)
			}
			if stream.join != nil {
				n.join = stream.join
			}
			tcp = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
				Stream: stream, MaxPool: connPool, Timeout: transportTimeout(conf.HeartbeatTimeout), Logger: conf.Logger,
			})
		} else {
			stream, err := newTCPStream(o.RaftAddr, n.ident, logger.With("component", "raft-tcp"))
			if err != nil {
				return nil, fmt.Errorf("open raft transport on %s: %w", o.RaftAddr, err)
			}
			tcp = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
				Stream: stream, MaxPool: connPool, Timeout: transportTimeout(conf.HeartbeatTimeout), Logger: conf.Logger,
			})
		}
		n.closer = append(n.closer, tcp)
		trans = voteTransport{tcp}
		// The daemon watch dials the Raft port too.
		hello = func(c net.Conn) error {
			return n.ident.dial(c, c.RemoteAddr().String(), time.Now().Add(time.Second)) // the watch's dial timeout
		}
	}
	pv, canPreVote := trans.(preVoteTransport)
	if !canPreVote {
		return nil, fmt.Errorf("open raft: transport %T cannot carry pre-votes", trans)
	}
	var probes Probes
	if o.Timing.Probe > 0 {
		var watchTLS *tls.Config
		if o.TLS != nil {
			watchTLS = o.TLS.Client
		}
		c, err := liveness.Open(o.Timing.Probe, liveness.WatchDial{TLS: watchTLS, Hello: hello}, logger.With("component", "liveness"))
		if err != nil {
			return nil, fmt.Errorf("open raft: kernel probes: %w", err)
		}
		n.closer = append(n.closer, c)
		probes = c
		if ap, err := netip.ParseAddrPort(o.RaftAddr); err != nil || !ap.Addr().Is4() {
			logger.Warn("kernel probes work between IPv4 raft addresses only; this node's peers will find it gone by the heartbeat timeout",
				"raft_addr", o.RaftAddr, "heartbeat_timeout", conf.HeartbeatTimeout)
		}
	}
	fence := newFence(conf.LocalID, conf.LeaderLeaseTimeout, probes, o.Timing.Probe)
	trans = fencedTransport{pv, fence}

	if !exists && len(o.Bootstrap) > 0 {
		cfg := raft.Configuration{Servers: o.Bootstrap}
		if err := raft.BootstrapCluster(conf, logs, stable, snaps, trans, cfg); err != nil {
			return nil, fmt.Errorf("bootstrap raft cluster: %w", err)
		}
		logger.Info("bootstrapped raft cluster", "servers", len(o.Bootstrap))
	}

	notify := make(chan bool, 1)
	conf.NotifyCh = notify
	n.raft, err = raft.NewRaft(conf, n.fsm, logs, stable, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	n.live.Store(n.raft)
	fence.raft = n.raft
	stalled := o.Stalled
	if stalled == nil {
		stalled = func(string) {}
	}
	n.leaders = newLeadership(notify, fence, logger, stalled)
	n.detector = newDetector(n.raft, conf.LocalID, conf.HeartbeatTimeout, conf.ElectionTimeout, probes, o.Timing.Probe, logger, stalled)
	n.raft.RegisterObserver(raft.NewObserver(n.detector.observed, false, observes))
	ok = true
	return n, nil
}

func raftConfig(o Options, logger *slog.Logger) (*raft.Config, error) {
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(o.ID)
	t := o.Timing
	if t.Heartbeat > 0 {
		conf.HeartbeatTimeout = t.Heartbeat
	}
	if t.Election > 0 {
		conf.ElectionTimeout = t.Election
	}
	if t.LeaderLease > 0 {
		conf.LeaderLeaseTimeout = t.LeaderLease
	}
	if t.Commit > 0 {
		conf.CommitTimeout = t.Commit
	}
	if err := (Timing{Heartbeat: conf.HeartbeatTimeout, LeaderLease: conf.LeaderLeaseTimeout, Probe: t.Probe}).Validate(); err != nil {
		return nil, fmt.Errorf("raft timing: %w", err)
	}
	if p := o.Snapshots; p.Interval > 0 {
		conf.SnapshotInterval = p.Interval
	}
	if p := o.Snapshots; p.Threshold > 0 {
		conf.SnapshotThreshold = p.Threshold
	}
	if p := o.Snapshots; p.TrailingLogs > 0 {
		conf.TrailingLogs = p.TrailingLogs
	}
	conf.Logger = newHclogAdapter(logger.With("component", "raft"))
	if err := raft.ValidateConfig(conf); err != nil {
		return nil, fmt.Errorf("raft timing: %w", err)
	}
	return conf, nil
}

// admits is whether a peer with a verified node certificate may speak Raft
// to this node: while it is in the Raft configuration, or while this node
// has none yet (it is joining, and the leader that adds it is the first to
// call).
func (n *Node) admits(id string) bool {
	r := n.live.Load()
	if r == nil {
		return false
	}
	f := r.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	servers := f.Configuration().Servers
	return len(servers) == 0 || slices.ContainsFunc(servers, func(s raft.Server) bool { return string(s.ID) == id })
}

// resolveClusterID decides which cluster this node belongs to from what
// the caller says (Options.ClusterID, Bootstrap) and what the data dir
// holds, and stores the answer. learn, if set, persists an ID the node is
// to take from its peers: a data dir from before cluster IDs.
func resolveClusterID(o Options, exists bool, log *slog.Logger) (id string, learn func(string) error, err error) {
	want := o.ClusterID
	if want == "" && len(o.Bootstrap) > 0 {
		want = ClusterIDFor(o.Bootstrap)
	}
	if want != "" && !ValidClusterID(want) {
		return "", nil, fmt.Errorf("open raft: cluster ID %q is not 32 hex digits", want)
	}
	if o.InMemory || o.DataDir == "" {
		return want, nil, nil
	}
	stored, err := ReadClusterID(o.DataDir)
	if err != nil {
		return "", nil, err
	}
	file := filepath.Join(o.DataDir, ClusterIDFile)
	switch {
	case stored != "" && (want == "" || want == stored):
		return stored, nil, nil
	case stored != "" && exists && pathExists(filepath.Join(o.DataDir, RecoveredFile)):
		// lvsctl cluster recover gave it an ID of its own; the router
		// restarts with the flags of the cluster it was recovered from.
		log.Info("this data dir was recovered into a cluster of its own; --bootstrap does not describe it any more",
			"cluster_id", stored, "marker", filepath.Join(o.DataDir, RecoveredFile))
		return stored, nil, nil
	case stored != "" && exists:
		return "", nil, &ClusterIDMismatchError{DataDir: o.DataDir, Stored: stored, Wanted: want}
	case want != "":
		if err := writeClusterID(o.DataDir, want); err != nil {
			return "", nil, err
		}
		switch {
		case exists:
			log.Warn("this data dir is from before cluster IDs: adopted the ID this start describes", "cluster_id", want, "file", file)
		case stored != "":
			log.Info("replaced the cluster ID of a data dir without raft state", "cluster_id", want, "was", stored, "file", file)
		}
		return want, nil, nil
	case exists:
		log.Warn("this data dir is from before cluster IDs, and this start names no cluster: "+
			"the node takes the ID of the first peer of its configuration it reaches, and refuses Raft connections until then",
			"file", file)
		return "", func(id string) error { return writeClusterID(o.DataDir, id) }, nil
	}
	log.Warn("this node knows no cluster ID: it refuses every Raft connection until it bootstraps or joins", "file", file)
	return "", nil, nil
}

func pathExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// ClusterID is the ID of the cluster this node belongs to; "" while it
// knows none.
func (n *Node) ClusterID() string { return n.ident.get() }

// JoinListener yields the join connections of the Raft port (see
// TransportTLS.Join), or is nil. It is closed with the node.
func (n *Node) JoinListener() net.Listener { return n.join }

// FSM returns the node's state machine.
func (n *Node) FSM() *FSM { return n.fsm }

// Raft returns the underlying raft, for membership changes and leadership
// transfer.
func (n *Node) Raft() *raft.Raft { return n.raft }

func (n *Node) notLeader() error {
	addr, id := n.raft.LeaderWithID()
	if id == "" {
		return fmt.Errorf("%w: no leader known", ErrNotLeader)
	}
	return fmt.Errorf("%w: the leader is %s at %s", ErrNotLeader, id, addr)
}

// Apply commits cmd and returns its result once this node's FSM has applied
// it. Only the leader accepts commands: elsewhere the error wraps ErrNotLeader
// and nothing was written. A rejected command returns *Error. An error that
// wraps raft.ErrLeadershipLost means the outcome is unknown: the entry may yet
// commit under the next leader.
func (n *Node) Apply(ctx context.Context, cmd *shoalv1.Command) (*Result, error) {
	return n.ApplyJudged(ctx, cmd, nil, nil)
}

// ApplyJudged is Apply for a command whose outcome the caller computed
// already: res is Judge(base, cmd) (or Apply). When this node's FSM
// applies the entry to base itself (no other entry came between), it
// takes res, building the state Judge left out, instead of computing it
// again; otherwise, as on every follower, it applies cmd as usual. base
// and res must not be modified afterwards.
func (n *Node) ApplyJudged(ctx context.Context, cmd *shoalv1.Command, base *shoalv1.State, res *Result) (*Result, error) {
	if n.raft.State() != raft.Leader {
		return nil, n.notLeader()
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	defer n.fsm.expect(data, base, res)()
	// The timeout bounds only the wait to enqueue; once enqueued the future
	// resolves on commit, on leadership loss or on shutdown.
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		if timeout = time.Until(dl); timeout <= 0 {
			return nil, context.DeadlineExceeded
		}
	}
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		// ErrLeadershipLost is deliberately not ErrNotLeader: the entry may
		// commit yet, so a caller must not blindly retry elsewhere.
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return nil, fmt.Errorf("%w: %w", n.notLeader(), err)
		}
		return nil, fmt.Errorf("raft apply: %w", err)
	}
	switch r := f.Response().(type) {
	case *Result:
		// The FSM's result is shared by nobody but the caller's
		// judged outcome, which it no longer needs: setting the index
		// here keeps the pure Apply free of raft.
		r.Index = f.Index()
		return r, nil
	case error:
		return nil, r
	default:
		return nil, fmt.Errorf("raft apply: unexpected FSM response %T", r)
	}
}

// ReadIndex confirms that this node still leads (a heartbeat round with a
// quorum) and returns an index that covers every write acknowledged before
// the call: a node that has applied it may serve a linearizable read.
//
// A new leader may not yet have applied the entries committed by its
// predecessor, so the first read of each term also waits on a barrier.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, n.notLeader()
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return 0, n.leaderErr("verify leadership", err)
	}
	term := n.raft.CurrentTerm()
	n.readyMu.Lock()
	ready := n.readyTerm == term
	n.readyMu.Unlock()
	if !ready {
		var timeout time.Duration
		if dl, ok := ctx.Deadline(); ok {
			timeout = max(time.Until(dl), time.Millisecond)
		}
		if err := n.raft.Barrier(timeout).Error(); err != nil {
			return 0, n.leaderErr("raft barrier", err)
		}
		// Only a barrier that completed within one term proves that term's
		// leader has applied everything before it.
		if n.raft.CurrentTerm() == term {
			n.readyMu.Lock()
			n.readyTerm = term
			n.readyMu.Unlock()
		}
	}
	return n.fsm.AppliedIndex(), nil
}

func (n *Node) leaderErr(what string, err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		return fmt.Errorf("%w: %w", n.notLeader(), err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// WaitApplied blocks until this node's FSM has applied index, or ctx ends.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	if err := n.fsm.waitApplied(ctx, index); err != nil {
		return fmt.Errorf("wait for index %d (applied %d): %w", index, n.fsm.AppliedIndex(), err)
	}
	return nil
}

// Leadership returns this node's leadership changes, first the current value,
// and a cancel function. Values are coalesced, never queued: a slow reader
// sees the latest value, possibly skipping a short flap. The channel is closed
// (after a final false) when the node shuts down or the subscription is
// cancelled.
func (n *Node) Leadership() (<-chan bool, func()) { return n.leaders.subscribe() }

// Status reports this node's view of the group.
func (n *Node) Status() Status {
	addr, id := n.raft.LeaderWithID()
	st := Status{
		ID:           n.id,
		Role:         strings.ToLower(n.raft.State().String()),
		LeaderID:     string(id),
		LeaderAddr:   string(addr),
		Term:         n.raft.CurrentTerm(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.fsm.AppliedIndex(),
	}
	if n.raft.State() != raft.Leader {
		if lc := n.raft.LastContact(); !lc.IsZero() {
			st.LastContact = time.Since(lc)
		}
	}
	return st
}

// Shutdown hands leadership to another voter when this node leads (so the
// VIPs move at once rather than after an election timeout), then stops raft
// and closes the stores. It is safe to call more than once.
func (n *Node) Shutdown() error {
	n.shutdownOnce.Do(func() {
		if n.raft.State() == raft.Leader && n.hasOtherVoter() {
			// LeadershipTransfer is bounded by raft's election timeout.
			if err := n.raft.LeadershipTransfer().Error(); err != nil {
				n.log.Warn("leadership transfer before shutdown failed", "err", err)
			} else {
				n.log.Info("handed leadership away before shutdown")
			}
		}
		n.detector.stop()
		var errs []error
		stopped, err := n.shutdownRaft()
		if err != nil {
			errs = append(errs, fmt.Errorf("shut down raft: %w", err))
		}
		n.leaders.stop()
		if stopped {
			errs = append(errs, n.closeAll())
		}
		n.shutdownErr = errors.Join(errs...)
	})
	return n.shutdownErr
}

// shutdownRaft stops raft, but does not wait for it while a write of the
// current term waits for disk space (timedStable): that could be forever.
// stopped is false when raft was left waiting; its stores stay open then.
func (n *Node) shutdownRaft() (stopped bool, err error) {
	done := make(chan error, 1)
	go func() { done <- n.raft.Shutdown().Error() }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	stuck := 0
	for {
		select {
		case err := <-done:
			return true, err
		case <-tick.C:
			if n.disk == nil || !n.disk.stuck.Load() {
				stuck = 0
				continue
			}
			if stuck++; stuck >= 10 {
				return false, errors.New("raft did not stop: it waits for disk space to save its current term (no space left on device)")
			}
		}
	}
}

func (n *Node) hasOtherVoter() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && s.ID != raft.ServerID(n.id) {
			return true
		}
	}
	return false
}

func (n *Node) closeAll() error {
	var errs []error
	for i := len(n.closer) - 1; i >= 0; i-- {
		if err := n.closer[i].Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft store: %w", err))
		}
	}
	n.closer = nil
	return errors.Join(errs...)
}

// transportTimeout is the raft transport's dial and I/O timeout for a given
// heartbeat timeout: five heartbeats, at least one second.
func transportTimeout(heartbeat time.Duration) time.Duration {
	return max(time.Second, 5*heartbeat)
}
