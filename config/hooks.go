package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Hook events as the configuration spells them.
const (
	EventLeader         = "leader"
	EventFollower       = "follower"
	EventServerUp       = "server-up"
	EventServerDown     = "server-down"
	EventFenceLapse     = "fence-lapse"
	EventReconcileError = "reconcile-error"
	EventShutdown       = "shutdown"
)

// HookEvents are every event a hook may name.
var HookEvents = []string{EventLeader, EventFollower, EventServerUp, EventServerDown, EventFenceLapse, EventReconcileError, EventShutdown}

// Hook limits: a hook's timeout bounds how long it may hold its queue; a
// config's hooks bound how many programs one event can start.
const (
	DefaultHookTimeout = 10 * time.Second
	MaxHookTimeout     = 5 * time.Minute
	MaxHooks           = 32
)

func normalizeHooks(hs []*shoalv1.Hook) {
	for _, h := range hs {
		for i, e := range h.Events {
			h.Events[i] = strings.ToLower(strings.TrimSpace(e))
		}
		h.Service = strings.TrimSpace(h.Service)
		h.RealServer = strings.TrimSpace(h.RealServer)
	}
}

// HookTimeout is h's timeout with the default applied.
func HookTimeout(h *shoalv1.Hook) time.Duration {
	if d := h.GetTimeout().AsDuration(); h.GetTimeout() != nil && d > 0 {
		return d
	}
	return DefaultHookTimeout
}

func (v *validator) hooks(hs []*shoalv1.Hook, services []*shoalv1.VirtualService) {
	if len(hs) > MaxHooks {
		v.add("global.hooks", "%d hooks, at most %d", len(hs), MaxHooks)
	}
	names := map[string]bool{}
	for _, s := range services {
		names[s.GetName()] = true
	}
	for i, h := range hs {
		path := fmt.Sprintf("global.hooks[%d]", i)
		if len(h.Events) == 0 {
			v.add(path+".events", "required: one or more of %s", strings.Join(HookEvents, " "))
		}
		seen := map[string]bool{}
		for j, e := range h.Events {
			f := fmt.Sprintf("%s.events[%d]", path, j)
			v.oneOf(f, "", e, HookEvents)
			if seen[e] {
				v.add(f, "%q named twice", e)
			}
			seen[e] = true
		}
		v.program(path+".command", h.Command)
		if h.Timeout != nil {
			v.positive(path, ".timeout", h.Timeout)
			if d := h.Timeout.AsDuration(); d > MaxHookTimeout {
				v.add(path+".timeout", "%s is above %s", d, MaxHookTimeout)
			}
		}
		serverScoped := seen[EventServerUp] || seen[EventServerDown]
		if h.Service != "" {
			if !names[h.Service] {
				v.add(path+".service", "no service %q", h.Service)
			}
			if !serverScoped {
				v.add(path+".service", "applies to server-up and server-down only")
			}
		}
		if h.RealServer != "" {
			if !realServerRef(h.RealServer) {
				v.add(path+".real_server", "%q is not an address or address:port", h.RealServer)
			}
			if !serverScoped {
				v.add(path+".real_server", "applies to server-up and server-down only")
			}
		}
	}
}

func realServerRef(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	_, err := netip.ParseAddrPort(s)
	return err == nil
}

// program judges a program named without a shell: an absolute, clean path
// (routers look nothing up in PATH) and arguments exec can pass.
func (v *validator) program(field string, argv []string) {
	if len(argv) == 0 || strings.TrimSpace(argv[0]) == "" {
		v.add(field, "required: a program (an absolute path) and its arguments")
		return
	}
	switch p := argv[0]; {
	case !filepath.IsAbs(p):
		v.add(field+"[0]", "%q is not an absolute path; routers run only programs in their script directories (lvsd --script-dir)", p)
	case filepath.Clean(p) != p:
		v.add(field+"[0]", "%q is not a clean path (write %s)", p, filepath.Clean(p))
	}
	for i, a := range argv {
		if strings.ContainsRune(a, 0) {
			v.add(fmt.Sprintf("%s[%d]", field, i), "contains a NUL byte")
		}
	}
}
