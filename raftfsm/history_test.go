package raftfsm

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// at returns a fixed instant sec seconds past an arbitrary epoch: the FSM
// reads no clock, and neither do its tests.
func at(sec int64) *timestamppb.Timestamp {
	return timestamppb.New(time.Unix(1_700_000_000+sec, 0).UTC())
}

func auditOf(actor, role, method string, sec int64) *shoalv1.Audit {
	return &shoalv1.Audit{Actor: actor, Role: role, Method: method, Time: at(sec)}
}

func audited(cmd *shoalv1.Command, a *shoalv1.Audit) *shoalv1.Command {
	cmd.Audit = a
	return cmd
}

func svc(name, vip string, port uint32, servers ...string) *shoalv1.VirtualService {
	s := &shoalv1.VirtualService{Name: name, Vip: &shoalv1.Address{Address: vip}, Port: port}
	for _, a := range servers {
		s.RealServers = append(s.RealServers, &shoalv1.RealServer{Address: a})
	}
	return s
}

func createCmd(s *shoalv1.VirtualService) *shoalv1.Command {
	return &shoalv1.Command{Op: &shoalv1.Command_CreateVirtualService{CreateVirtualService: &shoalv1.CreateVirtualServiceRequest{Service: s}}}
}

func updateCmd(s *shoalv1.VirtualService, paths ...string) *shoalv1.Command {
	return &shoalv1.Command{Op: &shoalv1.Command_UpdateVirtualService{UpdateVirtualService: &shoalv1.UpdateVirtualServiceRequest{Service: s, UpdateMask: mask(paths...)}}}
}

func deleteCmd(name string) *shoalv1.Command {
	return &shoalv1.Command{Op: &shoalv1.Command_DeleteVirtualService{DeleteVirtualService: &shoalv1.DeleteVirtualServiceRequest{Name: name}}}
}

func applyConfigCmd(c *shoalv1.Config) *shoalv1.Command {
	return &shoalv1.Command{Op: &shoalv1.Command_ApplyConfig{ApplyConfig: &shoalv1.ApplyConfigRequest{Config: c}}}
}

func rollbackCmd(serial, expected uint64) *shoalv1.Command {
	return &shoalv1.Command{Op: &shoalv1.Command_RollbackConfig{RollbackConfig: &shoalv1.RollbackConfigRequest{Serial: serial, ExpectedSerial: expected}}}
}

func rsWeightCmd(service, addr string, weight uint32) *shoalv1.Command {
	return &shoalv1.Command{Op: &shoalv1.Command_UpdateRealServer{UpdateRealServer: &shoalv1.UpdateRealServerRequest{
		Service: service, RealServer: &shoalv1.RealServer{Address: addr, Weight: proto.Uint32(weight)}, UpdateMask: mask("weight")}}}
}

// withGlobal is an apply of st's services with changed global settings.
func withGlobal(st *shoalv1.State, change func(g *shoalv1.Global)) *shoalv1.Command {
	c := proto.Clone(st.GetConfig()).(*shoalv1.Config)
	change(c.Global)
	return applyConfigCmd(c)
}

func applied(t testing.TB, st *shoalv1.State, cmd *shoalv1.Command) *Result {
	t.Helper()
	res, err := Apply(st, cmd)
	if err != nil {
		t.Fatalf("apply %v: %v", cmd, err)
	}
	return res
}

// wantKind fails unless err is an *Error of kind whose message contains
// every fragment.
func wantKind(t testing.TB, err error, kind ErrorKind, fragments ...string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Kind != kind {
		t.Fatalf("got %v (%#v), want kind %v", err, err, kind)
	}
	for _, f := range fragments {
		if !strings.Contains(e.Error(), f) {
			t.Errorf("error %q does not mention %q", e, f)
		}
	}
}

// historyFixture applies creates, updates, deletes, real-server changes,
// whole applies and global changes, and returns the state with a copy of
// the configuration as it was at every serial it went through.
func historyFixture(t testing.TB) (*shoalv1.State, map[uint64]*shoalv1.Config) {
	t.Helper()
	st := EmptyState()
	seen := map[uint64]*shoalv1.Config{0: proto.Clone(st.GetConfig()).(*shoalv1.Config)}
	step := func(cmd *shoalv1.Command) {
		t.Helper()
		res := applied(t, st, cmd)
		if res.State.GetConfig().GetSerial() != st.GetConfig().GetSerial()+1 {
			t.Fatalf("fixture step %v changed nothing", cmd)
		}
		st = res.State
		seen[st.GetConfig().GetSerial()] = proto.Clone(st.GetConfig()).(*shoalv1.Config)
	}
	step(createCmd(svc("web", "192.0.2.10", 80, "10.0.0.1", "10.0.0.2")))
	step(createCmd(svc("dns", "192.0.2.53", 53)))
	step(updateCmd(&shoalv1.VirtualService{Name: "web", Scheduler: "rr"}, "scheduler"))
	step(rsWeightCmd("web", "10.0.0.1", 5))
	step(withGlobal(st, func(g *shoalv1.Global) { g.GarpCount = 9 }))
	step(&shoalv1.Command{Op: &shoalv1.Command_AddRealServer{AddRealServer: &shoalv1.AddRealServerRequest{Service: "dns", RealServer: &shoalv1.RealServer{Address: "10.0.1.1"}}}})
	step(deleteCmd("web"))
	step(applyConfigCmd(&shoalv1.Config{
		Global:   &shoalv1.Global{GarpCount: 2, MonitorLinks: []string{"eth0"}},
		Services: []*shoalv1.VirtualService{svc("api", "192.0.2.20", 443, "10.0.2.1"), svc("dns", "192.0.2.53", 53), svc("mail", "192.0.2.25", 25)},
	}))
	step(&shoalv1.Command{Op: &shoalv1.Command_RemoveRealServer{RemoveRealServer: &shoalv1.RemoveRealServerRequest{Service: "api", Address: "10.0.2.1"}}})
	step(createCmd(svc("web", "192.0.2.10", 8080)))
	step(withGlobal(st, func(g *shoalv1.Global) { g.MonitorLinks = nil }))
	return st, seen
}

func TestHistoryRecordsEveryChange(t *testing.T) {
	token := &shoalv1.StoredJoinToken{Info: &shoalv1.JoinToken{Id: "t1", Expires: at(1000)}, Key: make([]byte, 32)}
	steps := []struct {
		name   string
		cmd    *shoalv1.Command
		record bool   // a configuration change: one more record
		method string // the method recorded
	}{
		{"create", audited(createCmd(svc("web", "192.0.2.10", 80, "10.0.0.1")), auditOf("alice", "admin", "CreateVirtualService", 1)), true, "CreateVirtualService"},
		{"create without an audit", createCmd(svc("dns", "192.0.2.53", 53)), true, "create_virtual_service"},
		{"audit without a method", audited(updateCmd(&shoalv1.VirtualService{Name: "web", Scheduler: "rr"}, "scheduler"),
			&shoalv1.Audit{Actor: "bob", Role: "operator", Time: at(2)}), true, "update_virtual_service"},
		{"real server weight", audited(rsWeightCmd("web", "10.0.0.1", 3), auditOf("carol", "operator", "UpdateRealServer", 3)), true, "UpdateRealServer"},
		{"global", audited(applyConfigCmd(&shoalv1.Config{Global: &shoalv1.Global{GarpCount: 7}}), auditOf("alice", "admin", "ApplyConfig", 4)), true, "ApplyConfig"},
		{"rollback", audited(rollbackCmd(2, 0), auditOf("alice", "admin", "RollbackConfig", 5)), true, "RollbackConfig"},
		{"update that changes nothing", audited(updateCmd(&shoalv1.VirtualService{Name: "dns", Scheduler: "wlc"}, "scheduler"), auditOf("bob", "operator", "UpdateVirtualService", 6)), false, ""},
		{"register member", &shoalv1.Command{Op: &shoalv1.Command_RegisterMember{RegisterMember: &shoalv1.RegisterMember{Id: "n1", ApiAddress: "127.0.0.1:7070"}}}, false, ""},
		{"unregister member", &shoalv1.Command{Op: &shoalv1.Command_UnregisterMember{UnregisterMember: &shoalv1.UnregisterMember{Id: "n1"}}}, false, ""},
		{"create join token", audited(&shoalv1.Command{Op: &shoalv1.Command_CreateJoinToken{CreateJoinToken: token}}, auditOf("alice", "admin", "CreateJoinToken", 7)), false, ""},
		{"delete join token", &shoalv1.Command{Op: &shoalv1.Command_DeleteJoinToken{DeleteJoinToken: &shoalv1.DeleteJoinTokenRequest{Id: "t1"}}}, false, ""},
		{"install CA", &shoalv1.Command{Op: &shoalv1.Command_InstallCa{InstallCa: &shoalv1.ClusterCA{Certificate: []byte("cert"), Key: []byte("key")}}}, false, ""},
		{"delete", audited(deleteCmd("web"), auditOf("dave", "admin", "DeleteVirtualService", 8)), true, "DeleteVirtualService"},
	}
	st := EmptyState()
	for _, tt := range steps {
		res := applied(t, st, tt.cmd)
		got, old := res.State.GetHistory(), st.GetHistory()
		serial := res.State.GetConfig().GetSerial()
		if !tt.record {
			if serial != st.GetConfig().GetSerial() || len(got) != len(old) || len(got) > 0 && &got[0] != &old[0] {
				t.Errorf("%s: serial %d -> %d, history %d -> %d records: want both unchanged", tt.name, st.GetConfig().GetSerial(), serial, len(old), len(got))
			}
			st = res.State
			continue
		}
		if serial != st.GetConfig().GetSerial()+1 || len(got) != len(old)+1 {
			t.Fatalf("%s: serial %d -> %d, history %d -> %d records: want one more of each", tt.name, st.GetConfig().GetSerial(), serial, len(old), len(got))
		}
		for i := range old {
			if got[i] != old[i] {
				t.Errorf("%s: record %d was replaced; older records are shared, never rewritten", tt.name, i)
			}
		}
		e := got[len(got)-1].GetEntry()
		a := tt.cmd.GetAudit()
		if e.GetSerial() != serial || e.GetActor() != a.GetActor() || e.GetRole() != a.GetRole() ||
			e.GetMethod() != tt.method || !proto.Equal(e.GetTime(), a.GetTime()) {
			t.Errorf("%s: entry %v, want serial %d, audit %v and method %q", tt.name, e, serial, a, tt.method)
		}
		if e.GetRolledBackTo() != tt.cmd.GetRollbackConfig().GetSerial() {
			t.Errorf("%s: rolled_back_to %d", tt.name, e.GetRolledBackTo())
		}
		if len(res.Changes) == 0 || !proto.Equal(&shoalv1.HistoryEntry{Changes: e.GetChanges()}, &shoalv1.HistoryEntry{Changes: res.Changes}) {
			t.Errorf("%s: recorded changes %v, the command's %v", tt.name, e.GetChanges(), res.Changes)
		}
		st = res.State
	}
}

func TestConfigAt(t *testing.T) {
	st, seen := historyFixture(t)
	cur := st.GetConfig().GetSerial()
	for serial := uint64(0); serial <= cur; serial++ {
		got, err := ConfigAt(st, serial)
		if err != nil {
			t.Fatalf("serial %d: %v", serial, err)
		}
		if !proto.Equal(got, seen[serial]) {
			t.Errorf("serial %d rebuilt as\n%v\nwant\n%v", serial, got, seen[serial])
		}
	}

	// A history that lost its first records reaches back less far.
	trimmed := derive(st)
	trimmed.History = st.GetHistory()[4:]
	oldest := OldestSerial(trimmed)
	if oldest != 4 {
		t.Fatalf("oldest serial %d, want 4", oldest)
	}
	if got, err := ConfigAt(trimmed, oldest); err != nil || !proto.Equal(got, seen[oldest]) {
		t.Errorf("oldest serial rebuilt as %v, %v", got, err)
	}
	tests := []struct {
		name   string
		st     *shoalv1.State
		serial uint64
		kind   ErrorKind
		text   string
	}{
		{"future", st, cur + 1, KindNotFound, "has not been reached"},
		{"beyond the oldest", trimmed, oldest - 1, KindFailedPrecondition, "reaches back to serial 4"},
		{"zero beyond the oldest", trimmed, 0, KindFailedPrecondition, "reaches back to serial 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ConfigAt(tt.st, tt.serial)
			wantKind(t, err, tt.kind, tt.text)
		})
	}
	if got := OldestSerial(&shoalv1.State{Config: &shoalv1.Config{Serial: 9}}); got != 9 {
		t.Errorf("without history the oldest serial is %d, want the current 9", got)
	}
}

func TestHistoryCountLimit(t *testing.T) {
	st := applied(t, EmptyState(), createCmd(svc("web", "192.0.2.10", 80, "10.0.0.1"))).State
	weights := map[uint64]uint32{1: 1}
	for i := range HistoryLimit + 5 {
		w := uint32(2 + i%2)
		st = applied(t, st, rsWeightCmd("web", "10.0.0.1", w)).State
		weights[st.GetConfig().GetSerial()] = w
	}
	cur := st.GetConfig().GetSerial()
	if n := len(st.GetHistory()); n != HistoryLimit {
		t.Fatalf("%d records after %d changes, want %d", n, cur, HistoryLimit)
	}
	oldest := OldestSerial(st)
	if oldest != cur-HistoryLimit {
		t.Fatalf("oldest serial %d, want %d", oldest, cur-HistoryLimit)
	}
	got, err := ConfigAt(st, oldest)
	if err != nil || got.GetServices()[0].GetRealServers()[0].GetWeight() != weights[oldest] {
		t.Errorf("oldest serial %d rebuilt as %v, %v; want weight %d", oldest, got, err, weights[oldest])
	}
	_, err = ConfigAt(st, oldest-1)
	wantKind(t, err, KindFailedPrecondition)
	_, _, _, err = HistoryEntry(st, oldest)
	wantKind(t, err, KindNotFound, "no change with serial")
	if e, _, _, err := HistoryEntry(st, oldest+1); err != nil || e.GetSerial() != oldest+1 {
		t.Errorf("oldest entry: %v, %v", e, err)
	}
	_, err = Apply(st, rollbackCmd(oldest-1, 0))
	wantKind(t, err, KindFailedPrecondition)
}

// TestHistoryByteLimit applies configurations whose one large string
// changes every time: each record holds the old service and a change line
// with the old and new strings, so the byte limit, not the count, decides.
func TestHistoryByteLimit(t *testing.T) {
	const size = 2 << 20
	const applies = 24
	cfg := func(letter byte) *shoalv1.Config {
		s := svc("web", "192.0.2.10", 80, "10.0.0.1")
		s.HealthCheck = &shoalv1.HealthCheck{Kind: "tcp", Send: strings.Repeat(string(letter), size)}
		return &shoalv1.Config{Services: []*shoalv1.VirtualService{s}}
	}
	st := EmptyState()
	letters := map[uint64]byte{}
	for i := range applies {
		letter := byte('a' + i)
		st = applied(t, st, applyConfigCmd(cfg(letter))).State
		letters[st.GetConfig().GetSerial()] = letter
	}
	h := st.GetHistory()
	total := 0
	for _, r := range h {
		// The record's own undo_bytes field is the only part it does
		// not count.
		total += proto.Size(r) - 11
	}
	if total > HistoryBytes {
		t.Errorf("the history holds %d encoded bytes in %d records, above the limit of %d", total, len(h), HistoryBytes)
	}
	if len(h) >= applies || len(h) < 3 {
		t.Fatalf("%d records after %d applies of %d bytes: want old ones dropped, recent ones kept", len(h), applies, size)
	}
	oldest := OldestSerial(st)
	if want := st.GetConfig().GetSerial() - uint64(len(h)); oldest != want {
		t.Errorf("oldest serial %d, want %d", oldest, want)
	}
	got, err := ConfigAt(st, oldest)
	if send := got.GetServices()[0].GetHealthCheck().GetSend(); err != nil || len(send) != size || send[0] != letters[oldest] {
		t.Errorf("oldest serial %d not rebuilt (%v): want the send string of %q", oldest, err, letters[oldest])
	}
	_, err = ConfigAt(st, oldest-1)
	wantKind(t, err, KindFailedPrecondition)
}

func TestRollbackConfig(t *testing.T) {
	st, seen := historyFixture(t)
	cur := st.GetConfig().GetSerial()
	trimmed := derive(st)
	trimmed.History = st.GetHistory()[4:]
	tests := []struct {
		name string
		st   *shoalv1.State
		cmd  *shoalv1.Command
		kind ErrorKind // 0: success
		text string
		noop bool
	}{
		{name: "to the first change", st: st, cmd: rollbackCmd(1, 0)},
		{name: "past a delete and a global change", st: st, cmd: rollbackCmd(5, cur)},
		{name: "one back", st: st, cmd: rollbackCmd(cur-1, 0)},
		{name: "to the oldest left", st: trimmed, cmd: rollbackCmd(4, 0)},
		{name: "to the current serial", st: st, cmd: rollbackCmd(cur, 0), noop: true},
		{name: "expected serial differs", st: st, cmd: rollbackCmd(1, cur-1), kind: KindFailedPrecondition, text: "expected serial"},
		{name: "beyond the oldest", st: trimmed, cmd: rollbackCmd(3, 0), kind: KindFailedPrecondition, text: "reaches back to serial 4"},
		{name: "future", st: st, cmd: rollbackCmd(cur+1, 0), kind: KindNotFound},
		// rolled_back_to 0 means "not a rollback", and a request that
		// forgot the serial must not empty the configuration.
		{name: "serial zero", st: st, cmd: rollbackCmd(0, 0), kind: KindInvalid, text: "serial"},
		{name: "serial zero beyond the oldest", st: trimmed, cmd: rollbackCmd(0, 0), kind: KindInvalid, text: "serial"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Apply(tt.st, tt.cmd)
			if tt.kind != 0 {
				wantKind(t, err, tt.kind, tt.text)
				if e := (*Error)(nil); errors.As(err, &e) && e.Kind == KindInvalid && (len(e.Fields) != 1 || e.Fields[0].Field != "serial") {
					t.Errorf("fields %v, want serial", e.Fields)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.noop {
				if res.State != tt.st || len(res.Changes) != 0 {
					t.Errorf("rollback to the current serial changed the state: %d changes", len(res.Changes))
				}
				return
			}
			target := tt.cmd.GetRollbackConfig().GetSerial()
			got := proto.Clone(res.State.GetConfig()).(*shoalv1.Config)
			if got.Serial != cur+1 {
				t.Errorf("serial %d, want %d", got.Serial, cur+1)
			}
			got.Serial = target
			if !proto.Equal(got, seen[target]) {
				t.Errorf("rolled back to\n%v\nwant\n%v", got, seen[target])
			}
			if !proto.Equal(tt.st.GetConfig(), seen[cur]) {
				t.Error("the rollback changed the state it was given")
			}
			h := res.State.GetHistory()
			e := h[len(h)-1].GetEntry()
			if e.GetRolledBackTo() != target || e.GetSerial() != cur+1 || len(e.GetChanges()) == 0 || e.GetMethod() != "rollback_config" {
				t.Errorf("entry %v", e)
			}
			if want := config.Diff(tt.st.GetConfig(), res.State.GetConfig()); !proto.Equal(&shoalv1.HistoryEntry{Changes: want}, &shoalv1.HistoryEntry{Changes: res.Changes}) {
				t.Errorf("changes %v, want %v", res.Changes, want)
			}
			// The rollback is a change like any other: it can be undone.
			back, err := ConfigAt(res.State, cur)
			if err != nil || !proto.Equal(back, seen[cur]) {
				t.Errorf("serial %d after the rollback: %v, %v", cur, back, err)
			}
		})
	}
}

// part is the slice of c a history entry shows: the global settings when
// global is set, and the named services that exist in c.
func part(c *shoalv1.Config, global bool, names ...string) *shoalv1.Config {
	p := &shoalv1.Config{Serial: c.GetSerial()}
	if global {
		p.Global = c.GetGlobal()
	}
	for _, s := range c.GetServices() {
		for _, n := range names {
			if s.GetName() == n {
				p.Services = append(p.Services, s)
			}
		}
	}
	return p
}

func TestHistoryEntryBeforeAfter(t *testing.T) {
	base := applied(t, EmptyState(), createCmd(svc("web", "192.0.2.10", 80, "10.0.0.1"))).State
	base = applied(t, base, createCmd(svc("dns", "192.0.2.53", 53))).State
	tests := []struct {
		name    string
		cmd     *shoalv1.Command
		global  bool
		touched []string
	}{
		{"update one service", updateCmd(&shoalv1.VirtualService{Name: "web", Scheduler: "rr"}, "scheduler"), false, []string{"web"}},
		{"real server of one service", rsWeightCmd("web", "10.0.0.1", 4), false, []string{"web"}},
		{"global only", withGlobal(base, func(g *shoalv1.Global) { g.GarpCount = 3 }), true, nil},
		{"create", createCmd(svc("api", "192.0.2.20", 443)), false, []string{"api"}},
		{"delete", deleteCmd("dns"), false, []string{"dns"}},
		{"apply touching a service and the global settings", applyConfigCmd(&shoalv1.Config{
			Global:   &shoalv1.Global{GarpCount: 4},
			Services: []*shoalv1.VirtualService{svc("web", "192.0.2.10", 81, "10.0.0.1"), svc("dns", "192.0.2.53", 53)},
		}), true, []string{"web"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := applied(t, base, tt.cmd)
			serial := res.State.GetConfig().GetSerial()
			e, before, after, err := HistoryEntry(res.State, serial)
			if err != nil {
				t.Fatal(err)
			}
			h := res.State.GetHistory()
			if e != h[len(h)-1].GetEntry() || e.GetSerial() != serial {
				t.Errorf("entry %v is not the last record's", e)
			}
			if want := part(base.GetConfig(), tt.global, tt.touched...); !proto.Equal(before, want) {
				t.Errorf("before\n%v\nwant\n%v", before, want)
			}
			if want := part(res.State.GetConfig(), tt.global, tt.touched...); !proto.Equal(after, want) {
				t.Errorf("after\n%v\nwant\n%v", after, want)
			}
		})
	}
	for _, serial := range []uint64{0, 3} {
		_, _, _, err := HistoryEntry(base, serial)
		wantKind(t, err, KindNotFound, "holds 1 to 2")
	}
}

// richState has every part of State: history, members, join tokens and a CA.
func richState(t testing.TB) (*shoalv1.State, map[uint64]*shoalv1.Config) {
	t.Helper()
	st, seen := historyFixture(t)
	for _, cmd := range []*shoalv1.Command{
		{Op: &shoalv1.Command_RegisterMember{RegisterMember: &shoalv1.RegisterMember{Id: "n1", ApiAddress: "127.0.0.1:7070"}}},
		audited(&shoalv1.Command{Op: &shoalv1.Command_CreateJoinToken{CreateJoinToken: joinToken("t1", 100)}}, auditOf("alice", "admin", "CreateJoinToken", 1)),
		audited(&shoalv1.Command{Op: &shoalv1.Command_CreateJoinToken{CreateJoinToken: joinToken("t2", 200)}}, auditOf("alice", "admin", "CreateJoinToken", 2)),
		{Op: &shoalv1.Command_InstallCa{InstallCa: &shoalv1.ClusterCA{Certificate: []byte("cert"), Key: []byte("key")}}},
	} {
		st = applied(t, st, cmd).State
	}
	return st, seen
}

func TestSnapshotKeepsHistoryTokensAndCA(t *testing.T) {
	st, seen := richState(t)
	b, err := marshalSnapshot(st, 42)
	if err != nil {
		t.Fatal(err)
	}
	got, applied, err := readSnapshot(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if applied != 42 || !proto.Equal(got, st) {
		t.Fatalf("restored index %d, state\n%v\nwant\n%v", applied, got, st)
	}
	if len(got.GetHistory()) == 0 || len(got.GetJoinTokens()) != 2 || got.GetCa() == nil {
		t.Errorf("restored state lacks history, tokens or CA: %v", got)
	}
	for serial, want := range seen {
		if c, err := ConfigAt(got, serial); err != nil || !proto.Equal(c, want) {
			t.Errorf("serial %d from the restored history: %v, %v", serial, c, err)
		}
	}
	again, err := marshalSnapshot(got, 42)
	if err != nil || string(again) != string(b) {
		t.Errorf("the restored state marshals differently (%v)", err)
	}
}

// TestApplyNeverMutates runs every kind of command, accepted or not, in
// sequence, and checks that no state along the way changed: each result
// shares parts with the state before it, so a mutation would show up in an
// earlier one.
func TestApplyNeverMutates(t *testing.T) {
	st, _ := richState(t)
	cur := st.GetConfig().GetSerial()
	cmds := []*shoalv1.Command{
		createCmd(svc("ftp", "192.0.2.21", 21, "10.0.3.1")),
		updateCmd(&shoalv1.VirtualService{Name: "dns", Scheduler: "sh"}, "scheduler"),
		rsWeightCmd("dns", "10.0.1.1", 9),
		{Op: &shoalv1.Command_AddRealServer{AddRealServer: &shoalv1.AddRealServerRequest{Service: "dns", RealServer: &shoalv1.RealServer{Address: "10.0.1.2"}}}},
		{Op: &shoalv1.Command_RemoveRealServer{RemoveRealServer: &shoalv1.RemoveRealServerRequest{Service: "dns", Address: "10.0.1.1"}}},
		withGlobal(st, func(g *shoalv1.Global) { g.GarpCount = 11 }),
		rollbackCmd(3, 0),
		rollbackCmd(cur, 0),
		rollbackCmd(1, 1),
		deleteCmd("dns"),
		deleteCmd("nope"),
		applyConfigCmd(&shoalv1.Config{Services: []*shoalv1.VirtualService{svc("web", "192.0.2.10", 80)}}),
		{Op: &shoalv1.Command_RegisterMember{RegisterMember: &shoalv1.RegisterMember{Id: "n0", ApiAddress: "127.0.0.1:7071"}}},
		{Op: &shoalv1.Command_UnregisterMember{UnregisterMember: &shoalv1.UnregisterMember{Id: "n1"}}},
		audited(&shoalv1.Command{Op: &shoalv1.Command_CreateJoinToken{CreateJoinToken: joinToken("t3", 300)}}, auditOf("a", "admin", "CreateJoinToken", 150)),
		{Op: &shoalv1.Command_CreateJoinToken{CreateJoinToken: joinToken("t3", 300)}},
		{Op: &shoalv1.Command_DeleteJoinToken{DeleteJoinToken: &shoalv1.DeleteJoinTokenRequest{Id: "t2"}}},
		{Op: &shoalv1.Command_InstallCa{InstallCa: &shoalv1.ClusterCA{Certificate: []byte("cert"), Key: []byte("key")}}},
		{Op: &shoalv1.Command_InstallCa{InstallCa: &shoalv1.ClusterCA{Certificate: []byte("other"), Key: []byte("key")}}},
		{},
	}
	type kept struct{ st, copy *shoalv1.State }
	var states []kept
	for _, cmd := range cmds {
		states = append(states, kept{st, proto.Clone(st).(*shoalv1.State)})
		before := proto.Clone(cmd)
		res, err := Apply(st, cmd)
		if !proto.Equal(cmd, before) {
			t.Errorf("Apply changed the command %v", cmd)
		}
		if err == nil {
			st = res.State
		}
	}
	for i, k := range states {
		if !proto.Equal(k.st, k.copy) {
			t.Errorf("the state before command %d (%v) was changed later", i, cmds[i])
		}
	}
}

// populate sets every field of m, so that a test over it covers fields
// added after the test was written.
func populate(m protoreflect.Message) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			l.Append(l.NewElement())
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			mp.Set(fd.MapKey().Default().MapKey(), mp.NewValue())
		case fd.Message() != nil:
			m.Mutable(fd)
		case fd.Kind() == protoreflect.BoolKind:
			m.Set(fd, protoreflect.ValueOfBool(true))
		case fd.Kind() == protoreflect.StringKind:
			m.Set(fd, protoreflect.ValueOfString("x"))
		case fd.Kind() == protoreflect.BytesKind:
			m.Set(fd, protoreflect.ValueOfBytes([]byte{1}))
		case fd.Kind() == protoreflect.EnumKind:
			m.Set(fd, protoreflect.ValueOfEnum(1))
		default:
			// Every remaining kind is a number; 1 in its own type.
			m.Set(fd, numberOne(fd.Kind()))
		}
	}
}

func numberOne(k protoreflect.Kind) protoreflect.Value {
	switch k {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(1)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(1)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(1)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(1)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(1)
	}
	return protoreflect.ValueOfFloat64(1)
}

// TestDeriveCopiesEveryField: derive builds the next State field by field
// rather than cloning it; a field it forgets is silently dropped by every
// command, so this test sets them all, including ones added after it.
func TestDeriveCopiesEveryField(t *testing.T) {
	st := &shoalv1.State{}
	populate(st.ProtoReflect())
	got := derive(st).ProtoReflect()
	fields := got.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		if fd := fields.Get(i); !got.Has(fd) {
			t.Errorf("derive drops State.%s", fd.Name())
		}
	}
	if !proto.Equal(got.Interface(), st) {
		t.Errorf("derive(st) = %v, want %v", got, st)
	}
}

// TestHistoryKeepsTheFirstChanges: a change of more than HistoryChanges
// changes keeps the first of them in its history entry and none in its
// request id's record (a whole table's apply held 110,000 for an hour);
// GetHistoryEntry and a replay rebuild every one, and a replay the
// history no longer reaches answers with the summary.
func TestHistoryKeepsTheFirstChanges(t *testing.T) {
	table := &shoalv1.Config{}
	for i := range 150 {
		s := svc(fmt.Sprintf("svc-%03d", i), fmt.Sprintf("192.0.2.%d", i+1), 80)
		for j := range 10 {
			s.RealServers = append(s.RealServers, &shoalv1.RealServer{Address: fmt.Sprintf("10.1.%d.%d", i, j+1)})
		}
		table.Services = append(table.Services, s)
	}
	apply := withID(&shoalv1.Command{Op: &shoalv1.Command_ApplyConfig{ApplyConfig: &shoalv1.ApplyConfigRequest{Config: table}}}, "big", 1)
	first := applied(t, EmptyState(), apply)
	if len(first.Changes) != 1650 {
		t.Fatalf("%d changes, want 1,650", len(first.Changes))
	}
	st := first.State
	entry := st.GetHistory()[len(st.GetHistory())-1].GetEntry()
	if len(entry.GetChanges()) != HistoryChanges || entry.GetChangesOmitted() != 650 || !equalChanges(entry.GetChanges(), first.Changes[:HistoryChanges]) {
		t.Fatalf("history entry keeps %d changes, %d omitted; want the first %d and 650", len(entry.GetChanges()), entry.GetChangesOmitted(), HistoryChanges)
	}
	if r := appliedRequests(st); len(r) != 1 || r[0].GetChanges() != nil || r[0].GetChangesOmitted() != 1650 ||
		!proto.Equal(r[0].GetSummary(), &shoalv1.ChangeSummary{ServicesAdded: 150, RealServersAdded: 1500}) {
		t.Fatalf("request record %v", r)
	}

	whole, _, _, err := HistoryEntry(st, first.Serial)
	if err != nil || whole.GetChangesOmitted() != 0 || !equalChanges(whole.GetChanges(), first.Changes) {
		t.Fatalf("HistoryEntry: %v, %d changes, %d omitted; want all 1,650", err, len(whole.GetChanges()), whole.GetChangesOmitted())
	}
	if len(entry.GetChanges()) != HistoryChanges {
		t.Fatal("HistoryEntry changed the state's entry")
	}
	again := applied(t, st, apply)
	if !again.Replayed || again.Summary != nil || !equalChanges(again.Changes, first.Changes) {
		t.Fatalf("replay: replayed %v, summary %v, %d changes; want the first outcome's 1,650", again.Replayed, again.Summary, len(again.Changes))
	}

	// HistoryLimit writes later the history no longer reaches it.
	for i := range HistoryLimit {
		st = applied(t, st, rsWeightCmd("svc-000", "10.1.0.1", uint32(i%5))).State
	}
	late := applied(t, st, apply)
	if !late.Replayed || late.Serial != first.Serial || late.Changes != nil ||
		!proto.Equal(late.Summary, &shoalv1.ChangeSummary{ServicesAdded: 150, RealServersAdded: 1500}) {
		t.Fatalf("late replay: replayed %v serial %d, %d changes, summary %v", late.Replayed, late.Serial, len(late.Changes), late.Summary)
	}
}
