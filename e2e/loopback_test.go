package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"

	"github.com/shoal-lb/shoal/e2e/harness"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestMain removes the binaries harness.Build made for every test of the
// package (this is the package's only TestMain).
func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// lvsctl runs the CLI against one node and returns its result.
func lvsctl(t *testing.T, bin, server string, args ...string) harness.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := harness.Run(ctx, bin, append([]string{"-s", server}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func clusterStatus(t *testing.T, bin, server string) (*shoalv1.GetClusterStatusResponse, error) {
	var st shoalv1.GetClusterStatusResponse
	err := lvsctl(t, bin, server, "-o", "json", "--request-timeout", "2s", "cluster", "status").Proto(&st)
	return &st, err
}

// TestLoopbackCluster runs three real lvsd processes on 127.0.0.1 and drives
// them with lvsctl: a write through a follower, the same config on every
// node, leader SIGKILL with the failover time printed, and a restart that
// catches up.
func TestLoopbackCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	lvsd := harness.Build(t, "cmd/lvsd")
	ctl := harness.Build(t, "cmd/lvsctl")
	traces := t.TempDir()
	nodes := harness.StartCluster(t, lvsd, harness.ClusterOptions{N: 3, Args: []string{"--dataplane", "none", "--stall-trace", traces}})
	byID := map[string]*harness.Node{}
	for _, n := range nodes {
		byID[n.ID] = n
	}

	// A leader, and every member registered with its API address.
	var leader string
	harness.Eventually(t, 15*time.Second, func() bool {
		st, err := clusterStatus(t, ctl, nodes[0].APIAddr)
		if err != nil || st.GetLeaderId() == "" || len(st.GetMembers()) != 3 {
			return false
		}
		for _, m := range st.GetMembers() {
			if m.GetApiAddress() == "" || m.GetRole() == "unreachable" {
				return false
			}
		}
		leader = st.GetLeaderId()
		return true
	}, "cluster of 3 with a leader and registered API addresses")
	t.Logf("leader is %s", leader)

	var follower *harness.Node
	for _, n := range nodes {
		if n.ID != leader {
			follower = n
			break
		}
	}

	// Writes through a follower are forwarded to the leader.
	if err := lvsctl(t, ctl, follower.APIAddr, "service", "add", "web", "--vip", "10.0.0.1", "--port", "80", "--scheduler", "rr").Err(); err != nil {
		t.Fatalf("service add through follower %s: %v", follower.ID, err)
	}
	var added shoalv1.AddRealServerResponse
	if err := lvsctl(t, ctl, follower.APIAddr, "-o", "json", "server", "add", "web", "10.0.1.1:8080", "--weight", "5").Proto(&added); err != nil {
		t.Fatalf("server add through follower %s: %v", follower.ID, err)
	}
	if n := len(added.GetService().GetRealServers()); n != 1 {
		t.Fatalf("server add answered a service with %d real servers, want 1", n)
	}

	// A bad request is refused with the field and the reason, exit 1.
	bad := lvsctl(t, ctl, follower.APIAddr, "service", "add", "bad", "--vip", "10.0.0.2", "--port", "0")
	if bad.ExitCode != 1 || bad.Stderr == "" {
		t.Fatalf("invalid service: exit %d stderr %q, want exit 1 with a reason", bad.ExitCode, bad.Stderr)
	}
	t.Logf("invalid service refused: %s", bad.Stderr)

	// Every node serves the same configuration and serial.
	var want *shoalv1.GetConfigResponse
	for _, n := range nodes {
		var got shoalv1.GetConfigResponse
		if err := lvsctl(t, ctl, n.APIAddr, "-o", "json", "config", "get").Proto(&got); err != nil {
			t.Fatalf("config get from %s: %v", n.ID, err)
		}
		if want == nil {
			want = &got
			continue
		}
		if !proto.Equal(want, &got) {
			t.Fatalf("config from %s differs:\n%v\nwant\n%v", n.ID, &got, want)
		}
	}
	serial := want.GetConfig().GetSerial()
	if serial < 2 || len(want.GetConfig().GetServices()) != 1 {
		t.Fatalf("config after two writes: serial %d, %d services", serial, len(want.GetConfig().GetServices()))
	}

	// SIGKILL the leader; time until a survivor accepts a write.
	dead := byID[leader]
	var survivor *harness.Node
	for _, n := range nodes {
		if n != dead {
			survivor = n
			break
		}
	}
	killed := time.Now()
	if err := dead.Proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	dead.Proc.Wait(5 * time.Second)
	attempts := 0
	failover := harness.Eventually(t, 10*time.Second, func() bool {
		attempts++
		return lvsctl(t, ctl, survivor.APIAddr, "--request-timeout", "2s", "server", "add", "web", "10.0.1.2:8080").Err() == nil
	}, "a survivor accepting a write after the leader was killed")
	failover = time.Since(killed)
	t.Logf("failover: a survivor accepted a write %s after SIGKILL of leader %s (%d attempts)", failover.Round(time.Millisecond), leader, attempts)
	fmt.Printf("shoal loopback failover: write accepted %d ms after SIGKILL of the leader\n", failover.Milliseconds())
	if failover > 3*time.Second {
		t.Errorf("failover took %s, target < 3s", failover)
	}

	// The survivor that started the election wrote what its runtime was
	// doing before it (--stall-trace).
	harness.Eventually(t, 5*time.Second, func() bool {
		files, _ := filepath.Glob(filepath.Join(traces, "*-leader-silent.trace"))
		return slices.ContainsFunc(files, func(f string) bool { return !strings.HasPrefix(filepath.Base(f), dead.ID+"-") })
	}, "a survivor's stall trace of the election in %s", traces)

	// The killed node restarts from its data dir and catches up.
	dead.Proc.Restart()
	var latest shoalv1.GetConfigResponse
	if err := lvsctl(t, ctl, survivor.APIAddr, "-o", "json", "config", "get").Proto(&latest); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 15*time.Second, func() bool {
		var got shoalv1.GetConfigResponse
		if lvsctl(t, ctl, dead.APIAddr, "-o", "json", "--request-timeout", "2s", "config", "get", "--stale").Proto(&got) != nil {
			return false
		}
		return proto.Equal(&got, &latest)
	}, "restarted %s catching up to serial %d", dead.ID, latest.GetConfig().GetSerial())
	t.Logf("restarted %s caught up to serial %d", dead.ID, latest.GetConfig().GetSerial())

	checkReflectionAndHealth(t, survivor.APIAddr)

	// SIGTERM drains and exits 0.
	if err := dead.Proc.Stop(10 * time.Second); err != nil {
		t.Errorf("SIGTERM of %s: %v, want exit status 0", dead.ID, err)
	}
}

// checkReflectionAndHealth lists services as grpcurl would and asks the
// standard health service.
func checkReflectionAndHealth(t *testing.T, addr string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatalf("reflection list: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection list: %v", err)
	}
	_ = stream.CloseSend()
	if _, err := stream.Recv(); err != io.EOF && err != nil {
		t.Logf("reflection stream end: %v", err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"shoal.v1.ConfigService", "shoal.v1.LoadBalancerService", "shoal.v1.ClusterService", "shoal.v1.NodeService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}

	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health check: %v", err)
	}
	if h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: %v, want SERVING", h.GetStatus())
	}
}
