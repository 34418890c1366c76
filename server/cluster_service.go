package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"github.com/shoal-lb/shoal/raftfsm"
)

// forwardedKey marks a cluster call one node passed to the leader, so the
// receiver never passes it on again.
const forwardedKey = "x-shoal-forwarded"

// clusterIDKey carries the sending node's cluster ID on every call it makes
// to another node; the receiver refuses a call passed on, or a peer call,
// from a node of another cluster (checkClusterID).
const clusterIDKey = "x-shoal-cluster-id"

// membershipTimeout bounds one raft membership change.
const membershipTimeout = 10 * time.Second

type clusterService struct {
	*Server
	shoalv1.UnimplementedClusterServiceServer
}

func forwarded(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(forwardedKey)) > 0
}

// onLeader runs local on the leader: here when this node leads, otherwise
// remote against the leader's connection, retrying while leadership moves.
func (s *Server) onLeader(ctx context.Context, local func(context.Context) error, remote func(context.Context, *grpc.ClientConn) error) error {
	deadline := time.Now().Add(s.o.LeaderWait)
	for {
		err := s.onLeaderOnce(ctx, local, remote)
		if err == nil || !retryable(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return toStatus(err)
		}
		select {
		case <-ctx.Done():
			return toStatus(err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *Server) onLeaderOnce(ctx context.Context, local func(context.Context) error, remote func(context.Context, *grpc.ClientConn) error) error {
	if forwarded(ctx) {
		if !s.isLeader() {
			return status.Error(codes.Unavailable, notLeaderMsg)
		}
		err := local(ctx)
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raftfsm.ErrNotLeader) {
			// Lost leadership before anything was written: the sender
			// may look the leader up again and retry.
			return status.Error(codes.Unavailable, notLeaderMsg)
		}
		return err
	}
	_, addr, self, err := s.leader(ctx)
	if err != nil {
		return err
	}
	if self {
		return local(ctx)
	}
	cc, err := s.conn(addr)
	if err != nil {
		return err
	}
	err = remote(metadata.AppendToOutgoingContext(ctx, forwardedKey, s.o.ID), cc)
	if notConnected(err) {
		return fmt.Errorf("leader at %s unreachable (%s): %w", addr, status.Convert(err).Message(), errNoLeader)
	}
	return err
}

func (c clusterService) AddMember(ctx context.Context, req *shoalv1.AddMemberRequest) (*shoalv1.AddMemberResponse, error) {
	if req.GetId() == "" {
		return nil, invalid("id", "required")
	}
	if req.GetRaftAddress() == "" {
		return nil, invalid("raft_address", "required")
	}
	err := c.onLeader(ctx, func(ctx context.Context) error {
		r := c.node.Raft()
		id, addr := raft.ServerID(req.GetId()), raft.ServerAddress(req.GetRaftAddress())
		var f raft.IndexFuture
		if req.GetNonvoter() {
			f = r.AddNonvoter(id, addr, 0, membershipTimeout)
		} else {
			f = r.AddVoter(id, addr, 0, membershipTimeout)
		}
		if err := f.Error(); err != nil {
			return fmt.Errorf("add member %s at %s: %w", id, addr, err)
		}
		c.log.Info("member added", "node", id, "raft_addr", addr, "nonvoter", req.GetNonvoter())
		if req.GetApiAddress() == "" {
			return nil
		}
		_, err := c.node.Apply(ctx, &shoalv1.Command{Op: &shoalv1.Command_RegisterMember{RegisterMember: &shoalv1.RegisterMember{Id: req.GetId(), ApiAddress: req.GetApiAddress()}}})
		return err
	}, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := shoalv1.NewClusterServiceClient(cc).AddMember(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Whichever node answers is of the leader's cluster: a call passed on
	// between nodes of two clusters is refused (checkClusterID).
	return &shoalv1.AddMemberResponse{ClusterId: c.node.ClusterID()}, nil
}

func (c clusterService) RemoveMember(ctx context.Context, req *shoalv1.RemoveMemberRequest) (*shoalv1.RemoveMemberResponse, error) {
	if req.GetId() == "" {
		return nil, invalid("id", "required")
	}
	// An attempt that lost the leader may have removed the member all the
	// same (the entry commits under the next leader): once this call has
	// tried, a member that is gone is this call's doing, not an unknown ID.
	// A forwarded retry says so to the leader.
	tried := retriedRemoval(ctx)
	err := c.onLeader(ctx, func(ctx context.Context) error {
		r := c.node.Raft()
		f := r.GetConfiguration()
		if err := f.Error(); err != nil {
			return fmt.Errorf("read raft configuration: %w", err)
		}
		found := false
		for _, srv := range f.Configuration().Servers {
			found = found || string(srv.ID) == req.GetId()
		}
		if !found && tried {
			c.log.Info("member already removed, by an earlier attempt of this call", "node", req.GetId())
			return nil
		}
		if !found {
			return status.Errorf(codes.NotFound, "member %s: not in the raft configuration", req.GetId())
		}
		tried = true
		// Forget the API address first: removing the leader itself ends
		// its leadership, after which it could no longer write.
		if _, err := c.node.Apply(ctx, &shoalv1.Command{Op: &shoalv1.Command_UnregisterMember{UnregisterMember: &shoalv1.UnregisterMember{Id: req.GetId()}}}); err != nil {
			return fmt.Errorf("unregister member %s: %w", req.GetId(), err)
		}
		if err := r.RemoveServer(raft.ServerID(req.GetId()), 0, membershipTimeout).Error(); err != nil {
			return fmt.Errorf("remove member %s: %w", req.GetId(), err)
		}
		c.log.Info("member removed", "node", req.GetId())
		return nil
	}, func(ctx context.Context, cc *grpc.ClientConn) error {
		if tried {
			ctx = metadata.AppendToOutgoingContext(ctx, retriedRemovalKey, "true")
		}
		tried = true
		_, err := shoalv1.NewClusterServiceClient(cc).RemoveMember(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &shoalv1.RemoveMemberResponse{}, nil
}

// retriedRemovalKey marks a RemoveMember a node forwards again after an
// attempt whose outcome it does not know.
const retriedRemovalKey = "x-shoal-retried-removal"

func retriedRemoval(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && forwarded(ctx) && len(md.Get(retriedRemovalKey)) > 0
}

func (c clusterService) TransferLeadership(ctx context.Context, req *shoalv1.TransferLeadershipRequest) (*shoalv1.TransferLeadershipResponse, error) {
	var resp *shoalv1.TransferLeadershipResponse
	err := c.onLeader(ctx, func(ctx context.Context) error {
		if req.GetId() == c.o.ID {
			resp = &shoalv1.TransferLeadershipResponse{LeaderId: c.o.ID}
			return nil
		}
		r := c.node.Raft()
		cf := r.GetConfiguration()
		if err := cf.Error(); err != nil {
			return fmt.Errorf("read raft configuration: %w", err)
		}
		var target *raft.Server
		var voters []raft.Server
		for _, srv := range cf.Configuration().Servers {
			if string(srv.ID) == req.GetId() {
				target = &srv
			}
			if string(srv.ID) != c.o.ID && srv.Suffrage == raft.Voter {
				voters = append(voters, srv)
			}
		}
		if req.GetId() != "" && target == nil {
			return status.Errorf(codes.NotFound, "member %s: not in the raft configuration", req.GetId())
		}
		// With connection sync on, the VIPs move only once the target
		// holds this node's connections, or the wait is over.
		var sync *shoalv1.TransferSync
		if wait := syncWait(req); wait > 0 && c.o.Sync != nil && c.o.Sync.SyncEnabled() {
			cands := voters
			if target != nil {
				cands = []raft.Server{*target}
			}
			if len(cands) > 0 {
				var chosen *raft.Server
				chosen, sync = c.waitForSync(ctx, cands, wait)
				if target == nil {
					target = chosen
				}
			}
		}
		var f raft.Future
		if target == nil {
			f = r.LeadershipTransfer()
		} else {
			f = r.LeadershipTransferToServer(target.ID, target.Address)
		}
		if err := f.Error(); err != nil {
			if retryable(err) || errors.Is(err, raft.ErrNotLeader) {
				return fmt.Errorf("transfer leadership: %w", err)
			}
			// No follower to take over, or one that does not answer.
			return status.Errorf(codes.FailedPrecondition, "transfer leadership: %v", err)
		}
		// Answer with the new leader once this node has heard of it.
		lctx, cancel := context.WithTimeout(ctx, c.o.LeaderWait)
		defer cancel()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if _, id := r.LeaderWithID(); id != "" && string(id) != c.o.ID {
				resp = &shoalv1.TransferLeadershipResponse{LeaderId: string(id), Sync: sync}
				c.log.Info("leadership transferred", "node", id)
				return nil
			}
			select {
			case <-lctx.Done():
				resp = &shoalv1.TransferLeadershipResponse{Sync: sync}
				return nil
			case <-tick.C:
			}
		}
	}, func(ctx context.Context, cc *grpc.ClientConn) error {
		var err error
		resp, err = shoalv1.NewClusterServiceClient(cc).TransferLeadership(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// syncWait is how long a transfer waits for connection sync.
func syncWait(req *shoalv1.TransferLeadershipRequest) time.Duration {
	if req.GetSyncWait() == nil {
		return DefaultSyncWait
	}
	return max(req.GetSyncWait().AsDuration(), 0)
}

// GetClusterStatus combines this node's raft configuration and member
// registry with what every member says of itself, asked in parallel.
func (c clusterService) GetClusterStatus(ctx context.Context, _ *shoalv1.GetClusterStatusRequest) (*shoalv1.GetClusterStatusResponse, error) {
	f := c.node.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, toStatus(fmt.Errorf("read raft configuration: %w", err))
	}
	st := c.node.FSM().State()
	api := map[string]string{}
	for _, m := range st.GetMembers() {
		api[m.GetId()] = m.GetApiAddress()
	}
	ns := c.node.Status()
	resp := &shoalv1.GetClusterStatusResponse{
		LeaderId:    ns.LeaderID,
		Term:        ns.Term,
		CommitIndex: ns.CommitIndex,
		Serial:      st.GetConfig().GetSerial(),
	}
	servers := f.Configuration().Servers
	resp.Members = make([]*shoalv1.Member, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		m := &shoalv1.Member{
			Id:          string(srv.ID),
			RaftAddress: string(srv.Address),
			ApiAddress:  api[string(srv.ID)],
			Suffrage:    strings.ToLower(srv.Suffrage.String()),
		}
		resp.Members[i] = m
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.fillMember(ctx, m)
		}()
	}
	wg.Wait()
	for _, m := range resp.Members {
		if m.HoldsVips && resp.VipHolder == "" {
			resp.VipHolder = m.Id
		}
	}
	return resp, nil
}

func (c clusterService) fillMember(ctx context.Context, m *shoalv1.Member) {
	var ns *shoalv1.NodeStatus
	switch {
	case m.Id == c.o.ID:
		ns = c.nodeStatus(false)
	case m.ApiAddress == "":
		m.Role, m.Error = "unreachable", "no API address registered"
		return
	default:
		cc, err := c.conn(m.ApiAddress)
		if err == nil {
			ctx, cancel := context.WithTimeout(ctx, c.o.PeerTimeout)
			defer cancel()
			var resp *shoalv1.GetNodeStatusResponse
			resp, err = shoalv1.NewNodeServiceClient(cc).GetNodeStatus(ctx, &shoalv1.GetNodeStatusRequest{View: shoalv1.NodeStatusView_NODE_STATUS_VIEW_BASIC})
			ns = resp.GetStatus()
		}
		if err != nil {
			m.Role, m.Error = "unreachable", status.Convert(err).Message()
			return
		}
	}
	m.Role = ns.GetRole()
	m.LastContact = ns.GetLastContact()
	m.AppliedIndex = ns.GetAppliedIndex()
	m.AppliedSerial = ns.GetAppliedSerial()
	m.HoldsVips = ns.GetHoldsVips()
	m.Certificate = ns.GetCertificate()
	m.Build = ns.GetBuild()
	m.ReconciledSerial = ns.GetReconciledSerial()
	m.LastReconcile = ns.GetLastReconcile()
	m.ReconcileError = ns.GetReconcileError()
	m.Addresses = ns.GetAddresses()
}
