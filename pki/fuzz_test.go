package pki_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// The seeds below are fixed bytes, or made with the fixed Ed25519 key
// (whose signatures are deterministic), so that every run starts from the
// same corpus.

const (
	fuzzSecret = "abcdefghijklmnopqrstuvwxyz234567"
	fuzzFP     = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
)

func FuzzParseToken(f *testing.F) {
	for _, s := range []string{
		"shoal1." + fuzzFP + ".a1b2c3d4." + fuzzSecret,
		"shoal1.a1b2c3d4." + fuzzSecret,
		"shoal1.bootstrap." + fuzzSecret,
		" shoal1.a1b2c3d4." + fuzzSecret + "\n",
		"shoal1." + fuzzFP + ".a1b2c3d4." + fuzzSecret + ".x",
		"shoal1..",
		"shoal1.A." + fuzzSecret,
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := pki.ParseToken(s)
		if err != nil {
			// The messages are fixed text; none holds a run of 16
			// letters and digits, so finding the secret part in one
			// means the message repeats it.
			parts := strings.Split(strings.TrimSpace(s), ".")
			if last := parts[len(parts)-1]; len(last) >= 16 && isAlnum(last) && strings.Contains(err.Error(), last) {
				t.Fatalf("the error repeats the secret: %q", err)
			}
			return
		}
		again, err := pki.ParseToken(tok.String())
		if err != nil {
			t.Fatalf("ParseToken(%q) accepted %+v, whose String %q it refuses: %v", s, tok, tok.String(), err)
		}
		if again != tok {
			t.Fatalf("round trip of %q: %+v, then %+v", s, tok, again)
		}
		if tok.ID == "" || len(tok.Secret) < 26 {
			t.Fatalf("accepted a token with no id or a short secret: %+v", tok)
		}
	})
}

func isAlnum(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// seedCSRs are requests every run makes the same way.
func seedCSRs(f *testing.F) [][]byte {
	ed, err := pki.NewCSR(ed25519Key(), "n2", []string{"lb2.example"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	return [][]byte{fixedP256CSR, ed, ed[:len(ed)/2], {0x30, 0x80}}
}

func FuzzParseCSR(f *testing.F) {
	for _, der := range seedCSRs(f) {
		f.Add(der)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := pki.ParseCSR(der)
		if err != nil {
			return
		}
		checkAccepted(t, csr.PublicKey, len(csr.DNSNames)+len(csr.IPAddresses))
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a request with a bad signature: %v", err)
		}
	})
}

// checkAccepted holds ParseCSR to its word: the keys it names, at most 64
// names.
func checkAccepted(t *testing.T, pub any, names int) {
	t.Helper()
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			t.Fatalf("accepted an ECDSA key on %s", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		t.Fatalf("accepted a %T key", pub)
	}
	if names > 64 {
		t.Fatalf("accepted a request for %d names", names)
	}
}

var fuzzKey = pki.Token{ID: "a1b2c3d4", Secret: fuzzSecret}.Key()

// FuzzCheckJoinRequest feeds arbitrary encoded join requests, as anyone who
// reaches the join service can send them.
func FuzzCheckJoinRequest(f *testing.F) {
	nonce := bytes.Repeat([]byte{5}, 32)
	for _, csr := range seedCSRs(f) {
		for _, req := range []*shoalv1.JoinRequest{
			signedRequest(fuzzKey, "a1b2c3d4", "n2", csr, nonce),
			{TokenId: "a1b2c3d4", NodeId: "n2", Csr: csr, Nonce: nonce, Mac: make([]byte, 32)},
		} {
			b, err := proto.Marshal(req)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &shoalv1.JoinRequest{}
		if proto.Unmarshal(data, req) != nil {
			return
		}
		csr, err := pki.CheckJoinRequest(req, fuzzKey)
		if err != nil {
			return
		}
		if !hmac.Equal(req.GetMac(), pki.JoinRequestMAC(fuzzKey, req.GetTokenId(), req.GetNodeId(), req.GetCsr(), req.GetNonce())) {
			t.Fatal("accepted a request without a valid MAC")
		}
		if len(req.GetNonce()) != 32 || pki.CheckName(req.GetNodeId()) != nil {
			t.Fatalf("accepted nonce %x, node id %q", req.GetNonce(), req.GetNodeId())
		}
		checkAccepted(t, csr.PublicKey, len(csr.DNSNames)+len(csr.IPAddresses))
	})
}

// FuzzCheckJoinRequestSigned signs each fuzzed request with the right key,
// so that the node id and certificate request checks behind the MAC are
// reached: a holder of a token is trusted with no more than a certificate.
func FuzzCheckJoinRequestSigned(f *testing.F) {
	nonce := bytes.Repeat([]byte{5}, 32)
	for _, csr := range seedCSRs(f) {
		f.Add("a1b2c3d4", "n2", csr, nonce)
	}
	f.Add("a1b2c3d4", "../n2", fixedP256CSR, nonce)
	f.Add("a1b2c3d4", "n2", fixedP256CSR, nonce[:31])
	f.Fuzz(func(t *testing.T, tokenID, nodeID string, csrDER, nonce []byte) {
		req := signedRequest(fuzzKey, tokenID, nodeID, csrDER, nonce)
		csr, err := pki.CheckJoinRequest(req, fuzzKey)
		if errors.Is(err, pki.ErrBadJoinMAC) {
			t.Fatal("refused a correctly signed request for its MAC")
		}
		if err != nil {
			return
		}
		if len(nonce) != 32 || pki.CheckName(nodeID) != nil {
			t.Fatalf("accepted nonce %x, node id %q", nonce, nodeID)
		}
		checkAccepted(t, csr.PublicKey, len(csr.DNSNames)+len(csr.IPAddresses))
		if !bytes.Equal(csr.Raw, csrDER) {
			t.Fatal("the parsed request is not the one sent")
		}
	})
}
