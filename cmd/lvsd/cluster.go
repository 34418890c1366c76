package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"github.com/shoal-lb/shoal/raftfsm"
	"github.com/shoal-lb/shoal/server"
)

// bootstrapClusterID is the ID of the cluster --bootstrap describes, "" for
// none: every router of the bootstrap derives the same from the same
// flags, without talking. Two clusters bootstrapped with the same list are
// told apart by --cluster-name and, with TLS, by the fingerprint of the
// cluster CA the first router made (a new one for each cluster; the token,
// which the routers also share, may be gone from a later start's flags).
// An operator's CA (--tls-ca) is left out: it may serve many clusters, and
// be replaced.
func bootstrapClusterID(f *flags, boot []raft.Server, clusterCAs []*x509.Certificate) string {
	if len(boot) == 0 {
		return ""
	}
	ca := ""
	if len(clusterCAs) > 0 {
		ca = pki.Fingerprint(clusterCAs[0])
	}
	return raftfsm.ClusterIDFor(boot, f.clusterName, ca)
}

// learnClusterID asks the member at --join to add this router as a
// non-voter, for the cluster ID its answer carries, before raft runs here:
// a router that knows no cluster ID takes no Raft connection, and a voter
// added to a cluster of one could not be committed without it.
// joinCluster makes it a voter once raft runs. It returns "" when the data
// dir knows the ID already, or holds raft state from before cluster IDs
// (raft takes it from its peers then).
func learnClusterID(ctx context.Context, log *slog.Logger, f *flags, t *server.TLS) (string, error) {
	if id, err := raftfsm.ReadClusterID(f.dataDir); err != nil || id != "" {
		return "", err
	}
	if state, err := raftfsm.HasState(f.dataDir); err != nil || state {
		// raftfsm.Open says what is wrong with a data dir it cannot read.
		return "", nil
	}
	conn, err := dialAPI(f.join, t)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	client := shoalv1.NewClusterServiceClient(conn)
	backoff := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		resp, err := client.AddMember(cctx, &shoalv1.AddMemberRequest{Id: f.id, RaftAddress: f.raftAddr, ApiAddress: f.apiAddr, Nonvoter: true})
		cancel()
		if err == nil {
			id := resp.GetClusterId()
			if !raftfsm.ValidClusterID(id) {
				return "", fmt.Errorf("the member at --join %s answered without a cluster ID (an lvsd from before cluster IDs? upgrade it)", f.join)
			}
			log.Info("added as a non-voter to learn the cluster ID; a voter once raft runs", "via", f.join, "cluster_id", id)
			return id, nil
		}
		switch status.Code(err) {
		case codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument, codes.FailedPrecondition:
			return "", fmt.Errorf("join through %s refused: %s", f.join, status.Convert(err).Message())
		}
		log.Warn("join failed; retrying", "via", f.join, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("join: %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// openError says what to do about a data dir raft cannot start from.
func openError(err error, f *flags, boot []raft.Server) error {
	var mismatch *raftfsm.ClusterIDMismatchError
	var damaged *raftfsm.DataDirError
	switch {
	case errors.As(err, &mismatch):
		if len(boot) == 0 {
			return fmt.Errorf("data dir %s belongs to cluster %s, but the join answered for cluster %s: "+
				"this router was a member of another cluster; move %s away to join this one", f.dataDir, mismatch.Stored, mismatch.Wanted, f.dataDir)
		}
		return fmt.Errorf("data dir %s belongs to cluster %s; --bootstrap describes cluster %s: "+
			"to start a new cluster, move %s away (or give another --data-dir); "+
			"to keep this router in its cluster, start it with the --bootstrap list and --cluster-name it was bootstrapped with, "+
			"or without --bootstrap (a node with state ignores it)", f.dataDir, mismatch.Stored, mismatch.Wanted, f.dataDir)
	case errors.As(err, &damaged) && damaged.Lost:
		return fmt.Errorf("%w\n%s", err, rejoinAdvice(f))
	case errors.As(err, &damaged):
		return err
	case raftfsm.IsDiskFull(err):
		return fmt.Errorf("open raft node: %w: free space in %s and start lvsd again", err, f.dataDir)
	}
	return fmt.Errorf("open raft node: %w", err)
}

// rejoinAdvice is what to do when this router's data dir lost what it held.
func rejoinAdvice(f *flags) string {
	old := filepath.Clean(f.dataDir) + ".damaged"
	return fmt.Sprintf(`This router cannot start from %s. Either:
  - the other members hold the log: remove this router (lvsctl cluster remove %s), move its data dir away
    (mv %s %s) and start it again with --join <a member's API address> --token-file <a token from lvsctl cluster token>
    (--join alone on a plaintext cluster) instead of --bootstrap;
  - it is the only member, or the others are gone: stop, restore %s from a backup, and start it again.`,
		f.dataDir, f.id, f.dataDir, old, f.dataDir)
}

func orNone(id string) string {
	if id == "" {
		return "(none)"
	}
	return id
}
