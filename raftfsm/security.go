package raftfsm

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
)

// maxJoinTokens bounds the live join tokens: each is a way into the
// cluster, and a script that makes one per run without expiring them
// should hit a wall, not grow the state.
const maxJoinTokens = 64

// createJoinToken stores a token's key. Tokens that expired by the
// command's time (the proposer's clock, carried in its audit) are dropped
// on the way, so the list never grows with dead tokens.
func createJoinToken(st *shoalv1.State, t *shoalv1.StoredJoinToken, audit *shoalv1.Audit) (*Result, error) {
	id := t.GetInfo().GetId()
	switch {
	case id == "" || strings.ContainsAny(id, ". \t\n"):
		return nil, invalid("info.id", "%q is not a token id", id)
	case len(t.GetKey()) != 32:
		return nil, invalid("key", "want 32 bytes, got %d", len(t.GetKey()))
	case t.GetInfo().GetExpires() == nil:
		return nil, invalid("info.expires", "required")
	}
	var live []*shoalv1.StoredJoinToken
	for _, old := range st.GetJoinTokens() {
		if old.GetInfo().GetId() == id {
			return nil, &Error{Kind: KindAlreadyExists, Reason: fmt.Sprintf("join token %s already exists", id)}
		}
		if now := audit.GetTime(); now == nil || old.GetInfo().GetExpires().AsTime().After(now.AsTime()) {
			live = append(live, old)
		}
	}
	if len(live) >= maxJoinTokens {
		return nil, &Error{Kind: KindFailedPrecondition, Reason: fmt.Sprintf("%d join tokens are live already; delete some or let them expire", len(live))}
	}
	next := derive(st)
	next.JoinTokens = append(live, proto.Clone(t).(*shoalv1.StoredJoinToken))
	return &Result{State: next}, nil
}

func deleteJoinToken(st *shoalv1.State, req *shoalv1.DeleteJoinTokenRequest) (*Result, error) {
	i := slices.IndexFunc(st.GetJoinTokens(), func(t *shoalv1.StoredJoinToken) bool { return t.GetInfo().GetId() == req.GetId() })
	if i < 0 {
		return nil, &Error{Kind: KindNotFound, Reason: fmt.Sprintf("join token %q not found", req.GetId())}
	}
	next := derive(st)
	next.JoinTokens = slices.Delete(slices.Clone(st.GetJoinTokens()), i, i+1)
	return &Result{State: next}, nil
}

// installCA records the cluster CA once. The node that made it at the first
// bootstrap proposes it; installing the same CA again is a no-op, and a
// different one is refused, so two nodes that both made a CA (a bootstrap
// gone wrong) cannot replace each other's.
func installCA(st *shoalv1.State, ca *shoalv1.ClusterCA) (*Result, error) {
	if len(ca.GetCertificate()) == 0 || len(ca.GetKey()) == 0 {
		return nil, invalid("install_ca", "certificate and key are required")
	}
	if cur := st.GetCa(); cur != nil {
		if bytes.Equal(cur.GetCertificate(), ca.GetCertificate()) && bytes.Equal(cur.GetKey(), ca.GetKey()) {
			return &Result{State: st}, nil
		}
		return nil, &Error{Kind: KindFailedPrecondition, Reason: "the cluster already has a different CA"}
	}
	next := derive(st)
	next.Ca = proto.Clone(ca).(*shoalv1.ClusterCA)
	return &Result{State: next}, nil
}
