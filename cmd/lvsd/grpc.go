package main

import (
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shoal-lb/shoal/server"
)

// dialAPI connects to a member's API, over TLS with this node's
// certificate when t is set.
func dialAPI(addr string, t *server.TLS) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if t != nil {
		creds = credentials.NewTLS(t.Store.NodeClientConfig("h2"))
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), server.CallOptions(),
		// Retry the join target soon after it comes up, not after grpc's
		// default backoff of up to two minutes.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		}))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return c, nil
}

// stopGRPC lets calls finish for a moment, then cuts streams (Watch) that
// would otherwise hold shutdown forever.
func stopGRPC(gs *grpc.Server, grace time.Duration) {
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		gs.Stop()
		<-done
	}
}
