package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The values ipvsadm and lvs.cf accept, spelled the way they spell them.
var (
	Protocols   = []string{"tcp", "udp", "sctp"}
	Schedulers  = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf"}
	Forwards    = []string{"nat", "dr", "tun"}
	CheckKinds  = []string{"tcp", "send-expect", "http", "https", "exec", "none"}
	serviceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// MaxWeight is the largest IPVS real-server weight.
const MaxWeight = 65535

// Validate returns nil or an Errors listing every problem of c, each with its
// field path. It judges c as Normalize would leave it (defaults count as set),
// without changing c, so the API and the FSM reach the same verdict.
func Validate(c *shoalv1.Config) error {
	if c == nil {
		return Errors{{Field: "config", Reason: "missing"}}
	}
	c = proto.Clone(c).(*shoalv1.Config)
	Normalize(c)
	return ValidateNormalized(c)
}

// ValidateNormalized is Validate of a configuration that Normalize has
// already been applied to, as the FSM's whole-configuration commands have:
// it skips Validate's copy and normalisation, a third of a 100,000-real-
// server apply. It does not change c. Given anything Normalize would still
// change, its verdict may differ from Validate's.
func ValidateNormalized(c *shoalv1.Config) error {
	if c == nil {
		return Errors{{Field: "config", Reason: "missing"}}
	}
	v := &validator{}
	v.global(c.Global)
	v.services(c.Services)
	v.hooks(c.Global.GetHooks(), c.Services)
	v.bgp(c)
	for i, s := range c.Services {
		if s != nil {
			v.serviceBGP(servicePath(i, s), c, s)
		}
	}
	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

type validator struct{ errs Errors }

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

func (v *validator) global(g *shoalv1.Global) {
	if g.NatRouter != nil {
		v.address("global.nat_router", g.NatRouter, true)
	}
	v.duration("global", ".garp_interval", g.GarpInterval)
	v.duration("global", ".garp_refresh", g.GarpRefresh)
	v.duration("global", ".tcp_timeout", g.TcpTimeout)
	v.duration("global", ".tcpfin_timeout", g.TcpfinTimeout)
	v.duration("global", ".udp_timeout", g.UdpTimeout)
	for i, l := range g.MonitorLinks {
		if reason := interfaceProblem(l); reason != "" {
			v.add(fmt.Sprintf("global.monitor_links[%d]", i), "%s", reason)
		}
	}
	if cs := g.ConnectionSync; cs != nil {
		v.connectionSync("global.connection_sync", cs)
	}
}

// Sync message lengths the kernel takes as given: it raises a backup's
// below 1024 and lowers any above 65535 less the IP and UDP headers, and
// a value it changed would look like a daemon to restart on every resync.
const (
	minSyncMaxLen   = 1024
	maxSyncMaxLen4  = 65535 - 20 - 8
	maxSyncMaxLen6  = 65535 - 40 - 8
	maxSyncPeriodic = 1 << 20 // packets; the kernel takes any int, nobody needs more
)

func (v *validator) connectionSync(path string, cs *shoalv1.ConnectionSync) {
	if cs.Interface != "" {
		if reason := interfaceProblem(cs.Interface); reason != "" {
			v.add(path+".interface", "%s", reason)
		}
	}
	if cs.SyncId > MaxSyncID {
		v.add(path+".sync_id", "%d is outside 0..%d", cs.SyncId, MaxSyncID)
	}
	maxLen := uint32(maxSyncMaxLen4)
	if g, err := netip.ParseAddr(cs.Group); err != nil || g.Zone() != "" {
		v.add(path+".group", "%q is not an IP address", cs.Group)
	} else if !g.IsMulticast() {
		v.add(path+".group", "%s is not a multicast address", g)
	} else if g.Is6() {
		maxLen = maxSyncMaxLen6
	}
	if cs.Port < 1 || cs.Port > 65535 {
		v.add(path+".port", "%d is outside 1..65535", cs.Port)
	}
	if cs.Ttl < 1 || cs.Ttl > 255 {
		v.add(path+".ttl", "%d is outside 1..255", cs.Ttl)
	}
	if cs.MaxLen != 0 && (cs.MaxLen < minSyncMaxLen || cs.MaxLen > maxLen) {
		v.add(path+".max_len", "%d is outside %d..%d (0 leaves it to the kernel)", cs.MaxLen, minSyncMaxLen, maxLen)
	}
	if cs.SyncThreshold != nil && cs.GetSyncThreshold() > maxSyncPeriodic {
		v.add(path+".sync_threshold", "%d is above %d", cs.GetSyncThreshold(), maxSyncPeriodic)
	}
	if cs.SyncPeriod != nil && cs.GetSyncPeriod() > maxSyncPeriodic {
		v.add(path+".sync_period", "%d is above %d", cs.GetSyncPeriod(), maxSyncPeriodic)
	}
	// The kernel refuses a threshold that is not below a non-zero period.
	if cs.SyncThreshold != nil && cs.SyncPeriod != nil && cs.GetSyncPeriod() != 0 && cs.GetSyncThreshold() >= cs.GetSyncPeriod() {
		v.add(path+".sync_threshold", "%d must be below sync_period %d (or sync_period 0)", cs.GetSyncThreshold(), cs.GetSyncPeriod())
	}
	if d := cs.SyncRefreshPeriod; d != nil {
		v.duration(path, ".sync_refresh_period", d)
		if d.CheckValid() == nil && d.AsDuration() >= 0 {
			switch dd := d.AsDuration(); {
			case dd%time.Second != 0:
				v.add(path+".sync_refresh_period", "%s is not whole seconds (the kernel counts seconds)", dd)
			case dd > 24*time.Hour:
				v.add(path+".sync_refresh_period", "%s is above 24h", dd)
			}
		}
	}
}

// address checks a raised address; required says whether it must be present.
func (v *validator) address(field string, a *shoalv1.Address, required bool) (netip.Addr, bool) {
	if a.GetAddress() == "" {
		if required {
			v.add(field+".address", "required")
		}
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(a.GetAddress())
	if err != nil || ip.Zone() != "" {
		v.add(field+".address", "%q is not an IP address", a.GetAddress())
		return netip.Addr{}, false
	}
	if p := a.GetPrefixLength(); p < 1 || int(p) > ip.BitLen() {
		v.add(field+".prefix_length", "%d is outside 1..%d for %s", p, ip.BitLen(), family(ip))
	}
	if a.GetInterface() != "" {
		if reason := interfaceProblem(a.GetInterface()); reason != "" {
			v.add(field+".interface", "%s", reason)
		}
	}
	return ip, true
}

// duration, positive and oneOf take a field's path in two parts, path
// and name, and join them only for a problem: a write of one service
// validates the service whole on every node, and joining every field's
// path up front was a third of what that validation allocated.
func (v *validator) duration(path, name string, d *durationpb.Duration) {
	if d == nil {
		return
	}
	if err := d.CheckValid(); err != nil {
		v.add(path+name, "%v", err)
	} else if d.AsDuration() < 0 {
		v.add(path+name, "%s is negative", d.AsDuration())
	}
}

func (v *validator) positive(path, name string, d *durationpb.Duration) {
	if d.CheckValid() == nil && d.AsDuration() <= 0 {
		v.add(path+name, "must be positive, not %s", d.AsDuration())
		return
	}
	v.duration(path, name, d)
}

func (v *validator) services(ss []*shoalv1.VirtualService) {
	names := map[string]bool{}
	byAddr := map[string]string{} // vip:port/protocol -> service name
	byMark := map[string]string{} // fwmark/family -> service name
	for i, s := range ss {
		if s == nil {
			v.add(fmt.Sprintf("services[%d]", i), "missing")
			continue
		}
		path := servicePath(i, s)
		switch {
		case s.Name == "":
			v.add(path+".name", "required")
		case !serviceName.MatchString(s.Name):
			v.add(path+".name", "%q must match %s", s.Name, serviceName)
		case names[s.Name]:
			v.add(path+".name", "%q is used by another service", s.Name)
		}
		names[s.Name] = true
		vip, ok := v.service(path, s)
		switch {
		case s.Fwmark > 0:
			key := fmt.Sprintf("%d/%s", s.Fwmark, serviceFamily(s, vip, ok))
			if other, dup := byMark[key]; dup {
				v.add(path+".fwmark", "fwmark %d (%s) is also used by service %q", s.Fwmark, serviceFamily(s, vip, ok), other)
			} else {
				byMark[key] = s.Name
			}
		case ok && s.Port >= 1 && s.Port <= 65535:
			key := netip.AddrPortFrom(vip, uint16(s.Port)).String() + "/" + s.Protocol
			if other, dup := byAddr[key]; dup {
				v.add(path, "%s is also used by service %q", key, other)
			} else {
				byAddr[key] = s.Name
			}
		}
	}
}

func servicePath(i int, s *shoalv1.VirtualService) string {
	if s.GetName() == "" {
		return fmt.Sprintf("services[%d]", i)
	}
	return "services[" + s.GetName() + "]"
}

// service checks one service and returns its VIP when it has a valid one.
func (v *validator) service(path string, s *shoalv1.VirtualService) (netip.Addr, bool) {
	var vip netip.Addr
	ok := false
	if s.Vip != nil || s.Fwmark == 0 {
		vip, ok = v.address(path+".vip", s.Vip, s.Fwmark == 0)
	}
	if s.Fwmark > 0 {
		if s.Port != 0 {
			v.add(path+".port", "must be 0 for a fwmark service, not %d", s.Port)
		}
	} else if s.Port < 1 || s.Port > 65535 {
		v.add(path+".port", "%d is outside 1..65535", s.Port)
	}
	v.oneOf(path, ".protocol", s.Protocol, Protocols)
	v.oneOf(path, ".scheduler", s.Scheduler, Schedulers)
	v.oneOf(path, ".forward", s.Forward, Forwards)
	bits := 128
	if ok {
		bits = vip.BitLen()
	}
	if int(s.PersistencePrefix) > bits {
		v.add(path+".persistence_prefix", "%d is longer than %d bits", s.PersistencePrefix, bits)
	}
	v.check(path+".health_check", s.HealthCheck)

	seen := make(map[string]bool, len(s.RealServers))
	for i, rs := range s.RealServers {
		if rs == nil {
			v.add(fmt.Sprintf("%s.real_servers[%d]", path, i), "missing")
			continue
		}
		key := RealServerKey(s, rs)
		rpath := path + ".real_servers[" + key + "]"
		v.realServer(rpath, s, rs, vip, ok)
		v.realServerChecks(rpath, rs)
		if seen[key] {
			v.add(rpath, "%s is listed twice", key)
		}
		seen[key] = true
	}
	if rs := s.SorryServer; rs != nil {
		key := RealServerKey(s, rs)
		v.realServer(path+".sorry_server", s, rs, vip, ok)
		if len(rs.HealthChecks) > 0 {
			v.add(path+".sorry_server.health_checks", "the sorry server is never checked; leave it empty")
		}
		if seen[key] {
			v.add(path+".sorry_server", "%s is also a real server", key)
		}
	}
	return vip, ok
}

func (v *validator) realServer(path string, s *shoalv1.VirtualService, rs *shoalv1.RealServer, vip netip.Addr, vipOK bool) {
	ip, err := netip.ParseAddr(rs.Address)
	switch {
	case rs.Address == "":
		v.add(path+".address", "required")
	case err != nil || ip.Zone() != "":
		v.add(path+".address", "%q is not an IP address", rs.Address)
	case vipOK && ip.Is4() != vip.Is4():
		v.add(path+".address", "%s is %s but the VIP %s is %s", ip, family(ip), vip, family(vip))
	}
	if rs.Port > 65535 {
		v.add(path+".port", "%d is outside 0..65535", rs.Port)
	}
	if w := rs.GetWeight(); w > MaxWeight {
		v.add(path+".weight", "%d is above %d", w, MaxWeight)
	}
	// The kernel sets a server's overload flag at upper_threshold
	// connections and clears it below lower_threshold (ip_vs_conn.c
	// ip_vs_bind_dest, ip_vs_unbind_dest); it refuses a lower above the
	// upper with ERANGE (ip_vs_ctl.c), which includes a lower without an
	// upper (0), a pair it would never consult anyway.
	switch {
	case rs.LowerThreshold > 0 && rs.UpperThreshold == 0:
		v.add(path+".lower_threshold", "%d needs an upper_threshold (without one the kernel never limits the server)", rs.LowerThreshold)
	case rs.LowerThreshold > rs.UpperThreshold:
		v.add(path+".lower_threshold", "%d is above upper_threshold %d", rs.LowerThreshold, rs.UpperThreshold)
	}
	fwd := s.Forward
	if rs.Forward != "" {
		v.oneOf(path, ".forward", rs.Forward, Forwards)
		fwd = rs.Forward
	}
	// Direct routing and tunnelling deliver the packet unchanged, so the real
	// server receives it on the service's port whatever we configure.
	if (fwd == "dr" || fwd == "tun") && rs.Port != 0 && rs.Port != s.Port {
		v.add(path+".port", "%s forwarding cannot change the port (%d -> %d); leave it 0", fwd, s.Port, rs.Port)
	}
}

// realServerChecks judges a real server's own checks. An empty list cannot
// be told from an unset one on the wire; it means the service's check.
func (v *validator) realServerChecks(path string, rs *shoalv1.RealServer) {
	for i, h := range rs.HealthChecks {
		hpath := fmt.Sprintf("%s.health_checks[%d]", path, i)
		v.check(hpath, h)
		// "none" passes always: beside other checks it says nothing, and
		// as the only one it is the way to leave this server unchecked.
		if h.Kind == "none" && len(rs.HealthChecks) > 1 {
			v.add(hpath+".kind", "none cannot be one of several checks; it must be the only one")
		}
		for j, o := range rs.HealthChecks[:i] {
			if proto.Equal(h, o) {
				v.add(hpath, "same check as health_checks[%d]", j)
				break
			}
		}
	}
}

func (v *validator) check(path string, h *shoalv1.HealthCheck) {
	v.oneOf(path, ".kind", h.Kind, CheckKinds)
	v.positive(path, ".interval", h.Interval)
	v.positive(path, ".timeout", h.Timeout)
	v.duration(path, ".reentry", h.Reentry)
	v.duration(path, ".down_after", h.DownAfter)
	if h.Rise < 1 {
		v.add(path+".rise", "must be at least 1")
	}
	if h.Fall < 1 {
		v.add(path+".fall", "must be at least 1")
	}
	if h.Regex {
		if _, err := regexp.Compile(h.Expect); err != nil {
			v.add(path+".expect", "regex: %v", err)
		}
	}
	// That the program is an absolute path is Admit's rule, not this one's:
	// entries committed before it must replay the same way.
	if h.Kind == "exec" && (len(h.Command) == 0 || strings.TrimSpace(h.Command[0]) == "") {
		v.add(path+".command", "required for an exec check")
	}
	if h.HttpStatus != 0 && (h.HttpStatus < 100 || h.HttpStatus > 599) {
		v.add(path+".http_status", "%d is outside 100..599", h.HttpStatus)
	}
	if h.Port > 65535 {
		v.add(path+".port", "%d is outside 0..65535", h.Port)
	}
}

func (v *validator) oneOf(path, name, value string, allowed []string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	v.add(path+name, "%q is not one of %s", value, strings.Join(allowed, " "))
}

// interfaceProblem applies the kernel's dev_valid_name rule.
func interfaceProblem(name string) string {
	switch {
	case name == "":
		return "empty interface name"
	case len(name) > 15:
		return strconv.Quote(name) + " is longer than 15 bytes"
	case name == "." || name == "..":
		return strconv.Quote(name) + " is not an interface name"
	case strings.ContainsAny(name, "/: \t\n\r\v\f"):
		return strconv.Quote(name) + " contains '/', ':' or white space"
	}
	return ""
}

func family(ip netip.Addr) string {
	if ip.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// serviceFamily is the address family of a service: its VIP's, or for a
// fwmark service without a VIP its first real server's, else IPv4.
func serviceFamily(s *shoalv1.VirtualService, vip netip.Addr, ok bool) string {
	if ok {
		return family(vip)
	}
	for _, rs := range s.RealServers {
		if ip, err := netip.ParseAddr(rs.GetAddress()); err == nil {
			return family(ip)
		}
	}
	return "IPv4"
}

// SameKeys says that two versions of a service have the keys another
// service could collide with (VIP, port, protocol, fwmark) and the
// announce mode the same: a change that keeps them is judged, by
// ValidateService, without looking at any other service.
func SameKeys(before, after *shoalv1.VirtualService) bool {
	return before.GetFwmark() == after.GetFwmark() && before.GetPort() == after.GetPort() &&
		before.GetProtocol() == after.GetProtocol() && before.GetVip().GetAddress() == after.GetVip().GetAddress() &&
		before.GetAnnounce() == after.GetAnnounce()
}

// ValidateService is Validate(c) for the c that a valid configuration old
// becomes when its service named name is replaced by after (normalised):
// added when old has no such service, removed when after is nil; whole
// builds that c. It gives exactly Validate's answer at the cost of one
// service: it checks that service and the services it could collide with
// (same VIP, port and protocol, or same fwmark), and when it finds
// anything, or anything it cannot rule out, it runs Validate(whole())
// whole, so that errors come in Validate's words and order. Otherwise it
// never calls whole: a caller that only judges a change need not build
// the configuration after it (a copy of the list of every service).
//
// It relies on old's services being sorted by name, as Normalize leaves
// them, and on every other service having passed Validate already:
// nothing about one service depends on another except the name and the
// keys checked here. When the service's keys (and announce mode) are the
// same as before, the others cannot collide with it now either, and they
// are not looked at, so changing a real server costs one service. A
// service that shares its VIP with another, or is announced by bgp
// without a speaker, or is named by a hook when removed, is judged whole.
//
// Keep it so: a new rule that judges a service against the global
// settings or against other services (a name referenced elsewhere, a
// shared resource) must be checked here too, for a change, an addition
// and a removal, or make this fall back to Validate when it may apply.
// TestIncrementalMatchesWhole in raftfsm compares the two.
func ValidateService(old *shoalv1.Config, name string, after *shoalv1.VirtualService, whole func() *shoalv1.Config) error {
	ss := old.GetServices()
	i, found := slices.BinarySearchFunc(ss, name, func(s *shoalv1.VirtualService, name string) int {
		return strings.Compare(s.GetName(), name)
	})
	if after == nil {
		// Removed (or never there): taking a service away cannot make
		// the others collide, but a hook may name it.
		for _, h := range old.GetGlobal().GetHooks() {
			if h.GetService() == name {
				return Validate(whole())
			}
		}
		return nil
	}
	// after's neighbours once it is in place: where before was, or where
	// the sort by name puts a new one.
	var before, prev, next *shoalv1.VirtualService
	if i > 0 {
		prev = ss[i-1]
	}
	if found {
		before = ss[i]
		if i+1 < len(ss) {
			next = ss[i+1]
		}
	} else if i < len(ss) {
		next = ss[i]
	}
	s := after
	switch {
	case !serviceName.MatchString(s.Name), s.Name != name,
		prev.GetName() == name, next.GetName() == name:
		return Validate(whole())
	}
	v := &validator{}
	v.service(servicePath(i, s), s)
	v.serviceBGP(servicePath(i, s), old, s)
	if len(v.errs) > 0 {
		return Validate(whole())
	}
	// In bgp mode the global settings must have a speaker with peers.
	if b := old.GetGlobal().GetBgp(); ServiceAnnounce(old, s) == AnnounceBGP && (b == nil || len(b.GetPeers()) == 0) {
		return Validate(whole())
	}
	if before != nil && SameKeys(before, s) {
		return nil
	}
	// A cheap screen of every other service: it may let through more
	// than a true collision (then Validate decides), never fewer, since
	// normalised addresses are in netip's canonical spelling.
	for _, o := range ss {
		if o == before || o == nil {
			continue
		}
		// Services of one VIP must also share its announce mode.
		sameVIP := s.GetVip().GetAddress() != "" && o.GetVip().GetAddress() == s.GetVip().GetAddress()
		if s.Fwmark > 0 && o.Fwmark == s.Fwmark || sameVIP {
			return Validate(whole())
		}
	}
	return nil
}
