package raftfsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
)

// withID gives cmd a request id and an audit at sec.
func withID(cmd *shoalv1.Command, id string, sec int64) *shoalv1.Command {
	cmd.RequestId = id
	cmd.Audit = auditOf("alice", "admin", "Test", sec)
	return cmd
}

// pure applies cmd and checks that neither st nor cmd changed.
func pure(t *testing.T, st *shoalv1.State, cmd *shoalv1.Command) (*Result, error) {
	t.Helper()
	stCopy, cmdCopy := proto.Clone(st), proto.Clone(cmd)
	res, err := Apply(st, cmd)
	if !proto.Equal(st, stCopy) {
		t.Errorf("Apply changed its state (command %v)", cmd)
	}
	if !proto.Equal(cmd, cmdCopy) {
		t.Errorf("Apply changed its command %v", cmd)
	}
	return res, err
}

func TestReplayReturnsFirstOutcome(t *testing.T) {
	st := baseState(t)
	add := func(expect uint64) *shoalv1.Command {
		return withID(&shoalv1.Command{Op: &shoalv1.Command_AddRealServer{AddRealServer: &shoalv1.AddRealServerRequest{
			Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.0.3"}, ExpectedSerial: expect}}}, "req-1", 10)
	}
	first, err := pure(t, st, add(1))
	if err != nil {
		t.Fatal(err)
	}
	if first.Replayed || first.Serial != 2 || first.State.GetConfig().GetSerial() != 2 || len(first.Changes) != 1 {
		t.Fatalf("first apply: replayed %v serial %d changes %v", first.Replayed, first.Serial, first.Changes)
	}
	if got := appliedRequests(first.State); len(got) != 1 || got[0].GetId() != "req-1" || got[0].GetSerial() != 2 ||
		!proto.Equal(got[0].GetTime(), at(10)) || len(got[0].GetChanges()) != 1 {
		t.Fatalf("remembered %v", got)
	}

	// Later changes move the serial on: the retry's expected serial is
	// stale, and the real server it adds exists already.
	st = first.State
	st = applied(t, st, withID(rsWeightCmd("web", "10.0.0.3", 4), "req-2", 11)).State
	st = applied(t, st, createCmd(svc("dns", "192.0.2.53", 53))).State
	if st.GetConfig().GetSerial() != 4 {
		t.Fatalf("serial %d, want 4", st.GetConfig().GetSerial())
	}
	history := len(st.GetHistory())

	again, err := pure(t, st, add(1))
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !again.Replayed || again.State != st || again.Serial != 2 || !equalChanges(again.Changes, first.Changes) {
		t.Fatalf("retry: replayed %v, same state %v, serial %d, changes %v; want the first outcome (serial 2, %v)",
			again.Replayed, again.State == st, again.Serial, again.Changes, first.Changes)
	}
	if len(again.State.GetHistory()) != history {
		t.Error("a replay added to the history")
	}
	// Without the id, the same command is judged as any other.
	plain := add(1)
	plain.RequestId = ""
	_, err = Apply(st, plain)
	wantKind(t, err, KindFailedPrecondition, "expected serial 1")
}

func equalChanges(a, b []*shoalv1.Change) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestReplayOfNoOp(t *testing.T) {
	st := baseState(t)
	// Setting the scheduler the service has already changes nothing, yet
	// the id is remembered: the state is a new one.
	noop := func() *shoalv1.Command {
		return withID(updateCmd(&shoalv1.VirtualService{Name: "web", Scheduler: "wlc"}, "scheduler"), "noop", 5)
	}
	res, err := pure(t, st, noop())
	if err != nil {
		t.Fatal(err)
	}
	if res.State == st || res.Serial != 1 || res.State.GetConfig() != st.GetConfig() || len(res.Changes) != 0 || res.Replayed {
		t.Fatalf("no-op with an id: new state %v, serial %d, changes %v, replayed %v", res.State != st, res.Serial, res.Changes, res.Replayed)
	}
	if len(res.State.GetHistory()) != len(st.GetHistory()) {
		t.Error("a no-op added to the history")
	}
	if r := appliedRequests(res.State); len(r) != 1 || r[0].GetSerial() != 1 || len(r[0].GetChanges()) != 0 {
		t.Fatalf("remembered %v", r)
	}
	st = applied(t, res.State, updateCmd(&shoalv1.VirtualService{Name: "web", Scheduler: "rr"}, "scheduler")).State
	again, err := pure(t, st, noop())
	if err != nil || !again.Replayed || again.State != st || again.Serial != 1 || len(again.Changes) != 0 {
		t.Fatalf("retry of the no-op: %+v %v", again, err)
	}
}

func TestRequestIDsApartAndRejections(t *testing.T) {
	st := baseState(t)
	create := func(id string) *shoalv1.Command { return withID(createCmd(svc("dns", "192.0.2.53", 53)), id, 1) }

	// Another id is another request: it is judged, and rejected here.
	st = applied(t, st, create("a")).State
	_, err := pure(t, st, create("b"))
	wantKind(t, err, KindAlreadyExists, "dns")
	if r := appliedRequests(st); len(r) != 1 || r[0].GetId() != "a" {
		t.Fatalf("requests %v", r)
	}

	// A rejected command is not remembered: its retry is judged afresh
	// and applies once the world allows it.
	del := withID(deleteCmd("ftp"), "c", 2)
	_, err = pure(t, st, del)
	wantKind(t, err, KindNotFound, "ftp")
	st = applied(t, st, createCmd(svc("ftp", "192.0.2.21", 21))).State
	res, err := pure(t, st, del)
	if err != nil || res.Replayed || res.Serial != st.GetConfig().GetSerial()+1 {
		t.Fatalf("retry after the service appeared: %+v %v", res, err)
	}
	// ... and from then on it is remembered.
	st = res.State
	again, err := pure(t, st, del)
	if err != nil || !again.Replayed || again.Serial != res.Serial {
		t.Fatalf("second retry: %+v %v", again, err)
	}
}

func TestRequestIDsOfCommandsThatKeepTheSerial(t *testing.T) {
	st := baseState(t)
	for i, cmd := range []*shoalv1.Command{
		{Op: &shoalv1.Command_CreateJoinToken{CreateJoinToken: joinToken("t1", 1000)}},
		{Op: &shoalv1.Command_DeleteJoinToken{DeleteJoinToken: &shoalv1.DeleteJoinTokenRequest{Id: "t1"}}},
		{Op: &shoalv1.Command_RevokeCertificate{RevokeCertificate: &shoalv1.RevokeCertificateRequest{SerialNumber: "abc"}}},
		{Op: &shoalv1.Command_RegisterMember{RegisterMember: &shoalv1.RegisterMember{Id: "n1", ApiAddress: "127.0.0.1:7070"}}},
	} {
		cmd = withID(cmd, fmt.Sprintf("keep-%d", i), int64(i))
		res, err := pure(t, st, cmd)
		if err != nil || res.Replayed || res.Serial != 1 {
			t.Fatalf("%v: %+v %v", cmd, res, err)
		}
		st = res.State
		// The delete would be NotFound now, were it not remembered.
		again, err := pure(t, st, cmd)
		if err != nil || !again.Replayed || again.State != st || again.Serial != 1 {
			t.Fatalf("retry of %v: %+v %v", cmd, again, err)
		}
	}
	if n := len(appliedRequests(st)); n != 4 {
		t.Errorf("%d requests remembered, want 4", n)
	}
}

// register is a cheap command with an id: the same registration again,
// which changes nothing but the remembered ids.
func register(id string, sec int64) *shoalv1.Command {
	return withID(&shoalv1.Command{Op: &shoalv1.Command_RegisterMember{RegisterMember: &shoalv1.RegisterMember{Id: "n1", ApiAddress: "a"}}}, id, sec)
}

func TestRequestCountLimit(t *testing.T) {
	st := EmptyState()
	const extra = 5
	for i := range MaxRequests + extra {
		st = applied(t, st, register(fmt.Sprintf("r%d", i), 0)).State
	}
	reqs := appliedRequests(st)
	if len(reqs) != MaxRequests {
		t.Fatalf("%d requests remembered, want %d", len(reqs), MaxRequests)
	}
	if reqs[0].GetId() != fmt.Sprintf("r%d", extra) || reqs[len(reqs)-1].GetId() != fmt.Sprintf("r%d", MaxRequests+extra-1) {
		t.Errorf("kept %s..%s", reqs[0].GetId(), reqs[len(reqs)-1].GetId())
	}
	if res := applied(t, st, register("r0", 0)); res.Replayed {
		t.Error("the oldest id, beyond the limit, is still remembered")
	}
	if res := applied(t, st, register(fmt.Sprintf("r%d", extra), 0)); !res.Replayed {
		t.Error("the oldest id kept is not remembered")
	}
}

func TestRequestTimeLimit(t *testing.T) {
	st := EmptyState()
	hour := int64(RequestTTL / time.Second)
	st = applied(t, st, register("t0", 0)).State
	st = applied(t, st, register("t10m", 600)).State
	st = applied(t, st, register("t20m", 1200)).State
	// One hour after t10m exactly: t0 is more than an hour old and goes,
	// t10m is not more than an hour old and stays.
	st = applied(t, st, register("now", 600+hour)).State
	var ids []string
	for _, r := range appliedRequests(st) {
		ids = append(ids, r.GetId())
	}
	if got := strings.Join(ids, " "); got != "t10m t20m now" {
		t.Fatalf("remembered %q, want %q", got, "t10m t20m now")
	}
	if res := applied(t, st, register("t0", 600+hour)); res.Replayed {
		t.Error("an id older than an hour is still remembered")
	}
	// A command without an audit has no time: it forgets nothing by age.
	late := register("untimed", 0)
	late.Audit = nil
	res := applied(t, st, late)
	if n := len(appliedRequests(res.State)); n != 4 {
		t.Errorf("an untimed command left %d requests, want 4", n)
	}
}

func TestRequestIDValidation(t *testing.T) {
	st := baseState(t)
	for _, id := range []string{strings.Repeat("x", 129), "a\nb", "tab\there", "caf\u00e9", "\x7f"} {
		_, err := pure(t, st, withID(createCmd(svc("dns", "192.0.2.53", 53)), id, 1))
		wantKind(t, err, KindInvalid, "request_id")
		var e *Error
		if errors.As(err, &e); len(e.Fields) != 1 || e.Fields[0].Field != "request_id" {
			t.Errorf("id %q: fields %v", id, e.Fields)
		}
	}
	for _, id := range []string{strings.Repeat("x", 128), "0f3a-9c", "a b ~!"} {
		if _, err := pure(t, st, withID(createCmd(svc("dns", "192.0.2.53", 53)), id, 1)); err != nil {
			t.Errorf("id %q refused: %v", id, err)
		}
	}
}

// TestFSMReplaysDuplicateEntries: two copies of a write in the log (a retry
// sent while the first was in flight) apply once; the second consumes its
// index and changes nothing, and subscribers hear of the first only.
func TestFSMReplaysDuplicateEntries(t *testing.T) {
	create := withID(createCmd(svc("web", "192.0.2.10", 80)), "dup", 1)
	f := NewFSM()
	events, cancel := f.Subscribe(8)
	defer cancel()
	logs := logOf(t, create, create)
	r1, ok := f.Apply(logs[0]).(*Result)
	if !ok || r1.Replayed || r1.Serial != 1 {
		t.Fatalf("first copy: %v", r1)
	}
	st := f.State()
	r2, ok := f.Apply(logs[1]).(*Result)
	if !ok || !r2.Replayed || r2.Serial != 1 || !equalChanges(r2.Changes, r1.Changes) {
		t.Fatalf("second copy: %+v", r2)
	}
	if f.State() != st || f.AppliedIndex() != 2 {
		t.Errorf("the second copy changed the state, or did not consume its index (%d)", f.AppliedIndex())
	}
	if ev := <-events; ev.Serial != 1 {
		t.Errorf("event %+v", ev)
	}
	select {
	case ev := <-events:
		t.Errorf("the replay published %+v", ev)
	default:
	}
}

func TestSnapshotKeepsRequests(t *testing.T) {
	cmds := []*shoalv1.Command{
		withID(createCmd(svc("web", "192.0.2.10", 80)), "one", 1),
		withID(createCmd(svc("dns", "192.0.2.53", 53)), "two", 2),
		register("three", 3),
	}
	f := NewFSM()
	for _, l := range logOf(t, cmds...) {
		f.Apply(l)
	}
	b := snapshotBytes(t, f)
	g := NewFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(f.State(), g.State()) || len(appliedRequests(g.State())) != 3 {
		t.Fatalf("restored requests %v, want %v", appliedRequests(g.State()), appliedRequests(f.State()))
	}
	// The restored node replays as the first one would.
	res, err := Apply(g.State(), cmds[0])
	if err != nil || !res.Replayed || res.Serial != 1 || len(res.Changes) != 1 {
		t.Fatalf("replay on the restored state: %+v %v", res, err)
	}
	// And the same log gives the same bytes.
	h := NewFSM()
	for _, l := range logOf(t, cmds...) {
		h.Apply(l)
	}
	if !bytes.Equal(snapshotBytes(t, h), b) {
		t.Error("the same log with request ids gave different snapshots")
	}
}

// TestRequestsFromBeforeBlocks restores a snapshot that keeps its ids in
// State.requests, as before request_blocks: they are still remembered,
// and the next id moves the list into blocks.
func TestRequestsFromBeforeBlocks(t *testing.T) {
	old := EmptyState()
	old.Config.Serial = 4
	old.Requests = []*shoalv1.AppliedRequest{{Id: "a", Serial: 3}, {Id: "b", Serial: 4}}
	b, err := marshalSnapshot(old, 9)
	if err != nil {
		t.Fatal(err)
	}
	f := NewFSM()
	if err := f.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
	if res := applied(t, f.State(), register("a", 0)); !res.Replayed || res.Serial != 3 {
		t.Errorf("id a from an old snapshot: replayed %v serial %d, want a replay of serial 3", res.Replayed, res.Serial)
	}
	st := applied(t, f.State(), register("c", 0)).State
	var ids []string
	for _, r := range appliedRequests(st) {
		ids = append(ids, r.GetId())
	}
	if got := strings.Join(ids, " "); got != "a b c" || len(st.GetRequests()) != 0 {
		t.Errorf("after a new id: %q (%d left in the old field), want \"a b c\" in blocks", got, len(st.GetRequests()))
	}
}

// TestFindRequestIndexMatchesScan checks the full blocks' indexes against
// a scan of every remembered record, newest first, with ids remembered
// more than once (a retry later than RequestTTL applies again) in one
// block and across blocks.
func TestFindRequestIndexMatchesScan(t *testing.T) {
	st := EmptyState()
	serial := uint64(0)
	for b := range 4 {
		n := requestBlock
		if b == 3 {
			n = 17 // the last block, still growing
		}
		var reqs []*shoalv1.AppliedRequest
		for i := range n {
			serial++
			// Ids repeat every 300 records, and one id is twice in a full block.
			id := fmt.Sprintf("id-%d", serial%300)
			if b == 1 && (i == 5 || i == 9) {
				id = "twice"
			}
			reqs = append(reqs, &shoalv1.AppliedRequest{Id: id, Serial: serial})
		}
		st.RequestBlocks = append(st.RequestBlocks, &shoalv1.AppliedRequestBlock{Requests: reqs})
	}
	scan := func(id string) *shoalv1.AppliedRequest {
		all := appliedRequests(st)
		for i := len(all) - 1; i >= 0; i-- {
			if all[i].GetId() == id {
				return all[i]
			}
		}
		return nil
	}
	for i := range 310 {
		for _, id := range []string{fmt.Sprintf("id-%d", i), "twice", "never"} {
			if got, want := findRequest(st, id), scan(id); got != want {
				t.Fatalf("findRequest(%q) = serial %d, want serial %d", id, got.GetSerial(), want.GetSerial())
			}
		}
	}
	if r := findRequest(st, "twice"); r.GetSerial() != requestBlock+10 {
		t.Errorf("twice: serial %d, want the newest, %d", r.GetSerial(), requestBlock+10)
	}
}
