package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Announcement modes: how a VIP reaches the network.
const (
	// AnnounceL2 is the leader holding the VIP on its interface and sending
	// gratuitous ARP (unsolicited neighbour advertisements).
	AnnounceL2 = "l2"
	// AnnounceBGP is every healthy router in contact with a Raft majority
	// holding the VIP on lo and announcing it to its BGP peers.
	AnnounceBGP = "bgp"
)

// AnnounceModes are the values of global.announce and a service's announce.
var AnnounceModes = []string{AnnounceL2, AnnounceBGP}

// Defaults of bgp mode.
const (
	// DefaultBGPHoldTime is three keepalives of 3s: a crashed router's routes
	// leave its peers within 9s (there is no BFD).
	DefaultBGPHoldTime = 9 * time.Second
	DefaultBGPPort     = 179
	// In bgp mode every router must pick the same real server for a flow,
	// whichever router ECMP hands it to: Maglev hashing gives that (and
	// moves few flows when a server comes or goes); direct routing lets the
	// reply bypass the routers, as it must once routers share a VIP.
	DefaultBGPScheduler = "mh"
	DefaultBGPForward   = "dr"
)

// RFC 4271 allows a hold time of 0 (no keepalives) or 3s and more, in a
// 16-bit count of seconds.
const (
	minBGPHoldTime = 3 * time.Second
	maxBGPHoldTime = 65535 * time.Second
)

// ServiceAnnounce is the announcement mode of s in c: its own, else the
// cluster's, else l2. An empty global.announce stays empty after Normalize
// (rather than being spelled out as l2) so that configurations committed
// before bgp mode existed normalise to the same bytes on every version.
func ServiceAnnounce(c *shoalv1.Config, s *shoalv1.VirtualService) string {
	if m := s.GetAnnounce(); m != "" {
		return m
	}
	return GlobalAnnounce(c.GetGlobal())
}

// GlobalAnnounce is the cluster-wide announcement mode: l2 unless set.
func GlobalAnnounce(g *shoalv1.Global) string {
	if m := g.GetAnnounce(); m != "" {
		return m
	}
	return AnnounceL2
}

// UsesBGP says whether any service of c is announced by BGP.
func UsesBGP(c *shoalv1.Config) bool {
	for _, s := range c.GetServices() {
		if ServiceAnnounce(c, s) == AnnounceBGP {
			return true
		}
	}
	return false
}

func normalizeBGP(b *shoalv1.Bgp) {
	if b.HoldTime == nil {
		b.HoldTime = durationpb.New(DefaultBGPHoldTime)
	}
	for _, p := range b.Peers {
		if p == nil {
			continue
		}
		p.Address = canonicalAddr(p.Address)
		if p.Port == 0 {
			p.Port = DefaultBGPPort
		}
	}
	for i, c := range b.Communities {
		b.Communities[i] = strings.ToLower(strings.TrimSpace(c))
	}
}

// wellKnownCommunities are RFC 1997's and RFC 3765's, by the names BIRD and
// GoBGP use.
var wellKnownCommunities = map[string]uint32{
	"no-export":    0xFFFFFF01,
	"no-advertise": 0xFFFFFF02,
	"no-peer":      0xFFFFFF04,
}

// ParseCommunity reads "ASN:VALUE" (two 16-bit numbers) or a well-known name.
func ParseCommunity(s string) (uint32, error) {
	if v, ok := wellKnownCommunities[s]; ok {
		return v, nil
	}
	hi, lo, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("%q is not ASN:VALUE or one of no-export no-advertise no-peer", s)
	}
	a, err1 := strconv.ParseUint(hi, 10, 16)
	b, err2 := strconv.ParseUint(lo, 10, 16)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%q: both halves must be 0..65535", s)
	}
	return uint32(a)<<16 | uint32(b), nil
}

func normalizeDrained(g *shoalv1.Global) {
	for i, id := range g.DrainedNodes {
		g.DrainedNodes[i] = strings.TrimSpace(id)
	}
	slices.Sort(g.DrainedNodes)
	g.DrainedNodes = slices.Compact(g.DrainedNodes)
}

// Drained says whether the router with this id is drained in c.
func Drained(c *shoalv1.Config, id string) bool {
	return slices.Contains(c.GetGlobal().GetDrainedNodes(), id)
}

func (v *validator) bgp(c *shoalv1.Config) {
	g := c.GetGlobal()
	for i, id := range g.GetDrainedNodes() {
		if id == "" || strings.ContainsAny(id, " \t\n") {
			v.add(fmt.Sprintf("global.drained_nodes[%d]", i), "%q is not a node id", id)
		}
	}
	if g.Announce != "" {
		v.oneOf("global", ".announce", g.Announce, AnnounceModes)
	}
	// A VIP is held on lo by every router or on an interface by the
	// leader, not both: two services that share it must share the mode.
	modeOf := map[string]string{} // VIP -> `mode (service "NAME")`
	for i, s := range c.GetServices() {
		ip := s.GetVip().GetAddress()
		if ip == "" {
			continue
		}
		m := ServiceAnnounce(c, s)
		if prev, ok := modeOf[ip]; ok && !strings.HasPrefix(prev, m+" ") {
			v.add(servicePath(i, s)+".announce", "%s here, but VIP %s is announced by %s; services of one VIP share its mode", m, ip, prev)
			continue
		}
		modeOf[ip] = m + " (service " + strconv.Quote(s.GetName()) + ")"
	}
	b := g.GetBgp()
	if b == nil {
		if UsesBGP(c) {
			v.add("global.bgp", "required: a service is announced by bgp")
		}
		return
	}
	const path = "global.bgp"
	if b.LocalAsn == 0 {
		v.add(path+".local_asn", "required (1..4294967295)")
	}
	if len(b.Peers) == 0 && UsesBGP(c) {
		v.add(path+".peers", "at least one peer is required in bgp mode")
	}
	v.holdTime(path+".hold_time", b.HoldTime)
	seen := map[netip.AddrPort]bool{}
	for i, p := range b.Peers {
		ppath := fmt.Sprintf("%s.peers[%d]", path, i)
		if p == nil {
			v.add(ppath, "missing")
			continue
		}
		ip, err := netip.ParseAddr(p.Address)
		switch {
		case p.Address == "":
			v.add(ppath+".address", "required")
		case err != nil || ip.Zone() != "":
			v.add(ppath+".address", "%q is not an IP address", p.Address)
		case !ip.IsGlobalUnicast() && !ip.IsPrivate() && !ip.IsLinkLocalUnicast():
			v.add(ppath+".address", "%s is not a unicast address", ip)
		case seen[netip.AddrPortFrom(ip, uint16(p.Port))]:
			v.add(ppath+".address", "%s is listed twice", ip)
		default:
			seen[netip.AddrPortFrom(ip, uint16(p.Port))] = true
		}
		if p.Asn == 0 {
			v.add(ppath+".asn", "required (1..4294967295)")
		}
		if p.Port < 1 || p.Port > 65535 {
			v.add(ppath+".port", "%d is outside 1..65535", p.Port)
		}
		if p.HoldTime != nil {
			v.holdTime(ppath+".hold_time", p.HoldTime)
		}
	}
	for i, s := range b.Communities {
		if _, err := ParseCommunity(s); err != nil {
			v.add(fmt.Sprintf("%s.communities[%d]", path, i), "%v", err)
		}
	}
}

func (v *validator) holdTime(field string, d *durationpb.Duration) {
	v.duration(field, "", d)
	if d.CheckValid() != nil {
		return
	}
	switch h := d.AsDuration(); {
	case h < 0:
	case h%time.Second != 0:
		v.add(field, "%s is not whole seconds (BGP counts seconds)", h)
	case h != 0 && (h < minBGPHoldTime || h > maxBGPHoldTime):
		v.add(field, "%s is outside 3s..65535s (or 0 for no keepalives)", h)
	}
}

// serviceBGP checks what bgp mode needs of a service: the same real server
// for a flow on every router, and replies that do not come back through
// the router (which may not be the one the next packet reaches).
func (v *validator) serviceBGP(path string, c *shoalv1.Config, s *shoalv1.VirtualService) {
	if s.Announce != "" {
		v.oneOf(path, ".announce", s.Announce, AnnounceModes)
	}
	if ServiceAnnounce(c, s) != AnnounceBGP {
		return
	}
	if s.Scheduler != DefaultBGPScheduler {
		v.add(path+".scheduler", "%q cannot be used in bgp mode: every router must pick the same real server for a flow, which only mh (Maglev hashing) does", s.Scheduler)
	}
	if s.Forward == "nat" {
		v.add(path+".forward", "nat cannot be used in bgp mode: the reply must pass the router that holds the connection, and ECMP does not send it back there; use dr or tun")
	}
	for _, rs := range s.RealServers {
		if rs != nil && rs.Forward == "nat" {
			v.add(path+".real_servers["+RealServerKey(s, rs)+"].forward", "nat cannot be used in bgp mode; use dr or tun")
		}
	}
	if rs := s.SorryServer; rs != nil && rs.Forward == "nat" {
		v.add(path+".sorry_server.forward", "nat cannot be used in bgp mode; use dr or tun")
	}
	if s.Vip.GetAddress() == "" {
		v.add(path+".vip.address", "required in bgp mode: it is the prefix the routers announce")
	}
}
