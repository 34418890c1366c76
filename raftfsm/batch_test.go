package raftfsm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/hashicorp/raft"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
)

// TestApplyBatchMatchesOneByOne applies random writes in random batches,
// some judged by the leader before the batch, and wants every answer and
// every state after a batch to be what the pure Apply gives one command
// at a time; and no state seen outside a batch, nor a judgement's, to
// change afterwards, although the writes of a batch share one list of
// services.
func TestApplyBatchMatchesOneByOne(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { applyBatchesAtRandom(t, seed) })
	}
}

func applyBatchesAtRandom(t *testing.T, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 7))
	names := []string{"a", "b", "c", "d", "e", "f"}
	ids := []string{"", "", "", "r1", "r2", "r3"}
	randomCmd := func() *shoalv1.Command {
		name := names[rnd.IntN(len(names))]
		rs := fmt.Sprintf("10.0.%d.%d", rnd.IntN(2), 1+rnd.IntN(3))
		var cmd *shoalv1.Command
		switch rnd.IntN(9) {
		case 0, 1:
			cmd = createCmd(svc(name, fmt.Sprintf("192.0.2.%d", 1+rnd.IntN(4)), 80, rs))
		case 2:
			cmd = &shoalv1.Command{Op: &shoalv1.Command_DeleteVirtualService{DeleteVirtualService: &shoalv1.DeleteVirtualServiceRequest{Name: name}}}
		case 3:
			cmd = &shoalv1.Command{Op: &shoalv1.Command_AddRealServer{AddRealServer: &shoalv1.AddRealServerRequest{Service: name, RealServer: &shoalv1.RealServer{Address: rs}}}}
		case 4:
			cmd = &shoalv1.Command{Op: &shoalv1.Command_RemoveRealServer{RemoveRealServer: &shoalv1.RemoveRealServerRequest{Service: name, Address: rs}}}
		case 5, 6:
			cmd = &shoalv1.Command{Op: &shoalv1.Command_UpdateRealServer{UpdateRealServer: &shoalv1.UpdateRealServerRequest{Service: name,
				RealServer: &shoalv1.RealServer{Address: rs, Weight: proto.Uint32(uint32(rnd.IntN(4)))}, UpdateMask: mask("weight")}}}
		case 7:
			c := &shoalv1.Config{}
			for _, n := range names[:rnd.IntN(len(names))] {
				c.Services = append(c.Services, svc(n, "192.0.2."+fmt.Sprint(10+len(c.Services)), 80, rs))
			}
			cmd = &shoalv1.Command{Op: &shoalv1.Command_ApplyConfig{ApplyConfig: &shoalv1.ApplyConfigRequest{Config: c}}}
		default:
			cmd = &shoalv1.Command{Op: &shoalv1.Command_RegisterMember{RegisterMember: &shoalv1.RegisterMember{Id: name, ApiAddress: "127.0.0.1:7000"}}}
		}
		cmd.RequestId = ids[rnd.IntN(len(ids))]
		return cmd
	}

	f := NewFSM()
	want := f.State()
	// Every state the FSM let out, with a copy to hold it to.
	type seen struct{ st, copy *shoalv1.State }
	var states []seen
	index := uint64(0)
	for range 30 {
		events, cancel := f.Subscribe(100)
		before := f.State()
		n := 1 + rnd.IntN(8)
		var logs []*raft.Log
		var answers []any
		var serials []uint64
		for range n {
			cmd := randomCmd()
			index++
			data, err := proto.Marshal(cmd)
			if err != nil {
				t.Fatal(err)
			}
			logs = append(logs, &raft.Log{Index: index, Type: raft.LogCommand, Data: data})
			if rnd.IntN(2) == 0 {
				// Judged by the leader against the state before the batch.
				if j, err := Judge(before, cmd); err == nil {
					defer f.expect(data, before, j)()
				}
			}
			res, err := Apply(want, cmd)
			if err != nil {
				answers = append(answers, err)
				continue
			}
			answers = append(answers, res)
			if res.State != want {
				want = res.State
				serials = append(serials, want.GetConfig().GetSerial())
			}
		}
		if rnd.IntN(4) == 0 {
			// Raft's own entries are not commands.
			logs = append(logs, &raft.Log{Index: index + 1, Type: raft.LogConfiguration})
		}
		got := f.ApplyBatch(logs)
		cancel()
		st := f.State()
		if !proto.Equal(st, want) {
			t.Fatalf("state after the batch:\n%v\nwant\n%v", st, want)
		}
		if f.AppliedIndex() != index {
			t.Fatalf("applied index %d, want %d", f.AppliedIndex(), index)
		}
		for i, a := range answers {
			switch w := a.(type) {
			case error:
				if e, ok := got[i].(error); !ok || e.Error() != w.Error() {
					t.Fatalf("entry %d: %v, want %v", logs[i].Index, got[i], w)
				}
			case *Result:
				r, ok := got[i].(*Result)
				if !ok || r.Serial != w.Serial || r.Replayed != w.Replayed || len(r.Changes) != len(w.Changes) {
					t.Fatalf("entry %d: %v, want %v", logs[i].Index, got[i], w)
				}
				for k := range r.Changes {
					if !proto.Equal(r.Changes[k], w.Changes[k]) {
						t.Fatalf("entry %d change %d: %v, want %v", logs[i].Index, k, r.Changes[k], w.Changes[k])
					}
				}
				if r.State != st {
					t.Fatalf("entry %d: a state other than the batch's last", logs[i].Index)
				}
			}
		}
		if len(got) > len(answers) && got[len(answers)] != nil {
			t.Fatalf("raft's configuration entry answered %v", got[len(answers)])
		}
		var evSerials []uint64
		for ev := range events {
			if ev.State != st {
				t.Fatal("an event with a state other than the batch's last")
			}
			evSerials = append(evSerials, ev.Serial)
		}
		if fmt.Sprint(evSerials) != fmt.Sprint(serials) {
			t.Fatalf("events at serials %v, want %v", evSerials, serials)
		}
		states = append(states, seen{st, proto.Clone(st).(*shoalv1.State)})
	}
	for i, s := range states {
		if !proto.Equal(s.st, s.copy) {
			t.Fatalf("the state after batch %d changed later", i)
		}
	}
}

// TestApplyBatchKeepsHistoryLimit: the writes of a batch share one copy
// of the history too; past HistoryLimit it drops the same oldest records
// as one command at a time does.
func TestApplyBatchKeepsHistoryLimit(t *testing.T) {
	cmds := []*shoalv1.Command{createCmd(svc("web", "192.0.2.10", 80, "10.0.0.1"))}
	for i := range HistoryLimit + 100 {
		cmds = append(cmds, &shoalv1.Command{Op: &shoalv1.Command_UpdateRealServer{UpdateRealServer: &shoalv1.UpdateRealServerRequest{Service: "web",
			RealServer: &shoalv1.RealServer{Address: "10.0.0.1", Weight: proto.Uint32(uint32(i % 7))}, UpdateMask: mask("weight")}}})
	}
	want := EmptyState()
	for _, cmd := range cmds {
		res, err := Apply(want, cmd)
		if err != nil {
			t.Fatal(err)
		}
		want = res.State
	}
	f := NewFSM()
	logs := logOf(t, cmds...)
	for len(logs) > 0 {
		n := min(7, len(logs))
		f.ApplyBatch(logs[:n])
		logs = logs[n:]
	}
	if got := f.State(); len(got.GetHistory()) != HistoryLimit || !proto.Equal(got, want) {
		t.Fatalf("history of %d records, want %d and Apply's state", len(got.GetHistory()), HistoryLimit)
	}
}
