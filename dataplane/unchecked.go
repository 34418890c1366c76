package dataplane

import "net/netip"

// Unchecked is what a Health may also say: that it has no verdict yet on a
// real server, because the server is new or lvsd has just started and its
// first check has not finished (*health.Monitor says so).
//
// The dataplane leaves such a server's destination as the kernel has it:
// not added (a new server goes in on its first passing check), not removed
// (after a restart IPVS still holds what the previous lvsd put there, and
// withdrawing every server until it is checked again would be an outage of
// its own). While a service with a sorry server has no server up and some
// unchecked, whether the sorry server serves is undecided too, and the
// service's destinations are all left as they are. The first verdict
// (HealthChanged) settles each.
type Unchecked interface {
	Unchecked(service string, rs netip.AddrPort) bool
}

// rsUnchecked counts servers left as the kernel has them.
const rsUnchecked realServerState = "unchecked"

func isUnchecked(h Health, service string, rs netip.AddrPort) bool {
	u, ok := h.(Unchecked)
	return ok && u.Unchecked(service, rs)
}
