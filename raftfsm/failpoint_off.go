//go:build !nemesis

package raftfsm

import "github.com/hashicorp/raft"

// diskFailpoint returns s unchanged: the disk-delay failpoint exists only in
// builds with -tags nemesis (failpoint_nemesis.go).
func diskFailpoint(_ string, s raft.LogStore) raft.LogStore { return s }
