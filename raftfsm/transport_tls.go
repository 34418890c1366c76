package raftfsm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-lb/shoal/pki"
)

// TransportTLS carries Raft over mutual TLS.
type TransportTLS struct {
	// Server is the Raft port's configuration for Raft connections (ALPN
	// pki.ALPNRaft); it must require and verify a node certificate, so a
	// peer without one is refused before Raft reads a byte.
	Server *tls.Config
	// Join, if set, is the configuration for connections that negotiate
	// "h2" instead: they go to Node.JoinListener, whose server answers
	// joins only. A router of a first bootstrap knows its peers' Raft
	// addresses and nothing else, so it asks for its certificate there.
	Join *tls.Config
	// Client is for dials to peers; it must offer pki.ALPNRaft.
	Client *tls.Config
}

// handshakeTimeout bounds a TLS handshake on the Raft port: a connection
// that sends nothing holds a goroutine no longer than this.
const handshakeTimeout = 5 * time.Second

// tlsStream is a raft.StreamLayer over TLS. Handshakes run in goroutines of
// their own, so a slow or silent client cannot hold up the connections
// after it, and a connection reaches Raft (Accept) only once the handshake
// has verified a node certificate.
type tlsStream struct {
	ln     net.Listener
	conf   TransportTLS
	id     *identity
	log    *slog.Logger
	raft   chan net.Conn
	join   *connListener
	closed chan struct{}
	once   sync.Once
}

// newTLSStream listens on bind. admit, if set, is asked about the node ID of
// every verified Raft peer: a certificate outlives its node's membership,
// so a router removed from the group is refused although its certificate
// is still valid. A Raft connection then opens with id's hello, inside
// TLS, as over plain TCP (tcpStream).
func newTLSStream(bind string, conf TransportTLS, id *identity, admit func(id string) bool, log *slog.Logger) (*tlsStream, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if a, ok := ln.Addr().(*net.TCPAddr); !ok || a.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raft address %s is not one peers can reach", bind)
	}
	if admit != nil {
		srv := conf.Server.Clone()
		verify := srv.VerifyConnection
		srv.VerifyConnection = func(cs tls.ConnectionState) error {
			if verify != nil {
				if err := verify(cs); err != nil {
					return err
				}
			}
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no certificate")
			}
			id, err := pki.IdentityOf(cs.PeerCertificates[0])
			if err != nil || id.Role != pki.RoleNode || !admit(id.Name) {
				return fmt.Errorf("node %q is not a member of this Raft group", id.Name)
			}
			return nil
		}
		conf.Server = srv
	}
	s := &tlsStream{ln: ln, conf: conf, id: id, log: log, raft: make(chan net.Conn), closed: make(chan struct{})}
	if conf.Join != nil {
		s.join = &connListener{addr: ln.Addr(), conns: make(chan net.Conn), stream: s.closed, closed: make(chan struct{})}
	}
	go s.acceptLoop()
	return s, nil
}

func (s *tlsStream) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.closed:
				return
			default:
			}
			s.log.Warn("raft listener: accept failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go s.handshake(c)
	}
}

func (s *tlsStream) configFor(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	switch {
	case slices.Contains(hello.SupportedProtos, pki.ALPNRaft):
		return s.conf.Server, nil
	case s.conf.Join != nil && slices.Contains(hello.SupportedProtos, "h2"):
		return s.conf.Join, nil
	}
	return nil, errors.New("neither a raft connection nor a join")
}

func (s *tlsStream) handshake(c net.Conn) {
	tc := tls.Server(c, &tls.Config{GetConfigForClient: s.configFor})
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		// Debug: a port scan or a misconfigured peer would otherwise fill
		// the log; the peer's own log says what it was refused for.
		s.log.Debug("raft port: TLS handshake refused", "remote", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	to, gone := s.raft, s.closed
	if tc.ConnectionState().NegotiatedProtocol != pki.ALPNRaft {
		to, gone = s.join.conns, s.join.closed
	} else if !s.id.accept(tc, time.Now().Add(helloTimeout)) {
		tc.Close()
		return
	}
	select {
	case to <- tc:
	case <-gone:
		tc.Close()
	case <-s.closed:
		tc.Close()
	}
}

// Accept implements net.Listener for raft: verified Raft connections only.
func (s *tlsStream) Accept() (net.Conn, error) {
	select {
	case c := <-s.raft:
		return c, nil
	case <-s.closed:
		return nil, net.ErrClosed
	}
}

func (s *tlsStream) Close() error {
	s.once.Do(func() { close(s.closed) })
	return s.ln.Close()
}

func (s *tlsStream) Addr() net.Addr { return s.ln.Addr() }

// Dial implements raft.StreamLayer; the timeout bounds the handshake and
// the hello too.
func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return dialRaft(s.id, string(address), timeout, func(timeout time.Duration) (net.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(address), s.conf.Client)
	})
}

// connListener is a net.Listener fed with connections accepted elsewhere.
// It is closed by its own Close (its server stopping) or with the stream.
type connListener struct {
	addr   net.Addr
	conns  chan net.Conn
	stream <-chan struct{}
	closed chan struct{}
	once   sync.Once
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
	case <-l.stream:
	}
	return nil, net.ErrClosed
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }
