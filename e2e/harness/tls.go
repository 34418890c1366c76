package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/pki"
)

// ClientCreds are the files a client of a TLS cluster authenticates with,
// as lvsctl takes them (--cacert, --cert, --key).
type ClientCreds struct {
	CA, Cert, Key string
}

// AdminCreds are root's admin credentials that lvsd keeps in its data
// directory (<dataDir>/tls): the first router of a bootstrap writes them
// when it makes the cluster CA, every other one once it has the CA.
func AdminCreds(dataDir string) ClientCreds {
	dir := filepath.Join(dataDir, "tls")
	return ClientCreds{
		CA:   filepath.Join(dir, pki.CACertFile),
		Cert: filepath.Join(dir, pki.AdminCertFile),
		Key:  filepath.Join(dir, pki.AdminKeyFile),
	}
}

// Ready reports whether the three files are there. lvsd writes the CA
// first and the admin key before its certificate, so the certificate's
// presence means the set is complete.
func (c ClientCreds) Ready() bool {
	for _, p := range []string{c.CA, c.Key, c.Cert} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// Args are lvsctl's flags for the credentials.
func (c ClientCreds) Args() []string {
	return []string{"--cacert", c.CA, "--cert", c.Cert, "--key", c.Key}
}

// TLSConfig is the client configuration lvsctl builds from the same
// files: it presents the certificate and accepts only a node certificate
// of the CA.
func (c ClientCreds) TLSConfig() (*tls.Config, error) {
	cas, err := pki.ReadCerts(c.CA)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("client certificate %s: %w", c.Cert, err)
	}
	return pki.ClientConfig(&pair, roots), nil
}

// WriteToken writes a join token to path with mode 0600, as lvsd wants a
// token file.
func WriteToken(path, token string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(token+"\n"), 0o600)
}

// BootstrapToken draws a bootstrap token (what `lvsctl cluster token
// --bootstrap` prints), writes it to a 0600 file in the test's temp dir and
// returns the file's path, for lvsd --token-file on every router of a first
// bootstrap.
func BootstrapToken(t testing.TB) string {
	t.Helper()
	tok, err := pki.NewBootstrapToken()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bootstrap-token")
	if err := WriteToken(path, tok.String()); err != nil {
		t.Fatal(err)
	}
	return path
}

// StartTLSCluster is StartCluster over mutual TLS: every node gets the same
// new bootstrap token (--token-file, returned), and the first node makes
// the cluster CA. They all start at once, as routers do: the others ask
// their peers' Raft ports for a certificate until one can sign it.
func StartTLSCluster(t testing.TB, lvsd string, o ClusterOptions) ([]*Node, string) {
	t.Helper()
	if o.N == 0 {
		o.N = 3
	}
	token := BootstrapToken(t)
	nodes := make([]*Node, o.N)
	var boot []string
	for i := range nodes {
		n := &Node{ID: fmt.Sprintf("n%d", i+1), APIAddr: FreeAddr(t), RaftAddr: FreeAddr(t)}
		n.DataDir = filepath.Join(t.TempDir(), n.ID)
		nodes[i] = n
		boot = append(boot, n.ID+"="+n.RaftAddr)
	}
	for _, n := range nodes {
		args := append([]string{
			"--id", n.ID, "--api-addr", n.APIAddr, "--raft-addr", n.RaftAddr,
			"--data-dir", n.DataDir, "--bootstrap", strings.Join(boot, ","), "--token-file", token,
		}, o.Args...)
		n.Proc = Start(t, n.ID, lvsd, args...)
	}
	return nodes, token
}

// Dialer opens a connection: net.Dialer's DialContext, or a lab node's.
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// ProbeRaftPort does to the Raft port at addr what a stranger on the
// network could: it writes bytes that Raft's plaintext transport would
// read as an AppendEntries request, then speaks TLS with Raft's protocol
// name presenting no certificate, then client's (a client certificate of
// the cluster CA, not a node's). Every connection must be closed by the
// server within 5 seconds; it returns what happened to each.
func ProbeRaftPort(dial Dialer, addr string, client ClientCreds) ([]string, error) {
	var seen []string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// rpc type 0 (AppendEntries), then a msgpack map.
	if _, err := c.Write(append([]byte{0}, "\x85\xa4Term\xcd\x03\xe8\xa6Leader\xa5evil!\xa7Entries\x90\xacLeaderCommit\xcd\x03\xe8\xa8PrevTerm\x00"...)); err != nil {
		return nil, fmt.Errorf("write to the Raft port: %w", err)
	}
	what, err := untilClosed(c, "plaintext bytes")
	if err != nil {
		return nil, err
	}
	seen = append(seen, what)
	pair, err := tls.LoadX509KeyPair(client.Cert, client.Key)
	if err != nil {
		return nil, err
	}
	for _, cert := range []*tls.Certificate{nil, &pair} {
		label := "TLS without a client certificate"
		if cert != nil {
			label = "TLS with a client's (not a node's) certificate"
		}
		raw, err := dial(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(raw, &tls.Config{
			InsecureSkipVerify: true, NextProtos: []string{pki.ALPNRaft},
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if cert == nil {
					return &tls.Certificate{}, nil
				}
				return cert, nil
			},
		})
		if err := tc.HandshakeContext(ctx); err != nil {
			seen = append(seen, fmt.Sprintf("%s: refused in the handshake (%v)", label, err))
			raw.Close()
			continue
		}
		// In TLS 1.3 the server checks the client's certificate after
		// the client has finished: the refusal comes with the first read.
		_, _ = tc.Write([]byte{0, 0x80})
		what, err := untilClosed(tc, label)
		tc.Close()
		if err != nil {
			return nil, err
		}
		seen = append(seen, what)
	}
	return seen, nil
}

// untilClosed reads from c until the peer closes it, for at most 5s.
func untilClosed(c net.Conn, label string) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "", fmt.Errorf("%s: the connection is still open after 5s", label)
	}
	if err == nil {
		err = io.EOF
	}
	return fmt.Sprintf("%s: closed by the server after %d bytes back (%v)", label, n, err), nil
}

// RaftPosition is where a cluster's log stands, as cluster status says.
type RaftPosition struct {
	Leader       string
	Term, Commit uint64
}

// AssertNoCommit checks that act commits nothing: it waits until pos has
// stayed the same for a second, runs act with the leader's ID, and fails t
// if the commit index moves within the next second in the same term. An
// election in that second also moves it (the new leader's first entry) and
// proves nothing either way; then it tries again, three times at most.
func AssertNoCommit(t testing.TB, pos func() RaftPosition, act func(leader string)) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		before, since := pos(), time.Now()
		Eventually(t, 30*time.Second, func() bool {
			if p := pos(); p != before {
				before, since = p, time.Now()
			}
			return time.Since(since) >= time.Second
		}, "a Raft log quiet for a second")
		act(before.Leader)
		after := before
		for end := time.Now().Add(time.Second); time.Now().Before(end) && after == before; {
			after = pos()
		}
		switch {
		case after == before:
			t.Logf("commit index stayed at %d (term %d, leader %s)", before.Commit, before.Term, before.Leader)
			return
		case after.Term == before.Term:
			t.Fatalf("commit index moved from %d to %d in term %d", before.Commit, after.Commit, after.Term)
		case attempt == 3:
			t.Fatalf("an election in each of three tries (last: term %d -> %d): cannot tell whether the commit index would have stayed", before.Term, after.Term)
		default:
			t.Logf("an election (term %d -> %d, leader %s -> %s) moved the commit index; once more", before.Term, after.Term, before.Leader, after.Leader)
		}
	}
}
