package raftfsm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-lb/shoal/e2e/harness"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
)

// lanTiming is a LAN profile: one-second elections, half-second lease.
var lanTiming = Timing{Heartbeat: time.Second, Election: time.Second, LeaderLease: 500 * time.Millisecond, Commit: 50 * time.Millisecond}

// tcpCluster starts three real nodes on loopback TCP with boltdb stores, as
// lvsd runs them, and commits the web service.
func tcpCluster(b *testing.B) []*Node {
	var boot []raft.Server
	for i := 1; i <= 3; i++ {
		boot = append(boot, raft.Server{ID: raft.ServerID(fmt.Sprintf("n%d", i)), Address: raft.ServerAddress(harness.FreeAddr(b))})
	}
	var nodes []*Node
	for _, s := range boot {
		n, err := Open(Options{ID: string(s.ID), RaftAddr: string(s.Address), DataDir: b.TempDir(), Bootstrap: boot,
			Timing: lanTiming, Logger: benchLogger()})
		if err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	b.Cleanup(func() {
		for _, n := range nodes {
			n.Shutdown()
		}
	})
	applyAnywhere(b, nodes, createWeb())
	return nodes
}

// applyAnywhere commits cmd on whichever node leads. On a loaded machine a
// leader can miss its lease and step down; the write is then retried on the
// next leader (a weight update is idempotent, so a retry is harmless).
func applyAnywhere(tb testing.TB, nodes []*Node, cmd *shoalv1.Command) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		for _, n := range nodes {
			if n.Raft().State() == raft.Leader {
				if _, err = n.Apply(context.Background(), cmd); err == nil {
					return
				}
				break
			}
		}
		if time.Now().After(deadline) {
			tb.Errorf("no leader committed the write: %v", err)
			return
		}
		if err == nil || errors.Is(err, ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			time.Sleep(10 * time.Millisecond) // waiting for an election; polling interval
			continue
		}
		tb.Errorf("apply: %v", err)
		return
	}
}

// weightCmd is a real configuration change: every write bumps the serial.
func weightCmd(i int) *shoalv1.Command {
	return &shoalv1.Command{Op: &shoalv1.Command_UpdateRealServer{UpdateRealServer: &shoalv1.UpdateRealServerRequest{
		Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.0.1", Weight: proto.Uint32(uint32(i%1000 + 1))},
		UpdateMask: mask("weight")}}}
}

// BenchmarkCommit reports what an operator sees of the control plane: the
// latency of one committed change (fsync on a quorum of three boltdb logs
// over loopback TCP) and the throughput with 16 clients writing at once,
// which raft batches.
func BenchmarkCommit(b *testing.B) {
	nodes := tcpCluster(b)

	b.Run("single-writer", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for i := 0; b.Loop(); i++ {
			start := time.Now()
			applyAnywhere(b, nodes, weightCmd(i))
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms/commit")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms/commit")
	})

	b.Run("16-writers", func(b *testing.B) {
		var n atomic.Int64 // writes handed out
		var wg sync.WaitGroup
		start := time.Now()
		b.ResetTimer()
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := n.Add(1)
					if i > int64(b.N) {
						return
					}
					applyAnywhere(b, nodes, weightCmd(int(i)))
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
	})
}

func benchLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
