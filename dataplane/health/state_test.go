package health

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// step is one check outcome fed to the state machine: after advancing the
// fake clock by `after`, a check of duration `took` passes (ok) or fails.
type step struct {
	after  time.Duration
	ok     bool
	wantUp bool
}

func TestTracker(t *testing.T) {
	const s = time.Second
	pass := func(after time.Duration, wantUp bool) step { return step{after, true, wantUp} }
	fail := func(after time.Duration, wantUp bool) step { return step{after, false, wantUp} }
	tests := []struct {
		name   string
		rules  rules
		initUp bool
		steps  []step
	}{
		{"initially down until first success", rules{Rise: 1, Fall: 3}, false,
			[]step{fail(2*s, false), pass(2*s, true)}},
		{"initially up", rules{Rise: 1, Fall: 3}, true,
			[]step{fail(2*s, true), fail(2*s, true), pass(2*s, true)}},
		{"fall after 3 consecutive failures", rules{Rise: 1, Fall: 3}, true,
			[]step{fail(2*s, true), fail(2*s, true), fail(2*s, false)}},
		{"a success resets the failure count", rules{Rise: 1, Fall: 3}, true,
			[]step{fail(2*s, true), fail(2*s, true), pass(2*s, true), fail(2*s, true), fail(2*s, true), fail(2*s, false)}},
		{"down_after before fall", rules{Rise: 1, Fall: 10, DownAfter: 5 * s}, true,
			[]step{fail(2*s, true), fail(2*s, true), fail(2*s, true), fail(2*s, false)}},
		{"down_after counts continuous failure only", rules{Rise: 1, Fall: 10, DownAfter: 5 * s}, true,
			[]step{fail(2*s, true), fail(2*s, true), pass(2*s, true), fail(2*s, true), fail(2*s, true), fail(2*s, true), fail(2*s, false)}},
		{"rise needs consecutive successes", rules{Rise: 3, Fall: 1}, false,
			[]step{pass(s, false), pass(s, false), fail(s, false), pass(s, false), pass(s, false), pass(s, true)}},
		{"reentry: successes must span the time", rules{Rise: 1, Fall: 1, Reentry: 10 * s}, false,
			[]step{pass(2*s, false), pass(4*s, false), pass(4*s, false), pass(2*s, true)}},
		{"flapping stays out", rules{Rise: 2, Fall: 1, Reentry: 5 * s}, false,
			[]step{pass(2*s, false), pass(2*s, false), fail(2*s, false), pass(2*s, false), pass(2*s, false), fail(2*s, false),
				pass(2*s, false), pass(2*s, false), fail(2*s, false), pass(2*s, false), pass(2*s, false)}},
		{"flapping stays out, then holds", rules{Rise: 2, Fall: 1, Reentry: 5 * s}, false,
			[]step{pass(2*s, false), fail(2*s, false), pass(2*s, false), pass(2*s, false), pass(2*s, false), pass(2*s, true)}},
		{"up again needs a fresh run after going down", rules{Rise: 2, Fall: 1}, true,
			[]step{fail(s, false), pass(s, false), pass(s, true)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			tr := newTracker(tt.rules, tt.initUp, clk.Now(), "new")
			for i, st := range tt.steps {
				clk.Advance(st.after)
				start := clk.Now()
				clk.Advance(10 * time.Millisecond) // the check's own duration
				var err error
				if !st.ok {
					err = errors.New("connect 10.0.0.1:80: connection refused")
				}
				wasUp := tr.up
				got, changed := tr.observe(observation{Start: start, End: clk.Now(), Err: err})
				if tr.up != st.wantUp {
					t.Fatalf("step %d (ok=%t): up=%t, want %t", i, st.ok, tr.up, st.wantUp)
				}
				if changed != (wasUp != tr.up) || (changed && (got.Up != tr.up || !got.At.Equal(clk.Now()) || !tr.since.Equal(clk.Now()))) {
					t.Fatalf("step %d: transition %+v changed=%t inconsistent with up %t→%t", i, got, changed, wasUp, tr.up)
				}
			}
		})
	}
}

func TestTrackerReasons(t *testing.T) {
	clk := newFakeClock()
	tr := newTracker(rules{Rise: 2, Fall: 1, Reentry: 3 * time.Second, DownAfter: time.Second}, true, clk.Now(), "new")
	obs := func(err error) transition {
		start := clk.Now()
		clk.Advance(2 * time.Second)
		got, _ := tr.observe(observation{Start: start, End: clk.Now(), Err: err})
		return got
	}
	if got := obs(errors.New(`expect "HTTP" not found in 12 bytes`)); got.Reason != `expect "HTTP" not found in 12 bytes` {
		t.Errorf("down reason %q", got.Reason)
	}
	if tr.lastErr == "" || tr.lastLatency != 2*time.Second {
		t.Errorf("last error %q latency %s", tr.lastErr, tr.lastLatency)
	}
	obs(nil)
	if got := obs(nil); got.Reason != "2 consecutive checks passed over 4s (reentry 3s)" {
		t.Errorf("up reason %q", got.Reason)
	}
	if tr.lastErr != "" {
		t.Errorf("last error kept after success: %q", tr.lastErr)
	}
	tr = newTracker(rules{Rise: 1, Fall: 5, DownAfter: 3 * time.Second}, true, clk.Now(), "new")
	obs(errors.New("boom"))
	if got := obs(errors.New("boom")); !strings.HasPrefix(got.Reason, "boom (failing for 4s)") {
		t.Errorf("down_after reason %q", got.Reason)
	}
}

func TestTrackerWithRulesKeepsVerdict(t *testing.T) {
	clk := newFakeClock()
	tr := newTracker(rules{Rise: 1, Fall: 2}, true, clk.Now(), "new")
	tr.observe(observation{Start: clk.Now(), End: clk.Now(), Err: errors.New("x")})
	tr = tr.withRules(rules{Rise: 1, Fall: 2})
	if !tr.up || tr.failRun != 0 {
		t.Fatalf("withRules: up=%t failRun=%d", tr.up, tr.failRun)
	}
	// The failure before the change does not count towards fall.
	tr.observe(observation{Start: clk.Now(), End: clk.Now(), Err: errors.New("x")})
	if !tr.up {
		t.Fatal("went down on the first failure after a check change")
	}
}
