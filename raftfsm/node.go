package raftfsm

import (
	"context"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Timing maps onto raft.Config.
type Timing struct {
	Heartbeat, Election, LeaderLease, Commit time.Duration
}

// Options configures Open.
type Options struct {
	ID, RaftAddr, DataDir string
	Bootstrap             []raft.Server
	Timing                Timing
	Logger                *slog.Logger
	Transport             raft.Transport // nil = TCP on RaftAddr
	InMemory              bool           // tests: in-memory log/stable/snapshot stores
}

// Status is what a node reports of itself.
type Status struct {
	ID, Role, LeaderID, LeaderAddr  string
	Term, CommitIndex, AppliedIndex uint64
	LastContact                     time.Duration
}

// Node is one member of the Raft group.
type Node struct {
	fsm  *FSM
	raft *raft.Raft
}

func Open(o Options) (*Node, error) { panic("TODO") }
func (n *Node) FSM() *FSM           { return n.fsm }
func (n *Node) Raft() *raft.Raft    { return n.raft }
func (n *Node) Apply(ctx context.Context, cmd *shoalv1.Command) (*Result, error) {
	panic("TODO")
}
func (n *Node) ReadIndex(ctx context.Context) (uint64, error)       { panic("TODO") }
func (n *Node) WaitApplied(ctx context.Context, index uint64) error { panic("TODO") }
func (n *Node) Leadership() (<-chan bool, func())                   { panic("TODO") }
func (n *Node) Status() Status                                      { panic("TODO") }
func (n *Node) Shutdown() error                                     { panic("TODO") }
