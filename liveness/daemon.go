package liveness

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// daemonWatch holds a TCP connection to the leader's raft port and reports
// the daemon dead when its kernel closes that connection and refuses a
// new one. The raft transport on the other end reads the connection for
// requests and gets none; it closes it only when the daemon stops.
type daemonWatch struct {
	// down hears of a death at once (Checker.Down).
	down chan struct{}
	log  *slog.Logger
	// dial says how to connect to a Raft port (WatchDial).
	dial WatchDial

	mu     sync.Mutex
	addr   netip.AddrPort
	stop   chan struct{}
	conn   net.Conn
	deadAt time.Time
}

// dialTimeout bounds a connection attempt; a router that does not answer
// at all is the ICMP probes' business.
const dialTimeout = time.Second

// WatchDial is how the daemon watch connects to a leader's Raft port.
type WatchDial struct {
	// TLS, if set, makes the connection a TLS one: a Raft port over TLS
	// refuses a connection that does not present a node certificate.
	TLS *tls.Config
	// Hello, if set, runs on each connection (inside TLS) before it is
	// held: a Raft port that wants a preamble first (shoal's cluster ID)
	// closes a connection without one. An error it returns that wraps
	// io.EOF or a reset counts as the connection cut.
	Hello func(net.Conn) error
}

func newDaemonWatch(dial WatchDial, log *slog.Logger) *daemonWatch {
	return &daemonWatch{down: make(chan struct{}, 1), log: log, dial: dial}
}

// follow watches the daemon at addr instead (the zero value: none).
func (w *daemonWatch) follow(addr netip.AddrPort) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stop != nil {
		close(w.stop)
		w.stop = nil
	}
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
	w.addr, w.deadAt = addr, time.Time{}
	if addr.IsValid() {
		w.stop = make(chan struct{})
		go w.run(addr, w.stop)
	}
}

// dead reports whether the followed daemon exited, and when that was seen.
func (w *daemonWatch) dead() (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.deadAt, !w.deadAt.IsZero()
}

func (w *daemonWatch) run(addr netip.AddrPort, stop chan struct{}) {
	d := net.Dialer{Timeout: dialTimeout}
	// closed is when the other side closed the last connection; zero
	// while none has been, or after a dial that got no answer at all.
	var closed time.Time
	// quick counts redials made at once after a connection was cut: a
	// daemon that is exiting can still complete a TCP handshake from its
	// listen backlog and reset it a moment later, and the redial after
	// that is refused. Past a few, a peer that keeps cutting connections
	// is not dying but refusing this node (a TLS alert, say): wait.
	quick := 0
	for {
		conn, err := w.connect(&d, addr)
		switch {
		case refused(err):
			// The listener gone is the daemon gone; a daemon that merely
			// dropped the connection accepts the next one.
			if closed.IsZero() {
				closed = time.Now()
			}
			w.died(stop, closed)
			return
		case cut(err) && quick < 3:
			// The death counts from the last cut, as when a plain
			// connection made from the backlog is reset: followers
			// stagger their elections from it (raftfsm's detector),
			// which an earlier time would undo.
			closed = time.Now()
			quick++
			continue
		case err != nil:
			w.log.Debug("daemon watch: dial failed, retrying", "addr", addr, "err", err)
			closed, quick = time.Time{}, 0
			if !w.pause(stop) {
				return
			}
			continue
		}
		if !w.hold(stop, conn) {
			conn.Close()
			return
		}
		var b [1]byte
		_, err = conn.Read(b[:])
		closed = time.Time{}
		if err != nil { // closed by the other side, or by follow
			closed = time.Now()
			w.log.Debug("daemon watch: connection closed", "addr", addr, "err", err)
		}
		conn.Close()
		select {
		case <-stop:
			return
		default:
		}
		switch {
		case err == nil || cut(err):
			quick = 0
		case quick < 3:
			// A TLS alert (this node refused) rather than the daemon
			// going: a few quick tries, then at the dial pace.
			quick++
		default:
			closed = time.Time{}
			if !w.pause(stop) {
				return
			}
		}
	}
}

// pause waits before the next dial, and reports false if stopped meanwhile.
func (w *daemonWatch) pause(stop chan struct{}) bool {
	select {
	case <-stop:
		return false
	case <-time.After(dialTimeout / 10):
		return true
	}
}

// cut is a connection the other side closed or reset: the daemon exiting,
// or restarting.
func cut(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// connect dials addr, with a TLS handshake when the watch has a TLS
// configuration, then the hello. A refused connection is the daemon gone;
// a handshake or hello cut short is the daemon exiting or restarting
// (redialled at once); another failure is retried like any failed dial.
func (w *daemonWatch) connect(d *net.Dialer, addr netip.AddrPort) (net.Conn, error) {
	conn, err := d.Dial("tcp", addr.String())
	if err != nil {
		return nil, err
	}
	if w.dial.TLS != nil {
		tc := tls.Client(conn, w.dial.TLS)
		ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		conn = tc
	}
	if w.dial.Hello != nil {
		if err := w.dial.Hello(conn); err != nil {
			conn.Close()
			return nil, fmt.Errorf("hello: %w", err)
		}
	}
	return conn, nil
}

// hold records conn as the one to close on follow, unless stop is closed.
func (w *daemonWatch) hold(stop chan struct{}, conn net.Conn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-stop:
		return false
	default:
	}
	w.conn = conn
	return true
}

func (w *daemonWatch) died(stop chan struct{}, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-stop:
	default:
		w.deadAt = at
		select {
		case w.down <- struct{}{}:
		default:
		}
	}
}

func refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
