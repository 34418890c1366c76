package pki_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/pki"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNodeDirInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	d := &pki.NodeDir{Dir: dir, ID: "n1", DNSNames: []string{"lb1.example"}, IPs: []net.IP{net.ParseIP("192.0.2.1")}, Store: pki.NewStore()}
	now := time.Now()
	ca, err := d.Init(now)
	if err != nil {
		t.Fatal(err)
	}
	if got := mode(t, dir); got != 0o700 {
		t.Errorf("%s: mode %v, want 0700", dir, got)
	}
	want := map[string]os.FileMode{
		pki.CAKeyFile: 0o600, pki.NodeKeyFile: 0o600, pki.AdminKeyFile: 0o600,
		pki.CACertFile: 0o644, pki.NodeCertFile: 0o644, pki.AdminCertFile: 0o644,
	}
	for name, m := range want {
		if got := mode(t, filepath.Join(dir, name)); got != m {
			t.Errorf("%s: mode %v, want %v", name, got, m)
		}
	}
	// Written atomically: no temporary file is left behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != len(want) {
		t.Errorf("the directory holds %v, want only the %d files", names, len(want))
	}

	leaf := d.Store.Leaf()
	if leaf == nil || !d.Store.Ready() {
		t.Fatal("Init left the store empty")
	}
	id, err := pki.Verify([][]byte{leaf.Raw}, pool(ca.Cert), x509.ExtKeyUsageServerAuth, now)
	if err != nil || id.Role != pki.RoleNode || id.Name != "n1" {
		t.Fatalf("node certificate: %+v %v", id, err)
	}
	if !slices.Equal(leaf.DNSNames, []string{"lb1.example"}) || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("192.0.2.1")) {
		t.Errorf("node certificate names %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if cas := d.Store.CAs(); len(cas) != 1 || !cas[0].Equal(ca.Cert) {
		t.Error("the store does not trust the new CA")
	}
	caFile, err := pki.ReadCerts(filepath.Join(dir, pki.CACertFile))
	if err != nil || !caFile[0].Equal(ca.Cert) {
		t.Errorf("ca.crt: %v", err)
	}
	local, err := d.LocalCA()
	if err != nil || local == nil || !local.Cert.Equal(ca.Cert) {
		t.Fatalf("LocalCA: %v %v", local, err)
	}

	admin, err := pki.ReadCerts(filepath.Join(dir, pki.AdminCertFile))
	if err != nil {
		t.Fatal(err)
	}
	aid, err := pki.Verify([][]byte{admin[0].Raw}, pool(ca.Cert), x509.ExtKeyUsageClientAuth, now)
	if err != nil || aid.Role != pki.RoleAdmin || aid.Name != "root@n1" {
		t.Errorf("admin certificate: %+v %v", aid, err)
	}
	akey, err := pki.ReadKey(filepath.Join(dir, pki.AdminKeyFile))
	if err != nil || !admin[0].PublicKey.(*ecdsa.PublicKey).Equal(akey.Public()) {
		t.Errorf("admin.key does not match admin.crt: %v", err)
	}
}

func TestNodeDirLoad(t *testing.T) {
	dir := t.TempDir()
	empty := &pki.NodeDir{Dir: dir, ID: "n1", Store: pki.NewStore()}
	if have, err := empty.Load(); have || err != nil {
		t.Fatalf("Load of an empty directory: %v %v", have, err)
	}
	if empty.Store.Ready() {
		t.Fatal("an empty directory made the store ready")
	}
	if ca, err := empty.LocalCA(); ca != nil || err != nil {
		t.Errorf("LocalCA of an empty directory: %v %v", ca, err)
	}

	first := &pki.NodeDir{Dir: dir, ID: "n1", Store: pki.NewStore()}
	if _, err := first.Init(time.Now()); err != nil {
		t.Fatal(err)
	}
	again := &pki.NodeDir{Dir: dir, ID: "n1", Store: pki.NewStore()}
	have, err := again.Load()
	if !have || err != nil {
		t.Fatalf("Load after Init: %v %v", have, err)
	}
	if !again.Store.Leaf().Equal(first.Store.Leaf()) {
		t.Error("Load loaded another certificate than Init wrote")
	}

	// Another node's data directory, copied or mounted by mistake.
	stranger := &pki.NodeDir{Dir: dir, ID: "n2", Store: pki.NewStore()}
	if have, err := stranger.Load(); err == nil || !strings.Contains(err.Error(), "not node n2's") {
		t.Errorf("Load of n1's directory as n2: %v %v", have, err)
	}
	if stranger.Store.Ready() {
		t.Error("the refused certificate reached the store")
	}

	// A key that does not match the certificate (a crash between writing
	// the two) is refused rather than served.
	otherKey, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteKey(filepath.Join(dir, pki.NodeKeyFile), otherKey); err != nil {
		t.Fatal(err)
	}
	mismatch := &pki.NodeDir{Dir: dir, ID: "n1", Store: pki.NewStore()}
	if _, err := mismatch.Load(); err == nil {
		t.Error("Load accepted a key that does not match the certificate")
	}
}

func TestNodeDirInstall(t *testing.T) {
	ca := newCA(t)
	dir := filepath.Join(t.TempDir(), "tls")
	d := &pki.NodeDir{Dir: dir, ID: "n2", DNSNames: []string{"lb2.example"}, Store: pki.NewStore()}
	key, der, err := d.JoinRequest()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(der)
	if err != nil {
		t.Fatal(err)
	}
	if csr.Subject.CommonName != "n2" || !slices.Equal(csr.DNSNames, []string{"lb2.example"}) {
		t.Errorf("join request for %q %v", csr.Subject.CommonName, csr.DNSNames)
	}
	cert, err := ca.SignNode(csr, "n2", time.Now(), pki.NodeLifetime)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Install(key, &pki.Joined{Cert: cert, CA: ca.Cert}); err != nil {
		t.Fatal(err)
	}
	if mode(t, dir) != 0o700 || mode(t, filepath.Join(dir, pki.NodeKeyFile)) != 0o600 {
		t.Errorf("modes %v %v", mode(t, dir), mode(t, filepath.Join(dir, pki.NodeKeyFile)))
	}
	reloaded := &pki.NodeDir{Dir: dir, ID: "n2", Store: pki.NewStore()}
	if have, err := reloaded.Load(); !have || err != nil || !reloaded.Store.Leaf().Equal(cert) {
		t.Fatalf("Load after Install: %v %v", have, err)
	}
	// A node that joined keeps no CA key.
	if local, err := d.LocalCA(); local != nil || err != nil {
		t.Errorf("LocalCA after a join: %v %v", local, err)
	}
}

func TestNodeDirRenew(t *testing.T) {
	dir := t.TempDir()
	d := &pki.NodeDir{Dir: dir, ID: "n1", Store: pki.NewStore()}
	now := time.Now()
	ca, err := d.Init(now)
	if err != nil {
		t.Fatal(err)
	}
	first := d.Store.Leaf()
	due := pki.RenewAfter(first)
	if want := first.NotBefore.Add(first.NotAfter.Sub(first.NotBefore) * 2 / 3); !due.Equal(want) {
		t.Errorf("RenewAfter %v, want two thirds into the life, %v", due, want)
	}

	for _, at := range []time.Time{now, due.Add(-time.Second)} {
		renewed, err := d.Renew(ca, at)
		if renewed || err != nil {
			t.Errorf("Renew at %v, before %v: %v %v", at, due, renewed, err)
		}
	}
	if !d.Store.Leaf().Equal(first) {
		t.Fatal("a renewal that was not due changed the certificate")
	}

	renewed, err := d.Renew(ca, due.Add(time.Second))
	if !renewed || err != nil {
		t.Fatalf("Renew when due: %v %v", renewed, err)
	}
	second := d.Store.Leaf()
	if second.Equal(first) || second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("the store still serves the old certificate")
	}
	if bytes.Equal(second.RawSubjectPublicKeyInfo, first.RawSubjectPublicKeyInfo) {
		t.Error("a renewal kept the old key")
	}
	if !second.NotAfter.After(first.NotAfter) {
		t.Errorf("renewed certificate ends %v, the old one %v", second.NotAfter, first.NotAfter)
	}
	onDisk := &pki.NodeDir{Dir: dir, ID: "n1", Store: pki.NewStore()}
	if _, err := onDisk.Load(); err != nil || !onDisk.Store.Leaf().Equal(second) {
		t.Errorf("the directory does not hold the renewed certificate: %v", err)
	}

	// A certificate of another CA (the cluster's CA replaced it in the
	// replicated state) is renewed at once.
	other := newCA(t)
	if renewed, err := d.Renew(other, now); !renewed || err != nil {
		t.Fatalf("Renew with another CA: %v %v", renewed, err)
	}
	if err := d.Store.Leaf().CheckSignatureFrom(other.Cert); err != nil {
		t.Errorf("renewed certificate is not from the new CA: %v", err)
	}

	// A node with no certificate yet gets one.
	fresh := &pki.NodeDir{Dir: t.TempDir(), ID: "n3", Store: pki.NewStore()}
	if renewed, err := fresh.Renew(ca, now); !renewed || err != nil || fresh.Store.Leaf() == nil {
		t.Errorf("Renew without a certificate: %v %v", renewed, err)
	}
}

func TestEnsureAdmin(t *testing.T) {
	ca := newCA(t)
	dir := filepath.Join(t.TempDir(), "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	d := &pki.NodeDir{Dir: dir, ID: "n1", Store: pki.NewStore()}
	now := time.Now()
	certPath, keyPath := filepath.Join(dir, pki.AdminCertFile), filepath.Join(dir, pki.AdminKeyFile)
	if err := d.EnsureAdmin(ca, now); err != nil {
		t.Fatal(err)
	}
	if mode(t, keyPath) != 0o600 {
		t.Errorf("admin.key mode %v, want 0600", mode(t, keyPath))
	}
	cert, key := readFile(t, certPath), readFile(t, keyPath)
	for range 2 {
		if err := d.EnsureAdmin(ca, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readFile(t, certPath), cert) || !bytes.Equal(readFile(t, keyPath), key) {
			t.Fatal("EnsureAdmin rewrote valid credentials")
		}
	}

	certs, err := pki.ReadCerts(certPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.EnsureAdmin(ca, pki.RenewAfter(certs[0]).Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(readFile(t, certPath), cert) || bytes.Equal(readFile(t, keyPath), key) {
		t.Error("EnsureAdmin kept credentials due for renewal")
	}

	renewed := readFile(t, certPath)
	if err := d.EnsureAdmin(newCA(t), now); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(readFile(t, certPath), renewed) {
		t.Error("EnsureAdmin kept credentials of another CA")
	}
}

// operatorFiles writes an operator's PKI: cert.pem and key.pem of a node
// certificate, and ca.pem.
type operatorFiles struct {
	t        *testing.T
	ca       *pki.CA
	cert     string
	key      string
	caFile   string
	modified time.Time
}

func (o *operatorFiles) write(c issued) {
	o.t.Helper()
	if err := pki.WriteCerts(o.cert, c.cert); err != nil {
		o.t.Fatal(err)
	}
	if err := pki.WriteKey(o.key, c.key); err != nil {
		o.t.Fatal(err)
	}
}

// touch sets every file's modification time, as a renewal tool that
// writes them leaves it.
func (o *operatorFiles) touch(at time.Time) {
	o.t.Helper()
	for _, p := range []string{o.cert, o.key, o.caFile} {
		if err := os.Chtimes(p, at, at); err != nil {
			o.t.Fatal(err)
		}
	}
}

func TestFilesReload(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	o := &operatorFiles{t: t, ca: ca, cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem"), caFile: filepath.Join(dir, "ca.pem")}
	if err := pki.WriteCerts(o.caFile, ca.Cert); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	c1 := nodeCert(t, ca, "n1", time.Now(), time.Hour)
	o.write(c1)
	o.touch(t0)

	f := &pki.Files{Cert: o.cert, Key: o.key, CA: o.caFile, Store: pki.NewStore()}
	if ok, err := f.Reload(); !ok || err != nil {
		t.Fatalf("first Reload: %v %v", ok, err)
	}
	if !f.Store.Leaf().Equal(c1.cert) || !f.Store.CAs()[0].Equal(ca.Cert) {
		t.Fatal("the store does not hold the files' certificates")
	}
	if ok, err := f.Reload(); ok || err != nil {
		t.Errorf("Reload of unchanged files: %v %v", ok, err)
	}

	// New contents with the same modification times are not noticed:
	// Reload goes by the times, so it costs three stats when idle.
	c2 := nodeCert(t, ca, "n1", time.Now(), time.Hour)
	o.write(c2)
	o.touch(t0)
	if ok, err := f.Reload(); ok || err != nil || !f.Store.Leaf().Equal(c1.cert) {
		t.Errorf("Reload with unchanged times: %v %v", ok, err)
	}
	o.touch(t0.Add(time.Second))
	if ok, err := f.Reload(); !ok || err != nil || !f.Store.Leaf().Equal(c2.cert) {
		t.Fatalf("Reload after the times changed: %v %v", ok, err)
	}

	broken := []struct {
		name  string
		write func()
		msg   string
	}{
		{"garbage certificate", func() {
			if err := os.WriteFile(o.cert, []byte("-----BEGIN CERT"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "no PEM certificate"},
		{"key of another certificate", func() {
			o.write(nodeCert(t, ca, "n1", time.Now(), time.Hour))
			if err := pki.WriteKey(o.key, c1.key); err != nil {
				t.Fatal(err)
			}
		}, "does not match"},
		{"certificate without a role", func() {
			o.write(rawCert(t, ca, &x509.Certificate{Subject: pkix.Name{CommonName: "n1"}}))
		}, "no shoal role"},
		{"key file removed", func() {
			if err := os.WriteFile(o.key, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "no PEM private key"},
	}
	at := t0.Add(time.Second)
	for _, b := range broken {
		t.Run(b.name, func(t *testing.T) {
			at = at.Add(time.Second)
			b.write()
			o.touch(at)
			ok, err := f.Reload()
			if ok || err == nil || !strings.Contains(err.Error(), b.msg) {
				t.Fatalf("Reload of a broken file: %v %v, want an error mentioning %q", ok, err, b.msg)
			}
			if !f.Store.Ready() || !f.Store.Leaf().Equal(c2.cert) {
				t.Fatal("a broken file replaced the certificate in use")
			}
			// Still broken: it is tried again, not marked as loaded.
			if ok, err := f.Reload(); ok || err == nil {
				t.Errorf("second Reload of a broken file: %v %v", ok, err)
			}
		})
	}

	c3 := nodeCert(t, ca, "n1", time.Now(), time.Hour)
	o.write(c3)
	o.touch(at.Add(time.Second))
	if ok, err := f.Reload(); !ok || err != nil || !f.Store.Leaf().Equal(c3.cert) {
		t.Fatalf("Reload after the files were fixed: %v %v", ok, err)
	}

	if err := os.Remove(o.caFile); err != nil {
		t.Fatal(err)
	}
	if ok, err := f.Reload(); ok || err == nil || !f.Store.Leaf().Equal(c3.cert) {
		t.Errorf("Reload with the CA file gone: %v %v", ok, err)
	}
}

// TestFilesReloadOlderTimes replaces the files with ones whose times are
// older than those loaded, as rsync -t or cp -p do with files issued on a
// host whose clock is behind: they are new files all the same.
func TestFilesReloadOlderTimes(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	o := &operatorFiles{t: t, ca: ca, cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem"), caFile: filepath.Join(dir, "ca.pem")}
	if err := pki.WriteCerts(o.caFile, ca.Cert); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Truncate(time.Second)
	o.write(nodeCert(t, ca, "n1", time.Now(), time.Hour))
	o.touch(t0)
	f := &pki.Files{Cert: o.cert, Key: o.key, CA: o.caFile, Store: pki.NewStore()}
	if ok, err := f.Reload(); !ok || err != nil {
		t.Fatalf("first Reload: %v %v", ok, err)
	}

	c2 := nodeCert(t, ca, "n1", time.Now(), time.Hour)
	o.write(c2)
	o.touch(t0.Add(-time.Minute))
	if ok, err := f.Reload(); !ok || err != nil || !f.Store.Leaf().Equal(c2.cert) {
		t.Fatalf("Reload of files with older times: %v %v", ok, err)
	}

	// Only the certificate and key replaced, with times older than the
	// CA file's, which is left alone.
	c3 := nodeCert(t, ca, "n1", time.Now(), time.Hour)
	o.write(c3)
	for _, p := range []string{o.cert, o.key} {
		if err := os.Chtimes(p, t0.Add(-2*time.Minute), t0.Add(-2*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(o.caFile, t0, t0); err != nil {
		t.Fatal(err)
	}
	if ok, err := f.Reload(); !ok || err != nil || !f.Store.Leaf().Equal(c3.cert) {
		t.Fatalf("Reload of a certificate and key older than the CA file: %v %v", ok, err)
	}
}
