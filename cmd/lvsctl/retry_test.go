package main

import (
	"bytes"
	"context"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// flakyServer remembers request ids as the cluster does, and answers the
// first calls of each method with Unavailable, after the write has taken
// effect: the client cannot tell whether it did.
type flakyServer struct {
	shoalv1.UnimplementedLoadBalancerServiceServer
	shoalv1.UnimplementedClusterServiceServer

	mu sync.Mutex
	// failures is how many calls of each method fail before one succeeds
	// (-1: all).
	failures int
	calls    map[string]int
	// ids are the request ids each call carried, "" for none.
	ids     map[string][]string
	serial  uint64
	applied map[string]uint64
}

func (f *flakyServer) called(ctx context.Context, method string) (id string, fail bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(requestIDKey); len(v) > 0 {
		id = v[0]
	}
	f.calls[method]++
	f.ids[method] = append(f.ids[method], id)
	return id, f.failures < 0 || f.calls[method] <= f.failures
}

// idsOf is the request ids the calls of method carried.
func (f *flakyServer) idsOf(method string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ids[method]...)
}

func (f *flakyServer) serialNow() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.serial
}

// reset makes the next calls fail failures times again.
func (f *flakyServer) reset(failures int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures, f.calls = failures, map[string]int{}
}

var errWentAway = status.Error(codes.Unavailable, "leader n1 went away during the write, which may or may not have been applied")

func (f *flakyServer) DeleteVirtualService(ctx context.Context, req *shoalv1.DeleteVirtualServiceRequest) (*shoalv1.DeleteVirtualServiceResponse, error) {
	id, fail := f.called(ctx, "DeleteVirtualService")
	f.mu.Lock()
	serial, ok := f.applied[id]
	if !ok || id == "" {
		f.serial++
		serial = f.serial
		f.applied[id] = serial
	}
	f.mu.Unlock()
	if fail {
		return nil, errWentAway
	}
	return &shoalv1.DeleteVirtualServiceResponse{Serial: serial}, nil
}

func (f *flakyServer) ListVirtualServices(ctx context.Context, _ *shoalv1.ListVirtualServicesRequest) (*shoalv1.ListVirtualServicesResponse, error) {
	if _, fail := f.called(ctx, "ListVirtualServices"); fail {
		return nil, status.Error(codes.Unavailable, "no leader is known")
	}
	return &shoalv1.ListVirtualServicesResponse{Serial: 7}, nil
}

func (f *flakyServer) CreateJoinToken(ctx context.Context, _ *shoalv1.CreateJoinTokenRequest) (*shoalv1.CreateJoinTokenResponse, error) {
	if _, fail := f.called(ctx, "CreateJoinToken"); fail {
		return nil, errWentAway
	}
	return &shoalv1.CreateJoinTokenResponse{Token: "t"}, nil
}

func startFlaky(t *testing.T, failures int) (*flakyServer, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &flakyServer{failures: failures, calls: map[string]int{}, ids: map[string][]string{}, applied: map[string]uint64{}}
	gs := grpc.NewServer()
	shoalv1.RegisterLoadBalancerServiceServer(gs, f)
	shoalv1.RegisterClusterServiceServer(gs, f)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return f, lis.Addr().String()
}

// quickRetry keeps the tests fast.
var quickRetry = retryPolicy{attempts: 4, first: time.Millisecond, most: 5 * time.Millisecond}

func runRetrying(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	a := newApp(&out, &errb)
	a.retry = quickRetry
	root := a.root()
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestWriteRetriedWithItsRequestID(t *testing.T) {
	f, addr := startFlaky(t, 1)
	out, err := runRetrying(t, "-s", addr, "service", "delete", "web")
	if err != nil {
		t.Fatal(err)
	}
	ids := f.idsOf("DeleteVirtualService")
	if len(ids) != 2 || ids[0] != ids[1] || !hexID.MatchString(ids[0]) {
		t.Fatalf("request ids of the two attempts: %q, want the same random one twice", ids)
	}
	// The server applied it once, at the first attempt, and the retry
	// got that outcome.
	if f.serialNow() != 1 || !strings.Contains(out, "(serial 1)") {
		t.Errorf("serial %d, output %q", f.serialNow(), out)
	}

	// The next command is another write, with another id.
	f.reset(1)
	if _, err := runRetrying(t, "-s", addr, "service", "delete", "web"); err != nil {
		t.Fatal(err)
	}
	if ids := f.idsOf("DeleteVirtualService"); len(ids) != 4 || ids[2] != ids[3] || ids[2] == ids[0] {
		t.Errorf("request ids of two commands: %q", ids)
	}
}

func TestReadRetriedWithoutRequestID(t *testing.T) {
	f, addr := startFlaky(t, 2)
	if _, err := runRetrying(t, "-s", addr, "service", "list"); err != nil {
		t.Fatal(err)
	}
	if ids := f.idsOf("ListVirtualServices"); len(ids) != 3 || strings.Join(ids, "") != "" {
		t.Errorf("a read sent %d times with request ids %q; want 3 times without", len(ids), ids)
	}
}

func TestWriteGivesUpWithItsRequestID(t *testing.T) {
	f, addr := startFlaky(t, -1)
	_, err := runRetrying(t, "-s", addr, "service", "delete", "web")
	ids := f.idsOf("DeleteVirtualService")
	if len(ids) != quickRetry.attempts {
		t.Fatalf("%d attempts, want %d", len(ids), quickRetry.attempts)
	}
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "went away") || !strings.Contains(st.Message(), "--request-id "+ids[0]) {
		t.Fatalf("gave up with %v, want Unavailable naming --request-id %s", err, ids[0])
	}

	// Run again as told: the same id, which the server remembers.
	f.reset(0)
	out, err := runRetrying(t, "-s", addr, "--request-id", ids[0], "service", "delete", "web")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.idsOf("DeleteVirtualService"); got[len(got)-1] != ids[0] || f.serialNow() != 1 || !strings.Contains(out, "(serial 1)") {
		t.Errorf("with --request-id: ids %q, serial %d, output %q", got, f.serialNow(), out)
	}
}

func TestSecretMakingWritesSentOnce(t *testing.T) {
	f, addr := startFlaky(t, 1)
	_, err := runRetrying(t, "-s", addr, "cluster", "token")
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want the Unavailable of the only attempt", err)
	}
	if ids := f.idsOf("CreateJoinToken"); len(ids) != 1 || ids[0] != "" {
		t.Errorf("CreateJoinToken sent %d times, with ids %q; want once, without", len(ids), ids)
	}
}

func TestRequestIDNamesOneWrite(t *testing.T) {
	a := newApp(&bytes.Buffer{}, &bytes.Buffer{})
	a.requestID = "mine"
	if id, err := a.nextRequestID(); id != "mine" || err != nil {
		t.Fatalf("first write: %q %v", id, err)
	}
	if _, err := a.nextRequestID(); err == nil {
		t.Error("--request-id was given to a second write")
	}
}

// TestEveryMethodClassified: each unary method lvsctl can call is a read, a
// write that is safe to retry with its request id, or sent once; a method
// added to the API has to be put in one of them.
func TestEveryMethodClassified(t *testing.T) {
	for _, sd := range []grpc.ServiceDesc{
		shoalv1.ConfigService_ServiceDesc, shoalv1.LoadBalancerService_ServiceDesc,
		shoalv1.ClusterService_ServiceDesc, shoalv1.NodeService_ServiceDesc,
	} {
		for _, m := range sd.Methods {
			name := "/" + sd.ServiceName + "/" + m.MethodName
			n := 0
			for _, set := range []map[string]bool{idempotentWrites, reads, sentOnce} {
				if set[name] {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%s is in %d of the retry classes, want 1", name, n)
			}
		}
	}
}
