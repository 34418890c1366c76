package server

import (
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestThresholdsAndChecksOverTheAPI: UpdateRealServer sets thresholds and a
// server's own checks by mask; bad values are InvalidArgument naming every
// field at fault, and nothing reaches raft.
func TestThresholdsAndChecksOverTheAPI(t *testing.T) {
	nodes := startCluster(t, 1, clusterOptions{})
	n := nodes[0]
	ctx := ctxT(t)
	svc := webService("web", "192.0.2.10", 80)
	svc.RealServers = []*shoalv1.RealServer{{Address: "10.0.0.1"}}
	if _, err := n.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: svc}); err != nil {
		t.Fatal(err)
	}
	update := func(rs *shoalv1.RealServer, paths ...string) error {
		_, err := n.lb().UpdateRealServer(ctx, &shoalv1.UpdateRealServerRequest{Service: "web", RealServer: rs,
			UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
		return err
	}
	fields := func(err error) []string {
		t.Helper()
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument {
			t.Fatalf("%v: want InvalidArgument", err)
		}
		var out []string
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range br.GetFieldViolations() {
					out = append(out, v.GetField())
				}
			}
		}
		return out
	}
	before := n.node.FSM().AppliedIndex()
	err := update(&shoalv1.RealServer{Address: "10.0.0.1", LowerThreshold: 5}, "lower_threshold")
	if got := fields(err); len(got) != 1 || got[0] != "services[web].real_servers[10.0.0.1:80].lower_threshold" {
		t.Errorf("lower without upper: fields %v", got)
	}
	err = update(&shoalv1.RealServer{Address: "10.0.0.1", UpperThreshold: 10, LowerThreshold: 20,
		HealthChecks: []*shoalv1.HealthCheck{{Kind: "tcp"}, {Kind: "ping"}}}, "upper_threshold", "lower_threshold", "health_checks")
	if got := fields(err); len(got) != 2 || got[0] != "services[web].real_servers[10.0.0.1:80].lower_threshold" ||
		got[1] != "services[web].real_servers[10.0.0.1:80].health_checks[1].kind" {
		t.Errorf("every problem at once: fields %v", got)
	}
	if after := n.node.FSM().AppliedIndex(); after != before {
		t.Errorf("refused writes reached raft: applied index %d -> %d", before, after)
	}

	if err := update(&shoalv1.RealServer{Address: "10.0.0.1", UpperThreshold: 100, LowerThreshold: 75,
		HealthChecks: []*shoalv1.HealthCheck{{Kind: "tcp"}, {Kind: "http", Port: 8081}}}, "upper_threshold", "lower_threshold", "health_checks"); err != nil {
		t.Fatal(err)
	}
	got, err := n.lb().GetVirtualService(ctx, &shoalv1.GetVirtualServiceRequest{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	rs := got.GetService().GetRealServers()[0]
	if rs.GetUpperThreshold() != 100 || rs.GetLowerThreshold() != 75 || len(rs.GetHealthChecks()) != 2 || rs.GetHealthChecks()[1].GetPort() != 8081 {
		t.Errorf("after the update: %v", rs)
	}
}
