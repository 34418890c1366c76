package e2e

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shoal-lb/shoal/e2e/harness"
	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestTLSCluster runs real lvsd processes on 127.0.0.1 over mutual TLS, as
// a bootstrap token makes them even on loopback: three routers bootstrap
// and make the cluster CA, a fourth joins with a token from `lvsctl cluster
// token`, and tokens with a wrong secret or another CA's fingerprint are
// refused. Then what an attacker on the network can do: bytes on a Raft
// port, plaintext calls to the API, certificates of another CA; and what
// a viewer may do, through lvsctl and grpcurl.
func TestTLSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	lvsd := harness.Build(t, "cmd/lvsd")
	ctl := harness.Build(t, "cmd/lvsctl")
	start := time.Now()
	nodes, _ := harness.StartTLSCluster(t, lvsd, harness.ClusterOptions{N: 3, Args: []string{"--dataplane", "none"}})
	n1 := nodes[0]
	// The first router writes root's admin credentials with the CA, before
	// it serves anything.
	admin := harness.AdminCreds(n1.DataDir)
	harness.Eventually(t, 10*time.Second, admin.Ready, "admin credentials in %s", filepath.Dir(admin.Cert))
	// The helpers take the running (sub)test's t.
	as := func(t *testing.T, c harness.ClientCreds, server string, args ...string) harness.Result {
		t.Helper()
		return lvsctl(t, ctl, server, append(c.Args(), args...)...)
	}
	status := func(t *testing.T, server string) (*shoalv1.GetClusterStatusResponse, error) {
		var st shoalv1.GetClusterStatusResponse
		err := as(t, admin, server, "-o", "json", "--request-timeout", "2s", "cluster", "status").Proto(&st)
		return &st, err
	}
	// members waits for a leader and want members that each answer.
	members := func(t *testing.T, want ...string) *shoalv1.GetClusterStatusResponse {
		t.Helper()
		var st *shoalv1.GetClusterStatusResponse
		harness.Eventually(t, 30*time.Second, func() bool {
			s, err := status(t, n1.APIAddr)
			if err != nil || s.GetLeaderId() == "" || len(s.GetMembers()) != len(want) {
				return false
			}
			for _, m := range s.GetMembers() {
				if !strings.Contains(" "+strings.Join(want, " ")+" ", " "+m.GetId()+" ") || (m.GetRole() != "leader" && m.GetRole() != "follower") {
					return false
				}
			}
			st = s
			return true
		}, "members %v answering, with a leader", want)
		return st
	}

	st := members(t, "n1", "n2", "n3")
	t.Logf("3 routers over TLS: leader %s %v after the first start", st.GetLeaderId(), time.Since(start).Round(time.Millisecond))

	t.Run("bootstrap", func(t *testing.T) {
		who := as(t, admin, n1.APIAddr, "whoami")
		if err := who.Err(); err != nil || !strings.Contains(who.Stdout, "(admin)") {
			t.Fatalf("whoami with n1's admin credentials: %v %q", err, who.Stdout)
		}
		t.Logf("whoami: %s", strings.TrimSpace(who.Stdout))

		// Every router, not only the one that made the CA, writes root's
		// admin credentials once it has the CA.
		for _, n := range nodes[1:] {
			c := harness.AdminCreds(n.DataDir)
			harness.Eventually(t, 20*time.Second, c.Ready, "admin credentials of %s in %s", n.ID, filepath.Dir(c.Cert))
			if r := as(t, c, n.APIAddr, "whoami"); r.Err() != nil || !strings.Contains(r.Stdout, "(admin)") {
				t.Errorf("whoami with %s's own admin credentials: %v %q", n.ID, r.Err(), r.Stdout)
			}
		}

		// cluster certs: each router's certificate, all of one CA.
		harness.Eventually(t, 20*time.Second, func() bool {
			var certs shoalv1.GetClusterStatusResponse
			if as(t, admin, n1.APIAddr, "-o", "json", "cluster", "certs").Proto(&certs) != nil || len(certs.GetMembers()) != 3 {
				return false
			}
			fp := ""
			for _, m := range certs.GetMembers() {
				c := m.GetCertificate()
				if c.GetRole() != "node" || c.GetCaFingerprint() == "" || fp != "" && c.GetCaFingerprint() != fp {
					return false
				}
				fp = c.GetCaFingerprint()
			}
			return true
		}, "cluster certs showing 3 node certificates of one CA")
		table := as(t, admin, n1.APIAddr, "cluster", "certs")
		if err := table.Err(); err != nil {
			t.Fatal(err)
		}
		t.Logf("cluster certs:\n%s", table.Stdout)
	})

	// A later router joins with a token from `lvsctl cluster token`; two
	// more try with a wrong secret and with another CA's fingerprint.
	tokRes := as(t, admin, n1.APIAddr, "cluster", "token")
	if err := tokRes.Err(); err != nil {
		t.Fatal(err)
	}
	good, err := pki.ParseToken(tokRes.Stdout)
	if err != nil {
		t.Fatalf("lvsctl cluster token printed %q: %v", tokRes.Stdout, err)
	}
	joinWith := func(id string, tok pki.Token) *harness.Process {
		t.Helper()
		token := tok.String()
		file := filepath.Join(t.TempDir(), id+"-token")
		if err := harness.WriteToken(file, token); err != nil {
			t.Fatal(err)
		}
		return harness.Start(t, id, lvsd, "--id", id, "--api-addr", harness.FreeAddr(t), "--raft-addr", harness.FreeAddr(t),
			"--data-dir", filepath.Join(t.TempDir(), id), "--join", n1.APIAddr, "--token-file", file, "--dataplane", "none")
	}
	other, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := pki.NewToken("")
	if err != nil {
		t.Fatal(err)
	}
	joined := time.Now()
	joinWith("n4", good)
	n5 := joinWith("n5", pki.Token{CAFingerprint: good.CAFingerprint, ID: good.ID, Secret: wrong.Secret})
	n6 := joinWith("n6", pki.Token{CAFingerprint: pki.Fingerprint(other.Cert), ID: good.ID, Secret: good.Secret})

	t.Run("join", func(t *testing.T) {
		members(t, "n1", "n2", "n3", "n4")
		t.Logf("n4 joined with a token from lvsctl cluster token: a member %v after its start", time.Since(joined).Round(time.Millisecond))
	})

	// refused wants p, started with a bad token, to exit non-zero saying
	// the join was refused, and never to become a member.
	refused := func(t *testing.T, p *harness.Process) {
		id := p.Name
		err := p.Wait(30 * time.Second)
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("%s with a bad token: %v, want a non-zero exit", id, err)
		}
		if !strings.Contains(p.Log(), "refused") {
			t.Errorf("%s exited (%v) without saying the join was refused:\n%s", id, err, p.Log())
		}
		t.Logf("%s: %v: %s", id, err, lastLine(p.Log(), "refused"))
		st, err := status(t, n1.APIAddr)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range st.GetMembers() {
			if m.GetId() == id {
				t.Errorf("%s, refused, is a member: %v", id, m)
			}
		}
	}
	t.Run("wrong-secret", func(t *testing.T) { refused(t, n5) })
	t.Run("other-CA-fingerprint", func(t *testing.T) { refused(t, n6) })

	t.Run("raft-port", func(t *testing.T) {
		pos := func() harness.RaftPosition {
			st, err := status(t, n1.APIAddr)
			if err != nil {
				t.Fatalf("cluster status: %v", err)
			}
			return harness.RaftPosition{Leader: st.GetLeaderId(), Term: st.GetTerm(), Commit: st.GetCommitIndex()}
		}
		harness.AssertNoCommit(t, pos, func(leader string) {
			target := n1
			for _, n := range nodes {
				if n.ID == leader {
					target = n
				}
			}
			var d net.Dialer
			seen, err := harness.ProbeRaftPort(d.DialContext, target.RaftAddr, admin)
			if err != nil {
				t.Fatalf("%s's Raft port: %v", target.ID, err)
			}
			t.Logf("%s's Raft port:\n  %s", target.ID, strings.Join(seen, "\n  "))
		})
	})

	t.Run("api-plaintext", func(t *testing.T) {
		conn, err := grpc.NewClient(n1.APIAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := shoalv1.NewNodeServiceClient(conn).GetNodeStatus(ctx, &shoalv1.GetNodeStatusRequest{}); err == nil {
			t.Fatal("a plaintext gRPC call to the TLS API was answered")
		} else {
			t.Logf("plaintext gRPC call: %v", err)
		}
		if r := readableDefaultCreds(); r != "" {
			t.Logf("lvsctl would use %s by default; not checking its hint without flags", r)
			return
		}
		r := lvsctl(t, ctl, n1.APIAddr, "--request-timeout", "3s", "cluster", "status")
		if r.ExitCode != 1 || !strings.Contains(r.Stderr, "the server may require TLS") {
			t.Fatalf("lvsctl without certificates: exit %d, stderr %q; want exit 1 with the TLS hint", r.ExitCode, r.Stderr)
		}
		t.Logf("lvsctl without certificates: %s", strings.TrimSpace(r.Stderr))
	})

	t.Run("other-CA-client", func(t *testing.T) {
		dir := t.TempDir()
		mallory := clientCert(t, other, "mallory", pki.RoleAdmin, dir)
		// Trusting the cluster's CA, presenting another CA's certificate:
		// the server refuses it.
		withClusterCA := harness.ClientCreds{CA: admin.CA, Cert: mallory.Cert, Key: mallory.Key}
		r := as(t, withClusterCA, n1.APIAddr, "config", "get")
		if r.ExitCode != 1 || !strings.Contains(r.Stderr, "not signed by this cluster's CA") {
			t.Errorf("lvsctl with another CA's admin certificate: exit %d, stderr %q", r.ExitCode, r.Stderr)
		}
		t.Logf("another CA's client certificate: %s", strings.TrimSpace(r.Stderr))
		// Trusting only the other CA: lvsctl refuses the server.
		if r := as(t, mallory, n1.APIAddr, "--request-timeout", "3s", "config", "get"); r.ExitCode != 1 {
			t.Errorf("lvsctl trusting another CA reached the cluster: exit %d %s", r.ExitCode, r.Stdout)
		} else {
			t.Logf("lvsctl trusting another CA: %s", strings.TrimSpace(r.Stderr))
		}
	})

	t.Run("viewer", func(t *testing.T) {
		dir := t.TempDir()
		if r := as(t, admin, n1.APIAddr, "certs", "issue", "--role", "viewer", "--name", "vic", "--out", dir); r.Err() != nil {
			t.Fatalf("certs issue: %v", r.Err())
		}
		vic := harness.ClientCreds{CA: filepath.Join(dir, pki.CACertFile), Cert: filepath.Join(dir, "vic.crt"), Key: filepath.Join(dir, "vic.key")}
		if st, err := os.Stat(vic.Key); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("vic.key: %v, mode %v; want 0600", err, st.Mode().Perm())
		}
		if r := as(t, vic, n1.APIAddr, "whoami"); r.Err() != nil || !strings.Contains(r.Stdout, "vic (viewer)") {
			t.Errorf("whoami as vic: %v %q", r.Err(), r.Stdout)
		}
		add := as(t, vic, n1.APIAddr, "service", "add", "web", "--vip", "10.0.0.1", "--port", "80")
		if add.ExitCode != 1 || !strings.Contains(add.Stderr, "role admin") {
			t.Errorf("service add as a viewer: exit %d, stderr %q; want exit 1 naming role admin", add.ExitCode, add.Stderr)
		}
		t.Logf("viewer's service add: %s", strings.TrimSpace(add.Stderr))
		if r := as(t, vic, n1.APIAddr, "config", "get"); r.Err() != nil {
			t.Errorf("config get as a viewer: %v", r.Err())
		}
	})

	t.Run("grpcurl", func(t *testing.T) {
		bin, err := exec.LookPath("grpcurl")
		if err != nil {
			t.Skip("grpcurl is not on PATH (go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest); CI installs it")
		}
		grpcurl := func(args ...string) harness.Result {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := harness.Run(ctx, bin, args...)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		creds := []string{"-cacert", admin.CA, "-cert", admin.Cert, "-key", admin.Key}
		list := grpcurl(append(creds, n1.APIAddr, "list")...)
		if err := list.Err(); err != nil {
			t.Fatalf("grpcurl list: %v", err)
		}
		for _, want := range []string{"shoal.v1.ClusterService", "shoal.v1.ConfigService", "grpc.health.v1.Health"} {
			if !strings.Contains(list.Stdout, want) {
				t.Errorf("grpcurl list: %q, missing %s", list.Stdout, want)
			}
		}
		health := grpcurl(append(creds, n1.APIAddr, "grpc.health.v1.Health/Check")...)
		if err := health.Err(); err != nil || !strings.Contains(health.Stdout, "SERVING") {
			t.Errorf("grpcurl health check: %v %q", err, health.Stdout)
		}
		if r := grpcurl("-cacert", admin.CA, n1.APIAddr, "list"); r.ExitCode == 0 {
			t.Errorf("grpcurl without -cert listed the services: %s", r.Stdout)
		} else {
			t.Logf("grpcurl without -cert: %s", strings.TrimSpace(r.Stderr))
		}
	})
}

// clientCert issues a client certificate of ca with role into dir and
// returns credentials that trust ca.
func clientCert(t *testing.T, ca *pki.CA, name string, role pki.Role, dir string) harness.ClientCreds {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := pki.NewCSR(key, name, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.SignClient(csr, name, role, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := harness.ClientCreds{CA: filepath.Join(dir, "other-ca.crt"), Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
	if err := pki.WriteCerts(c.CA, ca.Cert); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteCerts(c.Cert, cert); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteKey(c.Key, key); err != nil {
		t.Fatal(err)
	}
	return c
}

// readableDefaultCreds is the admin certificate lvsctl uses when given
// none, if this machine has one ("" if not).
func readableDefaultCreds() string {
	p := "/var/lib/shoal/tls/" + pki.AdminCertFile
	if f, err := os.Open(p); err == nil {
		f.Close()
		return p
	}
	return ""
}

// lastLine is the last line of log that contains s.
func lastLine(log, s string) string {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return strings.TrimSpace(lines[i])
		}
	}
	return ""
}
