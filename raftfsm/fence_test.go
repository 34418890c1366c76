package raftfsm

import (
	"errors"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	dto "github.com/prometheus/client_model/go"
)

func lapseCount(t *testing.T) float64 {
	var m dto.Metric
	if err := fenceLapses.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// fakeFenceRaft is a raft with a fixed term and configuration.
type fakeFenceRaft struct {
	term   atomic.Uint64
	config raft.Configuration
}

func (r *fakeFenceRaft) CurrentTerm() uint64 { return r.term.Load() }
func (r *fakeFenceRaft) GetConfiguration() raft.ConfigurationFuture {
	return configFuture{r.config}
}

func voters(ids ...string) raft.Configuration {
	var c raft.Configuration
	for _, id := range ids {
		c.Servers = append(c.Servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(id), Suffrage: raft.Voter})
	}
	return c
}

func newTestFence(term uint64, lease time.Duration, c raft.Configuration) *fence {
	r := &fakeFenceRaft{config: c}
	r.term.Store(term)
	f := newFence("a", lease, nil, 0)
	f.raft = r
	return f
}

func TestFenceQuorum(t *testing.T) {
	const lease = 30 * time.Millisecond
	base := time.Unix(1000, 0)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	type ack struct {
		id   string
		term uint64
		ms   int
	}
	tests := []struct {
		name   string
		config raft.Configuration
		acks   []ack
		want   time.Time // zero: no authority
	}{
		{"three voters need one other", voters("a", "b", "c"), []ack{{"b", 5, 10}, {"c", 5, 4}}, at(10).Add(lease)},
		{"the freshest ack of a peer counts", voters("a", "b", "c"), []ack{{"b", 5, 10}, {"b", 5, 7}}, at(10).Add(lease)},
		{"five voters need two others", voters("a", "b", "c", "d", "e"), []ack{{"b", 5, 10}, {"c", 5, 4}, {"d", 5, 8}}, at(8).Add(lease)},
		{"five voters, one ack is not enough", voters("a", "b", "c", "d", "e"), []ack{{"b", 5, 10}}, time.Time{}},
		{"nothing accepted yet", voters("a", "b", "c"), nil, time.Time{}},
		{"acks of an older term do not count", voters("a", "b", "c"), []ack{{"b", 4, 10}}, time.Time{}},
		{"a newer term forgets the older acks", voters("a", "b", "c", "d", "e"), []ack{{"b", 4, 10}, {"c", 4, 10}, {"d", 5, 12}}, time.Time{}},
		{"an older term's ack after a newer one is ignored", voters("a", "b", "c"), []ack{{"b", 5, 6}, {"c", 4, 10}}, at(6).Add(lease)},
		{"non-voters do not count", func() raft.Configuration {
			c := voters("a", "b", "c")
			c.Servers = append(c.Servers, raft.Server{ID: "x", Suffrage: raft.Nonvoter})
			return c
		}(), []ack{{"x", 5, 10}}, time.Time{}},
		{"a leader that is not a voter needs a quorum of the others", voters("b", "c", "d"), []ack{{"b", 5, 10}, {"c", 5, 3}}, at(3).Add(lease)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFence(5, lease, tt.config)
			for _, a := range tt.acks {
				f.accepted(raft.ServerID(a.id), a.term, at(a.ms))
			}
			got, forever := f.until(at(11))
			if forever || !got.Equal(tt.want) {
				t.Errorf("until = %v (forever %v), want %v", got.Sub(base), forever, tt.want.Sub(base))
			}
		})
	}
}

func TestFenceSingleVoterHoldsForever(t *testing.T) {
	f := newTestFence(1, 30*time.Millisecond, voters("a"))
	if _, forever := f.until(time.Now()); !forever {
		t.Error("the only voter has no one to wait for, yet the fence closed")
	}
}

// TestFenceRaftTerm: acks of the current term count only while raft is
// still in that term.
func TestFenceRaftTerm(t *testing.T) {
	f := newTestFence(5, 30*time.Millisecond, voters("a", "b", "c"))
	now := time.Now()
	f.accepted("b", 5, now)
	if u, _ := f.until(now); u.IsZero() {
		t.Fatal("no authority from an ack of the current term")
	}
	f.raft.(*fakeFenceRaft).term.Store(6)
	if u, _ := f.until(now); !u.IsZero() {
		t.Errorf("authority %v from an ack of term 5 in term 6", u.Sub(now))
	}
}

// stubTransport answers every request with the given responses.
type stubTransport struct {
	raft.Transport
	append  raft.AppendEntriesResponse
	vote    raft.RequestVoteResponse
	err     error
	latency time.Duration
}

func (s *stubTransport) AppendEntries(_ raft.ServerID, _ raft.ServerAddress, _ *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	time.Sleep(s.latency)
	*resp = s.append
	return s.err
}

func (s *stubTransport) RequestVote(_ raft.ServerID, _ raft.ServerAddress, _ *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	time.Sleep(s.latency)
	*resp = s.vote
	return s.err
}

func (s *stubTransport) RequestPreVote(raft.ServerID, raft.ServerAddress, *raft.RequestPreVoteRequest, *raft.RequestPreVoteResponse) error {
	return s.err
}

// TestFencedTransport: what counts as accepted, and that the time recorded
// is when the request left, not when the answer came back.
func TestFencedTransport(t *testing.T) {
	const latency = 20 * time.Millisecond
	tests := []struct {
		name  string
		stub  stubTransport
		vote  bool
		count bool
	}{
		{"heartbeat accepted", stubTransport{append: raft.AppendEntriesResponse{Term: 5, Success: true}}, false, true},
		{"append refused", stubTransport{append: raft.AppendEntriesResponse{Term: 5}}, false, false},
		{"answer from a newer term", stubTransport{append: raft.AppendEntriesResponse{Term: 6, Success: true}}, false, false},
		{"transport error", stubTransport{append: raft.AppendEntriesResponse{Term: 5, Success: true}, err: errors.New("cut")}, false, false},
		{"vote granted", stubTransport{vote: raft.RequestVoteResponse{Term: 5, Granted: true}}, true, true},
		{"vote refused", stubTransport{vote: raft.RequestVoteResponse{Term: 5}}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFence(5, time.Second, voters("a", "b", "c"))
			stub := tt.stub
			stub.latency = latency
			tr := fencedTransport{&stub, f}
			sent := time.Now()
			if tt.vote {
				_ = tr.RequestVote("b", "b", &raft.RequestVoteRequest{Term: 5}, &raft.RequestVoteResponse{})
			} else {
				_ = tr.AppendEntries("b", "b", &raft.AppendEntriesRequest{Term: 5}, &raft.AppendEntriesResponse{})
			}
			u, _ := f.until(time.Now())
			switch {
			case !tt.count && !u.IsZero():
				t.Errorf("counted as accepted (until %v)", u.Sub(sent))
			case tt.count && u.IsZero():
				t.Error("not counted as accepted")
			case tt.count && u.Sub(sent) > time.Second+latency/2:
				t.Errorf("authority runs %v after the send, want about the lease (1s): the answer's time was taken", u.Sub(sent))
			}
		})
	}
}

// TestLeadershipFollowsFence: a leader holds the VIPs while acks arrive,
// drops them within about a lease after they stop, and takes them back at
// the next ack.
func TestLeadershipFollowsFence(t *testing.T) {
	const lease = 50 * time.Millisecond
	f := newTestFence(5, lease, voters("a", "b", "c"))
	f.accepted("b", 5, time.Now())
	notify := make(chan bool, 1)
	events := make(chan string, 10)
	l := newLeadership(notify, f, slog.New(slog.DiscardHandler), func(e string) { events <- e })
	defer l.stop()
	ch, cancel := l.subscribe()
	defer cancel()
	next := func(want bool, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		select {
		case v := <-ch:
			if v != want {
				t.Fatalf("leadership %v, want %v", v, want)
			}
		case <-time.After(within):
			t.Fatalf("leadership did not become %v within %v", want, within)
		}
		return time.Since(start)
	}
	next(false, time.Second)
	notify <- true
	next(true, time.Second)
	lastAck := time.Now()
	for range 5 { // acks every 10ms keep it held
		time.Sleep(10 * time.Millisecond)
		lastAck = time.Now()
		f.accepted("b", 5, lastAck)
	}
	lapses := lapseCount(t)
	next(false, time.Second)
	if held := time.Since(lastAck); held < lease {
		t.Errorf("dropped %v after the last ack was sent, before the lease of %v ran out", held, lease)
	}
	if got := lapseCount(t) - lapses; got != 1 {
		t.Errorf("lapses counted: %v, want 1", got)
	}
	if len(events) != 1 || <-events != "fence-lapse" {
		t.Errorf("the lapse was not reported to Stalled as fence-lapse")
	}
	f.accepted("b", 5, time.Now())
	if d := next(true, time.Second); d > 20*time.Millisecond {
		t.Logf("took %v to hold again after an ack", d)
	}
	// A newer term (a transfer, a vote for another node) ends the authority
	// at once, and is no lapse.
	f.raft.(*fakeFenceRaft).term.Store(6)
	f.wake <- struct{}{} // as an ack would
	next(false, time.Second)
	if got := lapseCount(t) - lapses; got != 1 {
		t.Errorf("lapses counted: %v after a term change, want still 1", got)
	}
	if len(events) != 0 {
		t.Errorf("a term change was reported to Stalled: %q", <-events)
	}
	notify <- false
	select {
	case v := <-ch:
		t.Errorf("leadership %v after raft's false, want no change (already false)", v)
	case <-time.After(20 * time.Millisecond):
	}
}

// TestFenceMembershipChange: the quorum follows the latest configuration at
// the next look.
func TestFenceMembershipChange(t *testing.T) {
	f := newTestFence(5, time.Second, voters("a", "b", "c"))
	now := time.Now()
	f.accepted("b", 5, now)
	if u, _ := f.until(now); u.IsZero() {
		t.Fatal("no authority with one of two others")
	}
	f.raft.(*fakeFenceRaft).config = voters("a", "b", "c", "d", "e")
	if u, _ := f.until(now); !u.IsZero() {
		t.Errorf("authority %v with one of four others, a quorum needs two", u.Sub(now))
	}
}

// TestFenceProbes: with kernel probes a follower's authority ends at the
// earlier of its ack plus the lease and its probe evidence plus nine
// tenths of the probe timeout.
func TestFenceProbes(t *testing.T) {
	const (
		lease = 90 * time.Millisecond
		pt    = 20 * time.Millisecond // probe lease 18ms
	)
	base := time.Unix(1000, 0)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	ip := func(id string) netip.Addr { return netip.MustParseAddr("10.0.0." + id[:1]) } // "1a" and "1b" share one
	config := func(ids ...string) raft.Configuration {
		var c raft.Configuration
		for _, id := range ids {
			c.Servers = append(c.Servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(ip(id).String() + ":7000"), Suffrage: raft.Voter})
		}
		return c
	}
	type peer struct {
		id            string
		ack, evidence int // ms; evidence 0 = none
	}
	for _, tc := range []struct {
		name  string
		ids   []string
		peers []peer
		want  time.Time
	}{
		{"probes fresher than the ack", []string{"1", "2", "3"}, []peer{{"2", 10, 50}}, at(50 + 18)},
		{"probes older than the ack", []string{"1", "2", "3"}, []peer{{"2", 60, 50}}, at(50 + 18)},
		{"no probe: the lease", []string{"1", "2", "3"}, []peer{{"2", 10, 0}}, at(10 + 90)},
		{"probes alone give nothing", []string{"1", "2", "3"}, []peer{{"2", 0, 50}}, time.Time{}},
		{"the freshest follower counts", []string{"1", "2", "3"}, []peer{{"2", 10, 50}, {"3", 10, 40}}, at(50 + 18)},
		{"five voters need two", []string{"1", "2", "3", "4", "5"}, []peer{{"2", 10, 50}, {"3", 20, 0}, {"4", 5, 60}}, at(60 + 18)},
		// One host: the probes' source address does not tell the peers apart.
		{"peers sharing this node's address", []string{"1", "1b", "1c"}, []peer{{"1b", 10, 50}}, at(10 + 90)},
		{"two peers sharing an address", []string{"1", "2a", "2b"}, []peer{{"2a", 10, 50}, {"2b", 10, 50}}, at(10 + 90)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &fakeFenceRaft{config: config(tc.ids...)}
			r.term.Store(5)
			p := &fakeProbes{evidence: map[netip.Addr]time.Time{}}
			f := newFence("1", lease, p, pt)
			f.raft = r
			for _, pe := range tc.peers {
				if pe.ack > 0 {
					f.accepted(raft.ServerID(pe.id), 5, at(pe.ack))
				}
				if pe.evidence > 0 {
					p.evidence[ip(pe.id)] = at(pe.evidence)
				}
			}
			got, _ := f.until(at(100))
			if !got.Equal(tc.want) {
				t.Errorf("until %v, want %v", got.Sub(base), tc.want.Sub(base))
			}
		})
	}
}
