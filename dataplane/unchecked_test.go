package dataplane

import (
	"net/netip"
	"testing"
)

// verdicts is a Health that also knows servers it has not checked yet, as
// *health.Monitor does: up, down or unchecked per "service addr:port";
// servers it does not list are unchecked.
type verdicts struct {
	fakeHealth
	checked map[string]bool
}

func (v *verdicts) judge(service, rs string, up bool) {
	v.set(service, rs, up)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.checked == nil {
		v.checked = map[string]bool{}
	}
	v.checked[service+" "+rs] = true
}

func (v *verdicts) Healthy(service string, rs netip.AddrPort) bool {
	return !v.Unchecked(service, rs) && v.fakeHealth.Healthy(service, rs)
}

func (v *verdicts) Unchecked(service string, rs netip.AddrPort) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return !v.checked[service+" "+rs.String()]
}

// TestUncheckedLeftAsTheKernelHasThem: after a restart, servers with no
// verdict yet keep the destinations the previous lvsd left, instead of
// being withdrawn until checked again; a new server with no verdict is not
// added; the first verdict settles each.
func TestUncheckedLeftAsTheKernelHasThem(t *testing.T) {
	bothWays(t, func(t *testing.T, r *rig) {
		key := "tcp/192.0.2.10:80"
		c := webConfig()
		r.apply(t, c) // every server up (fakeHealth)
		eq(t, "before the restart", r.dests(t, key), []string{"10.0.0.1:80 nat 00001", "10.0.0.2:80 nat 00002"})
		r.ipvs.Ops()

		// lvsd restarts: the monitor has no verdicts yet.
		v := &verdicts{}
		r.reopenWith(t, ModeIPVS, func(o *Options) { o.Health = v })
		c.Services[0].RealServers = append(c.Services[0].RealServers, rs("10.0.0.3"))
		r.apply(t, c)
		eq(t, "nothing withdrawn, nothing unchecked added", r.ipvs.Ops(), nil)

		v.judge("web", "10.0.0.1:80", true)
		v.judge("web", "10.0.0.2:80", false)
		v.judge("web", "10.0.0.3:80", true)
		r.apply(t, c)
		eq(t, "first verdicts", r.dests(t, key), []string{"10.0.0.1:80 nat 00001", "10.0.0.3:80 nat 00001"})
	})
}

// TestUncheckedSorryServer: with no server up and some unchecked, whether
// the sorry server serves is undecided, and the service is left as it is.
func TestUncheckedSorryServer(t *testing.T) {
	bothWays(t, func(t *testing.T, r *rig) {
		key := "tcp/192.0.2.10:80"
		c := webConfig()
		vs := c.Services[0]
		vs.SorryServer = rs("10.9.9.9")
		vs.Quiesce = true
		r.health.set("web", "10.0.0.1:80", false)
		r.health.set("web", "10.0.0.2:80", false)
		r.apply(t, c)
		eq(t, "all down: sorry server alone", r.dests(t, key), []string{"10.9.9.9:80 nat 00001"})
		r.ipvs.Ops()

		v := &verdicts{}
		r.reopenWith(t, ModeIPVS, func(o *Options) { o.Health = v })
		v.judge("web", "10.0.0.1:80", false)
		r.apply(t, c)
		eq(t, "one down, one unchecked: left alone", r.ipvs.Ops(), nil)

		v.judge("web", "10.0.0.2:80", true)
		r.apply(t, c)
		eq(t, "one up: the sorry server leaves", r.dests(t, key), []string{"10.0.0.1:80 nat 00000", "10.0.0.2:80 nat 00002"})
	})
}
