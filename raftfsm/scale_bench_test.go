package raftfsm

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/hashicorp/raft"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// scaleTable is issue 22's table: n services of 10 real servers.
func scaleTable(n int) *shoalv1.Config {
	c := &shoalv1.Config{}
	for i := range n {
		s := &shoalv1.VirtualService{
			Name: fmt.Sprintf("svc-%05d", i),
			Vip:  &shoalv1.Address{Address: fmt.Sprintf("10.%d.%d.10", i/250, i%250), PrefixLength: 24},
			Port: 80,
		}
		for j := range 10 {
			k := i*10 + j
			s.RealServers = append(s.RealServers, &shoalv1.RealServer{
				Address: fmt.Sprintf("172.%d.%d.%d", 16+k/62500, k/250%250, k%250+1), Weight: proto.Uint32(100), Forward: "dr",
			})
		}
		c.Services = append(c.Services, s)
	}
	return c
}

func scaleState(tb testing.TB, n int) *shoalv1.State {
	res, err := Apply(EmptyState(), &shoalv1.Command{Op: &shoalv1.Command_ApplyConfig{ApplyConfig: &shoalv1.ApplyConfigRequest{Config: scaleTable(n)}}})
	if err != nil {
		tb.Fatal(err)
	}
	return res.State
}

// scaleWeightCmd is the i-th write of the scale benchmarks: a weight of one real
// server of st's table, spread over the services.
func scaleWeightCmd(st *shoalv1.State, id string, i int) *shoalv1.Command {
	s := st.Config.Services[i*7919%len(st.Config.Services)]
	return &shoalv1.Command{RequestId: fmt.Sprintf("%s%d", id, i), Audit: &shoalv1.Audit{Time: timestamppb.Now()},
		Op: &shoalv1.Command_UpdateRealServer{UpdateRealServer: &shoalv1.UpdateRealServerRequest{
			Service:    s.Name,
			RealServer: &shoalv1.RealServer{Address: s.RealServers[i%10].Address, Weight: proto.Uint32(uint32(i%1000 + 1))},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"weight"}},
		}}}
}

// BenchmarkApplyAtScale is the pure Apply of one command against a table
// of 10,000 services × 10 real servers: what every node pays per write.
func BenchmarkApplyAtScale(b *testing.B) {
	st := scaleState(b, 10000)
	b.Run("update_real_server", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			cmd := scaleWeightCmd(st, "r", i)
			res, err := Apply(st, cmd)
			if err != nil {
				b.Fatal(err)
			}
			st = res.State
		}
	})
	// What the API node's judgement of a write costs before it is
	// proposed: Judge leaves out the state after it.
	b.Run("judge_update_real_server", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			cmd := scaleWeightCmd(st, "j", i)
			if _, err := Judge(st, cmd); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("create_delete_service", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			var cmd *shoalv1.Command
			if i%2 == 0 {
				cmd = &shoalv1.Command{Op: &shoalv1.Command_CreateVirtualService{CreateVirtualService: &shoalv1.CreateVirtualServiceRequest{
					Service: &shoalv1.VirtualService{Name: "new", Vip: &shoalv1.Address{Address: "10.250.0.1"}, Port: 443,
						RealServers: []*shoalv1.RealServer{{Address: "192.168.1.1"}}}}}}
			} else {
				cmd = &shoalv1.Command{Op: &shoalv1.Command_DeleteVirtualService{DeleteVirtualService: &shoalv1.DeleteVirtualServiceRequest{Name: "new"}}}
			}
			res, err := Apply(st, cmd)
			if err != nil {
				b.Fatal(err)
			}
			st = res.State
		}
	})
}

// BenchmarkRequestIDs is the cost request ids add to a write once the
// state remembers MaxRequests of them.
func BenchmarkRequestIDs(b *testing.B) {
	st := EmptyState()
	now := timestamppb.Now()
	for i := range MaxRequests {
		st.Requests = append(st.Requests, &shoalv1.AppliedRequest{Id: fmt.Sprintf("%08x-%d", uint32(i*2654435761), i), Serial: 1, Time: now})
	}
	cmd := &shoalv1.Command{Audit: &shoalv1.Audit{Time: now}, Op: &shoalv1.Command_RegisterMember{RegisterMember: &shoalv1.RegisterMember{Id: "n1", ApiAddress: "x"}}}
	for i := 0; b.Loop(); i++ {
		cmd.RequestId = fmt.Sprintf("%08x-%d", uint32((MaxRequests+i)*2654435761), MaxRequests+i)
		res, err := Apply(st, cmd)
		if err != nil {
			b.Fatal(err)
		}
		st = res.State
	}
}

// BenchmarkSnapshotAtScale persists and restores the state of 10,000
// services × 10 real servers (with the history of the apply that made it):
// what a snapshot, and a node installing one, costs.
func BenchmarkSnapshotAtScale(b *testing.B) {
	st := scaleState(b, 10000)
	data, err := marshalSnapshot(st, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("persist", func(b *testing.B) {
		for b.Loop() {
			if _, err := marshalSnapshot(st, 1); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(data))/1e6, "MB")
	})
	b.Run("restore", func(b *testing.B) {
		for b.Loop() {
			f := NewFSM()
			if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkApplyConfigAtScale is the pure Apply of a whole-table
// `config apply` of 10,000 services × 10 real servers, what every node
// pays for it: onto an empty state, and onto the same table with every
// weight changed (100,000 changes to diff and record).
func BenchmarkApplyConfigAtScale(b *testing.B) {
	apply := func(b *testing.B, st *shoalv1.State, c *shoalv1.Config) *shoalv1.State {
		res, err := Apply(st, &shoalv1.Command{Op: &shoalv1.Command_ApplyConfig{ApplyConfig: &shoalv1.ApplyConfigRequest{Config: c}}})
		if err != nil {
			b.Fatal(err)
		}
		return res.State
	}
	table := scaleTable(10000)
	b.Run("from_empty", func(b *testing.B) {
		for b.Loop() {
			apply(b, EmptyState(), table)
		}
	})
	b.Run("every_weight", func(b *testing.B) {
		st := apply(b, EmptyState(), table)
		other := scaleTable(10000)
		for _, s := range other.Services {
			for _, r := range s.RealServers {
				r.Weight = proto.Uint32(101)
			}
		}
		for i := 0; b.Loop(); i++ {
			c := table
			if i%2 == 0 {
				c = other
			}
			st = apply(b, st, c)
		}
	})
}

// BenchmarkApplyBatchAtScale is what a node's FSM pays per write of one
// real server's weight at 10,000 services × 10, when raft hands it
// batches of 1 (no sharing) or of 32 writes (one copy of the list of
// services and of the history for the batch).
func BenchmarkApplyBatchAtScale(b *testing.B) {
	for _, size := range []int{1, 32} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			f := NewFSM()
			f.state = scaleState(b, 10000)
			st := f.state
			logs := make([]*raft.Log, size)
			index := uint64(0)
			for i := 0; b.Loop(); i++ {
				data, err := proto.Marshal(scaleWeightCmd(st, "r", i))
				if err != nil {
					b.Fatal(err)
				}
				index++
				logs[i%size] = &raft.Log{Index: index, Type: raft.LogCommand, Data: data}
				if i%size == size-1 {
					for _, r := range f.ApplyBatch(logs) {
						if err, ok := r.(error); ok {
							b.Fatal(err)
						}
					}
				}
			}
		})
	}
}
