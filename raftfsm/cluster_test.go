package raftfsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
)

// fastTiming keeps elections around 100 ms so the cluster tests finish in
// seconds, yet survives the race detector on a loaded two-core machine (a
// 25 ms lease made leaders flap there); the lease is shorter than the
// heartbeat timeout, as Open demands.
var fastTiming = Timing{Heartbeat: 100 * time.Millisecond, Election: 100 * time.Millisecond, LeaderLease: 50 * time.Millisecond, Commit: 5 * time.Millisecond}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// cluster is an in-process raft group on raft's in-memory transport.
type cluster struct {
	t      *testing.T
	timing Timing
	mu     sync.Mutex
	nodes  map[string]*Node
	trans  map[string]*raft.InmemTransport
	// log holds every node's log lines, shown when the test fails: a
	// timing test that fails once in many runs needs them to be explained.
	log lockedBuffer
}

// lockedBuffer is a bytes.Buffer the nodes' loggers share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func newCluster(t *testing.T, n int) *cluster { return newClusterTiming(t, n, fastTiming) }

func newClusterTiming(t *testing.T, n int, timing Timing) *cluster {
	c := &cluster{t: t, timing: timing, nodes: map[string]*Node{}, trans: map[string]*raft.InmemTransport{}}
	var boot []raft.Server
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		boot = append(boot, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(id)})
	}
	for _, s := range boot {
		c.start(string(s.ID), boot)
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.Shutdown()
		}
		for _, tr := range c.trans {
			tr.Close()
		}
		if t.Failed() {
			c.log.mu.Lock()
			logs := bytes.Clone(c.log.b.Bytes())
			c.log.mu.Unlock()
			t.Logf("the nodes' logs (last 32 KiB):\n%s", logs[max(0, len(logs)-32<<10):])
		}
	})
	return c
}

func (c *cluster) start(id string, boot []raft.Server) *Node {
	_, tr := raft.NewInmemTransport(raft.ServerAddress(id))
	for pid, ptr := range c.trans {
		tr.Connect(raft.ServerAddress(pid), ptr)
		ptr.Connect(raft.ServerAddress(id), tr)
	}
	n, err := Open(Options{ID: id, Bootstrap: boot, Timing: c.timing, Transport: tr, InMemory: true,
		Logger: slog.New(slog.NewTextHandler(&c.log, nil))})
	if err != nil {
		c.t.Fatal(err)
	}
	c.trans[id], c.nodes[id] = tr, n
	return n
}

// leader waits for exactly one live node of ids to lead and returns it.
func (c *cluster) leader(ids ...string) *Node {
	c.t.Helper()
	if len(ids) == 0 {
		for id := range c.nodes {
			ids = append(ids, id)
		}
	}
	var l *Node
	eventually(c.t, 5*time.Second, "a leader", func() bool {
		l = nil
		for _, id := range ids {
			if c.nodes[id].Raft().State() == raft.Leader {
				if l != nil {
					return false
				}
				l = c.nodes[id]
			}
		}
		return l != nil
	})
	return l
}

// partition cuts id off from every other node, in both directions.
func (c *cluster) partition(id string) {
	for pid, ptr := range c.trans {
		if pid != id {
			c.trans[id].Disconnect(raft.ServerAddress(pid))
			ptr.Disconnect(raft.ServerAddress(id))
		}
	}
}

func (c *cluster) heal(id string) {
	for pid, ptr := range c.trans {
		if pid != id {
			c.trans[id].Connect(raft.ServerAddress(pid), ptr)
			ptr.Connect(raft.ServerAddress(id), c.trans[id])
		}
	}
}

func (c *cluster) waitSerial(serial uint64, ids ...string) {
	c.t.Helper()
	for _, id := range ids {
		n := c.nodes[id]
		eventually(c.t, 5*time.Second, id+" to apply serial "+fmt.Sprint(serial), func() bool {
			return n.FSM().State().GetConfig().GetSerial() == serial
		})
	}
}

func addRS(addr string) *shoalv1.Command {
	return &shoalv1.Command{Op: &shoalv1.Command_AddRealServer{AddRealServer: &shoalv1.AddRealServerRequest{
		Service: "web", RealServer: &shoalv1.RealServer{Address: addr}}}}
}

func createWeb() *shoalv1.Command {
	return &shoalv1.Command{Op: &shoalv1.Command_CreateVirtualService{CreateVirtualService: &shoalv1.CreateVirtualServiceRequest{Service: webService()}}}
}

func mustApply(t *testing.T, n *Node, cmd *shoalv1.Command) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := n.Apply(ctx, cmd)
	if err != nil {
		t.Fatalf("apply on %s: %v", n.id, err)
	}
	return res
}

// write commits cmd through whichever of ids leads (commitOnLeader).
func (c *cluster) write(cmd *shoalv1.Command, ids ...string) uint64 {
	c.t.Helper()
	return commitOnLeader(c.t, func() *Node { return c.leader(ids...) }, cmd)
}

// commitOnLeader commits cmd through the node leader finds, riding out leadership
// changes (a new cluster's first leader may lose its term to a rival
// candidate's), and returns the serial that includes it. When leadership
// was lost mid-commit the entry may have committed anyway, so a retry that
// finds it already there counts as success.
func commitOnLeader(t *testing.T, leader func() *Node, cmd *shoalv1.Command) uint64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	retried := false
	for {
		l := leader()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := l.Apply(ctx, cmd)
		cancel()
		var e *Error
		switch {
		case err == nil:
			return res.State.Config.Serial
		case retried && errors.As(err, &e) && e.Kind == KindAlreadyExists:
			return l.FSM().State().Config.Serial
		case time.Now().After(deadline) || !(errors.Is(err, ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost)):
			t.Fatalf("apply on %s: %v", l.id, err)
		}
		t.Logf("retrying after %v", err)
		retried = true
	}
}

// onLeader runs f on the leader of ids until it succeeds, retrying while
// leadership moves.
func (c *cluster) onLeader(what string, f func(l *Node) error, ids ...string) *Node {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := c.leader(ids...)
		err := f(l)
		if err == nil {
			return l
		}
		notLeader := errors.Is(err, ErrNotLeader) || errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost)
		if !notLeader || time.Now().After(deadline) {
			c.t.Fatalf("%s on %s: %v", what, l.id, err)
		}
	}
}

func (c *cluster) others(id string) []string {
	var out []string
	for pid := range c.nodes {
		if pid != id {
			out = append(out, pid)
		}
	}
	return out
}

func TestClusterLeaderShutdown(t *testing.T) {
	c := newCluster(t, 3)
	if serial := c.write(createWeb()); serial != 1 {
		t.Fatalf("serial %d", serial)
	}
	c.waitSerial(1, "n1", "n2", "n3")

	l := c.leader()
	// A follower refuses writes and names the leader.
	f := c.nodes[c.others(l.id)[0]]
	if _, err := f.Apply(context.Background(), addRS("10.0.0.5")); !errors.Is(err, ErrNotLeader) {
		t.Errorf("follower %s: got %v, want ErrNotLeader", f.id, err)
	}

	lead, cancel := l.Leadership()
	defer cancel()
	start := time.Now()
	if err := l.Shutdown(); err != nil {
		t.Fatal(err)
	}
	// Shutdown ends the subscription, with false as its last value.
	last := true
	for v := range lead {
		last = v
	}
	if last {
		t.Error("leadership subscription did not end with false")
	}
	rest := c.others(l.id)
	nl := c.leader(rest...)
	t.Logf("%s leads %s after %s began to shut down", nl.id, time.Since(start), l.id)
	serial := c.write(addRS("10.0.0.3"), rest...)
	c.waitSerial(serial, rest...)
}

func TestClusterPartitionedLeader(t *testing.T) {
	c := newCluster(t, 3)
	c.write(createWeb())
	c.waitSerial(1, "n1", "n2", "n3")

	old := c.leader()
	lead, cancel := old.Leadership()
	defer cancel()
	rest := c.others(old.id)
	c.partition(old.id)
	cut := time.Now()

	// The cut-off leader's fence drops the VIPs on its own, and raft steps
	// down; the majority elects a new leader. The drop must come first, or
	// the VIPs would be held twice.
	dropped := make(chan time.Duration, 1)
	go func() {
		for v := range lead {
			if !v {
				dropped <- time.Since(cut)
				return
			}
		}
	}()
	var elected time.Duration
	eventually(t, 5*time.Second, "a new leader to be elected and the old one to step down", func() bool {
		for _, id := range rest {
			if elected == 0 && c.nodes[id].Raft().State() == raft.Leader {
				elected = time.Since(cut)
			}
		}
		return elected > 0 && old.Raft().State() != raft.Leader
	})
	var drop time.Duration
	select {
	case drop = <-dropped:
	case <-time.After(time.Second):
		t.Fatal("the partitioned leader never dropped its VIPs")
	}
	t.Logf("after the partition: old leader dropped the VIPs at %s, new leader elected at %s", drop, elected)
	if drop >= elected {
		t.Errorf("old leader dropped the VIPs at %s, after the new leader was elected at %s", drop, elected)
	}
	if serial := c.write(addRS("10.0.0.3"), rest...); serial != 2 {
		t.Fatalf("serial %d after failover, want 2", serial)
	}
	if _, err := old.Apply(context.Background(), addRS("10.0.0.4")); !errors.Is(err, ErrNotLeader) {
		t.Errorf("old leader accepted a write while partitioned: %v", err)
	}
	if _, err := old.ReadIndex(context.Background()); !errors.Is(err, ErrNotLeader) {
		t.Errorf("old leader served a read index while partitioned: %v", err)
	}
	if got := old.FSM().State().Config.Serial; got != 1 {
		t.Errorf("partitioned node at serial %d, want 1", got)
	}

	c.heal(old.id)
	c.waitSerial(2, "n1", "n2", "n3")
	if !proto.Equal(old.FSM().State(), c.leader().FSM().State()) {
		t.Error("healed node's state differs from the leader's")
	}
}

func TestClusterMembership(t *testing.T) {
	c := newCluster(t, 3)
	c.write(createWeb())
	c.write(addRS("10.0.0.3"))

	// A fourth node starts empty (no bootstrap) and is added as a voter.
	n4 := c.start("n4", nil)
	c.onLeader("add voter", func(l *Node) error {
		return l.Raft().AddVoter("n4", "n4", 0, 5*time.Second).Error()
	}, "n1", "n2", "n3")
	c.waitSerial(2, "n4")
	c.write(&shoalv1.Command{Op: &shoalv1.Command_RegisterMember{RegisterMember: &shoalv1.RegisterMember{Id: "n4", ApiAddress: "127.0.0.4:7000"}}})

	// Linearizable read on a follower: the leader's read index, then wait.
	var idx uint64
	c.onLeader("read index", func(l *Node) (err error) {
		idx, err = l.ReadIndex(context.Background())
		return err
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n4.WaitApplied(ctx, idx); err != nil {
		t.Fatal(err)
	}
	if len(n4.FSM().State().Members) != 1 {
		t.Error("the read index did not cover the last write")
	}

	// Remove a node; the remaining three still commit.
	victim := "n1"
	if c.leader().id == victim {
		victim = "n2"
	}
	c.onLeader("remove server", func(l *Node) error {
		if l.id == victim {
			return fmt.Errorf("%w: victim leads", ErrNotLeader)
		}
		return l.Raft().RemoveServer(raft.ServerID(victim), 0, 5*time.Second).Error()
	})
	c.nodes[victim].Shutdown()
	delete(c.nodes, victim)
	l := c.leader()
	cf := l.Raft().GetConfiguration()
	if err := cf.Error(); err != nil || len(cf.Configuration().Servers) != 3 {
		t.Fatalf("configuration after removal: %v %v", cf.Configuration().Servers, err)
	}
	serial := c.write(addRS("10.0.0.4"))
	c.waitSerial(serial, c.others(victim)...)
	st := c.leader().Status()
	if st.Role != "leader" || st.LeaderID != st.ID || st.AppliedIndex == 0 || st.Term == 0 {
		t.Errorf("leader status %+v", st)
	}
}

func TestOpenRejectsLongLease(t *testing.T) {
	const ms = time.Millisecond
	for _, lease := range []time.Duration{100 * ms, 95 * ms, 91 * ms} {
		_, tr := raft.NewInmemTransport("x")
		_, err := Open(Options{ID: "x", InMemory: true, Transport: tr,
			Timing: Timing{Heartbeat: 100 * ms, Election: 100 * ms, LeaderLease: lease}})
		if err == nil {
			t.Errorf("lease %v with a 100ms heartbeat timeout was accepted; it leaves no time to drop the VIPs", lease)
		} else {
			t.Log(err)
		}
	}
	_, tr := raft.NewInmemTransport("y")
	defer tr.Close()
	n, err := Open(Options{ID: "y", InMemory: true, Transport: tr,
		Timing: Timing{Heartbeat: 100 * ms, Election: 100 * ms, LeaderLease: 90 * ms}})
	if err != nil {
		t.Fatalf("lease 90ms with a 100ms heartbeat timeout: %v", err)
	}
	n.Shutdown()
}

// TestRestartOnDisk reopens a node on its data directory: the bootstrap
// configuration passed again is ignored, and the state comes back from the
// snapshot and the log with the applied index it had.
func TestRestartOnDisk(t *testing.T) {
	dir := t.TempDir()
	open := func() *Node {
		_, tr := raft.NewInmemTransport("solo")
		n, err := Open(Options{ID: "solo", DataDir: dir, Timing: fastTiming, Transport: tr,
			Bootstrap: []raft.Server{{ID: "solo", Address: "solo"}}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := open()
	eventually(t, 5*time.Second, "solo to lead", func() bool { return n.Raft().State() == raft.Leader })
	mustApply(t, n, createWeb())
	if err := n.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	mustApply(t, n, addRS("10.0.0.3"))
	want, wantIdx := n.FSM().State(), n.FSM().AppliedIndex()
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}

	n = open()
	defer n.Shutdown()
	eventually(t, 5*time.Second, "restart to replay", func() bool { return n.FSM().AppliedIndex() >= wantIdx })
	if !proto.Equal(n.FSM().State(), want) {
		t.Errorf("state after restart:\n%v\nwant\n%v", n.FSM().State(), want)
	}
}

func TestLeadershipFanOut(t *testing.T) {
	notify := make(chan bool)
	l := newLeadership(notify, newTestFence(1, time.Second, voters("a")), slog.New(slog.DiscardHandler), func(string) {}) // the only voter: raft decides alone
	a, cancelA := l.subscribe()
	defer cancelA()
	if v := <-a; v {
		t.Fatal("first value true before any notification")
	}
	notify <- true
	if v := <-a; !v {
		t.Fatal("did not see leadership")
	}
	b, cancelB := l.subscribe()
	if v := <-b; !v {
		t.Fatal("new subscriber's first value is not the current one")
	}
	cancelB()
	if _, ok := <-b; ok {
		t.Fatal("cancelled subscription still open")
	}
	// A reader that does not keep up sees the latest value, not a queue.
	notify <- false
	notify <- true
	notify <- false
	notify <- false // the loop has handled the flaps once it takes this
	l.stop()
	var got []bool
	for v := range a {
		got = append(got, v)
	}
	if len(got) != 1 || got[0] {
		t.Errorf("after flaps and stop got %v, want [false]", got) // coalesced, then the final false
	}
}
