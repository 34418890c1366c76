package server

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
)

// localCertKey carries, on a call over the in-process connection, the
// certificate chain (DER) the web console's user proved they hold: a TLS
// client certificate, or the key of a console token. The server verifies
// it as it verifies a TLS client's, so the console can neither invent a
// caller nor skip the role table, expiry or revocation.
const localCertKey = "x-shoal-local-cert-bin"

// localAuth marks a connection made through LocalConn. Only this package
// can make one, and only LocalConn's in-memory listener produces it, so a
// network client cannot send localCertKey and be believed.
type localAuth struct{ credentials.CommonAuthInfo }

func (localAuth) AuthType() string { return "local" }

// localCreds is the in-memory listener's transport: no handshake, but
// every connection carries localAuth.
type localCreds struct {
	credentials.TransportCredentials
}

func (l localCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return conn, localAuth{credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

func (l localCreds) Clone() credentials.TransportCredentials {
	return localCreds{l.TransportCredentials.Clone()}
}

// WithCaller returns ctx for a call over LocalConn made on behalf of the
// holder of chain (the leaf first). Without TLS, chain is ignored: every
// caller is an admin, as on the network API.
func WithCaller(ctx context.Context, chain []*x509.Certificate) context.Context {
	md := metadata.MD{}
	for _, c := range chain {
		md.Append(localCertKey, string(c.Raw))
	}
	return metadata.NewOutgoingContext(ctx, md)
}

// LocalConn serves the API in process, with the same services,
// interceptors and role table as the network API, and returns a client
// connection to it; the web console makes every call through it with
// WithCaller. Close the connection, then call stop.
func (s *Server) LocalConn() (conn *grpc.ClientConn, stop func(), err error) {
	lis := bufconn.Listen(1 << 20)
	gs := s.newGRPCServer(localCreds{insecure.NewCredentials()})
	go func() { _ = gs.Serve(lis) }()
	conn, err = grpc.NewClient("passthrough:///shoal-local",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		gs.Stop()
		return nil, nil, fmt.Errorf("connect in process: %w", err)
	}
	return conn, gs.Stop, nil
}

// localIdentity is the authInfo of a call over LocalConn: the chain it
// carries, verified now as a TLS client certificate would be.
func (s *Server) localIdentity(ctx context.Context) authInfo {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(localCertKey)
	raw := make([][]byte, len(vals))
	for i, v := range vals {
		raw[i] = []byte(v)
	}
	id, err := s.o.TLS.Store.VerifyPeer(raw, x509.ExtKeyUsageClientAuth)
	return authInfo{id: id, err: err}
}
