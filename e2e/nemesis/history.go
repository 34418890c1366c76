package nemesis

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

// Op is one call a client made (one attempt: a plain write retried after
// an indeterminate answer is several Ops with one RequestID).
type Op struct {
	// Client is the client's index; Session counts its connections (a
	// client opens a new one to another router now and then), and Node is
	// the router the call went to.
	Client  int    `json:"client"`
	Session int    `json:"session"`
	Node    string `json:"node"`
	Kind    Kind   `json:"kind"`
	// Weight is the weight a write sets (unique in the run); Expected the
	// serial a CAS expects; RequestID the plain write's id and Attempt
	// its attempt (0 first).
	Weight    uint32 `json:"weight,omitempty"`
	Expected  uint64 `json:"expected,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	Attempt   int    `json:"attempt,omitempty"`
	// Call and Return are times since the run's start.
	Call   time.Duration `json:"call"`
	Return time.Duration `json:"return"`
	// Outcome, the gRPC code's name and the error for a failure.
	Outcome Outcome `json:"outcome"`
	Code    string  `json:"code,omitempty"`
	Err     string  `json:"err,omitempty"`
	// Serial is the serial a write returned or a read saw, ReadWeight the
	// weight a read saw.
	Serial     uint64 `json:"serial,omitempty"`
	ReadWeight uint32 `json:"read_weight,omitempty"`

	// resolved marks an indeterminate write that Resolve found committed.
	resolved bool
}

func (o Op) label() string {
	s := fmt.Sprintf("client %d via %s", o.Client, o.Node)
	if o.RequestID != "" {
		s += fmt.Sprintf(", request %s attempt %d", o.RequestID, o.Attempt)
	}
	if o.Err != "" {
		s += ": " + o.Code + ": " + o.Err
	}
	return s
}

// FaultRecord is one fault as it was injected.
type FaultRecord struct {
	ID    int           `json:"id"`
	Kind  string        `json:"kind"`
	Nodes []string      `json:"nodes"`
	What  string        `json:"what"`
	Start time.Duration `json:"start"`
	End   time.Duration `json:"end"`
	Err   string        `json:"err,omitempty"`
}

// Event is something else worth putting on the history's time line: a
// daemon (re)started, a member removed or joined.
type Event struct {
	At   time.Duration `json:"at"`
	Node string        `json:"node"`
	What string        `json:"what"`
}

// History is everything a run recorded; it is what testdata/ keeps.
type History struct {
	// Base is the state when the workload began (after the set-up
	// writes); BaseTime its time since the start.
	Base State `json:"base"`
	// Dedupe says whether the cluster answered a repeated request id with
	// the first outcome (exactly-once writes) when the run began.
	Dedupe bool          `json:"dedupe"`
	Ops    []Op          `json:"ops"`
	Faults []FaultRecord `json:"faults,omitempty"`
	Events []Event       `json:"events,omitempty"`
	// Committed is the configuration history read during and after the
	// run: serial -> weight the change set (0 when it set none).
	Committed map[uint64]uint32 `json:"committed,omitempty"`
	// Note says what a fixture shows.
	Note string `json:"note,omitempty"`

	mu    sync.Mutex
	start time.Time
}

// NewHistory starts a history's clock.
func NewHistory() *History { return &History{start: time.Now(), Committed: map[uint64]uint32{}} }

// Since is t as a time of the history.
func (h *History) Since(t time.Time) time.Duration { return t.Sub(h.start) }

// Now is the history's present time.
func (h *History) Now() time.Duration { return time.Since(h.start) }

// Add records an operation.
func (h *History) Add(o Op) {
	h.mu.Lock()
	h.Ops = append(h.Ops, o)
	h.mu.Unlock()
}

// AddEvent records an event.
func (h *History) AddEvent(node, what string) {
	h.mu.Lock()
	h.Events = append(h.Events, Event{At: h.Now(), Node: node, What: what})
	h.mu.Unlock()
}

// Commit records a configuration change read from the history.
func (h *History) Commit(serial uint64, weight uint32) {
	h.mu.Lock()
	h.Committed[serial] = weight
	h.mu.Unlock()
}

// snapshot returns the operations sorted by call time.
func (h *History) snapshot() []Op {
	h.mu.Lock()
	ops := slices.Clone(h.Ops)
	h.mu.Unlock()
	slices.SortStableFunc(ops, func(a, b Op) int { return int(a.Call - b.Call) })
	return ops
}

// logical returns the operations as the model sees them: with dedupe,
// the attempts of one request id become one operation, from the first call
// to the last answer, acknowledged if any attempt was (with that serial),
// indeterminate if any attempt was, and failed only if all were.
func (h *History) logical() []Op {
	ops := h.snapshot()
	if !h.Dedupe {
		return ops
	}
	var out []Op
	byID := map[string]int{}
	for _, o := range ops {
		if o.Kind != KindWrite || o.RequestID == "" {
			out = append(out, o)
			continue
		}
		i, ok := byID[o.RequestID]
		if !ok {
			byID[o.RequestID] = len(out)
			out = append(out, o)
			continue
		}
		m := &out[i]
		m.Return = max(m.Return, o.Return)
		m.Attempt = max(m.Attempt, o.Attempt)
		switch {
		case o.Outcome == OK && m.Outcome != OK:
			m.Outcome, m.Serial, m.Code, m.Err, m.Node = OK, o.Serial, "", "", o.Node
		case o.Outcome == Unknown && m.Outcome == Failed:
			m.Outcome, m.Code, m.Err = Unknown, o.Code, o.Err
		}
	}
	return out
}

// Save writes the history as JSON.
func (h *History) Save(path string) error {
	h.mu.Lock()
	b, err := json.MarshalIndent(h, "", " ")
	h.mu.Unlock()
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// LoadHistory reads a history Save wrote.
func LoadHistory(path string) (*History, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	h := &History{}
	if err := json.Unmarshal(b, h); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if h.Committed == nil {
		h.Committed = map[uint64]uint32{}
	}
	return h, nil
}
