package config

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Normalize fills defaults, canonicalises addresses and enumerated values and
// sorts services by name and real servers by address:port, in place. It is
// idempotent. Values it cannot make sense of (an unparsable address, an unknown
// scheduler) are left for Validate to report.
func Normalize(c *shoalv1.Config) {
	if c == nil {
		return
	}
	if c.Global == nil {
		c.Global = &shoalv1.Global{}
	}
	normalizeGlobal(c.Global)
	for _, s := range c.Services {
		if s != nil {
			NormalizeService(c, s)
		}
	}
	slices.SortStableFunc(c.Services, func(a, b *shoalv1.VirtualService) int {
		return strings.Compare(a.GetName(), b.GetName())
	})
}

func normalizeGlobal(g *shoalv1.Global) {
	if g.NatRouter != nil {
		normalizeAddress(g.NatRouter)
	}
	if g.GarpCount == 0 {
		g.GarpCount = DefaultGARPCount
	}
	// garp_refresh 0 turns the refresh off, so only an unset duration gets the default.
	if g.GarpInterval == nil {
		g.GarpInterval = durationpb.New(DefaultGARPInterval)
	}
	if g.GarpRefresh == nil {
		g.GarpRefresh = durationpb.New(DefaultGARPRefresh)
	}
	for i, l := range g.MonitorLinks {
		g.MonitorLinks[i] = strings.TrimSpace(l)
	}
	if cs := g.ConnectionSync; cs != nil {
		normalizeSync(cs)
	}
	normalizeHooks(g.Hooks)
	g.Announce = strings.ToLower(strings.TrimSpace(g.Announce))
	normalizeDrained(g)
	if b := g.Bgp; b != nil {
		normalizeBGP(b)
	}
}

// normalizeSync spells out the kernel's defaults for group, port and TTL,
// so that a config says what the daemons run with. The interface stays
// empty when unset: each node then uses its own lvsd --interface.
func normalizeSync(cs *shoalv1.ConnectionSync) {
	cs.Interface = strings.TrimSpace(cs.Interface)
	cs.Group = canonicalAddr(cs.Group)
	if cs.Group == "" {
		cs.Group = DefaultSyncGroup
	}
	if cs.Port == 0 {
		cs.Port = DefaultSyncPort
	}
	if cs.Ttl == 0 {
		cs.Ttl = DefaultSyncTTL
	}
}

// NormalizeService is Normalize for one service of c, in place: what
// Normalize does to each service of a configuration (it also sorts the
// services by name, which a caller placing one service keeps). c's global
// settings must be normalised already: they choose the service's announce
// mode, and with it its defaults.
func NormalizeService(c *shoalv1.Config, s *shoalv1.VirtualService) {
	s.Announce = strings.ToLower(strings.TrimSpace(s.Announce))
	normalizeService(s, ServiceAnnounce(c, s) == AnnounceBGP)
}

// normalizeService fills a service's defaults; bgp says it is announced by
// BGP, where the scheduler and forwarding method that work differ.
func normalizeService(s *shoalv1.VirtualService, bgp bool) {
	s.Name = strings.TrimSpace(s.Name)
	s.Protocol = enumOr(s.Protocol, DefaultProtocol)
	if bgp {
		s.Scheduler = enumOr(s.Scheduler, DefaultBGPScheduler)
		s.Forward = enumOr(s.Forward, DefaultBGPForward)
	} else {
		s.Scheduler = enumOr(s.Scheduler, DefaultScheduler)
		s.Forward = enumOr(s.Forward, DefaultForward)
	}
	if s.Active == nil {
		s.Active = proto.Bool(true)
	}
	if s.Vip != nil {
		normalizeAddress(s.Vip)
	}
	if s.HealthCheck == nil {
		s.HealthCheck = &shoalv1.HealthCheck{}
	}
	normalizeCheck(s.HealthCheck, s.Protocol)
	if s.SorryServer != nil {
		normalizeRealServer(s.SorryServer)
	}
	for _, rs := range s.RealServers {
		if rs != nil {
			normalizeRealServer(rs)
			for _, h := range rs.HealthChecks {
				if h != nil {
					normalizeCheck(h, s.Protocol)
				}
			}
		}
	}
	slices.SortStableFunc(s.RealServers, func(a, b *shoalv1.RealServer) int {
		return compareRealServers(s, a, b)
	})
}

// compareRealServers orders by address (numerically when both parse), then by
// the port traffic goes to.
func compareRealServers(s *shoalv1.VirtualService, a, b *shoalv1.RealServer) int {
	aa, aerr := netip.ParseAddr(a.GetAddress())
	ba, berr := netip.ParseAddr(b.GetAddress())
	var c int
	if aerr == nil && berr == nil {
		c = aa.Compare(ba)
	} else {
		c = strings.Compare(a.GetAddress(), b.GetAddress())
	}
	if c != 0 {
		return c
	}
	if c = cmp.Compare(RealServerPort(s, a), RealServerPort(s, b)); c != 0 {
		return c
	}
	return cmp.Compare(a.GetPort(), b.GetPort())
}

func normalizeRealServer(rs *shoalv1.RealServer) {
	rs.Address = canonicalAddr(rs.Address)
	rs.Forward = strings.ToLower(strings.TrimSpace(rs.Forward))
	if rs.Weight == nil {
		rs.Weight = proto.Uint32(DefaultWeight)
	}
	if rs.Active == nil {
		rs.Active = proto.Bool(true)
	}
}

func normalizeCheck(h *shoalv1.HealthCheck, protocol string) {
	// A TCP connect check cannot tell anything about a UDP server, so a UDP
	// service without an explicit kind is not checked.
	def := DefaultCheckKind
	if protocol == "udp" {
		def = "none"
	}
	h.Kind = enumOr(h.Kind, def)
	if h.Interval == nil {
		h.Interval = durationpb.New(DefaultCheckInterval)
	}
	if h.Timeout == nil {
		h.Timeout = durationpb.New(DefaultCheckTimeout)
	}
	if h.Rise == 0 {
		h.Rise = DefaultCheckRise
	}
	if h.Fall == 0 {
		h.Fall = DefaultCheckFall
	}
	if (h.Kind == "http" || h.Kind == "https") && h.HttpPath == "" {
		h.HttpPath = DefaultHTTPPath
	}
}

func normalizeAddress(a *shoalv1.Address) {
	a.Address = canonicalAddr(a.Address)
	a.Interface = strings.TrimSpace(a.Interface)
	if a.PrefixLength == 0 {
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			a.PrefixLength = uint32(ip.BitLen())
		}
	}
}

// canonicalAddr returns the netip form of s ("2001:db8::1", not
// "2001:0db8:0:0::1"), or s trimmed when it does not parse.
func canonicalAddr(s string) string {
	s = strings.TrimSpace(s)
	if ip, err := netip.ParseAddr(s); err == nil {
		// Every address of a normalised state is canonical already, and a
		// write of one service normalises the service whole on every
		// node: keep the string rather than allocate the same one again.
		// AppendTo writes what String returns (for any address that
		// parsed).
		var b [64]byte
		if string(ip.AppendTo(b[:0])) == s {
			return s
		}
		return ip.String()
	}
	return s
}

func enumOr(v, def string) string {
	v = strings.ToLower(strings.TrimSpace(v))
	if v == "" {
		return def
	}
	return v
}

// RealServerPort is the port traffic is sent to: the real server's own port,
// or the service's port when it is 0.
func RealServerPort(s *shoalv1.VirtualService, rs *shoalv1.RealServer) uint32 {
	if rs.GetPort() != 0 {
		return rs.GetPort()
	}
	return s.GetPort()
}

// RealServerKey is the "address:port" that identifies rs within s, with the
// port resolved; it is the key used in field paths and Changes.
func RealServerKey(s *shoalv1.VirtualService, rs *shoalv1.RealServer) string {
	port := RealServerPort(s, rs)
	if ip, err := netip.ParseAddr(rs.GetAddress()); err == nil && port <= 65535 {
		// String's text (AppendTo writes the same for any address that
		// parsed) in one allocation instead of two: every node makes a
		// key for each real server of a service it validates.
		var b [64]byte
		return string(netip.AddrPortFrom(ip, uint16(port)).AppendTo(b[:0]))
	}
	return rs.GetAddress() + ":" + strconv.FormatUint(uint64(port), 10)
}
