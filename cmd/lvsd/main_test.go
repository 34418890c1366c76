package main

import (
	"testing"
	"time"

	"github.com/shoal-lb/shoal/raftfsm"
)

func TestTiming(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		args []string
		want raftfsm.Timing
		bad  bool
	}{
		{nil, raftfsm.Timing{Heartbeat: 200 * ms, Election: 200 * ms, LeaderLease: 180 * ms, Commit: 20 * ms}, false},
		{[]string{"--profile", "fast"}, raftfsm.Timing{Heartbeat: 200 * ms, Election: 200 * ms, LeaderLease: 180 * ms, Commit: 10 * ms, Probe: 25 * ms}, false},
		// The lease must leave a tenth of the heartbeat timeout.
		{[]string{"--profile", "fast", "--lease-timeout", "181ms"}, raftfsm.Timing{}, true},
		{[]string{"--profile", "fast", "--heartbeat-timeout", "300ms"}, raftfsm.Timing{Heartbeat: 300 * ms, Election: 200 * ms, LeaderLease: 180 * ms, Commit: 10 * ms, Probe: 25 * ms}, false},
		{[]string{"--profile", "fast", "--probe-timeout", "off"}, raftfsm.Timing{Heartbeat: 200 * ms, Election: 200 * ms, LeaderLease: 180 * ms, Commit: 10 * ms}, false},
		{[]string{"--profile", "lan", "--probe-timeout", "50ms"}, raftfsm.Timing{Heartbeat: 200 * ms, Election: 200 * ms, LeaderLease: 180 * ms, Commit: 20 * ms, Probe: 50 * ms}, false},
		// Probes shorter than 8ms, or not shorter than the heartbeat timeout.
		{[]string{"--profile", "fast", "--probe-timeout", "5ms"}, raftfsm.Timing{}, true},
		{[]string{"--profile", "fast", "--probe-timeout", "200ms"}, raftfsm.Timing{}, true},
		{[]string{"--profile", "wan", "--commit-timeout", "10ms"}, raftfsm.Timing{Heartbeat: time.Second, Election: time.Second, LeaderLease: 900 * ms, Commit: 10 * ms}, false},
		{[]string{"--heartbeat-timeout", "1s", "--election-timeout", "2s", "--lease-timeout", "300ms"}, raftfsm.Timing{Heartbeat: time.Second, Election: 2 * time.Second, LeaderLease: 300 * ms, Commit: 20 * ms}, false},
		{[]string{"--lease-timeout", "190ms"}, raftfsm.Timing{}, true},
		{[]string{"--profile", "moon"}, raftfsm.Timing{}, true},
	}
	for _, bad := range []string{"-1ms", "soon"} {
		if _, err := parseFlags([]string{"--id", "n1", "--probe-timeout", bad}); err == nil {
			t.Errorf("--probe-timeout %s accepted", bad)
		}
	}
	for _, tt := range tests {
		f, err := parseFlags(append([]string{"--id", "n1"}, tt.args...))
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.timing()
		if (err != nil) != tt.bad || (!tt.bad && got != tt.want) {
			t.Errorf("%v: %+v %v, want %+v", tt.args, got, err, tt.want)
		}
	}
}

func TestParseBootstrap(t *testing.T) {
	got, err := parseBootstrap("a=127.0.0.1:1, b=127.0.0.1:2")
	if err != nil || len(got) != 2 || got[1].ID != "b" || got[1].Address != "127.0.0.1:2" {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"a", "=x", "a=", "a=1,,b=2"} {
		if _, err := parseBootstrap(bad); err == nil {
			t.Errorf("parseBootstrap(%q) accepted", bad)
		}
	}
}
