package pki

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Joined is what a join hands back: the node certificate, the CA that
// signed it and the ID of the cluster, all proven by the token's secret.
type Joined struct {
	Cert, CA  *x509.Certificate
	ClusterID string
}

// Join asks the node at addr (its API address, or its Raft address at a
// first bootstrap) to sign csr as the node certificate of nodeID.
//
// When the token names the CA's fingerprint, a server whose certificate
// does not chain to a CA with that key is refused during the handshake,
// before the request is sent. Either way the answer must carry a MAC under
// the token's key over this request's nonce, which only the cluster can
// make, so an impostor (or a relay) cannot hand this node a CA of its own.
func Join(ctx context.Context, addr string, tok Token, nodeID string, csrDER []byte) (*Joined, error) {
	csr, err := ParseCSR(csrDER)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The cluster CA is what this exchange establishes; it is checked
		// below, by fingerprint and by the answer's MAC.
		InsecureSkipVerify: true,
		NextProtos:         []string{"h2"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if tok.CAFingerprint == "" {
				return nil
			}
			return checkPinned(cs.PeerCertificates, tok.CAFingerprint)
		},
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("draw nonce: %w", err)
	}
	key := tok.Key()
	req := &shoalv1.JoinRequest{TokenId: tok.ID, NodeId: nodeID, Csr: csrDER, Nonce: nonce,
		Mac: JoinRequestMAC(key, tok.ID, nodeID, csrDER, nonce)}
	resp, err := shoalv1.NewJoinServiceClient(conn).Join(ctx, req)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(resp.GetMac(), JoinResponseMAC(key, nonce, resp.GetCertificate(), resp.GetCaCertificate(), resp.GetClusterId())) {
		return nil, fmt.Errorf("the answer from %s is not signed with the token's secret: not this cluster, or a relay in between", addr)
	}
	ca, err := x509.ParseCertificate(resp.GetCaCertificate())
	if err != nil || !ca.IsCA {
		return nil, fmt.Errorf("join answer from %s: not a CA certificate", addr)
	}
	if tok.CAFingerprint != "" && Fingerprint(ca) != tok.CAFingerprint {
		return nil, fmt.Errorf("join answer from %s: CA fingerprint %s, but the token names %s", addr, Fingerprint(ca), tok.CAFingerprint)
	}
	cert, err := x509.ParseCertificate(resp.GetCertificate())
	if err != nil {
		return nil, fmt.Errorf("join answer from %s: %w", addr, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	id, err := Verify([][]byte{cert.Raw}, roots, x509.ExtKeyUsageServerAuth, time.Now())
	if err != nil {
		return nil, fmt.Errorf("join answer from %s: %w", addr, err)
	}
	if id.Role != RoleNode || id.Name != nodeID || !samePublicKey(csr.PublicKey, cert.PublicKey) {
		return nil, fmt.Errorf("join answer from %s: the certificate is not node %s's", addr, nodeID)
	}
	if resp.GetClusterId() == "" {
		return nil, fmt.Errorf("join answer from %s: no cluster ID (the node does not know its cluster yet)", addr)
	}
	return &Joined{Cert: cert, CA: ca, ClusterID: resp.GetClusterId()}, nil
}

// checkPinned accepts a server chain whose leaf is signed by a CA in the
// chain with the given fingerprint.
func checkPinned(chain []*x509.Certificate, fingerprint string) error {
	if len(chain) == 0 {
		return errors.New("the server presented no certificate")
	}
	for _, c := range chain[1:] {
		if c.IsCA && Fingerprint(c) == fingerprint {
			roots := x509.NewCertPool()
			roots.AddCert(c)
			if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("the server's certificate does not verify against the CA the token names: %w", err)
			}
			return nil
		}
	}
	return fmt.Errorf("the server's CA is not the one the token names (%s…)", fingerprint[:16])
}

// CheckJoinRequest verifies a join request's MAC under the token's key, then
// its certificate request and node ID. The MAC comes first: a caller
// without the secret gets no further than one HMAC.
func CheckJoinRequest(req *shoalv1.JoinRequest, key []byte) (*x509.CertificateRequest, error) {
	if len(req.GetNonce()) != 32 {
		return nil, errors.New("nonce: want 32 bytes")
	}
	want := JoinRequestMAC(key, req.GetTokenId(), req.GetNodeId(), req.GetCsr(), req.GetNonce())
	if !hmac.Equal(req.GetMac(), want) {
		return nil, ErrBadJoinMAC
	}
	if err := checkName("node_id", req.GetNodeId()); err != nil {
		return nil, err
	}
	return ParseCSR(req.GetCsr())
}

// ErrBadJoinMAC is a join request not made with the token's secret.
var ErrBadJoinMAC = errors.New("the join request is not signed with the token's secret")

// SignJoin signs a checked join request's certificate request as the node
// certificate of its node ID and returns the answer, with the cluster's ID
// and its MAC.
func SignJoin(ca *CA, req *shoalv1.JoinRequest, csr *x509.CertificateRequest, key []byte, clusterID string, now time.Time) (*shoalv1.JoinResponse, error) {
	cert, err := ca.SignNode(csr, req.GetNodeId(), now, NodeLifetime)
	if err != nil {
		return nil, err
	}
	return &shoalv1.JoinResponse{
		Certificate:   cert.Raw,
		CaCertificate: ca.Cert.Raw,
		ClusterId:     clusterID,
		Mac:           JoinResponseMAC(key, req.GetNonce(), cert.Raw, ca.Cert.Raw, clusterID),
	}, nil
}
