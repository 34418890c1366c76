package raftfsm

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
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

// maxCertificates bounds the tracked client certificates; expired ones are
// dropped as new ones come, so only a cluster that issues thousands a year
// reaches it.
const maxCertificates = 10000

// liveCertificates drops the certificates expired by the command's time.
func liveCertificates(list []*shoalv1.IssuedCertificate, audit *shoalv1.Audit) []*shoalv1.IssuedCertificate {
	now := audit.GetTime()
	out := make([]*shoalv1.IssuedCertificate, 0, len(list)+1)
	for _, c := range list {
		if now == nil || c.GetInfo().GetNotAfter() == nil || c.GetInfo().GetNotAfter().AsTime().After(now.AsTime()) {
			out = append(out, c)
		}
	}
	return out
}

func findCertificate(list []*shoalv1.IssuedCertificate, serial string) (int, bool) {
	return slices.BinarySearchFunc(list, serial, func(c *shoalv1.IssuedCertificate, s string) int {
		return strings.Compare(c.GetInfo().GetSerialNumber(), s)
	})
}

// recordCertificate keeps a client certificate the cluster issued, so that
// admins can list it and revoke it.
func recordCertificate(st *shoalv1.State, c *shoalv1.IssuedCertificate, audit *shoalv1.Audit) (*Result, error) {
	serial := c.GetInfo().GetSerialNumber()
	if serial == "" || c.GetInfo().GetNotAfter() == nil {
		return nil, invalid("info", "serial_number and not_after are required")
	}
	list := liveCertificates(st.GetCertificates(), audit)
	i, found := findCertificate(list, serial)
	if found {
		return nil, &Error{Kind: KindAlreadyExists, Reason: fmt.Sprintf("certificate %s is recorded already", serial)}
	}
	if len(list) >= maxCertificates {
		return nil, &Error{Kind: KindFailedPrecondition, Reason: fmt.Sprintf("%d certificates are live already", len(list))}
	}
	next := derive(st)
	next.Certificates = slices.Insert(list, i, proto.Clone(c).(*shoalv1.IssuedCertificate))
	return &Result{State: next}, nil
}

// revokeCertificate marks a certificate revoked by the command's actor at
// its time. A certificate the cluster did not record (root's own admin
// credentials, which each router writes itself) is recorded as revoked,
// and kept for the longest life a client certificate can have.
func revokeCertificate(st *shoalv1.State, req *shoalv1.RevokeCertificateRequest, audit *shoalv1.Audit, maxLife time.Duration) (*Result, error) {
	serial := strings.ToLower(strings.TrimSpace(req.GetSerialNumber()))
	if serial == "" || strings.Trim(serial, "0123456789abcdef") != "" {
		return nil, invalid("serial_number", "%q is not a hex serial number", req.GetSerialNumber())
	}
	list := liveCertificates(st.GetCertificates(), audit)
	i, found := findCertificate(list, serial)
	var c *shoalv1.IssuedCertificate
	switch {
	case found && list[i].GetRevoked() != nil:
		return &Result{State: st}, nil
	case found:
		c = proto.Clone(list[i]).(*shoalv1.IssuedCertificate)
		list[i] = c
	default:
		if len(list) >= maxCertificates {
			return nil, &Error{Kind: KindFailedPrecondition, Reason: fmt.Sprintf("%d certificates are live already", len(list))}
		}
		c = &shoalv1.IssuedCertificate{Info: &shoalv1.CertificateInfo{SerialNumber: serial}}
		if now := audit.GetTime(); now != nil {
			c.Info.NotAfter = timestamppb.New(now.AsTime().Add(maxLife))
		}
		list = slices.Insert(list, i, c)
	}
	c.RevokedBy, c.Revoked = audit.GetActor(), audit.GetTime()
	next := derive(st)
	next.Certificates = list
	return &Result{State: next}, nil
}
