package raftfsm

import (
	"errors"
	"strings"
	"testing"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

func webService() *shoalv1.VirtualService {
	return &shoalv1.VirtualService{
		Name: "web", Vip: &shoalv1.Address{Address: "192.0.2.10"}, Port: 80,
		RealServers: []*shoalv1.RealServer{{Address: "10.0.0.1"}, {Address: "10.0.0.2", Port: 8080}},
	}
}

// baseState is serial 1 with the web service.
func baseState(t *testing.T) *shoalv1.State {
	t.Helper()
	res, err := Apply(EmptyState(), &shoalv1.Command{Op: &shoalv1.Command_CreateVirtualService{
		CreateVirtualService: &shoalv1.CreateVirtualServiceRequest{Service: webService()}}})
	if err != nil {
		t.Fatal(err)
	}
	return res.State
}

func mask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

func TestApply(t *testing.T) {
	type cmd = shoalv1.Command
	tests := []struct {
		name     string
		cmd      *cmd
		kind     ErrorKind // 0: success
		errText  string    // fragment of the error
		serial   uint64    // expected serial after success
		check    func(t *testing.T, st *shoalv1.State)
		nChanges int
	}{
		{name: "no op", cmd: &cmd{}, kind: KindInvalid},
		{
			name: "create", cmd: &cmd{Op: &shoalv1.Command_CreateVirtualService{CreateVirtualService: &shoalv1.CreateVirtualServiceRequest{
				Service: &shoalv1.VirtualService{Name: "dns", Vip: &shoalv1.Address{Address: "192.0.2.53"}, Port: 53, Protocol: "udp"}, ExpectedSerial: 1}}},
			serial: 2, nChanges: 1,
			check: func(t *testing.T, st *shoalv1.State) {
				if s := st.Config.Services; len(s) != 2 || s[0].Name != "dns" || s[0].Scheduler != "wlc" {
					t.Errorf("services not sorted or not normalised: %v", s)
				}
			},
		},
		{name: "create exists", cmd: &cmd{Op: &shoalv1.Command_CreateVirtualService{CreateVirtualService: &shoalv1.CreateVirtualServiceRequest{Service: webService()}}}, kind: KindAlreadyExists},
		{name: "create stale serial", cmd: &cmd{Op: &shoalv1.Command_CreateVirtualService{CreateVirtualService: &shoalv1.CreateVirtualServiceRequest{
			Service: &shoalv1.VirtualService{Name: "x"}, ExpectedSerial: 7}}}, kind: KindFailedPrecondition, errText: "expected serial 7"},
		{name: "create invalid", cmd: &cmd{Op: &shoalv1.Command_CreateVirtualService{CreateVirtualService: &shoalv1.CreateVirtualServiceRequest{
			Service: &shoalv1.VirtualService{Name: "x", Port: 99999}}}}, kind: KindInvalid, errText: "services[x].port"},
		{name: "create without service", cmd: &cmd{Op: &shoalv1.Command_CreateVirtualService{CreateVirtualService: &shoalv1.CreateVirtualServiceRequest{}}}, kind: KindInvalid},
		{
			name: "update masked", cmd: &cmd{Op: &shoalv1.Command_UpdateVirtualService{UpdateVirtualService: &shoalv1.UpdateVirtualServiceRequest{
				Service: &shoalv1.VirtualService{Name: "web", Scheduler: "rr", Port: 1}, UpdateMask: mask("scheduler")}}},
			serial: 2, nChanges: 1,
			check: func(t *testing.T, st *shoalv1.State) {
				s := st.Config.Services[0]
				if s.Scheduler != "rr" || s.Port != 80 || len(s.RealServers) != 2 {
					t.Errorf("update touched more than the mask: %v", s)
				}
			},
		},
		{
			name: "update empty mask replaces all but name and real servers", cmd: &cmd{Op: &shoalv1.Command_UpdateVirtualService{UpdateVirtualService: &shoalv1.UpdateVirtualServiceRequest{
				Service: &shoalv1.VirtualService{Name: "web", Vip: &shoalv1.Address{Address: "192.0.2.11"}, Port: 81}}}},
			serial: 2, nChanges: 1,
			check: func(t *testing.T, st *shoalv1.State) {
				s := st.Config.Services[0]
				if s.Vip.Address != "192.0.2.11" || s.Port != 81 || s.Scheduler != "wlc" || len(s.RealServers) != 2 {
					t.Errorf("got %v", s)
				}
			},
		},
		{name: "update unknown mask path", cmd: &cmd{Op: &shoalv1.Command_UpdateVirtualService{UpdateVirtualService: &shoalv1.UpdateVirtualServiceRequest{
			Service: &shoalv1.VirtualService{Name: "web"}, UpdateMask: mask("real_servers")}}}, kind: KindInvalid, errText: "update_mask"},
		{name: "update not found", cmd: &cmd{Op: &shoalv1.Command_UpdateVirtualService{UpdateVirtualService: &shoalv1.UpdateVirtualServiceRequest{
			Service: &shoalv1.VirtualService{Name: "nope"}}}}, kind: KindNotFound},
		{name: "update makes it invalid", cmd: &cmd{Op: &shoalv1.Command_UpdateVirtualService{UpdateVirtualService: &shoalv1.UpdateVirtualServiceRequest{
			Service: &shoalv1.VirtualService{Name: "web", Forward: "dr"}, UpdateMask: mask("forward")}}}, kind: KindInvalid, errText: "dr forwarding cannot change the port"},
		{name: "update no change keeps serial", cmd: &cmd{Op: &shoalv1.Command_UpdateVirtualService{UpdateVirtualService: &shoalv1.UpdateVirtualServiceRequest{
			Service: &shoalv1.VirtualService{Name: "web", Scheduler: "wlc"}, UpdateMask: mask("scheduler")}}}, serial: 1},
		{name: "update stale serial", cmd: &cmd{Op: &shoalv1.Command_UpdateVirtualService{UpdateVirtualService: &shoalv1.UpdateVirtualServiceRequest{
			Service: &shoalv1.VirtualService{Name: "web"}, ExpectedSerial: 2}}}, kind: KindFailedPrecondition},
		{name: "delete", cmd: &cmd{Op: &shoalv1.Command_DeleteVirtualService{DeleteVirtualService: &shoalv1.DeleteVirtualServiceRequest{Name: "web", ExpectedSerial: 1}}},
			serial: 2, nChanges: 1, check: func(t *testing.T, st *shoalv1.State) {
				if len(st.Config.Services) != 0 {
					t.Error("not deleted")
				}
			}},
		{name: "delete not found", cmd: &cmd{Op: &shoalv1.Command_DeleteVirtualService{DeleteVirtualService: &shoalv1.DeleteVirtualServiceRequest{Name: "x"}}}, kind: KindNotFound},
		{name: "delete stale", cmd: &cmd{Op: &shoalv1.Command_DeleteVirtualService{DeleteVirtualService: &shoalv1.DeleteVirtualServiceRequest{Name: "web", ExpectedSerial: 3}}}, kind: KindFailedPrecondition},
		{
			name: "add real server", cmd: &cmd{Op: &shoalv1.Command_AddRealServer{AddRealServer: &shoalv1.AddRealServerRequest{
				Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.0.3", Weight: proto.Uint32(0)}}}},
			serial: 2, nChanges: 1,
			check: func(t *testing.T, st *shoalv1.State) {
				rs := st.Config.Services[0].RealServers
				if len(rs) != 3 || rs[2].Address != "10.0.0.3" || rs[2].GetWeight() != 0 {
					t.Errorf("got %v", rs)
				}
			},
		},
		{name: "add real server exists via service port", cmd: &cmd{Op: &shoalv1.Command_AddRealServer{AddRealServer: &shoalv1.AddRealServerRequest{
			Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.0.1", Port: 80}}}}, kind: KindAlreadyExists},
		{name: "add real server unknown service", cmd: &cmd{Op: &shoalv1.Command_AddRealServer{AddRealServer: &shoalv1.AddRealServerRequest{
			Service: "x", RealServer: &shoalv1.RealServer{Address: "10.0.0.9"}}}}, kind: KindNotFound},
		{name: "add real server bad address", cmd: &cmd{Op: &shoalv1.Command_AddRealServer{AddRealServer: &shoalv1.AddRealServerRequest{
			Service: "web", RealServer: &shoalv1.RealServer{Address: "ten"}}}}, kind: KindInvalid},
		{name: "add real server wrong family", cmd: &cmd{Op: &shoalv1.Command_AddRealServer{AddRealServer: &shoalv1.AddRealServerRequest{
			Service: "web", RealServer: &shoalv1.RealServer{Address: "2001:db8::1"}}}}, kind: KindInvalid, errText: "IPv6 but the VIP"},
		{name: "add real server stale", cmd: &cmd{Op: &shoalv1.Command_AddRealServer{AddRealServer: &shoalv1.AddRealServerRequest{
			Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.0.9"}, ExpectedSerial: 5}}}, kind: KindFailedPrecondition},
		{
			name: "update real server weight only", cmd: &cmd{Op: &shoalv1.Command_UpdateRealServer{UpdateRealServer: &shoalv1.UpdateRealServerRequest{
				Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.0.2", Port: 8080, Weight: proto.Uint32(7), Name: "ignored"}, UpdateMask: mask("weight")}}},
			serial: 2, nChanges: 1,
			check: func(t *testing.T, st *shoalv1.State) {
				rs := st.Config.Services[0].RealServers[1]
				if rs.GetWeight() != 7 || rs.Name != "" {
					t.Errorf("got %v", rs)
				}
			},
		},
		{
			name: "update real server empty mask", cmd: &cmd{Op: &shoalv1.Command_UpdateRealServer{UpdateRealServer: &shoalv1.UpdateRealServerRequest{
				Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.0.1", Active: proto.Bool(false), Name: "a"}}}},
			serial: 2, nChanges: 1,
			check: func(t *testing.T, st *shoalv1.State) {
				rs := st.Config.Services[0].RealServers[0]
				if rs.GetActive() || rs.GetWeight() != 1 || rs.Name != "a" {
					t.Errorf("got %v (weight unset should come back as default 1)", rs)
				}
			},
		},
		{
			name: "update real server thresholds", cmd: &cmd{Op: &shoalv1.Command_UpdateRealServer{UpdateRealServer: &shoalv1.UpdateRealServerRequest{
				Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.0.1", UpperThreshold: 100, LowerThreshold: 75, Weight: proto.Uint32(9)},
				UpdateMask: mask("upper_threshold", "lower_threshold")}}},
			serial: 2, nChanges: 1,
			check: func(t *testing.T, st *shoalv1.State) {
				rs := st.Config.Services[0].RealServers[0]
				if rs.UpperThreshold != 100 || rs.LowerThreshold != 75 || rs.GetWeight() != 1 {
					t.Errorf("got %v", rs)
				}
			},
		},
		{
			name: "update real server checks", cmd: &cmd{Op: &shoalv1.Command_UpdateRealServer{UpdateRealServer: &shoalv1.UpdateRealServerRequest{
				Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.0.1",
					HealthChecks: []*shoalv1.HealthCheck{{Kind: "tcp"}, {Kind: "http", Port: 8081}}},
				UpdateMask: mask("health_checks")}}},
			serial: 2, nChanges: 1,
			check: func(t *testing.T, st *shoalv1.State) {
				hc := st.Config.Services[0].RealServers[0].HealthChecks
				if len(hc) != 2 || hc[1].HttpPath != "/" || hc[1].Fall != 3 {
					t.Errorf("got %v (the checks should be normalised)", hc)
				}
			},
		},
		{name: "update real server lower above upper", cmd: &cmd{Op: &shoalv1.Command_UpdateRealServer{UpdateRealServer: &shoalv1.UpdateRealServerRequest{
			Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.0.1", LowerThreshold: 5}, UpdateMask: mask("lower_threshold")}}},
			kind: KindInvalid, errText: "real_servers[10.0.0.1:80].lower_threshold: 5 needs an upper_threshold"},
		{name: "update real server bad mask", cmd: &cmd{Op: &shoalv1.Command_UpdateRealServer{UpdateRealServer: &shoalv1.UpdateRealServerRequest{
			Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.0.1"}, UpdateMask: mask("port")}}}, kind: KindInvalid, errText: "update_mask"},
		{name: "update real server not found", cmd: &cmd{Op: &shoalv1.Command_UpdateRealServer{UpdateRealServer: &shoalv1.UpdateRealServerRequest{
			Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.0.2"}}}}, kind: KindNotFound, errText: "10.0.0.2:80"},
		{name: "update real server weight too big", cmd: &cmd{Op: &shoalv1.Command_UpdateRealServer{UpdateRealServer: &shoalv1.UpdateRealServerRequest{
			Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.0.1", Weight: proto.Uint32(1 << 17)}, UpdateMask: mask("weight")}}}, kind: KindInvalid},
		{name: "update real server stale", cmd: &cmd{Op: &shoalv1.Command_UpdateRealServer{UpdateRealServer: &shoalv1.UpdateRealServerRequest{
			Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.0.1"}, ExpectedSerial: 9}}}, kind: KindFailedPrecondition},
		{name: "remove real server", cmd: &cmd{Op: &shoalv1.Command_RemoveRealServer{RemoveRealServer: &shoalv1.RemoveRealServerRequest{
			Service: "web", Address: "10.0.0.1"}}}, serial: 2, nChanges: 1,
			check: func(t *testing.T, st *shoalv1.State) {
				if rs := st.Config.Services[0].RealServers; len(rs) != 1 || rs[0].Address != "10.0.0.2" {
					t.Errorf("got %v", rs)
				}
			}},
		{name: "remove real server not found", cmd: &cmd{Op: &shoalv1.Command_RemoveRealServer{RemoveRealServer: &shoalv1.RemoveRealServerRequest{
			Service: "web", Address: "10.0.0.2"}}}, kind: KindNotFound},
		{name: "remove real server unknown service", cmd: &cmd{Op: &shoalv1.Command_RemoveRealServer{RemoveRealServer: &shoalv1.RemoveRealServerRequest{
			Service: "x", Address: "10.0.0.2"}}}, kind: KindNotFound},
		{name: "remove real server stale", cmd: &cmd{Op: &shoalv1.Command_RemoveRealServer{RemoveRealServer: &shoalv1.RemoveRealServerRequest{
			Service: "web", Address: "10.0.0.1", ExpectedSerial: 2}}}, kind: KindFailedPrecondition},
		{name: "apply config", cmd: &cmd{Op: &shoalv1.Command_ApplyConfig{ApplyConfig: &shoalv1.ApplyConfigRequest{
			Config: &shoalv1.Config{Serial: 99, Services: []*shoalv1.VirtualService{{Name: "other", Vip: &shoalv1.Address{Address: "192.0.2.1"}, Port: 25}}}}}},
			serial: 2, nChanges: 2,
			check: func(t *testing.T, st *shoalv1.State) {
				if s := st.Config.Services; len(s) != 1 || s[0].Name != "other" {
					t.Errorf("got %v", s)
				}
			}},
		{name: "apply identical config", cmd: &cmd{Op: &shoalv1.Command_ApplyConfig{ApplyConfig: &shoalv1.ApplyConfigRequest{
			Config: &shoalv1.Config{Serial: 5, Services: []*shoalv1.VirtualService{webService()}}, ExpectedSerial: 1}}}, serial: 1},
		{name: "apply config invalid lists every problem", cmd: &cmd{Op: &shoalv1.Command_ApplyConfig{ApplyConfig: &shoalv1.ApplyConfigRequest{
			Config: &shoalv1.Config{Services: []*shoalv1.VirtualService{{Name: "a", Port: 0}, {Name: "b", Scheduler: "x", Vip: &shoalv1.Address{Address: "192.0.2.1"}, Port: 1}}}}}},
			kind: KindInvalid, errText: "services[a].vip.address: required; services[a].port: 0 is outside 1..65535; services[b].scheduler"},
		{name: "apply config missing", cmd: &cmd{Op: &shoalv1.Command_ApplyConfig{ApplyConfig: &shoalv1.ApplyConfigRequest{}}}, kind: KindInvalid},
		{name: "apply config stale", cmd: &cmd{Op: &shoalv1.Command_ApplyConfig{ApplyConfig: &shoalv1.ApplyConfigRequest{Config: &shoalv1.Config{}, ExpectedSerial: 4}}}, kind: KindFailedPrecondition},
		{name: "register member", cmd: &cmd{Op: &shoalv1.Command_RegisterMember{RegisterMember: &shoalv1.RegisterMember{Id: "a", ApiAddress: "127.0.0.1:7000"}}}, serial: 1,
			check: func(t *testing.T, st *shoalv1.State) {
				if len(st.Members) != 1 {
					t.Errorf("members %v", st.Members)
				}
			}},
		{name: "register member without address", cmd: &cmd{Op: &shoalv1.Command_RegisterMember{RegisterMember: &shoalv1.RegisterMember{Id: "a"}}}, kind: KindInvalid},
		{name: "unregister unknown member is a no-op", cmd: &cmd{Op: &shoalv1.Command_UnregisterMember{UnregisterMember: &shoalv1.UnregisterMember{Id: "zz"}}}, serial: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := baseState(t)
			before := proto.Clone(st)
			cmdBefore := proto.Clone(tt.cmd)
			res, err := Apply(st, tt.cmd)
			if !proto.Equal(st, before) || !proto.Equal(tt.cmd, cmdBefore) {
				t.Fatal("Apply mutated its arguments")
			}
			if tt.kind != 0 {
				var e *Error
				if !errors.As(err, &e) || e.Kind != tt.kind {
					t.Fatalf("got %v (%#v), want kind %v", err, err, tt.kind)
				}
				if !strings.Contains(e.Error(), tt.errText) {
					t.Errorf("error %q does not mention %q", e, tt.errText)
				}
				if e.Kind == KindInvalid && len(e.Fields) == 0 && tt.name != "no op" {
					t.Errorf("invalid without fields: %v", e)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if got := res.State.Config.Serial; got != tt.serial {
				t.Errorf("serial %d, want %d", got, tt.serial)
			}
			if len(res.Changes) != tt.nChanges {
				t.Errorf("%d changes, want %d: %v", len(res.Changes), tt.nChanges, res.Changes)
			}
			if tt.serial == 1 && tt.check == nil && res.State != st {
				t.Error("no-op did not return the same state")
			}
			if err := config.Validate(res.State.Config); err != nil {
				t.Errorf("result invalid: %v", err)
			}
			if tt.check != nil {
				tt.check(t, res.State)
			}
		})
	}
}

func TestApplyMembersSorted(t *testing.T) {
	st := EmptyState()
	for _, id := range []string{"c", "a", "b", "a"} {
		res, err := Apply(st, &shoalv1.Command{Op: &shoalv1.Command_RegisterMember{RegisterMember: &shoalv1.RegisterMember{Id: id, ApiAddress: id + ":1"}}})
		if err != nil {
			t.Fatal(err)
		}
		st = res.State
	}
	res, err := Apply(st, &shoalv1.Command{Op: &shoalv1.Command_UnregisterMember{UnregisterMember: &shoalv1.UnregisterMember{Id: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range res.State.Members {
		ids = append(ids, m.Id)
	}
	if strings.Join(ids, ",") != "a,c" || res.State.Config.Serial != 0 {
		t.Errorf("members %v serial %d", ids, res.State.Config.Serial)
	}
}
