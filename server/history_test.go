package server

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// sameConfig compares two configurations but for their serials.
func sameConfig(a, b *shoalv1.Config) bool {
	a, b = proto.Clone(a).(*shoalv1.Config), proto.Clone(b).(*shoalv1.Config)
	a.Serial, b.Serial = 0, 0
	return proto.Equal(a, b)
}

func historySerials(resp *shoalv1.ListHistoryResponse) []uint64 {
	var out []uint64
	for _, e := range resp.GetEntries() {
		out = append(out, e.GetSerial())
	}
	return out
}

// TestHistoryAndRollback makes four changes through a follower, reads them
// back from the history, and rolls back to the first through the other
// follower.
func TestHistoryAndRollback(t *testing.T) {
	nodes := startCluster(t, 3, clusterOptions{})
	_, followers := leaderOf(t, nodes)
	f, g := followers[0], followers[1]
	ctx := ctxT(t)

	seen := map[uint64]*shoalv1.Config{}
	record := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.cfg().GetConfig(ctx, &shoalv1.GetConfigRequest{})
		if err != nil {
			t.Fatal(err)
		}
		seen[got.GetConfig().GetSerial()] = got.GetConfig()
	}
	_, err := f.lb().CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: webService("web", "10.0.0.1", 80)})
	record(err)
	_, err = f.lb().UpdateVirtualService(ctx, &shoalv1.UpdateVirtualServiceRequest{
		Service: &shoalv1.VirtualService{Name: "web", Scheduler: "rr"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"scheduler"}}})
	record(err)
	_, err = f.lb().AddRealServer(ctx, &shoalv1.AddRealServerRequest{Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.1.1"}})
	record(err)
	cfg := proto.Clone(seen[3]).(*shoalv1.Config)
	cfg.Global.GarpCount = 9
	_, err = f.cfg().ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{Config: cfg})
	record(err)
	if len(seen) != 4 || seen[4] == nil {
		t.Fatalf("serials after four changes: %v", seen)
	}

	list, err := f.cfg().ListHistory(ctx, &shoalv1.ListHistoryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := historySerials(list); !slices.Equal(got, []uint64{4, 3, 2, 1}) || list.GetSerial() != 4 || list.GetOldestSerial() != 0 {
		t.Fatalf("history serials %v (serial %d, oldest %d), want 4 3 2 1 newest first from 0", got, list.GetSerial(), list.GetOldestSerial())
	}
	for _, e := range list.GetEntries() {
		if e.GetMethod() == "" || len(e.GetChanges()) == 0 || e.GetRolledBackTo() != 0 {
			t.Errorf("entry %v", e)
		}
	}
	if got, err := f.cfg().ListHistory(ctx, &shoalv1.ListHistoryRequest{Limit: 2}); err != nil || !slices.Equal(historySerials(got), []uint64{4, 3}) {
		t.Errorf("limit 2: %v %v", historySerials(got), err)
	}
	// A stale read answers from the node's own state, which catches up.
	eventually(t, 5*time.Second, func() bool {
		got, err := g.cfg().ListHistory(ctx, &shoalv1.ListHistoryRequest{Consistency: shoalv1.ReadConsistency_READ_CONSISTENCY_STALE})
		return err == nil && len(got.GetEntries()) == 4
	}, "four entries in a stale read of the other follower")

	entry, err := g.cfg().GetHistoryEntry(ctx, &shoalv1.GetHistoryEntryRequest{Serial: 2})
	if err != nil {
		t.Fatal(err)
	}
	if e := entry.GetEntry(); e.GetSerial() != 2 || len(e.GetChanges()) != 1 || e.GetChanges()[0].GetService() != "web" {
		t.Errorf("entry 2: %v", e)
	}
	before, after := entry.GetBefore().GetServices(), entry.GetAfter().GetServices()
	if len(before) != 1 || before[0].GetScheduler() != "wlc" || len(after) != 1 || after[0].GetScheduler() != "rr" ||
		entry.GetBefore().GetGlobal() != nil || entry.GetAfter().GetGlobal() != nil {
		t.Errorf("entry 2 before %v after %v: want web with wlc then rr, no global settings", entry.GetBefore(), entry.GetAfter())
	}

	errs := []struct {
		name  string
		call  func() error
		code  codes.Code
		field string // the BadRequest field violation, if any
	}{
		{"entry of serial 0", func() error {
			_, err := f.cfg().GetHistoryEntry(ctx, &shoalv1.GetHistoryEntryRequest{})
			return err
		}, codes.InvalidArgument, "serial"},
		{"entry of a future serial", func() error {
			_, err := f.cfg().GetHistoryEntry(ctx, &shoalv1.GetHistoryEntryRequest{Serial: 99})
			return err
		}, codes.NotFound, ""},
		{"rollback without a serial", func() error {
			_, err := f.cfg().RollbackConfig(ctx, &shoalv1.RollbackConfigRequest{})
			return err
		}, codes.InvalidArgument, "serial"},
		{"dry rollback without a serial", func() error {
			_, err := f.cfg().RollbackConfig(ctx, &shoalv1.RollbackConfigRequest{DryRun: true})
			return err
		}, codes.InvalidArgument, "serial"},
		{"rollback to a future serial", func() error {
			_, err := f.cfg().RollbackConfig(ctx, &shoalv1.RollbackConfigRequest{Serial: 99})
			return err
		}, codes.NotFound, ""},
		{"rollback with a stale expected serial", func() error {
			_, err := f.cfg().RollbackConfig(ctx, &shoalv1.RollbackConfigRequest{Serial: 1, ExpectedSerial: 3})
			return err
		}, codes.FailedPrecondition, ""},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(tt.call())
			if st.Code() != tt.code {
				t.Fatalf("got %v %q, want %v", st.Code(), st.Message(), tt.code)
			}
			if tt.field == "" {
				return
			}
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 && br.GetFieldViolations()[0].GetField() == tt.field {
					return
				}
			}
			t.Errorf("details %v do not name the field %s", st.Details(), tt.field)
		})
	}

	dry, err := f.cfg().RollbackConfig(ctx, &shoalv1.RollbackConfigRequest{Serial: 1, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.GetSerial() != 4 || len(dry.GetChanges()) == 0 || !sameConfig(dry.GetConfig(), seen[1]) {
		t.Fatalf("dry run: serial %d, %d changes, config %v; want serial 4 and the configuration of serial 1", dry.GetSerial(), len(dry.GetChanges()), dry.GetConfig())
	}
	if got, err := f.cfg().GetConfig(ctx, &shoalv1.GetConfigRequest{}); err != nil || got.GetConfig().GetSerial() != 4 {
		t.Fatalf("the dry run committed: %v %v", got, err)
	}

	rb, err := g.cfg().RollbackConfig(ctx, &shoalv1.RollbackConfigRequest{Serial: 1, ExpectedSerial: 4})
	if err != nil {
		t.Fatal(err)
	}
	if rb.GetSerial() != 5 || !sameConfig(rb.GetConfig(), seen[1]) || !proto.Equal(&shoalv1.RollbackConfigResponse{Changes: rb.GetChanges()}, &shoalv1.RollbackConfigResponse{Changes: dry.GetChanges()}) {
		t.Fatalf("rollback answered %v; want serial 5, the configuration of serial 1 and the dry run's changes", rb)
	}
	for _, n := range nodes {
		got, err := n.cfg().GetConfig(ctx, &shoalv1.GetConfigRequest{})
		if err != nil || got.GetConfig().GetSerial() != 5 || !sameConfig(got.GetConfig(), seen[1]) {
			t.Errorf("%s after the rollback: %v %v", n.id, got, err)
		}
	}
	list, err = f.cfg().ListHistory(ctx, &shoalv1.ListHistoryRequest{Limit: 1})
	if err != nil || len(list.GetEntries()) != 1 || list.GetEntries()[0].GetSerial() != 5 || list.GetEntries()[0].GetRolledBackTo() != 1 {
		t.Fatalf("newest entry after the rollback: %v %v", list, err)
	}
	// Rolling back to the current serial changes nothing.
	same, err := f.cfg().RollbackConfig(ctx, &shoalv1.RollbackConfigRequest{Serial: 5})
	if err != nil || same.GetSerial() != 5 || len(same.GetChanges()) != 0 {
		t.Errorf("rollback to the current serial: %v %v", same, err)
	}
}

// TestHistoryOfANewCluster: before any change the history is empty and
// serial 0 (the empty configuration) is the oldest, and current, serial.
func TestHistoryOfANewCluster(t *testing.T) {
	nodes := startCluster(t, 1, clusterOptions{})
	ctx := ctxT(t)
	list, err := nodes[0].cfg().ListHistory(ctx, &shoalv1.ListHistoryRequest{Limit: 5})
	if err != nil || len(list.GetEntries()) != 0 || list.GetSerial() != 0 || list.GetOldestSerial() != 0 {
		t.Fatalf("history of a new cluster: %v %v", list, err)
	}
	rb, err := nodes[0].cfg().RollbackConfig(ctx, &shoalv1.RollbackConfigRequest{DryRun: true})
	if err != nil || rb.GetSerial() != 0 || len(rb.GetChanges()) != 0 {
		t.Errorf("rollback to serial 0 at serial 0: %v %v, want a no-op", rb, err)
	}
}
