package server

import (
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestAddressesThatCannotWork: the API refuses the addresses of issue 23,
// each with a field error, in writes and dry runs alike, and nothing
// reaches raft; a loopback real server (IPVS's local node) is accepted.
func TestAddressesThatCannotWork(t *testing.T) {
	nodes := startCluster(t, 3, clusterOptions{})
	leader, followers := leaderOf(t, nodes)
	f := followers[0]
	ctx := ctxT(t)
	before := leader.node.FSM().AppliedIndex()

	fieldOf := func(err error) string {
		t.Helper()
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument {
			t.Fatalf("%v: want InvalidArgument", err)
		}
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 {
				return br.GetFieldViolations()[0].GetField()
			}
		}
		t.Fatalf("%v: no single field violation in %v", err, st.Details())
		return ""
	}
	for _, vip := range []string{"0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", "::1", "fe80::1"} {
		_, err := f.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("web", vip, 80)})
		want := "services[web].vip.address"
		if vip == "fe80::1" {
			want = "services[web].vip.interface"
		}
		if got := fieldOf(err); got != want {
			t.Errorf("VIP %s: field %s, want %s", vip, got, want)
		}
		_, err = f.cfg().ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{DryRun: true, Config: &shoalv1.Config{
			Services: []*shoalv1.VirtualService{webService("web", vip, 80)}}})
		if got := fieldOf(err); got != want {
			t.Errorf("dry run of VIP %s: field %s, want %s", vip, got, want)
		}
	}
	_, err := f.cfg().ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{Config: &shoalv1.Config{
		Global: &shoalv1.Global{NatRouter: &shoalv1.Address{Address: "127.0.0.1"}}}})
	if got := fieldOf(err); got != "global.nat_router.address" {
		t.Errorf("NAT router: field %s", got)
	}
	if after := leader.node.FSM().AppliedIndex(); after != before {
		t.Errorf("refused writes reached raft: applied index %d -> %d", before, after)
	}

	if _, err := f.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "192.0.2.10", 80)}); err != nil {
		t.Fatal(err)
	}
	for _, rs := range []string{"0.0.0.0", "224.0.0.5"} {
		_, err := f.lb().AddRealServer(ctx, &shoalv1.AddRealServerRequest{Service: "web", RealServer: &shoalv1.RealServer{Address: rs, Port: 80}})
		if got, want := fieldOf(err), "services[web].real_servers["+rs+":80].address"; got != want {
			t.Errorf("real server %s: field %s, want %s", rs, got, want)
		}
	}
	if _, err := f.lb().AddRealServer(ctx, &shoalv1.AddRealServerRequest{Service: "web", RealServer: &shoalv1.RealServer{Address: "127.0.0.1", Port: 80}}); err != nil {
		t.Errorf("loopback real server: %v", err)
	}
}

// TestAddressRulesAreNotTheLogs: the state machine still takes what a
// log written before the rules holds, and the API lets such a
// configuration be changed elsewhere; only what a change adds is judged.
func TestAddressRulesAreNotTheLogs(t *testing.T) {
	nodes := startCluster(t, 1, clusterOptions{})
	n := nodes[0]
	ctx := ctxT(t)
	old := &shoalv1.Config{Services: []*shoalv1.VirtualService{webService("old", "127.0.0.1", 80)}}
	// As a node of an earlier version would have committed it.
	if _, err := n.node.Apply(ctx, &shoalv1.Command{Op: &shoalv1.Command_ApplyConfig{ApplyConfig: &shoalv1.ApplyConfigRequest{Config: old}}}); err != nil {
		t.Fatalf("the state machine refused a config an earlier version committed: %v", err)
	}
	if _, err := n.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "192.0.2.10", 80)}); err != nil {
		t.Fatalf("an unrelated write refused for the old VIP: %v", err)
	}
	_, err := n.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("new", "127.0.0.2", 80)})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "services[new].vip.address") ||
		strings.Contains(st.Message(), "services[old]") {
		t.Errorf("new loopback VIP: %v, want InvalidArgument about services[new] only", err)
	}
}
