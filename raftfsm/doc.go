// Package raftfsm is shoal's replicated state: the pure command semantics
// (Apply), the raft.FSM that holds the state, and the Raft node setup.
package raftfsm
