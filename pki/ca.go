package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"
)

// Lifetimes. A node renews its certificate two thirds into its life, so a
// node that is down for a month still comes back with a valid one.
const (
	CALifetime     = 10 * 365 * 24 * time.Hour
	NodeLifetime   = 90 * 24 * time.Hour
	ClientLifetime = 365 * 24 * time.Hour
	// MaxClientLifetime is the CA/Browser Forum's old limit; a client
	// certificate is revoked only by its expiry, so keep it bounded.
	MaxClientLifetime = 825 * 24 * time.Hour
	// backdate covers clocks that run a little behind the issuer's.
	backdate = 5 * time.Minute
)

// CA is a certificate authority: the cluster's own (with a key) or, with an
// operator's PKI, only the certificates to trust.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA makes a cluster CA with a fresh ECDSA P-256 key.
func NewCA(now time.Time) (*CA, error) {
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"shoal"}, CommonName: "shoal cluster CA " + serial.Text(16)[:8]},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// ParseCA reads a CA from its certificate (DER) and PKCS #8 key (DER).
func ParseCA(certDER, keyDER []byte) (*CA, error) {
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("CA certificate is not a CA")
	}
	k, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return nil, errors.New("parse CA key: not a PKCS #8 private key")
	}
	key, ok := k.(crypto.Signer)
	if !ok || !samePublicKey(key.Public(), cert.PublicKey) {
		return nil, errors.New("CA key does not match the CA certificate")
	}
	return &CA{Cert: cert, Key: key}, nil
}

// MarshalKey returns the CA key as PKCS #8 DER.
func (ca *CA) MarshalKey() ([]byte, error) {
	b, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("encode CA key: %w", err)
	}
	return b, nil
}

// Fingerprint is the SHA-256 of a certificate's public key (its
// SubjectPublicKeyInfo) in hex: what a join token pins.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// SignNode signs csr as the node certificate of id, valid for lifetime from
// now. The certificate takes the request's DNS names and IP addresses; its
// authority is the URI shoal://node/<id>.
func (ca *CA) SignNode(csr *x509.CertificateRequest, id string, now time.Time, lifetime time.Duration) (*x509.Certificate, error) {
	if err := checkName("node id", id); err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"shoal"}, CommonName: id},
		DNSNames:    csr.DNSNames,
		IPAddresses: csr.IPAddresses,
		URIs:        []*url.URL{nodeURI(id)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	return ca.sign(tmpl, csr, now, lifetime)
}

// SignClient signs csr as a client certificate named name with role.
func (ca *CA) SignClient(csr *x509.CertificateRequest, name string, role Role, now time.Time, lifetime time.Duration) (*x509.Certificate, error) {
	if err := checkName("name", name); err != nil {
		return nil, err
	}
	if !role.Client() {
		return nil, fmt.Errorf("role %q: want viewer, operator or admin", role)
	}
	if lifetime > MaxClientLifetime {
		return nil, fmt.Errorf("lifetime %s is longer than %s", lifetime, MaxClientLifetime)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"shoal"}, CommonName: name},
		URIs:        []*url.URL{roleURI(role)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.sign(tmpl, csr, now, lifetime)
}

func (ca *CA) sign(tmpl *x509.Certificate, csr *x509.CertificateRequest, now time.Time, lifetime time.Duration) (*x509.Certificate, error) {
	if ca.Key == nil {
		return nil, ErrNoCAKey
	}
	if lifetime <= 0 {
		return nil, fmt.Errorf("lifetime %s is not positive", lifetime)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(lifetime)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// ErrNoCAKey means this node trusts a CA it cannot sign with: an operator's
// PKI given with --tls-ca, whose certificates come from elsewhere.
var ErrNoCAKey = errors.New("this cluster's certificates come from an external CA (--tls-ca); issue them there")

// NewKey returns a fresh ECDSA P-256 key.
func NewKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("draw serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}
