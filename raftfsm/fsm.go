package raftfsm

import (
	"io"
	"sync"

	"github.com/hashicorp/raft"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Event is published for every applied command that changed something.
type Event struct {
	Index   uint64
	Serial  uint64
	Changes []*shoalv1.Change
	State   *shoalv1.State
}

// FSM implements raft.FSM over a shoalv1.State.
type FSM struct {
	mu      sync.Mutex
	state   *shoalv1.State
	applied uint64
}

var _ raft.FSM = (*FSM)(nil)

// NewFSM returns an FSM holding an empty state.
func NewFSM() *FSM { return &FSM{state: &shoalv1.State{Config: &shoalv1.Config{}}} }

// State returns the current state; it is never mutated afterwards.
func (f *FSM) State() *shoalv1.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

// AppliedIndex is the raft index of the last applied log entry.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// Subscribe returns a channel of Events and a function that cancels it.
func (f *FSM) Subscribe(buf int) (<-chan Event, func()) { panic("TODO") }

func (f *FSM) Apply(l *raft.Log) any               { panic("TODO") }
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) { panic("TODO") }
func (f *FSM) Restore(rc io.ReadCloser) error      { panic("TODO") }
