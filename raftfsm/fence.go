package raftfsm

import (
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// fence bounds how long a leader may go on holding the VIPs without fresh
// word from a quorum, by the clock of the followers that will replace it.
//
// A follower starts an election no sooner than one heartbeat timeout after
// it last accepted a request from the leader (an AppendEntries, or the vote
// it granted), and a hashicorp/raft voter refuses to vote while it still
// follows a leader. So no successor can be elected before a quorum of the
// other voters has each been silent for a heartbeat timeout. The leader
// knows when it sent the latest request each follower accepted; with itself
// counted, the quorum's oldest such send time t0 is the latest moment a
// successor's election can be measured from, and t0 plus the heartbeat
// timeout the earliest moment a successor can exist. The fence holds the
// VIPs until t0 plus the leader lease, which Timing.Validate keeps a tenth
// of the heartbeat timeout shorter, for taking them down.
//
// raft's own lease counts from when replies were processed. A leader that
// stalled processes them late, so it overrates its authority; and as its
// lease timer races the queued replies, it steps down after stalls it
// would have survived. Send times have neither fault, so raft's lease now
// only decides when raft gives up; the VIPs follow the fence.
type fence struct {
	self  raft.ServerID
	lease time.Duration
	raft  fenceRaft

	mu   sync.Mutex
	term uint64
	acks map[raft.ServerID]time.Time // send time of the latest accepted request of term
	// t0 is the quorum's oldest ack, so the VIPs may be held until t0+lease.
	t0 time.Time
	// others is the other voters and need how many of them must have
	// accepted, as of the last call of until.
	others []raft.ServerID
	need   int
	// waiting is set while the leader is fenced off and wants to hear of
	// the next ack.
	waiting bool
	wake    chan struct{}
}

// fenceRaft is the part of *raft.Raft the fence reads.
type fenceRaft interface {
	CurrentTerm() uint64
	GetConfiguration() raft.ConfigurationFuture
}

var (
	quorumAckGap = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "shoal_raft_quorum_ack_gap_seconds",
		Help: "On the leader, how far the send time of the quorum's oldest accepted request moved forward, each time it did: " +
			"the leader drops its VIPs when a gap exceeds the leader lease.",
		Buckets: []float64{.001, .002, .005, .01, .015, .02, .025, .03, .04, .05, .1, .2, .5, 1, 2},
	})
	fenceLapses = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "shoal_raft_fence_lapses_total",
		Help: "Times a leader dropped its VIPs because no quorum had accepted a request sent within the leader lease.",
	})
)

func init() { prometheus.MustRegister(quorumAckGap, fenceLapses) }

func newFence(self raft.ServerID, lease time.Duration) *fence {
	return &fence{self: self, lease: lease, acks: map[raft.ServerID]time.Time{}, wake: make(chan struct{}, 1)}
}

// accepted records that peer id accepted a request of term sent at sent.
func (f *fence) accepted(id raft.ServerID, term uint64, sent time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case term < f.term:
		return
	case term > f.term:
		f.term, f.t0 = term, time.Time{}
		clear(f.acks)
	}
	if !sent.After(f.acks[id]) {
		return
	}
	f.acks[id] = sent
	if t0 := f.quorumAck(); t0.After(f.t0) {
		if !f.t0.IsZero() {
			quorumAckGap.Observe(t0.Sub(f.t0).Seconds())
		}
		f.t0 = t0
	}
	if f.waiting {
		f.waiting = false
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

// quorumAck returns the need-th latest ack among the other voters, zero
// when fewer have accepted anything this term.
func (f *fence) quorumAck() time.Time {
	if f.need == 0 {
		return time.Time{}
	}
	var ts []time.Time
	for _, id := range f.others {
		if t, ok := f.acks[id]; ok {
			ts = append(ts, t)
		}
	}
	if len(ts) < f.need {
		return time.Time{}
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return b.Compare(a) })
	return ts[f.need-1]
}

// until returns when this node's authority to hold the VIPs as leader runs
// out; a zero time means it has none. A node that needs no other voter (the
// only voter) holds them without end. When the authority has run out at
// now, the next ack pokes wake.
func (f *fence) until(now time.Time) (until time.Time, forever bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// The voters are read afresh each time (a copy of the latest
	// configuration, no raft round trip), so a membership change counts
	// from the next look, at most one lease later.
	f.refreshVoters()
	f.t0 = f.quorumAck()
	if f.need == 0 {
		return time.Time{}, true
	}
	if f.term == f.raft.CurrentTerm() && !f.t0.IsZero() {
		until = f.t0.Add(f.lease)
	}
	f.waiting = !now.Before(until)
	return until, false
}

// refreshVoters reads the other voters from the latest configuration.
// A leader that is not a voter itself (it is removing itself) needs a full
// quorum of the others.
func (f *fence) refreshVoters() {
	c := f.raft.GetConfiguration()
	if c.Error() != nil {
		return
	}
	voters := votersOf(c.Configuration())
	f.need = len(voters)/2 + 1
	if slices.Contains(voters, f.self) {
		f.need-- // this node's own vote
	}
	f.others = slices.DeleteFunc(voters, func(id raft.ServerID) bool { return id == f.self })
}

// fencedTransport tells the fence when a peer accepted a request: an
// AppendEntries it answered with success in the request's term, or a vote
// it granted. A vote counts because granting one restarts the voter's
// follower timer as a heartbeat does; so a new leader's votes let it hold
// the VIPs at once. The time taken is before the first try, which is no
// later than any retry the peer accepted.
type fencedTransport struct {
	preVoteTransport
	fence *fence
}

// preVoteTransport is what raft needs to run pre-vote elections, which
// keep a node that was cut off from disturbing the leader when it returns.
type preVoteTransport interface {
	raft.Transport
	raft.WithPreVote
}

func (t fencedTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	sent := time.Now()
	err := t.preVoteTransport.AppendEntries(id, target, args, resp)
	if err == nil && resp.Success && resp.Term == args.Term {
		t.fence.accepted(id, args.Term, sent)
	}
	return err
}

func (t fencedTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	sent := time.Now()
	err := t.preVoteTransport.RequestVote(id, target, args, resp)
	if err == nil && resp.Granted && resp.Term == args.Term {
		t.fence.accepted(id, args.Term, sent)
	}
	return err
}
