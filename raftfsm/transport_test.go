package raftfsm

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// relay forwards TCP connections to a raft transport; cut closes every
// connection it carries, as a peer's restart does.
type relay struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newRelay(t *testing.T, to string) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln}
	t.Cleanup(func() { ln.Close(); r.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, c, up)
			r.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return r
}

func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

func TestVoteTransportRetriesClosedConnection(t *testing.T) {
	voter, err := raft.NewTCPTransport("127.0.0.1:0", nil, connPool, time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer voter.Close()
	go func() {
		for rpc := range voter.Consumer() {
			switch rpc.Command.(type) {
			case *raft.RequestVoteRequest:
				rpc.Respond(&raft.RequestVoteResponse{Granted: true}, nil)
			case *raft.RequestPreVoteRequest:
				rpc.Respond(&raft.RequestPreVoteResponse{Granted: true}, nil)
			}
		}
	}()
	r := newRelay(t, string(voter.LocalAddr()))
	to := raft.ServerAddress(r.ln.Addr().String())

	cand, err := raft.NewTCPTransport("127.0.0.1:0", nil, connPool, time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer cand.Close()
	vote := func(tr raft.Transport) error {
		var resp raft.RequestVoteResponse
		err := tr.RequestVote("v", to, &raft.RequestVoteRequest{Term: 2}, &resp)
		if err == nil && !resp.Granted {
			t.Fatal("vote not granted")
		}
		return err
	}
	preVote := func(tr raft.Transport) error {
		var resp raft.RequestPreVoteResponse
		err := tr.(raft.WithPreVote).RequestPreVote("v", to, &raft.RequestPreVoteRequest{Term: 2}, &resp)
		if err == nil && !resp.Granted {
			t.Fatal("pre-vote not granted")
		}
		return err
	}

	// raft's transport alone: the pooled connection is dead after the cut.
	if err := vote(cand); err != nil {
		t.Fatal(err)
	}
	r.cut()
	if err := vote(cand); err == nil {
		t.Fatal("plain transport: a vote over a connection the peer closed succeeded; the test no longer shows the problem")
	} else {
		t.Logf("plain transport after the peer closed its connections: %v", err)
	}

	vt := voteTransport{cand}
	for _, rpc := range []func(raft.Transport) error{vote, preVote} {
		if err := rpc(vt); err != nil { // pools a live connection again
			t.Fatal(err)
		}
		r.cut()
		if err := rpc(vt); err != nil {
			t.Errorf("after the peer closed its connections: %v", err)
		}
	}
	if _, ok := raft.Transport(vt).(raft.WithPreVote); !ok {
		t.Error("voteTransport hides pre-vote support")
	}
	if _, ok := raft.Transport(vt).(raft.WithClose); !ok {
		t.Error("voteTransport hides Close")
	}
}
