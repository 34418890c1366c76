package server

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestClusterIDOnPeerCalls: a call between nodes shows the caller's
// cluster ID, and the receiver refuses one of another cluster, or a peer
// call that shows none; a client's call shows none and needs none.
func TestClusterIDOnPeerCalls(t *testing.T) {
	nodes := startCluster(t, 3, clusterOptions{})
	leader, followers := leaderOf(t, nodes)
	ctx := ctxT(t)
	ours := leader.node.ClusterID()
	const theirs = "ffffffffffffffffffffffffffffffff"
	if ours == "" || ours == theirs {
		t.Fatalf("cluster ID %q", ours)
	}
	as := func(md ...string) context.Context { return metadata.AppendToOutgoingContext(ctx, md...) }

	peer := shoalv1.NewPeerServiceClient(leader.conn)
	cluster := shoalv1.NewClusterServiceClient(leader.conn)
	nodeStatus := shoalv1.NewNodeServiceClient(leader.conn)
	for _, tt := range []struct {
		name string
		call func() error
		// refused: with a mismatch naming both IDs; ok otherwise.
		refused bool
	}{
		{"peer call of another cluster", func() error {
			_, err := peer.ReadIndex(as(clusterIDKey, theirs), &shoalv1.ReadIndexRequest{})
			return err
		}, true},
		{"peer call without a cluster ID", func() error {
			_, err := peer.ApplyCommand(ctx, &shoalv1.ApplyCommandRequest{Command: &shoalv1.Command{}})
			return err
		}, true},
		{"peer call of this cluster", func() error {
			_, err := peer.ReadIndex(as(clusterIDKey, ours), &shoalv1.ReadIndexRequest{})
			return err
		}, false},
		{"call passed on by a node of another cluster", func() error {
			_, err := cluster.TransferLeadership(as(forwardedKey, "n9", clusterIDKey, theirs), &shoalv1.TransferLeadershipRequest{Id: leader.id})
			return err
		}, true},
		{"call passed on without a cluster ID", func() error {
			_, err := cluster.TransferLeadership(as(forwardedKey, "n9"), &shoalv1.TransferLeadershipRequest{Id: leader.id})
			return err
		}, true},
		{"status asked by a node of another cluster", func() error {
			_, err := nodeStatus.GetNodeStatus(as(clusterIDKey, theirs), &shoalv1.GetNodeStatusRequest{})
			return err
		}, true},
		{"status asked by a client", func() error {
			_, err := nodeStatus.GetNodeStatus(ctx, &shoalv1.GetNodeStatusRequest{})
			return err
		}, false},
	} {
		err := tt.call()
		switch {
		case !tt.refused && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.refused && (status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "cluster ID mismatch") ||
			!strings.Contains(status.Convert(err).Message(), ours)):
			t.Errorf("%s: %v, want FailedPrecondition: cluster ID mismatch ... %s", tt.name, err, ours)
		}
	}

	// What nodes send each other carries the ID: a write and the status
	// fan-out through a follower work, and AddMember answers with the ID.
	f := followers[0]
	if _, err := f.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)}); err != nil {
		t.Fatalf("write through a follower: %v", err)
	}
	st, err := shoalv1.NewClusterServiceClient(f.conn).GetClusterStatus(ctx, &shoalv1.GetClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.GetMembers() {
		if m.GetError() != "" {
			t.Errorf("member %s: %s", m.GetId(), m.GetError())
		}
	}
	resp, err := shoalv1.NewClusterServiceClient(f.conn).AddMember(ctx, &shoalv1.AddMemberRequest{Id: "n9", RaftAddress: "n9", Nonvoter: true})
	if err != nil || resp.GetClusterId() != ours {
		t.Fatalf("AddMember through a follower: %v %v, want cluster ID %s", resp, err, ours)
	}
	if _, err := shoalv1.NewClusterServiceClient(f.conn).RemoveMember(ctx, &shoalv1.RemoveMemberRequest{Id: "n9"}); err != nil {
		t.Fatal(err)
	}
}
