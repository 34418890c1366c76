package nemesis

import (
	"flag"
	"path/filepath"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// ms is a history time.
func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func hist(base State, dedupe bool, ops ...Op) *History {
	h := NewHistory()
	h.Base, h.Dedupe, h.Ops = base, dedupe, ops
	return h
}

func TestModel(t *testing.T) {
	base := State{Serial: 4, Weight: 2}
	for _, tc := range []struct {
		name string
		ops  []Op
		want porcupine.CheckResult
	}{
		{"sequential writes and reads", []Op{
			{Client: 0, Kind: KindWrite, Weight: 101, Call: ms(0), Return: ms(10), Outcome: OK, Serial: 5},
			{Client: 1, Kind: KindRead, Call: ms(11), Return: ms(12), Outcome: OK, Serial: 5, ReadWeight: 101},
			{Client: 1, Kind: KindCAS, Weight: 102, Expected: 5, Call: ms(13), Return: ms(20), Outcome: OK, Serial: 6},
			{Client: 0, Kind: KindRead, Call: ms(21), Return: ms(22), Outcome: OK, Serial: 6, ReadWeight: 102},
		}, porcupine.Ok},
		{"concurrent writes in either order", []Op{
			{Client: 0, Kind: KindWrite, Weight: 101, Call: ms(0), Return: ms(10), Outcome: OK, Serial: 6},
			{Client: 1, Kind: KindWrite, Weight: 102, Call: ms(1), Return: ms(9), Outcome: OK, Serial: 5},
			{Client: 2, Kind: KindRead, Call: ms(11), Return: ms(12), Outcome: OK, Serial: 6, ReadWeight: 101},
		}, porcupine.Ok},
		{"a read older than an acknowledged write", []Op{
			{Client: 0, Kind: KindWrite, Weight: 101, Call: ms(0), Return: ms(10), Outcome: OK, Serial: 5},
			{Client: 1, Kind: KindRead, Call: ms(11), Return: ms(12), Outcome: OK, Serial: 4, ReadWeight: 2},
		}, porcupine.Illegal},
		{"an indeterminate write seen later", []Op{
			{Client: 0, Kind: KindWrite, Weight: 101, Call: ms(0), Return: ms(10), Outcome: Unknown},
			{Client: 1, Kind: KindRead, Call: ms(11), Return: ms(12), Outcome: OK, Serial: 4, ReadWeight: 2},
			{Client: 1, Kind: KindRead, Call: ms(500), Return: ms(510), Outcome: OK, Serial: 5, ReadWeight: 101},
		}, porcupine.Ok},
		{"an indeterminate write never applied", []Op{
			{Client: 0, Kind: KindWrite, Weight: 101, Call: ms(0), Return: ms(10), Outcome: Unknown},
			{Client: 1, Kind: KindWrite, Weight: 102, Call: ms(20), Return: ms(30), Outcome: OK, Serial: 5},
			{Client: 1, Kind: KindRead, Call: ms(40), Return: ms(50), Outcome: OK, Serial: 5, ReadWeight: 102},
		}, porcupine.Ok},
		{"an indeterminate CAS that cannot have applied", []Op{
			{Client: 0, Kind: KindCAS, Weight: 101, Expected: 3, Call: ms(0), Return: ms(10), Outcome: Unknown},
			{Client: 1, Kind: KindRead, Call: ms(40), Return: ms(50), Outcome: OK, Serial: 4, ReadWeight: 2},
		}, porcupine.Ok},
		{"an acknowledged CAS whose serial did not match", []Op{
			{Client: 0, Kind: KindCAS, Weight: 101, Expected: 3, Call: ms(0), Return: ms(10), Outcome: OK, Serial: 5},
		}, porcupine.Illegal},
		{"a refused write that took effect", []Op{
			{Client: 0, Kind: KindCAS, Weight: 101, Expected: 3, Call: ms(0), Return: ms(10), Outcome: Failed, Code: "FailedPrecondition"},
			{Client: 1, Kind: KindRead, Call: ms(40), Return: ms(50), Outcome: OK, Serial: 5, ReadWeight: 101},
		}, porcupine.Illegal},
		{"stale reads are not the model's", []Op{
			{Client: 0, Kind: KindWrite, Weight: 101, Call: ms(0), Return: ms(10), Outcome: OK, Serial: 5},
			{Client: 1, Kind: KindStale, Call: ms(11), Return: ms(12), Outcome: OK, Serial: 4, ReadWeight: 2},
		}, porcupine.Ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CheckLinearizable(hist(base, false, tc.ops...), 10*time.Second).Result; got != tc.want {
				t.Errorf("porcupine says %s, want %s", got, tc.want)
			}
		})
	}
}

// TestRefusals: a CAS refused (FailedPrecondition) while its expected
// serial was the cluster's throughout its call is caught by the second
// check only.
func TestRefusals(t *testing.T) {
	base := State{Serial: 4, Weight: 2}
	h := hist(base, false,
		Op{Client: 0, Kind: KindRead, Call: ms(0), Return: ms(5), Outcome: OK, Serial: 4, ReadWeight: 2},
		Op{Client: 0, Kind: KindCAS, Weight: 101, Expected: 4, Call: ms(10), Return: ms(20), Outcome: Failed, Code: "FailedPrecondition"},
		Op{Client: 0, Kind: KindRead, Call: ms(30), Return: ms(35), Outcome: OK, Serial: 4, ReadWeight: 2},
	)
	l := CheckLinearizable(h, 10*time.Second)
	if l.Result != porcupine.Ok || l.WithRefusals != porcupine.Illegal {
		t.Fatalf("got %s / %s with refusals, want Ok / Illegal", l.Result, l.WithRefusals)
	}
}

// TestDedupe: with exactly-once writes the attempts of one request id are
// one operation; without, each attempt is one and may apply again.
func TestDedupe(t *testing.T) {
	base := State{Serial: 4, Weight: 2}
	ops := []Op{
		{Client: 0, Kind: KindWrite, Weight: 101, RequestID: "a", Call: ms(0), Return: ms(10), Outcome: Unknown, Code: "Unavailable"},
		{Client: 1, Kind: KindWrite, Weight: 102, Call: ms(12), Return: ms(14), Outcome: OK, Serial: 6},
		{Client: 0, Kind: KindWrite, Weight: 101, RequestID: "a", Attempt: 1, Call: ms(15), Return: ms(20), Outcome: OK, Serial: 5},
		{Client: 1, Kind: KindRead, Call: ms(30), Return: ms(35), Outcome: OK, Serial: 6, ReadWeight: 102},
	}
	if got := CheckLinearizable(hist(base, true, ops...), 10*time.Second).Result; got != porcupine.Ok {
		t.Errorf("with dedupe: %s, want Ok (the retry answers the first outcome)", got)
	}
	if got := CheckLinearizable(hist(base, false, ops...), 10*time.Second).Result; got != porcupine.Illegal {
		t.Errorf("without dedupe: %s, want Illegal (a second application cannot return serial 5 after 6)", got)
	}
}

// TestResolve: with a complete configuration history, an indeterminate
// write nobody saw and the history lacks did not happen, and one the
// history holds at a serial no acknowledged attempt returned happened
// there; with a gap in the history they all stay open.
func TestResolve(t *testing.T) {
	h := hist(State{Serial: 4, Weight: 2}, false,
		Op{Kind: KindWrite, Weight: 101, Call: ms(0), Return: ms(10), Outcome: Unknown},
		Op{Kind: KindCAS, Weight: 102, Expected: 4, Call: ms(0), Return: ms(10), Outcome: Unknown},
		Op{Kind: KindWrite, Weight: 103, RequestID: "r", Call: ms(20), Return: ms(30), Outcome: Unknown},
		Op{Kind: KindWrite, Weight: 104, Call: ms(32), Return: ms(35), Outcome: OK, Serial: 7},
		Op{Kind: KindWrite, Weight: 103, RequestID: "r", Attempt: 1, Call: ms(31), Return: ms(40), Outcome: OK, Serial: 8},
		Op{Kind: KindRead, Call: ms(50), Return: ms(60), Outcome: OK, Serial: 8, ReadWeight: 103},
	)
	for s, w := range map[uint64]uint32{5: 102, 6: 103, 7: 104, 8: 103} {
		h.Commit(s, w)
	}
	_, r := Resolve(h)
	if want := (Resolution{Complete: true, Applied: 2, NotApplied: 1}); r != want {
		t.Errorf("got %+v, want %+v", r, want)
	}
	if got := CheckLinearizable(h, 10*time.Second).Result; got != porcupine.Ok {
		t.Errorf("porcupine: %s, want Ok", got)
	}
	delete(h.Committed, 7)
	if _, r := Resolve(h); r.Complete || r.Open != 3 {
		t.Errorf("with a gap in the history: %+v, want incomplete and 3 open", r)
	}
}

func TestCheckCommitted(t *testing.T) {
	h := hist(State{Serial: 4, Weight: 2}, false,
		Op{Kind: KindWrite, Weight: 101, Call: ms(0), Return: ms(10), Outcome: OK, Serial: 5},
		Op{Kind: KindCAS, Weight: 102, Expected: 5, Call: ms(11), Return: ms(20), Outcome: OK, Serial: 6},
		Op{Kind: KindWrite, Weight: 103, RequestID: "x", Call: ms(21), Return: ms(30), Outcome: Unknown},
		Op{Kind: KindWrite, Weight: 103, RequestID: "x", Attempt: 1, Call: ms(31), Return: ms(40), Outcome: OK, Serial: 8},
		Op{Kind: KindRead, Call: ms(41), Return: ms(42), Outcome: OK, Serial: 7, ReadWeight: 999},
	)
	for s, w := range map[uint64]uint32{5: 101, 6: 777, 7: 103, 8: 103} {
		h.Commit(s, w)
	}
	c := CheckCommitted(h)
	if len(c.Lost) != 1 || c.Lost[0].Weight != 102 {
		t.Errorf("lost %v, want the write of 102", c.Lost)
	}
	if len(c.Phantoms) != 1 || c.Phantoms[0].ReadWeight != 999 {
		t.Errorf("phantoms %v, want the read of 999", c.Phantoms)
	}
	if len(c.Duplicates) != 1 || !c.Duplicates[0].Retried || c.Unexpected() != 0 {
		t.Errorf("duplicates %+v, want 103 at 7 and 8, retried", c.Duplicates)
	}
	if c.Resolved != 1 {
		t.Errorf("resolved %d, want 1", c.Resolved)
	}
}

func TestWrongAnswers(t *testing.T) {
	h := hist(State{Serial: 4, Weight: 2}, false,
		Op{Kind: KindWrite, Weight: 101, Call: ms(0), Return: ms(10), Outcome: Failed, Code: "NotFound"},
		Op{Kind: KindCAS, Weight: 102, Expected: 4, Call: ms(0), Return: ms(10), Outcome: Failed, Code: "FailedPrecondition"},
		Op{Kind: KindWrite, Weight: 103, Call: ms(0), Return: ms(10), Outcome: Failed, Code: "Unavailable (not sent)"},
	)
	if w := WrongAnswers(h); len(w) != 1 || w[0].Weight != 101 {
		t.Errorf("got %v, want the NotFound", w)
	}
}

func TestCheckStale(t *testing.T) {
	h := hist(State{Serial: 4, Weight: 2}, false,
		Op{Kind: KindWrite, Weight: 101, Call: ms(100), Return: ms(110), Outcome: OK, Serial: 5},
		// From the future: the write went out at 100 ms.
		Op{Client: 1, Session: 1, Node: "r1", Kind: KindStale, Call: ms(50), Return: ms(60), Outcome: OK, Serial: 5, ReadWeight: 101},
		// Backwards on one node and connection.
		Op{Client: 2, Session: 1, Node: "r2", Kind: KindStale, Call: ms(120), Return: ms(121), Outcome: OK, Serial: 5, ReadWeight: 101},
		Op{Client: 2, Session: 1, Node: "r2", Kind: KindStale, Call: ms(130), Return: ms(131), Outcome: OK, Serial: 4, ReadWeight: 2},
		// Backwards across a restart of r3: allowed.
		Op{Client: 3, Session: 1, Node: "r3", Kind: KindStale, Call: ms(120), Return: ms(121), Outcome: OK, Serial: 5, ReadWeight: 101},
		Op{Client: 3, Session: 1, Node: "r3", Kind: KindStale, Call: ms(130), Return: ms(131), Outcome: OK, Serial: 3, ReadWeight: 2},
	)
	h.Events = []Event{{At: ms(125), Node: "r3", What: "start"}}
	bad := CheckStale(h)
	if len(bad) != 2 {
		t.Fatalf("got %d violations, want 2 (future, backwards): %q", len(bad), bad)
	}
}

// TestFixtures checks the histories kept in testdata/: each records an
// anomaly a run found, and the checks must keep finding it.
func TestFixtures(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			h, err := LoadHistory(f)
			if err != nil {
				t.Fatal(err)
			}
			l := CheckLinearizable(h, time.Minute)
			c := CheckCommitted(h)
			stale := CheckStale(h)
			wrong := WrongAnswers(h)
			t.Logf("%s: %d ops; linearizable %s (with refusals %s), lost %d, phantoms %d, unexpected duplicates %d, stale violations %d, wrong refusals %d",
				h.Note, len(h.Ops), l.Result, l.WithRefusals, len(c.Lost), len(c.Phantoms), c.Unexpected(), len(stale), len(wrong))
			if l.Result == porcupine.Ok && l.WithRefusals != porcupine.Illegal && len(c.Lost) == 0 && len(c.Phantoms) == 0 &&
				c.Unexpected() == 0 && len(stale) == 0 && len(wrong) == 0 {
				t.Errorf("the checks no longer find the anomaly this fixture records")
			}
		})
	}
}

var flagHistory = flag.String("history", "", "a history.json a run kept, for TestRecheck")

// TestRecheck runs the checks again on a history a run kept
// ($SHOAL_NEMESIS_OUT), say after a change to the checks:
//
//	go test ./e2e/nemesis -run TestRecheck -v -history /tmp/shoal-nemesis-.../history.json
func TestRecheck(t *testing.T) {
	if *flagHistory == "" {
		t.Skip("-history names no history to check")
	}
	h, err := LoadHistory(*flagHistory)
	if err != nil {
		t.Fatal(err)
	}
	_, res := Resolve(h)
	l := CheckLinearizable(h, 5*time.Minute)
	c := CheckCommitted(h)
	t.Logf("%s: %d ops (%+v); linearizable %s (with CAS refusals %s), lost %d, phantoms %d, unexpected duplicates %d",
		*flagHistory, len(h.Ops), res, l.Result, l.WithRefusals, len(c.Lost), len(c.Phantoms), c.Unexpected())
	if l.WithRefusals == porcupine.Illegal {
		for _, o := range BadRefusals(h, 5*time.Minute) {
			t.Errorf("refused while its expected serial was the cluster's: cas(s%d, w%d) %v..%v %s", o.Expected, o.Weight, o.Call, o.Return, o.label())
		}
	}
	for _, o := range WrongAnswers(h) {
		t.Errorf("false answer: %s %v..%v", o.label(), o.Call, o.Return)
	}
	for _, s := range CheckStale(h) {
		t.Errorf("%s", s)
	}
	if l.Result != porcupine.Ok || len(c.Lost) > 0 || len(c.Phantoms) > 0 || c.Unexpected() > 0 {
		t.Errorf("the history fails the checks")
	}
}
