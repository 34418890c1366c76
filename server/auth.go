package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// rule is what a method needs of its caller.
type rule struct {
	// need is the least client role that may call it; "" for a method open
	// to callers without a certificate (Join, which checks a token).
	need pki.Role
	// node says what a node certificate may do with it.
	node nodeAccess
	// check, if set, narrows the rule by the request (unary calls only).
	check func(c Caller, forwarded bool, req any) error
}

type nodeAccess int

const (
	// nodeNever: a node certificate is not a client's.
	nodeNever nodeAccess = iota
	// nodeAlways: nodes call it on each other (status, peer calls).
	nodeAlways
	// nodeForwarded: a node may pass on a call it took from a client
	// whose role it checked (x-shoal-forwarded).
	nodeForwarded
)

var (
	viewer   = rule{need: pki.RoleViewer, node: nodeAlways}
	operator = rule{need: pki.RoleOperator, node: nodeForwarded}
	admin    = rule{need: pki.RoleAdmin, node: nodeForwarded}
	// peer methods are for nodes only.
	peerOnly = rule{need: pki.RoleNode, node: nodeAlways}
)

// methodRoles is the one table of what each method needs. A method missing
// from it is refused (TestEveryMethodHasARole keeps it complete).
var methodRoles = map[string]rule{
	shoalv1.ConfigService_GetConfig_FullMethodName:       viewer,
	shoalv1.ConfigService_Watch_FullMethodName:           viewer,
	shoalv1.ConfigService_ListHistory_FullMethodName:     viewer,
	shoalv1.ConfigService_GetHistoryEntry_FullMethodName: viewer,
	shoalv1.ConfigService_ApplyConfig_FullMethodName:     admin,
	shoalv1.ConfigService_RollbackConfig_FullMethodName:  admin,

	shoalv1.LoadBalancerService_GetVirtualService_FullMethodName:    viewer,
	shoalv1.LoadBalancerService_ListVirtualServices_FullMethodName:  viewer,
	shoalv1.LoadBalancerService_CreateVirtualService_FullMethodName: admin,
	shoalv1.LoadBalancerService_UpdateVirtualService_FullMethodName: admin,
	shoalv1.LoadBalancerService_DeleteVirtualService_FullMethodName: admin,
	shoalv1.LoadBalancerService_AddRealServer_FullMethodName:        admin,
	shoalv1.LoadBalancerService_RemoveRealServer_FullMethodName:     admin,
	shoalv1.LoadBalancerService_UpdateRealServer_FullMethodName:     {need: pki.RoleOperator, node: nodeForwarded, check: operatorFields},

	shoalv1.ClusterService_GetClusterStatus_FullMethodName:   viewer,
	shoalv1.ClusterService_WhoAmI_FullMethodName:             viewer,
	shoalv1.ClusterService_TransferLeadership_FullMethodName: operator,
	shoalv1.ClusterService_AddMember_FullMethodName:          {need: pki.RoleAdmin, node: nodeAlways, check: addSelf},
	shoalv1.ClusterService_RemoveMember_FullMethodName:       admin,
	shoalv1.ClusterService_CreateJoinToken_FullMethodName:    admin,
	shoalv1.ClusterService_ListJoinTokens_FullMethodName:     admin,
	shoalv1.ClusterService_DeleteJoinToken_FullMethodName:    admin,
	shoalv1.ClusterService_IssueCertificate_FullMethodName:   admin,
	shoalv1.ClusterService_ListCertificates_FullMethodName:   admin,
	shoalv1.ClusterService_RevokeCertificate_FullMethodName:  admin,

	shoalv1.NodeService_GetNodeStatus_FullMethodName: viewer,
	shoalv1.NodeService_WatchHealth_FullMethodName:   viewer,

	shoalv1.PeerService_ApplyCommand_FullMethodName:     peerOnly,
	shoalv1.PeerService_ReadIndex_FullMethodName:        peerOnly,
	shoalv1.PeerService_CheckConnections_FullMethodName: peerOnly,

	shoalv1.JoinService_Join_FullMethodName: {},

	healthpb.Health_Check_FullMethodName:                             viewer,
	healthpb.Health_Watch_FullMethodName:                             viewer,
	healthpb.Health_List_FullMethodName:                              viewer,
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      viewer,
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": viewer,
}

// operatorFields lets an operator change what operators are for: a real
// server's weight and whether it is active (enable, disable, drain).
func operatorFields(c Caller, _ bool, req any) error {
	r, ok := req.(*shoalv1.UpdateRealServerRequest)
	if !ok || c.Role.Covers(pki.RoleAdmin) {
		return nil
	}
	paths := r.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		return status.Errorf(codes.PermissionDenied, "UpdateRealServer without an update_mask changes every field and needs role admin; %s may set weight and active only", c)
	}
	for _, p := range paths {
		if p != "weight" && p != "active" {
			return status.Errorf(codes.PermissionDenied, "changing %s of a real server needs role admin; %s may set weight and active only", p, c)
		}
	}
	return nil
}

// addSelf lets a node that has just joined with a token add itself to the
// Raft group, and no other node.
func addSelf(c Caller, forwarded bool, req any) error {
	r, ok := req.(*shoalv1.AddMemberRequest)
	if !ok || c.Role != pki.RoleNode || forwarded || r.GetId() == c.Name {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "node %s may add only itself to the group, not %s", c.Name, r.GetId())
}

// Caller is who made an API call, as its certificate says.
type Caller struct {
	Name string
	Role pki.Role
}

func (c Caller) String() string { return fmt.Sprintf("%s (%s)", c.Name, c.Role) }

// anonymous is every caller of an API served without TLS.
var anonymous = Caller{Name: "anonymous", Role: pki.RoleAdmin}

type callerKey struct{}

// callerFrom is the caller the interceptor found; anonymous outside one.
func callerFrom(ctx context.Context) Caller {
	if c, ok := ctx.Value(callerKey{}).(Caller); ok {
		return c
	}
	return anonymous
}

// authInfo is the TLS session with what the client certificate proved,
// verified once per connection rather than on every call.
type authInfo struct {
	credentials.TLSInfo
	id  pki.Identity
	err error
}

// authCreds wraps TLS server credentials so that each connection's client
// certificate is verified once, at the handshake, and the result travels
// with the connection. A certificate that does not verify still gets a
// connection, so that its calls can be answered with a status that says
// why; no call is served without a verified one.
type authCreds struct {
	credentials.TransportCredentials
	store *pki.Store
}

// ServerCredentials are the API's transport credentials over store.
func ServerCredentials(store *pki.Store) credentials.TransportCredentials {
	return authCreds{credentials.NewTLS(store.APIServerConfig()), store}
}

func (a authCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, ai, err := a.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		return nil, nil, err
	}
	ti, ok := ai.(credentials.TLSInfo)
	if !ok {
		return nil, nil, errors.New("not a TLS connection")
	}
	raw := make([][]byte, len(ti.State.PeerCertificates))
	for i, cert := range ti.State.PeerCertificates {
		raw[i] = cert.Raw
	}
	id, verr := a.store.VerifyPeer(raw, x509.ExtKeyUsageClientAuth)
	return c, authInfo{TLSInfo: ti, id: id, err: verr}, nil
}

func (a authCreds) Clone() credentials.TransportCredentials {
	return authCreds{a.TransportCredentials.Clone(), a.store}
}

// authorize decides a call: who the caller is, whether its role allows
// method (and req, for unary calls), and, for a call from another node,
// whether that node is of this cluster.
func (s *Server) authorize(ctx context.Context, method string, req any) (context.Context, error) {
	if s.o.TLS == nil {
		if err := s.checkClusterID(ctx, method); err != nil {
			return nil, s.denied("cluster-id", err)
		}
		return context.WithValue(ctx, callerKey{}, anonymous), nil
	}
	r, ok := methodRoles[method]
	if !ok {
		return nil, s.denied("unlisted", status.Errorf(codes.PermissionDenied, "%s is not in shoal's table of methods and roles", method))
	}
	if r.need == "" {
		return ctx, nil
	}
	name := path.Base(method)
	ai, ok := s.peerAuth(ctx)
	switch {
	case !ok || ai.err != nil && isReason(ai.err, pki.ReasonNoCertificate):
		return nil, s.denied(pki.ReasonNoCertificate, status.Errorf(codes.Unauthenticated,
			"%s needs a client certificate of this cluster: an admin issues one with `lvsctl certs issue --role viewer|operator|admin --name NAME`; "+
				"give it to lvsctl with --cacert, --cert and --key", name))
	case ai.err != nil:
		var ae *pki.AuthError
		reason := pki.ReasonInvalid
		if errors.As(ai.err, &ae) {
			reason = ae.Reason
		}
		return nil, s.denied(reason, status.Errorf(codes.Unauthenticated, "%s: %v", name, ai.err))
	case time.Now().After(ai.id.Cert.NotAfter):
		return nil, s.denied(pki.ReasonExpired, status.Errorf(codes.Unauthenticated, "%s: certificate %q expired at %s",
			name, ai.id.Name, ai.id.Cert.NotAfter.UTC().Format(time.RFC3339)))
	}
	if rc := s.revoked(ai.id.Cert.SerialNumber.Text(16)); rc != nil {
		return nil, s.denied("revoked", status.Errorf(codes.Unauthenticated, "%s: certificate %q (%s) was revoked by %s at %s",
			name, ai.id.Name, rc.GetInfo().GetSerialNumber(), rc.GetRevokedBy(), rc.GetRevoked().AsTime().UTC().Format(time.RFC3339)))
	}
	c := Caller{Name: ai.id.Name, Role: ai.id.Role}
	fwd := forwarded(ctx)
	if err := r.allows(c, fwd, name); err != nil {
		return nil, s.denied("role", err)
	}
	// A node certificate outlives the node's membership: a removed
	// router's stays valid until it expires, so a node is trusted only
	// while it is in the Raft group. A joining router is not in it yet,
	// and may only add itself.
	if c.Role == pki.RoleNode && !s.isMember(c.Name) {
		if add, ok := req.(*shoalv1.AddMemberRequest); !ok || add.GetId() != c.Name || fwd {
			return nil, s.denied("not-a-member", status.Errorf(codes.PermissionDenied,
				"node %s is not a member of this Raft group (removed?); its certificate is good only for joining", c.Name))
		}
	}
	if r.check != nil && req != nil {
		if err := r.check(c, fwd, req); err != nil {
			return nil, s.denied("role", err)
		}
	}
	if err := s.checkClusterID(ctx, method); err != nil {
		return nil, s.denied("cluster-id", err)
	}
	return context.WithValue(ctx, callerKey{}, c), nil
}

// peerAuth is what the caller's certificate proved: verified at the TLS
// handshake, or, for a call over LocalConn, now.
func (s *Server) peerAuth(ctx context.Context) (authInfo, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return authInfo{}, false
	}
	if _, local := p.AuthInfo.(localAuth); local && s.o.TLS != nil {
		return s.localIdentity(ctx), true
	}
	ai, ok := p.AuthInfo.(authInfo)
	return ai, ok
}

func (s *Server) isMember(id string) bool {
	f := s.node.Raft().GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == id {
			return true
		}
	}
	return false
}

func (r rule) allows(c Caller, forwarded bool, method string) error {
	if c.Role == pki.RoleNode {
		if r.node == nodeAlways || r.node == nodeForwarded && forwarded {
			return nil
		}
		return status.Errorf(codes.PermissionDenied, "%s needs role %s; the certificate of node %s is a node's, not a client's", method, r.need, c.Name)
	}
	if r.need == pki.RoleNode {
		return status.Errorf(codes.PermissionDenied, "%s is for shoal nodes only; %s is a client", method, c)
	}
	if !c.Role.Covers(r.need) {
		return status.Errorf(codes.PermissionDenied, "%s needs role %s; the certificate %q has role %s", method, r.need, c.Name, c.Role)
	}
	return nil
}

func isReason(err error, reason string) bool {
	var ae *pki.AuthError
	return errors.As(err, &ae) && ae.Reason == reason
}

// denied counts a refused call by reason and returns err.
func (s *Server) denied(reason string, err error) error {
	s.metrics.authFailures.WithLabelValues(reason).Inc()
	return err
}

func (s *Server) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := s.authorize(ctx, info.FullMethod, req)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := s.authorize(ss.Context(), info.FullMethod, nil)
	if err != nil {
		return err
	}
	return h(srv, callerStream{ss, ctx})
}

type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c callerStream) Context() context.Context { return c.ctx }
