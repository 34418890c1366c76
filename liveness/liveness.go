// Package liveness tells a raft follower that the leader's router or its
// daemon is gone, from evidence that kernels produce whether or not the
// daemons get a CPU, and tells the leader how fresh the followers'
// evidence of it is.
//
// A follower sends the leader's address an ICMP echo request every few
// milliseconds. The leader's kernel answers it in the softirq that received
// it, so the answers keep coming while the leader's daemon waits for a CPU
// on a busy host, or is stopped by its garbage collector; they stop when
// the router dies or is cut off. A follower that was itself kept off the
// CPU sent no probes meanwhile, and a probe nobody sent is no evidence: the
// leader's router counts as down only when no answer has come for the
// timeout and a probe sent since the last answer, long enough ago to have
// been answered, was not.
//
// A follower also holds a TCP connection to the leader's raft port. When
// the leader's daemon exits, however it dies, its kernel closes the
// connection, and a second connection is refused because nothing listens:
// that is the daemon's death, known within a round trip.
//
// Each probe also names the newest probe its sender has had an answer to.
// The leader keeps when each probe reached its kernel, so it learns, after
// however long it did not run, the newest of its answers that got back to
// each follower: that follower cannot find it silent sooner than the
// timeout after that probe arrived, nor sooner than the timeout after the
// first probe of its current run of probes, since every answer of the run
// came after it (Evidence). A newer probe's arrival alone proves nothing:
// its answer may be lost on the way back.
package liveness

import (
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// ring is how many recent probes are remembered, on either side, to match
// answers to; far more than fit in a timeout at the intended rates.
const ring = 256

// Checker probes one leader at a time (Follow) and tells how fresh the
// evidence is that other nodes' probes have of this one (Evidence).
type Checker struct {
	sock    *icmpSocket
	timeout time.Duration
	log     *slog.Logger
	daemon  *daemonWatch

	mu sync.Mutex
	// Follower side: the leader probed and the probes sent to it, numbered
	// from 1 (seq on the wire is the number's low 16 bits) under an ID
	// drawn for each leader, so that a late answer from before matches
	// nothing.
	leader   netip.AddrPort
	id       uint16
	sent     uint64
	sentAt   [ring]time.Time
	answered uint64    // newest probe answered, 0 for none
	answerAt time.Time // kernel receive time of the newest answer
	// Leader side: the probes of each shoal node that probed this one.
	peers map[netip.Addr]*peerProbes
}

// peerProbes is what a leader knows of one follower's probes. A follower
// numbers its probes afresh, under a new ID, for each leader it follows:
// a session. It can find this node silent only after an answer in its
// current session, so no sooner than the timeout after that session's
// first probe arrived, nor sooner than after the newest probe it has
// confirmed an answer to.
type peerProbes struct {
	arrived   [ring]arrival // by seq
	session   uint16        // ID of the newest session
	previous  uint16        // and of the one before, whose stragglers do not count
	since     time.Time     // arrival of the newest session's first probe
	confirmed time.Time     // arrival of the newest probe the peer had an answer to
}

type arrival struct {
	id, seq uint16
	at      time.Time
}

// Open creates a Checker whose followers find a leader down after timeout
// without an answer. It needs CAP_NET_RAW for its raw ICMP socket. watch
// says how the daemon watch connects to the leader's Raft port (TLS, a
// hello), as the port accepts no other connection.
func Open(timeout time.Duration, watch WatchDial, log *slog.Logger) (*Checker, error) {
	sock, err := openICMP()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Checker{
		sock:    sock,
		timeout: timeout,
		log:     log,
		daemon:  newDaemonWatch(watch, log),
		peers:   map[netip.Addr]*peerProbes{},
	}, nil
}

// Down tells when the followed daemon is found dead, so that the caller
// need not wait for its next call of Follow to learn it.
func (c *Checker) Down() <-chan struct{} { return c.daemon.down }

// Close stops probing and closes the socket.
func (c *Checker) Close() error {
	c.daemon.follow(netip.AddrPort{})
	return c.sock.close()
}

// Verdict is what the probes say of a leader.
type Verdict int

const (
	Up           Verdict = iota
	RouterSilent         // its router has not answered for the timeout
	DaemonDead           // its daemon exited
)

func (v Verdict) String() string {
	return [...]string{"up", "router silent", "daemon dead"}[v]
}

// Follow probes leader (its raft address; the zero value stops probing)
// and reports whether it is down and since when. It sends one probe per
// call, so the caller sets the rate; a new leader starts with a clean
// slate and cannot be found silent before it has answered once. Only IPv4
// leaders are probed.
func (c *Checker) Follow(now time.Time, leader netip.AddrPort) (since time.Time, v Verdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if leader != c.leader {
		c.leader, c.id = leader, uint16(rand.Uint32())
		c.sent, c.answered, c.answerAt = 0, 0, time.Time{}
		c.daemon.follow(leader)
	}
	if !leader.Addr().Is4() {
		return time.Time{}, Up
	}
	c.drainLocked(now)
	if at, dead := c.daemon.dead(); dead {
		return at, DaemonDead
	}
	since, silent := c.silentLocked(now)
	if silent {
		v = RouterSilent
	}
	c.sent++
	c.sentAt[c.sent%ring] = now
	if err := c.sock.sendEcho(leader.Addr(), c.id, uint16(c.sent), uint16(c.answered), c.answered > 0); err != nil {
		// Counted as sent: a probe that cannot leave is not answered either.
		c.log.Debug("liveness probe not sent", "err", err)
	}
	return since, v
}

// silentLocked applies the rule of the package comment. A probe has had
// time to be answered after an eighth of the timeout: that is the pace
// the probes are meant to be sent at, and far more than a round trip.
func (c *Checker) silentLocked(now time.Time) (time.Time, bool) {
	if c.answered == 0 || now.Sub(c.answerAt) < c.timeout {
		return time.Time{}, false
	}
	first := c.answered + 1 // the oldest probe not answered
	if first > c.sent {
		return time.Time{}, false
	}
	if c.sent-first < ring-1 && now.Sub(c.sentAt[first%ring]) < c.timeout/8 {
		return time.Time{}, false
	}
	return c.answerAt.Add(c.timeout), true
}

// Evidence returns, for each of peers, a time no later than which that
// peer's probes of this node were answered: the peer cannot find this node
// silent sooner than the timeout after it. Zero: no probe from the peer.
func (c *Checker) Evidence(now time.Time, peers []netip.Addr) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drainLocked(now)
	out := make([]time.Time, len(peers))
	for i, a := range peers {
		if p := c.peers[a]; p != nil {
			out[i] = p.evidence()
		}
	}
	return out
}

// drainLocked takes in every queued echo: answers to this node's probes
// and the probes of other shoal nodes, kept at all times, since a
// follower may probe this node before it knows it leads.
func (c *Checker) drainLocked(now time.Time) {
	err := c.sock.drain(now, func(e echo) {
		switch e.typ {
		case icmpEchoRequest:
			if !e.shoal {
				return
			}
			p := c.peers[e.src]
			if p == nil {
				p = &peerProbes{}
				c.peers[e.src] = p
			}
			p.take(e)
		case icmpEchoReply:
			if e.id != c.id || e.src != c.leader.Addr() || c.sent == 0 {
				return
			}
			// The probe this answers: the newest one sent with its seq.
			n := c.sent - uint64(uint16(c.sent)-e.seq)
			if n == 0 || c.sent-n >= ring {
				return
			}
			c.answered = max(c.answered, n)
			if e.at.After(c.answerAt) {
				c.answerAt = e.at
			}
		}
	})
	if err != nil {
		c.log.Warn("liveness socket", "err", err)
	}
}

// evidence is the later of since and confirmed.
func (p *peerProbes) evidence() time.Time {
	if p.confirmed.After(p.since) {
		return p.confirmed
	}
	return p.since
}

// take records a probe's arrival and what it says was answered.
func (p *peerProbes) take(e echo) {
	if p.since.IsZero() || e.id != p.session && e.id != p.previous {
		p.previous, p.session, p.since = p.session, e.id, e.at
	}
	p.arrived[e.seq%ring] = arrival{id: e.id, seq: e.seq, at: e.at}
	if !e.hasAnswered {
		return
	}
	a := p.arrived[e.answered%ring]
	if a.id == e.id && a.seq == e.answered && !a.at.IsZero() && a.at.After(p.confirmed) {
		p.confirmed = a.at
	}
}
