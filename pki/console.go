package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// A console token logs a browser in to the web console: a short-lived
// client certificate of the cluster CA with its private key, as
//
//	shoalweb1.<certificate DER>.<PKCS #8 key DER>   (base64url, unpadded)
//
// It is a certificate so that the cluster records, lists and revokes it
// like any other (lvsctl certs), and so that the API checks each call the
// console makes with it exactly as it checks a TLS client's. The key is
// in it because the certificate alone is public (ListCertificates shows
// it); holding the key is what proves the token.
const consoleTokenPrefix = "shoalweb1"

// ConsoleTokenLifetime is a console token's default lifetime, and
// MaxConsoleTokenLifetime the longest lvsctl issues: a token is a bearer
// secret pasted into a browser, so it should not outlive a working day.
const (
	ConsoleTokenLifetime    = time.Hour
	MaxConsoleTokenLifetime = 24 * time.Hour
)

// EncodeConsoleToken is the token for cert and its key.
func EncodeConsoleToken(cert *x509.Certificate, key crypto.Signer) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("encode key: %w", err)
	}
	enc := base64.RawURLEncoding
	return consoleTokenPrefix + "." + enc.EncodeToString(cert.Raw) + "." + enc.EncodeToString(der), nil
}

// ParseConsoleToken returns the certificate of a console token after
// checking that the token's key is the certificate's. Whether the
// certificate is of this cluster, current and not revoked is for the API
// to say, on every call.
func ParseConsoleToken(s string) (*x509.Certificate, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 3 || parts[0] != consoleTokenPrefix {
		return nil, errors.New("not a console token (shoalweb1.…): an admin issues one with `lvsctl console token --role viewer|operator|admin`")
	}
	enc := base64.RawURLEncoding
	certDER, err1 := enc.DecodeString(parts[1])
	keyDER, err2 := enc.DecodeString(parts[2])
	if err1 != nil || err2 != nil {
		return nil, errors.New("console token: not base64url; was it cut when copied?")
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("console token: certificate: %w", err)
	}
	key, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return nil, fmt.Errorf("console token: key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok || !samePublicKey(signer.Public(), cert.PublicKey) {
		return nil, errors.New("console token: the key is not the certificate's")
	}
	return cert, nil
}
