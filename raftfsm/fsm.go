package raftfsm

import (
	"context"
	"io"
	"sync"

	"github.com/hashicorp/raft"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
)

// Event is published for every applied command that changed something. A
// command that only changed the member registry has no Changes and keeps the
// serial. State is the state after the batch of raft entries the command
// was applied in (ApplyBatch), so its serial may be later than Serial.
type Event struct {
	Index   uint64
	Serial  uint64
	Changes []*shoalv1.Change
	State   *shoalv1.State
}

// minEvents is the least buffer a subscriber gets. A raft batch publishes
// the events of up to 64 writes at once (raft's MaxAppendEntries), so a
// buffer of 64 overflowed whenever its reader was a batch behind: with 64
// writers a Watch stream fell behind 34 times in 10 seconds, and each
// time its client watched again and got the whole configuration (6 MB at
// 10,000 services). 1,024 events, 57 KB, are half a second of 2,000
// writes a second.
const minEvents = 1024

// FSM implements raft.FSM over a shoalv1.State. It is a thin bridge: decoding,
// the pure Apply, and an atomic swap of an immutable state.
type FSM struct {
	mu      sync.Mutex
	state   *shoalv1.State // never mutated once stored: readers share it
	applied uint64
	// advanced is closed and replaced whenever applied moves, so waiters need
	// no polling.
	advanced chan struct{}
	subs     map[uint64]chan Event
	nextSub  uint64
	// judged holds outcomes computed before their commands were proposed
	// (Node.ApplyJudged), by the first byte of the proposed entry's data,
	// which raft hands back to the leader's FSM as it was given.
	judged map[*byte]judgement
}

// judgement is Judge(base, cmd) computed by the API before proposing cmd.
type judgement struct {
	base *shoalv1.State
	res  *Result
}

var _ raft.BatchingFSM = (*FSM)(nil)

// NewFSM returns an FSM holding EmptyState.
func NewFSM() *FSM {
	return &FSM{state: EmptyState(), advanced: make(chan struct{}), subs: map[uint64]chan Event{}, judged: map[*byte]judgement{}}
}

// State returns the current state. It is shared and must not be modified; it
// never changes after being returned.
func (f *FSM) State() *shoalv1.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

// AppliedIndex is the Raft index of the last command whose effect the state
// holds (raft's own no-op and configuration entries do not reach the FSM).
func (f *FSM) AppliedIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// waitApplied blocks until AppliedIndex >= index or ctx ends.
func (f *FSM) waitApplied(ctx context.Context, index uint64) error {
	for {
		f.mu.Lock()
		applied, ch := f.applied, f.advanced
		f.mu.Unlock()
		if applied >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// Subscribe returns a channel that receives an Event for every applied change,
// and a function that cancels the subscription (safe to call more than once).
//
// Apply never waits for a subscriber: one whose buffer is full is dropped and
// its channel closed. A closed channel therefore means "you missed events":
// resubscribe and read State() to catch up. The buffer holds buf events,
// and never fewer than minEvents (0: minEvents).
func (f *FSM) Subscribe(buf int) (<-chan Event, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.nextSub
	f.nextSub++
	ch := make(chan Event, max(buf, minEvents))
	f.subs[id] = ch
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if c, ok := f.subs[id]; ok {
			delete(f.subs, id)
			close(c)
		}
	}
}

// Apply implements raft.FSM: ApplyBatch of one entry.
func (f *FSM) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM. Each command entry's answer is a
// *Result, or an error (usually *Error) when the command is rejected; a
// rejection still consumes the index.
//
// The writes of a batch share one copy of the list of services (batch), so
// the states between them are not kept: every Result and Event of the
// batch carries the state after the whole batch, whose serial may be
// later than the write's own (Result.Serial, Event.Serial). Nothing sees
// the state or the applied index move before the batch is done.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]any, len(logs))
	var b batch
	st, applied := f.state, f.applied
	var events []Event
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			// Raft's configuration entries: its own business.
			continue
		}
		applied = l.Index
		res, err := f.apply(st, l.Data, &b)
		if err != nil {
			out[i] = err
			continue
		}
		out[i] = res
		if res.State != st {
			st = res.State
			events = append(events, Event{Index: l.Index, Serial: st.GetConfig().GetSerial(), Changes: res.Changes})
		}
	}
	for i, r := range out {
		if res, ok := r.(*Result); ok && res.State != st {
			// A copy: a judged Result is the API's too.
			later := *res
			later.State = st
			out[i] = &later
		}
	}
	if applied != f.applied {
		f.advance(applied)
	}
	f.state = st
	for _, ev := range events {
		ev.State = st
		f.publish(ev)
	}
	return out
}

// apply is the outcome of the command encoded in data on st, a state of
// batch b.
func (f *FSM) apply(st *shoalv1.State, data []byte, b *batch) (*Result, error) {
	j, judged := f.judged[dataKey(data)]
	if judged && j.base == st {
		// The leader judged this very entry against this very state
		// before proposing it, and Apply is pure: the outcome is that
		// one, and computing it again would only double the leader's
		// work (a whole table's, for an apply). A command of one
		// service was judged without the state after it: build it.
		if j.res.one != nil {
			return j.res.one.finishIn(b), nil
		}
		return j.res, nil
	}
	if judged && j.res.one != nil {
		if later := j.res.one.on(st); later != nil {
			// Judged before other writes applied, which left what the
			// judgement read alone (with many writers, the common case).
			return later.finishIn(b), nil
		}
	}
	cmd := &shoalv1.Command{}
	if err := proto.Unmarshal(data, cmd); err != nil {
		return nil, &Error{Kind: KindInvalid, Reason: "decode command: " + err.Error()}
	}
	res, err := Judge(st, cmd)
	if err != nil || res.one == nil {
		return res, err
	}
	return res.one.finishIn(b), nil
}

// expect records the outcome of Apply(base, the command encoded in data)
// for the entry data is proposed as; the returned function forgets it,
// once the entry has applied or failed.
func (f *FSM) expect(data []byte, base *shoalv1.State, res *Result) func() {
	k := dataKey(data)
	if k == nil || base == nil || res == nil {
		return func() {}
	}
	f.mu.Lock()
	f.judged[k] = judgement{base: base, res: res}
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		delete(f.judged, k)
		f.mu.Unlock()
	}
}

func dataKey(data []byte) *byte {
	if len(data) == 0 {
		return nil
	}
	return &data[0]
}

// advance must be called with mu held.
func (f *FSM) advance(index uint64) {
	f.applied = index
	close(f.advanced)
	f.advanced = make(chan struct{})
}

// publish must be called with mu held.
func (f *FSM) publish(ev Event) {
	for id, ch := range f.subs {
		select {
		case ch <- ev:
		default:
			delete(f.subs, id)
			close(ch)
		}
	}
}

// Snapshot implements raft.FSM. The state is immutable, so the snapshot only
// captures the pointer; Persist serialises it concurrently with new Applies.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &snapshot{state: f.state, applied: f.applied}, nil
}

// Restore implements raft.FSM: it replaces the state whole. Subscribers get an
// Event with no Changes carrying the restored state, so they resync.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, applied, err := readSnapshot(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = st
	f.advance(applied)
	f.publish(Event{Index: applied, Serial: st.GetConfig().GetSerial(), State: st})
	return nil
}
