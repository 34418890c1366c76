package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// longCtx bounds a call on a large table: seconds normally, far more
// under the race detector.
func longCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// bigTable is n services of 10 real servers each.
func bigTable(n int) *shoalv1.Config {
	c := &shoalv1.Config{}
	for i := range n {
		s := webService(fmt.Sprintf("svc-%05d", i), fmt.Sprintf("10.%d.%d.10", i/250, i%250), 80)
		for j := range 10 {
			k := i*10 + j
			s.RealServers = append(s.RealServers, &shoalv1.RealServer{
				Address: fmt.Sprintf("172.%d.%d.%d", 16+k/62500, k/250%250, k%250+1), Weight: proto.Uint32(100), Forward: "dr",
				Name: strings.Repeat("r", 40),
			})
		}
		c.Services = append(c.Services, s)
	}
	return c
}

// TestLargeApply applies, through a follower (a forwarded write), a table
// whose request and whose full answer are both above grpc's default 4 MiB:
// it commits and is answered as committed, with a summary in place of the
// diff unless the client asks for all of it.
func TestLargeApply(t *testing.T) {
	if testing.Short() {
		t.Skip("applies a 6,500-service table; skipped with -short")
	}
	nodes := startCluster(t, 3, clusterOptions{})
	_, followers := leaderOf(t, nodes)
	cfg := bigTable(6500)
	if n := proto.Size(cfg); n <= 4<<20 {
		t.Fatalf("table is %d bytes, want more than 4 MiB to test the limit", n)
	}
	conn, err := grpc.NewClient(followers[0].addr, grpc.WithTransportCredentials(insecure.NewCredentials()), CallOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := shoalv1.NewConfigServiceClient(conn)

	resp, err := api.ApplyConfig(longCtx(t), &shoalv1.ApplyConfigRequest{Config: cfg})
	if err != nil {
		t.Fatalf("apply of 6,500 services: %v", err)
	}
	want := &shoalv1.ChangeSummary{ServicesAdded: 6500, RealServersAdded: 65000}
	if !resp.GetChangesOmitted() || len(resp.GetChanges()) != 0 || resp.GetConfig() != nil || !proto.Equal(resp.GetSummary(), want) {
		t.Errorf("answer: omitted %v, %d changes, config %v, summary %v; want the summary %v alone",
			resp.GetChangesOmitted(), len(resp.GetChanges()), resp.GetConfig() != nil, resp.GetSummary(), want)
	}
	if got := followers[0].node.FSM().State().GetConfig().GetSerial(); got != resp.GetSerial() {
		t.Errorf("follower at serial %d after the apply answered %d", got, resp.GetSerial())
	}

	// Asked for everything, a change to every real server comes back whole.
	for _, s := range cfg.Services {
		for _, rs := range s.RealServers {
			rs.Weight = proto.Uint32(50)
		}
	}
	withID := metadata.AppendToOutgoingContext(longCtx(t), requestIDKey, "large-apply")
	resp, err = api.ApplyConfig(withID, &shoalv1.ApplyConfigRequest{Config: cfg, Full: true})
	if err != nil {
		t.Fatalf("apply with full: %v", err)
	}
	if resp.GetChangesOmitted() || len(resp.GetChanges()) != 65000 || len(resp.GetConfig().GetServices()) != 6500 ||
		resp.GetSummary().GetRealServersModified() != 65000 {
		t.Errorf("full answer: omitted %v, %d changes, %d services, summary %v", resp.GetChangesOmitted(),
			len(resp.GetChanges()), len(resp.GetConfig().GetServices()), resp.GetSummary())
	}
	// Its retry gets the first outcome, every change of it, although the
	// state keeps none of them for its request id (the history entry
	// rebuilds them).
	var header metadata.MD
	again, err := api.ApplyConfig(withID, &shoalv1.ApplyConfigRequest{Config: cfg, Full: true}, grpc.Header(&header))
	if err != nil || header.Get(replayedKey) == nil || again.GetSerial() != resp.GetSerial() || len(again.GetChanges()) != 65000 ||
		!proto.Equal(again.GetChanges()[64999], resp.GetChanges()[64999]) || !proto.Equal(again.GetSummary(), resp.GetSummary()) {
		t.Errorf("retry: %v, replayed %v, serial %d (want %d), %d changes, summary %v", err, header.Get(replayedKey),
			again.GetSerial(), resp.GetSerial(), len(again.GetChanges()), again.GetSummary())
	}

	// A rollback answers the same way: the summary alone, or with full
	// everything.
	rb, err := api.RollbackConfig(longCtx(t), &shoalv1.RollbackConfigRequest{Serial: resp.GetSerial() - 1})
	if err != nil {
		t.Fatalf("rollback: %v", err)
	}
	want = &shoalv1.ChangeSummary{RealServersModified: 65000}
	if !rb.GetChangesOmitted() || len(rb.GetChanges()) != 0 || rb.GetConfig() != nil || !proto.Equal(rb.GetSummary(), want) {
		t.Errorf("rollback answer: omitted %v, %d changes, config %v, summary %v; want the summary %v alone",
			rb.GetChangesOmitted(), len(rb.GetChanges()), rb.GetConfig() != nil, rb.GetSummary(), want)
	}
	rb, err = api.RollbackConfig(longCtx(t), &shoalv1.RollbackConfigRequest{Serial: resp.GetSerial(), Full: true})
	if err != nil {
		t.Fatalf("rollback with full: %v", err)
	}
	if rb.GetChangesOmitted() || len(rb.GetChanges()) != 65000 || len(rb.GetConfig().GetServices()) != 6500 ||
		!proto.Equal(rb.GetSummary(), want) {
		t.Errorf("full rollback answer: omitted %v, %d changes, %d services, summary %v", rb.GetChangesOmitted(),
			len(rb.GetChanges()), len(rb.GetConfig().GetServices()), rb.GetSummary())
	}
}

// TestManyFieldErrors sends a config with 100,000 problems: the client
// gets InvalidArgument with a readable, capped message, and every
// problem in the details (the uncapped message outgrew the HTTP/2
// header limit: COMPRESSION_ERROR).
func TestManyFieldErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("validates 100,000 services; skipped with -short")
	}
	nodes := startCluster(t, 1, clusterOptions{})
	const n = 100000
	cfg := &shoalv1.Config{}
	for i := range n {
		cfg.Services = append(cfg.Services, webService(fmt.Sprintf("svc-%06d", i), fmt.Sprintf("10.%d.%d.%d", i/62500, i/250%250, i%250+1), 0))
	}
	conn, err := grpc.NewClient(nodes[0].addr, grpc.WithTransportCredentials(insecure.NewCredentials()), CallOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = shoalv1.NewConfigServiceClient(conn).ApplyConfig(longCtx(t), &shoalv1.ApplyConfigRequest{Config: cfg})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("got %v %.200q, want InvalidArgument", st.Code(), st.Message())
	}
	if !strings.HasPrefix(st.Message(), "services[svc-000000].port: ") || !strings.Contains(st.Message(), "… and 99,990 more") || len(st.Message()) > 2000 {
		t.Errorf("message (%d bytes): %.300q", len(st.Message()), st.Message())
	}
	var violations int
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			violations += len(br.GetFieldViolations())
		}
	}
	if violations != n {
		t.Errorf("details list %d problems, want %d", violations, n)
	}
	if s := nodes[0].node.FSM().State().GetConfig().GetSerial(); s != 0 {
		t.Errorf("serial %d after a refused apply", s)
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 9990: "9,990", 1234567: "1,234,567"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
