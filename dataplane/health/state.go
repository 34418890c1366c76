package health

import (
	"fmt"
	"time"
)

// Strings used for RealServerHealth.state and the "to" label of the
// transition counter.
const (
	StateUp   = "up"
	StateDown = "down"
)

// stateUnchecked is where a server with no verdict yet comes from in the
// log of its first transition; its RealServerHealth.state is still down.
const stateUnchecked = "unchecked"

// rules are the parts of a health check that decide transitions; the zero
// values of Rise and Fall are treated as 1.
type rules struct {
	Rise      int
	Fall      int
	Reentry   time.Duration // successes must span at least this long before a down server returns
	DownAfter time.Duration // continuous failure this long takes an up server down; 0 = off
}

// observation is the outcome of one check.
type observation struct {
	Start time.Time // when the check began
	End   time.Time // when its verdict was known
	Err   error     // nil = success
}

// transition is a change of verdict produced by the state machine.
type transition struct {
	From   string // StateUp, StateDown or stateUnchecked
	Up     bool
	At     time.Time
	Reason string
}

// tracker is the pure per-server state machine: it never reads a clock,
// every time it knows comes from an observation, so tests drive it with
// made-up times.
//
// unchecked → up on its first passing check, → down on its first failing
// one: a server that has never failed goes in as soon as it answers, as
// nanny added it and keepalived (with alpha) does; Rise and Reentry are what
// a server that failed must show to come back.
// up → down after Fall consecutive failures, or once failures have lasted
// DownAfter (nanny's timeout), whichever comes first.
// down → up after Rise consecutive successes spanning at least Reentry
// (nanny's reentry): a flapping server that never strings enough successes
// together stays out.
type tracker struct {
	rules rules

	up bool
	// unchecked: no verdict yet (a new server, or any server after lvsd
	// started). Healthy says no; the dataplane leaves what the kernel has
	// for it until the first check decides.
	unchecked bool
	since     time.Time
	reason    string

	okRun     int       // consecutive successes
	okSince   time.Time // start of the first success of the run
	failRun   int       // consecutive failures
	failSince time.Time // start of the first failure of the run

	lastErr     string
	lastLatency time.Duration
	checked     bool // at least one observation
}

func newTracker(r rules, up bool, at time.Time, reason string) tracker {
	return tracker{rules: r, up: up, since: at, reason: reason}
}

// newUncheckedTracker is a server with no verdict yet: its first check
// gives it one.
func newUncheckedTracker(r rules, at time.Time) tracker {
	return tracker{rules: r, unchecked: true, since: at, reason: "not checked yet"}
}

// withRules returns the tracker with new rules: the counters restart (the
// history was gathered under other rules) but the verdict stands, so a
// changed check definition does not bounce traffic.
func (t tracker) withRules(r rules) tracker {
	return tracker{rules: r, up: t.up, unchecked: t.unchecked, since: t.since, reason: t.reason,
		lastErr: t.lastErr, lastLatency: t.lastLatency, checked: t.checked}
}

// observe feeds one check outcome and reports a transition, if any.
func (t *tracker) observe(o observation) (transition, bool) {
	t.checked = true
	t.lastLatency = o.End.Sub(o.Start)
	rise, fall := max(t.rules.Rise, 1), max(t.rules.Fall, 1)
	if t.unchecked {
		if o.Err == nil {
			t.lastErr = ""
			return t.set(true, o.End, "first check passed"), true
		}
		t.lastErr = o.Err.Error()
		return t.set(false, o.End, t.lastErr), true
	}
	if o.Err == nil {
		t.lastErr = ""
		t.failRun = 0
		if t.okRun == 0 {
			t.okSince = o.Start
		}
		t.okRun++
		span := o.End.Sub(t.okSince)
		if !t.up && t.okRun >= rise && span >= t.rules.Reentry {
			var reason string
			switch {
			case t.okRun == 1 && t.rules.Reentry == 0:
				reason = "check passed"
			case t.rules.Reentry == 0:
				reason = fmt.Sprintf("%d consecutive checks passed", t.okRun)
			default:
				reason = fmt.Sprintf("%d consecutive checks passed over %s (reentry %s)",
					t.okRun, span.Round(time.Millisecond), t.rules.Reentry)
			}
			return t.set(true, o.End, reason), true
		}
		return transition{}, false
	}
	t.lastErr = o.Err.Error()
	t.okRun = 0
	if t.failRun == 0 {
		t.failSince = o.Start
	}
	t.failRun++
	if !t.up {
		return transition{}, false
	}
	failing := o.End.Sub(t.failSince)
	switch {
	case t.failRun >= fall:
		return t.set(false, o.End, t.lastErr), true
	case t.rules.DownAfter > 0 && failing >= t.rules.DownAfter:
		return t.set(false, o.End, fmt.Sprintf("%s (failing for %s)", t.lastErr, failing.Round(time.Millisecond))), true
	}
	return transition{}, false
}

func (t *tracker) set(up bool, at time.Time, reason string) transition {
	from := stateString(t.up)
	if t.unchecked {
		from = stateUnchecked
	}
	t.up, t.unchecked, t.since, t.reason = up, false, at, reason
	// A fresh verdict needs a fresh run to overturn it.
	t.okRun, t.failRun = 0, 0
	return transition{From: from, Up: up, At: at, Reason: reason}
}

func stateString(up bool) string {
	if up {
		return StateUp
	}
	return StateDown
}

// verdict is a real server's state as its checks decide it together.
type verdict struct {
	up bool
	// unchecked: no verdict yet, because a check has none and no other is
	// down (a down check decides alone).
	unchecked bool
	since     time.Time
	reason    string
}

// combine judges checks together as keepalived judges a real server's
// checkers: down while any check is down, else without a verdict while any
// check has none, else up. culprit is the check that decides a down or
// unchecked verdict (the first such), -1 when up.
func combine(checks []*checker) (up, unchecked bool, culprit int) {
	culprit = -1
	for i, c := range checks {
		switch {
		case c.tr.unchecked:
			if culprit < 0 {
				culprit = i
			}
			unchecked = true
		case !c.tr.up:
			return false, false, i
		}
	}
	return !unchecked, unchecked, culprit
}

// initialVerdict is the verdict of a new server from its new checks.
func (s *server) initialVerdict(now time.Time) verdict {
	if len(s.checkers) == 1 {
		t := s.checkers[0].tr
		return verdict{up: t.up, unchecked: t.unchecked, since: t.since, reason: t.reason}
	}
	up, unchecked, _ := combine(s.checkers)
	v := verdict{up: up, unchecked: unchecked, since: now, reason: "not checked yet"}
	if up {
		v.reason = fmt.Sprintf("new server, all %d checks start up", len(s.checkers))
	}
	return v
}

// judge recomputes s's verdict after one of its checks made transition ctr
// (or its checks were changed, ctr then zero) at time at, and reports the
// server's own transition, if any. A server with one check takes that
// check's words for its reason; with several, the reason names the check
// that decided.
func (s *server) judge(at time.Time, ctr transition) (transition, bool) {
	up, unchecked, culprit := combine(s.checkers)
	if up == s.up && unchecked == s.unchecked {
		return transition{}, false
	}
	from := stateString(s.up)
	if s.unchecked {
		from = stateUnchecked
	}
	var reason string
	switch {
	case len(s.checkers) == 1 && ctr.Reason != "":
		reason = ctr.Reason
	case len(s.checkers) == 1:
		reason = s.checkers[0].tr.reason
	case up:
		reason = fmt.Sprintf("all %d checks up", len(s.checkers))
	default:
		c := s.checkers[culprit]
		reason = checkLabel(c) + ": " + c.tr.reason
	}
	s.verdict = verdict{up: up, unchecked: unchecked, since: at, reason: reason}
	return transition{From: from, Up: up, At: at, Reason: reason}, true
}

// checkLabel names one of a server's checks in reasons and errors: its
// index in health_checks, kind and port.
func checkLabel(c *checker) string {
	return fmt.Sprintf("check %d (%s:%d)", c.index, c.probe.kind, c.probe.target.Port())
}
