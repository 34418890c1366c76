package server

import (
	"context"
	"time"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// registerInterval is how often a node checks that the registry holds its
// API address; gaining leadership checks at once.
const registerInterval = 500 * time.Millisecond

// registerLoop keeps this node's API address in the replicated member
// registry, which followers use to forward and status uses to ask members.
func (s *Server) registerLoop(ctx context.Context) {
	lead, stop := s.node.Leadership()
	defer stop()
	tick := time.NewTicker(registerInterval)
	defer tick.Stop()
	for {
		s.registerOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case _, ok := <-lead:
			if !ok {
				lead = nil
			}
		case <-tick.C:
		}
	}
}

func (s *Server) registerOnce(ctx context.Context) {
	for _, m := range s.node.FSM().State().GetMembers() {
		if m.GetId() == s.o.ID && m.GetApiAddress() == s.o.APIAddr {
			return
		}
	}
	// A node outside the raft configuration (not joined yet, or removed)
	// must not put itself back in the registry.
	f := s.node.Raft().GetConfiguration()
	if f.Error() != nil {
		return
	}
	member := false
	for _, srv := range f.Configuration().Servers {
		member = member || string(srv.ID) == s.o.ID
	}
	if !member {
		return
	}
	if _, _, _, err := s.leaderNow(); err != nil && !s.isLeader() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := s.commit(ctx, &shoalv1.Command{Op: &shoalv1.Command_RegisterMember{RegisterMember: &shoalv1.RegisterMember{Id: s.o.ID, ApiAddress: s.o.APIAddr}}}, judged{})
	if err != nil {
		s.log.Debug("register API address", "node", s.o.ID, "api_addr", s.o.APIAddr, "err", err)
		return
	}
	s.log.Info("registered API address", "node", s.o.ID, "api_addr", s.o.APIAddr)
}
