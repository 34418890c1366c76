package main

import (
	"net/netip"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/dataplane/bgp"
	"github.com/shoal-lb/shoal/raftfsm"
)

func TestDefaultRouterID(t *testing.T) {
	for _, tc := range []struct {
		source, raft, want string
	}{
		{"10.0.0.5", "10.0.0.9:7000", "10.0.0.5"},
		{"", "10.0.0.9:7000", "10.0.0.9"},
		{"2001:db8::1", "10.0.0.9:7000", "10.0.0.9"},
		{"", "127.0.0.1:7071", ""},
		{"", "0.0.0.0:7071", ""},
		{"", "[2001:db8::9]:7000", ""},
		{"", "router1:7000", ""},
	} {
		var src netip.Addr
		if tc.source != "" {
			src = netip.MustParseAddr(tc.source)
		}
		if got := defaultRouterID(src, tc.raft); got != tc.want {
			t.Errorf("defaultRouterID(%q, %q) = %q, want %q", tc.source, tc.raft, got, tc.want)
		}
	}
}

// TestBlockedByRaft: a leader and a follower that heard from its leader
// within the election timeout may announce; anything else may not.
func TestBlockedByRaft(t *testing.T) {
	dp := &fakeReady{ok: true}
	w := &bgpWiring{contact: time.Second, dp: dp}
	for _, tc := range []struct {
		st   raftfsm.Status
		want bgp.Reason
	}{
		{raftfsm.Status{Role: "leader"}, ""},
		{raftfsm.Status{Role: "follower", LeaderID: "r1", LastContact: 100 * time.Millisecond}, ""},
		{raftfsm.Status{Role: "follower", LeaderID: "r1", LastContact: 2 * time.Second}, bgp.ReasonNoQuorum},
		{raftfsm.Status{Role: "follower", LastContact: 100 * time.Millisecond}, bgp.ReasonNoQuorum},
		{raftfsm.Status{Role: "candidate"}, bgp.ReasonNoQuorum},
		{raftfsm.Status{Role: "shutdown"}, bgp.ReasonNoQuorum},
	} {
		dp.ok = true
		if got := w.blocked(tc.st); got != tc.want {
			t.Errorf("blocked(%+v) = %q, want %q", tc.st, got, tc.want)
		}
	}
}

type fakeReady struct{ ok bool }

func (f *fakeReady) Ready() (bool, string) { return f.ok, "reconcile failed" }

func TestBlockedByDataplane(t *testing.T) {
	dp := &fakeReady{}
	w := &bgpWiring{contact: time.Second, dp: dp}
	if got := w.blocked(raftfsm.Status{Role: "leader"}); got != bgp.ReasonUnhealthy {
		t.Errorf("unready dataplane: %q, want %q", got, bgp.ReasonUnhealthy)
	}
	// Out of contact wins: it is the reason an operator must act on first.
	if got := w.blocked(raftfsm.Status{Role: "candidate"}); got != bgp.ReasonNoQuorum {
		t.Errorf("candidate with unready dataplane: %q", got)
	}
}
