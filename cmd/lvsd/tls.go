package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoal-lb/shoal/pki"
	"github.com/shoal-lb/shoal/raftfsm"
	"github.com/shoal-lb/shoal/server"
)

// plaintextAdvice is what lvsd says when it will not serve in plaintext.
const plaintextAdvice = `lvsd serves the API and Raft over mutual TLS on any address that is not a loopback one. Either:
  - first bootstrap: give every router the same bootstrap token: lvsctl cluster token --bootstrap > token (mode 0600),
    then lvsd --bootstrap ... --token-file token on each; the first router listed makes the cluster CA;
    a cluster bootstrapped by this router alone needs no token;
  - a router joining a running cluster: lvsd --join MEMBER_API_ADDR --token-file FILE, with a token from lvsctl cluster token;
  - your own PKI: --tls-cert, --tls-key (a node certificate with the URI SAN shoal://node/ID) and --tls-ca;
  - or, knowingly, --insecure (no encryption, no authentication)`

// setupTLS decides how this node secures its API and Raft and makes sure it
// has a certificate: the one in its data directory, an operator's files,
// a new cluster CA at a first bootstrap, or one a join brings. It returns
// nil for plaintext, and the cluster ID that --bootstrap describes or the
// join brought ("" for neither).
func setupTLS(ctx context.Context, f *flags, boot []raft.Server, log *slog.Logger) (*server.TLS, string, error) {
	if f.insecure {
		log.Warn("--insecure: the API and Raft run in plaintext, and anyone who reaches them can change the load balancer")
		return nil, bootstrapClusterID(f, boot, nil), nil
	}
	if f.tlsCert != "" || f.tlsKey != "" || f.tlsCA != "" {
		t, err := operatorTLS(f)
		return t, bootstrapClusterID(f, boot, nil), err
	}
	tok, err := readToken(f)
	if err != nil {
		return nil, "", err
	}
	dir := &pki.NodeDir{Dir: filepath.Join(f.dataDir, "tls"), ID: f.id, Store: pki.NewStore()}
	dir.DNSNames, dir.IPs = certNames(f)
	have, err := dir.Load()
	if err != nil {
		return nil, "", fmt.Errorf("TLS: %w", err)
	}
	creator := len(boot) > 0 && string(boot[0].ID) == f.id
	joined := ""
	switch {
	case have:
	case tok == nil && loopbackOnly(f, boot):
		log.Info("serving the API and Raft in plaintext: every address is a loopback one (give --token-file for TLS)")
		return nil, bootstrapClusterID(f, boot, nil), nil
	case creator:
		if len(boot) > 1 && (tok == nil || tok.ID != pki.BootstrapTokenID) {
			return nil, "", fmt.Errorf("a first bootstrap of %d routers over TLS needs the same bootstrap token on each, for the others to get their certificates from this one\n%s",
				len(boot), plaintextAdvice)
		}
		if err := pki.CheckName(f.id); err != nil {
			return nil, "", fmt.Errorf("--id: %w", err)
		}
		ca, err := dir.Init(time.Now())
		if err != nil {
			return nil, "", fmt.Errorf("make the cluster CA: %w", err)
		}
		log.Info("made the cluster CA and this node's certificate", "ca_fingerprint", pki.Fingerprint(ca.Cert), "dir", dir.Dir,
			"admin_credentials", filepath.Join(dir.Dir, pki.AdminCertFile))
	case tok != nil && (f.join != "" || len(boot) > 0):
		if joined, err = join(ctx, f, boot, tok, dir, log); err != nil {
			return nil, "", err
		}
	case tok != nil:
		return nil, "", errors.New("--token-file is for --join or --bootstrap")
	default:
		return nil, "", fmt.Errorf("no certificate in %s\n%s", dir.Dir, plaintextAdvice)
	}
	clusterID := bootstrapClusterID(f, boot, dir.Store.CAs())
	switch {
	case joined != "" && clusterID != "" && joined != clusterID:
		// A router of a first bootstrap that got its certificate from
		// another: both derive the ID from the same flags and CA.
		return nil, "", fmt.Errorf("the router this one joined belongs to cluster %s, but --bootstrap and --cluster-name here describe %s: "+
			"give every router of a bootstrap the same --bootstrap list and --cluster-name", joined, clusterID)
	case joined != "":
		clusterID = joined
	}
	t := &server.TLS{Store: dir.Store, Dir: dir}
	if tok != nil && tok.ID == pki.BootstrapTokenID {
		// Every router of the bootstrap holds the token, so any of them
		// that has the CA can let the others in.
		t.BootstrapKey = tok.Key()
		for _, s := range boot {
			t.BootstrapIDs = append(t.BootstrapIDs, string(s.ID))
		}
	}
	return t, clusterID, nil
}

func operatorTLS(f *flags) (*server.TLS, error) {
	if f.tlsCert == "" || f.tlsKey == "" || f.tlsCA == "" {
		return nil, errors.New("--tls-cert, --tls-key and --tls-ca go together")
	}
	files := &pki.Files{Cert: f.tlsCert, Key: f.tlsKey, CA: f.tlsCA, Store: pki.NewStore()}
	if _, err := files.Reload(); err != nil {
		return nil, fmt.Errorf("TLS files: %w", err)
	}
	leaf := files.Store.Leaf()
	id, err := files.Store.VerifyPeer([][]byte{leaf.Raw}, x509.ExtKeyUsageAny)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert: %w", err)
	}
	if id.Role != pki.RoleNode || id.Name != f.id {
		return nil, fmt.Errorf("--tls-cert names %s %q; lvsd --id %s needs the URI SAN shoal://node/%s", id.Role, id.Name, f.id, f.id)
	}
	return &server.TLS{Store: files.Store, Files: files}, nil
}

// readToken reads the join token from --token-file or $SHOAL_TOKEN.
func readToken(f *flags) (*pki.Token, error) {
	s := os.Getenv("SHOAL_TOKEN")
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		s = string(b)
		if st, err := os.Stat(f.tokenFile); err == nil && st.Mode().Perm()&0o077 != 0 {
			slog.Warn("the token file can be read by others than its owner; chmod 600 it", "file", f.tokenFile)
		}
	}
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	tok, err := pki.ParseToken(s)
	if err != nil {
		return nil, fmt.Errorf("--token-file: %w", err)
	}
	return &tok, nil
}

// join gets this node's certificate with a token: from the member at --join
// (its API address), or at a first bootstrap from the other routers'
// Raft ports in turn. It retries while they are not up yet, and gives up at
// once when one refuses the token. It returns the cluster's ID, which the
// answer carries.
func join(ctx context.Context, f *flags, boot []raft.Server, tok *pki.Token, dir *pki.NodeDir, log *slog.Logger) (string, error) {
	if err := pki.CheckName(f.id); err != nil {
		return "", fmt.Errorf("--id: %w", err)
	}
	var addrs []string
	if f.join != "" {
		addrs = []string{f.join}
	}
	for _, s := range boot {
		if string(s.ID) != f.id {
			addrs = append(addrs, string(s.Address))
		}
	}
	key, csr, err := dir.JoinRequest()
	if err != nil {
		return "", err
	}
	backoff := 100 * time.Millisecond
	for i := 0; ; i++ {
		addr := addrs[i%len(addrs)]
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		j, err := pki.Join(cctx, addr, *tok, f.id, csr)
		cancel()
		if err == nil {
			if err := dir.Install(key, j); err != nil {
				return "", fmt.Errorf("store the certificate from the join: %w", err)
			}
			log.Info("joined: got this node's certificate", "from", addr, "ca_fingerprint", pki.Fingerprint(j.CA), "not_after", j.Cert.NotAfter,
				"cluster_id", j.ClusterID)
			return j.ClusterID, nil
		}
		if refused(err) {
			return "", fmt.Errorf("join through %s refused: %s", addr, status.Convert(err).Message())
		}
		log.Warn("join: no certificate yet; retrying", "via", addr, "err", status.Convert(err).Message(), "in", backoff)
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("join: %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// refused is an answer that retrying will not change: a wrong token, a
// cluster with another CA, a bad request.
func refused(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return true // the answer itself did not check out (pki.Join)
	}
	switch st.Code() {
	case codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument, codes.FailedPrecondition:
		return true
	case codes.Unavailable:
		return strings.Contains(st.Message(), "authentication handshake failed")
	}
	return false
}

// loopbackOnly reports whether this node's addresses and every bootstrap
// peer's are loopback ones: a cluster on one host, as in the README's quick
// start, which may run in plaintext.
func loopbackOnly(f *flags, boot []raft.Server) bool {
	addrs := []string{f.apiAddr, f.raftAddr, f.join}
	for _, s := range boot {
		addrs = append(addrs, string(s.Address))
	}
	for _, a := range addrs {
		if a == "" {
			continue
		}
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return false
		}
		ip, err := netip.ParseAddr(host)
		if host != "localhost" && (err != nil || !ip.IsLoopback()) {
			return false
		}
	}
	return true
}

// certNames are the DNS names and IP addresses this node's certificate
// carries, for clients that check host names (grpcurl): the hosts of its
// addresses (all of this host's addresses for an unspecified one), its
// host name, localhost, and --tls-san.
func certNames(f *flags) (dns []string, ips []net.IP) {
	seen := map[string]bool{}
	var add func(h string)
	add = func(h string) {
		if h == "" || seen[h] {
			return
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			if ip.IsUnspecified() {
				if as, err := net.InterfaceAddrs(); err == nil {
					for _, a := range as {
						if n, ok := a.(*net.IPNet); ok {
							add(n.IP.String())
						}
					}
				}
				return
			}
			ips = append(ips, ip)
			return
		}
		dns = append(dns, h)
	}
	for _, a := range []string{f.apiAddr, f.raftAddr} {
		if h, _, err := net.SplitHostPort(a); err == nil {
			add(h)
		}
	}
	if h, err := os.Hostname(); err == nil {
		add(h)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		add(h)
	}
	for _, h := range strings.Split(f.tlsSAN, ",") {
		add(strings.TrimSpace(h))
	}
	return dns, ips
}

// raftTLS is Raft's TLS over the node's store; nil for plaintext.
func raftTLS(t *server.TLS) *raftfsm.TransportTLS {
	if t == nil {
		return nil
	}
	return &raftfsm.TransportTLS{
		Server: t.Store.RaftServerConfig(),
		Join:   t.Store.JoinServerConfig(),
		Client: t.Store.NodeClientConfig(pki.ALPNRaft),
	}
}
