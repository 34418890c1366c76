package server

import (
	"context"
	"crypto/tls"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// withRequestID is ctx with a client request id, as lvsctl sends it.
func withRequestID(ctx context.Context, id string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, requestIDKey, id)
}

// historyLen is the number of changes in the history, read through n.
func historyLen(t *testing.T, ctx context.Context, n *testNode) int {
	t.Helper()
	h, err := n.cfg().ListHistory(ctx, &shoalv1.ListHistoryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return len(h.GetEntries())
}

// TestRequestIDAcrossNodes sends one write with one request id through
// every node in turn: it applies once, and every node answers with its
// first outcome, even once later writes have made its expected serial
// stale.
func TestRequestIDAcrossNodes(t *testing.T) {
	nodes := startCluster(t, 3, clusterOptions{})
	leader, followers := leaderOf(t, nodes)
	ctx := ctxT(t)
	req := &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80), ExpectedSerial: 0}
	idCtx := withRequestID(ctx, "create-web-1")

	first, err := followers[0].lb().CreateVirtualService(idCtx, req)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{followers[1], leader, followers[0]} {
		var header metadata.MD
		again, err := n.lb().CreateVirtualService(idCtx, req, grpc.Header(&header))
		if err != nil {
			t.Fatalf("retry through %s: %v", n.id, err)
		}
		if !proto.Equal(again, first) {
			t.Errorf("retry through %s answered %v, want the first answer %v", n.id, again, first)
		}
		if got := header.Get(replayedKey); len(got) != 1 || got[0] != "true" {
			t.Errorf("retry through %s: header %s = %q", n.id, replayedKey, got)
		}
	}
	if n := historyLen(t, ctx, leader); n != 1 {
		t.Errorf("%d changes in the history, want 1", n)
	}

	// Another write moves the serial on; the retry still gets the first
	// outcome, not FailedPrecondition or AlreadyExists.
	if _, err := leader.lb().UpdateVirtualService(ctx, &shoalv1.UpdateVirtualServiceRequest{
		Service: &shoalv1.VirtualService{Name: "web", Scheduler: "rr"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"scheduler"}}}); err != nil {
		t.Fatal(err)
	}
	req.ExpectedSerial = first.GetSerial() - 1
	late, err := followers[1].lb().CreateVirtualService(idCtx, req)
	if err != nil || !proto.Equal(late, first) {
		t.Fatalf("retry after another write: %v %v, want %v", late, err, first)
	}
	if n := historyLen(t, ctx, leader); n != 2 {
		t.Errorf("%d changes in the history, want 2", n)
	}

	// The node that answered the replays counts them.
	rec := httptest.NewRecorder()
	followers[1].srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if want := `shoal_api_replayed_writes_total{method="CreateVirtualService"} 2`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("metrics lack %q", want)
	}
}

// TestReplayAnswersOfEveryWrite makes one change of each kind with a
// request id, more changes after them, then retries each through another
// node: the answer is the first one, field for field.
func TestReplayAnswersOfEveryWrite(t *testing.T) {
	nodes := startCluster(t, 3, clusterOptions{})
	_, followers := leaderOf(t, nodes)
	f, g := followers[0], followers[1]
	ctx := ctxT(t)
	steps := []struct {
		name string
		call func(ctx context.Context, n *testNode) (proto.Message, error)
	}{
		{"CreateVirtualService", func(ctx context.Context, n *testNode) (proto.Message, error) {
			return n.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)})
		}},
		{"AddRealServer", func(ctx context.Context, n *testNode) (proto.Message, error) {
			return n.lb().AddRealServer(ctx, &shoalv1.AddRealServerRequest{Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.1.1"}})
		}},
		{"UpdateRealServer", func(ctx context.Context, n *testNode) (proto.Message, error) {
			return n.lb().UpdateRealServer(ctx, &shoalv1.UpdateRealServerRequest{Service: "web",
				RealServer: &shoalv1.RealServer{Address: "10.0.1.1", Weight: proto.Uint32(5)}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"weight"}}})
		}},
		{"UpdateVirtualService", func(ctx context.Context, n *testNode) (proto.Message, error) {
			return n.lb().UpdateVirtualService(ctx, &shoalv1.UpdateVirtualServiceRequest{
				Service: &shoalv1.VirtualService{Name: "web", Scheduler: "rr"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"scheduler"}}})
		}},
		{"ApplyConfig", func(ctx context.Context, n *testNode) (proto.Message, error) {
			return n.cfg().ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{Config: &shoalv1.Config{Services: []*shoalv1.VirtualService{
				webService("web", "10.0.0.1", 80), webService("dns", "10.0.0.53", 53)}}})
		}},
		{"RollbackConfig", func(ctx context.Context, n *testNode) (proto.Message, error) {
			return n.cfg().RollbackConfig(ctx, &shoalv1.RollbackConfigRequest{Serial: 2})
		}},
		{"RemoveRealServer", func(ctx context.Context, n *testNode) (proto.Message, error) {
			return n.lb().RemoveRealServer(ctx, &shoalv1.RemoveRealServerRequest{Service: "web", Address: "10.0.1.1"})
		}},
		{"DeleteVirtualService", func(ctx context.Context, n *testNode) (proto.Message, error) {
			return n.lb().DeleteVirtualService(ctx, &shoalv1.DeleteVirtualServiceRequest{Name: "web"})
		}},
		// Every service is gone by now: applying none changes nothing.
		{"no-op ApplyConfig", func(ctx context.Context, n *testNode) (proto.Message, error) {
			return n.cfg().ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{Config: &shoalv1.Config{}})
		}},
	}
	first := make([]proto.Message, len(steps))
	for i, s := range steps {
		resp, err := s.call(withRequestID(ctx, "step-"+s.name), f)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		first[i] = resp
	}
	if noop := first[len(first)-1].(*shoalv1.ApplyConfigResponse); len(noop.GetChanges()) != 0 || noop.GetSerial() != 8 {
		t.Fatalf("the no-op step answered %v", noop)
	}
	// Later changes, so that no replay can be read off the current state.
	if _, err := f.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.9", 8080)}); err != nil {
		t.Fatal(err)
	}
	history := historyLen(t, ctx, g)
	for i, s := range steps {
		resp, err := s.call(withRequestID(ctx, "step-"+s.name), g)
		if err != nil {
			t.Errorf("%s retry: %v", s.name, err)
			continue
		}
		if !proto.Equal(resp, first[i]) {
			t.Errorf("%s retry answered\n%v\nwant the first answer\n%v", s.name, resp, first[i])
		}
	}
	if n := historyLen(t, ctx, g); n != history {
		t.Errorf("the retries added %d changes to the history", n-history)
	}
}

// TestRequestIDConcurrent sends one write with one id through every node at
// once: however the copies race, it applies once and all answer alike.
func TestRequestIDConcurrent(t *testing.T) {
	nodes := startCluster(t, 3, clusterOptions{})
	leader, _ := leaderOf(t, nodes)
	ctx := withRequestID(ctxT(t), "race")
	req := &shoalv1.AddRealServerRequest{Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.1.1"}}
	if _, err := leader.lb().CreateVirtualService(ctxT(t), &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	serials := make([]uint64, 3*len(nodes))
	errs := make([]error, len(serials))
	for i := range serials {
		wg.Go(func() {
			resp, err := nodes[i%len(nodes)].lb().AddRealServer(ctx, req)
			serials[i], errs[i] = resp.GetSerial(), err
		})
	}
	wg.Wait()
	for i := range serials {
		if errs[i] != nil || serials[i] != serials[0] {
			t.Errorf("copy %d: serial %d, %v; want serial %d like the first", i, serials[i], errs[i], serials[0])
		}
	}
	if n := historyLen(t, ctxT(t), leader); n != 2 {
		t.Errorf("%d changes in the history, want 2 (create, add once)", n)
	}
}

// TestRetryAfterLeaderChange: a write commits but its answer is lost with
// the leader; the client retries with the same id through a follower,
// which by then forwards to a new leader, and gets the first outcome.
func TestRetryAfterLeaderChange(t *testing.T) {
	nodes := startCluster(t, 3, clusterOptions{})
	leader, followers := leaderOf(t, nodes)
	ctx := ctxT(t)
	req := &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)}
	// What the handler would have committed on the client's behalf.
	res, err := leader.node.Apply(ctx, &shoalv1.Command{
		Op:        &shoalv1.Command_CreateVirtualService{CreateVirtualService: req},
		Audit:     &shoalv1.Audit{Actor: "admin", Role: "admin", Method: "CreateVirtualService", Time: timestamppb.Now()},
		RequestId: "lost-answer",
	})
	if err != nil {
		t.Fatal(err)
	}
	// The leader goes without handing over (as in TestWriteDuringFailover).
	leader.gs.Stop()
	leader.closed = true
	leader.cancel()
	<-leader.done
	_ = leader.node.Raft().Shutdown().Error()
	defer func() {
		_ = leader.srv.Close()
		_ = leader.conn.Close()
	}()
	cc, err := followers[0].srv.conn(leader.addr)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return cc.GetState() != connectivity.Ready }, "connection to the stopped leader closing")

	again, err := followers[0].lb().CreateVirtualService(withRequestID(ctx, "lost-answer"), req)
	if err != nil {
		t.Fatalf("retry after the leader went: %v", err)
	}
	if again.GetSerial() != res.Serial || again.GetService().GetName() != "web" {
		t.Errorf("retry answered serial %d, %v; want the first outcome, serial %d", again.GetSerial(), again.GetService(), res.Serial)
	}
	if n := historyLen(t, ctx, followers[1]); n != 1 {
		t.Errorf("%d changes in the history, want 1", n)
	}
	// Without the id, the same request is a new one.
	if _, err := followers[1].lb().CreateVirtualService(ctx, req); status.Code(err) != codes.AlreadyExists {
		t.Errorf("the same request without an id: %v, want AlreadyExists", err)
	}
}

func TestRequestIDRefused(t *testing.T) {
	nodes := startCluster(t, 1, clusterOptions{})
	n := nodes[0]
	ctx := ctxT(t)
	req := &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)}
	for name, ctx := range map[string]context.Context{
		"too long":   withRequestID(ctx, strings.Repeat("x", 129)),
		"sent twice": metadata.AppendToOutgoingContext(ctx, requestIDKey, "a", requestIDKey, "b"),
	} {
		_, err := n.lb().CreateVirtualService(ctx, req)
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "request_id") {
			t.Errorf("%s: %v, want InvalidArgument naming request_id", name, err)
		}
	}
	if n := historyLen(t, ctx, n); n != 0 {
		t.Errorf("a refused request id changed the configuration (%d changes)", n)
	}
}

// TestDryRunIgnoresRequestID: a dry run commits nothing, so it must not
// make its id look applied.
func TestDryRunIgnoresRequestID(t *testing.T) {
	nodes := startCluster(t, 1, clusterOptions{})
	n := nodes[0]
	ctx := withRequestID(ctxT(t), "dry-then-wet")
	cfg := &shoalv1.Config{Services: []*shoalv1.VirtualService{webService("web", "10.0.0.1", 80)}}
	dry, err := n.cfg().ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{Config: cfg, DryRun: true})
	if err != nil || dry.GetSerial() != 0 {
		t.Fatalf("dry run: %v %v", dry, err)
	}
	var header metadata.MD
	wet, err := n.cfg().ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{Config: cfg}, grpc.Header(&header))
	if err != nil || wet.GetSerial() != 1 || len(header.Get(replayedKey)) != 0 {
		t.Fatalf("apply after a dry run with the same id: %v %v (replayed %q)", wet, err, header.Get(replayedKey))
	}
}

func TestMayHaveAppliedMessage(t *testing.T) {
	with := mayHaveApplied(&shoalv1.Command{RequestId: "abc"}, "leader n1 went away", "EOF")
	without := mayHaveApplied(&shoalv1.Command{}, "leader n1 went away", "EOF")
	for _, tt := range []struct {
		err  error
		want string
	}{
		{with, "retry with the same request id (abc)"},
		{without, "read before retrying"},
	} {
		if st := status.Convert(tt.err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), tt.want) ||
			!strings.Contains(st.Message(), "leader n1 went away during the write") {
			t.Errorf("%v, want Unavailable saying %q", tt.err, tt.want)
		}
	}
}

// TestForwardedReplay: when the forwarding node has not applied the id
// itself, the leader's FSM finds it, and says so in its PeerService answer.
func TestForwardedReplay(t *testing.T) {
	nodes := startCluster(t, 3, clusterOptions{})
	leader, followers := leaderOf(t, nodes)
	ctx := ctxT(t)
	first, err := leader.lb().CreateVirtualService(withRequestID(ctx, "fwd"), &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)})
	if err != nil {
		t.Fatal(err)
	}
	cmd := &shoalv1.Command{
		Op:        &shoalv1.Command_CreateVirtualService{CreateVirtualService: &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)}},
		RequestId: "fwd",
	}
	var header metadata.MD
	// As a node calls: with its cluster ID.
	peerCtx := metadata.AppendToOutgoingContext(ctx, clusterIDKey, leader.node.ClusterID())
	resp, err := shoalv1.NewPeerServiceClient(leader.conn).ApplyCommand(peerCtx, &shoalv1.ApplyCommandRequest{Command: cmd}, grpc.Header(&header))
	if err != nil || resp.GetSerial() != first.GetSerial() || len(resp.GetChanges()) != 1 || !slices.Contains(header.Get(replayedKey), "true") {
		t.Fatalf("ApplyCommand of a remembered id: %v %v, header %v", resp, err, header)
	}
	// commit skips the local check that write makes first.
	w, err := followers[0].srv.commit(ctx, cmd, judged{})
	if err != nil || !w.replayed || w.serial != first.GetSerial() || len(w.changes) != 1 {
		t.Fatalf("forwarded replay: %+v %v", w, err)
	}
	if n := historyLen(t, ctx, leader); n != 1 {
		t.Errorf("%d changes in the history, want 1", n)
	}
}

// TestReplayOfSecretMakingWrites: a join token's secret and a signed
// certificate are in the first answer only, so their retry is refused;
// deleting a token is retried like any other write.
func TestReplayOfSecretMakingWrites(t *testing.T) {
	n := startTLSNode(t)
	ctx := ctxT(t)
	adminCert, err := tls.LoadX509KeyPair(filepath.Join(n.dir.Dir, pki.AdminCertFile), filepath.Join(n.dir.Dir, pki.AdminKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	cluster := shoalv1.NewClusterServiceClient(n.dial(t, &adminCert))

	tokCtx := withRequestID(ctx, "token-1")
	made, err := cluster.CreateJoinToken(tokCtx, &shoalv1.CreateJoinTokenRequest{Description: "once"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cluster.CreateJoinToken(tokCtx, &shoalv1.CreateJoinTokenRequest{Description: "once"})
	if st := status.Convert(err); st.Code() != codes.AlreadyExists || !strings.Contains(st.Message(), "cannot be shown again") {
		t.Errorf("retried token: %v, want AlreadyExists", err)
	}
	list, err := cluster.ListJoinTokens(ctx, &shoalv1.ListJoinTokensRequest{})
	if err != nil || len(list.GetTokens()) != 1 || list.GetTokens()[0].GetId() != made.GetInfo().GetId() {
		t.Fatalf("tokens after a retry: %v %v, want only %s", list, err, made.GetInfo().GetId())
	}

	delCtx := withRequestID(ctx, "delete-token-1")
	for i := range 2 {
		if _, err := cluster.DeleteJoinToken(delCtx, &shoalv1.DeleteJoinTokenRequest{Id: made.GetInfo().GetId()}); err != nil {
			t.Fatalf("delete, attempt %d: %v", i+1, err)
		}
	}

	key := newClientKey(t, "bot")
	certCtx := withRequestID(ctx, "cert-1")
	req := &shoalv1.IssueCertificateRequest{Csr: key.csr, Name: "bot", Role: "viewer"}
	if _, err := cluster.IssueCertificate(certCtx, req); err != nil {
		t.Fatal(err)
	}
	_, err = cluster.IssueCertificate(certCtx, req)
	if status.Code(err) != codes.AlreadyExists {
		t.Errorf("retried certificate: %v, want AlreadyExists", err)
	}
	certs, err := cluster.ListCertificates(ctx, &shoalv1.ListCertificatesRequest{})
	bots := 0
	for _, c := range certs.GetCertificates() {
		if c.GetInfo().GetName() == "bot" {
			bots++
		}
	}
	if err != nil || bots != 1 {
		t.Errorf("%d certificates recorded for bot (%v), want 1", bots, err)
	}
}
