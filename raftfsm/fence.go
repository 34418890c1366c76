package raftfsm

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
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
// With kernel probes (Probes), a follower also starts an election when the
// leader's router has stopped answering them for the probe timeout PT. The
// leader learns from the probes, with their kernel arrival times and even
// after a stall of its own, a time after which each follower's probes were
// answered (Probes.Evidence). So for each follower the authority runs out
// at the earlier of its ack plus the lease and, with probes, its evidence
// plus nine tenths of PT; the VIPs are held while a quorum's authority
// lasts. A follower that has sent no probe yet may start any moment, so
// with probes the authority is looked at again at least every 0.9 PT.
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
	// probes, if set, tell how fresh each follower's evidence of this node
	// is; probeLease is nine tenths of the probe timeout.
	probes     Probes
	probeLease time.Duration

	mu   sync.Mutex
	term uint64
	acks map[raft.ServerID]time.Time // send time of the latest accepted request of term
	// t0 is the quorum's oldest ack, followed by quorumAckGap.
	t0 time.Time
	// others is the other voters, addrs their raft addresses' IPs, and
	// need how many of them must have accepted, as of the last call of
	// until.
	others []raft.ServerID
	addrs  []netip.Addr
	need   int
	// evidence is what the probes said of others at the last look.
	evidence []time.Time
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

func newFence(self raft.ServerID, lease time.Duration, probes Probes, probeTimeout time.Duration) *fence {
	return &fence{self: self, lease: lease, probes: probes, probeLease: probeTimeout - probeTimeout/10,
		acks: map[raft.ServerID]time.Time{}, wake: make(chan struct{}, 1)}
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
	if f.term == f.raft.CurrentTerm() {
		until = f.quorumAuthority(now)
	}
	f.waiting = !now.Before(until)
	return until, false
}

// quorumAuthority is the need-th latest of the other voters' authorities
// (see fence), zero when fewer have accepted anything this term.
func (f *fence) quorumAuthority(now time.Time) time.Time {
	if f.probes != nil {
		f.evidence = f.probes.Evidence(now, f.addrs)
	}
	var ts []time.Time
	for i, id := range f.others {
		ack, ok := f.acks[id]
		if !ok {
			continue
		}
		t := ack.Add(f.lease)
		if i < len(f.evidence) && !f.evidence[i].IsZero() {
			if p := f.evidence[i].Add(f.probeLease); p.Before(t) {
				t = p
			}
		}
		ts = append(ts, t)
	}
	if len(ts) < f.need {
		return time.Time{}
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return b.Compare(a) })
	return ts[f.need-1]
}

// describe says, for a lapse's log line, how old each other voter's latest
// accepted request and probe evidence are.
func (f *fence) describe(now time.Time) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for i, id := range f.others {
		fmt.Fprintf(&b, "%s: ack %s", id, age(now, f.acks[id]))
		if i < len(f.evidence) {
			fmt.Fprintf(&b, ", probes %s", age(now, f.evidence[i]))
		}
		if i < len(f.others)-1 {
			b.WriteString("; ")
		}
	}
	return b.String()
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return now.Sub(t).Round(100 * time.Microsecond).String()
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
	if f.probes == nil {
		return
	}
	// Probes are told apart by their source address, so peers that share
	// one (several nodes on one host) get no authority from them.
	seen := map[netip.Addr]int{addrOf(c.Configuration(), f.self).Addr(): 1}
	f.addrs = f.addrs[:0]
	for _, id := range f.others {
		a := addrOf(c.Configuration(), id).Addr()
		seen[a]++
		f.addrs = append(f.addrs, a)
	}
	for i, a := range f.addrs {
		if seen[a] > 1 {
			f.addrs[i] = netip.Addr{}
		}
	}
}

// addrOf returns the IP and port of server id's raft address; the zero
// value when it is not an IP literal (such a peer's probes are not
// matched, which only costs its quicker failover).
func addrOf(c raft.Configuration, id raft.ServerID) netip.AddrPort {
	for _, s := range c.Servers {
		if s.ID == id {
			ap, _ := netip.ParseAddrPort(string(s.Address))
			return ap
		}
	}
	return netip.AddrPort{}
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
