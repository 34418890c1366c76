package server

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"github.com/shoal-lb/shoal/raftfsm"
)

// lanTiming is lvsd's default --profile lan.
var lanTiming = raftfsm.Timing{Heartbeat: 200 * time.Millisecond, Election: 200 * time.Millisecond, LeaderLease: 100 * time.Millisecond, Commit: 20 * time.Millisecond}

// benchCluster is a 3-node cluster as lvsd runs it: raft over loopback TCP,
// bolt stores in temp dirs, gRPC API; services svc0..svc(n-1) each with one
// real server to update.
func benchCluster(b *testing.B, services int) []*testNode {
	nodes := startCluster(b, 3, clusterOptions{tcp: true, timing: lanTiming})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader, _ := leaderOf(b, nodes)
	for i := range services {
		vs := webService(fmt.Sprintf("svc%d", i), fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), 80)
		vs.RealServers = []*shoalv1.RealServer{{Address: "192.168.0.1"}}
		if _, err := leader.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: vs}); err != nil {
			b.Fatal(err)
		}
	}
	return nodes
}

// retries counts writes answered Unavailable (leadership lost under
// load: the lan profile's 180ms lease is short on a busy machine).
var retries atomic.Int64

// setWeight sets the weight of svc's real server; the write is idempotent,
// so it is retried while leadership moves.
func setWeight(ctx context.Context, n *testNode, svc string, w uint32) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := n.lb().UpdateRealServer(ctx, &shoalv1.UpdateRealServerRequest{
			Service:    svc,
			RealServer: &shoalv1.RealServer{Address: "192.168.0.1", Weight: proto.Uint32(w)},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"weight"}},
		})
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			return err
		}
		retries.Add(1)
	}
}

// BenchmarkCommitLatency is one client writing one change at a time, each
// committed by a quorum and applied before it is answered: what an operator
// waits for on `lvsctl server update`.
func BenchmarkCommitLatency(b *testing.B) {
	nodes := benchCluster(b, 1)
	leader, followers := leaderOf(b, nodes)
	for _, tc := range []struct {
		name string
		via  *testNode
	}{{"leader", leader}, {"follower", followers[0]}} {
		b.Run("via_"+tc.name, func(b *testing.B) {
			ctx := context.Background()
			lat := make([]time.Duration, 0, b.N)
			retries.Store(0)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if err := setWeight(ctx, tc.via, "svc0", uint32(i%1000+1)); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
			b.ReportMetric(float64(retries.Load()), "retries")
		})
	}
}

// BenchmarkConcurrentWrites is many clients writing at once through the
// leader and both followers; raft batches their entries.
func BenchmarkConcurrentWrites(b *testing.B) {
	const clients = 32
	nodes := benchCluster(b, clients)
	ctx := context.Background()
	var next atomic.Int64
	retries.Store(0)
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := nodes[c%len(nodes)]
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				if err := setWeight(ctx, n, fmt.Sprintf("svc%d", c), uint32(i%1000+1)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	b.ReportMetric(clients, "clients")
	b.ReportMetric(float64(retries.Load()), "retries")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkWritesAtScale is 64 clients changing one weight each at a time
// through the leader of a 3-node cluster holding 10,000 services of 10
// real servers (issue 22, part 5).
func BenchmarkWritesAtScale(b *testing.B) {
	const clients = 64
	nodes := startCluster(b, 3, clusterOptions{tcp: true, timing: lanTiming})
	leader, _ := leaderOf(b, nodes)
	cfg := bigTable(10000)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The same table again is no change, so a lost answer is retried.
	for {
		_, err := leader.cfg().ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{Config: cfg})
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unavailable {
			b.Fatal(err)
		}
		leader, _ = leaderOf(b, nodes)
	}
	var next atomic.Int64
	retries.Store(0)
	cpu0 := processCPU(b)
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			leader := leader
			s := cfg.Services[c*97%len(cfg.Services)]
			for i := next.Add(1); i <= int64(b.N); {
				// Idempotent, so retried while leadership moves.
				_, err := leader.lb().UpdateRealServer(context.Background(), &shoalv1.UpdateRealServerRequest{
					Service:    s.Name,
					RealServer: &shoalv1.RealServer{Address: s.RealServers[0].Address, Weight: proto.Uint32(uint32(i%1000 + 1))},
					UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"weight"}},
				})
				if status.Code(err) == codes.Unavailable {
					retries.Add(1)
					leader, _ = leaderOf(b, nodes)
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				i = next.Add(1)
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	b.ReportMetric(float64(retries.Load()), "retries")
	// What a write costs the machine, the clients and all three nodes
	// together: on a shared host a steadier figure than writes/s.
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/write")
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
