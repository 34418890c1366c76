package raftfsm

import (
	"log/slog"
	"sync"
	"time"
)

// leadership fans out whether this node may hold the VIPs: while raft
// says it leads and the fence says its authority has not run out. Raft
// blocks while sending on NotifyCh, so the loop only records the value and
// hands it on without ever waiting for a subscriber.
type leadership struct {
	mu     sync.Mutex
	leader bool
	subs   map[uint64]chan bool
	next   uint64
	closed bool

	done chan struct{}
	wg   sync.WaitGroup
}

func newLeadership(notify <-chan bool, f *fence, log *slog.Logger, stalled func(string)) *leadership {
	l := &leadership{subs: map[uint64]chan bool{}, done: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.run(notify, f, log, stalled)
	}()
	return l
}

// run follows raft's notifications and, while raft leads, the fence: it
// wakes when the authority would run out, and then either finds it
// extended by newer acks or drops leadership until the next ack restores
// it.
func (l *leadership) run(notify <-chan bool, f *fence, log *slog.Logger, stalled func(string)) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	leader, held, lapsed := false, false, false
	for {
		select {
		case leader = <-notify:
		case <-f.wake:
		case <-timer.C:
		case <-l.done:
			return
		}
		hold := false
		var now, until time.Time
		if leader {
			now = time.Now()
			var forever bool
			until, forever = f.until(now)
			hold = forever || now.Before(until)
			timer.Stop()
			switch {
			case forever: // until another voter joins
				timer.Reset(configEvery)
			case hold && f.probes != nil:
				// A follower may start probing at any time (see fence).
				timer.Reset(min(until.Sub(now), f.probeLease))
			case hold:
				timer.Reset(until.Sub(now))
			case f.probes != nil:
				// Probes restore the authority too, and they wake nobody.
				timer.Reset(f.probeLease / 8)
			}
		}
		switch {
		case held && !hold && leader && !until.IsZero():
			// (A zero until means raft's term moved on, as in a leadership
			// transfer: raft is about to say it no longer leads.)
			fenceLapses.Inc()
			lapsed = true
			log.Warn("leader fence lapsed: dropping the VIPs until a quorum answers",
				"overdue", now.Sub(until), "lease", f.lease, "evidence", f.describe(now))
			stalled("fence-lapse")
		case lapsed && hold:
			lapsed = false
			log.Info("leader fence restored: a quorum answered")
		case !leader:
			lapsed = false
		}
		held = hold
		l.set(hold)
	}
}

func (l *leadership) set(v bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if v == l.leader {
		return
	}
	l.leader = v
	for _, ch := range l.subs {
		offer(ch, v)
	}
}

// offer replaces whatever value is pending in a one-slot channel with v.
// Only set and subscribe send, both with mu held, so the slot is free after
// the drain.
func offer(ch chan bool, v bool) {
	select {
	case <-ch:
	default:
	}
	ch <- v
}

func (l *leadership) subscribe() (<-chan bool, func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := make(chan bool, 1)
	if l.closed {
		ch <- false
		close(ch)
		return ch, func() {}
	}
	id := l.next
	l.next++
	l.subs[id] = ch
	ch <- l.leader
	return ch, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if c, ok := l.subs[id]; ok {
			delete(l.subs, id)
			close(c)
		}
	}
}

// stop ends the loop and tells every subscriber that leadership is over.
func (l *leadership) stop() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	close(l.done)
	l.wg.Wait()

	l.mu.Lock()
	defer l.mu.Unlock()
	l.leader = false
	for id, ch := range l.subs {
		offer(ch, false)
		close(ch)
		delete(l.subs, id)
	}
}
