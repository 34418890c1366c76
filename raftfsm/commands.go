package raftfsm

import (
	"errors"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Result is the outcome of a command: the new state and what changed.
// State.Config.Serial is the new serial.
type Result struct {
	State   *shoalv1.State
	Changes []*shoalv1.Change
}

// ErrorKind classifies why a command was rejected; the API maps it to a status code.
type ErrorKind int

const (
	KindInvalid ErrorKind = iota + 1
	KindNotFound
	KindAlreadyExists
	KindFailedPrecondition
)

// Error is a rejected command.
type Error struct {
	Kind   ErrorKind
	Reason string
	Fields config.Errors
}

func (e *Error) Error() string { return e.Reason }

// ErrNotLeader is wrapped by Node.Apply and Node.ReadIndex when this node is not the leader.
var ErrNotLeader = errors.New("not the raft leader")

// Apply computes the state after cmd. It never mutates st.
func Apply(st *shoalv1.State, cmd *shoalv1.Command) (*Result, error) {
	panic("TODO")
}
