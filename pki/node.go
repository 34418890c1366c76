package pki

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// NodeDir is a node's TLS directory and the Store its TLS configurations
// read: what is there at start, the CA made at a first bootstrap, the
// certificate a join brings, renewals, and root's admin credentials.
type NodeDir struct {
	Dir string
	// ID is the node's Raft server ID, which its certificate names.
	ID string
	// DNSNames and IPs go into the node's certificate, for clients that
	// check host names (grpcurl); shoal's own clients check the CA and the
	// node URI instead.
	DNSNames []string
	IPs      []net.IP
	Store    *Store
}

func (d *NodeDir) path(name string) string { return filepath.Join(d.Dir, name) }

// Load puts the node certificate, its key and the CA certificate found in
// the directory into the store, and reports whether they were there.
func (d *NodeDir) Load() (bool, error) {
	if !Exists(d.path(NodeCertFile)) {
		return false, nil
	}
	certs, err := ReadCerts(d.path(NodeCertFile))
	if err != nil {
		return false, err
	}
	key, err := ReadKey(d.path(NodeKeyFile))
	if err != nil {
		return false, err
	}
	cas, err := ReadCerts(d.path(CACertFile))
	if err != nil {
		return false, err
	}
	if id, err := IdentityOf(certs[0]); err != nil || id.Role != RoleNode || id.Name != d.ID {
		return false, fmt.Errorf("%s is not node %s's certificate (another node's data directory?)", d.path(NodeCertFile), d.ID)
	}
	return true, d.Store.Set(certs[0], key, cas)
}

// Init makes the cluster CA and this node's certificate, and writes them
// with root's admin credentials. It is for the first node of a first
// bootstrap, once.
func (d *NodeDir) Init(now time.Time) (*CA, error) {
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return nil, err
	}
	ca, err := NewCA(now)
	if err != nil {
		return nil, err
	}
	if err := WriteKey(d.path(CAKeyFile), ca.Key); err != nil {
		return nil, fmt.Errorf("write CA key: %w", err)
	}
	if err := WriteCerts(d.path(CACertFile), ca.Cert); err != nil {
		return nil, fmt.Errorf("write CA certificate: %w", err)
	}
	if err := d.issue(ca, now); err != nil {
		return nil, err
	}
	return ca, d.EnsureAdmin(ca, now)
}

// LocalCA is the CA key this node keeps in its directory (the node that
// made the CA keeps it), or nil.
func (d *NodeDir) LocalCA() (*CA, error) {
	if !Exists(d.path(CAKeyFile)) {
		return nil, nil
	}
	key, err := ReadKey(d.path(CAKeyFile))
	if err != nil {
		return nil, err
	}
	certs, err := ReadCerts(d.path(CACertFile))
	if err != nil {
		return nil, err
	}
	if !samePublicKey(key.Public(), certs[0].PublicKey) {
		return nil, fmt.Errorf("%s does not match %s", d.path(CAKeyFile), d.path(CACertFile))
	}
	return &CA{Cert: certs[0], Key: key}, nil
}

// JoinRequest draws this node's key and a certificate request for it.
func (d *NodeDir) JoinRequest() (crypto.Signer, []byte, error) {
	key, err := NewKey()
	if err != nil {
		return nil, nil, err
	}
	csr, err := NewCSR(key, d.ID, d.DNSNames, d.IPs)
	return key, csr, err
}

// Install writes what a join brought and loads it.
func (d *NodeDir) Install(key crypto.Signer, j *Joined) error {
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return err
	}
	if err := WriteCerts(d.path(CACertFile), j.CA); err != nil {
		return err
	}
	return d.store(key, j.Cert, []*x509.Certificate{j.CA})
}

func (d *NodeDir) store(key crypto.Signer, cert *x509.Certificate, cas []*x509.Certificate) error {
	// Key first: a crash between the two leaves a new key and the old
	// certificate, which Load refuses rather than serving a mismatch.
	if err := WriteKey(d.path(NodeKeyFile), key); err != nil {
		return fmt.Errorf("write node key: %w", err)
	}
	if err := WriteCerts(d.path(NodeCertFile), cert); err != nil {
		return fmt.Errorf("write node certificate: %w", err)
	}
	return d.Store.Set(cert, key, cas)
}

func (d *NodeDir) issue(ca *CA, now time.Time) error {
	key, csrDER, err := d.JoinRequest()
	if err != nil {
		return err
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return err
	}
	cert, err := ca.SignNode(csr, d.ID, now, NodeLifetime)
	if err != nil {
		return err
	}
	return d.store(key, cert, []*x509.Certificate{ca.Cert})
}

// RenewAfter is when a certificate is renewed: two thirds into its life.
func RenewAfter(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

// Renew issues this node a new key and certificate from ca when the
// current one is due (or missing, or from another CA), and reports whether
// it did.
func (d *NodeDir) Renew(ca *CA, now time.Time) (bool, error) {
	if leaf := d.Store.Leaf(); leaf != nil && now.Before(RenewAfter(leaf)) && leaf.CheckSignatureFrom(ca.Cert) == nil {
		return false, nil
	}
	return true, d.issue(ca, now)
}

// EnsureAdmin writes an admin client certificate for root on this router
// (admin.crt, admin.key), unless a valid one not yet due for renewal is
// there.
func (d *NodeDir) EnsureAdmin(ca *CA, now time.Time) error {
	if certs, err := ReadCerts(d.path(AdminCertFile)); err == nil && now.Before(RenewAfter(certs[0])) && certs[0].CheckSignatureFrom(ca.Cert) == nil {
		return nil
	}
	key, err := NewKey()
	if err != nil {
		return err
	}
	name := "root@" + d.ID
	csrDER, err := NewCSR(key, name, nil, nil)
	if err != nil {
		return err
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return err
	}
	cert, err := ca.SignClient(csr, name, RoleAdmin, now, ClientLifetime)
	if err != nil {
		return err
	}
	if err := WriteKey(d.path(AdminKeyFile), key); err != nil {
		return fmt.Errorf("write admin key: %w", err)
	}
	return WriteCerts(d.path(AdminCertFile), cert)
}

// AdminSerial is the serial number (hex) of root's admin certificate, or "".
func (d *NodeDir) AdminSerial() string {
	certs, err := ReadCerts(d.path(AdminCertFile))
	if err != nil {
		return ""
	}
	return certs[0].SerialNumber.Text(16)
}

// RemoveAdmin deletes root's admin credentials, so that EnsureAdmin writes
// new ones (after the old ones were revoked).
func (d *NodeDir) RemoveAdmin() error {
	for _, f := range []string{AdminCertFile, AdminKeyFile} {
		if err := os.Remove(d.path(f)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}

// Files is an operator's PKI: certificate, key and CA files that another
// tool renews. Reload reads them again when they change.
type Files struct {
	Cert, Key, CA string
	Store         *Store
	// mod is each file's modification time at the last load. A change
	// either way counts: files copied with their times (rsync -t, cp -p)
	// from a host whose clock is behind carry times older than the last.
	mod [3]time.Time
}

// Reload loads the files when any of them changed since the last load, and
// reports whether it did.
func (f *Files) Reload() (bool, error) {
	var mod [3]time.Time
	changed := false
	for i, p := range []string{f.Cert, f.Key, f.CA} {
		st, err := os.Stat(p)
		if err != nil {
			return false, err
		}
		mod[i] = st.ModTime()
		changed = changed || !mod[i].Equal(f.mod[i])
	}
	if !changed && f.Store.Ready() {
		return false, nil
	}
	certs, err := ReadCerts(f.Cert)
	if err != nil {
		return false, err
	}
	key, err := ReadKey(f.Key)
	if err != nil {
		return false, err
	}
	cas, err := ReadCerts(f.CA)
	if err != nil {
		return false, err
	}
	if _, err := IdentityOf(certs[0]); err != nil {
		return false, fmt.Errorf("%s: %w", f.Cert, err)
	}
	if err := f.Store.Set(certs[0], key, cas); err != nil {
		return false, fmt.Errorf("%s: %w", f.Cert, err)
	}
	f.mod = mod
	return true, nil
}
