package pki_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// joinServer is the join service as a cluster member runs it, reduced to
// what pki provides: check the request under the token's key, sign it.
type joinServer struct {
	shoalv1.UnimplementedJoinServiceServer
	ca  *pki.CA
	key []byte
	// calls counts the requests that reached the service.
	calls atomic.Int32
	// answer, if set, replaces the honest answer: an impostor's, or a
	// relay's that altered it.
	answer func(req *shoalv1.JoinRequest, csr *x509.CertificateRequest) (*shoalv1.JoinResponse, error)
}

func (s *joinServer) Join(_ context.Context, req *shoalv1.JoinRequest) (*shoalv1.JoinResponse, error) {
	s.calls.Add(1)
	csr, err := pki.CheckJoinRequest(req, s.key)
	if errors.Is(err, pki.ErrBadJoinMAC) {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if s.answer != nil {
		return s.answer(req, csr)
	}
	return pki.SignJoin(s.ca, req, csr, s.key, testClusterID, time.Now())
}

// testClusterID is the cluster the join servers below answer for.
const testClusterID = "0123456789abcdef0123456789abcdef"

// startJoinServer serves js over TLS on loopback with the node certificate
// of n1 from serverCA, as a member's Raft port serves joins.
func startJoinServer(t *testing.T, serverCA *pki.CA, js *joinServer) string {
	t.Helper()
	store := pki.NewStore()
	n1 := nodeCert(t, serverCA, "n1", time.Now(), time.Hour)
	if err := store.Set(n1.cert, n1.key, []*x509.Certificate{serverCA.Cert}); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(store.JoinServerConfig())))
	shoalv1.RegisterJoinServiceServer(gs, js)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

func TestJoinOverGRPC(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	tok, err := pki.NewToken(pki.Fingerprint(ca.Cert))
	if err != nil {
		t.Fatal(err)
	}
	unpinned := tok
	unpinned.CAFingerprint = ""
	wrongPin := tok
	wrongPin.CAFingerprint = pki.Fingerprint(other.Cert)
	wrongSecret := tok
	wrongSecret.Secret = strings.Repeat("a", 32)
	key := tok.Key()

	tests := []struct {
		name string
		tok  pki.Token
		// serverCA is the CA of the server's own certificate (ca if nil).
		serverCA *pki.CA
		answer   func(req *shoalv1.JoinRequest, csr *x509.CertificateRequest) (*shoalv1.JoinResponse, error)
		// msg is what the error says; "" for a join that works.
		msg   string
		code  codes.Code
		calls int32
	}{
		{name: "pinned", tok: tok, calls: 1},
		{name: "unpinned", tok: unpinned, calls: 1},
		{name: "pinned to another CA", tok: wrongPin, msg: "not the one the token names", calls: 0},
		{name: "server of another CA", tok: tok, serverCA: other, msg: "not the one the token names", calls: 0},
		{name: "wrong secret", tok: wrongSecret, code: codes.Unauthenticated, calls: 1},
		{name: "answer with a flipped MAC", tok: tok, calls: 1, msg: "not signed with the token's secret",
			answer: func(req *shoalv1.JoinRequest, csr *x509.CertificateRequest) (*shoalv1.JoinResponse, error) {
				resp, err := pki.SignJoin(ca, req, csr, key, testClusterID, time.Now())
				if err == nil {
					resp.Mac = flip(resp.Mac, 0)
				}
				return resp, err
			}},
		{name: "answer without the secret", tok: unpinned, calls: 1, msg: "not signed with the token's secret",
			answer: func(req *shoalv1.JoinRequest, csr *x509.CertificateRequest) (*shoalv1.JoinResponse, error) {
				return pki.SignJoin(ca, req, csr, wrongSecret.Key(), testClusterID, time.Now())
			}},
		// A server that has the secret but hands out another CA than the
		// one the token pins (it passed the handshake with the right one).
		{name: "answer with another CA", tok: tok, calls: 1, msg: "but the token names",
			answer: func(req *shoalv1.JoinRequest, csr *x509.CertificateRequest) (*shoalv1.JoinResponse, error) {
				return pki.SignJoin(other, req, csr, key, testClusterID, time.Now())
			}},
		{name: "answer for another node", tok: tok, calls: 1, msg: "is not node n2's",
			answer: func(req *shoalv1.JoinRequest, csr *x509.CertificateRequest) (*shoalv1.JoinResponse, error) {
				cert, err := ca.SignNode(csr, "n9", time.Now(), time.Hour)
				if err != nil {
					return nil, err
				}
				return &shoalv1.JoinResponse{Certificate: cert.Raw, CaCertificate: ca.Cert.Raw, ClusterId: testClusterID, Mac: pki.JoinResponseMAC(key, req.GetNonce(), cert.Raw, ca.Cert.Raw, testClusterID)}, nil
			}},
		{name: "answer for another key", tok: tok, calls: 1, msg: "is not node n2's",
			answer: func(req *shoalv1.JoinRequest, _ *x509.CertificateRequest) (*shoalv1.JoinResponse, error) {
				_, _, csr := newCSR(t, "n2")
				return pki.SignJoin(ca, req, csr, key, testClusterID, time.Now())
			}},
		{name: "answer with a client certificate", tok: tok, calls: 1, msg: "not made for this use",
			answer: func(req *shoalv1.JoinRequest, csr *x509.CertificateRequest) (*shoalv1.JoinResponse, error) {
				cert, err := ca.SignClient(csr, "n2", pki.RoleAdmin, time.Now(), time.Hour)
				if err != nil {
					return nil, err
				}
				return &shoalv1.JoinResponse{Certificate: cert.Raw, CaCertificate: ca.Cert.Raw, ClusterId: testClusterID, Mac: pki.JoinResponseMAC(key, req.GetNonce(), cert.Raw, ca.Cert.Raw, testClusterID)}, nil
			}},
		// A relay that swaps the cluster ID: the node would show it on
		// every Raft connection and join another cluster's Raft.
		{name: "answer with another cluster ID", tok: tok, calls: 1, msg: "not signed with the token's secret",
			answer: func(req *shoalv1.JoinRequest, csr *x509.CertificateRequest) (*shoalv1.JoinResponse, error) {
				resp, err := pki.SignJoin(ca, req, csr, key, testClusterID, time.Now())
				if err == nil {
					resp.ClusterId = "fedcba9876543210fedcba9876543210"
				}
				return resp, err
			}},
		{name: "answer without a cluster ID", tok: tok, calls: 1, msg: "no cluster ID",
			answer: func(req *shoalv1.JoinRequest, csr *x509.CertificateRequest) (*shoalv1.JoinResponse, error) {
				return pki.SignJoin(ca, req, csr, key, "", time.Now())
			}},
		// An answer to an earlier request (another nonce) replayed.
		{name: "replayed answer", tok: tok, calls: 1, msg: "not signed with the token's secret",
			answer: func(req *shoalv1.JoinRequest, csr *x509.CertificateRequest) (*shoalv1.JoinResponse, error) {
				old := signedRequest(key, req.GetTokenId(), req.GetNodeId(), req.GetCsr(), make([]byte, 32))
				return pki.SignJoin(ca, old, csr, key, testClusterID, time.Now())
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverCA := tt.serverCA
			if serverCA == nil {
				serverCA = ca
			}
			js := &joinServer{ca: ca, key: key, answer: tt.answer}
			addr := startJoinServer(t, serverCA, js)
			nodeKey, csrDER, _ := newCSR(t, "n2")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			j, err := pki.Join(ctx, addr, tt.tok, "n2", csrDER)
			if got := js.calls.Load(); got != tt.calls {
				t.Errorf("%d requests reached the server, want %d", got, tt.calls)
			}
			switch {
			case tt.code != codes.OK:
				if status.Code(err) != tt.code {
					t.Fatalf("Join: %v, want %v", err, tt.code)
				}
				return
			case tt.msg != "":
				if err == nil || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("Join: %v, want an error mentioning %q", err, tt.msg)
				}
				if strings.Contains(err.Error(), tt.tok.Secret) {
					t.Errorf("the error repeats the token's secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Join: %v", err)
			}
			if !j.CA.Equal(ca.Cert) {
				t.Error("the join brought another CA")
			}
			if j.ClusterID != testClusterID {
				t.Errorf("the join brought cluster ID %q, want %s", j.ClusterID, testClusterID)
			}
			id, err := pki.Verify([][]byte{j.Cert.Raw}, pool(ca.Cert), x509.ExtKeyUsageServerAuth, time.Now())
			if err != nil || id.Role != pki.RoleNode || id.Name != "n2" {
				t.Fatalf("joined certificate: %+v %v", id, err)
			}
			if !nodeKey.Public().(*ecdsa.PublicKey).Equal(j.Cert.PublicKey) {
				t.Error("the joined certificate is not for this node's key")
			}
		})
	}
}

func TestJoinRefusesBadCSRBeforeDialling(t *testing.T) {
	tok, err := pki.NewToken("")
	if err != nil {
		t.Fatal(err)
	}
	// Nothing listens at this address: the request is refused before a
	// connection is tried.
	_, err = pki.Join(context.Background(), "127.0.0.1:1", tok, "n2", []byte("not a csr"))
	if err == nil || !strings.Contains(err.Error(), "certificate request") {
		t.Fatalf("Join with a bad request: %v", err)
	}
}
