package raftfsm

import (
	"runtime"
	"slices"
	"sync"
	"time"
	"weak"

	"github.com/shoal-lb/shoal/config"
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

// requestBlock is the most records a block of State.request_blocks holds:
// remembering an id copies the last block (at most this many pointers)
// and the list of blocks (MaxRequests/requestBlock of them), never the
// whole list.
const requestBlock = 256

// requestBlocks is st's list of applied requests as blocks, the list of a
// state from before blocks (State.requests) cut into leading blocks.
func requestBlocks(st *shoalv1.State) []*shoalv1.AppliedRequestBlock {
	if len(st.GetRequests()) == 0 {
		return st.GetRequestBlocks()
	}
	var out []*shoalv1.AppliedRequestBlock
	for c := range slices.Chunk(st.GetRequests(), requestBlock) {
		out = append(out, &shoalv1.AppliedRequestBlock{Requests: c})
	}
	return append(out, st.GetRequestBlocks()...)
}

// appliedRequests is st's list of applied requests, oldest first.
func appliedRequests(st *shoalv1.State) []*shoalv1.AppliedRequest {
	var out []*shoalv1.AppliedRequest
	for _, b := range requestBlocks(st) {
		out = append(out, b.GetRequests()...)
	}
	return out
}

// findRequest returns the remembered outcome of the request id, newest
// first (a retry comes soon after its first attempt), or nil. A full block
// is looked up in its index (blockIndex); the others, at most the first
// and the last, are scanned: a write asks about one id, not MaxRequests.
func findRequest(st *shoalv1.State, id string) *shoalv1.AppliedRequest {
	legacy := len(st.GetRequests()) > 0
	blocks := requestBlocks(st)
	for b := len(blocks) - 1; b >= 0; b-- {
		reqs := blocks[b].GetRequests()
		if len(reqs) == requestBlock && !legacy {
			if r, ok := blockIndex(blocks[b])[id]; ok {
				return r
			}
			continue
		}
		for i := len(reqs) - 1; i >= 0; i-- {
			if reqs[i].GetId() == id {
				return reqs[i]
			}
		}
	}
	return nil
}

// blockIndexes holds, for each full block still in use, its records by id.
// A block is never modified once stored (rememberRequest copies the one it
// changes), so its index never goes stale; it is keyed by a weak pointer
// and dropped when the block is collected. It is a cache of what the block
// holds, so Apply stays a function of its state and command.
var blockIndexes sync.Map // weak.Pointer[shoalv1.AppliedRequestBlock] → map[string]*shoalv1.AppliedRequest

// blockIndex is the index of the full block b, made on first use. A
// block of a state restored from before blocks is cut anew on every call
// (requestBlocks), so findRequest does not index those.
func blockIndex(b *shoalv1.AppliedRequestBlock) map[string]*shoalv1.AppliedRequest {
	k := weak.Make(b)
	if m, ok := blockIndexes.Load(k); ok {
		return m.(map[string]*shoalv1.AppliedRequest)
	}
	m := make(map[string]*shoalv1.AppliedRequest, len(b.GetRequests()))
	for _, r := range b.GetRequests() {
		// Oldest first, so a later record of the same id wins, as in
		// the scan newest first.
		m[r.GetId()] = r
	}
	if _, loaded := blockIndexes.LoadOrStore(k, m); !loaded {
		runtime.AddCleanup(b, func(k weak.Pointer[shoalv1.AppliedRequestBlock]) { blockIndexes.Delete(k) }, k)
	}
	return m
}

// rememberRequest returns the state of res with the outcome of cmd's request
// id recorded and the ids beyond the limits dropped. st is the state cmd
// was applied to; when the command changed nothing (res.State is st) the
// record still needs a state of its own, since a retry must find it.
//
// Blocks are shared between states and never modified: a block that
// changes (the last, growing; the first, losing expired ids) is copied.
func rememberRequest(st *shoalv1.State, res *Result, cmd *shoalv1.Command) *shoalv1.State {
	next := res.State
	if next == st {
		next = derive(st)
	}
	now := cmd.GetAudit().GetTime()
	blocks := requestBlocks(st)
	total := 0
	for _, b := range blocks {
		total += len(b.GetRequests())
	}
	// The list is oldest first, so the expired ids are a prefix of it; an
	// id stamped earlier than the one before it by a node whose clock lags
	// waits for its predecessors to go, and one without a time (a command
	// proposed without an audit) goes by the count alone.
	drop := 0
	if now != nil {
		cutoff := now.AsTime().Add(-RequestTTL)
	scan:
		for _, b := range blocks {
			for _, r := range b.GetRequests() {
				if r.GetTime() == nil || !r.GetTime().AsTime().Before(cutoff) {
					break scan
				}
				drop++
			}
		}
	}
	drop = max(drop, total+1-MaxRequests)

	out := make([]*shoalv1.AppliedRequestBlock, 0, len(blocks)+1)
	for _, b := range blocks {
		reqs := b.GetRequests()
		switch {
		case drop >= len(reqs):
			drop -= len(reqs)
		case drop > 0:
			out = append(out, &shoalv1.AppliedRequestBlock{Requests: slices.Clone(reqs[drop:])})
			drop = 0
		default:
			out = append(out, b)
		}
	}
	rec := &shoalv1.AppliedRequest{Id: cmd.GetRequestId(), Serial: res.Serial, Changes: res.Changes}
	if n := len(res.Changes); n > HistoryChanges {
		// A whole table's apply: an hour of 110,000 changes held for a
		// retry that its history entry can answer (replay).
		rec.Changes, rec.ChangesOmitted, rec.Summary = nil, uint32(n), config.Summarize(res.Changes)
	}
	if now != nil {
		rec.Time = timestamppb.New(now.AsTime())
	}
	if n := len(out); n > 0 && len(out[n-1].GetRequests()) < requestBlock {
		last := out[n-1].GetRequests()
		grown := make([]*shoalv1.AppliedRequest, len(last), len(last)+1)
		copy(grown, last)
		out[n-1] = &shoalv1.AppliedRequestBlock{Requests: append(grown, rec)}
	} else {
		out = append(out, &shoalv1.AppliedRequestBlock{Requests: []*shoalv1.AppliedRequest{rec}})
	}
	next.Requests, next.RequestBlocks = nil, out
	return next
}

// replay is the answer to a command whose request id r remembers: its
// first outcome. Changes it did not keep are rebuilt from the history
// entry of its serial while the history holds it; after that the answer
// has their summary alone.
func replay(st *shoalv1.State, r *shoalv1.AppliedRequest) *Result {
	res := &Result{State: st, Changes: r.GetChanges(), Serial: r.GetSerial(), Replayed: true}
	if r.GetChangesOmitted() == 0 {
		return res
	}
	if entry, _, _, err := HistoryEntry(st, r.GetSerial()); err == nil && len(entry.GetChanges()) == int(r.GetChangesOmitted()) {
		res.Changes = entry.GetChanges()
		return res
	}
	res.Summary = r.GetSummary()
	return res
}
