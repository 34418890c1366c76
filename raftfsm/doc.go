// Package raftfsm is shoal's replicated state: the command semantics (Apply),
// the raft.FSM that holds the state, and the setup of a Raft node (stores,
// transport, timing, leadership notifications).
//
// # Shape
//
// The log speaks the API's language: a Command carries a write request of the
// public API as it is. Apply(state, command) is a pure function that returns
// the next state; the FSM is a thin bridge that decodes an entry, calls Apply
// and swaps an immutable *shoalv1.State under a lock. The gRPC server calls
// the same Apply for early validation and dry runs, so a request is judged
// the same way before and after it is committed.
//
// # Invariants
//
//   - Apply never mutates its input, reads no clock, draws no random numbers
//     and does no I/O: the same log gives byte-identical snapshots on every
//     node. Every result is normalised and validated as a whole
//     (config.Normalize, config.Validate), so an invalid configuration is
//     rejected by every node alike and never stored.
//   - The serial grows by exactly one per command that changes the
//     configuration, and not at all for a no-op (such as applying the
//     identical configuration) or for member registrations.
//   - A stored State is never modified; State() and Events share it.
//   - Rejections (*Error) are outcomes of the log, not faults: they consume an
//     index and change nothing.
//   - Subscribers never slow Apply down: a subscriber whose buffer is full is
//     dropped and its channel closed; it resubscribes and reads State().
//   - Leadership (what the dataplane holds the VIPs on) is raft's leadership
//     fenced by send times: it ends one leader lease after the leader sent
//     the latest request a quorum accepted (fence.go), and Open refuses a
//     lease longer than nine tenths of the heartbeat timeout, so a leader
//     cut off from the quorum drops its VIPs before any follower can start
//     the election that makes a new VIP holder.
//
// # Snapshots
//
// A snapshot is the deterministic protobuf encoding of the State behind a
// small header holding the applied index (raft does not tell Restore where a
// snapshot ends, and WaitApplied needs it). Restore replaces the state whole.
//
// # Reads
//
// Node.ReadIndex confirms leadership with a quorum and returns the leader's
// applied index; the first read of each term also waits on a barrier,
// because a new leader may not yet have applied what its predecessor
// acknowledged. A follower that has applied that index (WaitApplied) serves a
// linearizable read.
//
// # Never
//
// This package knows nothing of gRPC, the dataplane or the kernel: it must
// never raise addresses, program IPVS or call out to other nodes beyond raft.
package raftfsm
