package server

import (
	"context"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// checkClusterID refuses a call from a node of another cluster, as the
// Raft port refuses its connections: a call another node passed on
// (x-shoal-forwarded), a peer call, and any call that shows a cluster ID
// (the status fan-out). A node shows its own on every call to a peer
// (New); clients show none.
func (s *Server) checkClusterID(ctx context.Context, method string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	ids := md.Get(clusterIDKey)
	fromNode := len(md.Get(forwardedKey)) > 0 || strings.HasPrefix(method, "/"+shoalv1.PeerService_ServiceDesc.ServiceName+"/")
	if len(ids) == 0 && !fromNode {
		return nil
	}
	theirs := ""
	if len(ids) > 0 {
		theirs = ids[0]
	}
	ours := s.node.ClusterID()
	if ours != "" && theirs == ours {
		return nil
	}
	remote := "?"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		remote = p.Addr.String()
	}
	if ok, skipped := s.clusterLog.allow(remote+"/"+theirs, time.Now()); ok {
		s.log.Warn("refused a call from a node of another cluster", "method", method, "remote", remote,
			"remote_cluster_id", orNone(theirs), "cluster_id", orNone(ours), "suppressed", skipped)
	}
	return status.Errorf(codes.FailedPrecondition, "cluster ID mismatch: the calling node at %s belongs to cluster %s, node %s to %s",
		remote, orNone(theirs), s.o.ID, orNone(ours))
}

func orNone(id string) string {
	if id == "" {
		return "(none yet)"
	}
	return id
}

// logLimiter lets one line per key through every so often and counts the
// others.
type logLimiter struct {
	every time.Duration
	mu    sync.Mutex
	keys  map[string]*limited
}

type limited struct {
	last    time.Time
	skipped int
}

func (l *logLimiter) allow(key string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = map[string]*limited{}
	}
	e := l.keys[key]
	if e != nil && now.Sub(e.last) < l.every {
		e.skipped++
		return false, 0
	}
	if len(l.keys) > 1024 {
		for k, v := range l.keys {
			if now.Sub(v.last) >= l.every {
				delete(l.keys, k)
			}
		}
	}
	skipped := 0
	if e != nil {
		skipped = e.skipped
	}
	l.keys[key] = &limited{last: now}
	return true, skipped
}
