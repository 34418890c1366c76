package server

import (
	"fmt"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Exec checks and hooks name programs that every router runs. The routers
// bound what runs (their --script-dir, --script-user, package
// dataplane/script), and only an admin may choose among it: a write that
// adds or changes an exec check or a hook needs role admin whatever the
// method's own rule, so that a method opened to operators later cannot
// carry one. Editing other fields of a service that has one is not a
// change of it.

// scriptChanges lists the field paths of exec checks and hooks that next
// adds or changes relative to prev. An exec check is the same one if the
// same service (and real server, for a server's own checks) had one with
// the same program, arguments and shell flag; moving it within a list is
// no change.
func scriptChanges(prev, next *shoalv1.Config) []string {
	var out []string
	if !slices.EqualFunc(prev.GetGlobal().GetHooks(), next.GetGlobal().GetHooks(), func(a, b *shoalv1.Hook) bool { return proto.Equal(a, b) }) {
		out = append(out, "global.hooks")
	}
	before := map[string]bool{}
	execChecks(prev, func(_, owner, program string) { before[owner+"\x00"+program] = true })
	execChecks(next, func(path, owner, program string) {
		if !before[owner+"\x00"+program] {
			out = append(out, path)
		}
	})
	return out
}

// execChecks calls f for every exec check of c with its field path, the
// service or real server it belongs to, and its program as one string.
func execChecks(c *shoalv1.Config, f func(path, owner, program string)) {
	program := func(hc *shoalv1.HealthCheck) string {
		return fmt.Sprintf("%t\x00%q", hc.GetShell(), hc.GetCommand())
	}
	for _, s := range c.GetServices() {
		if hc := s.GetHealthCheck(); hc.GetKind() == "exec" {
			f(fmt.Sprintf("services[%s].health_check.command", s.GetName()), s.GetName(), program(hc))
		}
		for _, rs := range s.GetRealServers() {
			key := config.RealServerKey(s, rs)
			for i, hc := range rs.GetHealthChecks() {
				if hc.GetKind() == "exec" {
					f(fmt.Sprintf("services[%s].real_servers[%s].health_checks[%d].command", s.GetName(), key, i), s.GetName()+"/"+key, program(hc))
				}
			}
		}
	}
}

// scriptAccess refuses a caller below admin a write that adds or changes
// an exec check or a hook.
func scriptAccess(c Caller, prev, next *shoalv1.Config) error {
	if c.Role.Covers(pki.RoleAdmin) {
		return nil
	}
	if changed := scriptChanges(prev, next); len(changed) > 0 {
		return status.Errorf(codes.PermissionDenied, "%s changes programs the routers run (%v), which needs role admin; %s may not", changed[0], changed, c)
	}
	return nil
}
