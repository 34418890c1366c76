package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"

	"github.com/shoal-lb/shoal/buildinfo"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"github.com/shoal-lb/shoal/raftfsm"
)

// DataplaneStatus fills the dataplane part of a node's status: Status the
// dataplane, holds_vips, addresses, reconciled serial and error; IPVSStatus
// the kernel's IPVS table and connection counts, a listing of all of it.
type DataplaneStatus interface {
	Status(st *shoalv1.NodeStatus)
	IPVSStatus(st *shoalv1.NodeStatus)
}

// HealthStatus is this node's health monitor as the API sees it.
type HealthStatus interface {
	Status() []*shoalv1.RealServerHealth
	Subscribe(buf int) (<-chan *shoalv1.RealServerHealth, func())
}

// Options configures a Server.
type Options struct {
	Node *raftfsm.Node
	// ID, APIAddr and RaftAddr are this node's identity as peers reach it;
	// APIAddr is what the node registers for forwarding and status.
	ID, APIAddr, RaftAddr string
	Logger                *slog.Logger
	// Dataplane and Health are optional status providers.
	Dataplane DataplaneStatus
	Health    HealthStatus
	// Sync, if set, is this node's IPVS connection table: a planned
	// transfer waits for the target to hold the leader's connections
	// while connection sync is on, and peers ask it on a transfer.
	Sync ConnectionSync
	// PeerTimeout bounds one call to another member for cluster status
	// (default 1s).
	PeerTimeout time.Duration
	// LeaderWait is how long a write or read waits for an election to
	// finish before it answers Unavailable (default 3s).
	LeaderWait time.Duration
	// DialOptions for connections to peers; default TLS with the node's
	// certificate when TLS is set, plaintext otherwise.
	DialOptions []grpc.DialOption
	// TLS, if set, makes the API require client certificates and roles,
	// serves joins, and keeps the node's certificate renewed (Run). nil:
	// plaintext, and every caller is an admin.
	TLS *TLS
	// Build is the lvsd build this node reports in NodeStatus and in
	// shoal_build_info; zero: this binary's (buildinfo.Get).
	Build buildinfo.Info
}

// Server implements every shoal gRPC service over one raft node.
type Server struct {
	o       Options
	node    *raftfsm.Node
	log     *slog.Logger
	metrics *metrics
	health  *health.Server

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	// revs caches the revoked certificates of the latest state.
	revs atomic.Pointer[revocations]
	// clusterLog spaces out the lines about calls from other clusters.
	clusterLog logLimiter
}

// New returns a Server; call Run to keep this node's API address registered
// and Close to drop peer connections.
func New(o Options) (*Server, error) {
	if o.Node == nil {
		return nil, errors.New("server: Options.Node is required")
	}
	if o.ID == "" || o.APIAddr == "" {
		return nil, errors.New("server: Options.ID and Options.APIAddr are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.PeerTimeout <= 0 {
		o.PeerTimeout = time.Second
	}
	if o.LeaderWait <= 0 {
		o.LeaderWait = 3 * time.Second
	}
	if o.Build == (buildinfo.Info{}) {
		o.Build = buildinfo.Get()
	}
	if o.DialOptions == nil {
		creds := insecure.NewCredentials()
		if o.TLS != nil {
			creds = credentials.NewTLS(o.TLS.Store.NodeClientConfig("h2"))
		}
		o.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	}
	// A member that was down comes back within seconds; grpc's default
	// reconnect backoff (up to 120s) would keep forwarding to it failing
	// long after it leads again.
	// A forwarded write carries a whole configuration and its diff back.
	o.DialOptions = append(o.DialOptions, CallOptions(), grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		MinConnectTimeout: time.Second,
	}))
	s := &Server{o: o, node: o.Node, log: o.Logger, conns: map[string]*grpc.ClientConn{}, health: health.NewServer()}
	// Every call to a peer shows this node's cluster (checkClusterID).
	s.o.DialOptions = append(s.o.DialOptions,
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(s.withClusterID(ctx), method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(s.withClusterID(ctx), desc, cc, method, opts...)
		}))
	s.metrics = newMetrics(s)
	s.clusterLog = logLimiter{every: 10 * time.Second}
	return s, nil
}

func (s *Server) withClusterID(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, clusterIDKey, s.node.ClusterID())
}

// NewGRPCServer returns a grpc.Server with every shoal service, server
// reflection (for grpcurl), the standard health service, and the metrics
// and authorisation interceptors installed; with TLS, its transport
// requests client certificates.
func (s *Server) NewGRPCServer(opt ...grpc.ServerOption) *grpc.Server {
	var creds credentials.TransportCredentials
	if s.o.TLS != nil {
		creds = ServerCredentials(s.o.TLS.Store)
	}
	return s.newGRPCServer(creds, opt...)
}

// streamWindow is how much a client may send on a call, and on a
// connection, before the server has read it: fixed, not grown by gRPC's
// bandwidth-delay estimate. That estimate sends a ping (and a window
// update) on the first data of a call while no ping is out, and reads
// the answer: for a client that makes one call at a time, as most API
// clients do, that was every call, two of the 4.5 reads a write cost the
// leader under 64 writers (TestThroughput). A megabyte is the
// bandwidth-delay product of 100 Gbit/s at 80 µs, or of 160 Mbit/s at
// 50 ms: a whole 10,000-service apply (6 MB) still arrives in a few
// round trips.
const streamWindow = 1 << 20

// newGRPCServer is NewGRPCServer over creds (nil: plaintext).
func (s *Server) newGRPCServer(creds credentials.TransportCredentials, opt ...grpc.ServerOption) *grpc.Server {
	if creds != nil {
		opt = append(opt, grpc.Creds(creds))
	}
	// Metrics first, so that refused calls are counted too.
	opt = append(opt, grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize),
		grpc.StaticStreamWindowSize(streamWindow), grpc.StaticConnWindowSize(streamWindow),
		grpc.ChainUnaryInterceptor(s.metrics.unary, s.authUnary),
		grpc.ChainStreamInterceptor(s.metrics.stream, s.authStream))
	gs := grpc.NewServer(opt...)
	s.Register(gs)
	return gs
}

// Register adds the shoal services, reflection and health to gs.
func (s *Server) Register(gs *grpc.Server) {
	shoalv1.RegisterConfigServiceServer(gs, configService{Server: s})
	shoalv1.RegisterLoadBalancerServiceServer(gs, lbService{Server: s})
	shoalv1.RegisterClusterServiceServer(gs, clusterService{Server: s})
	shoalv1.RegisterNodeServiceServer(gs, nodeService{Server: s})
	shoalv1.RegisterPeerServiceServer(gs, peerService{Server: s})
	shoalv1.RegisterJoinServiceServer(gs, joinService{Server: s})
	healthpb.RegisterHealthServer(gs, s.health)
	reflection.Register(gs)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	for _, name := range []string{
		shoalv1.ConfigService_ServiceDesc.ServiceName, shoalv1.LoadBalancerService_ServiceDesc.ServiceName,
		shoalv1.ClusterService_ServiceDesc.ServiceName, shoalv1.NodeService_ServiceDesc.ServiceName,
		shoalv1.PeerService_ServiceDesc.ServiceName, shoalv1.JoinService_ServiceDesc.ServiceName,
	} {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
}

// Run keeps this node's API address in the member registry, and its
// certificates renewed, until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { s.tlsLoop(ctx) })
	s.registerLoop(ctx)
	wg.Wait()
	return nil
}

// Drain marks the health service NOT_SERVING, so that API load balancers
// and probes stop sending calls to a node that is shutting down.
func (s *Server) Drain() { s.health.Shutdown() }

// Close marks the health service NOT_SERVING and closes peer connections.
func (s *Server) Close() error {
	s.health.Shutdown()
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for addr, c := range s.conns {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close connection to %s: %w", addr, err))
		}
		delete(s.conns, addr)
	}
	return errors.Join(errs...)
}

// conn returns a cached client connection to a member's API address.
func (s *Server) conn(addr string) (*grpc.ClientConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, s.o.DialOptions...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	s.conns[addr] = c
	return c, nil
}

// isLeader is this node's raft view; a stale answer is corrected by
// Node.Apply returning ErrNotLeader.
func (s *Server) isLeader() bool {
	return s.node.Raft().State() == raft.Leader
}

// leader is the leader's id and API address, waiting up to LeaderWait for an
// election to end. self reports that this node leads.
func (s *Server) leader(ctx context.Context) (id, apiAddr string, self bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.LeaderWait)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		id, apiAddr, self, err = s.leaderNow()
		if err == nil {
			return id, apiAddr, self, nil
		}
		select {
		case <-ctx.Done():
			return "", "", false, err
		case <-tick.C:
		}
	}
}

func (s *Server) leaderNow() (id, apiAddr string, self bool, err error) {
	if s.isLeader() {
		return s.o.ID, s.o.APIAddr, true, nil
	}
	_, lid := s.node.Raft().LeaderWithID()
	if lid == "" {
		return "", "", false, errNoLeader
	}
	if string(lid) == s.o.ID {
		// Raft still names us while we step down; wait for the next one.
		return "", "", false, errNoLeader
	}
	for _, m := range s.node.FSM().State().GetMembers() {
		if m.GetId() == string(lid) && m.GetApiAddress() != "" {
			return string(lid), m.GetApiAddress(), false, nil
		}
	}
	return "", "", false, fmt.Errorf("leader %s has not registered its API address yet: %w", lid, errNoLeader)
}
