package pki_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/pki"
)

// handshakeTimeout bounds every handshake below; a refusal is an alert,
// which arrives at once, so a test that runs into it has hung.
const handshakeTimeout = 5 * time.Second

// outcome is what each side of one TLS connection saw.
type outcome struct {
	serverErr, clientErr error
	// server is the server's view of the connection, when it completed.
	server tls.ConnectionState
	// client is the client's view of the handshake, when it completed.
	client tls.ConnectionState
}

func (o outcome) ok() bool { return o.serverErr == nil && o.clientErr == nil }

// handshake runs one TLS connection over loopback TCP. The server writes
// "ok" once its handshake is done. In TLS 1.3 the client finishes first and
// the server checks the client's certificate after, so the client counts as
// connected only once it has read that.
func handshake(t *testing.T, server, client *tls.Config) outcome {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		err error
		st  tls.ConnectionState
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		defer cancel()
		if err := tc.HandshakeContext(ctx); err != nil {
			done <- result{err: err}
			return
		}
		_, err = tc.Write([]byte("ok"))
		done <- result{err: err, st: tc.ConnectionState()}
		_ = tc.Close()
	}()

	var o outcome
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	tc := tls.Client(c, client)
	if o.clientErr = tc.Handshake(); o.clientErr == nil {
		o.client = tc.ConnectionState()
		buf := make([]byte, 2)
		_, o.clientErr = io.ReadFull(tc, buf)
	}
	if ne, ok := o.clientErr.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the client timed out: %v", o.clientErr)
	}
	r := <-done
	o.serverErr, o.server = r.err, r.st
	return o
}

// nodeStore is a node's store: its certificate and the CAs it trusts.
func nodeStore(t *testing.T, id issued, cas ...*x509.Certificate) *pki.Store {
	t.Helper()
	s := pki.NewStore()
	if err := s.Set(id.cert, id.key, cas); err != nil {
		t.Fatal(err)
	}
	return s
}

func withALPN(c *tls.Config, protos ...string) *tls.Config {
	c.NextProtos = protos
	return c
}

func TestStoreRaftConfigs(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	now := time.Now()
	n1 := nodeStore(t, nodeCert(t, ca, "n1", now, time.Hour), ca.Cert)
	n2 := nodeStore(t, nodeCert(t, ca, "n2", now, time.Hour), ca.Cert)
	// A node of another cluster that trusts this cluster's CA too, so that
	// it accepts n1 as a server and only n1's check of it is tested.
	stranger := nodeStore(t, nodeCert(t, other, "n2", now, time.Hour), other.Cert, ca.Cert)
	admin := clientCert(t, ca, "alice", pki.RoleAdmin, now, time.Hour)
	expired := nodeStore(t, nodeCert(t, ca, "n2", now.Add(-3*time.Hour), time.Hour), ca.Cert)
	// A store that serves a client certificate, as a misconfigured
	// operator's PKI would.
	clientServer := nodeStore(t, admin, ca.Cert)

	tests := []struct {
		name           string
		server, client *tls.Config
		// serverReason is the AuthError the server refuses with; "" with
		// refused set: any refusal.
		serverReason string
		refused      bool
	}{
		{name: "node to node", server: n1.RaftServerConfig(), client: n2.NodeClientConfig(pki.ALPNRaft)},
		{name: "admin client on the raft port", server: n1.RaftServerConfig(), client: withALPN(pki.ClientConfig(admin.tls(ca.Cert), pool(ca.Cert)), pki.ALPNRaft), refused: true, serverReason: pki.ReasonBadUsage},
		{name: "node of another CA", server: n1.RaftServerConfig(), client: stranger.NodeClientConfig(pki.ALPNRaft), refused: true, serverReason: pki.ReasonUnknownCA},
		{name: "expired node", server: n1.RaftServerConfig(), client: expired.NodeClientConfig(pki.ALPNRaft), refused: true, serverReason: pki.ReasonExpired},
		{name: "no certificate", server: n1.RaftServerConfig(), client: withALPN(pki.ClientConfig(nil, pool(ca.Cert)), pki.ALPNRaft), refused: true},
		{name: "wrong protocol", server: n1.RaftServerConfig(), client: n2.NodeClientConfig("h2"), refused: true},
		{name: "server of another CA", server: n1.RaftServerConfig(), client: nodeStore(t, nodeCert(t, other, "n2", now, time.Hour), other.Cert).NodeClientConfig(pki.ALPNRaft), refused: true},
		{name: "server with a client certificate", server: clientServer.APIServerConfig(), client: n2.NodeClientConfig("h2"), refused: true},
		{name: "empty store", server: pki.NewStore().RaftServerConfig(), client: n2.NodeClientConfig(pki.ALPNRaft), refused: true},
		{name: "join without a certificate", server: n1.JoinServerConfig(), client: &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, NextProtos: []string{"h2"}}},
		{name: "API with an admin client", server: n1.APIServerConfig(), client: pki.ClientConfig(admin.tls(ca.Cert), pool(ca.Cert))},
		// The API lets a connection without a certificate through; its
		// calls are refused with a status that says why.
		{name: "API without a certificate", server: n1.APIServerConfig(), client: pki.ClientConfig(nil, pool(ca.Cert))},
		{name: "lvsctl trusting another CA", server: n1.APIServerConfig(), client: pki.ClientConfig(admin.tls(ca.Cert), pool(other.Cert)), refused: true},
		{name: "TLS 1.2", server: n1.RaftServerConfig(), client: func() *tls.Config {
			c := n2.NodeClientConfig(pki.ALPNRaft)
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return c
		}(), refused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := handshake(t, tt.server, tt.client)
			if !tt.refused {
				if !o.ok() {
					t.Fatalf("server: %v; client: %v", o.serverErr, o.clientErr)
				}
				return
			}
			if o.ok() {
				t.Fatal("the connection was made")
			}
			if o.server.HandshakeComplete {
				t.Error("the server completed its handshake")
			}
			if tt.serverReason != "" {
				if got := reasonOf(o.serverErr); got != tt.serverReason {
					t.Errorf("server refused with %v (reason %q), want reason %q", o.serverErr, got, tt.serverReason)
				}
				if o.clientErr == nil {
					t.Error("the client did not see the refusal")
				}
			}
		})
	}

	o := handshake(t, n1.RaftServerConfig(), n2.NodeClientConfig(pki.ALPNRaft))
	if !o.ok() || o.server.NegotiatedProtocol != pki.ALPNRaft || len(o.server.PeerCertificates) == 0 {
		t.Fatalf("node to node: %+v", o)
	}
	if id, err := pki.Verify([][]byte{o.server.PeerCertificates[0].Raw}, pool(ca.Cert), x509.ExtKeyUsageClientAuth, now); err != nil || id.Name != "n2" {
		t.Errorf("the server saw %+v %v, want n2", id, err)
	}
	// The server serves its CA after its certificate, which a joining
	// node checks the token's fingerprint against.
	if pc := o.client.PeerCertificates; len(pc) != 2 || !pc[1].Equal(ca.Cert) {
		t.Errorf("the server's chain has %d certificates, want the node's and the CA", len(pc))
	}
}

// TestStoreSetTakesEffect renews a server's certificate in its store: the
// next handshake serves the new one, without a new configuration.
func TestStoreSetTakesEffect(t *testing.T) {
	ca := newCA(t)
	now := time.Now()
	first := nodeCert(t, ca, "n1", now, time.Hour)
	s := nodeStore(t, first, ca.Cert)
	server := s.RaftServerConfig()
	client := nodeStore(t, nodeCert(t, ca, "n2", now, time.Hour), ca.Cert).NodeClientConfig(pki.ALPNRaft)

	if o := handshake(t, server, client); !o.ok() || !o.client.PeerCertificates[0].Equal(first.cert) {
		t.Fatalf("before the renewal: %v %v", o.serverErr, o.clientErr)
	}
	second := nodeCert(t, ca, "n1", now, 2*time.Hour)
	if err := s.Set(second.cert, second.key, []*x509.Certificate{ca.Cert}); err != nil {
		t.Fatal(err)
	}
	if o := handshake(t, server, client); !o.ok() || !o.client.PeerCertificates[0].Equal(second.cert) {
		t.Fatalf("after the renewal: %v %v", o.serverErr, o.clientErr)
	}
}

func TestStoreSetRefuses(t *testing.T) {
	ca := newCA(t)
	a := nodeCert(t, ca, "n1", time.Now(), time.Hour)
	b := nodeCert(t, ca, "n1", time.Now(), time.Hour)
	s := pki.NewStore()
	for name, err := range map[string]error{
		"no certificate": s.Set(nil, a.key, []*x509.Certificate{ca.Cert}),
		"no key":         s.Set(a.cert, nil, []*x509.Certificate{ca.Cert}),
		"no CA":          s.Set(a.cert, a.key, nil),
		"mismatched key": s.Set(a.cert, b.key, []*x509.Certificate{ca.Cert}),
	} {
		if err == nil {
			t.Errorf("%s: Set accepted it", name)
		} else if strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if s.Ready() || s.Leaf() != nil || s.Roots() != nil || s.CAs() != nil {
		t.Error("a refused Set filled the store")
	}
}
