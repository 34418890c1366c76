package scale

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/shoal-lb/shoal/e2e/harness"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestCatchUp joins a 4th router to a loaded cluster (default 10,000
// services × 10, then 4,000 single weight changes) and prints how long it
// takes from its start to holding the cluster's serial: once as raft
// sends it the latest snapshot (InstallSnapshot: the cluster snapshots
// often and keeps a short log), once as it replays the whole log (raft's
// default policy, which had not snapshotted yet).
//
//	SHOAL_SCALE_SERVICES=10000 go test ./e2e/scale -run TestCatchUp -v -count=1
func TestCatchUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	n := oneSize(t)
	lvsd := harness.Build(t, "cmd/lvsd")
	var rows []string
	for _, tc := range []struct {
		name     string
		args     []string
		snapshot bool
	}{
		{"snapshot", []string{"--raft-snapshot-interval", "1s", "--raft-snapshot-threshold", "1024", "--raft-trailing-logs", "1024"}, true},
		{"log", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows = append(rows, catchUp(t, lvsd, n, tc.args, tc.snapshot))
		})
	}
	t.Logf("\n| services (real servers) | how the 4th router catches up | start → cluster's serial applied | snapshot |\n|---|---|---|---|\n%s",
		strings.Join(rows, "\n"))
}

const catchUpWrites = 4000

func catchUp(t *testing.T, lvsd string, n int, args []string, wantSnapshot bool) string {
	c := startWith(t, lvsd, harness.ClusterOptions{Args: args})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := table(n)
	if _, err := shoalv1.NewConfigServiceClient(c.conns[c.leader]).ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	// Load: single weight changes from 64 writers. A write answered
	// Unavailable (leadership moved on the loaded host) is idempotent:
	// it is sent again, to the next node.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for k := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			svc := cfg.Services[(k*7919)%n]
			to := c.leader
			for i := 0; i < catchUpWrites/64; {
				_, err := shoalv1.NewLoadBalancerServiceClient(c.conns[to]).UpdateRealServer(ctx, &shoalv1.UpdateRealServerRequest{
					Service:    svc.Name,
					RealServer: &shoalv1.RealServer{Address: svc.RealServers[0].Address, Weight: proto.Uint32(uint32(1 + i%1000))},
					UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"weight"}},
				})
				switch {
				case status.Code(err) == codes.Unavailable && ctx.Err() == nil:
					to = (to + 1) % len(c.conns)
				case err != nil:
					errs <- err
					return
				default:
					i++
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	leader := c.nodes[c.leader]
	for i := range c.nodes {
		if c.isLeader(t, i) {
			leader = c.nodes[i]
		}
	}
	serial := c.serial(t, slices.Index(c.nodes, leader))
	snap := ""
	if wantSnapshot {
		// A snapshot late enough that the log no longer holds the apply.
		harness.Eventually(t, time.Minute, func() bool {
			snap = latestSnapshot(t, leader.DataDir, serial-1024)
			return snap != ""
		}, "a snapshot on the leader after the writes")
	}

	api, raftAddr := harness.FreeAddr(t), harness.FreeAddr(t)
	t0 := time.Now()
	p := harness.Start(t, "n4", lvsd, append([]string{"--id", "n4", "--api-addr", api, "--raft-addr", raftAddr,
		"--data-dir", filepath.Join(t.TempDir(), "n4"), "--join", leader.APIAddr,
		// raft's own lines, "Installed remote snapshot" among them, are
		// lvsd's debug lines.
		"--dataplane", "none", "--insecure", "--log-level", "debug"}, args...)...)
	cc, err := grpc.NewClient(api, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var took time.Duration
	harness.Eventually(t, 5*time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := shoalv1.NewConfigServiceClient(cc).GetConfig(ctx, &shoalv1.GetConfigRequest{Consistency: shoalv1.ReadConsistency_READ_CONSISTENCY_STALE})
		if err != nil || r.GetConfig().GetSerial() < serial {
			return false
		}
		took = time.Since(t0)
		return true
	}, "n4 at serial %d", serial)
	installed := strings.Contains(p.Log(), "Installed remote snapshot")
	if installed != wantSnapshot {
		t.Errorf("n4 installed a snapshot: %v, want %v", installed, wantSnapshot)
	}
	how := "replays the log (the apply and every write)"
	if installed {
		how = "InstallSnapshot, then the log after it"
	}
	return fmt.Sprintf("| %d (%d) | %s | %s | %s |", n, n*realsPerService, how, ms(took), snap)
}

// latestSnapshot describes the newest snapshot in a node's data dir when
// it is of index at least min, else "".
func latestSnapshot(t *testing.T, dataDir string, min uint64) string {
	metas, _ := filepath.Glob(filepath.Join(dataDir, "snapshots", "*", "meta.json"))
	var best struct{ Index, Size uint64 }
	for _, m := range metas {
		if strings.HasSuffix(filepath.Dir(m), ".tmp") {
			continue // still being written
		}
		b, err := os.ReadFile(m)
		if err != nil {
			continue // being written or pruned
		}
		var meta struct{ Index, Size uint64 }
		if json.Unmarshal(b, &meta) == nil && meta.Index > best.Index {
			best = meta
		}
	}
	if best.Index < min {
		return ""
	}
	return fmt.Sprintf("index %d, %.1f MB", best.Index, float64(best.Size)/1e6)
}

// isLeader is whether node i says it leads.
func (c *cluster) isLeader(t *testing.T, i int) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := shoalv1.NewClusterServiceClient(c.conns[i]).GetClusterStatus(ctx, &shoalv1.GetClusterStatusRequest{})
	return err == nil && st.GetLeaderId() == c.nodes[i].ID
}
