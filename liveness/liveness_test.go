package liveness

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestChecksum(t *testing.T) {
	// RFC 1071's example: the one's complement sum is ddf2.
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := checksum(b); got != ^uint16(0xddf2) {
		t.Errorf("checksum %#04x, want %#04x", got, ^uint16(0xddf2))
	}
	// A message with its checksum in place sums to zero.
	var m [16]byte
	m[0] = icmpEchoRequest
	binary.BigEndian.PutUint16(m[2:], checksum(m[:]))
	if checksum(m[:]) != 0 {
		t.Error("a checksummed message does not verify")
	}
}

func TestParseEcho(t *testing.T) {
	pkt := func(typ byte, payload []byte) []byte {
		b := make([]byte, 20+8+len(payload))
		b[0] = 0x45
		copy(b[12:16], []byte{10, 0, 0, 7})
		b[20] = typ
		binary.BigEndian.PutUint16(b[24:], 0x1234)
		binary.BigEndian.PutUint16(b[26:], 42)
		copy(b[28:], payload)
		return b
	}
	e, ok := parseEcho(pkt(icmpEchoRequest, []byte("shl1\x00\x29\x01\x00")))
	if !ok || e.src != netip.MustParseAddr("10.0.0.7") || e.typ != icmpEchoRequest || e.id != 0x1234 || e.seq != 42 ||
		!e.shoal || !e.hasAnswered || e.answered != 41 {
		t.Errorf("shoal probe parsed as %+v, %v", e, ok)
	}
	if e, ok := parseEcho(pkt(icmpEchoReply, []byte("ping me!"))); !ok || e.shoal || e.hasAnswered {
		t.Errorf("someone else's echo parsed as %+v, %v", e, ok)
	}
	if e, ok := parseEcho(pkt(icmpEchoRequest, []byte("shl1\x00\x29\x00\x00"))); !ok || !e.shoal || e.hasAnswered {
		t.Errorf("a first probe (nothing answered yet) parsed as %+v, %v", e, ok)
	}
	if _, ok := parseEcho(pkt(3, nil)); ok {
		t.Error("a destination unreachable was taken for an echo")
	}
	if _, ok := parseEcho([]byte{0x45, 0}); ok {
		t.Error("a runt was taken for an echo")
	}
}

func TestOnClockOf(t *testing.T) {
	now := time.Now()
	if got := onClockOf(now, now.Round(0).Add(-5*time.Millisecond)); now.Sub(got) != 5*time.Millisecond {
		t.Errorf("a stamp 5ms old lands %v before now", now.Sub(got))
	}
	if got := onClockOf(now, now.Round(0).Add(time.Second)); !got.Equal(now) {
		t.Errorf("a stamp from the future lands %v after now, want now", got.Sub(now))
	}
}

// TestSilent walks the follower's rule: down only after an answer, the
// timeout without a newer one, and a probe since then that had time to be
// answered.
func TestSilent(t *testing.T) {
	base := time.Unix(1000, 0)
	ms := func(n float64) time.Time { return base.Add(time.Duration(n * float64(time.Millisecond))) }
	c := &Checker{timeout: 25 * time.Millisecond}
	every := c.timeout / 8
	send := func(at time.Time) {
		c.sent++
		c.sentAt[c.sent%ring] = at
	}
	check := func(now time.Time, want bool) {
		t.Helper()
		since, down := c.silentLocked(now)
		if down != want {
			t.Fatalf("at %v: down %v, want %v", now.Sub(base), down, want)
		}
		if down && !since.Equal(c.answerAt.Add(c.timeout)) {
			t.Fatalf("down since %v, want the last answer plus the timeout", since.Sub(base))
		}
	}
	send(ms(0))
	check(ms(100), false) // never answered: not armed
	c.answered, c.answerAt = 1, ms(0.2)
	for i := 1; i <= 8; i++ { // probes every 3ms, unanswered
		send(ms(float64(i) * 3))
	}
	check(ms(24), false) // within the timeout of the answer
	check(ms(25.2), true)
	// A follower that did not run sent nothing after its last answer.
	c.sent, c.answered, c.answerAt = 0, 0, time.Time{}
	send(ms(0))
	c.answered, c.answerAt = 1, ms(0.3)
	check(ms(60), false)
	send(ms(60))
	check(ms(60).Add(every/2), false) // too recent to have been answered
	check(ms(60).Add(every), true)
}

// TestEvidence: a leader counts a probe's arrival once a later probe says
// its answer got back, and a new run of probes from the first arrival.
func TestEvidence(t *testing.T) {
	base := time.Unix(1000, 0)
	ms := func(n int) time.Time { return base.Add(time.Duration(n) * time.Millisecond) }
	var p peerProbes
	evidence := p.evidence
	p.take(echo{id: 7, seq: 1, at: ms(1)})
	p.take(echo{id: 7, seq: 2, at: ms(4)})
	if !evidence().Equal(ms(1)) {
		t.Fatalf("evidence %v before anything was confirmed, want the session's first probe (1ms)", evidence().Sub(base))
	}
	p.take(echo{id: 7, seq: 3, at: ms(7), answered: 2, hasAnswered: true})
	if !evidence().Equal(ms(4)) {
		t.Errorf("evidence %v, want the arrival of probe 2 (4ms)", evidence().Sub(base))
	}
	p.take(echo{id: 7, seq: 5, at: ms(13), answered: 1, hasAnswered: true})
	if !evidence().Equal(ms(4)) {
		t.Errorf("an older answer moved the evidence to %v", evidence().Sub(base))
	}
	// The follower followed another leader and came back: a new session,
	// whose first probe is the evidence until one is confirmed.
	p.take(echo{id: 8, seq: 1, at: ms(100)})
	if !evidence().Equal(ms(100)) {
		t.Errorf("evidence %v after a new session began at 100ms", evidence().Sub(base))
	}
	p.take(echo{id: 8, seq: 2, at: ms(103), answered: 3, hasAnswered: true})
	if !evidence().Equal(ms(100)) {
		t.Errorf("a seq of another session confirmed %v", evidence().Sub(base))
	}
	p.take(echo{id: 7, seq: 6, at: ms(104)}) // a straggler of the old session
	p.take(echo{id: 8, seq: 3, at: ms(106), answered: 2, hasAnswered: true})
	if !evidence().Equal(ms(103)) {
		t.Errorf("evidence %v, want probe 2 of the new session (103ms)", evidence().Sub(base))
	}
}

// TestDaemonWatch: a daemon that drops the connection but still listens
// is alive; one whose listener is gone is dead.
func TestDaemonWatch(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	w := newDaemonWatch(WatchDial{}, slog.New(slog.DiscardHandler))
	defer w.follow(netip.AddrPort{})
	w.follow(netip.MustParseAddrPort(ln.Addr().String()))
	c := <-accepted
	c.Close() // dropped, still listening
	c = <-accepted
	time.Sleep(20 * time.Millisecond)
	if _, dead := w.dead(); dead {
		t.Fatal("dead after the daemon dropped one connection")
	}
	start := time.Now()
	ln.Close()
	c.Close()
	select {
	case <-w.down:
	case <-time.After(5 * time.Second):
		t.Fatal("no death reported 5s after the daemon closed everything")
	}
	at, dead := w.dead()
	if !dead || at.Before(start) {
		t.Fatalf("dead %v at %v", dead, at.Sub(start))
	}
	t.Logf("death seen %v after the close", time.Since(start))
	w.follow(netip.AddrPort{})
	if _, dead := w.dead(); dead {
		t.Error("still dead after following nobody")
	}
}

// TestDaemonWatchHello: the watch runs its Hello on each connection before
// holding it; a peer that refuses the hello (a node of another cluster) is
// not a dead daemon, one whose listener is gone still is.
func TestDaemonWatchHello(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hellos := make(chan net.Conn, 16)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					var b [5]byte
					if _, err := io.ReadFull(c, b[:]); err != nil || string(b[:]) != "HELLO" {
						c.Close()
						return
					}
					if refuse {
						c.Write([]byte("NO"))
						c.Close()
					} else {
						c.Write([]byte("OK"))
					}
					hellos <- c
				}()
			}
		}()
		errRefused := errors.New("refused by the peer")
		hello := func(c net.Conn) error {
			if _, err := c.Write([]byte("HELLO")); err != nil {
				return err
			}
			var b [2]byte
			if _, err := io.ReadFull(c, b[:]); err != nil {
				return err
			}
			if string(b[:]) != "OK" {
				return errRefused
			}
			return nil
		}
		w := newDaemonWatch(WatchDial{Hello: hello}, slog.New(slog.DiscardHandler))
		w.follow(netip.MustParseAddrPort(ln.Addr().String()))
		held := <-hellos
		if refuse {
			// Refused again and again, at the dial pace, never dead.
			<-hellos
			<-hellos
		}
		if _, dead := w.dead(); dead {
			t.Fatalf("refuse %v: dead while the daemon listens", refuse)
		}
		ln.Close()
		held.Close()
		select {
		case <-w.down:
		case <-time.After(5 * time.Second):
			t.Fatalf("refuse %v: no death reported after the daemon closed everything", refuse)
		}
		w.follow(netip.AddrPort{})
	}
}
