package server

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func TestScriptChanges(t *testing.T) {
	exec := func(cmd ...string) *shoalv1.HealthCheck { return &shoalv1.HealthCheck{Kind: "exec", Command: cmd} }
	base := &shoalv1.Config{
		Global: &shoalv1.Global{Hooks: []*shoalv1.Hook{{Events: []string{"leader"}, Command: []string{"/s/up"}}}},
		Services: []*shoalv1.VirtualService{
			{Name: "web", Port: 80, HealthCheck: exec("/s/check", "%h")},
			{Name: "db", Port: 5432, RealServers: []*shoalv1.RealServer{
				{Address: "10.0.0.1", HealthChecks: []*shoalv1.HealthCheck{{Kind: "tcp"}, exec("/s/pg", "%h")}},
			}},
		},
	}
	for _, tt := range []struct {
		name   string
		change func(c *shoalv1.Config)
		want   []string
	}{
		{"nothing", func(*shoalv1.Config) {}, nil},
		{"other fields of a service with one", func(c *shoalv1.Config) {
			c.Services[0].Port = 8080
			c.Services[0].HealthCheck.Interval = nil
			c.Services[0].HealthCheck.Expect = "OK"
		}, nil},
		{"exec check removed", func(c *shoalv1.Config) { c.Services[0].HealthCheck = nil }, nil},
		{"exec check added", func(c *shoalv1.Config) { c.Services[1].HealthCheck = exec("/s/pg") }, []string{"services[db].health_check.command"}},
		{"command changed", func(c *shoalv1.Config) { c.Services[0].HealthCheck.Command[0] = "/bin/sh" }, []string{"services[web].health_check.command"}},
		{"shell turned on", func(c *shoalv1.Config) { c.Services[0].HealthCheck.Shell = true }, []string{"services[web].health_check.command"}},
		{"new service with one", func(c *shoalv1.Config) {
			c.Services = append(c.Services, &shoalv1.VirtualService{Name: "new", HealthCheck: exec("/s/x")})
		}, []string{"services[new].health_check.command"}},
		{"a server's exec check moved in its list", func(c *shoalv1.Config) {
			hc := c.Services[1].RealServers[0].HealthChecks
			hc[0], hc[1] = hc[1], hc[0]
		}, nil},
		{"a server's exec check changed", func(c *shoalv1.Config) {
			c.Services[1].RealServers[0].HealthChecks[1].Command = []string{"/s/pg", "-v"}
		}, []string{"services[db].real_servers[10.0.0.1:5432].health_checks[1].command"}},
		{"a server's exec check added", func(c *shoalv1.Config) {
			c.Services[0].RealServers = []*shoalv1.RealServer{{Address: "10.0.0.2", HealthChecks: []*shoalv1.HealthCheck{exec("/s/check", "%h")}}}
		}, []string{"services[web].real_servers[10.0.0.2:80].health_checks[0].command"}},
		{"hook changed", func(c *shoalv1.Config) { c.Global.Hooks[0].Command = []string{"/s/other"} }, []string{"global.hooks"}},
		{"hook removed", func(c *shoalv1.Config) { c.Global.Hooks = nil }, []string{"global.hooks"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			next := proto.Clone(base).(*shoalv1.Config)
			tt.change(next)
			got := scriptChanges(base, next)
			if len(got) != len(tt.want) || (len(got) > 0 && got[0] != tt.want[0]) {
				t.Fatalf("scriptChanges = %v, want %v", got, tt.want)
			}
			for _, role := range []pki.Role{pki.RoleOperator, pki.RoleViewer} {
				err := scriptAccess(Caller{Name: "bob", Role: role}, base, next)
				if (err != nil) != (len(tt.want) > 0) || (err != nil && status.Code(err) != codes.PermissionDenied) {
					t.Errorf("%s: %v", role, err)
				}
			}
			if err := scriptAccess(Caller{Name: "root", Role: pki.RoleAdmin}, base, next); err != nil {
				t.Errorf("admin: %v", err)
			}
		})
	}
}

// Every method that can carry an exec check or a hook needs admin by its
// own rule too; the operator's one write (UpdateRealServer) is limited to
// weight and active.
func TestScriptCarryingMethodsNeedAdmin(t *testing.T) {
	for _, m := range []string{
		shoalv1.ConfigService_ApplyConfig_FullMethodName,
		shoalv1.ConfigService_RollbackConfig_FullMethodName,
		shoalv1.LoadBalancerService_CreateVirtualService_FullMethodName,
		shoalv1.LoadBalancerService_UpdateVirtualService_FullMethodName,
		shoalv1.LoadBalancerService_AddRealServer_FullMethodName,
	} {
		if r := methodRoles[m]; r.need != pki.RoleAdmin {
			t.Errorf("%s needs %q, want admin", m, r.need)
		}
	}
	err := operatorFields(Caller{Name: "op", Role: pki.RoleOperator}, false, &shoalv1.UpdateRealServerRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("operator UpdateRealServer without a mask: %v", err)
	}
}
