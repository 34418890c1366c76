package server

import (
	"fmt"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

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
// adds or changes relative to prev.
func scriptChanges(prev, next *shoalv1.Config) []string {
	var out []string
	if !slices.EqualFunc(prev.GetGlobal().GetHooks(), next.GetGlobal().GetHooks(), func(a, b *shoalv1.Hook) bool { return proto.Equal(a, b) }) {
		out = append(out, "global.hooks")
	}
	before := map[string]*shoalv1.HealthCheck{}
	for _, s := range prev.GetServices() {
		before[s.GetName()] = s.GetHealthCheck()
	}
	for _, s := range next.GetServices() {
		hc := s.GetHealthCheck()
		if hc.GetKind() != "exec" {
			continue
		}
		old, ok := before[s.GetName()]
		if !ok || old.GetKind() != "exec" || old.GetShell() != hc.GetShell() || !slices.Equal(old.GetCommand(), hc.GetCommand()) {
			out = append(out, fmt.Sprintf("services[%s].health_check.command", s.GetName()))
		}
	}
	return out
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
