package pki

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Token is a join token: shoal1.<CA fingerprint>.<id>.<secret>, or
// shoal1.<id>.<secret> without the fingerprint. A node joining with a token
// that names the fingerprint refuses a cluster whose CA has another key,
// before it sends anything; the secret proves each side to the other.
type Token struct {
	// CAFingerprint is the hex SHA-256 of the CA's public key, or empty.
	CAFingerprint string
	ID            string
	Secret        string
}

const tokenPrefix = "shoal1"

// BootstrapTokenID names the token that the routers of a first bootstrap
// share: it is given to each of them in a file, never stored in the
// cluster, and good only for the IDs in --bootstrap.
const BootstrapTokenID = "bootstrap"

var secretEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewToken draws a token with a random ID and a 160-bit secret.
func NewToken(caFingerprint string) (Token, error) {
	id := make([]byte, 4)
	secret := make([]byte, 20)
	if _, err := rand.Read(id); err != nil {
		return Token{}, fmt.Errorf("draw token: %w", err)
	}
	if _, err := rand.Read(secret); err != nil {
		return Token{}, fmt.Errorf("draw token: %w", err)
	}
	return Token{CAFingerprint: caFingerprint, ID: hex.EncodeToString(id), Secret: secretEncoding.EncodeToString(secret)}, nil
}

// NewBootstrapToken draws the secret that the routers of a first bootstrap
// share.
func NewBootstrapToken() (Token, error) {
	t, err := NewToken("")
	t.ID = BootstrapTokenID
	return t, err
}

func (t Token) String() string {
	if t.CAFingerprint == "" {
		return strings.Join([]string{tokenPrefix, t.ID, t.Secret}, ".")
	}
	return strings.Join([]string{tokenPrefix, t.CAFingerprint, t.ID, t.Secret}, ".")
}

// ParseToken reads a token as String writes it. Its errors never repeat the
// secret.
func ParseToken(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) < 3 || len(parts) > 4 || parts[0] != tokenPrefix {
		return Token{}, errors.New("not a shoal join token (want shoal1.<CA fingerprint>.<id>.<secret>)")
	}
	var t Token
	if len(parts) == 4 {
		t.CAFingerprint = parts[1]
		parts = parts[1:]
		if len(t.CAFingerprint) != 64 || !isLowerAlnum(t.CAFingerprint, "0123456789abcdef") {
			return Token{}, errors.New("join token: the CA fingerprint is not 64 hex digits")
		}
	}
	t.ID, t.Secret = parts[1], parts[2]
	if t.ID == "" || len(t.ID) > 32 || !isLowerAlnum(t.ID, "") {
		return Token{}, errors.New("join token: the id is not 1 to 32 lower-case letters and digits")
	}
	// 26 characters of base32 are 130 bits; a shorter secret could be
	// guessed by someone who watches many joins.
	if len(t.Secret) < 26 || len(t.Secret) > 128 || !isLowerAlnum(t.Secret, "") {
		return Token{}, errors.New("join token: the secret is not 26 to 128 lower-case letters and digits")
	}
	return t, nil
}

func isLowerAlnum(s, only string) bool {
	for _, r := range s {
		if only != "" {
			if !strings.ContainsRune(only, r) {
				return false
			}
			continue
		}
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// Key is what the cluster keeps of a token, derived from its secret: the
// HMAC key of the join exchange. Knowing it is as good as knowing the
// secret, so it is kept only in the replicated state, never shown.
func (t Token) Key() []byte {
	k, err := hkdf.Key(sha256.New, []byte(t.Secret), []byte(t.ID), "shoal join token v1", 32)
	if err != nil {
		panic("pki: hkdf: " + err.Error()) // only for lengths sha256 cannot give
	}
	return k
}

// JoinRequestMAC is the HMAC a joining node sends with its request.
func JoinRequestMAC(key []byte, tokenID, nodeID string, csr, nonce []byte) []byte {
	return mac(key, "shoal join request v1", []byte(tokenID), []byte(nodeID), csr, nonce)
}

// JoinResponseMAC is the HMAC the answering node sends with the
// certificates and the cluster ID, over the request's nonce so that an old
// answer cannot be replayed to a new request.
func JoinResponseMAC(key []byte, nonce, cert, caCert []byte, clusterID string) []byte {
	return mac(key, "shoal join response v2", nonce, cert, caCert, []byte(clusterID))
}

// mac is HMAC-SHA256 over a label and length-prefixed fields, so that no
// two field lists encode alike.
func mac(key []byte, label string, fields ...[]byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(label))
	for _, f := range fields {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write(f)
	}
	return h.Sum(nil)
}
