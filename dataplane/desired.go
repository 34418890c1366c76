package dataplane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"syscall"

	"github.com/moby/ipvs"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Service flag bits of include/uapi/linux/ip_vs.h. moby/ipvs passes Flags to
// the kernel with an all-ones mask, so every bit we send is the whole truth.
const (
	svcFlagPersistent = 0x0001
	// svcFlagHashed is set by the kernel on every service it lists. It must
	// never be sent back: ip_vs_svc_hash refuses to hash a service that already
	// carries it, and a new service would be unreachable.
	svcFlagHashed   = 0x0002
	svcFlagOnePkt   = 0x0004
	svcFlagSchedSH1 = 0x0008
	svcFlagSchedSH2 = 0x0010
	svcFlagSchedSH3 = 0x0020
)

// IP protocol numbers as IPVS wants them.
const (
	protoTCP  = syscall.IPPROTO_TCP
	protoUDP  = syscall.IPPROTO_UDP
	protoSCTP = 132
)

// realServerState is why a configured real server is, or is not, a
// destination; counted per reconcile in shoal_dataplane_real_servers.
type realServerState string

const (
	rsUp       realServerState = "up"       // healthy, at its weight
	rsQuiesced realServerState = "quiesced" // down, kept at weight 0 to drain
	rsDown     realServerState = "down"     // down, removed
	rsInactive realServerState = "inactive" // active=false (or its service is)
	rsSorry    realServerState = "sorry"    // sorry server serving alone
	rsDisplace realServerState = "displaced_by_sorry_server"
)

// desiredService is one IPVS service as config ⊕ health says it must be.
type desiredService struct {
	vs    *shoalv1.VirtualService // what it was made from
	name  string
	svc   *ipvs.Service
	dests []*ipvs.Destination // sorted by destKey
	// keep are destinations (destKey) left as the kernel has them, present
	// or not: servers with no health verdict yet (Unchecked).
	keep map[string]bool
	// ordered services keep the kernel's destination list in one order
	// (orderDestinations), so that every router builds the same Maglev
	// table: bgp-mode services, whose flows move between routers.
	ordered bool
}

func (d *desiredService) keepAsIs(dst *ipvs.Destination) {
	if d.keep == nil {
		d.keep = map[string]bool{}
	}
	d.keep[destKey(dst)] = true
}

// desiredState is the whole IPVS table shoal wants, keyed by serviceKey,
// and what it was made from. It is kept from one reconcile to the next and
// brought up to date by update, which touches only the services that
// changed.
type desiredState struct {
	services map[string]*desiredService
	timeouts ipvs.Config
	counts   map[realServerState]int
	// entries counts services and their destinations (sweepParts).
	entries int

	// cfg is the configuration it was made from (nil: none yet); memo
	// each of cfg's services' part of it, by pointer.
	cfg  *shoalv1.Config
	memo map[*shoalv1.VirtualService]*serviceMemo
	// err is what made the table short of cfg: services that do not map,
	// or that map to another's IPVS service. While there is one, every
	// update is a whole one, so that the errors keep config order.
	err error
}

// serviceChange is one IPVS service whose desired form an update changed:
// was is nil for a new one, now for one gone.
type serviceChange struct {
	key      string
	was, now *desiredService
}

// serviceKey identifies a service the way the kernel does: protocol, address
// and port, or address family and firewall mark.
func serviceKey(s *ipvs.Service) string {
	if s.FWMark != 0 {
		fam := "inet"
		if s.AddressFamily == syscall.AF_INET6 {
			fam = "inet6"
		}
		return fmt.Sprintf("fwmark/%s/%d", fam, s.FWMark)
	}
	a, _ := netip.AddrFromSlice(s.Address)
	// Appended rather than formatted: the resync makes one per kernel
	// service each period.
	var b [64]byte
	k := append(append(b[:0], protocolName(s.Protocol)...), '/')
	return string(netip.AddrPortFrom(a.Unmap(), s.Port).AppendTo(k))
}

// destKey identifies a destination within its service.
func destKey(d *ipvs.Destination) string {
	a, _ := netip.AddrFromSlice(d.Address)
	return netip.AddrPortFrom(a.Unmap(), d.Port).String()
}

func protocolNumber(p string) (uint16, error) {
	switch p {
	case "", "tcp":
		return protoTCP, nil
	case "udp":
		return protoUDP, nil
	case "sctp":
		return protoSCTP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q", p)
}

func protocolName(p uint16) string {
	switch p {
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	case protoSCTP:
		return "sctp"
	}
	return fmt.Sprintf("proto%d", p)
}

// forwardFlags maps a forwarding method to the destination's connection flags.
func forwardFlags(f string) (uint32, error) {
	switch f {
	case "", "nat":
		return ipvs.ConnectionFlagMasq, nil
	case "dr":
		return ipvs.ConnectionFlagDirectRoute, nil
	case "tun":
		return ipvs.ConnectionFlagTunnel, nil
	}
	return 0, fmt.Errorf("unknown forwarding method %q", f)
}

func forwardName(flags uint32) string {
	switch flags & ipvs.ConnectionFlagFwdMask {
	case ipvs.ConnectionFlagMasq:
		return "nat"
	case ipvs.ConnectionFlagDirectRoute:
		return "dr"
	case ipvs.ConnectionFlagTunnel:
		return "tun"
	case ipvs.ConnectionFlagLocalNode:
		return "local"
	}
	return fmt.Sprintf("fwd%d", flags&ipvs.ConnectionFlagFwdMask)
}

// serviceFamily is the address family of a service: its VIP's, or for a
// firewall-mark service without VIP its first real server's, else IPv4.
func serviceFamily(vs *shoalv1.VirtualService) uint16 {
	if a, err := netip.ParseAddr(vs.GetVip().GetAddress()); err == nil {
		if a.Unmap().Is6() {
			return syscall.AF_INET6
		}
		return syscall.AF_INET
	}
	for _, rs := range vs.GetRealServers() {
		if a, err := netip.ParseAddr(rs.GetAddress()); err == nil && a.Unmap().Is6() {
			return syscall.AF_INET6
		}
	}
	return syscall.AF_INET
}

// ipvsService maps a virtual service to the kernel's service: the key
// (protocol+address+port or family+fwmark), scheduler and persistence.
//
// Netmask is what the kernel stores verbatim: for IPv4 a network-order mask
// (ipvsadm -M 255.255.255.0 sends the bytes ff ff ff 00), which moby/ipvs
// writes in native byte order, hence NativeEndian; for IPv6 a prefix length,
// which the kernel requires to be 1..128 even without persistence.
func ipvsService(vs *shoalv1.VirtualService) (*ipvs.Service, error) {
	s := &ipvs.Service{
		SchedName:     vs.GetScheduler(),
		AddressFamily: serviceFamily(vs),
	}
	if s.SchedName == "" {
		s.SchedName = config.DefaultScheduler
	}
	if vs.GetFwmark() != 0 {
		s.FWMark = vs.GetFwmark()
	} else {
		a, err := netip.ParseAddr(vs.GetVip().GetAddress())
		if err != nil {
			return nil, fmt.Errorf("vip %q: %w", vs.GetVip().GetAddress(), err)
		}
		a = a.Unmap()
		if vs.GetPort() == 0 || vs.GetPort() > 65535 {
			return nil, fmt.Errorf("port %d out of range", vs.GetPort())
		}
		p, err := protocolNumber(vs.GetProtocol())
		if err != nil {
			return nil, err
		}
		s.Address = net.IP(a.AsSlice())
		s.Port = uint16(vs.GetPort())
		s.Protocol = p
	}
	if t := vs.GetPersistenceTimeout(); t > 0 {
		s.Flags |= svcFlagPersistent
		s.Timeout = t
	}
	plen := int(vs.GetPersistencePrefix())
	if s.AddressFamily == syscall.AF_INET6 {
		if plen == 0 || plen > 128 {
			plen = 128
		}
		s.Netmask = uint32(plen)
	} else {
		if plen == 0 || plen > 32 {
			plen = 32
		}
		s.Netmask = binary.NativeEndian.Uint32(net.CIDRMask(plen, 32))
	}
	return s, nil
}

// persistencePrefix reads a kernel service's netmask back as a prefix length.
func persistencePrefix(s *ipvs.Service) uint32 {
	if s.AddressFamily == syscall.AF_INET6 {
		return s.Netmask
	}
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], s.Netmask)
	ones, _ := net.IPMask(b[:]).Size()
	return uint32(ones)
}

// ipvsDestination maps a real server of vs to the kernel's destination; the
// forwarding method is the server's own or the service's.
func ipvsDestination(vs *shoalv1.VirtualService, rs *shoalv1.RealServer, weight int) (*ipvs.Destination, error) {
	a, err := netip.ParseAddr(rs.GetAddress())
	if err != nil {
		return nil, fmt.Errorf("real server %q: %w", rs.GetAddress(), err)
	}
	a = a.Unmap()
	port := config.RealServerPort(vs, rs)
	if port > 65535 {
		return nil, fmt.Errorf("real server %s port %d out of range", a, port)
	}
	fwd := rs.GetForward()
	if fwd == "" {
		fwd = vs.GetForward()
	}
	flags, err := forwardFlags(fwd)
	if err != nil {
		return nil, err
	}
	fam := uint16(syscall.AF_INET)
	if a.Is6() {
		fam = syscall.AF_INET6
	}
	return &ipvs.Destination{
		Address:         net.IP(a.AsSlice()),
		Port:            uint16(port),
		Weight:          weight,
		ConnectionFlags: flags,
		AddressFamily:   fam,
		UpperThreshold:  rs.GetUpperThreshold(),
		LowerThreshold:  rs.GetLowerThreshold(),
	}, nil
}

func configuredWeight(rs *shoalv1.RealServer) int {
	if rs.Weight == nil {
		return config.DefaultWeight
	}
	return int(rs.GetWeight())
}

func isActive(b *bool) bool { return b == nil || *b }

// verdict is what health says of one real server, as desired uses it.
type verdict byte

const (
	verdictUp verdict = iota
	verdictDown
	verdictUnchecked
	verdictNone // inactive, or an address that does not map: no question asked
)

// addrsOf is the address and port of every real server of vs, in order;
// the zero AddrPort where health is not asked (inactive, or an address that
// does not map).
func addrsOf(vs *shoalv1.VirtualService) []netip.AddrPort {
	out := make([]netip.AddrPort, len(vs.GetRealServers()))
	for i, rs := range vs.GetRealServers() {
		a, err := netip.ParseAddr(rs.GetAddress())
		port := config.RealServerPort(vs, rs)
		if isActive(rs.Active) && err == nil && port <= 65535 {
			out[i] = netip.AddrPortFrom(a.Unmap(), uint16(port))
		}
	}
	return out
}

// healthOf asks h about every real server of vs (addrs, from addrsOf), in
// order; nil when there is no h (all up). Unchecked is asked first: a
// verdict never goes back to unchecked, so a check finishing in between
// cannot make a server that was unchecked look down.
func healthOf(vs *shoalv1.VirtualService, addrs []netip.AddrPort, h Health) []byte {
	if h == nil {
		return nil
	}
	out := make([]byte, len(addrs))
	for i, ap := range addrs {
		v := verdictUp
		switch {
		case !ap.IsValid():
			v = verdictNone
		case isUnchecked(h, vs.GetName(), ap):
			v = verdictUnchecked
		case !h.Healthy(vs.GetName(), ap):
			v = verdictDown
		}
		out[i] = byte(v)
	}
	return out
}

// serviceMemo is one service's part of the desired state, kept from one
// reconcile to the next: the committed configurations raftfsm hands over
// share every service a change did not touch, so a service whose pointer,
// global settings and health verdicts are those of the last reconcile is
// the same desired service, not computed again. This is what makes a
// change of one service cost one service, not the whole table.
type serviceMemo struct {
	vs       *shoalv1.VirtualService
	global   *shoalv1.Global
	addrs    []netip.AddrPort // of the real servers, for healthOf
	verdicts []byte           // nil: no health, all up
	key      string
	d        *desiredService // nil: the service does not map (errs)
	counts   map[realServerState]int
	errs     []error
}

// update makes ds the IPVS table shoal wants for c: config ⊕ health ⊕
// active flags, and returns what changed in it, by key. Inactive services
// and servers are absent; a down server is removed, or kept at weight 0
// when its service quiesces; when no real server is up and a sorry server
// is set, the sorry server is the only destination; a server with no
// verdict yet is left as the kernel has it (Unchecked). Services that
// cannot be mapped are reported and left out, the rest is still
// programmed.
//
// The services of the configuration ds was made from must not have been
// modified since. c is compared with it by pointer, in step: raftfsm keeps
// services sorted by name and shares every service a command did not
// touch, so a change of k services costs k services and a walk over the
// list, not a map of every service. With sameHealth (no verdict changed
// since the last update) a service that did not change keeps its
// verdicts; otherwise h is asked about every real server again. A change
// of the global settings, or a table with errors, makes the whole table
// again.
func (ds *desiredState) update(c *shoalv1.Config, h Health, sameHealth bool) ([]serviceChange, error) {
	if ds.cfg == nil || ds.err != nil || c.GetGlobal() != ds.cfg.GetGlobal() {
		return ds.rebuild(c, h, sameHealth)
	}
	goneVS, came := changedServices(ds.cfg.GetServices(), c.GetServices())
	if !sameHealth {
		// Every service's verdicts are asked again below.
		came = c.GetServices()
	}
	// The parts taken out, and the keys they free.
	var gone []*serviceMemo
	freed := map[string]bool{}
	leaving := map[*serviceMemo]bool{}
	leave := func(m *serviceMemo) {
		gone = append(gone, m)
		leaving[m] = true
		if m.d != nil {
			freed[m.key] = true
		}
	}
	for _, vs := range goneVS {
		leave(ds.memo[vs])
	}
	// The new parts, made before anything is changed: one that does not
	// map, or takes another service's key, makes the whole table again
	// (its errors in config order).
	made := make([]*serviceMemo, 0, len(came))
	taken := map[string]bool{}
	for _, vs := range came {
		// Set when vs stayed (its verdicts are asked again), or moved
		// in a list out of order (it is taken out and put back).
		m := ds.memo[vs]
		nm := memoFor(c, vs, m, h, m != nil && sameHealth)
		if nm == m && !leaving[m] {
			continue // the same verdicts: nothing changed
		}
		if m != nil && !leaving[m] {
			leave(m)
		}
		if len(nm.errs) > 0 {
			return ds.rebuild(c, h, sameHealth)
		}
		if nm.d != nil {
			if (ds.services[nm.key] != nil && !freed[nm.key]) || taken[nm.key] {
				return ds.rebuild(c, h, sameHealth)
			}
			taken[nm.key] = true
		}
		made = append(made, nm)
	}
	before := map[string]*desiredService{}
	touch := func(key string) {
		if _, ok := before[key]; !ok {
			before[key] = ds.services[key]
		}
	}
	for _, m := range gone {
		ds.count(m, -1)
		if m.d != nil {
			touch(m.key)
			ds.drop(m)
		}
		delete(ds.memo, m.vs)
	}
	for _, m := range made {
		ds.memo[m.vs] = m
		ds.count(m, 1)
		if m.d != nil {
			touch(m.key)
			ds.put(m)
		}
	}
	ds.cfg = c
	changes := make([]serviceChange, 0, len(before))
	for key, was := range before {
		if now := ds.services[key]; now != was {
			changes = append(changes, serviceChange{key: key, was: was, now: now})
		}
	}
	return changes, nil
}

// refresh asks h again about the real servers of vs, a service of the
// table, and when a verdict changed makes its part of the table again; it
// says whether it did. The periodic resync asks about one part of the
// table at a time this way (sweepSlice): a verdict changes only through
// the health checker, which says so (HealthChanged), so asking again is a
// safety net, and asking about every server of a large table at once held
// changes back.
func (ds *desiredState) refresh(vs *shoalv1.VirtualService, h Health) bool {
	m := ds.memo[vs]
	if m == nil || m.d == nil || h == nil {
		return false
	}
	nm := memoFor(ds.cfg, vs, m, h, false)
	if nm == m {
		return false
	}
	ds.count(m, -1)
	ds.drop(m)
	ds.memo[vs] = nm
	ds.count(nm, 1)
	if nm.d != nil {
		ds.put(nm)
	}
	if len(nm.errs) > 0 {
		// A sorry server that does not map, now that it serves: the next
		// update makes the table whole, and says so in config order.
		ds.err = joinErrors(append([]error{ds.err}, nm.errs...))
	}
	return true
}

// changedServices compares two lists of services by pointer, in step as
// they are sorted by name (raftfsm keeps every committed configuration's
// so, and shares the services a command did not touch): gone are old's
// services that cur does not have, came cur's that old does not. Lists out
// of order give more of both, never less: a service in both only when it
// is the same object, never modified.
func changedServices(old, cur []*shoalv1.VirtualService) (gone, came []*shoalv1.VirtualService) {
	for i, j := 0, 0; i < len(old) || j < len(cur); {
		switch {
		case i < len(old) && j < len(cur) && old[i] == cur[j]:
			i++
			j++
		case j == len(cur) || (i < len(old) && old[i].GetName() < cur[j].GetName()):
			gone = append(gone, old[i])
			i++
		case i == len(old) || cur[j].GetName() < old[i].GetName():
			came = append(came, cur[j])
			j++
		default: // the same name, changed
			gone = append(gone, old[i])
			came = append(came, cur[j])
			i++
			j++
		}
	}
	return gone, came
}

// rebuild is update making the whole table again, every service's part
// too except where its pointer, the global settings and its verdicts are
// those of the last time.
func (ds *desiredState) rebuild(c *shoalv1.Config, h Health, sameHealth bool) ([]serviceChange, error) {
	prev, oldMemo := ds.services, ds.memo
	*ds = desiredState{
		services: make(map[string]*desiredService, len(c.GetServices())),
		counts:   map[realServerState]int{},
		cfg:      c,
		memo:     make(map[*shoalv1.VirtualService]*serviceMemo, len(c.GetServices())),
		timeouts: timeoutsOf(c.GetGlobal()),
	}
	var errs []error
	for _, vs := range c.GetServices() {
		m := memoFor(c, vs, oldMemo[vs], h, sameHealth)
		ds.memo[vs] = m
		ds.count(m, 1)
		errs = append(errs, m.errs...)
		if m.d == nil {
			continue
		}
		if other, dup := ds.services[m.key]; dup {
			errs = append(errs, fmt.Errorf("service %s: same IPVS service %s as %s", vs.GetName(), m.key, other.name))
			continue
		}
		ds.put(m)
	}
	ds.err = joinErrors(errs)
	var changes []serviceChange
	for key, was := range prev {
		if now := ds.services[key]; now != was {
			changes = append(changes, serviceChange{key: key, was: was, now: now})
		}
	}
	for key, now := range ds.services {
		if _, ok := prev[key]; !ok {
			changes = append(changes, serviceChange{key: key, now: now})
		}
	}
	return changes, ds.err
}

func timeoutsOf(g *shoalv1.Global) ipvs.Config {
	return ipvs.Config{
		TimeoutTCP:    g.GetTcpTimeout().AsDuration().Round(1e9),
		TimeoutTCPFin: g.GetTcpfinTimeout().AsDuration().Round(1e9),
		TimeoutUDP:    g.GetUdpTimeout().AsDuration().Round(1e9),
	}
}

// count adds m's real servers to the counts (sign 1) or takes them away
// (-1).
func (ds *desiredState) count(m *serviceMemo, sign int) {
	for st, n := range m.counts {
		ds.counts[st] += sign * n
	}
}

// put makes m's service part of the table; drop takes it out.
func (ds *desiredState) put(m *serviceMemo) {
	ds.services[m.key] = m.d
	ds.entries += 1 + len(m.d.dests)
}

func (ds *desiredState) drop(m *serviceMemo) {
	delete(ds.services, m.key)
	ds.entries -= 1 + len(m.d.dests)
}

// memoFor is vs's part of the table in c: m, vs's part the last time (nil:
// none), when the global settings and the verdicts are the same; with
// sameHealth m's verdicts are taken as they are.
func memoFor(c *shoalv1.Config, vs *shoalv1.VirtualService, m *serviceMemo, h Health, sameHealth bool) *serviceMemo {
	g := c.GetGlobal()
	if !isActive(vs.Active) {
		if m != nil {
			return m // the same object: inactive then too
		}
		return &serviceMemo{vs: vs, global: g, counts: map[realServerState]int{rsInactive: len(vs.GetRealServers())}}
	}
	var addrs []netip.AddrPort
	var v []byte
	if m != nil && sameHealth {
		addrs, v = m.addrs, m.verdicts
	} else {
		if m != nil && m.addrs != nil {
			addrs = m.addrs
		} else if h != nil {
			addrs = addrsOf(vs)
		}
		v = healthOf(vs, addrs, h)
	}
	if m != nil && m.global == g && bytes.Equal(m.verdicts, v) {
		return m
	}
	nm := desiredService1(c, vs, v)
	nm.vs, nm.addrs = vs, addrs
	return nm
}

// desiredService1 computes one active service's part of the desired state
// from its real servers' verdicts.
func desiredService1(c *shoalv1.Config, vs *shoalv1.VirtualService, v []byte) *serviceMemo {
	m := &serviceMemo{global: c.GetGlobal(), verdicts: v, counts: map[realServerState]int{}}
	svc, err := ipvsService(vs)
	if err == nil && config.ServiceAnnounce(c, vs) == config.AnnounceBGP && svc.SchedName == "mh" {
		// Every router must send a flow to the same real server:
		// hash its source port too (mh-port), or one client's flows
		// all land on one server; and when the chosen server is at
		// weight 0 (quiesced) look further along the same table
		// (mh-fallback) instead of dropping, which every router does
		// alike.
		svc.Flags |= svcFlagSchedSH1 | svcFlagSchedSH2
	}
	if err != nil {
		m.errs = append(m.errs, fmt.Errorf("service %s: %w", vs.GetName(), err))
		return m
	}
	d := &desiredService{vs: vs, name: vs.GetName(), svc: svc, ordered: config.ServiceAnnounce(c, vs) == config.AnnounceBGP}
	up := 0
	var quiesced []*ipvs.Destination
	for i, rs := range vs.GetRealServers() {
		if !isActive(rs.Active) {
			m.counts[rsInactive]++
			continue
		}
		dst, err := ipvsDestination(vs, rs, configuredWeight(rs))
		if err != nil {
			m.errs = append(m.errs, fmt.Errorf("service %s: %w", vs.GetName(), err))
			continue
		}
		state := verdictUp // no health: all up
		if v != nil {
			state = verdict(v[i])
		}
		switch state {
		case verdictUnchecked:
			d.keepAsIs(dst)
			m.counts[rsUnchecked]++
		case verdictUp:
			up++
			d.dests = append(d.dests, dst)
		default:
			if vs.GetQuiesce() {
				dst.Weight = 0
				quiesced = append(quiesced, dst)
				continue
			}
			m.counts[rsDown]++
		}
	}
	if up == 0 && vs.GetSorryServer().GetAddress() != "" {
		sorry, err := ipvsDestination(vs, vs.GetSorryServer(), configuredWeight(vs.GetSorryServer()))
		switch {
		case err != nil:
			m.errs = append(m.errs, fmt.Errorf("service %s: sorry server: %w", vs.GetName(), err))
		case len(d.keep) > 0:
			// Whether the sorry server serves waits for the verdicts:
			// leave it and the quiesced servers as the kernel has them.
			d.keepAsIs(sorry)
			for _, q := range quiesced {
				d.keepAsIs(q)
			}
			m.counts[rsQuiesced] += len(quiesced)
			quiesced = nil
		default:
			m.counts[rsDisplace] += len(quiesced)
			m.counts[rsSorry]++
			quiesced = nil
			d.dests = []*ipvs.Destination{sorry}
		}
	}
	m.counts[rsUp] += up
	m.counts[rsQuiesced] += len(quiesced)
	d.dests = append(d.dests, quiesced...)
	sort.Slice(d.dests, func(i, j int) bool { return destKey(d.dests[i]) < destKey(d.dests[j]) })
	m.key, m.d = serviceKey(svc), d
	return m
}
