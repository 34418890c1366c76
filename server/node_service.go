package server

import (
	"context"
	"crypto/x509"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoal-lb/shoal/buildinfo"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

type nodeService struct {
	*Server
	shoalv1.UnimplementedNodeServiceServer
}

func (n nodeService) GetNodeStatus(_ context.Context, req *shoalv1.GetNodeStatusRequest) (*shoalv1.GetNodeStatusResponse, error) {
	if req.GetBrief() {
		return &shoalv1.GetNodeStatusResponse{Status: n.nodeSummary()}, nil
	}
	return &shoalv1.GetNodeStatusResponse{Status: n.nodeStatus()}, nil
}

// WatchHealth streams this node's health transitions.
func (n nodeService) WatchHealth(_ *shoalv1.WatchHealthRequest, stream grpc.ServerStreamingServer[shoalv1.WatchHealthResponse]) error {
	if n.o.Health == nil {
		return status.Error(codes.Unimplemented, "this node runs no health checks (lvsd --dataplane none)")
	}
	ch, cancel := n.o.Health.Subscribe(64)
	defer cancel()
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			return nil
		case h, ok := <-ch:
			if !ok {
				return status.Error(codes.Aborted, "health watch ended; watch again")
			}
			if err := stream.Send(&shoalv1.WatchHealthResponse{Health: h}); err != nil {
				return err
			}
		}
	}
}

// buildInfoProto is b as the API carries it.
func buildInfoProto(b buildinfo.Info) *shoalv1.BuildInfo {
	return &shoalv1.BuildInfo{
		Version: b.Version, Commit: b.Commit, Modified: b.Modified,
		BuildDate: b.Date, GoVersion: b.GoVersion, Platform: b.Platform,
	}
}

// nodeStatus is this node's raft view plus what the optional providers add.
func (s *Server) nodeStatus() *shoalv1.NodeStatus { return s.nodeStatusOf(false) }

// nodeSummary is nodeStatus without what grows with the table: the IPVS
// table and the health verdicts.
func (s *Server) nodeSummary() *shoalv1.NodeStatus { return s.nodeStatusOf(true) }

func (s *Server) nodeStatusOf(brief bool) *shoalv1.NodeStatus {
	ns := s.node.Status()
	st := &shoalv1.NodeStatus{
		Id:            s.o.ID,
		Role:          strings.ToLower(ns.Role),
		LeaderId:      ns.LeaderID,
		Term:          ns.Term,
		AppliedIndex:  ns.AppliedIndex,
		AppliedSerial: s.node.FSM().State().GetConfig().GetSerial(),
		LastContact:   durationpb.New(ns.LastContact),
		Dataplane:     "none",
		ApiAddress:    s.o.APIAddr,
		RaftAddress:   s.o.RaftAddr,
		Build:         buildInfoProto(s.o.Build),
	}
	switch {
	case s.o.Dataplane == nil:
	case brief:
		s.o.Dataplane.Summary(st)
	default:
		s.o.Dataplane.Status(st)
	}
	if s.o.Health != nil && !brief {
		st.Health = s.o.Health.Status()
	}
	if t := s.o.TLS; t != nil {
		var ca *x509.Certificate
		if cas := t.Store.CAs(); len(cas) > 0 {
			ca = cas[0]
		}
		source := "files"
		if t.Dir != nil {
			source = "cluster"
		}
		st.Certificate = certInfo(t.Store.Leaf(), ca, source)
	}
	return st
}
