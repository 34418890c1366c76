package server

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"github.com/shoal-lb/shoal/raftfsm"
)

func webService(name, vip string, port uint32) *shoalv1.VirtualService {
	return &shoalv1.VirtualService{Name: name, Vip: &shoalv1.Address{Address: vip}, Port: port}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestToStatus(t *testing.T) {
	fields := config.Errors{{Field: "services[web].port", Reason: "must be 1..65535 unless fwmark is set"}}
	tests := []struct {
		name    string
		err     error
		code    codes.Code
		msg     string
		details int
	}{
		{"invalid", &raftfsm.Error{Kind: raftfsm.KindInvalid, Reason: "invalid config", Fields: fields}, codes.InvalidArgument, "services[web].port: must be 1..65535 unless fwmark is set", 1},
		{"wrapped invalid", fmt.Errorf("apply: %w", &raftfsm.Error{Kind: raftfsm.KindInvalid, Fields: fields}), codes.InvalidArgument, "services[web].port", 1},
		{"not found", &raftfsm.Error{Kind: raftfsm.KindNotFound, Reason: "services[web]: no such service"}, codes.NotFound, "services[web]: no such service", 0},
		{"exists", &raftfsm.Error{Kind: raftfsm.KindAlreadyExists, Reason: "services[web]: exists"}, codes.AlreadyExists, "exists", 0},
		{"serial", &raftfsm.Error{Kind: raftfsm.KindFailedPrecondition, Reason: "serial is 4, expected 3"}, codes.FailedPrecondition, "serial is 4", 0},
		{"config errors", fields, codes.InvalidArgument, "services[web].port", 1},
		{"not leader", fmt.Errorf("x: %w", raftfsm.ErrNotLeader), codes.Unavailable, "not the raft leader", 0},
		{"no leader", errNoLeader, codes.Unavailable, "no leader", 0},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, "deadline", 0},
		{"status passes", status.Error(codes.PermissionDenied, "no"), codes.PermissionDenied, "no", 0},
		{"other", errors.New("disk on fire"), codes.Internal, "disk on fire", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(toStatus(tt.err))
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
				t.Errorf("got %v %q, want %v containing %q", st.Code(), st.Message(), tt.code, tt.msg)
			}
			if got := len(st.Details()); got != tt.details {
				t.Errorf("details: %d, want %d", got, tt.details)
			}
		})
	}
	if toStatus(nil) != nil {
		t.Error("toStatus(nil) != nil")
	}
}

func TestWriteThroughFollower(t *testing.T) {
	nodes := startCluster(t, 3, clusterOptions{})
	_, followers := leaderOf(t, nodes)
	f := followers[0]
	ctx := ctxT(t)

	resp, err := f.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)})
	if err != nil {
		t.Fatalf("create through follower: %v", err)
	}
	if resp.GetService().GetName() != "web" || resp.GetSerial() == 0 {
		t.Fatalf("create answered %v", resp)
	}
	// The follower answered with its own state, so a stale read there
	// already sees the write.
	got, err := f.lb().GetVirtualService(ctx, &shoalv1.GetVirtualServiceRequest{Name: "web", Consistency: shoalv1.ReadConsistency_READ_CONSISTENCY_STALE})
	if err != nil || got.GetSerial() < resp.GetSerial() {
		t.Fatalf("stale read on the follower after its write: %v %v", got, err)
	}
	// Linearizable reads on every node see it.
	for _, n := range nodes {
		got, err := n.lb().ListVirtualServices(ctx, &shoalv1.ListVirtualServicesRequest{})
		if err != nil || len(got.GetServices()) != 1 || got.GetSerial() != resp.GetSerial() {
			t.Fatalf("list on %s: %v %v", n.id, got, err)
		}
	}

	rs, err := f.lb().AddRealServer(ctx, &shoalv1.AddRealServerRequest{Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.1.1", Weight: proto.Uint32(3)}})
	if err != nil || len(rs.GetService().GetRealServers()) != 1 {
		t.Fatalf("add real server: %v %v", rs, err)
	}
	up, err := f.lb().UpdateVirtualService(ctx, &shoalv1.UpdateVirtualServiceRequest{
		Service:    &shoalv1.VirtualService{Name: "web", Scheduler: "rr"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"scheduler"}},
	})
	if err != nil || up.GetService().GetScheduler() != "rr" || len(up.GetService().GetRealServers()) != 1 {
		t.Fatalf("update scheduler: %v %v", up, err)
	}
	// Compare-and-set on the serial.
	_, err = f.lb().DeleteVirtualService(ctx, &shoalv1.DeleteVirtualServiceRequest{Name: "web", ExpectedSerial: up.GetSerial() - 1})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("delete with a stale expected serial: %v, want FailedPrecondition", err)
	}
	del, err := f.lb().DeleteVirtualService(ctx, &shoalv1.DeleteVirtualServiceRequest{Name: "web", ExpectedSerial: up.GetSerial()})
	if err != nil || del.GetSerial() != up.GetSerial()+1 {
		t.Fatalf("delete: %v %v", del, err)
	}
}

func TestErrorsOnFollower(t *testing.T) {
	nodes := startCluster(t, 3, clusterOptions{})
	leader, followers := leaderOf(t, nodes)
	f := followers[0]
	ctx := ctxT(t)
	before, term := leader.node.FSM().AppliedIndex(), leader.node.Status().Term

	_, err := f.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 0)})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "services[web].port") {
		t.Fatalf("port 0: %v %q, want InvalidArgument naming services[web].port", st.Code(), st.Message())
	}
	var br *errdetails.BadRequest
	for _, d := range st.Details() {
		if b, ok := d.(*errdetails.BadRequest); ok {
			br = b
		}
	}
	if br == nil || len(br.GetFieldViolations()) == 0 || br.GetFieldViolations()[0].GetField() != "services[web].port" {
		t.Fatalf("BadRequest details: %v", st.Details())
	}
	// An election in between would append its own entry; only a steady
	// term makes the index comparable.
	if after := leader.node.FSM().AppliedIndex(); after != before && leader.node.Status().Term == term {
		t.Errorf("an invalid request reached raft: applied index %d -> %d", before, after)
	}

	_, err = f.lb().DeleteVirtualService(ctx, &shoalv1.DeleteVirtualServiceRequest{Name: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("delete missing: %v, want NotFound", err)
	}
	if _, err := f.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)}); err != nil {
		t.Fatal(err)
	}
	// Through the other follower at once: it may lag, but must not say
	// NotFound or accept a duplicate.
	_, err = followers[1].lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)})
	if status.Code(err) != codes.AlreadyExists {
		t.Errorf("duplicate: %v, want AlreadyExists", err)
	}
	if _, err := followers[1].lb().AddRealServer(ctx, &shoalv1.AddRealServerRequest{Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.1.9"}}); err != nil {
		t.Errorf("add a server to a service just created through another node: %v", err)
	}

	// Dry runs validate and diff, and commit nothing.
	cur, err := f.cfg().GetConfig(ctx, &shoalv1.GetConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	serial := cur.GetConfig().GetSerial()
	dry, err := f.cfg().ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{DryRun: true, Config: &shoalv1.Config{Services: []*shoalv1.VirtualService{webService("other", "10.0.0.2", 443)}}})
	if err != nil || dry.GetSerial() != serial || len(dry.GetChanges()) == 0 {
		t.Fatalf("dry run: %v %v", dry, err)
	}
	if got, err := f.cfg().GetConfig(ctx, &shoalv1.GetConfigRequest{}); err != nil || got.GetConfig().GetSerial() != serial {
		t.Errorf("dry run committed: serial %d -> %d (%v)", serial, got.GetConfig().GetSerial(), err)
	}
}

// TestNilRequests sends empty and nil-field requests to every RPC: each must
// answer with a status, never panic.
func TestNilRequests(t *testing.T) {
	nodes := startCluster(t, 1, clusterOptions{})
	n := nodes[0]
	ctx := ctxT(t)
	peer := shoalv1.NewPeerServiceClient(n.conn)
	calls := map[string]func() error{
		"CreateVirtualService": func() error {
			_, err := n.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{})
			return err
		},
		"CreateEmptyService": func() error {
			_, err := n.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: &shoalv1.VirtualService{}})
			return err
		},
		"GetVirtualService": func() error { _, err := n.lb().GetVirtualService(ctx, &shoalv1.GetVirtualServiceRequest{}); return err },
		"UpdateVirtualService": func() error {
			_, err := n.lb().UpdateVirtualService(ctx, &shoalv1.UpdateVirtualServiceRequest{})
			return err
		},
		"UpdateBadMask": func() error {
			_, err := n.lb().UpdateVirtualService(ctx, &shoalv1.UpdateVirtualServiceRequest{Service: &shoalv1.VirtualService{Name: "x"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"nope"}}})
			return err
		},
		"DeleteVirtualService": func() error {
			_, err := n.lb().DeleteVirtualService(ctx, &shoalv1.DeleteVirtualServiceRequest{})
			return err
		},
		"AddRealServer": func() error { _, err := n.lb().AddRealServer(ctx, &shoalv1.AddRealServerRequest{}); return err },
		"AddRealServerNoRS": func() error {
			_, err := n.lb().AddRealServer(ctx, &shoalv1.AddRealServerRequest{Service: "x"})
			return err
		},
		"UpdateRealServer": func() error { _, err := n.lb().UpdateRealServer(ctx, &shoalv1.UpdateRealServerRequest{}); return err },
		"RemoveRealServer": func() error { _, err := n.lb().RemoveRealServer(ctx, &shoalv1.RemoveRealServerRequest{}); return err },
		"ApplyConfig":      func() error { _, err := n.cfg().ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{}); return err },
		"ApplyConfigNilServices": func() error {
			_, err := n.cfg().ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{Config: &shoalv1.Config{Services: []*shoalv1.VirtualService{nil, {}}}})
			return err
		},
		"AddMember":    func() error { _, err := n.cluster().AddMember(ctx, &shoalv1.AddMemberRequest{}); return err },
		"RemoveMember": func() error { _, err := n.cluster().RemoveMember(ctx, &shoalv1.RemoveMemberRequest{}); return err },
		"RemoveMemberAbsent": func() error {
			_, err := n.cluster().RemoveMember(ctx, &shoalv1.RemoveMemberRequest{Id: "zz"})
			return err
		},
		"TransferAlone": func() error {
			_, err := n.cluster().TransferLeadership(ctx, &shoalv1.TransferLeadershipRequest{})
			return err
		},
		"TransferToStranger": func() error {
			_, err := n.cluster().TransferLeadership(ctx, &shoalv1.TransferLeadershipRequest{Id: "zz"})
			return err
		},
		"ApplyCommand": func() error { _, err := peer.ApplyCommand(ctx, &shoalv1.ApplyCommandRequest{}); return err },
		"ApplyEmptyCommand": func() error {
			_, err := peer.ApplyCommand(ctx, &shoalv1.ApplyCommandRequest{Command: &shoalv1.Command{}})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			code := status.Code(err)
			if err == nil || code == codes.Unknown || code == codes.Internal || code == codes.Unavailable {
				t.Errorf("got %v (%v), want a request error", code, err)
			}
		})
	}
	// Reads and status with empty requests succeed.
	if _, err := n.cfg().GetConfig(ctx, &shoalv1.GetConfigRequest{}); err != nil {
		t.Error(err)
	}
	if _, err := n.nodeSvc().GetNodeStatus(ctx, &shoalv1.GetNodeStatusRequest{}); err != nil {
		t.Error(err)
	}
	if _, err := n.cluster().GetClusterStatus(ctx, &shoalv1.GetClusterStatusRequest{}); err != nil {
		t.Error(err)
	}
}

func TestWatch(t *testing.T) {
	nodes := startCluster(t, 3, clusterOptions{})
	_, followers := leaderOf(t, nodes)
	ctx := ctxT(t)
	stream, err := followers[0].cfg().Watch(ctx, &shoalv1.WatchRequest{Initial: true})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.GetConfig() == nil {
		t.Fatalf("initial message: %v %v", first, err)
	}
	if _, err := followers[1].lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)}); err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if ev.GetSerial() != first.GetSerial()+1 || len(ev.GetChanges()) == 0 || ev.GetChanges()[0].GetService() != "web" {
		t.Fatalf("change event: %v", ev)
	}
}

func TestClusterStatusAndMembership(t *testing.T) {
	nodes := startCluster(t, 3, clusterOptions{})
	leader, followers := leaderOf(t, nodes)
	ctx := ctxT(t)

	st, err := followers[0].cluster().GetClusterStatus(ctx, &shoalv1.GetClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetLeaderId() != leader.id || len(st.GetMembers()) != 3 {
		t.Fatalf("status: %v", st)
	}
	roles := map[string]string{}
	for _, m := range st.GetMembers() {
		roles[m.GetId()] = m.GetRole()
		if m.GetSuffrage() != "voter" || m.GetApiAddress() == "" {
			t.Errorf("member %v", m)
		}
	}
	if roles[leader.id] != "leader" || roles[followers[0].id] != "follower" || roles[followers[1].id] != "follower" {
		t.Errorf("roles %v", roles)
	}

	// A member that stops answering is reported unreachable, with a reason.
	gone := followers[1]
	gone.stop()
	st, err = followers[0].cluster().GetClusterStatus(ctx, &shoalv1.GetClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.GetMembers() {
		if m.GetId() == gone.id && (m.GetRole() != "unreachable" || m.GetError() == "") {
			t.Errorf("stopped member reported as %v", m)
		}
	}
	// Remove it through a follower (forwarded to the leader).
	if _, err := followers[0].cluster().RemoveMember(ctx, &shoalv1.RemoveMemberRequest{Id: gone.id}); err != nil {
		t.Fatalf("remove member: %v", err)
	}
	st, err = leader.cluster().GetClusterStatus(ctx, &shoalv1.GetClusterStatusRequest{})
	if err != nil || len(st.GetMembers()) != 2 {
		t.Fatalf("after remove: %v %v", st, err)
	}
	for _, m := range leader.node.FSM().State().GetMembers() {
		if m.GetId() == gone.id {
			t.Errorf("removed member still registered: %v", m)
		}
	}

	// Transfer leadership to the remaining follower, asked through it.
	tr, err := followers[0].cluster().TransferLeadership(ctx, &shoalv1.TransferLeadershipRequest{Id: followers[0].id})
	if err != nil || tr.GetLeaderId() != followers[0].id {
		t.Fatalf("transfer: %v %v", tr, err)
	}
	// Writes keep working through the old leader.
	if _, err := leader.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)}); err != nil {
		t.Fatalf("write after transfer: %v", err)
	}
}

// stubProviders stands in for the dataplane.
type stubProviders struct{}

func (stubProviders) Summary(st *shoalv1.NodeStatus) {
	st.Dataplane, st.HoldsVips, st.ReconciledSerial = "vip", true, 7
	st.Addresses, st.ReconcileError = []string{"192.0.2.10/32 eth0"}, "add 192.0.2.11: no such device"
}

func (p stubProviders) Status(st *shoalv1.NodeStatus) {
	p.Summary(st)
	st.Ipvs = []*shoalv1.IpvsService{{Address: "192.0.2.10", Port: 80, Protocol: "tcp"}}
}

// stubHealth stands in for the health monitor.
type stubHealth struct {
	ch chan *shoalv1.RealServerHealth
}

func (stubHealth) Status() []*shoalv1.RealServerHealth {
	return []*shoalv1.RealServerHealth{{Service: "web", Address: "10.0.1.1", Port: 80, State: "up"}}
}

func (h stubHealth) Subscribe(int) (<-chan *shoalv1.RealServerHealth, func()) {
	return h.ch, func() {}
}

func TestNodeStatusProviders(t *testing.T) {
	nodes := startCluster(t, 1, clusterOptions{})
	n := nodes[0]
	h := stubHealth{ch: make(chan *shoalv1.RealServerHealth, 1)}
	n.srv.o.Dataplane, n.srv.o.Health = stubProviders{}, h
	ctx := ctxT(t)
	resp, err := n.nodeSvc().GetNodeStatus(ctx, &shoalv1.GetNodeStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	st := resp.GetStatus()
	if st.GetId() != "n1" || st.GetRole() != "leader" || st.GetDataplane() != "vip" || !st.GetHoldsVips() || len(st.GetHealth()) != 1 || len(st.GetIpvs()) != 1 || st.GetApiAddress() != n.addr {
		t.Fatalf("node status: %v", st)
	}
	// Brief: the same without what grows with the table.
	resp, err = n.nodeSvc().GetNodeStatus(ctx, &shoalv1.GetNodeStatusRequest{Brief: true})
	if err != nil {
		t.Fatal(err)
	}
	st = resp.GetStatus()
	if st.GetRole() != "leader" || !st.GetHoldsVips() || st.GetReconciledSerial() != 7 || len(st.GetHealth()) != 0 || len(st.GetIpvs()) != 0 {
		t.Fatalf("brief node status: %v", st)
	}
	cs, err := n.cluster().GetClusterStatus(ctx, &shoalv1.GetClusterStatusRequest{})
	if err != nil || cs.GetVipHolder() != "n1" {
		t.Fatalf("vip holder: %v %v", cs, err)
	}
	if m := cs.GetMembers()[0]; m.GetReconciledSerial() != 7 || len(m.GetAddresses()) != 1 || m.GetReconcileError() == "" {
		t.Fatalf("the member's dataplane in the cluster status: %v", m)
	}
	stream, err := n.nodeSvc().WatchHealth(ctx, &shoalv1.WatchHealthRequest{})
	if err != nil {
		t.Fatal(err)
	}
	h.ch <- &shoalv1.RealServerHealth{Service: "web", State: "down"}
	got, err := stream.Recv()
	if err != nil || got.GetHealth().GetState() != "down" {
		t.Fatalf("health watch: %v %v", got, err)
	}
}

func TestMetrics(t *testing.T) {
	nodes := startCluster(t, 1, clusterOptions{})
	n := nodes[0]
	ctx := ctxT(t)
	if _, err := n.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)}); err != nil {
		t.Fatal(err)
	}
	_, _ = n.lb().GetVirtualService(ctx, &shoalv1.GetVirtualServiceRequest{Name: "nope"})
	rec := httptest.NewRecorder()
	n.srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		"shoal_serial 1", "shoal_is_leader 1", "shoal_raft_state 2", "shoal_applied_index ",
		`shoal_api_requests_total{code="OK",method="CreateVirtualService"} 1`,
		`shoal_api_requests_total{code="NotFound",method="GetVirtualService"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestWriteDuringFailover stops the leader and writes through a follower at
// once: the write waits for the election instead of failing.
func TestWriteDuringFailover(t *testing.T) {
	nodes := startCluster(t, 3, clusterOptions{})
	leader, followers := leaderOf(t, nodes)
	ctx := ctxT(t)
	if _, err := followers[0].lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)}); err != nil {
		t.Fatal(err)
	}
	// Stop the leader without handing leadership over: raft first (no
	// transfer: Shutdown would transfer, so cut its API and raft abruptly).
	leader.gs.Stop()
	leader.closed = true
	leader.cancel()
	<-leader.done
	_ = leader.node.Raft().Shutdown().Error()
	// Once the follower has seen its connection to the leader close, the
	// next forward cannot be in flight when the leader goes.
	cc, err := followers[0].srv.conn(leader.addr)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return cc.GetState() != connectivity.Ready }, "connection to the stopped leader closing")
	start := time.Now()
	resp, err := followers[0].lb().AddRealServer(ctx, &shoalv1.AddRealServerRequest{Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.1.1"}})
	if err != nil {
		t.Fatalf("write during failover: %v", err)
	}
	t.Logf("write through a follower accepted %s after the leader stopped (serial %d)", time.Since(start).Round(time.Millisecond), resp.GetSerial())
	// Linearizable reads also wait for the new leader.
	if _, err := followers[1].lb().ListVirtualServices(ctx, &shoalv1.ListVirtualServicesRequest{}); err != nil {
		t.Fatalf("read after failover: %v", err)
	}
	_ = leader.srv.Close()
	_ = leader.conn.Close()
}

// TestRefusalFromFreshState: a node that cannot catch up with the leader
// must not refuse a write on its own state, which may be stale: a
// compare-and-set through a follower cut off from the others is answered
// Unavailable, not "expected serial 2, but the serial is 1" (the nemesis
// test's fixture cas-refused-by-partitioned-follower.json).
func TestRefusalFromFreshState(t *testing.T) {
	nodes := startCluster(t, 3, clusterOptions{})
	leader, followers := leaderOf(t, nodes)
	cut := followers[0]
	ctx := ctxT(t)
	if _, err := leader.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return cut.node.FSM().State().GetConfig().GetSerial() == 1 }, "the follower at serial 1")

	// Cut the follower off, in both directions, and write on.
	cut.trans.DisconnectAll()
	for _, n := range nodes {
		if n != cut {
			n.trans.Disconnect(raft.ServerAddress(cut.id))
		}
	}
	if _, err := leader.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("db", "10.0.0.2", 5432)}); err != nil {
		t.Fatal(err)
	}
	// Its API still reaches the leader's over gRPC: also cut that path,
	// as a partition would, by forgetting where the leader is.
	eventually(t, 5*time.Second, func() bool { return cut.node.Status().LeaderID == "" }, "the cut-off follower without a leader")

	_, err := cut.lb().UpdateRealServer(ctx, &shoalv1.UpdateRealServerRequest{
		Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.1.1"}, ExpectedSerial: 2,
	})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("CAS at the cluster's serial through a cut-off follower: %v, want Unavailable", err)
	}
	_, err = cut.lb().DeleteVirtualService(ctx, &shoalv1.DeleteVirtualServiceRequest{Name: "db"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("delete of a service the follower has not seen: %v, want Unavailable, not NotFound", err)
	}
}
