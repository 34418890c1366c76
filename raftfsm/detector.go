package raftfsm

import (
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-lb/shoal/liveness"
)

// detector starts an election on a follower as soon as it has heard nothing
// from the leader for the heartbeat timeout (plus a per-node stagger).
//
// Raft's own follower timer fires at a random point in [HT, 2HT] and, when
// the leader was heard from less than HT ago, re-arms for as long again, so
// it notices a dead leader anywhere from HT to about 2.5 HT after the last
// contact; and hashicorp/raft refuses a (pre-)vote while the voter still
// has a leader, so an election waits for the slower of the two followers.
// Failover thus took about 2.6 HT. Detecting at HT plus a small stagger
// makes it about HT, so the heartbeat timeout, which is how long a stalled
// leader may go unheard before it is replaced, can be twice as long for the
// same failover time.
//
// The stagger keeps two followers from starting elections at the same
// instant and splitting the vote (each would vote for itself, and both
// would wait out an election timeout): the followers, ordered by ID, wait
// 0, 1, 2... steps of HT/5 more. HT/5 is the longest interval between the
// leader's heartbeats, so whichever follower heard the leader last, the
// next in line cannot get ahead of the one before it.
//
// With kernel probes (Probes) a follower also finds the leader gone when its
// daemon exits, or when its router has not answered the probes for the probe
// timeout PT; it then elects after a stagger of steps of PT/2 (minProbeStep
// at least), probing the leader every PT/8 meanwhile. The followers' last
// answers are a probe apart, and each finds the leader gone at its first
// probe after the timeout, a probe late at most, so a step of four probes
// orders them even when one probed late (steps of PT/5 split the vote once
// in 30 router crashes; raft's contact would not order them at all: its
// heartbeats reach the followers up to HT/5 apart). The step is never
// shorter than minProbeStep, though: the first follower's pre-vote must
// reach the second before its turn comes, and with a short PT four probes
// are less than that takes. The step costs nothing when the first follower
// is alive: the second one, having refused its pre-vote, elects without a
// stagger (below). The heartbeat timeout is then left for a daemon that
// hangs.
//
// A follower that learns of another one's campaign (a pre-vote request
// reached it after it last heard from the leader) elects as soon as it
// finds the leader gone itself, without a stagger: the other's pre-vote
// failed, since this node still had a leader when it refused it, so the
// other is waiting out an election timeout and will vote for this one; or,
// if this node missed the leader's last write, it refuses this one's
// pre-vote and campaigns again at once (third_party/raft/PATCH.md).
type detector struct {
	raft   raftTimer
	id     raft.ServerID
	hb, et time.Duration // the configured heartbeat and election timeouts
	probes Probes
	pt     time.Duration // probe timeout, with probes
	log    *slog.Logger
	// observed hears of the pre-vote requests raft receives and of its
	// leader changes (observes).
	observed chan raft.Observation
	campaign time.Time // when the latest pre-vote came
	follower time.Time // when this node was first seen a follower, since it last was not
	done     chan struct{}
	// stalled hears of each election the detector starts (Options.Stalled).
	stalled func(string)

	// voters is the sorted voter IDs, refreshed from the raft configuration
	// at most once per configEvery.
	voters   []raft.ServerID
	votersAt time.Time

	stopped chan struct{}
}

// raftTimer is the part of *raft.Raft the detector reads and pokes.
type raftTimer interface {
	State() raft.RaftState
	LastContact() time.Time
	LeaderWithID() (raft.ServerAddress, raft.ServerID)
	GetConfiguration() raft.ConfigurationFuture
	ReloadableConfig() raft.ReloadableConfig
	ReloadConfig(raft.ReloadableConfig) error
	ElectNow()
}

// configEvery bounds how stale the voter list behind the stagger may be.
const configEvery = time.Second

func newDetector(r raftTimer, id raft.ServerID, hb, et time.Duration, probes Probes, pt time.Duration, log *slog.Logger, stalled func(string)) *detector {
	d := &detector{raft: r, id: id, hb: hb, et: et, probes: probes, pt: pt, log: log, stalled: stalled,
		observed: make(chan raft.Observation, 4), done: make(chan struct{}), stopped: make(chan struct{})}
	go d.run()
	return d
}

// observes selects the observations the detector hears of: another
// node's campaign, and a new leader (or none), which a follower starts or
// stops probing at once.
func observes(o *raft.Observation) bool {
	switch o.Data.(type) {
	case raft.RequestPreVoteRequest, raft.LeaderObservation:
		return true
	}
	return false
}

// detectStep is the stagger between two followers' detections: raft sends
// heartbeats every HT/10 to HT/5.
func detectStep(hb time.Duration) time.Duration { return hb / 5 }

// minProbeStep is the least stagger step on the probe path: how long the
// first follower's pre-vote may take to reach the second on a busy host,
// over a connection it must first open (TCP and a TLS handshake), plus the
// followers' skew in finding the daemon dead. With a step of 4 ms (an 8 ms
// probe timeout) the second follower found a SIGKILLed leader's daemon
// dead 3 ms after the first, before the first one's pre-vote had reached
// it, and the two split the vote in 3 of 10 crashes: a quarter of a
// second lost to the election timeout each time.
const minProbeStep = 12 * time.Millisecond

// probeStep is the stagger step when the probes find the leader gone.
func probeStep(pt time.Duration) time.Duration { return max(pt/2, minProbeStep) }

func (d *detector) run() {
	defer close(d.stopped)
	t := time.NewTimer(d.hb)
	defer t.Stop()
	var down <-chan struct{}
	if d.probes != nil {
		down = d.probes.Down()
	}
	for {
		select {
		case <-d.done:
			if d.probes != nil {
				d.probes.Follow(time.Now(), netip.AddrPort{})
			}
			return
		case <-t.C:
		case o := <-d.observed:
			if _, ok := o.Data.(raft.RequestPreVoteRequest); ok {
				d.campaign = time.Now()
			}
		case <-down:
		}
		t.Stop()
		t.Reset(d.check(time.Now()))
	}
}

// check starts an election when the leader is overdue and returns how long
// to sleep before the next look.
func (d *detector) check(now time.Time) time.Duration {
	if d.raft.State() != raft.Follower {
		// A leader sends heartbeats every HT/10 to HT/5 of its own timeout.
		d.setTimeout(d.hb)
		d.follow(now, "")
		d.follower = time.Time{}
		return d.hb
	}
	if d.follower.IsZero() {
		d.follower = now
	}
	last := d.raft.LastContact()
	leader, _ := d.raft.LeaderWithID()
	if last.IsZero() {
		d.follow(now, "")
		return d.hb // never had a leader: raft's own timer elects the first
	}
	// A node that led or campaigned until just now last heard from a
	// leader long ago; like raft's own timer, count from when it became a
	// follower.
	last = later(last, d.follower)
	if now.Sub(d.votersAt) > configEvery {
		d.voters = d.voterIDs()
		d.votersAt = now
	}
	rank := d.rank()
	// The leader is gone at the heartbeat timeout, or sooner by the probes:
	// when its daemon died, or when its router stopped answering.
	gone, step, why := last.Add(d.hb), detectStep(d.hb), "heartbeat timeout"
	if since, v := d.follow(now, leader); v != liveness.Up && since.Before(gone) {
		gone, step, why = since, probeStep(d.pt), v.String()
	}
	stagger := time.Duration(rank) * step
	if d.campaign.After(last) && leader != "" {
		stagger = 0 // the campaign was refused: this node had a leader
	}
	if wait := gone.Add(stagger).Sub(now); wait > 0 {
		d.holdOff(time.Duration(rank) * detectStep(d.hb))
		if d.probes != nil {
			wait = min(wait, d.pt/8) // the probes' pace
		}
		return wait
	}
	if d.log != nil {
		d.log.Warn("leader gone, starting an election", "leader", leader, "why", why, "silent", now.Sub(last))
	}
	// ElectNow (shoal's patch of raft: third_party/raft/PATCH.md) starts
	// the election, with a pre-vote, now; raft's own timer would wait for
	// the heartbeat timeout, which is the leader lease at least.
	d.raft.ElectNow()
	d.stalled("leader-silent")
	return d.hb
}

// follow probes leader, a raft address, or stops probing (""); it
// reports what the probes find, and since when.
func (d *detector) follow(now time.Time, leader raft.ServerAddress) (time.Time, liveness.Verdict) {
	if d.probes == nil {
		return time.Time{}, liveness.Up
	}
	ap, _ := netip.ParseAddrPort(string(leader))
	return d.probes.Follow(now, ap)
}

// holdOff keeps raft's own follower timer from starting an election before
// this node's turn: raft checks at random moments whether the leader has
// been silent for its heartbeat timeout, so a second follower's timer could
// fire right at the first one's detection and split the vote (2 crashes in
// 40 did). Its timeout is therefore the detector's plus the stagger plus
// half a step; the election timeout may not be shorter than it.
func (d *detector) holdOff(stagger time.Duration) {
	d.setTimeout(d.hb + stagger + detectStep(d.hb)/2)
}

// setTimeout runs raft with heartbeat timeout hb (see holdOff).
func (d *detector) setTimeout(hb time.Duration) {
	rc := d.raft.ReloadableConfig()
	if rc.HeartbeatTimeout == hb {
		return
	}
	rc.HeartbeatTimeout, rc.ElectionTimeout = hb, max(d.et, hb)
	_ = d.raft.ReloadConfig(rc) // refused only below the lease: raft's timer elects then
}

// rank is this node's rank among the voters other than the leader it last
// followed; the stagger is that many steps.
func (d *detector) rank() int {
	_, leader := d.raft.LeaderWithID()
	rank := 0
	for _, id := range d.voters {
		if id == d.id {
			break
		}
		if id != leader {
			rank++
		}
	}
	return rank
}

// voterIDs returns the voters of the latest configuration; on error the
// ones known before.
func (d *detector) voterIDs() []raft.ServerID {
	f := d.raft.GetConfiguration()
	if f.Error() != nil {
		return d.voters
	}
	return votersOf(f.Configuration())
}

// votersOf returns the IDs of c's voters, sorted.
func votersOf(c raft.Configuration) []raft.ServerID {
	var ids []raft.ServerID
	for _, s := range c.Servers {
		if s.Suffrage == raft.Voter {
			ids = append(ids, s.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (d *detector) stop() {
	close(d.done)
	<-d.stopped
}
