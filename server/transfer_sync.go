package server

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// DefaultSyncWait bounds how long a planned transfer waits, with connection
// sync on, for the target to hold the leader's established connections.
// The kernel's master sends a partly filled sync message about 2 s after
// its first entry (IPVS_SYNC_FLUSH_TIME, looked at every second), so a
// connection established just before the transfer takes up to about 3 s to
// reach the backups; 5 s leaves room for a busy host.
const DefaultSyncWait = 5 * time.Second

// syncPoll is how often the leader asks the target again while it waits.
const syncPoll = 100 * time.Millisecond

// ConnectionSync is what a planned transfer needs of this node's
// dataplane (*dataplane.Dataplane): whether connection sync is on, a
// sample of its established connections, and which connections it lacks.
type ConnectionSync interface {
	SyncEnabled() bool
	SampleEstablished() ([]string, error)
	MissingConns(keys []string) (missing []string, total int, err error)
}

// syncCandidate is one member that may take leadership, with what it
// still lacks of the leader's sample.
type syncCandidate struct {
	srv     raft.Server
	api     string
	missing []string
	err     error
}

// waitForSync runs on the leader before a planned transfer: it samples the
// leader's established connections and asks each candidate which of them
// it lacks, until one holds them all (among those the leader still has:
// connections that ended meanwhile no longer count) or wait runs out. It
// returns the candidate to hand leadership to (nil: let raft choose) and
// the report. It never fails the transfer: a transfer is how an operator
// takes a router out, and a late sync is better reported than obeyed.
func (c clusterService) waitForSync(ctx context.Context, candidates []raft.Server, wait time.Duration) (*raft.Server, *shoalv1.TransferSync) {
	start := time.Now()
	rep := &shoalv1.TransferSync{}
	done := func(chosen *syncCandidate, complete bool) (*raft.Server, *shoalv1.TransferSync) {
		rep.Waited = durationpb.New(time.Since(start))
		rep.Complete = complete
		result := "incomplete"
		switch {
		case complete:
			result = "complete"
		case rep.Error != "":
			result = "error"
		}
		c.metrics.transferSync.WithLabelValues(result).Inc()
		if chosen == nil {
			return nil, rep
		}
		rep.Target = string(chosen.srv.ID)
		rep.Missing = uint32(len(chosen.missing))
		if chosen.err != nil && rep.Error == "" {
			rep.Error = chosen.err.Error()
		}
		return &chosen.srv, rep
	}
	sample, err := c.o.Sync.SampleEstablished()
	if err != nil {
		rep.Error = "sample the leader's connections: " + err.Error()
		return done(nil, false)
	}
	rep.Checked = uint32(len(sample))
	api := map[string]string{}
	for _, m := range c.node.FSM().State().GetMembers() {
		api[m.GetId()] = m.GetApiAddress()
	}
	var cands []*syncCandidate
	for _, srv := range candidates {
		cands = append(cands, &syncCandidate{srv: srv, api: api[string(srv.ID)], missing: sample})
	}
	if len(sample) == 0 {
		// Nothing established to carry over.
		if len(cands) == 1 {
			cands[0].missing = nil
			return done(cands[0], true)
		}
		return done(nil, true)
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(syncPoll)
	defer tick.Stop()
	for {
		for _, cand := range cands {
			c.checkCandidate(wctx, cand)
			if cand.err == nil && len(cand.missing) == 0 {
				c.log.Info("planned transfer: the target holds the leader's connections",
					"node", cand.srv.ID, "checked", len(sample), "waited", time.Since(start).Round(time.Millisecond))
				return done(cand, true)
			}
		}
		select {
		case <-wctx.Done():
			// The one that lacks least, among those that answered.
			best := slices.MinFunc(cands, func(a, b *syncCandidate) int {
				if (a.err == nil) != (b.err == nil) {
					if a.err == nil {
						return -1
					}
					return 1
				}
				return len(a.missing) - len(b.missing)
			})
			if len(cands) > 1 && best.err != nil {
				best = nil // none answered: raft's choice is as good
			}
			if best != nil {
				c.log.Warn("planned transfer: the target does not hold every connection of the leader; transferring anyway",
					"node", best.srv.ID, "missing", len(best.missing), "checked", len(sample), "waited", time.Since(start).Round(time.Millisecond), "err", best.err)
			} else {
				c.log.Warn("planned transfer: no member could say whether it holds the leader's connections; transferring anyway",
					"checked", len(sample), "waited", time.Since(start).Round(time.Millisecond))
				rep.Error = "no candidate answered"
			}
			return done(best, false)
		case <-tick.C:
		}
	}
}

// checkCandidate asks one candidate which of the connections it still
// lacks, and forgets those the leader no longer has.
func (c clusterService) checkCandidate(ctx context.Context, cand *syncCandidate) {
	if cand.api == "" {
		// A member registers its API address once it has joined; a
		// transfer soon after may come before that commits.
		for _, m := range c.node.FSM().State().GetMembers() {
			if m.GetId() == string(cand.srv.ID) {
				cand.api = m.GetApiAddress()
			}
		}
	}
	if cand.api == "" {
		cand.err = fmt.Errorf("member %s has no API address registered", cand.srv.ID)
		return
	}
	cc, err := c.conn(cand.api)
	if err != nil {
		cand.err = err
		return
	}
	cctx, cancel := context.WithTimeout(ctx, c.o.PeerTimeout)
	resp, err := shoalv1.NewPeerServiceClient(cc).CheckConnections(cctx, &shoalv1.CheckConnectionsRequest{Connections: cand.missing})
	cancel()
	if err != nil {
		// A call cut short by the end of the wait is no answer, and must not
		// hide the one before it. gRPC may report the deadline before ctx's
		// own timer has fired, so ctx.Err() alone is not enough.
		if dl, ok := ctx.Deadline(); ctx.Err() == nil && (!ok || time.Now().Before(dl)) {
			cand.err = fmt.Errorf("ask %s: %s", cand.srv.ID, status.Convert(err).Message())
		}
		return
	}
	cand.err = nil
	missing := resp.GetMissing()
	if len(missing) == 0 {
		cand.missing = nil
		return
	}
	// A connection the leader no longer holds has ended: nobody needs it.
	gone, _, err := c.o.Sync.MissingConns(missing)
	if err != nil {
		cand.missing = missing
		return
	}
	goneSet := map[string]bool{}
	for _, k := range gone {
		goneSet[k] = true
	}
	cand.missing = slices.DeleteFunc(missing, func(k string) bool { return goneSet[k] })
}

// CheckConnections says which of the given connections this node's kernel
// lacks; the leader asks it of the target of a planned transfer.
func (p peerService) CheckConnections(_ context.Context, req *shoalv1.CheckConnectionsRequest) (*shoalv1.CheckConnectionsResponse, error) {
	if p.o.Sync == nil {
		return nil, status.Error(codes.FailedPrecondition, "this node has no IPVS connection table (lvsd --dataplane ipvs runs one)")
	}
	missing, total, err := p.o.Sync.MissingConns(req.GetConnections())
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "read the connection table: %v", err)
	}
	return &shoalv1.CheckConnectionsResponse{Missing: missing, Total: uint64(total)}, nil
}
