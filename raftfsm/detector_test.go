package raftfsm

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// fakeTimer is a raft whose state, contact and voters the test sets; it
// records every ReloadConfig.
type fakeTimer struct {
	state   raft.RaftState
	contact time.Time
	voters  []raft.ServerID
	leader  raft.ServerID
	rc      raft.ReloadableConfig
	reloads []time.Duration
	lease   time.Duration // ReloadConfig refuses a heartbeat below it
}

func (f *fakeTimer) State() raft.RaftState  { return f.state }
func (f *fakeTimer) LastContact() time.Time { return f.contact }
func (f *fakeTimer) LeaderWithID() (raft.ServerAddress, raft.ServerID) {
	return raft.ServerAddress(f.leader), f.leader
}
func (f *fakeTimer) GetConfiguration() raft.ConfigurationFuture {
	var c raft.Configuration
	for _, id := range f.voters {
		c.Servers = append(c.Servers, raft.Server{ID: id, Suffrage: raft.Voter})
	}
	c.Servers = append(c.Servers, raft.Server{ID: "a-nonvoter", Suffrage: raft.Nonvoter})
	return configFuture{c}
}
func (f *fakeTimer) ReloadableConfig() raft.ReloadableConfig { return f.rc }
func (f *fakeTimer) ReloadConfig(rc raft.ReloadableConfig) error {
	if rc.HeartbeatTimeout < f.lease {
		return errors.New("lease longer than heartbeat")
	}
	f.reloads = append(f.reloads, rc.HeartbeatTimeout)
	f.rc = rc
	return nil
}

type configFuture struct{ c raft.Configuration }

func (configFuture) Error() error                        { return nil }
func (configFuture) Index() uint64                       { return 1 }
func (f configFuture) Configuration() raft.Configuration { return f.c }

func TestDetector(t *testing.T) {
	const hb = 30 * time.Millisecond
	step := detectStep(hb) // 6ms
	now := time.Unix(1000, 0)
	newFake := func() *fakeTimer {
		return &fakeTimer{state: raft.Follower, voters: []raft.ServerID{"r3", "r1", "r2"},
			rc: raft.ReloadableConfig{HeartbeatTimeout: hb, ElectionTimeout: hb}}
	}
	hold := func(stagger time.Duration) time.Duration { return hb + stagger + step/2 }
	for _, tc := range []struct {
		name     string
		id       raft.ServerID
		leader   raft.ServerID
		state    raft.RaftState
		contact  time.Duration // before now; 0 = never
		wantWait time.Duration
		// wantTimeout is the heartbeat timeout raft is left with; an
		// election needs one below the detector's (and below the silence).
		wantTimeout time.Duration
	}{
		{"fresh contact, first follower", "r1", "r2", raft.Follower, 10 * time.Millisecond, hb - 10*time.Millisecond, hold(0)},
		{"fresh contact, second follower waits a step longer", "r3", "r2", raft.Follower, 10 * time.Millisecond, hb + step - 10*time.Millisecond, hold(step)},
		{"the leader's rank is skipped", "r2", "r1", raft.Follower, 10 * time.Millisecond, hb - 10*time.Millisecond, hold(0)},
		{"no leader known: rank among all voters", "r3", "", raft.Follower, 10 * time.Millisecond, hb + 2*step - 10*time.Millisecond, hold(2 * step)},
		{"first follower overdue by the heartbeat timeout", "r1", "r2", raft.Follower, hb, hb, hb - time.Microsecond},
		{"second follower overdue, not yet due", "r3", "r2", raft.Follower, hb + step/2, step / 2, hold(step)},
		{"second follower due", "r3", "r2", raft.Follower, hb + step, hb, hb - time.Microsecond},
		{"never had a leader: raft's timer elects", "r1", "", raft.Follower, 0, hb, hb},
		{"leader", "r1", "r1", raft.Leader, time.Hour, hb, hb},
		{"candidate", "r1", "", raft.Candidate, time.Hour, hb, hb},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.state, f.leader = tc.state, tc.leader
			if tc.contact > 0 {
				f.contact = now.Add(-tc.contact)
			}
			var events []string
			d := &detector{raft: f, id: tc.id, hb: hb, et: hb, stalled: func(e string) { events = append(events, e) }}
			if got := d.check(now); got != tc.wantWait {
				t.Errorf("wait = %v, want %v", got, tc.wantWait)
			}
			if elects := tc.wantTimeout < hb; elects != slices.Equal(events, []string{"leader-silent"}) {
				t.Errorf("stall events %q; an election was started: %v", events, elects)
			}
			if f.rc.HeartbeatTimeout != tc.wantTimeout {
				t.Errorf("raft heartbeat timeout %v, want %v", f.rc.HeartbeatTimeout, tc.wantTimeout)
			}
			if f.rc.ElectionTimeout != max(hb, tc.wantTimeout) {
				t.Errorf("raft election timeout %v, want %v", f.rc.ElectionTimeout, max(hb, tc.wantTimeout))
			}
		})
	}
}

func TestDetectorRestoresTimeout(t *testing.T) {
	// After an election the new leader runs with the configured timeout
	// again (its heartbeats go out every HT/10 to HT/5), and a follower of
	// the new leader holds raft's timer off once more.
	const hb = 30 * time.Millisecond
	now := time.Unix(1000, 0)
	f := &fakeTimer{state: raft.Follower, voters: []raft.ServerID{"r1", "r2", "r3"}, leader: "r1", contact: now.Add(-hb - detectStep(hb)),
		rc: raft.ReloadableConfig{HeartbeatTimeout: hb, ElectionTimeout: hb}}
	d := &detector{raft: f, id: "r3", hb: hb, et: hb, stalled: func(string) {}}
	d.check(now) // r3 is due: election
	f.state, f.leader = raft.Leader, "r3"
	d.check(now)
	f.state, f.leader, f.contact = raft.Follower, "r2", now
	d.check(now)
	want := []time.Duration{hb - time.Microsecond, hb, hb + detectStep(hb) + detectStep(hb)/2} // r3 is second after r1
	if !slices.Equal(f.reloads, want) {
		t.Errorf("reloads %v, want %v", f.reloads, want)
	}
}

func TestDetectorLeaseAtHeartbeat(t *testing.T) {
	// When the lease equals the heartbeat timeout raft refuses the shorter
	// value: nothing changes and raft's own timer still elects.
	const hb = 30 * time.Millisecond
	now := time.Unix(1000, 0)
	f := &fakeTimer{state: raft.Follower, voters: []raft.ServerID{"r1"}, contact: now.Add(-time.Second),
		rc: raft.ReloadableConfig{HeartbeatTimeout: hb}, lease: hb}
	d := &detector{raft: f, id: "r1", hb: hb, et: hb, stalled: func(string) {}}
	d.check(now)
	if len(f.reloads) != 0 || f.rc.HeartbeatTimeout != hb {
		t.Errorf("reloads %v, heartbeat %v", f.reloads, f.rc.HeartbeatTimeout)
	}
}

// TestDetectorElectsAtHeartbeatTimeout cuts the leader off and expects a new
// leader one heartbeat timeout plus one stagger step (HT/5) after the
// followers last heard from it. Raft's own timers alone take 1.5 to 2.5
// heartbeat timeouts (both followers must notice), so the bound of 1.45 HT
// fails without the detector nearly always (three runs without it: 1.57 to
// 2.11 s).
func TestDetectorElectsAtHeartbeatTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("several seconds of raft timers")
	}
	const hb = time.Second
	c := newClusterTiming(t, 3, Timing{Heartbeat: hb, Election: hb, LeaderLease: hb / 2, Commit: 5 * time.Millisecond})
	l := c.leader()
	c.write(createWeb())
	rest := c.others(l.id)
	c.partition(l.id)
	var last time.Time
	for _, id := range rest {
		if lc := c.nodes[id].Raft().LastContact(); lc.After(last) {
			last = lc
		}
	}
	nl := c.leader(rest...)
	took := time.Since(last)
	t.Logf("%s leads %v after the followers last heard from %s (heartbeat timeout %v)", nl.id, took.Round(time.Millisecond), l.id, hb)
	if want := hb + detectStep(hb) + hb/4; took > want {
		t.Errorf("new leader after %v, want within %v", took, want)
	}
}
