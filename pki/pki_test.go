package pki_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// issued is a certificate with its key.
type issued struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// tls is the certificate as a TLS server or client presents it: the leaf,
// then cas.
func (i issued) tls(cas ...*x509.Certificate) *tls.Certificate {
	chain := [][]byte{i.cert.Raw}
	for _, c := range cas {
		chain = append(chain, c.Raw)
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: i.key, Leaf: i.cert}
}

func newCA(t testing.TB) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// newCSR draws a key and a certificate request for it.
func newCSR(t testing.TB, name string) (crypto.Signer, []byte, *x509.CertificateRequest) {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := pki.NewCSR(key, name, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, der, csr
}

func nodeCert(t testing.TB, ca *pki.CA, id string, now time.Time, life time.Duration) issued {
	t.Helper()
	key, _, csr := newCSR(t, id)
	cert, err := ca.SignNode(csr, id, now, life)
	if err != nil {
		t.Fatal(err)
	}
	return issued{cert, key}
}

func clientCert(t testing.TB, ca *pki.CA, name string, role pki.Role, now time.Time, life time.Duration) issued {
	t.Helper()
	key, _, csr := newCSR(t, name)
	cert, err := ca.SignClient(csr, name, role, now, life)
	if err != nil {
		t.Fatal(err)
	}
	return issued{cert, key}
}

// rawCert signs tmpl with ca directly, bypassing SignNode and SignClient, for
// certificates shoal would never make (no role, two roles).
func rawCert(t testing.TB, ca *pki.CA, tmpl *x509.Certificate) issued {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if tmpl.ExtKeyUsage == nil {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return issued{cert, key}
}

func pool(cas ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cas {
		p.AddCert(c)
	}
	return p
}

func chain(certs ...*x509.Certificate) [][]byte {
	out := make([][]byte, len(certs))
	for i, c := range certs {
		out[i] = c.Raw
	}
	return out
}

func reasonOf(err error) string {
	var ae *pki.AuthError
	if errors.As(err, &ae) {
		return ae.Reason
	}
	return ""
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestVerify(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	now := time.Now()
	node := nodeCert(t, ca, "n1", now, time.Hour)
	foreign := nodeCert(t, other, "n1", now, time.Hour)
	expired := nodeCert(t, ca, "n1", now.Add(-3*time.Hour), time.Hour)
	// Issued by a clock an hour ahead: valid only from then (less the
	// backdating SignNode applies).
	early := nodeCert(t, ca, "n1", now.Add(time.Hour), time.Hour)
	noURI := rawCert(t, ca, &x509.Certificate{Subject: pkix.Name{CommonName: "plain"}})
	foreignURI := rawCert(t, ca, &x509.Certificate{Subject: pkix.Name{CommonName: "web"}, URIs: []*url.URL{mustURL("https://example.com/admin")}})
	unknownRole := rawCert(t, ca, &x509.Certificate{Subject: pkix.Name{CommonName: "root"}, URIs: []*url.URL{mustURL("shoal://role/root")}})
	twoRoles := rawCert(t, ca, &x509.Certificate{Subject: pkix.Name{CommonName: "both"}, URIs: []*url.URL{mustURL("shoal://node/n1"), mustURL("shoal://role/admin")}})
	badNodeID := rawCert(t, ca, &x509.Certificate{Subject: pkix.Name{CommonName: "x"}, URIs: []*url.URL{{Scheme: "shoal", Host: "node", Path: "/has space"}}})

	tests := []struct {
		name     string
		chain    [][]byte
		roots    *x509.CertPool
		usage    x509.ExtKeyUsage
		wantName string
		wantRole pki.Role
		reason   string
		msg      string
	}{
		{name: "node as server", chain: chain(node.cert), roots: pool(ca.Cert), usage: x509.ExtKeyUsageServerAuth, wantName: "n1", wantRole: pki.RoleNode},
		{name: "node as client", chain: chain(node.cert), roots: pool(ca.Cert), usage: x509.ExtKeyUsageClientAuth, wantName: "n1", wantRole: pki.RoleNode},
		{name: "node with its CA in the chain", chain: chain(node.cert, ca.Cert), roots: pool(ca.Cert), usage: x509.ExtKeyUsageServerAuth, wantName: "n1", wantRole: pki.RoleNode},
		{name: "viewer", chain: chain(clientCert(t, ca, "alice", pki.RoleViewer, now, time.Hour).cert), roots: pool(ca.Cert), usage: x509.ExtKeyUsageClientAuth, wantName: "alice", wantRole: pki.RoleViewer},
		{name: "operator", chain: chain(clientCert(t, ca, "bob", pki.RoleOperator, now, time.Hour).cert), roots: pool(ca.Cert), usage: x509.ExtKeyUsageClientAuth, wantName: "bob", wantRole: pki.RoleOperator},
		{name: "admin", chain: chain(clientCert(t, ca, "root@n1", pki.RoleAdmin, now, time.Hour).cert), roots: pool(ca.Cert), usage: x509.ExtKeyUsageClientAuth, wantName: "root@n1", wantRole: pki.RoleAdmin},
		{name: "client cert as a server", chain: chain(clientCert(t, ca, "alice", pki.RoleAdmin, now, time.Hour).cert), roots: pool(ca.Cert), usage: x509.ExtKeyUsageServerAuth, reason: pki.ReasonBadUsage, msg: "not made for this use"},
		{name: "another CA", chain: chain(foreign.cert), roots: pool(ca.Cert), usage: x509.ExtKeyUsageClientAuth, reason: pki.ReasonUnknownCA, msg: "not signed by this cluster's CA"},
		// The foreign CA in the chain is no help: it is not a root here.
		{name: "another CA with its CA in the chain", chain: chain(foreign.cert, other.Cert), roots: pool(ca.Cert), usage: x509.ExtKeyUsageClientAuth, reason: pki.ReasonUnknownCA},
		{name: "expired", chain: chain(expired.cert), roots: pool(ca.Cert), usage: x509.ExtKeyUsageClientAuth, reason: pki.ReasonExpired, msg: "expired at"},
		{name: "not yet valid", chain: chain(early.cert), roots: pool(ca.Cert), usage: x509.ExtKeyUsageClientAuth, reason: pki.ReasonExpired, msg: "not valid before"},
		{name: "no shoal URI", chain: chain(noURI.cert), roots: pool(ca.Cert), usage: x509.ExtKeyUsageClientAuth, reason: pki.ReasonNoRole, msg: "carries no shoal role"},
		{name: "foreign URI only", chain: chain(foreignURI.cert), roots: pool(ca.Cert), usage: x509.ExtKeyUsageClientAuth, reason: pki.ReasonNoRole},
		{name: "unknown role", chain: chain(unknownRole.cert), roots: pool(ca.Cert), usage: x509.ExtKeyUsageClientAuth, reason: pki.ReasonNoRole},
		{name: "node and role", chain: chain(twoRoles.cert), roots: pool(ca.Cert), usage: x509.ExtKeyUsageClientAuth, reason: pki.ReasonNoRole, msg: "more than one"},
		{name: "bad node id", chain: chain(badNodeID.cert), roots: pool(ca.Cert), usage: x509.ExtKeyUsageClientAuth, reason: pki.ReasonNoRole},
		{name: "empty chain", chain: nil, roots: pool(ca.Cert), usage: x509.ExtKeyUsageClientAuth, reason: pki.ReasonNoCertificate},
		{name: "no roots yet", chain: chain(node.cert), roots: nil, usage: x509.ExtKeyUsageClientAuth, reason: pki.ReasonUnknownCA},
		{name: "garbage", chain: [][]byte{{0x30, 0x03, 0x01, 0x02, 0x03}}, roots: pool(ca.Cert), usage: x509.ExtKeyUsageClientAuth, reason: pki.ReasonInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := pki.Verify(tt.chain, tt.roots, tt.usage, now)
			if tt.reason != "" {
				if got := reasonOf(err); got != tt.reason {
					t.Fatalf("Verify: %v (reason %q), want reason %q", err, got, tt.reason)
				}
				if !strings.Contains(err.Error(), tt.msg) {
					t.Errorf("Verify: %q, want it to mention %q", err, tt.msg)
				}
				if id != (pki.Identity{}) {
					t.Errorf("a refused certificate gave an identity: %+v", id)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.Name != tt.wantName || id.Role != tt.wantRole || id.Cert == nil || !bytes.Equal(id.Cert.Raw, tt.chain[0]) {
				t.Errorf("identity %q %q, want %q %q", id.Name, id.Role, tt.wantName, tt.wantRole)
			}
		})
	}
}

func TestSignRefuses(t *testing.T) {
	ca := newCA(t)
	_, _, csr := newCSR(t, "x")
	now := time.Now()
	if _, err := ca.SignNode(csr, "has/slash", now, time.Hour); err == nil {
		t.Error("SignNode accepted a node id with a slash")
	}
	if _, err := ca.SignNode(csr, "n1", now, 0); err == nil {
		t.Error("SignNode accepted a zero lifetime")
	}
	if _, err := ca.SignClient(csr, "alice", pki.RoleNode, now, time.Hour); err == nil {
		t.Error("SignClient made a node certificate")
	}
	if _, err := ca.SignClient(csr, "alice", pki.RoleAdmin, now, pki.MaxClientLifetime+time.Hour); err == nil {
		t.Error("SignClient accepted a lifetime beyond MaxClientLifetime")
	}
	// A certificate never outlives its CA.
	c, err := ca.SignNode(csr, "n1", now.Add(pki.CALifetime-time.Hour), pki.NodeLifetime)
	if err != nil || c.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("node certificate to %v outlives the CA (%v): %v", c.NotAfter, ca.Cert.NotAfter, err)
	}
	// Without the CA key (an operator's PKI) nothing is signed.
	trustOnly := &pki.CA{Cert: ca.Cert}
	if _, err := trustOnly.SignNode(csr, "n1", now, time.Hour); !errors.Is(err, pki.ErrNoCAKey) {
		t.Errorf("signing without the CA key: %v, want ErrNoCAKey", err)
	}
}

func TestParseCA(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	key, err := ca.MarshalKey()
	if err != nil {
		t.Fatal(err)
	}
	got, err := pki.ParseCA(ca.Cert.Raw, key)
	if err != nil || !got.Cert.Equal(ca.Cert) {
		t.Fatalf("ParseCA of its own output: %v", err)
	}
	otherKey, _ := other.MarshalKey()
	if _, err := pki.ParseCA(ca.Cert.Raw, otherKey); err == nil {
		t.Error("ParseCA accepted another CA's key")
	}
	leaf := nodeCert(t, ca, "n1", time.Now(), time.Hour)
	leafKey, _ := pki.EncodeKey(leaf.key)
	if _, err := pki.ParseCA(leaf.cert.Raw, leafKey); err == nil {
		t.Error("ParseCA accepted a node certificate")
	}
	if _, err := pki.ParseCA(ca.Cert.Raw, []byte("not a key")); err == nil || strings.Contains(err.Error(), "not a key") {
		t.Errorf("ParseCA of a garbage key: %v", err)
	}
	if pki.Fingerprint(ca.Cert) == pki.Fingerprint(other.Cert) || len(pki.Fingerprint(ca.Cert)) != 64 {
		t.Errorf("fingerprints %s %s", pki.Fingerprint(ca.Cert), pki.Fingerprint(other.Cert))
	}
}

func TestRoleCovers(t *testing.T) {
	tests := []struct {
		have, need pki.Role
		want       bool
	}{
		{pki.RoleViewer, pki.RoleViewer, true},
		{pki.RoleViewer, pki.RoleOperator, false},
		{pki.RoleViewer, pki.RoleAdmin, false},
		{pki.RoleOperator, pki.RoleViewer, true},
		{pki.RoleOperator, pki.RoleOperator, true},
		{pki.RoleOperator, pki.RoleAdmin, false},
		{pki.RoleAdmin, pki.RoleViewer, true},
		{pki.RoleAdmin, pki.RoleOperator, true},
		{pki.RoleAdmin, pki.RoleAdmin, true},
		// A node is not a client: it covers no client role.
		{pki.RoleNode, pki.RoleViewer, false},
		{pki.RoleNode, pki.RoleAdmin, false},
		{"", pki.RoleViewer, false},
		{"root", pki.RoleViewer, false},
		{"Admin", pki.RoleViewer, false}, // roles are compared as ParseRole leaves them
	}
	for _, tt := range tests {
		if got := tt.have.Covers(tt.need); got != tt.want {
			t.Errorf("%q.Covers(%q) = %v, want %v", tt.have, tt.need, got, tt.want)
		}
	}
	for r, want := range map[pki.Role]bool{pki.RoleViewer: true, pki.RoleOperator: true, pki.RoleAdmin: true, pki.RoleNode: false, "": false} {
		if r.Client() != want {
			t.Errorf("%q.Client() = %v", r, !want)
		}
	}
}

func TestParseRole(t *testing.T) {
	tests := []struct {
		in   string
		want pki.Role
	}{
		{"viewer", pki.RoleViewer},
		{"operator", pki.RoleOperator},
		{"admin", pki.RoleAdmin},
		{" Admin\n", pki.RoleAdmin},
		{"VIEWER", pki.RoleViewer},
		{"", ""},
		{"node", ""}, // not a role a client certificate may carry
		{"root", ""},
		{"admins", ""},
		{"view er", ""},
	}
	for _, tt := range tests {
		got, err := pki.ParseRole(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("ParseRole(%q) = %q, want an error", tt.in, got)
		case tt.want == "" && !strings.Contains(err.Error(), "want viewer, operator or admin"):
			t.Errorf("ParseRole(%q): %q does not say what is wanted", tt.in, err)
		case tt.want != "" && (err != nil || got != tt.want):
			t.Errorf("ParseRole(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestTokenRoundTrip(t *testing.T) {
	fp := pki.Fingerprint(newCA(t).Cert)
	for _, fingerprint := range []string{fp, ""} {
		tok, err := pki.NewToken(fingerprint)
		if err != nil {
			t.Fatal(err)
		}
		s := tok.String()
		wantParts := 3
		if fingerprint != "" {
			wantParts = 4
		}
		if parts := strings.Split(s, "."); len(parts) != wantParts || parts[0] != "shoal1" {
			t.Errorf("token %q: want shoal1 and %d parts", s, wantParts)
		}
		for _, in := range []string{s, "  " + s + "\n"} {
			got, err := pki.ParseToken(in)
			if err != nil || got != tok {
				t.Errorf("ParseToken(%q) = %+v, %v; want %+v", in, got, err, tok)
			}
		}
		again, _ := pki.NewToken(fingerprint)
		if again.ID == tok.ID || again.Secret == tok.Secret {
			t.Errorf("two tokens share an id or a secret: %+v %+v", tok, again)
		}
	}
	boot, err := pki.NewBootstrapToken()
	if err != nil {
		t.Fatal(err)
	}
	if boot.ID != pki.BootstrapTokenID || boot.CAFingerprint != "" {
		t.Errorf("bootstrap token %+v", boot)
	}
	if got, err := pki.ParseToken(boot.String()); err != nil || got != boot {
		t.Errorf("bootstrap token round trip: %+v, %v", got, err)
	}
}

func TestParseTokenRefuses(t *testing.T) {
	const secret = "s3cr3tthatmustnotbeshown2345" // 28 lower-case letters and digits
	fp := strings.Repeat("0f", 32)
	tests := []struct {
		name, in string
		// secret is what the error must not repeat.
		secret string
	}{
		{"empty", "", ""},
		{"prefix only", "shoal1", ""},
		{"two parts", "shoal1." + secret, secret},
		{"other version", "shoal2.abc." + secret, secret},
		{"upper-case prefix", "SHOAL1.abc." + secret, secret},
		{"five parts", "shoal1." + fp + ".abc." + secret + ".x", secret},
		{"empty id", "shoal1.." + secret, secret},
		{"upper-case id", "shoal1.ABC." + secret, secret},
		{"id with a dash", "shoal1.a-c." + secret, secret},
		{"id too long", "shoal1." + strings.Repeat("a", 33) + "." + secret, secret},
		{"secret too short", "shoal1.abc." + secret[:25], secret[:25]},
		{"secret too long", "shoal1.abc." + strings.Repeat(secret, 5), strings.Repeat(secret, 5)},
		{"upper-case secret", "shoal1.abc." + strings.ToUpper(secret), strings.ToUpper(secret)},
		{"secret with a dash", "shoal1.abc." + secret[:14] + "-" + secret[14:], secret[:14] + "-" + secret[14:]},
		{"secret with a space", "shoal1.abc." + secret[:14] + " " + secret[14:], secret[14:]},
		{"empty secret", "shoal1.abc.", ""},
		{"fingerprint 63 digits", "shoal1." + fp[:63] + ".abc." + secret, secret},
		{"fingerprint upper-case", "shoal1." + strings.ToUpper(fp) + ".abc." + secret, secret},
		{"fingerprint not hex", "shoal1." + strings.Repeat("g", 64) + ".abc." + secret, secret},
		// A trailing dot makes four parts: the id is then read as a
		// fingerprint.
		{"trailing dot", "shoal1.abc." + secret + ".", secret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := pki.ParseToken(tt.in)
			if err == nil {
				t.Fatalf("ParseToken(%q) = %+v, want an error", tt.in, tok)
			}
			if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("the error repeats the secret: %q", err)
			}
			if tok != (pki.Token{}) {
				t.Errorf("a refused token came back filled in: %+v", tok)
			}
		})
	}
}

func TestTokenKey(t *testing.T) {
	const secret = "abcdefghijklmnopqrstuvwxyz234567"
	tok := pki.Token{ID: "abc", Secret: secret}
	k := tok.Key()
	if len(k) != 32 || !bytes.Equal(k, tok.Key()) {
		t.Fatalf("Key is not 32 stable bytes: %x %x", k, tok.Key())
	}
	// The server stores the key of the token it printed (with the
	// fingerprint); a node may be given it with or without.
	pinned := tok
	pinned.CAFingerprint = strings.Repeat("ab", 32)
	if !bytes.Equal(pinned.Key(), k) {
		t.Error("the fingerprint changes the key")
	}
	for _, other := range []pki.Token{
		{ID: "abd", Secret: secret},
		{ID: "abc", Secret: secret[:len(secret)-1] + "8"},
		// The id and the secret are not just concatenated.
		{ID: "ab", Secret: "c" + secret},
	} {
		if bytes.Equal(other.Key(), k) {
			t.Errorf("token %+v has the same key as %+v", other, tok)
		}
	}
	if bytes.Contains(k, []byte(secret)) {
		t.Error("the key holds the secret")
	}
}

func TestMACFieldBoundaries(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, 32)
	type req struct{ token, node, csr, nonce string }
	requests := []req{
		{"ab", "cd", "ef", "gh"},
		{"a", "bcd", "ef", "gh"}, // a byte moved from token id to node id
		{"abc", "d", "ef", "gh"},
		{"ab", "c", "def", "gh"}, // from node id to csr
		{"ab", "cde", "f", "gh"},
		{"ab", "cd", "e", "fgh"}, // from csr to nonce
		{"ab", "cd", "efg", "h"},
		{"abcd", "", "ef", "gh"},
		{"", "abcd", "ef", "gh"},
		{"ab", "cd", "", "efgh"},
	}
	seen := map[string]req{}
	for _, r := range requests {
		m := pki.JoinRequestMAC(key, r.token, r.node, []byte(r.csr), []byte(r.nonce))
		if len(m) != sha256.Size {
			t.Fatalf("MAC of %d bytes", len(m))
		}
		if prev, ok := seen[string(m)]; ok {
			t.Errorf("request MACs of %+v and %+v are equal", prev, r)
		}
		seen[string(m)] = r
	}
	if bytes.Equal(pki.JoinRequestMAC(key, "ab", "cd", []byte("ef"), []byte("gh")), pki.JoinRequestMAC(bytes.Repeat([]byte{0x43}, 32), "ab", "cd", []byte("ef"), []byte("gh"))) {
		t.Error("the request MAC does not depend on the key")
	}

	type resp struct{ nonce, cert, ca, cluster string }
	responses := []resp{
		{"ab", "cd", "ef", ""},
		{"a", "bcd", "ef", ""},
		{"abc", "d", "ef", ""},
		{"ab", "c", "def", ""},
		{"ab", "cde", "f", ""},
		{"", "abcd", "ef", ""},
		{"ab", "", "cdef", ""},
		{"ab", "cd", "e", "f"},
		{"ab", "cd", "ef", "g"},
		{"ab", "cd", "ef", "h"},
	}
	seenResp := map[string]resp{}
	for _, r := range responses {
		m := pki.JoinResponseMAC(key, []byte(r.nonce), []byte(r.cert), []byte(r.ca), r.cluster)
		if prev, ok := seenResp[string(m)]; ok {
			t.Errorf("response MACs of %+v and %+v are equal", prev, r)
		}
		seenResp[string(m)] = r
		if _, ok := seen[string(m)]; ok {
			t.Errorf("response MAC of %+v equals a request MAC", r)
		}
	}
	// The labels keep a request's MAC from serving as an answer's, even
	// when the fields line up.
	if bytes.Equal(pki.JoinRequestMAC(key, "", "n", []byte("c"), []byte("d")), pki.JoinResponseMAC(key, []byte("n"), []byte("c"), []byte("d"), "")) {
		t.Error("a request MAC equals a response MAC over the same fields")
	}
}

// csrKinds are certificate requests of every kind the tests need, made once:
// RSA keys are slow to draw.
var csrKinds = sync.OnceValue(func() map[string][]byte {
	must := func(b []byte, err error) []byte {
		if err != nil {
			panic(err)
		}
		return b
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	var dns64 []string
	for i := range 64 {
		dns64 = append(dns64, fmt.Sprintf("h%d.example", i))
	}
	var ips33 []net.IP
	for i := range 33 {
		ips33 = append(ips33, net.IPv4(10, 0, 0, byte(i)))
	}
	return map[string][]byte{
		"p256":     must(pki.NewCSR(p256, "n2", []string{"lb2.example"}, []net.IP{net.ParseIP("10.0.0.2")})),
		"p384":     must(pki.NewCSR(p384, "n2", nil, nil)),
		"ed25519":  must(pki.NewCSR(ed25519Key(), "n2", nil, nil)),
		"64 names": must(pki.NewCSR(p256, "n2", dns64, nil)),
		"65 names": must(pki.NewCSR(p256, "n2", dns64[:32], ips33)),
		"rsa":      must(pki.NewCSR(rsaKey, "n2", nil, nil)),
		"p224":     p224CSR(),
		"tampered": func() []byte {
			der := must(pki.NewCSR(p256, "tamperme", nil, nil))
			return bytes.Replace(der, []byte("tamperme"), []byte("tampered"), 1)
		}(),
	}
})

// ed25519Key is fixed, so that requests made with it are the same bytes
// every run (Ed25519 signatures are deterministic): fuzz seeds depend on it.
func ed25519Key() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
}

// p224CSR builds a correctly signed request for a P-224 key by hand:
// crypto/x509 refuses to sign one, but parses one happily.
func p224CSR() []byte {
	key, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		panic(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		panic(err)
	}
	subject, err := asn1.Marshal(pkix.Name{CommonName: "n2"}.ToRDNSequence())
	if err != nil {
		panic(err)
	}
	tbs, err := asn1.Marshal(struct {
		Version    int
		Subject    asn1.RawValue
		PublicKey  asn1.RawValue
		Attributes []asn1.RawValue `asn1:"tag:0"`
	}{0, asn1.RawValue{FullBytes: subject}, asn1.RawValue{FullBytes: pub}, []asn1.RawValue{}})
	if err != nil {
		panic(err)
	}
	digest := sha256.Sum256(tbs)
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		panic(err)
	}
	der, err := asn1.Marshal(struct {
		TBS       asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}{asn1.RawValue{FullBytes: tbs}, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}}, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	if err != nil {
		panic(err)
	}
	if _, err := x509.ParseCertificateRequest(der); err != nil {
		panic("the hand-made P-224 request does not parse: " + err.Error())
	}
	return der
}

// fixedP256CSR is a P-256 request for n2 (lb2.example, 10.0.0.2), made once
// and kept, so that fuzz seeds are the same every run.
var fixedP256CSR, _ = base64.StdEncoding.DecodeString("MIH3MIGeAgEAMA0xCzAJBgNVBAMTAm4yMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE42gkf7n4BdZA+zj1AaXF+Y2sJXjSuxgnf3V8XeVtwLGOSrqa449IJfbdzfEJEwRUVg94uovwTjRmFgalc8U0CqAvMC0GCSqGSIb3DQEJDjEgMB4wHAYDVR0RBBUwE4ILbGIyLmV4YW1wbGWHBAoAAAIwCgYIKoZIzj0EAwIDSAAwRQIgKcqQCnQi/gaaLeiTa4TrduHo1rG1m7a2kLtmBWmTGxsCIQC+pncVLq3fXj9NJrIgEWG2XNauv9L079DMo1zRmO55BA==")

func TestParseCSR(t *testing.T) {
	kinds := csrKinds()
	tests := []struct {
		name string
		der  []byte
		msg  string // "" for accepted
	}{
		{"P-256", kinds["p256"], ""},
		{"P-256 kept", fixedP256CSR, ""},
		{"P-384", kinds["p384"], ""},
		{"Ed25519", kinds["ed25519"], ""},
		{"64 names", kinds["64 names"], ""},
		{"65 names", kinds["65 names"], "65 names, at most 64"},
		{"RSA", kinds["rsa"], "keys are not accepted"},
		{"P-224", kinds["p224"], "P-256 or P-384"},
		{"bad signature", kinds["tampered"], "bad signature"},
		{"empty", nil, "empty"},
		{"too large", make([]byte, 16<<10+1), "larger than 16 KiB"},
		{"garbage", []byte("-----BEGIN CERTIFICATE REQUEST-----"), "certificate request"},
		{"truncated", kinds["p256"][:len(kinds["p256"])-10], "certificate request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr, err := pki.ParseCSR(tt.der)
			if tt.msg == "" {
				if err != nil || csr == nil {
					t.Fatalf("ParseCSR: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("ParseCSR: %v, want an error mentioning %q", err, tt.msg)
			}
		})
	}
	csr, err := pki.ParseCSR(kinds["p256"])
	if err != nil || len(csr.DNSNames) != 1 || csr.DNSNames[0] != "lb2.example" || len(csr.IPAddresses) != 1 {
		t.Errorf("the request's names: %v %v (%v)", csr.DNSNames, csr.IPAddresses, err)
	}
}

// signedRequest is a join request with a correct MAC under key.
func signedRequest(key []byte, tokenID, nodeID string, csr, nonce []byte) *shoalv1.JoinRequest {
	return &shoalv1.JoinRequest{TokenId: tokenID, NodeId: nodeID, Csr: csr, Nonce: nonce,
		Mac: pki.JoinRequestMAC(key, tokenID, nodeID, csr, nonce)}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 1
	return b
}

func TestCheckJoinRequest(t *testing.T) {
	kinds := csrKinds()
	key := pki.Token{ID: "abc", Secret: "abcdefghijklmnopqrstuvwxyz234567"}.Key()
	otherKey := pki.Token{ID: "abc", Secret: "abcdefghijklmnopqrstuvwxyz234568"}.Key()
	nonce := bytes.Repeat([]byte{9}, 32)
	good := func() *shoalv1.JoinRequest { return signedRequest(key, "abc", "n2", kinds["p256"], nonce) }
	with := func(f func(r *shoalv1.JoinRequest)) func() *shoalv1.JoinRequest {
		return func() *shoalv1.JoinRequest { r := good(); f(r); return r }
	}
	tests := []struct {
		name    string
		req     func() *shoalv1.JoinRequest
		wantErr error  // errors.Is
		msg     string // or an error mentioning this; both empty: accepted
	}{
		{name: "good", req: good},
		{name: "Ed25519", req: func() *shoalv1.JoinRequest { return signedRequest(key, "abc", "n2", kinds["ed25519"], nonce) }},
		{name: "P-384", req: func() *shoalv1.JoinRequest { return signedRequest(key, "abc", "n2", kinds["p384"], nonce) }},
		{name: "wrong key", req: func() *shoalv1.JoinRequest { return signedRequest(otherKey, "abc", "n2", kinds["p256"], nonce) }, wantErr: pki.ErrBadJoinMAC},
		{name: "tampered csr", req: with(func(r *shoalv1.JoinRequest) { r.Csr = flip(r.Csr, len(r.Csr)/2) }), wantErr: pki.ErrBadJoinMAC},
		{name: "csr swapped for another valid one", req: with(func(r *shoalv1.JoinRequest) { r.Csr = kinds["ed25519"] }), wantErr: pki.ErrBadJoinMAC},
		{name: "tampered node id", req: with(func(r *shoalv1.JoinRequest) { r.NodeId = "n3" }), wantErr: pki.ErrBadJoinMAC},
		{name: "tampered token id", req: with(func(r *shoalv1.JoinRequest) { r.TokenId = "abd" }), wantErr: pki.ErrBadJoinMAC},
		{name: "tampered nonce", req: with(func(r *shoalv1.JoinRequest) { r.Nonce = flip(r.Nonce, 0) }), wantErr: pki.ErrBadJoinMAC},
		{name: "tampered mac", req: with(func(r *shoalv1.JoinRequest) { r.Mac = flip(r.Mac, 31) }), wantErr: pki.ErrBadJoinMAC},
		{name: "truncated mac", req: with(func(r *shoalv1.JoinRequest) { r.Mac = r.Mac[:16] }), wantErr: pki.ErrBadJoinMAC},
		{name: "no mac", req: with(func(r *shoalv1.JoinRequest) { r.Mac = nil }), wantErr: pki.ErrBadJoinMAC},
		{name: "short nonce", req: func() *shoalv1.JoinRequest { return signedRequest(key, "abc", "n2", kinds["p256"], nonce[:31]) }, msg: "nonce"},
		{name: "no nonce", req: func() *shoalv1.JoinRequest { return signedRequest(key, "abc", "n2", kinds["p256"], nil) }, msg: "nonce"},
		{name: "long nonce", req: func() *shoalv1.JoinRequest {
			return signedRequest(key, "abc", "n2", kinds["p256"], append(bytes.Clone(nonce), 0))
		}, msg: "nonce"},
		{name: "bad node id, valid mac", req: func() *shoalv1.JoinRequest { return signedRequest(key, "abc", "../n2", kinds["p256"], nonce) }, msg: "node_id"},
		{name: "empty node id, valid mac", req: func() *shoalv1.JoinRequest { return signedRequest(key, "abc", "", kinds["p256"], nonce) }, msg: "node_id"},
		{name: "long node id, valid mac", req: func() *shoalv1.JoinRequest {
			return signedRequest(key, "abc", strings.Repeat("n", 65), kinds["p256"], nonce)
		}, msg: "node_id"},
		// The MAC comes first: without the secret, a caller learns nothing
		// of what else is wrong with its request.
		{name: "bad node id, bad mac", req: func() *shoalv1.JoinRequest { return signedRequest(otherKey, "abc", "../n2", kinds["p256"], nonce) }, wantErr: pki.ErrBadJoinMAC},
		{name: "RSA key", req: func() *shoalv1.JoinRequest { return signedRequest(key, "abc", "n2", kinds["rsa"], nonce) }, msg: "keys are not accepted"},
		{name: "P-224 key", req: func() *shoalv1.JoinRequest { return signedRequest(key, "abc", "n2", kinds["p224"], nonce) }, msg: "P-256 or P-384"},
		{name: "65 names", req: func() *shoalv1.JoinRequest { return signedRequest(key, "abc", "n2", kinds["65 names"], nonce) }, msg: "at most 64"},
		{name: "garbage csr", req: func() *shoalv1.JoinRequest { return signedRequest(key, "abc", "n2", []byte("csr"), nonce) }, msg: "certificate request"},
		{name: "badly signed csr", req: func() *shoalv1.JoinRequest { return signedRequest(key, "abc", "n2", kinds["tampered"], nonce) }, msg: "bad signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr, err := pki.CheckJoinRequest(tt.req(), key)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("CheckJoinRequest: %v, want %v", err, tt.wantErr)
				}
			case tt.msg != "":
				if err == nil || errors.Is(err, pki.ErrBadJoinMAC) || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("CheckJoinRequest: %v, want an error mentioning %q", err, tt.msg)
				}
			default:
				if err != nil || csr == nil {
					t.Fatalf("CheckJoinRequest: %v", err)
				}
			}
		})
	}
	csr, err := pki.CheckJoinRequest(good(), key)
	if err != nil || len(csr.DNSNames) != 1 || csr.DNSNames[0] != "lb2.example" {
		t.Fatalf("the checked request: %v %v", csr, err)
	}
}

func TestSignJoin(t *testing.T) {
	ca := newCA(t)
	key := pki.Token{ID: "abc", Secret: "abcdefghijklmnopqrstuvwxyz234567"}.Key()
	nodeKey, der, _ := newCSR(t, "n2")
	req := signedRequest(key, "abc", "n2", der, bytes.Repeat([]byte{1}, 32))
	csr, err := pki.CheckJoinRequest(req, key)
	if err != nil {
		t.Fatal(err)
	}
	const clusterID = "0123456789abcdef0123456789abcdef"
	resp, err := pki.SignJoin(ca, req, csr, key, clusterID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetClusterId() != clusterID {
		t.Errorf("the answer carries cluster ID %q, want %s", resp.GetClusterId(), clusterID)
	}
	if !bytes.Equal(resp.GetMac(), pki.JoinResponseMAC(key, req.GetNonce(), resp.GetCertificate(), resp.GetCaCertificate(), clusterID)) {
		t.Error("the answer's MAC does not cover its nonce, certificates and cluster ID")
	}
	if !bytes.Equal(resp.GetCaCertificate(), ca.Cert.Raw) {
		t.Error("the answer does not carry the CA")
	}
	id, err := pki.Verify([][]byte{resp.GetCertificate()}, pool(ca.Cert), x509.ExtKeyUsageServerAuth, time.Now())
	if err != nil || id.Role != pki.RoleNode || id.Name != "n2" {
		t.Fatalf("signed certificate: %+v %v", id, err)
	}
	if !nodeKey.Public().(*ecdsa.PublicKey).Equal(id.Cert.PublicKey) {
		t.Error("the certificate is not for the request's key")
	}
	if life := id.Cert.NotAfter.Sub(id.Cert.NotBefore); life < pki.NodeLifetime || life > pki.NodeLifetime+time.Hour {
		t.Errorf("node certificate lives %s, want %s", life, pki.NodeLifetime)
	}
}
