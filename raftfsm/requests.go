package raftfsm

import (
	"time"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Applied request ids make writes exactly-once. A client that sends a
// command with a request id and loses the answer (the leader went away
// during the write) cannot tell whether it was applied; it sends the same
// command with the same id again, and a state that remembers the id answers
// with the first outcome instead of applying it a second time. The check is
// made by Apply, that is by every node at the command's place in the log,
// so two copies of a command in flight at once are told apart too: the
// first to commit applies, the second replays it.
//
// Only commands that applied are remembered. A rejected command changed
// nothing, so its retry is judged afresh: it gets the same verdict, or, if
// the world changed in between (the service it named now exists), it
// applies, once, and is remembered from then on. Either way it takes
// effect at most once.
//
// The state keeps the latest MaxRequests ids, and forgets those whose time
// is more than RequestTTL before the time of the command being applied
// (its audit time, the proposing node's clock: deterministic, like
// everything Apply reads). A retry later than that applies again; clients
// retry within seconds.
const (
	MaxRequests = 10000
	RequestTTL  = time.Hour
	// maxRequestID bounds an id's length: it is kept in every snapshot.
	maxRequestID = 128
)

// checkRequestID refuses an id that is too long or not printable ASCII (it
// travels as gRPC metadata and shows up in logs and messages).
func checkRequestID(id string) error {
	if len(id) > maxRequestID {
		return invalid("request_id", "%d bytes is longer than %d", len(id), maxRequestID)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c > 0x7e {
			return invalid("request_id", "byte %d (%#x) is not printable ASCII", i, c)
		}
	}
	return nil
}

// findRequest returns the remembered outcome of the request id, newest
// first (a retry comes soon after its first attempt), or nil.
func findRequest(st *shoalv1.State, id string) *shoalv1.AppliedRequest {
	reqs := st.GetRequests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].GetId() == id {
			return reqs[i]
		}
	}
	return nil
}

// rememberRequest returns the state of res with the outcome of cmd's request
// id recorded and the ids beyond the limits dropped. st is the state cmd
// was applied to; when the command changed nothing (res.State is st) the
// record still needs a state of its own, since a retry must find it.
func rememberRequest(st *shoalv1.State, res *Result, cmd *shoalv1.Command) *shoalv1.State {
	next := res.State
	if next == st {
		next = derive(st)
	}
	now := cmd.GetAudit().GetTime()
	reqs := st.GetRequests()
	// The list is oldest first, so the expired ids are a prefix of it; an
	// id stamped earlier than the one before it by a node whose clock lags
	// waits for its predecessors to go, and one without a time (a command
	// proposed without an audit) goes by the count alone.
	drop := 0
	if now != nil {
		cutoff := now.AsTime().Add(-RequestTTL)
		for drop < len(reqs) && reqs[drop].GetTime() != nil && reqs[drop].GetTime().AsTime().Before(cutoff) {
			drop++
		}
	}
	drop = max(drop, len(reqs)+1-MaxRequests)
	// A new slice every time: st's list is shared with st, and with every
	// other state derived from it (the API validates against the state the
	// FSM applies to).
	out := make([]*shoalv1.AppliedRequest, 0, len(reqs)-drop+1)
	out = append(out, reqs[drop:]...)
	rec := &shoalv1.AppliedRequest{Id: cmd.GetRequestId(), Serial: res.Serial, Changes: res.Changes}
	if now != nil {
		rec.Time = timestamppb.New(now.AsTime())
	}
	next.Requests = append(out, rec)
	return next
}
