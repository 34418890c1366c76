package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
)

// maxSANs bounds the names a certificate request may ask for.
const maxSANs = 64

// NewCSR makes a PKCS #10 request (DER) for key, with name as its common
// name and the given DNS names and IP addresses.
func NewCSR(key crypto.Signer, name string, dnsNames []string, ips []net.IP) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: name}, DNSNames: dnsNames, IPAddresses: ips,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate request: %w", err)
	}
	return der, nil
}

// ParseCSR reads a certificate request from a peer: it must be signed by
// the key it carries, an ECDSA P-256/P-384 or Ed25519 key, and ask for at
// most 64 names. Anything else it asks for (URIs, e-mail addresses,
// extensions) is ignored by the signer, which sets the role itself.
func ParseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) == 0 {
		return nil, errors.New("certificate request: empty")
	}
	if len(der) > 16<<10 {
		return nil, errors.New("certificate request: larger than 16 KiB")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, errors.New("certificate request: ECDSA keys must be P-256 or P-384")
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("certificate request: %T keys are not accepted (use ECDSA P-256 or Ed25519)", k)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request: bad signature: %w", err)
	}
	if n := len(csr.DNSNames) + len(csr.IPAddresses); n > maxSANs {
		return nil, fmt.Errorf("certificate request: %d names, at most %d", n, maxSANs)
	}
	return csr, nil
}
