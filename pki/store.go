package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// ALPNRaft is the protocol a Raft connection negotiates; a connection to
// the Raft port that negotiates "h2" instead is a join.
const ALPNRaft = "shoal-raft"

// Store is the TLS material a process uses now: its certificate and the CAs
// it trusts. Every configuration built from it reads it at each handshake,
// so a renewed certificate or a reloaded file takes effect without a
// restart.
type Store struct {
	m atomic.Pointer[material]
	// now is the clock verification reads (tests set it).
	now func() time.Time
}

type material struct {
	cert  *tls.Certificate
	leaf  *x509.Certificate
	cas   []*x509.Certificate
	roots *x509.CertPool
}

// NewStore returns an empty store: handshakes fail until Set.
func NewStore() *Store { return &Store{now: time.Now} }

// Set replaces the certificate (leaf with key) and the trusted CAs. The
// certificate is served with the CAs after it, so that a joining node can
// check the CA's fingerprint.
func (s *Store) Set(leaf *x509.Certificate, key crypto.Signer, cas []*x509.Certificate) error {
	if leaf == nil || key == nil || len(cas) == 0 {
		return errors.New("pki: Set needs a certificate, its key and a CA")
	}
	if !samePublicKey(key.Public(), leaf.PublicKey) {
		return fmt.Errorf("the key does not match certificate %q", leaf.Subject.CommonName)
	}
	roots := x509.NewCertPool()
	chain := [][]byte{leaf.Raw}
	for _, c := range cas {
		roots.AddCert(c)
		chain = append(chain, c.Raw)
	}
	s.m.Store(&material{cert: &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, leaf: leaf, cas: cas, roots: roots})
	return nil
}

// Ready reports whether the store holds a certificate.
func (s *Store) Ready() bool { return s.m.Load() != nil }

// Leaf is the current certificate, or nil.
func (s *Store) Leaf() *x509.Certificate {
	if m := s.m.Load(); m != nil {
		return m.leaf
	}
	return nil
}

// CAs are the trusted CA certificates, or nil.
func (s *Store) CAs() []*x509.Certificate {
	if m := s.m.Load(); m != nil {
		return m.cas
	}
	return nil
}

// Roots is the pool of trusted CAs, or nil.
func (s *Store) Roots() *x509.CertPool {
	if m := s.m.Load(); m != nil {
		return m.roots
	}
	return nil
}

func (s *Store) certificate() (*tls.Certificate, error) {
	m := s.m.Load()
	if m == nil {
		return nil, errors.New("this node has no certificate yet")
	}
	return m.cert, nil
}

// VerifyPeer verifies a peer's chain against the trusted CAs now.
func (s *Store) VerifyPeer(raw [][]byte, usage x509.ExtKeyUsage) (Identity, error) {
	return Verify(raw, s.Roots(), usage, s.now())
}

func (s *Store) verifyNode(usage x509.ExtKeyUsage) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		raw := make([][]byte, len(cs.PeerCertificates))
		for i, c := range cs.PeerCertificates {
			raw[i] = c.Raw
		}
		id, err := s.VerifyPeer(raw, usage)
		if err != nil {
			return err
		}
		if id.Role != RoleNode {
			return &AuthError{Reason: ReasonBadUsage, msg: fmt.Sprintf("certificate %q is a %s's, not a node's", id.Name, id.Role)}
		}
		return nil
	}
}

func (s *Store) base() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.certificate() },
	}
}

// APIServerConfig is for the gRPC API. It asks for a client certificate but
// leaves verifying it to the API, which can then answer with a status that
// says what is wrong (expired, another CA, no role) where a TLS alert would
// say only "bad certificate".
func (s *Store) APIServerConfig() *tls.Config {
	c := s.base()
	c.ClientAuth = tls.RequestClientCert
	c.NextProtos = []string{"h2"}
	return c
}

// WebServerConfig is for the web console: the node's own certificate, and
// a client certificate asked for but, as on the API, verified by the API
// on each call the console makes for the user; a browser without one logs
// in with a console token instead.
func (s *Store) WebServerConfig() *tls.Config {
	c := s.base()
	c.ClientAuth = tls.RequestClientCert
	c.NextProtos = []string{"h2", "http/1.1"}
	return c
}

// RaftServerConfig is for the Raft port's Raft connections: the peer must
// present a node certificate of the cluster CA, or the handshake fails
// before Raft reads a byte.
func (s *Store) RaftServerConfig() *tls.Config {
	c := s.base()
	c.ClientAuth = tls.RequireAnyClientCert
	c.VerifyConnection = s.verifyNode(x509.ExtKeyUsageClientAuth)
	c.NextProtos = []string{ALPNRaft}
	return c
}

// JoinServerConfig is for joins on the Raft port: no client certificate
// (the joining node has none yet); only the join service is served.
func (s *Store) JoinServerConfig() *tls.Config {
	c := s.base()
	c.NextProtos = []string{"h2"}
	return c
}

// NodeClientConfig is for a node's own connections to other nodes (Raft,
// the liveness watch, forwarded API calls): it presents the node
// certificate and accepts only a server with a node certificate of the
// cluster CA.
func (s *Store) NodeClientConfig(alpn ...string) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return s.certificate() },
		// Host names are not what identifies a node (VerifyConnection
		// checks the CA and the node URI): routers behind NAT, on
		// 0.0.0.0 or renamed keep working.
		InsecureSkipVerify: true,
		VerifyConnection:   s.verifyNode(x509.ExtKeyUsageServerAuth),
		NextProtos:         alpn,
	}
}

// ClientConfig is for a client such as lvsctl: it presents cert (if any)
// and accepts only a server with a node certificate of a CA in roots.
func ClientConfig(cert *tls.Certificate, roots *x509.CertPool) *tls.Config {
	s := NewStore()
	s.m.Store(&material{cert: cert, roots: roots})
	c := s.NodeClientConfig("h2")
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if cert == nil {
			return &tls.Certificate{}, nil
		}
		return cert, nil
	}
	return c
}
