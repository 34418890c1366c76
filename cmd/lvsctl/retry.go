package main

// This file holds how lvsctl retries a call that got Unavailable (no
// leader for a moment, a leader that went away mid-write, a node
// restarting): reads are retried as they are; writes that go through the
// server's write path carry a request id, the same on every attempt, so
// the cluster applies them at most once and answers a retry with the first
// outcome. Every other call is sent once. A retry goes to whichever node
// of --server accepts a connection then (endpoints.go), with the same id.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// requestIDKey is the metadata that carries a write's request id (the
// server's x-shoal-request-id).
const requestIDKey = "x-shoal-request-id"

var (
	// idempotentWrites go through the server's one write path, which
	// remembers request ids: sent with one, a retry is applied at most
	// once and answered with the first outcome.
	idempotentWrites = methodSet(
		shoalv1.ConfigService_ApplyConfig_FullMethodName,
		shoalv1.ConfigService_RollbackConfig_FullMethodName,
		shoalv1.LoadBalancerService_CreateVirtualService_FullMethodName,
		shoalv1.LoadBalancerService_UpdateVirtualService_FullMethodName,
		shoalv1.LoadBalancerService_DeleteVirtualService_FullMethodName,
		shoalv1.LoadBalancerService_AddRealServer_FullMethodName,
		shoalv1.LoadBalancerService_UpdateRealServer_FullMethodName,
		shoalv1.LoadBalancerService_RemoveRealServer_FullMethodName,
		shoalv1.ClusterService_DeleteJoinToken_FullMethodName,
		shoalv1.ClusterService_RevokeCertificate_FullMethodName,
	)
	// reads change nothing, so a retry is always safe.
	reads = methodSet(
		shoalv1.ConfigService_GetConfig_FullMethodName,
		shoalv1.ConfigService_ListHistory_FullMethodName,
		shoalv1.ConfigService_GetHistoryEntry_FullMethodName,
		shoalv1.LoadBalancerService_GetVirtualService_FullMethodName,
		shoalv1.LoadBalancerService_ListVirtualServices_FullMethodName,
		shoalv1.ClusterService_GetClusterStatus_FullMethodName,
		shoalv1.ClusterService_ListJoinTokens_FullMethodName,
		shoalv1.ClusterService_ListCertificates_FullMethodName,
		shoalv1.ClusterService_WhoAmI_FullMethodName,
		shoalv1.NodeService_GetNodeStatus_FullMethodName,
	)
	// sentOnce are the writes a retry could repeat: a join token or a
	// certificate is made for its call, and its secret is in the first
	// answer only (the server refuses to replay those); membership changes
	// and leadership transfers do not go through the write path. So is
	// any method this list does not know.
	sentOnce = methodSet(
		shoalv1.ClusterService_CreateJoinToken_FullMethodName,
		shoalv1.ClusterService_IssueCertificate_FullMethodName,
		shoalv1.ClusterService_AddMember_FullMethodName,
		shoalv1.ClusterService_RemoveMember_FullMethodName,
		shoalv1.ClusterService_TransferLeadership_FullMethodName,
	)
)

func methodSet(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// retryPolicy says how often and how soon a call that got Unavailable is
// sent again. --request-timeout bounds it all.
type retryPolicy struct {
	attempts    int
	first, most time.Duration
}

// defaultRetry gives up after about two seconds: enough for an election,
// not so long that a server that is down keeps the user waiting.
var defaultRetry = retryPolicy{attempts: 5, first: 100 * time.Millisecond, most: time.Second}

// nextRequestID is the request id of the command's next write: the one
// --request-id gives, once, or a new random one.
func (a *app) nextRequestID() (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.requestID != "" {
		if a.requestIDUsed {
			return "", errors.New("--request-id names one write, and this command makes more than one")
		}
		a.requestIDUsed = true
		return a.requestID, nil
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("request id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// retryUnary is the connection's interceptor: it gives idempotent writes a
// request id and retries them and reads on Unavailable, with backoff.
func (a *app) retryUnary(p retryPolicy) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		write := idempotentWrites[method]
		if !write && !reads[method] {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		id := ""
		if write {
			var err error
			if id, err = a.nextRequestID(); err != nil {
				return err
			}
			ctx = metadata.AppendToOutgoingContext(ctx, requestIDKey, id)
		}
		delay := p.first
		for attempt := 1; ; attempt++ {
			err := invoker(ctx, method, req, reply, cc, opts...)
			if status.Code(err) != codes.Unavailable || attempt >= p.attempts {
				return giveUp(err, id)
			}
			// Jitter spreads out the retries of several clients.
			wait := delay/2 + mrand.N(delay/2+1)
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
				return giveUp(err, id)
			}
			select {
			case <-ctx.Done():
				return giveUp(err, id)
			case <-time.After(wait):
			}
			delay = min(2*delay, p.most)
		}
	}
}

// giveUp is the error of the last attempt; when a write's outcome is
// unknown, it says how to retry it safely by hand.
func giveUp(err error, id string) error {
	if id == "" || status.Code(err) != codes.Unavailable {
		return err
	}
	pb := status.Convert(err).Proto()
	pb.Message += fmt.Sprintf(" (lvsctl: the write may or may not have been applied; run the command again with --request-id %s to apply it at most once)", id)
	return status.ErrorProto(pb)
}
