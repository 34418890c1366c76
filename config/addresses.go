package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Admit returns nil or an Errors listing the addresses of c that cannot
// work, each with its field path:
//
//   - a VIP or NAT router address that is unspecified (0.0.0.0, ::),
//     loopback, multicast or broadcast (255.255.255.255, or the broadcast
//     address of its own IPv4 prefix): the leader would raise it on its
//     interface and no client could reach it through IPVS; a link-local
//     one (169.254.0.0/16, fe80::/10) only with its interface named, as it
//     means nothing off its link;
//   - a real or sorry server that is unspecified, multicast or broadcast.
//     A loopback real server stays allowed: it is IPVS's local-node mode;
//   - an exec check (without shell) whose program is not an absolute,
//     clean path: routers run programs only from their script directories
//     (lvsd --script-dir), never from a PATH lookup.
//
// A problem old already has at the same field is not reported again, so a
// configuration committed before these rules existed can still be changed
// elsewhere; old is nil for a configuration that stands alone (an import).
//
// These rules are the API's and the importers', not the Raft state
// machine's: Validate is what the log's entries were judged by, and a rule
// added to it would make an entry committed under the old rules replay
// differently on an upgraded node (its state would diverge from that of a
// node restored from a later snapshot). Admit judges c as Normalize would
// leave it, without changing c.
func Admit(old, c *shoalv1.Config) error {
	if c == nil {
		return nil // Validate says it is missing
	}
	if old != nil && sortedByName(old) && sortedByName(c) {
		if errs := changedAddressProblems(old, c); len(errs) > 0 {
			return errs
		}
		return nil
	}
	errs := addressProblems(c)
	if len(errs) == 0 {
		return nil
	}
	if old != nil {
		had := map[FieldError]bool{}
		for _, e := range addressProblems(old) {
			had[e] = true
		}
		kept := errs[:0]
		for _, e := range errs {
			if !had[e] {
				kept = append(kept, e)
			}
		}
		errs = kept
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// addressProblems applies Admit's rules to every address of c.
func addressProblems(c *shoalv1.Config) Errors {
	c = proto.Clone(c).(*shoalv1.Config)
	Normalize(c)
	v := &validator{}
	v.globalAddresses(c.GetGlobal())
	for i, s := range c.GetServices() {
		if s != nil {
			v.normalServiceAddresses(i, s)
		}
	}
	return v.errs
}

// changedAddressProblems is Admit for two configurations whose services
// are sorted by name, each name once, as every committed one's are: it
// judges only the global settings and services that c does not share
// with old, so that a write of one service costs one service. What it
// returns is what the whole comparison returns, since every field path
// names its service and a shared service has the same problems in both.
func changedAddressProblems(old, c *shoalv1.Config) Errors {
	var errs Errors
	if og, ng := old.GetGlobal(), c.GetGlobal(); og != ng {
		errs = append(errs, newProblems(unitProblems(func(v *validator) { v.globalAddresses(og) }),
			unitProblems(func(v *validator) { v.globalAddresses(ng) }))...)
	}
	os := old.GetServices()
	for i, s := range c.GetServices() {
		for len(os) > 0 && os[0] != s && os[0].GetName() < s.GetName() {
			os = os[1:]
		}
		if len(os) > 0 && os[0] == s {
			os = os[1:]
			continue
		}
		var had Errors
		if len(os) > 0 && os[0].GetName() == s.GetName() {
			o := os[0]
			had = unitProblems(func(v *validator) { v.serviceAddresses(old, i, o) })
		}
		errs = append(errs, newProblems(had, unitProblems(func(v *validator) { v.serviceAddresses(c, i, s) }))...)
	}
	return errs
}

// AdmitService is Admit(old, c) for the c that old becomes when its
// service named after.Name is replaced by after (added when old has no
// such service; nil when it was removed), old sorted by name as every
// committed configuration is, and after as Apply leaves it (normalised):
// it judges that service only, and needs no c.
func AdmitService(old *shoalv1.Config, after *shoalv1.VirtualService) error {
	if after == nil {
		return nil // removed: nothing new to judge
	}
	ss := old.GetServices()
	// Where after is in c: before's place, or where a new one goes.
	i, found := slices.BinarySearchFunc(ss, after.GetName(), func(s *shoalv1.VirtualService, name string) int {
		return strings.Compare(s.GetName(), name)
	})
	var had Errors
	if found {
		had = unitProblems(func(v *validator) { v.normalServiceAddresses(i, ss[i]) })
	}
	if errs := newProblems(had, unitProblems(func(v *validator) { v.normalServiceAddresses(i, after) })); len(errs) > 0 {
		return errs
	}
	return nil
}

// unitProblems runs one part of addressProblems.
func unitProblems(check func(v *validator)) Errors {
	v := &validator{}
	check(v)
	return v.errs
}

// newProblems is errs without those had has too.
func newProblems(had, errs Errors) Errors {
	var out Errors
	for _, e := range errs {
		if !slices.Contains(had, e) {
			out = append(out, e)
		}
	}
	return out
}

// sortedByName says that c's services are sorted by name, each named and
// named once, names trimmed: as Normalize leaves a valid configuration.
func sortedByName(c *shoalv1.Config) bool {
	ss := c.GetServices()
	for i, s := range ss {
		n := s.GetName()
		if n == "" || strings.TrimSpace(n) != n || i > 0 && ss[i-1].GetName() >= n {
			return false
		}
	}
	return true
}

func (v *validator) globalAddresses(g *shoalv1.Global) {
	if g == nil {
		return
	}
	g = proto.Clone(g).(*shoalv1.Global)
	normalizeGlobal(g)
	if a := g.GetNatRouter(); a != nil {
		v.raisedAddress("global.nat_router", "NAT router address", a)
	}
}

// serviceAddresses checks the addresses of the i-th service (its place in
// the sorted list names it when it has no name).
func (v *validator) serviceAddresses(c *shoalv1.Config, i int, s *shoalv1.VirtualService) {
	if s == nil {
		return
	}
	s = proto.Clone(s).(*shoalv1.VirtualService)
	NormalizeService(c, s)
	v.normalServiceAddresses(i, s)
}

// normalServiceAddresses is serviceAddresses for a service as Normalize
// leaves it. A field's path is only made for a problem: a write of one
// service checks every real server's address.
func (v *validator) normalServiceAddresses(i int, s *shoalv1.VirtualService) {
	path := servicePath(i, s)
	if s.GetVip() != nil {
		v.raisedAddress(path+".vip", "VIP", s.GetVip())
	}
	for _, rs := range s.GetRealServers() {
		if why := serverProblem(rs.GetAddress()); why != "" {
			v.add(path+".real_servers["+RealServerKey(s, rs)+"].address", serverProblemFormat, why)
		}
	}
	if rs := s.GetSorryServer(); rs != nil {
		if why := serverProblem(rs.GetAddress()); why != "" {
			v.add(path+".sorry_server.address", serverProblemFormat, why)
		}
	}
	v.execProgram(path+".health_check", s.GetHealthCheck())
	for _, rs := range s.GetRealServers() {
		for j, hc := range rs.GetHealthChecks() {
			if runsProgram(hc) {
				v.execProgram(fmt.Sprintf("%s.real_servers[%s].health_checks[%d]", path, RealServerKey(s, rs), j), hc)
			}
		}
	}
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// raisedAddress checks an address the leader raises on an interface. An
// address that does not parse is Validate's to report.
func (v *validator) raisedAddress(field, role string, a *shoalv1.Address) {
	ip, err := netip.ParseAddr(a.GetAddress())
	if err != nil || ip.Zone() != "" {
		return
	}
	ip = ip.Unmap()
	if why := notUnicast(ip); why != "" {
		v.add(field+".address", "%s; a %s must be a unicast address clients can reach", why, role)
		return
	}
	if ip.IsLoopback() {
		v.add(field+".address", "%s is a loopback address, which no other host can reach; a %s must be an address clients can reach", ip, role)
		return
	}
	if p := int(a.GetPrefixLength()); ip.Is4() && p >= 1 && p <= 30 {
		if pfx, _ := ip.Prefix(p); ip == lastAddress(pfx) {
			v.add(field+".address", "%s is the broadcast address of %s; a %s must be a host address", ip, pfx, role)
			return
		}
	}
	if ip.IsLinkLocalUnicast() && a.GetInterface() == "" {
		v.add(field+".interface", "required for the link-local address %s, which means something only on its own link", ip)
	}
}

// serverProblemFormat words a serverProblem.
const serverProblemFormat = "%s; IPVS forwards each connection to one server"

// serverProblem says what is wrong with the address of a real or sorry
// server, "" when nothing is (or it does not parse: Validate's to report).
func serverProblem(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Zone() != "" {
		return ""
	}
	return notUnicast(ip.Unmap())
}

// notUnicast says why ip names no single host, "" when it does.
func notUnicast(ip netip.Addr) string {
	switch {
	case ip.IsUnspecified():
		return fmt.Sprintf("%s is the unspecified address", ip)
	case ip.IsMulticast():
		return fmt.Sprintf("%s is a multicast address", ip)
	case ip == limitedBroadcast:
		return fmt.Sprintf("%s is the broadcast address", ip)
	}
	return ""
}

// lastAddress is the highest address of an IPv4 prefix: its broadcast
// address.
func lastAddress(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	bits := p.Bits()
	for i := range b {
		host := max(0, min(8, (i+1)*8-bits)) // host bits in this byte
		b[i] |= byte(1<<host - 1)
	}
	return netip.AddrFrom4(b)
}

// execProgram checks an exec check's program, once Validate has found it
// present.
func (v *validator) execProgram(field string, h *shoalv1.HealthCheck) {
	if runsProgram(h) {
		v.program(field+".command", h.GetCommand())
	}
}

// runsProgram says that h runs a program of its own, without a shell.
func runsProgram(h *shoalv1.HealthCheck) bool {
	return h.GetKind() == "exec" && !h.GetShell() && len(h.GetCommand()) > 0 && strings.TrimSpace(h.GetCommand()[0]) != ""
}
