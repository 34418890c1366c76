package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TLS is a node's TLS setup as the server uses it.
type TLS struct {
	// Store is the live certificate and CAs; the API's credentials and the
	// peer connections read it.
	Store *pki.Store
	// Dir is the node's TLS directory when the cluster's own CA signs its
	// certificates (renewed by Run); nil with an operator's PKI.
	Dir *pki.NodeDir
	// Files is an operator's PKI, reloaded by Run when the files change.
	Files *pki.Files
	// BootstrapKey, at a first bootstrap, is the key of the token the
	// routers share, good for the node IDs in BootstrapIDs only.
	BootstrapKey []byte
	BootstrapIDs []string
}

// Token lifetimes.
const (
	defaultTokenTTL = 24 * time.Hour
	maxTokenTTL     = 7 * 24 * time.Hour
	// bootstrapWindow is how long after the cluster CA was made the
	// bootstrap token is honoured: long enough for the routers of a first
	// bootstrap to come up, short enough that a token file left behind
	// is no way in later.
	bootstrapWindow = time.Hour
)

// signingCA is the CA this node signs with: the replicated one, or, at a
// first bootstrap before that is committed, the one it made itself.
func (s *Server) signingCA() (*pki.CA, error) {
	if ca := s.node.FSM().State().GetCa(); ca != nil {
		return pki.ParseCA(ca.GetCertificate(), ca.GetKey())
	}
	if s.o.TLS != nil && s.o.TLS.Dir != nil {
		ca, err := s.o.TLS.Dir.LocalCA()
		if err != nil || ca != nil {
			return ca, err
		}
		// The cluster CA comes with the replicated state, which a router
		// that has just got its own certificate at a first bootstrap has
		// not caught up with: the caller may ask again, or another.
		return nil, status.Error(codes.Unavailable, "this node does not hold the cluster CA yet; ask again, or another member")
	}
	return nil, status.Error(codes.FailedPrecondition, "this node holds no CA key: "+pki.ErrNoCAKey.Error())
}

func (s *Server) needTLS(what string) error {
	if s.o.TLS == nil {
		return status.Errorf(codes.FailedPrecondition, "%s: this node serves without TLS (lvsd --insecure, or a loopback address)", what)
	}
	return nil
}

func (c clusterService) CreateJoinToken(ctx context.Context, req *shoalv1.CreateJoinTokenRequest) (*shoalv1.CreateJoinTokenResponse, error) {
	if err := c.needTLS("join tokens"); err != nil {
		return nil, err
	}
	ttl := defaultTokenTTL
	if req.GetTtl() != nil {
		ttl = req.GetTtl().AsDuration()
	}
	if ttl <= 0 || ttl > maxTokenTTL {
		return nil, invalid("ttl", "%s is outside (0, %s]", ttl, maxTokenTTL)
	}
	ca, err := c.signingCA()
	if err != nil {
		return nil, err
	}
	tok, err := pki.NewToken(pki.Fingerprint(ca.Cert))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	info := &shoalv1.JoinToken{
		Id: tok.ID, Expires: timestamppb.New(time.Now().Add(ttl)),
		CreatedBy: callerFrom(ctx).Name, Description: req.GetDescription(),
	}
	cmd := &shoalv1.Command{Op: &shoalv1.Command_CreateJoinToken{CreateJoinToken: &shoalv1.StoredJoinToken{Info: info, Key: tok.Key()}}}
	w, err := c.write(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if w.replayed {
		return nil, replayedSecret("join token", "list them (lvsctl cluster token list), delete the one you did not get")
	}
	c.log.Info("join token created", "token", tok.ID, "by", callerFrom(ctx).Name, "expires", info.Expires.AsTime())
	return &shoalv1.CreateJoinTokenResponse{Token: tok.String(), Info: info}, nil
}

// replayedSecret answers the retry of a write that handed out something
// made for it alone (a join token's secret, a signed certificate): the
// first answer held it and cannot be given again, and what this call made
// was not stored, so it must not be handed out either.
func replayedSecret(what, cleanup string) error {
	return status.Errorf(codes.AlreadyExists, "this request id was applied already: the %s it made was in the answer to that "+
		"first request only and cannot be shown again; if that answer was lost, %s and ask again with a new request id", what, cleanup)
}

func (c clusterService) ListJoinTokens(ctx context.Context, _ *shoalv1.ListJoinTokensRequest) (*shoalv1.ListJoinTokensResponse, error) {
	st, err := c.read(ctx, shoalv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		return nil, err
	}
	resp := &shoalv1.ListJoinTokensResponse{}
	now := time.Now()
	for _, t := range st.GetJoinTokens() {
		if t.GetInfo().GetExpires().AsTime().After(now) {
			resp.Tokens = append(resp.Tokens, t.GetInfo())
		}
	}
	return resp, nil
}

func (c clusterService) DeleteJoinToken(ctx context.Context, req *shoalv1.DeleteJoinTokenRequest) (*shoalv1.DeleteJoinTokenResponse, error) {
	if req.GetId() == "" {
		return nil, invalid("id", "required")
	}
	if _, err := c.write(ctx, &shoalv1.Command{Op: &shoalv1.Command_DeleteJoinToken{DeleteJoinToken: req}}); err != nil {
		return nil, err
	}
	c.log.Info("join token deleted", "token", req.GetId(), "by", callerFrom(ctx).Name)
	return &shoalv1.DeleteJoinTokenResponse{}, nil
}

func (c clusterService) IssueCertificate(ctx context.Context, req *shoalv1.IssueCertificateRequest) (*shoalv1.IssueCertificateResponse, error) {
	if err := c.needTLS("client certificates"); err != nil {
		return nil, err
	}
	role, err := pki.ParseRole(req.GetRole())
	if err != nil {
		return nil, invalid("role", "%v", err)
	}
	if err := pki.CheckName(req.GetName()); err != nil {
		return nil, invalid("name", "%v", err)
	}
	ttl := pki.ClientLifetime
	if req.GetTtl() != nil {
		ttl = req.GetTtl().AsDuration()
	}
	if ttl <= 0 || ttl > pki.MaxClientLifetime {
		return nil, invalid("ttl", "%s is outside (0, %s]", ttl, pki.MaxClientLifetime)
	}
	csr, err := pki.ParseCSR(req.GetCsr())
	if err != nil {
		return nil, invalid("csr", "%v", err)
	}
	ca, err := c.signingCA()
	if err != nil {
		return nil, err
	}
	cert, err := ca.SignClient(csr, req.GetName(), role, time.Now(), ttl)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	info := certInfo(cert, ca.Cert, "cluster")
	// Recorded before it is handed out, so that every certificate a
	// client holds can be listed and revoked.
	rec := &shoalv1.IssuedCertificate{Info: info, IssuedBy: callerFrom(ctx).Name, Issued: timestamppb.Now()}
	w, err := c.write(ctx, &shoalv1.Command{Op: &shoalv1.Command_RecordCertificate{RecordCertificate: rec}})
	if err != nil {
		return nil, err
	}
	if w.replayed {
		return nil, replayedSecret("client certificate", "list them (lvsctl certs list), revoke the one you did not get")
	}
	c.log.Info("client certificate issued", "name", req.GetName(), "role", role, "serial", info.GetSerialNumber(),
		"expires", cert.NotAfter, "by", callerFrom(ctx).Name)
	return &shoalv1.IssueCertificateResponse{Certificate: cert.Raw, CaCertificate: ca.Cert.Raw, Info: info}, nil
}

func (c clusterService) ListCertificates(ctx context.Context, _ *shoalv1.ListCertificatesRequest) (*shoalv1.ListCertificatesResponse, error) {
	st, err := c.read(ctx, shoalv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		return nil, err
	}
	resp := &shoalv1.ListCertificatesResponse{}
	now := time.Now()
	for _, ic := range st.GetCertificates() {
		if ic.GetInfo().GetNotAfter().AsTime().After(now) {
			resp.Certificates = append(resp.Certificates, ic)
		}
	}
	return resp, nil
}

func (c clusterService) RevokeCertificate(ctx context.Context, req *shoalv1.RevokeCertificateRequest) (*shoalv1.RevokeCertificateResponse, error) {
	if err := c.needTLS("revoking certificates"); err != nil {
		return nil, err
	}
	w, err := c.write(ctx, &shoalv1.Command{Op: &shoalv1.Command_RevokeCertificate{RevokeCertificate: req}})
	if err != nil {
		return nil, err
	}
	resp := &shoalv1.RevokeCertificateResponse{}
	for _, ic := range w.state.GetCertificates() {
		if ic.GetInfo().GetSerialNumber() == strings.ToLower(strings.TrimSpace(req.GetSerialNumber())) {
			resp.Certificate = ic
		}
	}
	c.log.Info("client certificate revoked", "serial", req.GetSerialNumber(), "name", resp.GetCertificate().GetInfo().GetName(), "by", callerFrom(ctx).Name)
	return resp, nil
}

// revocations is the set of revoked serial numbers of one state, built once
// per state rather than on every call.
type revocations struct {
	st      *shoalv1.State
	revoked map[string]*shoalv1.IssuedCertificate
}

// revoked says whether a certificate was revoked, and by whom and when.
func (s *Server) revoked(serial string) *shoalv1.IssuedCertificate {
	st := s.node.FSM().State()
	r := s.revs.Load()
	if r == nil || r.st != st {
		r = &revocations{st: st, revoked: map[string]*shoalv1.IssuedCertificate{}}
		for _, ic := range st.GetCertificates() {
			if ic.GetRevoked() != nil {
				r.revoked[ic.GetInfo().GetSerialNumber()] = ic
			}
		}
		s.revs.Store(r)
	}
	return r.revoked[serial]
}

func (c clusterService) WhoAmI(ctx context.Context, _ *shoalv1.WhoAmIRequest) (*shoalv1.WhoAmIResponse, error) {
	caller := callerFrom(ctx)
	resp := &shoalv1.WhoAmIResponse{Name: caller.Name, Role: string(caller.Role)}
	if ai, ok := c.peerAuth(ctx); ok && ai.err == nil {
		resp.Tls = true
		resp.Certificate = certInfo(ai.id.Cert, nil, "")
	}
	return resp, nil
}

// certInfo describes cert; ca, when known, gives the fingerprint.
func certInfo(cert, ca *x509.Certificate, source string) *shoalv1.CertificateInfo {
	if cert == nil {
		return nil
	}
	info := &shoalv1.CertificateInfo{
		Name: cert.Subject.CommonName, SerialNumber: cert.SerialNumber.Text(16),
		NotBefore: timestamppb.New(cert.NotBefore), NotAfter: timestamppb.New(cert.NotAfter), Source: source,
	}
	if id, err := pki.IdentityOf(cert); err == nil {
		info.Role = string(id.Role)
	}
	if ca != nil {
		info.CaFingerprint = pki.Fingerprint(ca)
	}
	if source == "cluster" {
		info.RenewAfter = timestamppb.New(pki.RenewAfter(cert))
	}
	return info
}

// joinService signs the node certificate of a router that proves a join
// token. It is served on the API and, at a first bootstrap, on the Raft
// port (lvsd's JoinServer).
type joinService struct {
	*Server
	shoalv1.UnimplementedJoinServiceServer
}

// JoinServer returns a gRPC server with the join service alone, for the
// Raft port's join connections (raftfsm.Node.JoinListener). Its connections
// are TLS already, terminated by the Raft port.
func (s *Server) JoinServer() *grpc.Server {
	gs := grpc.NewServer(grpc.Creds(tlsConnCreds{}),
		grpc.ChainUnaryInterceptor(s.metrics.unary))
	shoalv1.RegisterJoinServiceServer(gs, joinService{Server: s})
	return gs
}

func (j joinService) Join(ctx context.Context, req *shoalv1.JoinRequest) (*shoalv1.JoinResponse, error) {
	if err := j.needTLS("join"); err != nil {
		return nil, err
	}
	remote := ""
	if p, ok := peer.FromContext(ctx); ok {
		remote = p.Addr.String()
	}
	key, err := j.joinKey(ctx, req.GetTokenId(), req.GetNodeId())
	if err != nil {
		j.log.Warn("join refused", "token", req.GetTokenId(), "node_id", req.GetNodeId(), "remote", remote, "err", err)
		return nil, j.denied("join-token", err)
	}
	csr, err := pki.CheckJoinRequest(req, key)
	if err == pki.ErrBadJoinMAC {
		j.log.Warn("join refused", "token", req.GetTokenId(), "node_id", req.GetNodeId(), "remote", remote, "err", err)
		return nil, j.denied("join-token", status.Error(codes.Unauthenticated, err.Error()))
	}
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ca, err := j.signingCA()
	if err != nil {
		return nil, err
	}
	clusterID := j.node.ClusterID()
	if clusterID == "" {
		return nil, status.Error(codes.Unavailable, "this node does not know its cluster ID yet; ask another member")
	}
	resp, err := pki.SignJoin(ca, req, csr, key, clusterID, time.Now())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	j.log.Info("node certificate signed for a join", "node_id", req.GetNodeId(), "token", req.GetTokenId(), "remote", remote)
	return resp, nil
}

// errUnknownToken says no more than that: a caller probing tokens learns
// nothing of which exist.
var errUnknownToken = status.Error(codes.Unauthenticated, "unknown or expired join token")

// joinKey finds the key of a token: the bootstrap token (for a bootstrap
// member, within the bootstrap window), or a token in the replicated state
// that has not expired by this node's clock.
func (s *Server) joinKey(ctx context.Context, id, nodeID string) ([]byte, error) {
	t := s.o.TLS
	if id == pki.BootstrapTokenID {
		if len(t.BootstrapKey) == 0 {
			return nil, errUnknownToken
		}
		if !slices.Contains(t.BootstrapIDs, nodeID) {
			return nil, status.Errorf(codes.PermissionDenied, "the bootstrap token is good for the --bootstrap members only, not %q", nodeID)
		}
		ca, err := s.signingCA()
		if err != nil {
			return nil, err
		}
		if time.Since(ca.Cert.NotBefore) > bootstrapWindow {
			return nil, status.Errorf(codes.PermissionDenied,
				"the bootstrap token was good for %s after the cluster was made; join with a token from `lvsctl cluster token`", bootstrapWindow)
		}
		return t.BootstrapKey, nil
	}
	find := func() []byte {
		for _, tok := range s.node.FSM().State().GetJoinTokens() {
			if tok.GetInfo().GetId() == id && tok.GetInfo().GetExpires().AsTime().After(time.Now()) {
				return tok.GetKey()
			}
		}
		return nil
	}
	key := find()
	if key == nil && !s.isLeader() {
		// A token made a moment ago through another node.
		if err := s.barrier(ctx); err == nil {
			key = find()
		}
	}
	if key == nil {
		return nil, errUnknownToken
	}
	return key, nil
}

// tlsConnCreds are transport credentials for connections that are TLS
// already (the Raft port's join connections): they add nothing to the
// connection and report its TLS state.
type tlsConnCreds struct{}

func (tlsConnCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if tc, ok := c.(*tls.Conn); ok {
		return c, credentials.TLSInfo{State: tc.ConnectionState(), CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
	}
	return c, credentials.TLSInfo{}, nil
}

func (tlsConnCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, fmt.Errorf("tlsConnCreds: server side only")
}

func (tlsConnCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (c tlsConnCreds) Clone() credentials.TransportCredentials { return c }

// OverrideServerName is deprecated in grpc but still part of the interface.
func (tlsConnCreds) OverrideServerName(string) error { return nil }
