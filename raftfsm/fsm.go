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
// serial.
type Event struct {
	Index   uint64
	Serial  uint64
	Changes []*shoalv1.Change
	State   *shoalv1.State
}

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

var _ raft.FSM = (*FSM)(nil)

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
// resubscribe and read State() to catch up.
func (f *FSM) Subscribe(buf int) (<-chan Event, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.nextSub
	f.nextSub++
	ch := make(chan Event, max(buf, 1))
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

// Apply implements raft.FSM. It returns a *Result, or an error (usually
// *Error) when the command is rejected; a rejection still consumes the index.
func (f *FSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var res *Result
	var err error
	j, judged := f.judged[dataKey(l.Data)]
	var later *oneWrite
	if judged && j.base != f.state && j.res.one != nil {
		later = j.res.one.on(f.state)
	}
	switch {
	case judged && j.base == f.state:
		// The leader judged this very entry against this very state
		// before proposing it, and Apply is pure: the outcome is that
		// one, and computing it again would only double the leader's
		// work (a whole table's, for an apply). A command of one
		// service was judged without the state after it: build it.
		res = j.res
		if res.one != nil {
			res = res.one.finish()
		}
	case later != nil:
		// Judged before other writes applied, which left what the
		// judgement read alone (with many writers, the common case).
		res = later.finish()
	default:
		cmd := &shoalv1.Command{}
		if err = proto.Unmarshal(l.Data, cmd); err != nil {
			err = &Error{Kind: KindInvalid, Reason: "decode command: " + err.Error()}
		} else {
			res, err = Apply(f.state, cmd)
		}
	}
	f.advance(l.Index)
	if err != nil {
		return err
	}
	if res.State != f.state {
		f.state = res.State
		f.publish(Event{Index: l.Index, Serial: res.State.GetConfig().GetSerial(), Changes: res.Changes, State: res.State})
	}
	return res
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
