package raftfsm

import (
	"slices"
	"time"

	"github.com/hashicorp/raft"
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
type detector struct {
	raft   raftTimer
	id     raft.ServerID
	hb, et time.Duration // the configured heartbeat and election timeouts
	done   chan struct{}
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
}

// configEvery bounds how stale the voter list behind the stagger may be.
const configEvery = time.Second

func newDetector(r raftTimer, id raft.ServerID, hb, et time.Duration, stalled func(string)) *detector {
	d := &detector{raft: r, id: id, hb: hb, et: et, stalled: stalled, done: make(chan struct{}), stopped: make(chan struct{})}
	go d.run()
	return d
}

// detectStep is the stagger between two followers' detections: raft sends
// heartbeats every HT/10 to HT/5.
func detectStep(hb time.Duration) time.Duration { return hb / 5 }

func (d *detector) run() {
	defer close(d.stopped)
	t := time.NewTimer(d.hb)
	defer t.Stop()
	for {
		select {
		case <-d.done:
			return
		case <-t.C:
		}
		t.Reset(d.check(time.Now()))
	}
}

// check starts an election when the leader is overdue and returns how long
// to sleep before the next look.
func (d *detector) check(now time.Time) time.Duration {
	if d.raft.State() != raft.Follower {
		// A leader sends heartbeats every HT/10 to HT/5 of its own timeout.
		d.setTimeout(d.hb)
		return d.hb
	}
	last := d.raft.LastContact()
	if last.IsZero() {
		return d.hb // never had a leader: raft's own timer elects the first
	}
	if now.Sub(d.votersAt) > configEvery {
		d.voters = d.voterIDs()
		d.votersAt = now
	}
	stagger := d.stagger()
	if wait := last.Add(d.hb + stagger).Sub(now); wait > 0 {
		d.holdOff(stagger)
		return wait
	}
	d.startElection()
	d.stalled("leader-silent")
	return d.hb
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

// stagger is detectStep times this node's rank among the voters other than
// the leader it last followed.
func (d *detector) stagger() time.Duration {
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
	return time.Duration(rank) * detectStep(d.hb)
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

// startElection makes raft re-check its follower timer now. hashicorp/raft
// has no call for that, but ReloadConfig with a shorter heartbeat timeout
// is documented to update a follower's running timer at once. Raft then
// finds the leader silent for longer than the (now shorter) timeout and
// becomes a candidate, as its own timer would have a little later. The
// timeout stays short until the next check, so that raft cannot read the
// longer one back before it looks.
func (d *detector) startElection() {
	d.setTimeout(d.hb - time.Microsecond)
}

func (d *detector) stop() {
	close(d.done)
	<-d.stopped
}
