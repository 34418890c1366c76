package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// A node's TLS directory (lvsd's <data-dir>/tls, mode 0700). Keys are
// 0600; admin.crt and admin.key are the credentials lvsctl finds for root
// on the router itself.
const (
	CACertFile    = "ca.crt"
	CAKeyFile     = "ca.key"
	NodeCertFile  = "node.crt"
	NodeKeyFile   = "node.key"
	AdminCertFile = "admin.crt"
	AdminKeyFile  = "admin.key"
)

// EncodeCerts returns certificates as PEM.
func EncodeCerts(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// EncodeKey returns a private key as PKCS #8 PEM.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteCerts writes certificates to path as PEM (0644), atomically.
func WriteCerts(path string, certs ...*x509.Certificate) error {
	return writeAtomic(path, EncodeCerts(certs...), 0o644)
}

// WriteKey writes a private key to path as PKCS #8 PEM (0600), atomically:
// the file is never readable by others, not even while it is written.
func WriteKey(path string, key crypto.Signer) error {
	b, err := EncodeKey(key)
	if err != nil {
		return err
	}
	return writeAtomic(path, b, 0o600)
}

// ReadCerts reads every certificate of a PEM file.
func ReadCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseCertsPEM(b, path)
}

// ParseCertsPEM reads every certificate of PEM data; name says where it came
// from in errors.
func ParseCertsPEM(b []byte, name string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", name)
	}
	return out, nil
}

// ReadKey reads a PEM private key (PKCS #8, or SEC 1 "EC PRIVATE KEY").
func ReadKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM private key", path)
		}
		var k any
		switch blk.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		default:
			continue
		}
		if err != nil {
			// Not the parser's message: it could quote key material.
			return nil, fmt.Errorf("%s: unreadable %s", path, blk.Type)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: %T is not a signing key", path, k)
		}
		return s, nil
	}
}

// writeAtomic writes data to a temporary file in path's directory with
// mode, syncs it and renames it over path, so a crash leaves the old file
// or the new one, never half of either.
func writeAtomic(path string, data []byte, mode os.FileMode) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Exists reports whether path exists; other errors count as existing, so
// that a caller goes on to read the file and reports the real error.
func Exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}
