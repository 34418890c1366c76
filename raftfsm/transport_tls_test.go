package raftfsm

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/shoal-lb/shoal/e2e/harness"
	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// tlsTiming leaves room for TLS handshakes under the race detector; the
// connections are pooled, so only the first exchange with each peer pays.
var tlsTiming = Timing{Heartbeat: 150 * time.Millisecond, Election: 150 * time.Millisecond, LeaderLease: 75 * time.Millisecond, Commit: 5 * time.Millisecond}

// ioTimeout bounds every read below: a refusal arrives at once, so a test
// that runs into it has hung.
const ioTimeout = 5 * time.Second

// bogusTerm is a term no test cluster reaches: a node that has it heard
// from a peer it should not have.
const bogusTerm = 1 << 20

// tlsCluster is a raft group over mutual TLS on loopback TCP, with node
// certificates of one CA.
type tlsCluster struct {
	t     *testing.T
	ca    *pki.CA
	ids   []string
	nodes map[string]*Node
	addrs map[string]string
	log   lockedBuffer
}

// nodeStore holds a certificate for node id signed by ca; it trusts cas.
func nodeStore(t *testing.T, ca *pki.CA, id string, cas ...*x509.Certificate) *pki.Store {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := pki.NewCSR(key, id, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(der)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.SignNode(csr, id, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s := pki.NewStore()
	if err := s.Set(cert, key, cas); err != nil {
		t.Fatal(err)
	}
	return s
}

// transportTLS is a node's Raft transport configuration as lvsd builds it.
func transportTLS(s *pki.Store) *TransportTLS {
	return &TransportTLS{Server: s.RaftServerConfig(), Join: s.JoinServerConfig(), Client: s.NodeClientConfig(pki.ALPNRaft)}
}

func newTLSCluster(t *testing.T, n int) *tlsCluster {
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := &tlsCluster{t: t, ca: ca, nodes: map[string]*Node{}, addrs: map[string]string{}}
	var boot []raft.Server
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		c.ids = append(c.ids, id)
		c.addrs[id] = harness.FreeAddr(t)
		boot = append(boot, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(c.addrs[id]), Suffrage: raft.Voter})
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.Shutdown()
		}
		if t.Failed() {
			c.log.mu.Lock()
			logs := bytes.Clone(c.log.b.Bytes())
			c.log.mu.Unlock()
			t.Logf("the nodes' logs (last 32 KiB):\n%s", logs[max(0, len(logs)-32<<10):])
		}
	})
	for _, id := range c.ids {
		node, err := Open(Options{ID: id, RaftAddr: c.addrs[id], Bootstrap: boot, Timing: tlsTiming, InMemory: true,
			TLS: transportTLS(nodeStore(t, ca, id, ca.Cert)), Logger: slog.New(slog.NewTextHandler(&c.log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			t.Fatalf("open %s: %v", id, err)
		}
		c.nodes[id] = node
	}
	return c
}

// leader waits for exactly one node to lead.
func (c *tlsCluster) leader() *Node {
	c.t.Helper()
	var l *Node
	eventually(c.t, 10*time.Second, "a leader over TLS", func() bool {
		l = nil
		for _, n := range c.nodes {
			if n.Raft().State() == raft.Leader {
				if l != nil {
					return false
				}
				l = n
			}
		}
		return l != nil
	})
	return l
}

// write commits cmd through the leader, riding out leadership changes,
// and waits until every node has applied it.
func (c *tlsCluster) write(cmd *shoalv1.Command) uint64 {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var serial uint64
	for serial == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := c.leader().Apply(ctx, cmd)
		cancel()
		switch {
		case err == nil:
			serial = res.State.GetConfig().GetSerial()
		case time.Now().After(deadline) || !(errors.Is(err, ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost)):
			c.t.Fatalf("apply: %v", err)
		}
	}
	for _, id := range c.ids {
		n := c.nodes[id]
		eventually(c.t, 10*time.Second, id+" to apply serial "+fmt.Sprint(serial), func() bool {
			return n.FSM().State().GetConfig().GetSerial() >= serial
		})
	}
	return serial
}

// unchanged checks that whatever was just tried left n as it was: no
// bogus term adopted, no entry appended or applied (while the term holds:
// an election of its own would append one).
func unchanged(t *testing.T, n *Node, before Status, state *shoalv1.State) {
	t.Helper()
	after := n.Status()
	if after.Term >= bogusTerm {
		t.Errorf("%s took term %d from an intruder", n.id, after.Term)
	}
	if after.Term == before.Term && (after.CommitIndex != before.CommitIndex || after.AppliedIndex != before.AppliedIndex) {
		t.Errorf("%s: commit index %d -> %d, applied %d -> %d", n.id, before.CommitIndex, after.CommitIndex, before.AppliedIndex, after.AppliedIndex)
	}
	if !proto.Equal(n.FSM().State(), state) {
		t.Errorf("%s's state changed", n.id)
	}
}

// expectClosed reads from c until the peer closes it or refuses it; a
// timeout means the connection was left open.
func expectClosed(t *testing.T, c net.Conn) error {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	_, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the connection is still open after %s", ioTimeout)
	}
	return err
}

// intruderVote sends a vote request with a huge term over tr: a node that
// took it would step down and adopt the term.
func intruderVote(tr raft.Transport, target raft.ServerAddress) error {
	var resp raft.RequestVoteResponse
	return tr.RequestVote("n1", target, &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("intruder"), Addr: []byte("127.0.0.1:1")},
		Term:      bogusTerm, LastLogIndex: bogusTerm, LastLogTerm: bogusTerm,
	}, &resp)
}

func TestTLSTransport(t *testing.T) {
	c := newTLSCluster(t, 3)
	first := c.write(createWeb())
	if first != 1 {
		t.Fatalf("first serial %d", first)
	}
	l := c.leader()
	for _, id := range c.ids {
		if got := c.nodes[id].Status().LeaderID; got != l.id {
			t.Errorf("%s names %q as leader, want %s", id, got, l.id)
		}
	}
	// A follower is the target: it has no reason to touch its log or its
	// term on its own while the leader is well.
	var target *Node
	for _, id := range c.ids {
		if c.nodes[id] != l {
			target = c.nodes[id]
			break
		}
	}
	addr := c.addrs[target.id]

	t.Run("plain TCP bytes", func(t *testing.T) {
		before, state := target.Status(), target.FSM().State()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// What raft's own transport sends first: an RPC type byte, then
		// msgpack.
		msg := append([]byte{1, 0x87}, bytes.Repeat([]byte("Term\xcf"), 20)...)
		if _, err := conn.Write(msg[:100]); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, conn)
		unchanged(t, target, before, state)
	})

	t.Run("plain raft transport", func(t *testing.T) {
		before, state := target.Status(), target.FSM().State()
		plain, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, time.Second, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		if err := intruderVote(plain, raft.ServerAddress(addr)); err == nil {
			t.Fatal("a vote request over plain TCP was answered")
		}
		unchanged(t, target, before, state)
	})

	other, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// A node of another cluster that trusts this one's CA too, so that it
	// accepts the target as a server and only the target's check of it is
	// tested.
	stranger := nodeStore(t, other, "n1", other.Cert, c.ca.Cert)

	t.Run("TLS with another CA's node certificate", func(t *testing.T) {
		before, state := target.Status(), target.FSM().State()
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr, stranger.NodeClientConfig(pki.ALPNRaft))
		if err == nil {
			// TLS 1.3: the client is done before the server has checked
			// its certificate; the refusal comes as an alert.
			defer conn.Close()
			_, _ = conn.Write([]byte{1})
			err = expectClosed(t, conn)
		}
		if err == nil || !strings.Contains(err.Error(), "bad certificate") {
			t.Errorf("a node of another CA: %v, want the handshake refused with bad certificate", err)
		}
		unchanged(t, target, before, state)
	})

	t.Run("raft transport with another CA's node certificate", func(t *testing.T) {
		before, state := target.Status(), target.FSM().State()
		// It even knows the cluster ID: the certificate alone is refused.
		stream, err := newTLSStream("127.0.0.1:0", *transportTLS(stranger), newIdentity("n1", target.ClusterID(), slog.New(slog.DiscardHandler)), nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		rogue := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: stream, MaxPool: 1, Timeout: time.Second, Logger: nil})
		defer rogue.Close()
		if err := intruderVote(rogue, raft.ServerAddress(addr)); err == nil {
			t.Fatal("a vote request from a node of another CA was answered")
		}
		unchanged(t, target, before, state)
	})

	t.Run("raft ALPN without a certificate", func(t *testing.T) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr,
			&tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, NextProtos: []string{pki.ALPNRaft}})
		if err == nil {
			defer conn.Close()
			err = expectClosed(t, conn)
		}
		if err == nil || !strings.Contains(err.Error(), "certificate required") {
			t.Errorf("no certificate: %v, want the handshake refused for want of one", err)
		}
	})

	t.Run("join ALPN", func(t *testing.T) {
		jl := target.JoinListener()
		if jl == nil {
			t.Fatal("no join listener with TransportTLS.Join set")
		}
		accept := func() <-chan net.Conn {
			ch := make(chan net.Conn, 1)
			go func() {
				conn, err := jl.Accept()
				if err != nil {
					conn = nil
				}
				ch <- conn
			}()
			return ch
		}
		joinClient := func(protos ...string) (*tls.Conn, error) {
			return tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr,
				&tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, NextProtos: protos})
		}
		waitAccepted := func(ch <-chan net.Conn, client *tls.Conn) {
			t.Helper()
			select {
			case conn := <-ch:
				if conn == nil {
					t.Fatal("the join listener closed")
				}
				defer conn.Close()
				// The connection accepted is the one this client made,
				// not one refused before it.
				if conn.RemoteAddr().String() != client.LocalAddr().String() {
					t.Errorf("accepted a connection from %s, want %s", conn.RemoteAddr(), client.LocalAddr())
				}
			case <-time.After(ioTimeout):
				t.Fatal("a join connection never reached the join listener")
			}
		}

		accepted := accept()
		h2, err := joinClient("h2")
		if err != nil {
			t.Fatalf("a join connection (h2): %v", err)
		}
		defer h2.Close()
		if p := h2.ConnectionState().NegotiatedProtocol; p != "h2" {
			t.Errorf("negotiated %q, want h2", p)
		}
		if pc := h2.ConnectionState().PeerCertificates; len(pc) < 2 || !pc[len(pc)-1].Equal(c.ca.Cert) {
			t.Error("the Raft port does not serve its CA to a joining node")
		}
		waitAccepted(accepted, h2)

		accepted = accept()
		for _, protos := range [][]string{{"http/1.1"}, {"shoal-raft-v2"}, nil} {
			if conn, err := joinClient(protos...); err == nil {
				_ = expectClosed(t, conn)
				_ = conn.Close()
				t.Errorf("ALPN %q: the handshake succeeded", protos)
			}
		}
		again, err := joinClient("h2")
		if err != nil {
			t.Fatalf("a second join connection: %v", err)
		}
		defer again.Close()
		waitAccepted(accepted, again)
	})

	// The cluster was not disturbed: it still commits, on the same term if
	// no election happened along the way.
	c.write(addRS("10.0.0.9"))
	for _, id := range c.ids {
		if term := c.nodes[id].Status().Term; term >= bogusTerm {
			t.Errorf("%s at term %d", id, term)
		}
	}
}

// TestTLSTransportNoJoin: without TransportTLS.Join, the Raft port speaks
// Raft only and offers no join listener.
func TestTLSTransportNoJoin(t *testing.T) {
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := nodeStore(t, ca, "solo", ca.Cert)
	conf := transportTLS(s)
	conf.Join = nil
	addr := harness.FreeAddr(t)
	n, err := Open(Options{ID: "solo", RaftAddr: addr, InMemory: true, Timing: tlsTiming, TLS: conf, Logger: slog.New(slog.DiscardHandler),
		Bootstrap: []raft.Server{{ID: "solo", Address: raft.ServerAddress(addr)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	if n.JoinListener() != nil {
		t.Error("a join listener without TransportTLS.Join")
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr,
		&tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err == nil {
		conn.Close()
		t.Error("a join connection was accepted without a join listener")
	}
	if _, err := Open(Options{ID: "any", RaftAddr: "0.0.0.0:0", InMemory: true, TLS: conf, Logger: slog.New(slog.DiscardHandler)}); err == nil {
		t.Error("Open accepted an unspecified raft address, which peers cannot reach")
	}
}
