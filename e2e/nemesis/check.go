package nemesis

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Counts are the operations of a history by outcome; every attempt counts.
type Counts struct {
	Ops, Acked, Failed, Unknown, Stale int
}

// Count counts h's calls.
func Count(h *History) Counts {
	var c Counts
	for _, o := range h.snapshot() {
		c.Ops++
		if o.Kind == KindStale {
			c.Stale++
		}
		switch o.Outcome {
		case OK:
			c.Acked++
		case Failed:
			c.Failed++
		case Unknown:
			c.Unknown++
		}
	}
	return c
}

// Linearizability is porcupine's verdict on a history.
type Linearizability struct {
	// Result is for the acknowledged and indeterminate operations;
	// WithRefusals adds the CAS operations refused with
	// FailedPrecondition (each needs a serial other than the one it
	// expected at some moment during its call).
	Result, WithRefusals porcupine.CheckResult
	info, refusalInfo    porcupine.LinearizationInfo
	model                porcupine.Model
}

// CheckLinearizable runs porcupine on h; timeout bounds each of its two
// checks (0: none), after which the verdict is Unknown.
func CheckLinearizable(h *History, timeout time.Duration) Linearizability {
	l := Linearizability{model: Model(h.Base)}
	l.Result, l.info = porcupine.CheckOperationsVerbose(l.model, Operations(h, false), timeout)
	l.WithRefusals = porcupine.Unknown
	if l.Result == porcupine.Ok {
		l.WithRefusals, l.refusalInfo = porcupine.CheckOperationsVerbose(l.model, Operations(h, true), timeout)
	}
	return l
}

// Visualize writes porcupine's HTML view of the failing check to path,
// with the faults drawn on their own line.
func (l Linearizability) Visualize(h *History, path string) error {
	info := l.info
	if l.Result == porcupine.Ok {
		info = l.refusalInfo
	}
	var notes []porcupine.Annotation
	for _, f := range h.Faults {
		notes = append(notes, porcupine.Annotation{
			Tag: "faults", Start: int64(f.Start), End: int64(f.End),
			Description: f.Kind + " " + strings.Join(f.Nodes, ","), Details: f.What,
			BackgroundColor: "#fde2e2",
		})
	}
	for _, e := range h.Events {
		notes = append(notes, porcupine.Annotation{Tag: "events", Start: int64(e.At), Description: e.Node + " " + e.What})
	}
	info.AddAnnotations(notes)
	return porcupine.VisualizePath(l.model, info, path)
}

// Committed is what the configuration history says of the writes.
type Committed struct {
	// Lost are acknowledged writes whose serial the history holds with
	// another weight, or not at all although it reaches past it.
	Lost []Op
	// Unverified are acknowledged writes whose serial fell out of the
	// history before it was read (the run outpaced the reader).
	Unverified int
	// Phantoms are answered reads (linearizable or stale) of a serial the
	// history holds with another weight.
	Phantoms []Op
	// Duplicates are weights committed at more than one serial; Retried
	// says for each whether its write was sent more than once (which is
	// expected without exactly-once writes).
	Duplicates []Duplicate
	// Resolved counts indeterminate writes that the history shows were
	// committed.
	Resolved int
	// DedupeMismatches are request ids whose acknowledged attempts
	// returned different serials although the cluster dedupes.
	DedupeMismatches []string
}

// Duplicate is one weight committed more than once.
type Duplicate struct {
	Weight  uint32
	Serials []uint64
	Retried bool
}

// Unexpected counts duplicates that no retry explains.
func (c Committed) Unexpected() int {
	n := 0
	for _, d := range c.Duplicates {
		if !d.Retried {
			n++
		}
	}
	return n
}

// CheckCommitted compares the operations with the configuration history.
func CheckCommitted(h *History) Committed {
	var c Committed
	h.mu.Lock()
	committed := make(map[uint64]uint32, len(h.Committed))
	for s, w := range h.Committed {
		committed[s] = w
	}
	h.mu.Unlock()
	var top uint64
	bySerial := map[uint32][]uint64{}
	for s, w := range committed {
		top = max(top, s)
		if s > h.Base.Serial && w != 0 {
			bySerial[w] = append(bySerial[w], s)
		}
	}
	weightAt := func(s uint64) (uint32, bool) {
		if s == h.Base.Serial {
			return h.Base.Weight, true
		}
		w, ok := committed[s]
		return w, ok
	}
	attempts := map[uint32]int{}
	acked := map[string]uint64{}
	for _, o := range h.snapshot() {
		switch {
		case (o.Kind == KindWrite || o.Kind == KindCAS) && o.Outcome != Failed:
			attempts[o.Weight]++
		}
		switch {
		case (o.Kind == KindWrite || o.Kind == KindCAS) && o.Outcome == OK:
			if w, ok := weightAt(o.Serial); !ok && o.Serial > top {
				c.Lost = append(c.Lost, o) // beyond anything committed
			} else if !ok {
				c.Unverified++
			} else if w != o.Weight {
				c.Lost = append(c.Lost, o)
			}
			if h.Dedupe && o.RequestID != "" {
				if s, ok := acked[o.RequestID]; ok && s != o.Serial {
					c.DedupeMismatches = append(c.DedupeMismatches, fmt.Sprintf("%s: serials %d and %d", o.RequestID, s, o.Serial))
				}
				acked[o.RequestID] = o.Serial
			}
		case (o.Kind == KindRead || o.Kind == KindStale) && o.Outcome == OK:
			if w, ok := weightAt(o.Serial); ok && w != o.ReadWeight {
				c.Phantoms = append(c.Phantoms, o)
			}
		case (o.Kind == KindWrite || o.Kind == KindCAS) && o.Outcome == Unknown && o.Attempt == 0:
			if len(bySerial[o.Weight]) > 0 {
				c.Resolved++
			}
		}
	}
	for w, ss := range bySerial {
		if len(ss) > 1 {
			slices.Sort(ss)
			c.Duplicates = append(c.Duplicates, Duplicate{Weight: w, Serials: ss, Retried: attempts[w] > 1})
		}
	}
	slices.SortFunc(c.Duplicates, func(a, b Duplicate) int { return int(a.Serials[0]) - int(b.Serials[0]) })
	return c
}

// CheckStale checks the stale reads: each saw a state that some write
// produced (never one the history holds otherwise), that write had been
// sent before the read ended (a node never serves what the leader could
// not yet have had), and one client's stale reads from one node on one
// connection never go back in serial while that node's daemon runs on
// (a restart, or a member that rejoined with an empty data directory, may
// serve an older state until it has caught up).
func CheckStale(h *History) []string {
	ops := h.snapshot()
	sentAt := map[uint32]time.Duration{}
	for _, o := range ops {
		if (o.Kind == KindWrite || o.Kind == KindCAS) && o.Outcome != Failed {
			if t, ok := sentAt[o.Weight]; !ok || o.Call < t {
				sentAt[o.Weight] = o.Call
			}
		}
	}
	h.mu.Lock()
	var starts []Event
	for _, e := range h.Events {
		if e.What == "start" || e.What == "join" {
			starts = append(starts, e)
		}
	}
	h.mu.Unlock()
	restarted := func(node string, from, to time.Duration) bool {
		for _, e := range starts {
			if e.Node == node && e.At >= from && e.At <= to {
				return true
			}
		}
		return false
	}
	var bad []string
	type key struct {
		client, session int
		node            string
	}
	last := map[key]Op{}
	for _, o := range ops {
		if o.Kind != KindStale || o.Outcome != OK {
			continue
		}
		if o.Serial > h.Base.Serial {
			t, ok := sentAt[o.ReadWeight]
			switch {
			case !ok:
				bad = append(bad, fmt.Sprintf("stale read %s -> (s%d w%d): no write set that weight", o.label(), o.Serial, o.ReadWeight))
			case t > o.Return:
				bad = append(bad, fmt.Sprintf("stale read %s at %v..%v -> (s%d w%d): its write was sent at %v, after the read ended",
					o.label(), o.Call, o.Return, o.Serial, o.ReadWeight, t))
			}
		}
		k := key{o.Client, o.Session, o.Node}
		if p, ok := last[k]; ok && o.Serial < p.Serial && !restarted(o.Node, p.Call, o.Return) {
			bad = append(bad, fmt.Sprintf("stale reads of client %d from %s went back: s%d at %v, then s%d at %v",
				o.Client, o.Node, p.Serial, p.Call, o.Serial, o.Call))
		}
		last[k] = o
	}
	return bad
}

// BadRefusals lists the CAS operations refused with FailedPrecondition
// that, each added alone to the acknowledged and indeterminate operations,
// make the history non-linearizable: refusals while the expected serial was
// the cluster's all through the call. It stops after budget.
func BadRefusals(h *History, budget time.Duration) []Op {
	model := Model(h.Base)
	base := Operations(h, false)
	ops, _ := Resolve(h)
	deadline := time.Now().Add(budget)
	var bad []Op
	for _, o := range ops {
		if o.Kind != KindCAS || o.Outcome != Failed || o.Code != "FailedPrecondition" || time.Now().After(deadline) {
			continue
		}
		one := append(base[:len(base):len(base)], porcupine.Operation{
			ClientId: o.Client, Input: input{Kind: KindCAS, Weight: o.Weight, Expected: o.Expected},
			Call: int64(o.Call), Output: output{Outcome: Failed}, Return: int64(o.Return),
		})
		if porcupine.CheckOperationsTimeout(model, one, 10*time.Second) == porcupine.Illegal {
			bad = append(bad, o)
		}
	}
	return bad
}

// WrongAnswers lists the writes refused with an error that no state of the
// run could give: the workload's requests are valid, and its service and
// real server exist from before the first to after the last, so
// NotFound, InvalidArgument and AlreadyExists are all false.
func WrongAnswers(h *History) []Op {
	var out []Op
	for _, o := range h.snapshot() {
		if (o.Kind == KindWrite || o.Kind == KindCAS) && o.Outcome == Failed &&
			(o.Code == "NotFound" || o.Code == "InvalidArgument" || o.Code == "AlreadyExists") {
			out = append(out, o)
		}
	}
	return out
}
