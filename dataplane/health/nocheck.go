package health

import (
	"net/netip"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// reasonNoCheck is the reason status gives for a server that is up because
// its check is kind none.
const reasonNoCheck = "no health check"

// svcServers is what Healthy and Status need of an active service beyond
// its servers with checks: its port, to answer a question about port 0, and
// its real servers without a check to run.
//
// A server whose check is kind none (the only kind validation refuses
// beside others) is always up and never checked, so it gets no server,
// checker, tracker or probe, nothing on the schedule and no
// shoal_health_up series: at 100,000 such servers those cost 136 MB of
// heap, for a verdict that cannot change. What is left is its address and
// since, 40 bytes, in its service's sorted list.
type svcServers struct {
	port    uint32
	noCheck []noCheckServer // sorted by address and port
}

// noCheckServer is a real server without a check to run.
type noCheckServer struct {
	addr netip.AddrPort
	// since is when it came up, in Unix nanoseconds: a time.Time is three
	// times the size, and the status only shows the instant.
	since int64
}

// find returns the server without checks at ap, or nil.
func (ss *svcServers) find(ap netip.AddrPort) *noCheckServer {
	if ss == nil {
		return nil
	}
	i, ok := slices.BinarySearchFunc(ss.noCheck, ap, func(nc noCheckServer, ap netip.AddrPort) int { return nc.addr.Compare(ap) })
	if !ok {
		return nil
	}
	return &ss.noCheck[i]
}

// runsNoCheck says whether checks leave nothing to run: every one (in a
// valid config, the only one) is kind none.
func runsNoCheck(checks []*shoalv1.HealthCheck) bool {
	for _, hc := range checks {
		if hc.GetKind() != KindNone {
			return false
		}
	}
	return true
}

// noCheckLocked makes k, a server of the service whose last state was old
// (nil when new), one without a check to run. One that had checks stops
// them and loses its series; it is up from now on, and a transition is
// reported unless it already was.
func (m *Monitor) noCheckLocked(old *svcServers, k key, now time.Time, n *counts) (nc noCheckServer, newUp bool, ev *event) {
	if prev := old.find(k.addr); prev != nil {
		return *prev, false, nil
	}
	s := m.servers[k]
	if s == nil {
		n.added++
		return noCheckServer{addr: k.addr, since: now.UnixNano()}, true, nil
	}
	for _, c := range s.checkers {
		m.dropLocked(c)
	}
	delete(m.servers, k)
	m.metrics.up.DeleteLabelValues(k.service, k.addr.String())
	n.changed++
	if s.up {
		return noCheckServer{addr: k.addr, since: s.since.UnixNano()}, false, nil
	}
	from := stateString(s.up)
	if s.unchecked {
		from = stateUnchecked
	}
	nc = noCheckServer{addr: k.addr, since: now.UnixNano()}
	return nc, false, &event{k: k, tr: transition{From: from, Up: true, At: now, Reason: reasonNoCheck}, st: m.noCheckStatus(k.service, nc)}
}

// noCheckStatus is the status of a server without a check to run: what a
// kind none check said when it had a tracker of its own.
func (m *Monitor) noCheckStatus(service string, nc noCheckServer) *shoalv1.RealServerHealth {
	return &shoalv1.RealServerHealth{
		Service: service,
		Address: nc.addr.Addr().String(),
		Port:    uint32(nc.addr.Port()),
		State:   StateUp,
		Since:   timestamppb.New(time.Unix(0, nc.since)),
		Reason:  reasonNoCheck,
		Node:    m.nodeID,
	}
}
