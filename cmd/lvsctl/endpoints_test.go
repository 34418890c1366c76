package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func TestSplitEndpoints(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		bad  bool
	}{
		{"127.0.0.1:7070", []string{"127.0.0.1:7070"}, false},
		{"a:1,b:2, c:3 ,", []string{"a:1", "b:2", "c:3"}, false},
		{"a:1,a:1,[::1]:7070", []string{"a:1", "[::1]:7070"}, false},
		{" , ", nil, true},
	}
	for _, tt := range tests {
		got, err := splitEndpoints(tt.in)
		if (err != nil) != tt.bad || strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("splitEndpoints(%q) = %q %v", tt.in, got, err)
		}
	}
}

// closedAddr is an address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// run is runRetrying with main's explanation of the error, and the app.
func run(t *testing.T, p retryPolicy, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	a := newApp(&out, &errb)
	a.retry = p
	root := a.root()
	root.SetArgs(args)
	return out.String(), a.explain(root.Execute())
}

func TestUnreachableNodeNamed(t *testing.T) {
	down := closedAddr(t)
	_, err := run(t, quickRetry, "-s", down, "cluster", "status")
	msg := status.Convert(err).Message()
	for _, want := range []string{"cannot reach the shoal API at " + down + " (connection refused)", "--server", "$SHOAL_SERVER", "comma-separated"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "transport") || tlsHint(msg) != "" {
		t.Errorf("%q: transport words or a TLS hint", msg)
	}

	other := closedAddr(t)
	_, err = run(t, quickRetry, "-s", down+","+other, "service", "delete", "web")
	msg = status.Convert(err).Message()
	if !strings.Contains(msg, "at any of "+down+" (connection refused), "+other+" (connection refused);") {
		t.Errorf("%q does not name both nodes", msg)
	}
	// Nothing was sent, so there is no write to retry by request id.
	if strings.Contains(msg, "--request-id") {
		t.Errorf("%q: a write that never left suggests --request-id", msg)
	}
}

func TestNextEndpointWhenOneIsDown(t *testing.T) {
	f, up := startFlaky(t, 0)
	down := closedAddr(t)
	if _, err := run(t, quickRetry, "-s", down+","+up, "service", "list"); err != nil {
		t.Fatalf("a read with the first node down: %v", err)
	}
	if n := len(f.idsOf("ListVirtualServices")); n != 1 {
		t.Errorf("the read reached the node that is up %d times, want once", n)
	}
	if _, err := run(t, quickRetry, "-s", down+","+up, "service", "delete", "web"); err != nil {
		t.Fatalf("a write with the first node down: %v", err)
	}
	if ids := f.idsOf("DeleteVirtualService"); len(ids) != 1 || !hexID.MatchString(ids[0]) {
		t.Errorf("request ids %q", ids)
	}
}

// TestWriteMovesToAnotherNodeWithItsRequestID: the node a write went to
// goes away during it; the retry reaches the next node with the same
// request id, so the cluster can apply it at most once.
func TestWriteMovesToAnotherNodeWithItsRequestID(t *testing.T) {
	first := &flakyServer{failures: -1, calls: map[string]int{}, ids: map[string][]string{}, applied: map[string]uint64{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var gs *grpc.Server
	gs = grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if err != nil {
			go gs.Stop() // the node goes away with the answer
		}
		return resp, err
	}))
	shoalv1.RegisterLoadBalancerServiceServer(gs, first)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	second, addr2 := startFlaky(t, 0)

	p := retryPolicy{attempts: 10, first: 5 * time.Millisecond, most: 50 * time.Millisecond}
	if _, err := run(t, p, "-s", lis.Addr().String()+","+addr2, "service", "delete", "web"); err != nil {
		t.Fatal(err)
	}
	ids1, ids2 := first.idsOf("DeleteVirtualService"), second.idsOf("DeleteVirtualService")
	if len(ids1) != 1 || len(ids2) != 1 || ids1[0] != ids2[0] || !hexID.MatchString(ids1[0]) {
		t.Fatalf("request ids on the first node %q, on the second %q: want the same one", ids1, ids2)
	}
}

// TestTLSHintStillGiven: a node that answers, but speaks TLS to a client
// without certificates, was reached: its error and the TLS hint stand.
func TestTLSHintStillGiven(t *testing.T) {
	for _, v := range []string{"SHOAL_CACERT", "SHOAL_CERT", "SHOAL_KEY"} {
		t.Setenv(v, "")
	}
	addr := tlsServer(t)
	_, err := run(t, quickRetry, "-s", addr, "service", "list")
	msg := status.Convert(err).Message()
	t.Log(msg)
	if strings.Contains(msg, "cannot reach") || tlsHint(msg) == "" {
		t.Errorf("%q: want the transport error with its TLS hint", msg)
	}
}

// tlsServer is a gRPC server that requires TLS, with a self-signed
// certificate: the client here speaks plaintext to it.
func tlsServer(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	shoalv1.RegisterLoadBalancerServiceServer(gs, &flakyServer{})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}
