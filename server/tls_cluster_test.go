package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/shoal-lb/shoal/e2e/harness"
	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"github.com/shoal-lb/shoal/raftfsm"
)

// secureNode is one member of a cluster that runs the API and Raft over
// mutual TLS on loopback TCP, wired as lvsd wires them: the join-only
// server on the Raft port's join connections, the node's TLS directory
// kept by tlsOnce.
type secureNode struct {
	id                string
	dir               *pki.NodeDir
	node              *raftfsm.Node
	srv               *Server
	api, joins        *grpc.Server
	apiAddr, raftAddr string

	// tlsMu serialises tlsOnce: the settling loop's calls and the test's
	// own, which stand in for the loop's once-a-minute round.
	tlsMu sync.Mutex
	// settled is closed when tlsOnce has found everything in order once.
	settled chan struct{}
}

func (n *secureNode) tlsOnce(ctx context.Context) bool {
	n.tlsMu.Lock()
	defer n.tlsMu.Unlock()
	return n.srv.tlsOnce(ctx)
}

// secureCluster is three such nodes bootstrapped together, with node
// certificates of a CA the test made (its key in n1's directory, as the
// first router of a bootstrap keeps it) and the bootstrap token every
// router holds.
type secureCluster struct {
	ca    *pki.CA
	boot  pki.Token
	nodes []*secureNode
	// admin is alice's client certificate, role admin.
	admin *tls.Certificate
	log   *authLog
}

// startSecureCluster starts the cluster and waits until a leader is known,
// every API address is registered, the CA is in the replicated state and
// every node has settled its TLS material (admin credentials written).
//
// tlsLoop rechecks every 2s until settled and every minute after; the
// nodes here settle in a loop of the test's with a 20ms tempo instead, and
// tests call tlsOnce themselves for the rounds after. Run's other half,
// registerLoop, runs as it does in lvsd.
func startSecureCluster(t *testing.T) *secureCluster {
	t.Helper()
	now := time.Now()
	ca, err := pki.NewCA(now)
	if err != nil {
		t.Fatal(err)
	}
	boot, err := pki.NewBootstrapToken()
	if err != nil {
		t.Fatal(err)
	}
	c := &secureCluster{ca: ca, boot: boot, log: &authLog{},
		admin: clientTLS(t, ca, "alice", pki.RoleAdmin, now, time.Hour)}
	logger := slog.New(slog.NewTextHandler(c.log, &slog.HandlerOptions{Level: slog.LevelDebug}))

	ids := []string{"n1", "n2", "n3"}
	var servers []raft.Server
	for _, id := range ids {
		// Made before the cleanup below is registered, so removed after it.
		dir := &pki.NodeDir{Dir: t.TempDir(), ID: id, Store: pki.NewStore()}
		n := &secureNode{id: id, dir: dir, raftAddr: harness.FreeAddr(t), settled: make(chan struct{})}
		c.nodes = append(c.nodes, n)
		servers = append(servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(n.raftAddr), Suffrage: raft.Voter})
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		for _, n := range c.nodes {
			if n.node != nil {
				_ = n.node.Shutdown()
			}
			if n.api != nil {
				n.api.Stop()
			}
			if n.joins != nil {
				n.joins.Stop()
			}
			if n.srv != nil {
				_ = n.srv.Close()
			}
		}
		wg.Wait()
		if t.Failed() {
			logs := c.log.String()
			t.Logf("the nodes' logs (last 32 KiB):\n%s", logs[max(0, len(logs)-32<<10):])
		}
	})

	for _, n := range c.nodes {
		dirPath := n.dir.Dir
		if n.id == "n1" {
			if err := pki.WriteKey(filepath.Join(dirPath, pki.CAKeyFile), ca.Key); err != nil {
				t.Fatal(err)
			}
			if err := pki.WriteCerts(filepath.Join(dirPath, pki.CACertFile), ca.Cert); err != nil {
				t.Fatal(err)
			}
		}
		if issued, err := n.dir.Renew(ca, now); !issued || err != nil {
			t.Fatalf("issue %s's certificate: %v %v", n.id, issued, err)
		}
		store := n.dir.Store
		n.node, err = raftfsm.Open(raftfsm.Options{ID: n.id, RaftAddr: n.raftAddr, Bootstrap: servers, Timing: testTiming, InMemory: true,
			Logger: logger,
			TLS:    &raftfsm.TransportTLS{Server: store.RaftServerConfig(), Join: store.JoinServerConfig(), Client: store.NodeClientConfig(pki.ALPNRaft)}})
		if err != nil {
			t.Fatalf("open %s: %v", n.id, err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n.apiAddr = lis.Addr().String()
		n.srv, err = New(Options{Node: n.node, ID: n.id, APIAddr: n.apiAddr, RaftAddr: n.raftAddr, Logger: logger.With("server", n.id),
			TLS: &TLS{Store: store, Dir: n.dir, BootstrapKey: boot.Key(), BootstrapIDs: ids}})
		if err != nil {
			t.Fatal(err)
		}
		n.api = n.srv.NewGRPCServer()
		n.joins = n.srv.JoinServer()
		wg.Go(func() { _ = n.api.Serve(lis) })
		wg.Go(func() { _ = n.joins.Serve(n.node.JoinListener()) })
		wg.Go(func() { n.srv.registerLoop(ctx) })
		wg.Go(func() {
			for !n.tlsOnce(ctx) {
				select {
				case <-ctx.Done():
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
			close(n.settled)
		})
	}

	eventually(t, 10*time.Second, func() bool {
		for _, n := range c.nodes {
			st := n.node.FSM().State()
			select {
			case <-n.settled:
			default:
				return false
			}
			if n.node.Status().LeaderID == "" || len(st.GetMembers()) != len(c.nodes) || st.GetCa() == nil ||
				!pki.Exists(filepath.Join(n.dir.Dir, pki.AdminCertFile)) {
				return false
			}
		}
		return true
	}, "a leader, every API address registered, the CA replicated and every node's admin credentials written")
	return c
}

// leader waits for a leader and returns it with the followers in ID order.
func (c *secureCluster) leader(t *testing.T) (leader *secureNode, followers []*secureNode) {
	t.Helper()
	eventually(t, 5*time.Second, func() bool {
		leader, followers = nil, nil
		for _, n := range c.nodes {
			if n.node.Raft().State() == raft.Leader {
				leader = n
			} else {
				followers = append(followers, n)
			}
		}
		return leader != nil
	}, "a leader")
	return leader, followers
}

// dial connects to addr as lvsctl does: it checks that the server has a
// node certificate of the cluster CA and presents cert (nil: none).
func (c *secureCluster) dial(t *testing.T, addr string, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	return dialWithTLS(t, addr, pki.ClientConfig(cert, poolOf(c.ca.Cert)))
}

func dialWithTLS(t *testing.T, addr string, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// checkNodeCert checks that a join brought node id's certificate of the
// cluster CA.
func (c *secureCluster) checkNodeCert(t *testing.T, j *pki.Joined, id string) {
	t.Helper()
	got, err := pki.Verify([][]byte{j.Cert.Raw}, poolOf(c.ca.Cert), x509.ExtKeyUsageServerAuth, time.Now())
	if err != nil || got.Role != pki.RoleNode || got.Name != id || !j.CA.Equal(c.ca.Cert) {
		t.Fatalf("joined certificate: %+v %v, CA %s", got, err, pki.Fingerprint(j.CA))
	}
}

func wantCode(t *testing.T, what string, err error, code codes.Code, fragments ...string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("%s: %v %q, want %v", what, st.Code(), st.Message(), code)
	}
	for _, f := range fragments {
		if !strings.Contains(st.Message(), f) {
			t.Errorf("%s: %q does not mention %q", what, st.Message(), f)
		}
	}
}

// TestTLSClusterWriteThroughFollower: a client's write to a follower is
// forwarded to the leader over the nodes' own mutual TLS, and the history
// on every node names the client, not the follower that passed it on.
func TestTLSClusterWriteThroughFollower(t *testing.T) {
	c := startSecureCluster(t)
	ctx := ctxT(t)
	_, followers := c.leader(t)
	f := followers[0]
	lb := shoalv1.NewLoadBalancerServiceClient(c.dial(t, f.apiAddr, c.admin))

	resp, err := lb.CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)})
	if err != nil {
		t.Fatalf("create through follower %s: %v", f.id, err)
	}
	if resp.GetService().GetName() != "web" || resp.GetSerial() == 0 {
		t.Fatalf("create answered %v", resp)
	}
	// The follower answered once it held the write.
	got, err := lb.GetVirtualService(ctx, &shoalv1.GetVirtualServiceRequest{Name: "web", Consistency: shoalv1.ReadConsistency_READ_CONSISTENCY_STALE})
	if err != nil || got.GetSerial() < resp.GetSerial() {
		t.Fatalf("stale read on %s after its write: %v %v", f.id, got, err)
	}
	for _, n := range c.nodes {
		cc := c.dial(t, n.apiAddr, c.admin)
		list, err := shoalv1.NewLoadBalancerServiceClient(cc).ListVirtualServices(ctx, &shoalv1.ListVirtualServicesRequest{})
		if err != nil || len(list.GetServices()) != 1 || list.GetSerial() != resp.GetSerial() {
			t.Fatalf("list on %s: %v %v", n.id, list, err)
		}
		h, err := shoalv1.NewConfigServiceClient(cc).ListHistory(ctx, &shoalv1.ListHistoryRequest{Limit: 1})
		if err != nil || len(h.GetEntries()) != 1 {
			t.Fatalf("history on %s: %v %v", n.id, h, err)
		}
		if e := h.GetEntries()[0]; e.GetSerial() != resp.GetSerial() || e.GetActor() != "alice" || e.GetRole() != "admin" || e.GetMethod() != "CreateVirtualService" {
			t.Errorf("newest history entry on %s: serial %d by %q (%s) calling %s, want serial %d by alice (admin) calling CreateVirtualService",
				n.id, e.GetSerial(), e.GetActor(), e.GetRole(), e.GetMethod(), resp.GetSerial())
		}
	}
}

// TestTLSClusterRevokeCertificate: a certificate issued through one
// follower and revoked through the other is refused at once by the node
// that took the revocation, and soon by every node.
func TestTLSClusterRevokeCertificate(t *testing.T) {
	c := startSecureCluster(t)
	ctx := ctxT(t)
	_, followers := c.leader(t)
	issuer, revoker := followers[0], followers[1]

	key := newClientKey(t, "ci-bot")
	iss, err := shoalv1.NewClusterServiceClient(c.dial(t, issuer.apiAddr, c.admin)).IssueCertificate(ctx,
		&shoalv1.IssueCertificateRequest{Csr: key.csr, Name: "ci-bot", Role: "viewer"})
	if err != nil {
		t.Fatalf("issue through %s: %v", issuer.id, err)
	}
	leaf, err := x509.ParseCertificate(iss.GetCertificate())
	if err != nil {
		t.Fatal(err)
	}
	serial := iss.GetInfo().GetSerialNumber()
	if serial != leaf.SerialNumber.Text(16) || iss.GetInfo().GetName() != "ci-bot" || iss.GetInfo().GetRole() != "viewer" {
		t.Fatalf("issued %v for certificate %s", iss.GetInfo(), leaf.SerialNumber.Text(16))
	}
	bot := key.tls(leaf)
	botConns := map[string]*grpc.ClientConn{}
	for _, n := range c.nodes {
		botConns[n.id] = c.dial(t, n.apiAddr, bot)
	}
	whoAmI := func(n *secureNode) error {
		resp, err := shoalv1.NewClusterServiceClient(botConns[n.id]).WhoAmI(ctx, &shoalv1.WhoAmIRequest{})
		if err == nil && (resp.GetName() != "ci-bot" || resp.GetRole() != "viewer") {
			return fmt.Errorf("WhoAmI on %s: %v", n.id, resp)
		}
		return err
	}
	for _, n := range c.nodes {
		if err := whoAmI(n); err != nil {
			t.Fatalf("the new certificate on %s: %v", n.id, err)
		}
	}
	// Recorded before it was handed out: the revoker lists it at once.
	admin := shoalv1.NewClusterServiceClient(c.dial(t, revoker.apiAddr, c.admin))
	list, err := admin.ListCertificates(ctx, &shoalv1.ListCertificatesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := findIssued(list, serial); got.GetIssuedBy() != "alice" || got.GetInfo().GetName() != "ci-bot" || got.GetRevoked() != nil {
		t.Fatalf("listed on %s before the revocation: %v", revoker.id, got)
	}

	before := authFailures(t, revoker.srv)["revoked"]
	rev, err := admin.RevokeCertificate(ctx, &shoalv1.RevokeCertificateRequest{SerialNumber: strings.ToUpper(serial)})
	if err != nil {
		t.Fatalf("revoke through %s: %v", revoker.id, err)
	}
	if r := rev.GetCertificate(); r.GetRevokedBy() != "alice" || r.GetRevoked() == nil || r.GetInfo().GetSerialNumber() != serial || r.GetInfo().GetName() != "ci-bot" {
		t.Fatalf("revocation answered %v", r)
	}
	// At once where it was revoked: the write answered once applied here.
	wantCode(t, "the revoked certificate on "+revoker.id, whoAmI(revoker), codes.Unauthenticated, `"ci-bot"`, serial, "revoked by alice")
	if got := authFailures(t, revoker.srv)["revoked"]; got != before+1 {
		t.Errorf("shoal_api_auth_failures_total{reason=\"revoked\"} on %s went from %v to %v, want one more", revoker.id, before, got)
	}
	for _, n := range c.nodes {
		eventually(t, 5*time.Second, func() bool {
			st := status.Convert(whoAmI(n))
			return st.Code() == codes.Unauthenticated && strings.Contains(st.Message(), "revoked by alice")
		}, "refusal of the revoked certificate on "+n.id)
		list, err := shoalv1.NewClusterServiceClient(c.dial(t, n.apiAddr, c.admin)).ListCertificates(ctx, &shoalv1.ListCertificatesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if got := findIssued(list, serial); got.GetRevokedBy() != "alice" || !got.GetRevoked().AsTime().Equal(rev.GetCertificate().GetRevoked().AsTime()) {
			t.Errorf("listed on %s: %v, want revoked by alice at %v", n.id, got, rev.GetCertificate().GetRevoked().AsTime())
		}
	}

	// Revoking it again, as someone else, changes nothing.
	bob := shoalv1.NewClusterServiceClient(c.dial(t, issuer.apiAddr, clientTLS(t, c.ca, "bob", pki.RoleAdmin, time.Now(), time.Hour)))
	again, err := bob.RevokeCertificate(ctx, &shoalv1.RevokeCertificateRequest{SerialNumber: serial})
	if err != nil || again.GetCertificate().GetRevokedBy() != "alice" || !again.GetCertificate().GetRevoked().AsTime().Equal(rev.GetCertificate().GetRevoked().AsTime()) {
		t.Errorf("revoked again by bob: %v %v, want the record of alice's revocation", again.GetCertificate(), err)
	}
}

func findIssued(list *shoalv1.ListCertificatesResponse, serial string) *shoalv1.IssuedCertificate {
	for _, ic := range list.GetCertificates() {
		if ic.GetInfo().GetSerialNumber() == serial {
			return ic
		}
	}
	return nil
}

// TestTLSClusterJoinToken: a token made through one node lets a router
// join through another at once, though that node may not have applied the
// token yet (it then catches up with the leader before it answers).
func TestTLSClusterJoinToken(t *testing.T) {
	c := startSecureCluster(t)
	ctx := ctxT(t)
	leader, followers := c.leader(t)
	tests := []struct {
		name          string
		maker, joiner *secureNode
		id            string
	}{
		{"made on a follower, joined through the other", followers[0], followers[1], "n4"},
		// The leader answers before the followers learn that the token
		// is committed, so the join is likelier to find it missing.
		{"made on the leader, joined through a follower", leader, followers[0], "n5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			made, err := shoalv1.NewClusterServiceClient(c.dial(t, tt.maker.apiAddr, c.admin)).CreateJoinToken(ctx,
				&shoalv1.CreateJoinTokenRequest{Description: tt.name})
			if err != nil {
				t.Fatalf("make a token through %s: %v", tt.maker.id, err)
			}
			if made.GetInfo().GetCreatedBy() != "alice" {
				t.Errorf("token made by %q, want alice", made.GetInfo().GetCreatedBy())
			}
			tok, err := pki.ParseToken(made.GetToken())
			if err != nil {
				t.Fatal(err)
			}
			if tok.CAFingerprint != pki.Fingerprint(c.ca.Cert) {
				t.Errorf("the token pins %s, want the cluster CA %s", tok.CAFingerprint, pki.Fingerprint(c.ca.Cert))
			}
			had := false
			for _, st := range tt.joiner.node.FSM().State().GetJoinTokens() {
				had = had || st.GetInfo().GetId() == tok.ID
			}
			key := newClientKey(t, tt.id)
			j, err := pki.Join(ctx, tt.joiner.apiAddr, tok, tt.id, key.csr)
			if err != nil {
				t.Fatalf("join through %s (which had the token already: %v): %v", tt.joiner.id, had, err)
			}
			c.checkNodeCert(t, j, tt.id)
			t.Logf("%s had applied the token before the join: %v", tt.joiner.id, had)
		})
	}
}

// TestTLSClusterBootstrapJoinOnRaftPort: at a first bootstrap a router
// knows only its peers' Raft addresses; their Raft ports answer joins with
// the bootstrap token, for the bootstrap members only, and nothing else
// that is not Raft.
func TestTLSClusterBootstrapJoinOnRaftPort(t *testing.T) {
	c := startSecureCluster(t)
	ctx := ctxT(t)

	for _, n := range c.nodes {
		key := newClientKey(t, "n3")
		j, err := pki.Join(ctx, n.raftAddr, c.boot, "n3", key.csr)
		if err != nil {
			t.Fatalf("bootstrap join as n3 through %s's Raft port: %v", n.id, err)
		}
		c.checkNodeCert(t, j, "n3")
	}

	otherBoot, err := pki.NewBootstrapToken()
	if err != nil {
		t.Fatal(err)
	}
	made, err := shoalv1.NewClusterServiceClient(c.dial(t, c.nodes[0].apiAddr, c.admin)).CreateJoinToken(ctx, &shoalv1.CreateJoinTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	stateTok, err := pki.ParseToken(made.GetToken())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		tok  pki.Token
		id   string
		code codes.Code // OK: joins
		msg  string
	}{
		{"a token of the state", stateTok, "n6", codes.OK, ""},
		{"bootstrap token for another ID", c.boot, "n9", codes.PermissionDenied, `the bootstrap token is good for the --bootstrap members only, not "n9"`},
		{"another bootstrap token", otherBoot, "n2", codes.Unauthenticated, "not signed with the token's secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raftAddr := c.nodes[1].raftAddr
			key := newClientKey(t, tt.id)
			j, err := pki.Join(ctx, raftAddr, tt.tok, tt.id, key.csr)
			if tt.code == codes.OK {
				if err != nil {
					t.Fatalf("join as %s through the Raft port: %v", tt.id, err)
				}
				c.checkNodeCert(t, j, tt.id)
				return
			}
			wantCode(t, "join as "+tt.id+" through the Raft port", err, tt.code, tt.msg)
		})
	}

	t.Run("nothing but joins", func(t *testing.T) {
		// The join connections reach a server of the join service alone.
		err := getConfig(ctx, c.dial(t, c.nodes[1].raftAddr, c.admin))
		wantCode(t, "GetConfig on the Raft port", err, codes.Unimplemented)
		// Raft connections need a node's certificate.
		cfg := pki.ClientConfig(c.admin, poolOf(c.ca.Cert))
		cfg.NextProtos = []string{pki.ALPNRaft}
		if err := raftRefusal(t, c.nodes[1].raftAddr, cfg, time.Second); err == nil || !strings.Contains(err.Error(), "bad certificate") {
			t.Errorf("Raft with an admin's certificate: %v, want a bad certificate alert", err)
		}
	})
}

// raftRefusal dials a Raft port with cfg and returns the error that ended
// the connection, or nil if it was still open after wait (Raft then waits
// for an RPC). A TLS 1.3 client finishes its handshake before the server
// has checked the client's certificate, so a refusal, an alert, arrives on
// the first read.
func raftRefusal(t *testing.T, addr string, cfg *tls.Config, wait time.Duration) error {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != pki.ALPNRaft {
		t.Fatalf("negotiated %q with %s, want %s", p, addr, pki.ALPNRaft)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	if err == nil {
		t.Fatalf("%s sent Raft bytes unasked", addr)
	}
	return err
}

// TestTLSClusterRemovedMember: a node certificate outlives its node's
// membership, so a removed router's still verifies; the API and the Raft
// ports of the others refuse it all the same.
func TestTLSClusterRemovedMember(t *testing.T) {
	c := startSecureCluster(t)
	ctx := ctxT(t)
	leader, followers := c.leader(t)
	gone, stay := followers[1], followers[0]
	asGone := func(n *secureNode) *grpc.ClientConn {
		return dialWithTLS(t, n.apiAddr, gone.dir.Store.NodeClientConfig("h2"))
	}
	readIndex := func(n *secureNode) error {
		// As a node calls: with its cluster ID.
		ctx := metadata.AppendToOutgoingContext(ctx, clusterIDKey, gone.node.ClusterID())
		_, err := shoalv1.NewPeerServiceClient(asGone(n)).ReadIndex(ctx, &shoalv1.ReadIndexRequest{})
		return err
	}
	nodeStatus := func(n *secureNode) error {
		_, err := shoalv1.NewNodeServiceClient(asGone(n)).GetNodeStatus(ctx, &shoalv1.GetNodeStatusRequest{})
		return err
	}
	raftConf := gone.dir.Store.NodeClientConfig(pki.ALPNRaft)

	// A member: what it may do, it can.
	if err := readIndex(leader); err != nil {
		t.Fatalf("%s asks the leader for a read index: %v", gone.id, err)
	}
	for _, n := range []*secureNode{leader, stay} {
		if err := nodeStatus(n); err != nil {
			t.Fatalf("%s asks %s for its status: %v", gone.id, n.id, err)
		}
		if err := raftRefusal(t, n.raftAddr, raftConf, 300*time.Millisecond); err != nil {
			t.Fatalf("%s's Raft port refused member %s: %v", n.id, gone.id, err)
		}
	}

	if _, err := shoalv1.NewClusterServiceClient(c.dial(t, leader.apiAddr, c.admin)).RemoveMember(ctx, &shoalv1.RemoveMemberRequest{Id: gone.id}); err != nil {
		t.Fatalf("remove %s: %v", gone.id, err)
	}
	// The removal committed on the leader and on the one follower left,
	// which is the quorum of the new configuration: both know at once.
	before := authFailures(t, leader.srv)["not-a-member"]
	wantCode(t, gone.id+" asks the leader for a read index", readIndex(leader), codes.PermissionDenied, "node "+gone.id+" is not a member")
	// At least: the removed node's own register loop may be refused too.
	if got := authFailures(t, leader.srv)["not-a-member"]; got < before+1 {
		t.Errorf("shoal_api_auth_failures_total{reason=\"not-a-member\"} went from %v to %v, want at least one more", before, got)
	}
	for _, n := range []*secureNode{leader, stay} {
		wantCode(t, gone.id+" asks "+n.id+" for its status", nodeStatus(n), codes.PermissionDenied, "not a member")
		if err := raftRefusal(t, n.raftAddr, raftConf, 5*time.Second); err == nil || !strings.Contains(err.Error(), "bad certificate") {
			t.Errorf("%s's Raft port after %s's removal: %v, want a bad certificate alert", n.id, gone.id, err)
		}
	}
	// The two left carry on.
	if _, err := shoalv1.NewLoadBalancerServiceClient(c.dial(t, stay.apiAddr, c.admin)).CreateVirtualService(ctx,
		&shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)}); err != nil {
		t.Fatalf("write through %s after the removal: %v", stay.id, err)
	}
}

// TestTLSClusterReplacesRevokedAdmin: root's admin credentials on a router
// are its own, never recorded in the cluster; revoked (say, because the
// file was copied off), that router writes new ones at its next round,
// and the others keep theirs.
func TestTLSClusterReplacesRevokedAdmin(t *testing.T) {
	c := startSecureCluster(t)
	ctx := ctxT(t)
	leader, followers := c.leader(t)
	x := followers[0]
	load := func(n *secureNode) *tls.Certificate {
		t.Helper()
		cert, err := tls.LoadX509KeyPair(filepath.Join(n.dir.Dir, pki.AdminCertFile), filepath.Join(n.dir.Dir, pki.AdminKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		return &cert
	}
	whoAmI := func(n *secureNode, cert *tls.Certificate) (*shoalv1.WhoAmIResponse, error) {
		return shoalv1.NewClusterServiceClient(c.dial(t, n.apiAddr, cert)).WhoAmI(ctx, &shoalv1.WhoAmIRequest{})
	}
	serials := map[string]string{}
	for _, n := range c.nodes {
		serials[n.id] = n.dir.AdminSerial()
	}
	old := serials[x.id]
	oldCert := load(x)
	if who, err := whoAmI(x, oldCert); err != nil || who.GetName() != "root@"+x.id || who.GetRole() != "admin" {
		t.Fatalf("root's credentials on %s: %v %v", x.id, who, err)
	}

	rev, err := shoalv1.NewClusterServiceClient(c.dial(t, leader.apiAddr, c.admin)).RevokeCertificate(ctx, &shoalv1.RevokeCertificateRequest{SerialNumber: old})
	if err != nil {
		t.Fatalf("revoke root@%s's certificate: %v", x.id, err)
	}
	// Never recorded, so kept as long as a client certificate can live.
	r := rev.GetCertificate()
	if r.GetRevokedBy() != "alice" || r.GetInfo().GetSerialNumber() != old ||
		!r.GetInfo().GetNotAfter().AsTime().Equal(r.GetRevoked().AsTime().Add(pki.MaxClientLifetime)) {
		t.Fatalf("revocation of an unrecorded certificate answered %v", r)
	}

	// x's rounds, as its tls loop would run them.
	eventually(t, 5*time.Second, func() bool {
		x.tlsOnce(ctx)
		return x.dir.AdminSerial() != old
	}, "new admin credentials on "+x.id)
	if x.srv.revoked(x.dir.AdminSerial()) != nil {
		t.Errorf("%s's new admin certificate %s is revoked", x.id, x.dir.AdminSerial())
	}
	newCert := load(x)
	for _, n := range c.nodes {
		if who, err := whoAmI(n, newCert); err != nil || who.GetName() != "root@"+x.id || who.GetRole() != "admin" {
			t.Errorf("root@%s's new credentials on %s: %v %v", x.id, n.id, who, err)
		}
	}
	_, err = whoAmI(x, oldCert)
	wantCode(t, "root@"+x.id+"'s old credentials", err, codes.Unauthenticated, "revoked by alice")

	for _, n := range c.nodes {
		if n == x {
			continue
		}
		eventually(t, 5*time.Second, func() bool { return n.srv.revoked(old) != nil }, n.id+" to apply the revocation")
		n.tlsOnce(ctx)
		if got := n.dir.AdminSerial(); got != serials[n.id] {
			t.Errorf("%s replaced its admin certificate %s with %s, though only %s's was revoked", n.id, serials[n.id], got, x.id)
		}
	}
	if bytes.Equal(newCert.Certificate[0], oldCert.Certificate[0]) {
		t.Error("the new admin certificate is the old one")
	}
}

func poolOf(ca *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca)
	return p
}
