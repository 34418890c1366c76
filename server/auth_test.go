package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"github.com/shoal-lb/shoal/raftfsm"
)

// authLog is a log the test reads back: nothing a node logs may hold a
// token's secret or a private key.
type authLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *authLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *authLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tlsNode is a one-node cluster serving the API over mutual TLS, with the
// cluster CA the test made.
type tlsNode struct {
	ca   *pki.CA
	dir  *pki.NodeDir
	node *raftfsm.Node
	srv  *Server
	addr string
	log  *authLog
}

// startTLSNode starts n1 as lvsd does after a first bootstrap: the CA key
// and the node certificate in its TLS directory, Run proposing the CA to
// the replicated state and writing root's admin credentials.
func startTLSNode(t *testing.T) *tlsNode {
	t.Helper()
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dirPath := t.TempDir()
	if err := pki.WriteKey(filepath.Join(dirPath, pki.CAKeyFile), ca.Key); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteCerts(filepath.Join(dirPath, pki.CACertFile), ca.Cert); err != nil {
		t.Fatal(err)
	}
	dir := &pki.NodeDir{Dir: dirPath, ID: "n1", Store: pki.NewStore()}
	if issued, err := dir.Renew(ca, time.Now()); !issued || err != nil {
		t.Fatalf("issue n1's certificate: %v %v", issued, err)
	}

	raftAddr, tr := raft.NewInmemTransport("n1")
	node, err := raftfsm.Open(raftfsm.Options{ID: "n1", RaftAddr: string(raftAddr), Transport: tr, InMemory: true, Timing: testTiming,
		Bootstrap: []raft.Server{{ID: "n1", Address: raftAddr, Suffrage: raft.Voter}}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &authLog{}
	srv, err := New(Options{Node: node, ID: "n1", APIAddr: lis.Addr().String(), RaftAddr: string(raftAddr),
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		TLS:    &TLS{Store: dir.Store, Dir: dir}})
	if err != nil {
		t.Fatal(err)
	}
	gs := srv.NewGRPCServer()
	go func() { _ = gs.Serve(lis) }()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = node.Shutdown()
		gs.Stop()
		_ = srv.Close()
		_ = tr.Close()
		if t.Failed() {
			t.Logf("n1's log:\n%s", logs)
		}
	})
	n := &tlsNode{ca: ca, dir: dir, node: node, srv: srv, addr: lis.Addr().String(), log: logs}
	eventually(t, 10*time.Second, func() bool {
		st := node.FSM().State()
		return node.Status().Role == "leader" && len(st.GetMembers()) == 1 && st.GetCa() != nil &&
			pki.Exists(filepath.Join(dirPath, pki.AdminCertFile))
	}, "n1 leading, registered, with the CA replicated and admin credentials written")
	return n
}

// dial connects to the node as lvsctl does, presenting cert (nil: none).
func (n *tlsNode) dial(t *testing.T, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(n.ca.Cert)
	cc, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientConfig(cert, roots))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// clientTLS is a client certificate of ca, issued at now for life.
func clientTLS(t *testing.T, ca *pki.CA, name string, role pki.Role, now time.Time, life time.Duration) *tls.Certificate {
	t.Helper()
	k := newClientKey(t, name)
	cert, err := ca.SignClient(k.parsed, name, role, now, life)
	if err != nil {
		t.Fatal(err)
	}
	return k.tls(cert)
}

// clientKey is a fresh key with a certificate request for it.
type clientKey struct {
	key    crypto.Signer
	csr    []byte
	parsed *x509.CertificateRequest
}

func newClientKey(t *testing.T, name string) clientKey {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := pki.NewCSR(key, name, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(der)
	if err != nil {
		t.Fatal(err)
	}
	return clientKey{key, der, csr}
}

func (k clientKey) tls(cert *x509.Certificate) *tls.Certificate {
	return &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: k.key, Leaf: cert}
}

// authFailures reads shoal_api_auth_failures_total from /metrics.
func authFailures(t *testing.T, s *Server) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	s.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(rec.Body.String()))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, `shoal_api_auth_failures_total{reason="`)
		if !ok {
			continue
		}
		reason, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			t.Fatalf("metrics line %q", line)
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[reason] = v
	}
	return out
}

func metricsBody(s *Server) string {
	rec := httptest.NewRecorder()
	s.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

type rpc func(ctx context.Context, cc *grpc.ClientConn) error

func getConfig(ctx context.Context, cc *grpc.ClientConn) error {
	_, err := shoalv1.NewConfigServiceClient(cc).GetConfig(ctx, &shoalv1.GetConfigRequest{})
	return err
}

func createService(name, vip string) rpc {
	return func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := shoalv1.NewLoadBalancerServiceClient(cc).CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService(name, vip, 80)})
		return err
	}
}

func applyConfig(ctx context.Context, cc *grpc.ClientConn) error {
	_, err := shoalv1.NewConfigServiceClient(cc).ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{Config: &shoalv1.Config{}})
	return err
}

func updateRealServer(rs *shoalv1.RealServer, paths ...string) rpc {
	return func(ctx context.Context, cc *grpc.ClientConn) error {
		req := &shoalv1.UpdateRealServerRequest{Service: "web", RealServer: rs}
		if paths != nil {
			req.UpdateMask = &fieldmaskpb.FieldMask{Paths: paths}
		}
		_, err := shoalv1.NewLoadBalancerServiceClient(cc).UpdateRealServer(ctx, req)
		return err
	}
}

func peerApply(ctx context.Context, cc *grpc.ClientConn) error {
	_, err := shoalv1.NewPeerServiceClient(cc).ApplyCommand(ctx, &shoalv1.ApplyCommandRequest{Command: &shoalv1.Command{
		Op: &shoalv1.Command_CreateVirtualService{CreateVirtualService: &shoalv1.CreateVirtualServiceRequest{Service: webService("evil", "10.0.0.66", 80)}}}})
	return err
}

func watchConfig(ctx context.Context, cc *grpc.ClientConn) error {
	stream, err := shoalv1.NewConfigServiceClient(cc).Watch(ctx, &shoalv1.WatchRequest{Initial: true})
	if err != nil {
		return err
	}
	_, err = stream.Recv()
	return err
}

func healthCheck(ctx context.Context, cc *grpc.ClientConn) error {
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health: %v", resp.GetStatus())
	}
	return err
}

func listServices(ctx context.Context, cc *grpc.ClientConn) error {
	stream, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		return err
	}
	// Send says only io.EOF when the server has ended the stream already
	// (refused it); Recv then has the status.
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	resp, err := stream.Recv()
	if err != nil {
		return err
	}
	for _, s := range resp.GetListServicesResponse().GetService() {
		if s.GetName() == shoalv1.ConfigService_ServiceDesc.ServiceName {
			return stream.CloseSend()
		}
	}
	return fmt.Errorf("reflection lists %v without %s", resp.GetListServicesResponse().GetService(), shoalv1.ConfigService_ServiceDesc.ServiceName)
}

func TestAPIAuthorization(t *testing.T) {
	n := startTLSNode(t)
	ctx := ctxT(t)
	now := time.Now()

	adminCert, err := tls.LoadX509KeyPair(filepath.Join(n.dir.Dir, pki.AdminCertFile), filepath.Join(n.dir.Dir, pki.AdminKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	admin := n.dial(t, &adminCert)
	anon := n.dial(t, nil)
	foreignCA, err := pki.NewCA(now)
	if err != nil {
		t.Fatal(err)
	}
	foreign := n.dial(t, clientTLS(t, foreignCA, "mallory", pki.RoleAdmin, now, time.Hour))
	expired := n.dial(t, clientTLS(t, n.ca, "old", pki.RoleAdmin, now.Add(-48*time.Hour), time.Hour))
	viewer := n.dial(t, clientTLS(t, n.ca, "watcher", pki.RoleViewer, now, time.Hour))
	// n1's own certificate, as another member would present its own.
	n1Cert, err := tls.LoadX509KeyPair(filepath.Join(n.dir.Dir, pki.NodeCertFile), filepath.Join(n.dir.Dir, pki.NodeKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	nodeConn := n.dial(t, &n1Cert)
	// A router that has joined with a token but is not in the group yet.
	joinerKey := newClientKey(t, "n2")
	joinerLeaf, err := n.ca.SignNode(joinerKey.parsed, "n2", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	joiner := n.dial(t, joinerKey.tls(joinerLeaf))

	// The operator's certificate comes from the API, as lvsctl certs
	// issue gets one.
	opKey := newClientKey(t, "ops-bot")
	issued, err := shoalv1.NewClusterServiceClient(admin).IssueCertificate(ctx, &shoalv1.IssueCertificateRequest{Csr: opKey.csr, Name: "ops-bot", Role: "operator"})
	if err != nil {
		t.Fatalf("issue an operator certificate: %v", err)
	}
	if issued.GetInfo().GetRole() != "operator" || issued.GetInfo().GetCaFingerprint() != pki.Fingerprint(n.ca.Cert) || !bytes.Equal(issued.GetCaCertificate(), n.ca.Cert.Raw) {
		t.Errorf("issued certificate info %v", issued.GetInfo())
	}
	opLeaf, err := x509.ParseCertificate(issued.GetCertificate())
	if err != nil {
		t.Fatal(err)
	}
	operator := n.dial(t, opKey.tls(opLeaf))

	// Something for the operator to change.
	lb := shoalv1.NewLoadBalancerServiceClient(admin)
	if _, err := lb.CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)}); err != nil {
		t.Fatalf("admin creates a service: %v", err)
	}
	if _, err := lb.AddRealServer(ctx, &shoalv1.AddRealServerRequest{Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.1.1", Weight: proto.Uint32(1)}}); err != nil {
		t.Fatalf("admin adds a real server: %v", err)
	}
	rs := func(weight uint32) *shoalv1.RealServer {
		return &shoalv1.RealServer{Address: "10.0.1.1", Weight: proto.Uint32(weight), Forward: "dr"}
	}
	joinTok, err := shoalv1.NewClusterServiceClient(admin).CreateJoinToken(ctx, &shoalv1.CreateJoinTokenRequest{Description: "for the denials below"})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("refused", func(t *testing.T) {
		tests := []struct {
			name   string
			cc     *grpc.ClientConn
			call   rpc
			code   codes.Code
			msg    string
			reason string
		}{
			{"no certificate reads", anon, getConfig, codes.Unauthenticated, "lvsctl certs issue", pki.ReasonNoCertificate},
			{"no certificate writes", anon, createService("evil", "10.0.0.66"), codes.Unauthenticated, "lvsctl certs issue", pki.ReasonNoCertificate},
			{"no certificate watches", anon, watchConfig, codes.Unauthenticated, "lvsctl certs issue", pki.ReasonNoCertificate},
			{"no certificate asks for health", anon, healthCheck, codes.Unauthenticated, "lvsctl certs issue", pki.ReasonNoCertificate},
			{"no certificate lists services", anon, listServices, codes.Unauthenticated, "lvsctl certs issue", pki.ReasonNoCertificate},
			{"another CA writes", foreign, createService("evil", "10.0.0.66"), codes.Unauthenticated, "not signed by this cluster's CA", pki.ReasonUnknownCA},
			{"another CA reads", foreign, getConfig, codes.Unauthenticated, "not signed by this cluster's CA", pki.ReasonUnknownCA},
			{"expired writes", expired, applyConfig, codes.Unauthenticated, "expired at", pki.ReasonExpired},
			{"node applies a config", nodeConn, applyConfig, codes.PermissionDenied, "node's, not a client's", "role"},
			{"node creates a service", nodeConn, createService("evil", "10.0.0.66"), codes.PermissionDenied, "needs role admin", "role"},
			{"viewer creates a service", viewer, createService("evil", "10.0.0.66"), codes.PermissionDenied, "needs role admin", "role"},
			{"viewer updates a weight", viewer, updateRealServer(rs(5), "weight"), codes.PermissionDenied, "needs role operator", "role"},
			{"viewer applies a raft command", viewer, peerApply, codes.PermissionDenied, "for shoal nodes only", "role"},
			{"admin applies a raft command", admin, peerApply, codes.PermissionDenied, "for shoal nodes only", "role"},
			{"viewer makes a join token", viewer, func(ctx context.Context, cc *grpc.ClientConn) error {
				_, err := shoalv1.NewClusterServiceClient(cc).CreateJoinToken(ctx, &shoalv1.CreateJoinTokenRequest{})
				return err
			}, codes.PermissionDenied, "needs role admin", "role"},
			{"operator lists join tokens", operator, func(ctx context.Context, cc *grpc.ClientConn) error {
				_, err := shoalv1.NewClusterServiceClient(cc).ListJoinTokens(ctx, &shoalv1.ListJoinTokensRequest{})
				return err
			}, codes.PermissionDenied, "needs role admin", "role"},
			{"operator issues itself an admin certificate", operator, func(ctx context.Context, cc *grpc.ClientConn) error {
				_, err := shoalv1.NewClusterServiceClient(cc).IssueCertificate(ctx, &shoalv1.IssueCertificateRequest{Csr: opKey.csr, Name: "ops-bot", Role: "admin"})
				return err
			}, codes.PermissionDenied, "needs role admin", "role"},
			{"operator applies a config", operator, applyConfig, codes.PermissionDenied, "needs role admin", "role"},
			{"operator deletes a service", operator, func(ctx context.Context, cc *grpc.ClientConn) error {
				_, err := shoalv1.NewLoadBalancerServiceClient(cc).DeleteVirtualService(ctx, &shoalv1.DeleteVirtualServiceRequest{Name: "web"})
				return err
			}, codes.PermissionDenied, "needs role admin", "role"},
			{"operator changes forwarding", operator, updateRealServer(rs(5), "forward"), codes.PermissionDenied, "changing forward of a real server needs role admin", "role"},
			{"operator changes weight and forwarding", operator, updateRealServer(rs(5), "weight", "forward"), codes.PermissionDenied, "forward", "role"},
			{"operator updates without a mask", operator, updateRealServer(rs(5)), codes.PermissionDenied, "without an update_mask", "role"},
			{"operator updates with an empty mask", operator, updateRealServer(rs(5), []string{}...), codes.PermissionDenied, "without an update_mask", "role"},
			{"operator removes a member", operator, func(ctx context.Context, cc *grpc.ClientConn) error {
				_, err := shoalv1.NewClusterServiceClient(cc).RemoveMember(ctx, &shoalv1.RemoveMemberRequest{Id: "n1"})
				return err
			}, codes.PermissionDenied, "needs role admin", "role"},
			// A node certificate is good for a member only; the code is
			// what matters here, the wording is the membership check's.
			{"joining node reads the config", joiner, getConfig, codes.PermissionDenied, "", ""},
			{"node adds another node", nodeConn, func(ctx context.Context, cc *grpc.ClientConn) error {
				_, err := shoalv1.NewClusterServiceClient(cc).AddMember(ctx, &shoalv1.AddMemberRequest{Id: "n3", RaftAddress: "127.0.0.1:1"})
				return err
			}, codes.PermissionDenied, "may add only itself", "role"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := n.node.FSM().State()
				failures := authFailures(t, n.srv)
				err := tt.call(ctx, tt.cc)
				st := status.Convert(err)
				if st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
					t.Errorf("got %v %q, want %v mentioning %q", st.Code(), st.Message(), tt.code, tt.msg)
				}
				after := authFailures(t, n.srv)
				if tt.reason != "" && after[tt.reason] != failures[tt.reason]+1 {
					t.Errorf("shoal_api_auth_failures_total{reason=%q} went from %v to %v, want one more", tt.reason, failures[tt.reason], after[tt.reason])
				}
				if !proto.Equal(n.node.FSM().State(), before) {
					t.Error("a refused call changed the replicated state")
				}
				got, err := shoalv1.NewConfigServiceClient(admin).GetConfig(ctx, &shoalv1.GetConfigRequest{})
				if err != nil || !proto.Equal(got.GetConfig(), before.GetConfig()) {
					t.Errorf("the config after a refused call: serial %d, want %d (%v)", got.GetConfig().GetSerial(), before.GetConfig().GetSerial(), err)
				}
			})
		}
	})

	t.Run("allowed", func(t *testing.T) {
		tests := []struct {
			name string
			cc   *grpc.ClientConn
			call rpc
		}{
			{"node reads the config", nodeConn, getConfig},
			{"node asks for cluster status", nodeConn, func(ctx context.Context, cc *grpc.ClientConn) error {
				_, err := shoalv1.NewClusterServiceClient(cc).GetClusterStatus(ctx, &shoalv1.GetClusterStatusRequest{})
				return err
			}},
			{"joining node adds itself", joiner, func(ctx context.Context, cc *grpc.ClientConn) error {
				// Past the role check, refused for the missing address,
				// so that nothing joins the group.
				_, err := shoalv1.NewClusterServiceClient(cc).AddMember(ctx, &shoalv1.AddMemberRequest{Id: "n2"})
				if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "raft_address") {
					return fmt.Errorf("node adds itself without an address: %v, want InvalidArgument naming raft_address", err)
				}
				return nil
			}},
			{"viewer reads the config", viewer, getConfig},
			{"viewer watches", viewer, watchConfig},
			{"viewer lists services", viewer, func(ctx context.Context, cc *grpc.ClientConn) error {
				resp, err := shoalv1.NewLoadBalancerServiceClient(cc).ListVirtualServices(ctx, &shoalv1.ListVirtualServicesRequest{})
				if err == nil && len(resp.GetServices()) != 1 {
					return fmt.Errorf("services %v", resp.GetServices())
				}
				return err
			}},
			{"viewer reads the history", viewer, func(ctx context.Context, cc *grpc.ClientConn) error {
				_, err := shoalv1.NewConfigServiceClient(cc).ListHistory(ctx, &shoalv1.ListHistoryRequest{})
				return err
			}},
			{"viewer asks for node status", viewer, func(ctx context.Context, cc *grpc.ClientConn) error {
				_, err := shoalv1.NewNodeServiceClient(cc).GetNodeStatus(ctx, &shoalv1.GetNodeStatusRequest{})
				return err
			}},
			{"viewer asks for health", viewer, healthCheck},
			{"viewer lists services by reflection", viewer, listServices},
			{"viewer asks who it is", viewer, func(ctx context.Context, cc *grpc.ClientConn) error {
				resp, err := shoalv1.NewClusterServiceClient(cc).WhoAmI(ctx, &shoalv1.WhoAmIRequest{})
				if err == nil && (resp.GetName() != "watcher" || resp.GetRole() != "viewer" || !resp.GetTls() || resp.GetCertificate().GetName() != "watcher") {
					return fmt.Errorf("WhoAmI: %v", resp)
				}
				return err
			}},
			{"operator reads", operator, getConfig},
			{"operator transfers leadership", operator, func(ctx context.Context, cc *grpc.ClientConn) error {
				// Alone, there is no one to transfer to: anything but a
				// refusal for the role will do.
				_, err := shoalv1.NewClusterServiceClient(cc).TransferLeadership(ctx, &shoalv1.TransferLeadershipRequest{})
				if c := status.Code(err); c == codes.PermissionDenied || c == codes.Unauthenticated {
					return err
				}
				return nil
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := tt.call(ctx, tt.cc); err != nil {
					t.Fatal(err)
				}
			})
		}
	})

	t.Run("operator sets weight and active", func(t *testing.T) {
		before := n.node.FSM().State().GetConfig().GetSerial()
		lbOp := shoalv1.NewLoadBalancerServiceClient(operator)
		resp, err := lbOp.UpdateRealServer(ctx, &shoalv1.UpdateRealServerRequest{Service: "web", RealServer: rs(7), UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"weight"}}})
		if err != nil {
			t.Fatalf("operator sets a weight: %v", err)
		}
		got := resp.GetService().GetRealServers()[0]
		if resp.GetSerial() != before+1 || got.GetWeight() != 7 || got.GetForward() == "dr" {
			t.Errorf("after the weight change: serial %d (was %d), %v", resp.GetSerial(), before, got)
		}
		drained, err := lbOp.UpdateRealServer(ctx, &shoalv1.UpdateRealServerRequest{Service: "web",
			RealServer: &shoalv1.RealServer{Address: "10.0.1.1", Active: proto.Bool(false)}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"active"}}})
		if err != nil || drained.GetService().GetRealServers()[0].GetActive() {
			t.Fatalf("operator drains a real server: %v %v", drained, err)
		}
		h, err := shoalv1.NewConfigServiceClient(viewer).ListHistory(ctx, &shoalv1.ListHistoryRequest{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, e := range h.GetEntries() {
			if e.GetSerial() == before+1 {
				found = true
				if e.GetActor() != "ops-bot" || e.GetRole() != "operator" || e.GetMethod() != "UpdateRealServer" {
					t.Errorf("history names %q (%s) calling %s, want ops-bot (operator) calling UpdateRealServer", e.GetActor(), e.GetRole(), e.GetMethod())
				}
			}
		}
		if !found {
			t.Errorf("no history entry for serial %d", before+1)
		}
	})

	t.Run("admin does everything", func(t *testing.T) {
		resp, err := lb.UpdateRealServer(ctx, &shoalv1.UpdateRealServerRequest{Service: "web", RealServer: rs(3), UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"weight", "forward"}}})
		if err != nil || resp.GetService().GetRealServers()[0].GetForward() != "dr" {
			t.Fatalf("admin changes forwarding: %v %v", resp, err)
		}
		if _, err := lb.CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("dns", "10.0.0.2", 53)}); err != nil {
			t.Fatalf("admin creates a service: %v", err)
		}
		h, err := shoalv1.NewConfigServiceClient(admin).ListHistory(ctx, &shoalv1.ListHistoryRequest{Limit: 1})
		if err != nil || len(h.GetEntries()) != 1 {
			t.Fatalf("history: %v %v", h, err)
		}
		if e := h.GetEntries()[0]; e.GetActor() != "root@n1" || e.GetRole() != "admin" || e.GetMethod() != "CreateVirtualService" || e.GetSerial() != h.GetSerial() {
			t.Errorf("newest history entry %v, want root@n1 (admin) calling CreateVirtualService", e)
		}
		cur, err := shoalv1.NewConfigServiceClient(admin).GetConfig(ctx, &shoalv1.GetConfigRequest{})
		if err != nil {
			t.Fatal(err)
		}
		cfg := proto.Clone(cur.GetConfig()).(*shoalv1.Config)
		cfg.Services = cfg.Services[:1]
		if _, err := shoalv1.NewConfigServiceClient(admin).ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{Config: cfg, ExpectedSerial: cur.GetConfig().GetSerial()}); err != nil {
			t.Fatalf("admin applies a config: %v", err)
		}
		if _, err := shoalv1.NewClusterServiceClient(admin).ListJoinTokens(ctx, &shoalv1.ListJoinTokensRequest{}); err != nil {
			t.Fatalf("admin lists join tokens: %v", err)
		}
		for _, call := range []rpc{getConfig, watchConfig, healthCheck, listServices} {
			if err := call(ctx, admin); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("join", func(t *testing.T) {
		tok, err := pki.ParseToken(joinTok.GetToken())
		if err != nil {
			t.Fatal(err)
		}
		if tok.CAFingerprint != pki.Fingerprint(n.ca.Cert) {
			t.Errorf("the token pins %s, want the cluster CA %s", tok.CAFingerprint, pki.Fingerprint(n.ca.Cert))
		}
		key := newClientKey(t, "n7")
		j, err := pki.Join(ctx, n.addr, tok, "n7", key.csr)
		if err != nil {
			t.Fatalf("join with a fresh token: %v", err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(n.ca.Cert)
		if id, err := pki.Verify([][]byte{j.Cert.Raw}, roots, x509.ExtKeyUsageServerAuth, time.Now()); err != nil || id.Role != pki.RoleNode || id.Name != "n7" || !j.CA.Equal(n.ca.Cert) {
			t.Fatalf("joined certificate: %+v %v", id, err)
		}

		cluster := shoalv1.NewClusterServiceClient(admin)
		if _, err := cluster.DeleteJoinToken(ctx, &shoalv1.DeleteJoinTokenRequest{Id: tok.ID}); err != nil {
			t.Fatal(err)
		}
		failures := authFailures(t, n.srv)
		_, err = pki.Join(ctx, n.addr, tok, "n8", key.csr)
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("join with a deleted token: %v, want Unauthenticated", err)
		}
		if got := authFailures(t, n.srv)["join-token"]; got != failures["join-token"]+1 {
			t.Errorf("join-token failures %v, want %v", got, failures["join-token"]+1)
		}
		// A token someone made up, with this cluster's fingerprint.
		made, err := pki.NewToken(pki.Fingerprint(n.ca.Cert))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pki.Join(ctx, n.addr, made, "n8", key.csr); status.Code(err) != codes.Unauthenticated {
			t.Errorf("join with an unknown token: %v, want Unauthenticated", err)
		}
	})

	t.Run("issue certificate refuses", func(t *testing.T) {
		key := newClientKey(t, "x")
		cluster := shoalv1.NewClusterServiceClient(admin)
		tests := []struct {
			name  string
			req   *shoalv1.IssueCertificateRequest
			field string
		}{
			{"bad role", &shoalv1.IssueCertificateRequest{Csr: key.csr, Name: "x", Role: "root"}, "role"},
			{"node role", &shoalv1.IssueCertificateRequest{Csr: key.csr, Name: "x", Role: "node"}, "role"},
			{"bad name", &shoalv1.IssueCertificateRequest{Csr: key.csr, Name: "has space", Role: "viewer"}, "name"},
			{"bad csr", &shoalv1.IssueCertificateRequest{Csr: []byte("csr"), Name: "x", Role: "viewer"}, "csr"},
		}
		for _, tt := range tests {
			_, err := cluster.IssueCertificate(ctx, tt.req)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), tt.field) {
				t.Errorf("%s: %v %q, want InvalidArgument naming %s", tt.name, st.Code(), st.Message(), tt.field)
				continue
			}
			var fields []string
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					for _, v := range br.GetFieldViolations() {
						fields = append(fields, v.GetField())
					}
				}
			}
			if len(fields) != 1 || fields[0] != tt.field {
				t.Errorf("%s: field violations %v, want [%s]", tt.name, fields, tt.field)
			}
		}
	})

	t.Run("metrics and logs keep secrets", func(t *testing.T) {
		failures := authFailures(t, n.srv)
		for _, reason := range []string{pki.ReasonNoCertificate, pki.ReasonUnknownCA, pki.ReasonExpired, "role", "join-token"} {
			if failures[reason] < 1 {
				t.Errorf("no auth failure counted for %s: %v", reason, failures)
			}
		}
		tok, _ := pki.ParseToken(joinTok.GetToken())
		body := metricsBody(n.srv)
		for what, s := range map[string]string{"metrics": body, "log": n.log.String()} {
			if strings.Contains(s, tok.Secret) {
				t.Errorf("the %s holds a join token's secret", what)
			}
			if strings.Contains(s, "PRIVATE KEY") {
				t.Errorf("the %s holds a private key", what)
			}
		}
		var expiry float64
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, "shoal_tls_certificate_expiry_timestamp_seconds "); ok {
				expiry, _ = strconv.ParseFloat(v, 64)
			}
		}
		if want := n.dir.Store.Leaf().NotAfter.Unix(); int64(expiry) != want {
			t.Errorf("shoal_tls_certificate_expiry_timestamp_seconds %v, want %d", expiry, want)
		}
	})
}

// TestCertificateExpiresOnOpenConnection: a connection outlives the
// certificate it was made with; its calls after the expiry are refused.
func TestCertificateExpiresOnOpenConnection(t *testing.T) {
	n := startTLSNode(t)
	ctx := ctxT(t)
	// x509 keeps whole seconds: the certificate may end up to a second
	// sooner than asked, which must still leave time for the first call.
	cert := clientTLS(t, n.ca, "brief", pki.RoleViewer, time.Now(), 3*time.Second)
	cc := n.dial(t, cert)
	if err := getConfig(ctx, cc); err != nil {
		t.Fatalf("before the expiry: %v", err)
	}
	// Wait for the clock, not for the server: the certificate's end is a
	// time, and nothing happens at it.
	eventually(t, 5*time.Second, func() bool { return time.Now().After(cert.Leaf.NotAfter) }, "the certificate's expiry")
	failures := authFailures(t, n.srv)
	err := getConfig(ctx, cc)
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "expired at") {
		t.Fatalf("after the expiry: %v, want Unauthenticated naming the expiry", err)
	}
	if got := authFailures(t, n.srv)[pki.ReasonExpired]; got != failures[pki.ReasonExpired]+1 {
		t.Errorf("expired failures %v, want %v", got, failures[pki.ReasonExpired]+1)
	}
}

// TestEveryMethodHasARole keeps methodRoles complete: a method without an
// entry is refused to everyone, and an entry without a method is a role
// table that says more than the server does.
func TestEveryMethodHasARole(t *testing.T) {
	nodes := startCluster(t, 1, clusterOptions{})
	served := map[string]bool{}
	for svc, info := range nodes[0].gs.GetServiceInfo() {
		for _, m := range info.Methods {
			name := "/" + svc + "/" + m.Name
			served[name] = true
			if _, ok := methodRoles[name]; !ok {
				t.Errorf("%s has no entry in methodRoles", name)
			}
		}
	}
	if len(served) < 20 {
		t.Fatalf("only %d methods served: %v", len(served), served)
	}
	for name, r := range methodRoles {
		if !served[name] {
			t.Errorf("methodRoles names %s, which is not served", name)
		}
		if r.need != "" && r.need != pki.RoleNode && !r.need.Client() {
			t.Errorf("%s needs %q, not a role", name, r.need)
		}
	}
	// Only the join service is open to callers without a certificate.
	for name, r := range methodRoles {
		if r.need == "" && name != shoalv1.JoinService_Join_FullMethodName {
			t.Errorf("%s is open to callers without a certificate", name)
		}
	}
}
