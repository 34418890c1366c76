package raftfsm

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
)

// applyWhole is Apply as it was before writes of one service became
// incremental: the whole configuration cloned, normalised, validated and
// diffed. TestIncrementalMatchesWhole holds Apply to its answers.
func applyWhole(st *shoalv1.State, cmd *shoalv1.Command) (*shoalv1.Config, []*shoalv1.Change, error) {
	old := st.GetConfig()
	c := proto.Clone(old).(*shoalv1.Config)
	var one touched
	var err error
	switch op := cmd.GetOp().(type) {
	case *shoalv1.Command_CreateVirtualService:
		one, err = createService(c, op.CreateVirtualService)
	case *shoalv1.Command_UpdateVirtualService:
		one, err = updateService(c, op.UpdateVirtualService)
	case *shoalv1.Command_DeleteVirtualService:
		one, err = deleteService(c, op.DeleteVirtualService)
	case *shoalv1.Command_AddRealServer:
		one, err = addRealServer(c, op.AddRealServer)
	case *shoalv1.Command_UpdateRealServer:
		one, err = updateRealServer(c, op.UpdateRealServer)
	case *shoalv1.Command_RemoveRealServer:
		one, err = removeRealServer(c, op.RemoveRealServer)
	default:
		panic(fmt.Sprintf("applyWhole: %T", op))
	}
	if err != nil {
		return nil, nil, err
	}
	// The service in its place, or appended (Normalize sorts), or gone.
	i := slices.IndexFunc(c.Services, func(s *shoalv1.VirtualService) bool { return s.Name == one.name })
	switch {
	case i >= 0 && one.after != nil:
		c.Services[i] = one.after
	case i >= 0:
		c.Services = slices.Delete(c.Services, i, i+1)
	default:
		c.Services = append(c.Services, one.after)
	}
	config.Normalize(c)
	if err := validate(config.Validate(c)); err != nil {
		return nil, nil, err
	}
	c.Serial = old.Serial
	if proto.Equal(old, c) {
		return old, nil, nil
	}
	c.Serial++
	return c, config.Diff(old, c), nil
}

// TestIncrementalMatchesWhole runs commands of one service, valid and not,
// through Apply and through the whole-configuration path, and wants the
// same configuration, changes and errors (kind, text and field paths, in
// order) from both.
func TestIncrementalMatchesWhole(t *testing.T) {
	svc := func(name, vip string, port, fwmark uint32, reals ...string) *shoalv1.VirtualService {
		s := &shoalv1.VirtualService{Name: name, Port: port, Fwmark: fwmark}
		if vip != "" {
			s.Vip = &shoalv1.Address{Address: vip}
		}
		for _, r := range reals {
			s.RealServers = append(s.RealServers, &shoalv1.RealServer{Address: r})
		}
		return s
	}
	base := &shoalv1.Config{Services: []*shoalv1.VirtualService{
		svc("b-web", "192.0.2.10", 80, 0, "10.0.0.1", "10.0.0.2"),
		svc("d-dns", "192.0.2.53", 53, 0, "10.0.1.1"),
		svc("f-mark", "", 0, 7, "10.0.2.1"),
		svc("h-v6", "2001:db8::10", 443, 0, "2001:db8:1::1"),
	}}
	base.Services[1].Protocol = "udp"
	// Rules across services and the global settings: a hook names d-dns;
	// j-any and k-any share a VIP announced by bgp.
	base.Global = &shoalv1.Global{
		Hooks: []*shoalv1.Hook{{Events: []string{"server-down"}, Command: []string{"/etc/shoal/scripts/page"}, Service: "d-dns"}},
		Bgp:   &shoalv1.Bgp{LocalAsn: 65000, Peers: []*shoalv1.BgpPeer{{Address: "192.0.2.254", Asn: 65001}}},
	}
	for _, name := range []string{"j-any", "k-any"} {
		s := svc(name, "198.51.100.1", 80, 0, "10.0.3.1")
		if name == "k-any" {
			s.Port = 443
		}
		s.Announce, s.Forward = "bgp", "dr"
		base.Services = append(base.Services, s)
	}
	res, err := Apply(EmptyState(), &shoalv1.Command{Op: &shoalv1.Command_ApplyConfig{ApplyConfig: &shoalv1.ApplyConfigRequest{Config: base}}})
	if err != nil {
		t.Fatal(err)
	}
	st := res.State

	create := func(s *shoalv1.VirtualService) *shoalv1.Command {
		return &shoalv1.Command{Op: &shoalv1.Command_CreateVirtualService{CreateVirtualService: &shoalv1.CreateVirtualServiceRequest{Service: s}}}
	}
	update := func(s *shoalv1.VirtualService, paths ...string) *shoalv1.Command {
		return &shoalv1.Command{Op: &shoalv1.Command_UpdateVirtualService{UpdateVirtualService: &shoalv1.UpdateVirtualServiceRequest{Service: s, UpdateMask: mask(paths...)}}}
	}
	addRS := func(service string, rs *shoalv1.RealServer) *shoalv1.Command {
		return &shoalv1.Command{Op: &shoalv1.Command_AddRealServer{AddRealServer: &shoalv1.AddRealServerRequest{Service: service, RealServer: rs}}}
	}
	updRS := func(service string, rs *shoalv1.RealServer, paths ...string) *shoalv1.Command {
		return &shoalv1.Command{Op: &shoalv1.Command_UpdateRealServer{UpdateRealServer: &shoalv1.UpdateRealServerRequest{Service: service, RealServer: rs, UpdateMask: mask(paths...)}}}
	}
	cmds := map[string]*shoalv1.Command{
		"create first":                create(svc("a-first", "192.0.2.1", 80, 0, "10.0.9.1")),
		"create last":                 create(svc("z-last", "192.0.2.99", 8080, 0)),
		"create middle, untrimmed":    create(svc("  c-mid ", "192.0.2.3", 80, 0, "10.0.9.2")),
		"create same vip:port":        create(svc("a-dup", "192.0.2.10", 80, 0)),
		"create same vip:port after":  create(svc("c-dup", "192.0.2.10", 80, 0)),
		"create same vip, udp":        create(func() *shoalv1.VirtualService { s := svc("c-udp", "192.0.2.10", 80, 0); s.Protocol = "UDP"; return s }()),
		"create same fwmark":          create(svc("a-mark", "", 0, 7)),
		"create same fwmark v6":       create(svc("a-mark6", "2001:db8::7", 0, 7)),
		"create bad name":             create(svc("bad name", "192.0.2.4", 80, 0)),
		"create bad everything":       create(svc("c-bad", "not-an-ip", 0, 0, "10.0.0.1", "10.0.0.1", "2001:db8::1")),
		"create exists":               create(svc("b-web", "192.0.2.4", 80, 0)),
		"update port to collide":      update(&shoalv1.VirtualService{Name: "d-dns", Vip: &shoalv1.Address{Address: "192.0.2.10"}, Protocol: "tcp", Port: 80}, "vip", "protocol", "port"),
		"update scheduler":            update(&shoalv1.VirtualService{Name: "b-web", Scheduler: "rr"}, "scheduler"),
		"update bad scheduler":        update(&shoalv1.VirtualService{Name: "b-web", Scheduler: "nope"}, "scheduler"),
		"update same values":          update(&shoalv1.VirtualService{Name: "b-web", Port: 80}, "port"),
		"update missing":              update(&shoalv1.VirtualService{Name: "x", Port: 80}, "port"),
		"delete":                      {Op: &shoalv1.Command_DeleteVirtualService{DeleteVirtualService: &shoalv1.DeleteVirtualServiceRequest{Name: "d-dns"}}},
		"add real server":             addRS("b-web", &shoalv1.RealServer{Address: "10.0.0.0"}),
		"add real server v6 to v4":    addRS("b-web", &shoalv1.RealServer{Address: "2001:db8::5"}),
		"add real server exists":      addRS("b-web", &shoalv1.RealServer{Address: "10.0.0.1"}),
		"update weight":               updRS("b-web", &shoalv1.RealServer{Address: "10.0.0.2", Weight: proto.Uint32(5)}, "weight"),
		"update weight too high":      updRS("b-web", &shoalv1.RealServer{Address: "10.0.0.2", Weight: proto.Uint32(70000)}, "weight"),
		"update weight unchanged":     updRS("b-web", &shoalv1.RealServer{Address: "10.0.0.2", Weight: proto.Uint32(config.DefaultWeight)}, "weight"),
		"update forward dr port":      updRS("h-v6", &shoalv1.RealServer{Address: "2001:db8:1::1", Forward: "dr"}, "forward"),
		"add unspecified real server": addRS("b-web", &shoalv1.RealServer{Address: "0.0.0.0"}),
		"create loopback vip":         create(svc("c-lo", "127.0.0.5", 80, 0, "10.0.9.9")),
		"remove real server":          {Op: &shoalv1.Command_RemoveRealServer{RemoveRealServer: &shoalv1.RemoveRealServerRequest{Service: "b-web", Address: "10.0.0.1"}}},
		"delete unhooked":             {Op: &shoalv1.Command_DeleteVirtualService{DeleteVirtualService: &shoalv1.DeleteVirtualServiceRequest{Name: "f-mark"}}},
		"create l2 on a bgp VIP":      create(svc("m-l2", "198.51.100.1", 8080, 0)),
		"create bgp with nat": create(func() *shoalv1.VirtualService {
			s := svc("m-nat", "198.51.100.2", 80, 0, "10.0.3.2")
			s.Announce, s.Forward = "bgp", "nat"
			return s
		}()),
		"update announce on a shared VIP": update(&shoalv1.VirtualService{Name: "j-any", Announce: "l2"}, "announce"),
		"update weight, bgp service":      updRS("j-any", &shoalv1.RealServer{Address: "10.0.3.1", Weight: proto.Uint32(3)}, "weight"),
	}
	for name, cmd := range cmds {
		t.Run(name, func(t *testing.T) {
			wantCfg, wantChanges, wantErr := applyWhole(st, cmd)
			res, err := Apply(st, cmd)
			// Judge says what Apply says, without the state after a
			// write of one service, which the FSM builds from it.
			judged, jerr := Judge(st, cmd)
			if fmt.Sprint(jerr) != fmt.Sprint(err) {
				t.Fatalf("Judge: %v; Apply: %v", jerr, err)
			}
			if err == nil {
				if judged.Serial != res.Serial || judged.Service != res.Service || !proto.Equal(judged.After, res.After) ||
					fmt.Sprint(judged.Changes) != fmt.Sprint(res.Changes) || (judged.State == nil) != (judged.one != nil) {
					t.Errorf("Judge %+v, Apply %+v", judged, res)
				}
				if judged.one != nil && !proto.Equal(judged.one.finish().State, res.State) {
					t.Error("the state built from Judge's outcome is not Apply's")
				}
			}
			if (err == nil) != (wantErr == nil) {
				t.Fatalf("Apply: %v; whole: %v", err, wantErr)
			}
			if err != nil {
				var got, want *Error
				if !errors.As(err, &got) || !errors.As(wantErr, &want) {
					t.Fatalf("errors not *Error: %v, %v", err, wantErr)
				}
				if got.Kind != want.Kind || got.Reason != want.Reason || fmt.Sprint(got.Fields) != fmt.Sprint(want.Fields) {
					t.Errorf("Apply refused with\n  %v %q %v\nwhole with\n  %v %q %v", got.Kind, got.Reason, got.Fields, want.Kind, want.Reason, want.Fields)
				}
				return
			}
			if !proto.Equal(res.State.GetConfig(), wantCfg) {
				t.Errorf("config:\n  %v\nwhole:\n  %v", res.State.GetConfig(), wantCfg)
			}
			if len(res.Changes) != len(wantChanges) {
				t.Fatalf("changes %v, whole %v", res.Changes, wantChanges)
			}
			for i := range res.Changes {
				if !proto.Equal(res.Changes[i], wantChanges[i]) {
					t.Errorf("change %d: %v, whole %v", i, res.Changes[i], wantChanges[i])
				}
			}
			// The history's undo part is what the walk over both lists
			// makes, and the API's address rules judge the one service
			// as they would the whole configuration.
			if n := len(res.State.GetHistory()); wantChanges != nil {
				got := proto.Clone(res.State.GetHistory()[n-1]).(*shoalv1.HistoryRecord)
				got.Entry, got.UndoBytes = nil, 0
				if want := undoRecord(st.GetConfig(), res.State.GetConfig()); !proto.Equal(got, want) {
					t.Errorf("history record %v, walk %v", got, want)
				}
			}
			if res.Service != "" {
				whole := config.Admit(st.GetConfig(), res.State.GetConfig())
				one := config.AdmitService(st.GetConfig(), res.After)
				if fmt.Sprint(whole) != fmt.Sprint(one) {
					t.Errorf("AdmitService %v, Admit %v", one, whole)
				}
			}
			// The command left the state it applied to alone.
			if !proto.Equal(st.GetConfig(), res.State.GetConfig()) && proto.Equal(st.GetConfig(), wantCfg) {
				t.Error("the input state was modified")
			}
		})
	}
	// Nothing above modified the shared state.
	again, err := Apply(EmptyState(), &shoalv1.Command{Op: &shoalv1.Command_ApplyConfig{ApplyConfig: &shoalv1.ApplyConfigRequest{Config: base}}})
	if err != nil || !proto.Equal(again.State.GetConfig(), st.GetConfig()) {
		t.Errorf("the base state changed under the commands: %v", err)
	}
}

// TestServiceAtMatchesConfigAt rebuilds each service at each serial of a
// run of writes both ways.
func TestServiceAtMatchesConfigAt(t *testing.T) {
	st := EmptyState()
	names := []string{"a", "b", "c"}
	step := func(cmd *shoalv1.Command) {
		res, err := Apply(st, cmd)
		if err != nil {
			t.Fatal(err)
		}
		st = res.State
	}
	for i, n := range names {
		step(createCmd(svc(n, fmt.Sprintf("192.0.2.%d", i+1), 80)))
	}
	step(&shoalv1.Command{Op: &shoalv1.Command_UpdateVirtualService{UpdateVirtualService: &shoalv1.UpdateVirtualServiceRequest{
		Service: &shoalv1.VirtualService{Name: "b", Scheduler: "rr"}, UpdateMask: mask("scheduler")}}})
	step(&shoalv1.Command{Op: &shoalv1.Command_DeleteVirtualService{DeleteVirtualService: &shoalv1.DeleteVirtualServiceRequest{Name: "a"}}})
	step(createCmd(svc("a", "192.0.2.9", 81)))
	for serial := OldestSerial(st); serial <= st.GetConfig().GetSerial()+1; serial++ {
		c, cerr := ConfigAt(st, serial)
		for _, n := range append(names, "zz") {
			got, err := ServiceAt(st, serial, n)
			if (err == nil) != (cerr == nil) {
				t.Fatalf("serial %d: ServiceAt error %v, ConfigAt %v", serial, err, cerr)
			}
			if err != nil {
				continue
			}
			var want *shoalv1.VirtualService
			if i, ok := searchService(c.GetServices(), n); ok {
				want = c.Services[i]
			}
			if !proto.Equal(got, want) {
				t.Errorf("serial %d %s: %v, ConfigAt has %v", serial, n, got, want)
			}
		}
	}
}

// TestFSMTakesJudgedOutcome: the FSM takes an outcome judged for the very
// entry and state it applies, and computes afresh when the state moved or
// the entry is another copy of the same bytes (a follower's, or one read
// back from the log).
func TestFSMTakesJudgedOutcome(t *testing.T) {
	cmds := []*shoalv1.Command{createCmd(svc("web", "192.0.2.10", 80)), createCmd(svc("dns", "192.0.2.53", 53))}
	logs := logOf(t, cmds...)

	f := NewFSM()
	base := f.State()
	want, err := Apply(base, cmds[0])
	if err != nil {
		t.Fatal(err)
	}
	forget := f.expect(logs[0].Data, base, want)
	if got := f.Apply(logs[0]); got != want {
		t.Fatalf("FSM computed %v, want the judged outcome itself", got)
	}
	forget()
	if f.State() != want.State {
		t.Fatal("FSM state is not the judged outcome's")
	}

	// Judged against a state that is no longer the FSM's: recomputed.
	stale := &Result{State: EmptyState()}
	forget = f.expect(logs[1].Data, base, stale)
	if got := f.Apply(logs[1]); got == stale {
		t.Fatal("FSM took an outcome judged against another state")
	}
	forget()
	if len(f.State().GetConfig().GetServices()) != 2 {
		t.Fatalf("services %v, want web and dns", f.State().GetConfig().GetServices())
	}

	// A write of one service judged without the state after it: the FSM
	// builds that state, the one Apply makes.
	h := NewFSM()
	h.Apply(logs[0])
	upd := &shoalv1.Command{RequestId: "r1", Op: &shoalv1.Command_UpdateVirtualService{UpdateVirtualService: &shoalv1.UpdateVirtualServiceRequest{
		Service: &shoalv1.VirtualService{Name: "web", Scheduler: "rr"}, UpdateMask: mask("scheduler")}}}
	judged, err := Judge(h.State(), upd)
	if err != nil || judged.State != nil {
		t.Fatalf("Judge: %v, state %v; want a judgement without the state", err, judged.State)
	}
	want, err = Apply(h.State(), upd)
	if err != nil {
		t.Fatal(err)
	}
	entry := logOf(t, cmds[0], upd)[1]
	forget = h.expect(entry.Data, h.State(), judged)
	got, ok := h.Apply(entry).(*Result)
	forget()
	if !ok || got.Serial != want.Serial || !proto.Equal(got.State, want.State) {
		t.Fatalf("FSM built %v, Apply %v", got, want)
	}
	if i, _ := searchService(got.State.GetConfig().GetServices(), "web"); got.State.GetConfig().GetServices()[i] != judged.After {
		t.Error("FSM computed the write again instead of taking the judged service")
	}

	// The same bytes in another slice are another entry.
	g := NewFSM()
	forget = g.expect(logs[0].Data, g.State(), stale)
	copied := *logs[0]
	copied.Data = append([]byte(nil), logs[0].Data...)
	if got := g.Apply(&copied); got == stale {
		t.Fatal("FSM took an outcome judged for another entry")
	}
	forget()
	if len(g.judged) != 0 {
		t.Errorf("%d judged outcomes left after forgetting", len(g.judged))
	}
}

// TestFSMTakesJudgementOverOtherWrites: the leader's FSM takes a write's
// judgement after other writes applied only when they left alone what
// the judgement read, and otherwise computes it; either way the outcome
// is Apply's on the state it applies to.
func TestFSMTakesJudgementOverOtherWrites(t *testing.T) {
	weight := func(service, addr string, w uint32) *shoalv1.Command {
		return &shoalv1.Command{Op: &shoalv1.Command_UpdateRealServer{UpdateRealServer: &shoalv1.UpdateRealServerRequest{
			Service: service, RealServer: &shoalv1.RealServer{Address: addr, Weight: proto.Uint32(w)}, UpdateMask: mask("weight")}}}
	}
	withID := func(id string, c *shoalv1.Command) *shoalv1.Command { c.RequestId = id; return c }
	withSerial := func(serial uint64, c *shoalv1.Command) *shoalv1.Command {
		c.GetUpdateRealServer().ExpectedSerial = serial
		return c
	}
	setup := []*shoalv1.Command{
		createCmd(svc("web", "192.0.2.10", 80, "10.0.0.1", "10.0.0.2")),
		createCmd(svc("dns", "192.0.2.53", 53, "10.0.1.1")),
	}
	global := &shoalv1.Command{Op: &shoalv1.Command_ApplyConfig{ApplyConfig: &shoalv1.ApplyConfigRequest{Config: &shoalv1.Config{
		Global:   &shoalv1.Global{GarpCount: 9},
		Services: []*shoalv1.VirtualService{svc("web", "192.0.2.10", 80, "10.0.0.1", "10.0.0.2"), svc("dns", "192.0.2.53", 53, "10.0.1.1")},
	}}}}
	tests := []struct {
		name       string
		judged     *shoalv1.Command // judged on the state after setup
		other      *shoalv1.Command // applied before it
		wantTaken  bool
		wantReplay bool
	}{
		{"another service's write", weight("web", "10.0.0.1", 5), weight("dns", "10.0.1.1", 7), true, false},
		{"with a request id", withID("a", weight("web", "10.0.0.1", 5)), withID("b", weight("dns", "10.0.1.1", 7)), true, false},
		{"the same service", weight("web", "10.0.0.1", 5), weight("web", "10.0.0.2", 7), false, false},
		{"an expected serial", withSerial(2, weight("web", "10.0.0.1", 5)), weight("dns", "10.0.1.1", 7), false, false},
		{"its request id applied meanwhile", withID("r", weight("web", "10.0.0.1", 5)), withID("r", weight("dns", "10.0.1.1", 7)), false, true},
		{"global settings changed", weight("web", "10.0.0.1", 5), global, false, false},
		{"new keys", &shoalv1.Command{Op: &shoalv1.Command_UpdateVirtualService{UpdateVirtualService: &shoalv1.UpdateVirtualServiceRequest{
			Service: &shoalv1.VirtualService{Name: "web", Port: 8080}, UpdateMask: mask("port")}}}, weight("dns", "10.0.1.1", 7), false, false},
		{"a new service", createCmd(svc("ftp", "192.0.2.21", 21, "10.0.2.1")), weight("dns", "10.0.1.1", 7), false, false},
		{"its service deleted meanwhile", weight("web", "10.0.0.1", 5),
			&shoalv1.Command{Op: &shoalv1.Command_DeleteVirtualService{DeleteVirtualService: &shoalv1.DeleteVirtualServiceRequest{Name: "web"}}}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := logOf(t, append(slices.Clone(setup), tt.other, tt.judged)...)
			f := NewFSM()
			for _, l := range logs[:len(setup)] {
				f.Apply(l)
			}
			base := f.State()
			judged, err := Judge(base, tt.judged)
			if err != nil {
				t.Fatal(err)
			}
			if r, ok := f.Apply(logs[len(setup)]).(*Result); !ok || r.State == base {
				t.Fatalf("the other write did not apply: %v", r)
			}
			moved := f.State()
			want, wantErr := Apply(moved, tt.judged)
			forget := f.expect(logs[len(setup)+1].Data, base, judged)
			got := f.Apply(logs[len(setup)+1])
			forget()
			if wantErr != nil {
				if err, ok := got.(error); !ok || err.Error() != wantErr.Error() {
					t.Fatalf("FSM answered %v, Apply %v", got, wantErr)
				}
				return
			}
			res, ok := got.(*Result)
			if !ok {
				t.Fatalf("FSM answered %v, Apply %v", got, want)
			}
			if res.Serial != want.Serial || res.Replayed != want.Replayed || res.Replayed != tt.wantReplay ||
				fmt.Sprint(res.Changes) != fmt.Sprint(want.Changes) || !proto.Equal(res.State, want.State) {
				t.Fatalf("FSM answered %+v\nApply %+v", res, want)
			}
			taken := false
			if i, ok := searchService(res.State.GetConfig().GetServices(), judged.Service); ok {
				taken = res.State.GetConfig().GetServices()[i] == judged.After
			}
			if taken != tt.wantTaken {
				t.Errorf("judgement taken: %v, want %v", taken, tt.wantTaken)
			}
		})
	}
}
