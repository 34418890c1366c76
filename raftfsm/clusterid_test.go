package raftfsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/shoal-lb/shoal/e2e/harness"
	"github.com/shoal-lb/shoal/pki"
)

// netGroup is a set of raft nodes over real TCP on loopback, plaintext or
// TLS, whose logs it keeps for the assertions and for a failing test.
type netGroup struct {
	t      *testing.T
	timing Timing
	log    lockedBuffer
	nodes  map[string]*Node
	// tls, if set, makes each node's transport TLS with a certificate of
	// this CA for its ID.
	tls *pki.CA
}

func newNetGroup(t *testing.T, ca *pki.CA) *netGroup {
	g := &netGroup{t: t, timing: fastTiming, nodes: map[string]*Node{}, tls: ca}
	if ca != nil {
		g.timing = tlsTiming
	}
	t.Cleanup(func() {
		for _, n := range g.nodes {
			n.Shutdown()
		}
		if t.Failed() {
			logs := g.logs()
			t.Logf("the nodes' logs (last 32 KiB):\n%s", logs[max(0, len(logs)-32<<10):])
		}
	})
	return g
}

func (g *netGroup) logs() string {
	g.log.mu.Lock()
	defer g.log.mu.Unlock()
	return g.log.b.String()
}

// open starts a node; o gets the group's timing, logger and TLS, and
// in-memory stores unless it names a data dir.
func (g *netGroup) open(o Options) (*Node, error) {
	g.t.Helper()
	o.Timing = g.timing
	o.Logger = slog.New(slog.NewTextHandler(&g.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.InMemory = o.DataDir == ""
	if g.tls != nil {
		o.TLS = transportTLS(nodeStore(g.t, g.tls, o.ID, g.tls.Cert))
	}
	n, err := Open(o)
	if err == nil {
		g.nodes[o.ID+"@"+o.RaftAddr] = n
	}
	return n, err
}

func (g *netGroup) mustOpen(o Options) *Node {
	g.t.Helper()
	n, err := g.open(o)
	if err != nil {
		g.t.Fatalf("open %s: %v", o.ID, err)
	}
	return n
}

// leaderOf waits for exactly one of nodes to lead.
func leaderOf(t *testing.T, nodes ...*Node) *Node {
	t.Helper()
	var l *Node
	eventually(t, 10*time.Second, "a leader", func() bool {
		l = nil
		for _, n := range nodes {
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

func servers(kv ...string) []raft.Server {
	var out []raft.Server
	for i := 0; i < len(kv); i += 2 {
		out = append(out, raft.Server{ID: raft.ServerID(kv[i]), Address: raft.ServerAddress(kv[i+1]), Suffrage: raft.Voter})
	}
	return out
}

func TestClusterIDFor(t *testing.T) {
	a := servers("n1", "10.0.0.1:7071", "n2", "10.0.0.2:7071")
	b := servers("n2", "10.0.0.2:7071", "n1", "10.0.0.1:7071")
	id := ClusterIDFor(a)
	if !ValidClusterID(id) {
		t.Fatalf("ClusterIDFor: %q is not a cluster ID", id)
	}
	if ClusterIDFor(b) != id {
		t.Error("the order of the bootstrap list changes the ID")
	}
	if ClusterIDFor(a, "", "") != id {
		t.Error("empty tokens change the ID")
	}
	if ClusterIDFor(a, "blue", "") == ClusterIDFor(a, "", "blue") {
		t.Error("a token's place does not count")
	}
	for _, other := range []string{
		ClusterIDFor(a, "blue"),
		ClusterIDFor(a, "", "blue"),
		ClusterIDFor(servers("n1", "10.0.0.1:7071")),
		ClusterIDFor(servers("n1", "10.0.0.1:7071", "n2", "10.0.0.2:7072")),
		ClusterIDFor(servers("n1", "10.0.0.1:7071,n2=10.0.0.2:7071")),
	} {
		if other == id {
			t.Errorf("a different bootstrap derives the same ID %s", id)
		}
	}
	for _, bad := range []string{"", "abc", strings.Repeat("g", 32), strings.ToUpper(id)} {
		if ValidClusterID(bad) {
			t.Errorf("ValidClusterID(%q)", bad)
		}
	}
}

func TestHello(t *testing.T) {
	id := ClusterIDFor(servers("n1", "a"))
	for _, tt := range []struct{ cluster, node string }{{id, "n1"}, {"", ""}, {id, strings.Repeat("x", 300)}} {
		gotID, gotNode, err := readHello(bytes.NewReader(append(encodeHello(tt.cluster, tt.node), "raft"...)))
		if err != nil || gotID != tt.cluster || gotNode != tt.node[:min(len(tt.node), 255)] {
			t.Errorf("hello of %q %q read back as %q %q %v", tt.cluster, tt.node, gotID, gotNode, err)
		}
	}
	for _, tt := range []struct {
		in   []byte
		want string
	}{
		{[]byte{1, 0x87, 'T', 'e', 'r', 'm'}, "without a cluster ID hello"}, // raft's RequestVote
		{[]byte("GET / HTTP/1.1\r\n\r\n......................"), "not a shoal Raft connection"},
		{append([]byte("SHOAL\x02"), make([]byte, 20)...), "version 2"},
		{[]byte("SHOAL\x01abc"), "EOF"},
	} {
		if _, _, err := readHello(bytes.NewReader(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("readHello(%q): %v, want %q", tt.in, err, tt.want)
		}
	}
}

// TestClusterIDKeepsClustersApart: two clusters on the same hosts, with
// different IDs. A node of one, added to the other by mistake, or a vote
// from it, changes nothing on either side; both sides log the mismatch.
// Over TLS both clusters have the same CA (one operator's PKI), so only
// the cluster ID tells them apart.
func TestClusterIDKeepsClustersApart(t *testing.T) {
	for _, transport := range []string{"tcp", "tls"} {
		t.Run(transport, func(t *testing.T) {
			var ca *pki.CA
			if transport == "tls" {
				var err error
				if ca, err = pki.NewCA(time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			ga, gb := newNetGroup(t, ca), newNetGroup(t, ca)
			bootA := servers("n1", harness.FreeAddr(t), "n2", harness.FreeAddr(t), "n3", harness.FreeAddr(t))
			bootB := servers("n1", harness.FreeAddr(t))
			var a []*Node
			for _, s := range bootA {
				a = append(a, ga.mustOpen(Options{ID: string(s.ID), RaftAddr: string(s.Address), Bootstrap: bootA}))
			}
			b := gb.mustOpen(Options{ID: "n1", RaftAddr: string(bootB[0].Address), Bootstrap: bootB})
			idA, idB := a[0].ClusterID(), b.ClusterID()
			if idA == "" || idA != ClusterIDFor(bootA) || idB != ClusterIDFor(bootB) || idA == idB {
				t.Fatalf("cluster IDs %q and %q", idA, idB)
			}
			commitOnLeader(t, func() *Node { return leaderOf(t, a...) }, createWeb())
			la := leaderOf(t, a...)
			leaderOf(t, b)
			mustApply(t, b, createWeb())
			mustApply(t, b, addRS("10.0.0.7"))
			stateB, termB := b.FSM().State(), b.Status().Term

			// B's node added to A by mistake (A has a quorum without it),
			// by A's n1: over TLS, B lets in only the node IDs of its own
			// configuration, n1, so that only the cluster ID refuses it.
			if la.id != "n1" {
				if err := la.Raft().LeadershipTransferToServer("n1", bootA[0].Address).Error(); err != nil {
					t.Fatalf("hand A's leadership to n1: %v", err)
				}
				la = leaderOf(t, a...)
				if la.id != "n1" {
					t.Fatalf("A's leader is %s, want n1", la.id)
				}
			}
			if err := la.Raft().AddVoter("n9", bootB[0].Address, 0, 5*time.Second).Error(); err != nil {
				t.Fatalf("add B's node to A: %v", err)
			}
			mismatch := fmt.Sprintf("cluster ID mismatch: peer n1 at %s belongs to cluster %s, this node to %s", bootB[0].Address, idB, idA)
			eventually(t, 10*time.Second, "A's leader to log the mismatch", func() bool {
				return strings.Contains(ga.logs(), mismatch)
			})
			eventually(t, 10*time.Second, "B's node to log the refusal", func() bool {
				return strings.Contains(gb.logs(), "refused a Raft connection from a node of another cluster") &&
					strings.Contains(gb.logs(), "remote_cluster_id="+idA) && strings.Contains(gb.logs(), "cluster_id="+idB)
			})
			if n := strings.Count(gb.logs(), "refused a Raft connection from a node of another cluster"); n > 2 {
				t.Errorf("B logged the refusal %d times in a few seconds; want it rate-limited", n)
			}
			// A still commits; B is as it was, and alone.
			if err := la.Raft().RemoveServer("n9", 0, 5*time.Second).Error(); err != nil {
				t.Fatalf("remove B's node from A: %v", err)
			}
			commitOnLeader(t, func() *Node { return leaderOf(t, a...) }, addRS("10.0.0.3"))
			if st := b.Status(); st.Term != termB || st.Role != "leader" || !proto.Equal(b.FSM().State(), stateB) {
				t.Errorf("B's node changed: %+v", st)
			}
			if cf := b.Raft().GetConfiguration(); cf.Error() != nil || len(cf.Configuration().Servers) != 1 {
				t.Errorf("B's configuration: %+v %v", cf.Configuration(), cf.Error())
			}

			// A vote from B's node (ID n1, which A knows), with a term that
			// would make A's follower step down.
			var target *Node
			for _, n := range a {
				if n.Raft().State() != raft.Leader {
					target = n
				}
			}
			l := leaderOf(t, a...)
			eventually(t, 10*time.Second, "the target to catch up", func() bool {
				return target.Status().AppliedIndex == l.Status().AppliedIndex && target.Status().CommitIndex == l.Status().CommitIndex
			})
			before, state := target.Status(), target.FSM().State()
			idFromB := newIdentity("n1", idB, slog.New(slog.DiscardHandler))
			var stream raft.StreamLayer
			var err error
			if ca != nil {
				stream, err = newTLSStream("127.0.0.1:0", *transportTLS(nodeStore(t, ca, "n1", ca.Cert)), idFromB, nil, slog.New(slog.DiscardHandler))
			} else {
				stream, err = newTCPStream("127.0.0.1:0", idFromB, slog.New(slog.DiscardHandler))
			}
			if err != nil {
				t.Fatal(err)
			}
			rogue := voteTransport{raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: stream, MaxPool: 1, Timeout: time.Second})}
			defer rogue.Close()
			err = intruderVote(rogue, raft.ServerAddress(targetAddr(bootA, target)))
			var pe *PeerClusterError
			if !errors.As(err, &pe) || pe.Peer != idA || pe.Local != idB || !strings.Contains(err.Error(), "cluster ID mismatch") {
				t.Fatalf("a vote from B's node: %v, want a cluster ID mismatch", err)
			}
			if peerClosed(err) {
				t.Error("voteTransport would take the mismatch for a closed pooled connection")
			}
			unchanged(t, target, before, state)
		})
	}
}

func targetAddr(boot []raft.Server, n *Node) string {
	for _, s := range boot {
		if string(s.ID) == n.id {
			return string(s.Address)
		}
	}
	return ""
}

// TestClusterIDOldNodeAtNewBootstrapAddress is the case found by hand: a
// cluster of one left running at an address that a new cluster's
// bootstrap names for its n1. Without cluster IDs, the old node followed
// the new leader while it kept its own configuration (serial 2 and a
// service the new cluster never had). Now it refuses the new leader, and
// the new cluster elects among the members it can reach.
func TestClusterIDOldNodeAtNewBootstrapAddress(t *testing.T) {
	oldG, newG := newNetGroup(t, nil), newNetGroup(t, nil)
	shared := harness.FreeAddr(t)
	old := oldG.mustOpen(Options{ID: "n1", RaftAddr: shared, Bootstrap: servers("n1", shared)})
	leaderOf(t, old)
	mustApply(t, old, createWeb())
	mustApply(t, old, addRS("10.0.0.7"))
	oldState, oldTerm := old.FSM().State(), old.Status().Term

	boot := servers("n1", shared, "n2", harness.FreeAddr(t), "n3", harness.FreeAddr(t))
	// The new n1 cannot listen where the old node does.
	if _, err := newG.open(Options{ID: "n1", RaftAddr: shared, Bootstrap: boot}); err == nil {
		t.Fatal("a second node opened on the old node's address")
	}
	n2 := newG.mustOpen(Options{ID: "n2", RaftAddr: string(boot[1].Address), Bootstrap: boot})
	n3 := newG.mustOpen(Options{ID: "n3", RaftAddr: string(boot[2].Address), Bootstrap: boot})
	if serial := commitOnLeader(t, func() *Node { return leaderOf(t, n2, n3) }, createWeb()); serial != 1 {
		t.Fatalf("the new cluster's first write has serial %d", serial)
	}
	l := leaderOf(t, n2, n3)
	eventually(t, 10*time.Second, "the new leader to be refused by the old node", func() bool {
		return strings.Contains(newG.logs(), "cluster ID mismatch: peer n1 at "+shared) &&
			strings.Contains(oldG.logs(), "refused a Raft connection from a node of another cluster")
	})
	if st := old.Status(); st.Role != "leader" || st.LeaderID != "n1" || st.Term != oldTerm {
		t.Errorf("the old node follows someone: %+v (term was %d)", st, oldTerm)
	}
	if !proto.Equal(old.FSM().State(), oldState) || old.FSM().State().GetConfig().GetSerial() != 2 {
		t.Error("the old node's state changed")
	}
	for _, n := range []*Node{n2, n3} {
		eventually(t, 5*time.Second, n.id+" to apply the write", func() bool { return n.FSM().State().GetConfig().GetSerial() == 1 })
		if st := n.Status(); st.LeaderID != l.id {
			t.Errorf("%s follows %q, want %s", n.id, st.LeaderID, l.id)
		}
		if st := n.FSM().State(); st.GetConfig().GetSerial() != 1 || len(st.GetConfig().GetServices()[0].GetRealServers()) != 2 {
			t.Errorf("%s has the old node's state: %v", n.id, st.GetConfig())
		}
	}
}

// TestClusterIDInDataDir: the ID is kept in the data dir, a start that
// names another cluster is refused, and a data dir from before cluster IDs
// adopts the one the start describes.
func TestClusterIDInDataDir(t *testing.T) {
	g := newNetGroup(t, nil)
	dir := t.TempDir()
	addr := harness.FreeAddr(t)
	boot := servers("solo", addr)
	want := ClusterIDFor(boot)
	start := func(o Options) (*Node, error) {
		o.ID, o.RaftAddr, o.DataDir = "solo", addr, dir
		n, err := g.open(o)
		if err == nil {
			leaderOf(t, n)
		}
		return n, err
	}
	stop := func(n *Node) {
		t.Helper()
		if err := n.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	n, err := start(Options{Bootstrap: boot})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, n, createWeb())
	if n.ClusterID() != want {
		t.Errorf("ClusterID %q, want %s", n.ClusterID(), want)
	}
	stop(n)
	if got, err := ReadClusterID(dir); got != want || err != nil {
		t.Fatalf("stored cluster ID %q %v, want %s", got, err, want)
	}
	if st, err := os.Stat(filepath.Join(dir, ClusterIDFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v %v, want mode 0600", ClusterIDFile, st.Mode(), err)
	}

	// Another bootstrap list for the same data dir: refused.
	other := ClusterIDFor(servers("solo", addr, "n2", "127.0.0.1:1"))
	_, err = start(Options{Bootstrap: servers("solo", addr, "n2", "127.0.0.1:1")})
	var mm *ClusterIDMismatchError
	if !errors.As(err, &mm) || mm.Stored != want || mm.Wanted != other || mm.DataDir != dir {
		t.Fatalf("open with another bootstrap: %v, want a mismatch %s / %s", err, want, other)
	}
	// No bootstrap: the stored ID.
	if n, err = start(Options{}); err != nil || n.ClusterID() != want {
		t.Fatalf("open without bootstrap: %v, cluster %q", err, n.ClusterID())
	}
	stop(n)

	// A data dir from before cluster IDs: adopted, and said so.
	if err := os.Remove(filepath.Join(dir, ClusterIDFile)); err != nil {
		t.Fatal(err)
	}
	if n, err = start(Options{Bootstrap: boot}); err != nil || n.ClusterID() != want {
		t.Fatalf("open an old data dir: %v, cluster %q", err, n.ClusterID())
	}
	stop(n)
	if got, _ := ReadClusterID(dir); got != want || !strings.Contains(g.logs(), "adopted the ID this start describes") {
		t.Errorf("after adopting: stored %q, logs say so: %v", got, strings.Contains(g.logs(), "adopted"))
	}

	// A damaged cluster-id file names itself.
	if err := os.WriteFile(filepath.Join(dir, ClusterIDFile), []byte("not an id\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := start(Options{}); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, ClusterIDFile)) {
		t.Errorf("open with a damaged %s: %v", ClusterIDFile, err)
	}

	// A joiner without state takes the ID it is given; one that is given
	// none knows none, and refuses every Raft connection.
	fresh := t.TempDir()
	j, err := g.open(Options{ID: "j", RaftAddr: harness.FreeAddr(t), DataDir: fresh, ClusterID: want})
	if err != nil || j.ClusterID() != want {
		t.Fatalf("a joiner: %v %q", err, j.ClusterID())
	}
	if got, _ := ReadClusterID(fresh); got != want {
		t.Errorf("the joiner stored %q", got)
	}
	blankAddr := harness.FreeAddr(t)
	blank, err := g.open(Options{ID: "blank", RaftAddr: blankAddr, DataDir: t.TempDir()})
	if err != nil || blank.ClusterID() != "" {
		t.Fatalf("a node without an ID: %v %q", err, blank.ClusterID())
	}
	stream, err := newTCPStream("127.0.0.1:0", newIdentity("x", want, slog.New(slog.DiscardHandler)), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	_, err = stream.Dial(raft.ServerAddress(blankAddr), time.Second)
	var pe *PeerClusterError
	if !errors.As(err, &pe) || pe.Peer != "" || !strings.Contains(err.Error(), "does not know its cluster yet") {
		t.Errorf("dial a node without an ID: %v", err)
	}
}

// TestClusterIDLearnedFromPeers: a member that joined before cluster IDs
// existed (no --bootstrap to derive it from) takes the ID from the first
// peer of its configuration it reaches, and keeps it.
func TestClusterIDLearnedFromPeers(t *testing.T) {
	g := newNetGroup(t, nil)
	boot := servers("n1", harness.FreeAddr(t), "n2", harness.FreeAddr(t), "n3", harness.FreeAddr(t))
	dirs := map[string]string{"n1": t.TempDir(), "n2": t.TempDir(), "n3": t.TempDir()}
	var nodes []*Node
	for _, s := range boot {
		nodes = append(nodes, g.mustOpen(Options{ID: string(s.ID), RaftAddr: string(s.Address), DataDir: dirs[string(s.ID)], Bootstrap: boot}))
	}
	commitOnLeader(t, func() *Node { return leaderOf(t, nodes...) }, createWeb())
	eventually(t, 5*time.Second, "n3 to apply", func() bool { return nodes[2].FSM().State().GetConfig().GetSerial() == 1 })
	for _, n := range nodes {
		if err := n.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	want := ClusterIDFor(boot)
	if err := os.Remove(filepath.Join(dirs["n3"], ClusterIDFile)); err != nil {
		t.Fatal(err)
	}
	nodes = nodes[:0]
	for _, s := range boot {
		o := Options{ID: string(s.ID), RaftAddr: string(s.Address), DataDir: dirs[string(s.ID)]}
		if s.ID != "n3" {
			o.Bootstrap = boot
		}
		nodes = append(nodes, g.mustOpen(o))
	}
	n3 := nodes[2]
	eventually(t, 10*time.Second, "n3 to learn the cluster ID", func() bool { return n3.ClusterID() == want })
	if got, _ := ReadClusterID(dirs["n3"]); got != want {
		t.Errorf("n3 stored %q, want %s", got, want)
	}
	serial := commitOnLeader(t, func() *Node { return leaderOf(t, nodes...) }, addRS("10.0.0.2"))
	eventually(t, 10*time.Second, "n3 to apply the write", func() bool {
		return n3.FSM().State().GetConfig().GetSerial() == serial
	})
}

// TestHelloSilentClient: a connection that sends nothing holds up no other.
func TestHelloSilentClient(t *testing.T) {
	g := newNetGroup(t, nil)
	addr := harness.FreeAddr(t)
	n := g.mustOpen(Options{ID: "solo", RaftAddr: addr, Bootstrap: servers("solo", addr)})
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	stream, err := newTCPStream("127.0.0.1:0", newIdentity("x", n.ClusterID(), slog.New(slog.DiscardHandler)), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	c, err := stream.Dial(raft.ServerAddress(addr), time.Second)
	if err != nil {
		t.Fatalf("a dial behind a silent connection: %v", err)
	}
	c.Close()
	_ = silent.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := io.ReadAll(silent); err == nil {
		t.Error("the silent connection was closed before the hello timeout")
	}
}
