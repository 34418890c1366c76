package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

var (
	// plusOne keeps the expected times independent of the machine's zone.
	plusOne = time.FixedZone("plus-one", 3600)
	when    = timestamppb.New(time.Date(2025, 3, 4, 5, 6, 7, 890, time.UTC))
	added   = &shoalv1.Change{Action: shoalv1.ChangeAction_CHANGE_ACTION_ADDED, Service: "web", Detail: "192.0.2.10:80/tcp wlc nat"}
	changed = &shoalv1.Change{Action: shoalv1.ChangeAction_CHANGE_ACTION_MODIFIED, Service: "web", RealServer: "10.0.1.1:80", Detail: "weight: 1 -> 0"}
	removed = &shoalv1.Change{Action: shoalv1.ChangeAction_CHANGE_ACTION_REMOVED, Service: "dns"}
)

func TestHistoryTable(t *testing.T) {
	tests := []struct {
		name string
		resp *shoalv1.ListHistoryResponse
		want string
	}{
		{
			name: "entries",
			resp: &shoalv1.ListHistoryResponse{Serial: 12, OldestSerial: 3, Entries: []*shoalv1.HistoryEntry{
				{Serial: 12, Time: when, Actor: "alice", Role: "admin", Method: "RollbackConfig", Changes: []*shoalv1.Change{changed, removed}, RolledBackTo: 9},
				{Serial: 11, Time: when, Actor: "bob", Role: "operator", Method: "UpdateRealServer", Changes: []*shoalv1.Change{changed}},
				{Serial: 4, Method: "apply_config", Changes: []*shoalv1.Change{added}},
			}},
			want: "" +
				"SERIAL  TIME                       ACTOR  ROLE      METHOD            CHANGES\n" +
				"12      2025-03-04T06:06:07+01:00  alice  admin     RollbackConfig    2, rollback to 9\n" +
				"11      2025-03-04T06:06:07+01:00  bob    operator  UpdateRealServer  1\n" +
				"4       -                          -      -         apply_config      1\n" +
				"serial 12; a rollback can reach back to serial 3\n",
		},
		{
			name: "empty",
			resp: &shoalv1.ListHistoryResponse{},
			want: "SERIAL  TIME  ACTOR  ROLE  METHOD  CHANGES\nserial 0; a rollback can reach back to serial 0\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := historyTable(&b, tt.resp, plusOne); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tt.want)
			}
		})
	}
}

func TestHistoryHeader(t *testing.T) {
	tests := []struct {
		entry *shoalv1.HistoryEntry
		want  string
	}{
		{&shoalv1.HistoryEntry{Serial: 11, Time: when, Actor: "bob", Role: "operator", Method: "UpdateRealServer"},
			"serial 11  2025-03-04T06:06:07+01:00  bob (operator)  UpdateRealServer"},
		{&shoalv1.HistoryEntry{Serial: 12, Time: when, Actor: "alice", Role: "admin", Method: "RollbackConfig", RolledBackTo: 9},
			"serial 12  2025-03-04T06:06:07+01:00  alice (admin)  RollbackConfig  rollback to 9"},
		{&shoalv1.HistoryEntry{Serial: 1, Method: "create_virtual_service"},
			"serial 1  -  - (-)  create_virtual_service"},
	}
	for _, tt := range tests {
		if got := historyHeader(tt.entry, plusOne); got != tt.want {
			t.Errorf("got  %q\nwant %q", got, tt.want)
		}
	}
}

func TestRollbackSummary(t *testing.T) {
	tests := []struct {
		name   string
		resp   *shoalv1.RollbackConfigResponse
		dryRun bool
		want   string
	}{
		{"applied", &shoalv1.RollbackConfigResponse{Serial: 13, Changes: []*shoalv1.Change{added, changed, removed}}, false,
			"+ service web: 192.0.2.10:80/tcp wlc nat\n~ service web server 10.0.1.1:80: weight: 1 -> 0\n- service dns\nrolled back to serial 9: serial 13\n"},
		{"dry run", &shoalv1.RollbackConfigResponse{Serial: 12, Changes: []*shoalv1.Change{removed}}, true,
			"- service dns\ndry run: nothing committed (serial 12)\n"},
		{"no change", &shoalv1.RollbackConfigResponse{Serial: 12}, false,
			"no changes: the configuration is as it was at serial 9 (serial 12)\n"},
		{"large", &shoalv1.RollbackConfigResponse{Serial: 14, ChangesOmitted: true,
			Summary: &shoalv1.ChangeSummary{ServicesRemoved: 9000, RealServersModified: 3}}, false,
			"-9000 services, ~3 real servers (the diff is left out; --full prints it)\nrolled back to serial 9: serial 14\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			rollbackSummary(&b, tt.resp, 9, tt.dryRun)
			if b.String() != tt.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tt.want)
			}
		})
	}
}

func TestParseSerial(t *testing.T) {
	for in, want := range map[string]uint64{"12": 12, "1": 1, "0": 0, "-1": 0, "x": 0, "": 0} {
		got, err := parseSerial(in)
		if got != want || (err != nil) != (want == 0) {
			t.Errorf("parseSerial(%q) = %d, %v", in, got, err)
		}
	}
}

// fakeConfig is a ConfigService that answers the history methods with
// fixed responses and keeps the requests it received.
type fakeConfig struct {
	shoalv1.UnimplementedConfigServiceServer
	mu  sync.Mutex
	got []proto.Message
}

func (f *fakeConfig) keep(m proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, m)
}

func (f *fakeConfig) last() proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) == 0 {
		return nil
	}
	return f.got[len(f.got)-1]
}

var (
	fakeList = &shoalv1.ListHistoryResponse{Serial: 12, OldestSerial: 3, Entries: []*shoalv1.HistoryEntry{
		{Serial: 12, Time: when, Actor: "alice", Role: "admin", Method: "RollbackConfig", Changes: []*shoalv1.Change{removed}, RolledBackTo: 9},
	}}
	fakeEntry = &shoalv1.GetHistoryEntryResponse{
		Entry:  &shoalv1.HistoryEntry{Serial: 7, Time: when, Actor: "bob", Role: "operator", Method: "UpdateRealServer", Changes: []*shoalv1.Change{changed}},
		Before: &shoalv1.Config{Serial: 6, Services: []*shoalv1.VirtualService{{Name: "web", RealServers: []*shoalv1.RealServer{{Address: "10.0.1.1", Weight: proto.Uint32(1)}}}}},
		After:  &shoalv1.Config{Serial: 7, Services: []*shoalv1.VirtualService{{Name: "web", RealServers: []*shoalv1.RealServer{{Address: "10.0.1.1", Weight: proto.Uint32(0)}}}}},
	}
	fakeRollback = &shoalv1.RollbackConfigResponse{Serial: 12, Changes: []*shoalv1.Change{added}}
)

func (f *fakeConfig) ListHistory(_ context.Context, req *shoalv1.ListHistoryRequest) (*shoalv1.ListHistoryResponse, error) {
	f.keep(req)
	return fakeList, nil
}

func (f *fakeConfig) GetHistoryEntry(_ context.Context, req *shoalv1.GetHistoryEntryRequest) (*shoalv1.GetHistoryEntryResponse, error) {
	f.keep(req)
	return fakeEntry, nil
}

func (f *fakeConfig) RollbackConfig(_ context.Context, req *shoalv1.RollbackConfigRequest) (*shoalv1.RollbackConfigResponse, error) {
	f.keep(req)
	return fakeRollback, nil
}

func startFakeConfig(t *testing.T) (*fakeConfig, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeConfig{}
	gs := grpc.NewServer()
	shoalv1.RegisterConfigServiceServer(gs, f)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return f, lis.Addr().String()
}

// TestHistoryCommands runs the commands against a fake server: each sends
// what its flags say and prints the answer as -o asks.
func TestHistoryCommands(t *testing.T) {
	f, addr := startFakeConfig(t)
	stale := shoalv1.ReadConsistency_READ_CONSISTENCY_STALE
	linearizable := shoalv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE
	tests := []struct {
		name string
		args []string
		req  proto.Message // nil: no call
		resp proto.Message // for -o json
		out  []string      // fragments of stdout
		err  string
	}{
		{name: "list", args: []string{"history", "--limit", "2", "--stale"},
			req: &shoalv1.ListHistoryRequest{Limit: 2, Consistency: stale}, out: []string{"SERIAL", "alice", "1, rollback to 9", "reach back to serial 3"}},
		{name: "list json", args: []string{"-o", "json", "history"},
			req: &shoalv1.ListHistoryRequest{Consistency: linearizable}, resp: fakeList},
		{name: "show", args: []string{"history", "show", "7"},
			req: &shoalv1.GetHistoryEntryRequest{Serial: 7, Consistency: linearizable},
			out: []string{"serial 7  ", "  bob (operator)  UpdateRealServer\n~ service web server 10.0.1.1:80: weight: 1 -> 0\n"}},
		{name: "show stale json", args: []string{"-o", "json", "history", "show", "7", "--stale"},
			req: &shoalv1.GetHistoryEntryRequest{Serial: 7, Consistency: stale}, resp: fakeEntry},
		{name: "show yaml has before and after", args: []string{"-o", "yaml", "history", "show", "7"},
			req: &shoalv1.GetHistoryEntryRequest{Serial: 7, Consistency: linearizable}, out: []string{"before:", "after:", "weight: 0"}},
		{name: "show without a serial", args: []string{"history", "show"}, err: "accepts 1 arg"},
		{name: "show serial 0", args: []string{"history", "show", "0"}, err: "want a positive number"},
		{name: "rollback", args: []string{"config", "rollback", "9", "--expect-serial", "11"},
			req: &shoalv1.RollbackConfigRequest{Serial: 9, ExpectedSerial: 11}, out: []string{"+ service web: 192.0.2.10:80/tcp wlc nat\nrolled back to serial 9: serial 12\n"}},
		{name: "rollback dry run", args: []string{"config", "rollback", "9", "--dry-run"},
			req: &shoalv1.RollbackConfigRequest{Serial: 9, DryRun: true}, out: []string{"dry run: nothing committed (serial 12)"}},
		{name: "rollback json", args: []string{"-o", "json", "config", "rollback", "9"},
			req: &shoalv1.RollbackConfigRequest{Serial: 9}, resp: fakeRollback},
		{name: "rollback without a serial", args: []string{"config", "rollback"}, err: "accepts 1 arg"},
		{name: "rollback to x", args: []string{"config", "rollback", "x"}, err: `serial "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.last()
			out, _, err := runCtl(t, append([]string{"-s", addr}, tt.args...)...)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one containing %q", err, tt.err)
				}
				if f.last() != before {
					t.Errorf("a bad command reached the server: %v", f.last())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := f.last(); got == before || !proto.Equal(got, tt.req) {
				t.Errorf("request %v, want %v", got, tt.req)
			}
			for _, want := range tt.out {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if tt.resp != nil {
				got := tt.resp.ProtoReflect().New().Interface()
				if err := protojson.Unmarshal([]byte(out), got); err != nil || !proto.Equal(got, tt.resp) {
					t.Errorf("-o json does not parse back as the response (%v):\n%s", err, out)
				}
			}
		})
	}
}

// TestHistoryCommandTree: `config rollback` is added to the config command
// from this file's init, which must run after config.go's.
func TestHistoryCommandTree(t *testing.T) {
	root := newApp(&bytes.Buffer{}, &bytes.Buffer{}).root()
	for _, path := range [][]string{{"history"}, {"history", "show"}, {"config", "rollback"}, {"config", "get"}, {"config", "apply"}} {
		cmd, _, err := root.Find(path)
		if err != nil || cmd.Name() != path[len(path)-1] {
			t.Errorf("lvsctl %s: %v", strings.Join(path, " "), err)
		}
	}
}
