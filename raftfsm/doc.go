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
// # Exactly-once writes
//
// A command may carry the client's request id. Apply remembers the outcome
// (serial and changes) of every command with an id that applied, and
// answers a later command with the same id with that first outcome
// (Result.Replayed) instead of applying it again, even when its
// expected_serial has gone stale since. So a client that lost the answer to
// a write can send it again with the same id and the change happens at most
// once; the log decides, so two copies in flight at once are no exception.
// Rejected commands are not remembered: a retry is judged afresh. The
// state keeps the latest MaxRequests ids, none older than RequestTTL before
// the command at hand (requests.go), and snapshots carry them.
//
// # Snapshots
//
// A snapshot is the deterministic protobuf encoding of the State behind a
// small header holding the applied index (raft does not tell Restore where a
// snapshot ends, and WaitApplied needs it). Restore replaces the state whole.
//
// # Cluster identity
//
// Raft has no notion of which cluster a peer is in: a node left running at
// an address a new bootstrap names would follow the new leader with a
// configuration of its own. Every cluster has an ID (ClusterIDFor: a hash
// of the bootstrap list and tokens, derived alike on every bootstrap
// router; a joiner is given it), kept in <data-dir>/cluster-id; Open
// refuses a data dir with raft state of another cluster
// (*ClusterIDMismatchError), and adopts the given ID for one from before
// cluster IDs (or, given none, takes it from the first peer of its
// configuration it dials). Every Raft connection, TLS or plain TCP, and
// the kernel probes' daemon watch, opens with a hello both ends exchange
// before raft reads a byte (clusterid.go): magic, version, cluster ID,
// node ID. A mismatch, or a node that knows no ID yet, closes the
// connection; the acceptor logs both IDs (rate-limited), the dialer's
// error says "cluster ID mismatch", and it is never taken for a closed
// pooled connection (voteTransport).
//
// # Disk faults
//
// Before raft opens raft.db, Open reads everything raft will read there
// (every page bbolt reaches, every log entry decoded, bbolt's own
// consistency check, about 1 GB/s from the page cache) and every snapshot
// (meta.json, state.bin's size and CRC), in its own goroutine with memory
// faults turned into panics and recovered: bbolt and raft would otherwise
// panic, or take a fatal fault, in raft's goroutines. A damaged raft.db,
// one cut short or gone from a used data dir, or a snapshot whose loss
// leaves a gap the log does not fill, is a *DataDirError naming the file;
// a damaged snapshot that the log (and older snapshots) make up for is
// moved to snapshots.damaged/ and raft rebuilds the same state. A full
// disk fails raft's log writes, logged with the data dir; a leader steps
// down and commits nothing half (bbolt commits a batch whole or not at
// all); a write of the current term, which raft would panic over, waits
// for space instead.
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
