package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shoal-lb/shoal/e2e/harness"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"github.com/shoal-lb/shoal/raftfsm"
)

// testNode is one member of an in-process cluster: a raft node, its Server
// on a real loopback gRPC listener, and a client connection to it.
type testNode struct {
	id     string
	node   *raftfsm.Node
	srv    *Server
	gs     *grpc.Server
	addr   string
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan struct{}
	closed bool
	// trans is the node's in-memory raft transport (nil over TCP), for
	// cutting it off.
	trans *raft.InmemTransport
}

func (n *testNode) lb() shoalv1.LoadBalancerServiceClient {
	return shoalv1.NewLoadBalancerServiceClient(n.conn)
}
func (n *testNode) cfg() shoalv1.ConfigServiceClient { return shoalv1.NewConfigServiceClient(n.conn) }
func (n *testNode) cluster() shoalv1.ClusterServiceClient {
	return shoalv1.NewClusterServiceClient(n.conn)
}
func (n *testNode) nodeSvc() shoalv1.NodeServiceClient { return shoalv1.NewNodeServiceClient(n.conn) }

// stop shuts the node down as lvsd does: raft first, then the API.
func (n *testNode) stop() {
	if n.closed {
		return
	}
	n.closed = true
	n.cancel()
	<-n.done
	_ = n.node.Shutdown()
	n.gs.Stop()
	_ = n.srv.Close()
	_ = n.conn.Close()
}

type clusterOptions struct {
	// tcp uses raft's TCP transport and bolt stores in temp dirs (as lvsd
	// does) instead of the in-memory transport and stores.
	tcp    bool
	timing raftfsm.Timing
	// sync, if set, gives node i (0-based) its connection table.
	sync func(i int) ConnectionSync
}

// testTiming is quick to elect yet keeps a leader through the scheduling
// hiccups of a loaded test machine.
var testTiming = raftfsm.Timing{Heartbeat: 150 * time.Millisecond, Election: 150 * time.Millisecond, LeaderLease: 75 * time.Millisecond, Commit: 5 * time.Millisecond}

func quietLogger() *slog.Logger {
	if os.Getenv("SHOAL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startCluster starts n nodes bootstrapped together and waits until a
// leader is known and every node has registered its API address.
func startCluster(t testing.TB, n int, o clusterOptions) []*testNode {
	t.Helper()
	if o.timing == (raftfsm.Timing{}) {
		o.timing = testTiming
	}
	ids := make([]string, n)
	raftAddrs := make([]string, n)
	transports := make([]*raft.InmemTransport, n)
	var boot []raft.Server
	for i := range n {
		ids[i] = fmt.Sprintf("n%d", i+1)
		if o.tcp {
			raftAddrs[i] = harness.FreeAddr(t)
		} else {
			var addr raft.ServerAddress
			addr, transports[i] = raft.NewInmemTransport(raft.ServerAddress(ids[i]))
			raftAddrs[i] = string(addr)
		}
		boot = append(boot, raft.Server{ID: raft.ServerID(ids[i]), Address: raft.ServerAddress(raftAddrs[i]), Suffrage: raft.Voter})
	}
	if !o.tcp {
		for i := range n {
			for j := range n {
				if i != j {
					transports[i].Connect(raft.ServerAddress(raftAddrs[j]), transports[j])
				}
			}
		}
	}
	nodes := make([]*testNode, n)
	for i := range n {
		ro := raftfsm.Options{ID: ids[i], RaftAddr: raftAddrs[i], Bootstrap: boot, Timing: o.timing, Logger: quietLogger()}
		if o.tcp {
			ro.DataDir = filepath.Join(t.TempDir(), ids[i])
		} else {
			ro.Transport, ro.InMemory = transports[i], true
		}
		node, err := raftfsm.Open(ro)
		if err != nil {
			t.Fatalf("open %s: %v", ids[i], err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := lis.Addr().String()
		so := Options{Node: node, ID: ids[i], APIAddr: addr, RaftAddr: raftAddrs[i], Logger: quietLogger(), PeerTimeout: 300 * time.Millisecond}
		if o.sync != nil {
			so.Sync = o.sync(i)
		}
		srv, err := New(so)
		if err != nil {
			t.Fatal(err)
		}
		gs := srv.NewGRPCServer()
		go func() { _ = gs.Serve(lis) }()
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), CallOptions())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		tn := &testNode{id: ids[i], node: node, srv: srv, gs: gs, addr: addr, conn: conn, cancel: cancel, done: make(chan struct{}), trans: transports[i]}
		go func() {
			defer close(tn.done)
			_ = srv.Run(ctx)
		}()
		nodes[i] = tn
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.stop()
		}
	})
	eventually(t, 10*time.Second, func() bool {
		for _, n := range nodes {
			if n.node.Status().LeaderID == "" || len(n.node.FSM().State().GetMembers()) != len(nodes) {
				return false
			}
		}
		return true
	}, "a leader and every API address registered")
	return nodes
}

func leaderOf(t testing.TB, nodes []*testNode) (leader *testNode, followers []*testNode) {
	t.Helper()
	eventually(t, 5*time.Second, func() bool {
		leader, followers = nil, nil
		for _, n := range nodes {
			if n.closed {
				continue
			}
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

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: no %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
