// Package server holds shoal's gRPC services: ConfigService,
// LoadBalancerService, ClusterService, NodeService and PeerService, served by
// every node over one *raftfsm.Node.
//
// There is one write path. A handler turns its request into a
// *shoalv1.Command, validates it with raftfsm.Apply against the local state
// (so a follower answers a bad request with a friendly error and sends
// nothing), then applies it through Raft when this node leads or forwards the
// same Command to the leader's PeerService.ApplyCommand. A forwarded command
// is never forwarded again: a node that receives one and does not lead says
// Unavailable, and the sender looks the leader up again. Dry runs stop after
// validation and never reach Raft. A write sent to a follower is answered
// once the follower itself has applied it, so a client that reads from the
// same node next sees its write; that costs up to one raft commit timeout.
//
// A write may carry the client's request id (metadata x-shoal-request-id),
// which travels in the Command, forwarded or not. The FSM answers a command
// whose id it remembers with the first outcome instead of applying it again
// (raftfsm/requests.go), so a client that got Unavailable mid-write ("may
// or may not have been applied") retries with the same id safely. Every
// handler answers a replay with the first serial and changes, and the
// configuration as of that serial; the response header x-shoal-replayed
// says so. A node that has applied the id itself answers without raft.
// The writes that hand out something made for the call alone (a join
// token's secret, a signed certificate) refuse a replay with AlreadyExists:
// the first answer cannot be given again. Dry runs ignore the id.
//
// Reads name their consistency. The default (linearizable) asks the leader
// for a read index (locally when leading) and waits until this node has
// applied it; READ_CONSISTENCY_STALE answers from local state, with or
// without a leader.
//
// Errors become gRPC statuses in one place (errors.go): raftfsm.Error kinds
// map to InvalidArgument, NotFound, AlreadyExists and FailedPrecondition with
// the field path and reason in the message and as errdetails.BadRequest
// field violations; "no leader" is Unavailable.
//
// The package never touches the kernel and never mutates FSM state: it only
// submits commands. What a node holds in its kernel comes from optional
// status providers (the dataplane and the health monitor) defined here as
// small interfaces.
package server
