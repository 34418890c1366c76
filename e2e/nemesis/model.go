package nemesis

import (
	"fmt"
	"math"

	"github.com/anishathalye/porcupine"
)

// Kind is what an operation did.
type Kind string

const (
	// KindRead is a linearizable GetConfig (the default consistency).
	KindRead Kind = "read"
	// KindStale is a GetConfig with READ_CONSISTENCY_STALE; it is not
	// linearizable by design and checked apart (CheckStale).
	KindStale Kind = "stale"
	// KindWrite is an UpdateRealServer of the weight without a condition,
	// carrying a request id (x-shoal-request-id).
	KindWrite Kind = "write"
	// KindCAS is an UpdateRealServer of the weight with expected_serial.
	KindCAS Kind = "cas"
)

// Outcome is what the client learnt of an operation.
type Outcome string

const (
	// OK: acknowledged (a write) or answered (a read).
	OK Outcome = "ok"
	// Failed: a definite error; the operation did not happen
	// (FailedPrecondition, InvalidArgument, NotFound, or a call gRPC never
	// sent because it had no connection).
	Failed Outcome = "failed"
	// Unknown: Unavailable, DeadlineExceeded or anything else; a write may
	// or may not have been applied, now or later.
	Unknown Outcome = "unknown"
)

// State is the model's register: the configuration's serial and the
// weight of the real server the workload writes.
type State struct {
	Serial uint64 `json:"serial"`
	Weight uint32 `json:"weight"`
}

func (s State) String() string { return fmt.Sprintf("(s%d w%d)", s.Serial, s.Weight) }

// input and output are what porcupine sees of an operation.
type input struct {
	Kind     Kind
	Weight   uint32
	Expected uint64
}

type output struct {
	Outcome Outcome
	Serial  uint64
	Weight  uint32
}

// Model is the sequential specification. A write of weight w produces
// serial+1 (or leaves the state alone when the weight is already w: shoal
// does not count a change that changes nothing); a CAS does so only when
// its expected serial is the current serial; a read returns the state. An
// indeterminate write has happened or has not: a plain one is linearized
// where it happened, or after everything else (it has no end), and an
// indeterminate CAS whose serial does not match changes nothing. A refused
// CAS (Failed, only in histories checked with refusals) needs a serial
// other than its expected one.
func Model(base State) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return base },
		Step: func(st, in, out any) (bool, any) {
			return step(st.(State), in.(input), out.(output))
		},
		Hash: func(st any) uint64 {
			s := st.(State)
			return s.Serial*1_000_003 ^ uint64(s.Weight)
		},
		DescribeOperation: func(in, out any) string { return describe(in.(input), out.(output)) },
		DescribeState:     func(st any) string { return st.(State).String() },
		DescribeOperationMetadata: func(m any) string {
			if m == nil {
				return ""
			}
			return fmt.Sprint(m)
		},
	}
}

func step(s State, in input, out output) (bool, State) {
	switch in.Kind {
	case KindRead:
		return out.Outcome == OK && out.Serial == s.Serial && out.Weight == s.Weight, s
	case KindWrite, KindCAS:
		// expected_serial 0 is no condition at all (the API's rule).
		if in.Kind == KindCAS && in.Expected != 0 && in.Expected != s.Serial {
			// The condition fails here: a refusal or an indeterminate
			// CAS can be linearized at this point; an acknowledged one
			// cannot.
			return out.Outcome != OK, s
		}
		if out.Outcome == Failed {
			return false, s // a CAS refused while its serial matched
		}
		next := s
		if in.Weight != s.Weight {
			next = State{Serial: s.Serial + 1, Weight: in.Weight}
		}
		if out.Outcome == OK && out.Serial != next.Serial {
			return false, s
		}
		return true, next
	}
	return false, s
}

func describe(in input, out output) string {
	var op string
	switch in.Kind {
	case KindRead:
		op = "read()"
	case KindWrite:
		op = fmt.Sprintf("write(w%d)", in.Weight)
	case KindCAS:
		op = fmt.Sprintf("cas(s%d, w%d)", in.Expected, in.Weight)
	}
	switch {
	case out.Outcome == Unknown:
		return op + " -> ?"
	case out.Outcome == Failed:
		return op + " -> refused"
	case in.Kind == KindRead:
		return fmt.Sprintf("%s -> (s%d w%d)", op, out.Serial, out.Weight)
	}
	return fmt.Sprintf("%s -> s%d", op, out.Serial)
}

// Operations turns a history into porcupine's operations: acknowledged
// reads and writes, and indeterminate writes with no end (they may take
// effect until the run is over). Stale reads, failed reads and writes that
// did not happen are left out; refused CAS operations are kept when
// withRefusals is set (see Check). Under exactly-once writes (dedupe), the
// attempts of a plain write with one request id are one operation from the
// first call to the last answer: the cluster applies them at most once.
// Indeterminate writes are first resolved against the configuration
// history (Resolve).
func Operations(h *History, withRefusals bool) []porcupine.Operation {
	ops, _ := Resolve(h)
	var end int64
	for _, o := range ops {
		end = max(end, int64(o.Return), int64(o.Call))
	}
	never := end + int64(1e9) // "infinity": after every real event
	if never < end {
		never = math.MaxInt64
	}
	var out []porcupine.Operation
	for _, o := range ops {
		in := input{Kind: o.Kind, Weight: o.Weight, Expected: o.Expected}
		res := output{Outcome: o.Outcome, Serial: o.Serial, Weight: o.ReadWeight}
		ret := int64(o.Return)
		switch {
		case o.Kind == KindStale:
			continue
		case o.Kind == KindRead && o.Outcome != OK:
			continue
		case o.Outcome == Failed && !(withRefusals && o.Kind == KindCAS && o.Code == "FailedPrecondition"):
			continue
		case o.Outcome == Unknown || o.resolved:
			ret = never
		}
		out = append(out, porcupine.Operation{
			ClientId: o.Client, Input: in, Call: int64(o.Call), Output: res, Return: ret,
			Metadata: o.label(),
		})
	}
	return out
}

// Resolution says what Resolve made of the indeterminate writes.
type Resolution struct {
	// Complete: the configuration history read during the run holds every
	// serial from the base to the last, so it can tell which writes were
	// committed.
	Complete bool
	// Applied are the indeterminate writes the history holds at a serial
	// no acknowledged attempt of theirs returned (they become writes
	// acknowledged with that serial, still without an end, from the call of
	// their first attempt); NotApplied are the attempts that produced no
	// serial (left out); Open are the rest (say a retried write the history
	// holds twice, or one a read saw that the history lacks): they stay
	// indeterminate.
	Applied, NotApplied, Open int
}

// Resolve returns the operations as the model sees them (see logical),
// with the indeterminate writes resolved by the configuration history when
// it is complete. Porcupine's search grows with every operation that has no
// end, and a long run has hundreds of them; most never happened, or the
// history says at which serial they did. This trusts the history only in a
// way that cannot hide an anomaly: if it lacked a write that did happen,
// or named the wrong serial, the reads would contradict it and the check
// would fail; and the history itself is checked against every
// acknowledged write and every read (CheckCommitted).
func Resolve(h *History) ([]Op, Resolution) {
	ops := h.logical()
	h.mu.Lock()
	committed := make(map[uint64]uint32, len(h.Committed))
	for s, w := range h.Committed {
		committed[s] = w
	}
	h.mu.Unlock()
	var r Resolution
	var top uint64
	serials := map[uint32][]uint64{}
	for s, w := range committed {
		if s > h.Base.Serial {
			top = max(top, s)
			serials[w] = append(serials[w], s)
		}
	}
	// Complete only if it reaches as far as any operation saw.
	r.Complete = true
	for _, o := range ops {
		if o.Outcome == OK && o.Serial > top {
			r.Complete = false
		}
	}
	for s := h.Base.Serial + 1; r.Complete && s <= top; s++ {
		if _, ok := committed[s]; !ok {
			r.Complete = false
			break
		}
	}
	seen := map[uint32]bool{}
	claimed := map[uint32]map[uint64]bool{} // serials acknowledged writes of a weight returned
	unknown := map[uint32][]int{}           // indeterminate writes of a weight, by index in ops
	for i, o := range ops {
		switch {
		case (o.Kind == KindRead || o.Kind == KindStale) && o.Outcome == OK:
			seen[o.ReadWeight] = true
		case (o.Kind == KindWrite || o.Kind == KindCAS) && o.Outcome == OK:
			if claimed[o.Weight] == nil {
				claimed[o.Weight] = map[uint64]bool{}
			}
			claimed[o.Weight][o.Serial] = true
		case (o.Kind == KindWrite || o.Kind == KindCAS) && o.Outcome == Unknown:
			unknown[o.Weight] = append(unknown[o.Weight], i)
		}
	}
	// A weight is one logical write (sent once, or again with its request
	// id). The serials the history holds it at, less those acknowledged
	// attempts returned, were produced by its indeterminate attempts: none
	// left, and they did not happen; one left, and exactly one of them
	// happened, after the first of them was sent.
	drop := map[int]bool{}
	for w, idx := range unknown {
		var left []uint64
		for _, s := range serials[w] {
			if !claimed[w][s] {
				left = append(left, s)
			}
		}
		switch {
		case !r.Complete || (len(left) == 0 && seen[w] && len(serials[w]) == 0):
			r.Open += len(idx)
		case len(left) == 0:
			r.NotApplied += len(idx)
			for _, i := range idx {
				drop[i] = true
			}
		case len(left) == 1:
			r.Applied++
			r.NotApplied += len(idx) - 1
			first := idx[0] // ops are in call order
			ops[first].Outcome, ops[first].Serial, ops[first].resolved = OK, left[0], true
			for _, i := range idx[1:] {
				drop[i] = true
			}
		default:
			r.Open += len(idx)
		}
	}
	out := ops[:0:0]
	for i, o := range ops {
		if !drop[i] {
			out = append(out, o)
		}
	}
	return out, r
}
