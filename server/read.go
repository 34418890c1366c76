package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"github.com/shoal-lb/shoal/raftfsm"
)

// read returns the state a read of the given consistency may serve.
func (s *Server) read(ctx context.Context, c shoalv1.ReadConsistency) (*shoalv1.State, error) {
	if c != shoalv1.ReadConsistency_READ_CONSISTENCY_STALE {
		if err := s.barrier(ctx); err != nil {
			return nil, toStatus(err)
		}
	}
	return s.node.FSM().State(), nil
}

// barrier makes the local state include every write acknowledged before it
// was called: the leader confirms it still leads and names its applied
// index, and this node waits until it has applied that much.
func (s *Server) barrier(ctx context.Context) error {
	deadline := time.Now().Add(s.o.LeaderWait)
	for {
		idx, err := s.readIndexOnce(ctx)
		if err == nil {
			return s.node.WaitApplied(ctx, idx)
		}
		if !retryable(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *Server) readIndexOnce(ctx context.Context) (uint64, error) {
	if s.isLeader() {
		idx, err := s.node.ReadIndex(ctx)
		if !errors.Is(err, raftfsm.ErrNotLeader) {
			return idx, err
		}
	}
	_, addr, self, err := s.leader(ctx)
	if err != nil {
		return 0, err
	}
	if self {
		return s.node.ReadIndex(ctx)
	}
	cc, err := s.conn(addr)
	if err != nil {
		return 0, err
	}
	resp, err := shoalv1.NewPeerServiceClient(cc).ReadIndex(ctx, &shoalv1.ReadIndexRequest{})
	if err != nil {
		if notConnected(err) {
			// A read index can always be asked again.
			return 0, fmt.Errorf("leader at %s unreachable (%s): %w", addr, status.Convert(err).Message(), errNoLeader)
		}
		return 0, err
	}
	return resp.GetIndex(), nil
}

// findService finds a service of a committed configuration, whose services
// are sorted by name (config.Normalize).
func findService(c *shoalv1.Config, name string) *shoalv1.VirtualService {
	ss := c.GetServices()
	if i, ok := slices.BinarySearchFunc(ss, name, func(s *shoalv1.VirtualService, name string) int {
		return strings.Compare(s.GetName(), name)
	}); ok {
		return ss[i]
	}
	return nil
}
