package migrate

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// keepalived's own defaults, applied where a file leaves a setting out so
// that an imported server is checked as keepalived checked it.
const (
	kaDefaultDelayLoop      = 60 * time.Second
	kaDefaultConnectTimeout = 5 * time.Second
	kaDefaultRetry          = 1   // MISC_CHECK: 0, DNS_CHECK: 3
	kaDefaultPersistence    = 360 // seconds, IPVS_SVC_PERSISTENT_TIMEOUT
	kaMaxWeight             = 65535
	kaMaxIncludeDepth       = 8
)

func (im *importer) kaStrict(n *kaNode, format string, a ...any) {
	saved := im.file
	im.file = n.file
	im.strictf(n.line, format, a...)
	im.file = saved
}

func (im *importer) kaNote(n *kaNode, key, format string, a ...any) {
	im.res.Notes = append(im.res.Notes, Note{File: n.file, Line: n.line, Key: key, Text: fmt.Sprintf(format, a...)})
}

// kaMark records where a field was set, in the file that set it (an
// included file names itself).
func (im *importer) kaMark(path string, n *kaNode) { im.markAt(path, n.file, n.line) }

// kaTopNotes explains why whole top-level blocks are not imported.
var kaTopNotes = map[string]string{
	"global_defs":         "not imported: router_id, notification and script settings are replaced by lvsd flags (--id, --log-level)",
	"vrrp_script":         "not imported: shoal nodes do not track scripts; leadership follows Raft and global.monitor_links",
	"vrrp_sync_group":     "not imported: replaced by Raft leader election (one leader holds every VIP); its notify scripts become hooks",
	"static_ipaddress":    "not imported: static addresses are the host's business, not the cluster's",
	"static_routes":       "not imported: static routes are the host's business, not the cluster's",
	"static_rules":        "not imported: static rules are the host's business, not the cluster's",
	"linkbeat_interfaces": "not imported: shoal watches links through global.monitor_links",
	"garp_group":          "not imported: GARP is tuned by global.garp_count/garp_interval/garp_refresh",
	"vrrp_track_file":     "not imported: shoal nodes do not track files",
	"track_file":          "not imported: shoal nodes do not track files",
	"bfd_instance":        "not imported: shoal does not run BFD",
	"SSL":                 "not imported: shoal's https checks present no client certificate; set health_check.tls_skip_verify or tls_server_name instead",
	"net_namespace":       "not imported: run lvsd inside the namespace instead",
}

type kaVRRPAddr struct {
	node   *kaNode
	addr   netip.Addr
	prefix uint32
	iface  string
	label  string
	used   bool
}

func (im *importer) keepalived(data []byte) *shoalv1.Config {
	nodes := im.kaParse(im.file, im.kaLex(im.file, string(data)), 0)
	c := &shoalv1.Config{Global: &shoalv1.Global{}}
	var vrrp []*kaVRRPAddr
	var links []string
	var servers []*kaNode
	groups := map[string]*kaNode{}
	sync := &kaSyncState{vrids: map[string]uint32{}}
	for _, n := range nodes {
		switch kw := n.args[0]; {
		case kw == "vrrp_instance":
			vrrp = append(vrrp, im.kaVRRP(n, &links, sync)...)
		case kw == "virtual_server":
			servers = append(servers, n)
		case kw == "virtual_server_group" && len(n.args) == 2 && n.kids != nil:
			groups[n.args[1]] = n
		case kw == "global_defs" && n.kids != nil:
			im.kaGlobalDefs(n, sync)
		case kw == "vrrp_sync_group" && n.kids != nil:
			im.kaSyncGroup(n)
		case kaTopNotes[kw] != "":
			im.kaNote(n, n.key(), "%s", kaTopNotes[kw])
		case strings.HasPrefix(kw, "$") || strings.HasPrefix(kw, "@"):
			im.kaStrict(n, "%s: configuration macros and conditionals are not supported; expand them first", kw)
		default:
			im.kaStrict(n, "unknown top-level keyword %q", kw)
		}
	}
	if links != nil {
		c.Global.MonitorLinks = links
		im.setGlobal("monitor_links")
	}
	im.kaSync(c, append(sync.decls, sync.legacy...), sync.vrids)
	names := map[string]*kaNode{}
	used := map[string]bool{}
	for _, n := range servers {
		for _, s := range im.kaVirtual(n, groups, used) {
			if prev, dup := names[s.Name]; dup {
				im.kaStrict(n, "virtual_server %s (%s) is already defined on line %d", strings.Join(n.args[1:], " "), s.Name, prev.line)
				continue
			}
			names[s.Name] = n
			c.Services = append(c.Services, s)
		}
	}
	for name, g := range groups {
		if !used[name] {
			im.kaNote(g, g.key(), "not imported: no virtual_server uses it (keepalived programs nothing for it either)")
		}
	}
	// VIPs take their interface and prefix from the VRRP address that
	// carries them.
	for _, s := range c.Services {
		if s.Vip == nil {
			continue
		}
		for _, v := range vrrp {
			if v.addr.String() == s.Vip.Address {
				s.Vip.PrefixLength, s.Vip.Interface, s.Vip.Label = v.prefix, v.iface, v.label
				v.used = true
				break
			}
		}
	}
	// A floating address on the NAT real servers' own network is their
	// gateway: the NAT router.
	for _, v := range vrrp {
		if v.used {
			continue
		}
		if c.Global.NatRouter == nil && natRouterFor(c, v) {
			c.Global.NatRouter = &shoalv1.Address{Address: v.addr.String(), PrefixLength: v.prefix, Interface: v.iface, Label: v.label}
			im.setGlobal("nat_router")
			im.kaMark("global.nat_router", v.node)
			im.kaNote(v.node, "virtual_ipaddress", "%s is on the network of NAT real servers: imported as global.nat_router", v.addr)
			continue
		}
		im.kaNote(v.node, "virtual_ipaddress", "%s not imported: no virtual_server uses it (a fwmark service's address must be set as its vip by hand)", v.addr)
	}
	im.kaMergeHooks(c) // after the services: their real servers notify too
	return c
}

func natRouterFor(c *shoalv1.Config, v *kaVRRPAddr) bool {
	if v.prefix == 0 || v.prefix == 32 || v.prefix == 128 {
		return false
	}
	pfx := netip.PrefixFrom(v.addr, int(v.prefix)).Masked()
	for _, s := range c.Services {
		for _, rs := range s.RealServers {
			f := rs.Forward
			if f == "" {
				f = fwd(s.Forward)
			}
			if a, err := netip.ParseAddr(rs.Address); err == nil && f == "nat" && pfx.Contains(a) {
				return true
			}
		}
	}
	return false
}

// kaSyncState gathers what keepalived.conf says of the sync daemon:
// global_defs' lvs_sync_daemon, the older per-instance
// lvs_sync_daemon_interface, and each instance's virtual_router_id.
type kaSyncState struct {
	decls  []*kaSyncDecl
	legacy []*kaSyncDecl
	vrids  map[string]uint32
}

// kaGlobalDefs imports lvs_sync_daemon and notes the rest of global_defs.
func (im *importer) kaGlobalDefs(n *kaNode, sync *kaSyncState) {
	rest := false
	for _, k := range n.kids {
		if k.args[0] == "lvs_sync_daemon" {
			if d := im.kaSyncDaemon(k); d != nil {
				sync.decls = append(sync.decls, d)
			}
			continue
		}
		rest = true
	}
	if rest || len(n.kids) == 0 {
		im.kaNote(n, n.key(), "%s", kaTopNotes["global_defs"])
	}
}

func (im *importer) kaVRRP(n *kaNode, links *[]string, sync *kaSyncState) []*kaVRRPAddr {
	iface := ""
	var ignored []string
	var addrs []*kaNode
	name := ""
	if len(n.args) > 1 {
		name = n.args[1]
	}
	for _, k := range n.kids {
		switch k.args[0] {
		case "lvs_sync_daemon_interface":
			if len(k.args) != 2 {
				im.kaStrict(k, "lvs_sync_daemon_interface wants one device")
				continue
			}
			sync.legacy = append(sync.legacy, &kaSyncDecl{node: k, instance: name,
				cs: &shoalv1.ConnectionSync{Enabled: true, Interface: k.args[1]}})
		case "virtual_router_id":
			if len(k.args) == 2 {
				if id, err := parseUint(k.args[1], 255); err == nil && name != "" {
					sync.vrids[name] = uint32(id)
				}
			}
			ignored = append(ignored, k.args[0])
		case "interface":
			if len(k.args) != 2 {
				im.kaStrict(k, "interface wants one device")
				continue
			}
			iface = k.args[1]
		case "virtual_ipaddress", "virtual_ipaddress_excluded":
			addrs = append(addrs, k.kids...)
		case "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify":
			im.kaHook(k, "", "")
		case "track_interface":
			for _, t := range k.kids {
				if !contains(*links, t.args[0]) {
					*links = append(*links, t.args[0])
				}
			}
			if *links == nil {
				*links = []string{}
			}
		default:
			ignored = append(ignored, k.args[0])
		}
	}
	if len(ignored) > 0 {
		im.kaNote(n, n.key(), "%s not imported: replaced by Raft leader election; the addresses become VIP interfaces and prefixes", strings.Join(ignored, ", "))
	}
	if iface == "" {
		im.kaStrict(n, "%s has no interface", n.key())
	}
	var out []*kaVRRPAddr
	for _, a := range addrs {
		v := &kaVRRPAddr{node: a, iface: iface}
		addr, pfx, _ := strings.Cut(a.args[0], "/")
		ip, err := parseAddr(addr)
		if err != nil {
			im.kaStrict(a, "virtual_ipaddress: %v", err)
			continue
		}
		v.addr = ip
		if pfx != "" {
			p, err := parseMask(pfx, ip.Is6())
			if err != nil {
				im.kaStrict(a, "virtual_ipaddress: %v", err)
				continue
			}
			v.prefix = p
		}
		for i := 1; i+1 < len(a.args); i += 2 {
			switch a.args[i] {
			case "dev":
				v.iface = a.args[i+1]
			case "label":
				v.label = a.args[i+1]
			}
		}
		out = append(out, v)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// kaServiceName names a keepalived virtual_server, which has no name of its
// own, after what identifies it.
func kaServiceName(proto, addr string, port uint32, fwmark uint32) string {
	if fwmark != 0 {
		return fmt.Sprintf("fwmark-%d", fwmark)
	}
	return fmt.Sprintf("%s-%s-%d", proto, strings.ReplaceAll(addr, ":", "-"), port)
}

var kaForward = map[string]string{"NAT": "nat", "DR": "dr", "TUN": "tun"}

// kaInherit is what a virtual_server hands down to its real servers and a
// real server to its checkers: in keepalived "the virtual server setting is
// the default for real servers, and the real server setting is the default
// for checkers".
type kaInherit struct {
	delayLoop   time.Duration
	vsDelayLoop time.Duration // MISC_CHECK's default timeout: the virtual server's delay_loop
	timeout     time.Duration
	retry       *uint64
	alpha       bool
	inhibit     bool
	host        string
}

// kaVSNotes are virtual_server keys shoal has no place for, with why.
var kaVSNotes = map[string]string{
	"ha_suspend":           "not imported: every shoal node keeps IPVS in sync whether it leads or not, and checks run everywhere",
	"ops":                  "not imported: one-packet scheduling (ipvsadm -o) is not in shoal's model",
	"hashed":               "not imported: scheduler flags (ipvsadm -b) are not in shoal's model",
	"flag-1":               "not imported: scheduler flags (ipvsadm -b) are not in shoal's model",
	"flag-2":               "not imported: scheduler flags (ipvsadm -b) are not in shoal's model",
	"flag-3":               "not imported: scheduler flags (ipvsadm -b) are not in shoal's model",
	"sh-port":              "not imported: scheduler flags (ipvsadm -b) are not in shoal's model",
	"sh-fallback":          "not imported: scheduler flags (ipvsadm -b) are not in shoal's model",
	"mh-port":              "not imported: scheduler flags (ipvsadm -b) are not in shoal's model",
	"mh-fallback":          "not imported: scheduler flags (ipvsadm -b) are not in shoal's model",
	"persistence_engine":   "not imported: persistence engines (sip) are not in shoal's model",
	"omega":                "not imported: shoal runs no quorum or notify scripts",
	"quorum":               "not imported: shoal has no quorum; the sorry server is used when no real server is up (keepalived's default quorum 1)",
	"hysteresis":           "not imported: shoal has no quorum",
	"quorum_up":            "not imported: shoal runs no quorum scripts",
	"quorum_down":          "not imported: shoal runs no quorum scripts",
	"smtp_alert":           "not imported: shoal sends no mail; watch lvsctl status or the metrics",
	"snmp_name":            "not imported: shoal has no SNMP agent; services are named instead",
	"sorry_server_inhibit": "not imported: the sorry server is added only while every real server is out, never kept at weight 0",
	"ip_family":            "not imported: the family follows the addresses",
	"delay_before_retry":   "not imported: shoal retries at the check interval (fall = retry + 1 consecutive failures)",
	"warmup":               "not imported: shoal checks a new server at once, without a random delay",
}

// kaTimer reads a <TIMER> value, or says why not.
func (im *importer) kaTimer(k *kaNode) (time.Duration, bool) {
	if len(k.args) < 2 {
		im.kaStrict(k, "%s wants a time in seconds", k.args[0])
		return 0, false
	}
	d, err := parseTimer(k.args[1])
	if err != nil {
		im.kaStrict(k, "%s: %v", k.args[0], err)
		return 0, false
	}
	return d, true
}

// kaUint reads a whole number between lo and hi.
func (im *importer) kaUint(k *kaNode, lo, hi uint64) (uint64, bool) {
	if len(k.args) < 2 {
		im.kaStrict(k, "%s wants a number", k.args[0])
		return 0, false
	}
	n, err := parseUint(k.args[1], hi)
	if err == nil && n < lo {
		err = fmt.Errorf("%q is below %d", k.args[1], lo)
	}
	if err != nil {
		im.kaStrict(k, "%s: %v", k.args[0], err)
		return 0, false
	}
	return n, true
}

// kaBool reads keepalived's optional <BOOL>: the keyword alone is true.
func (im *importer) kaBool(k *kaNode) (bool, bool) {
	if len(k.args) < 2 {
		return true, true
	}
	switch k.args[1] {
	case "true", "on", "yes":
		return true, true
	case "false", "off", "no":
		return false, true
	}
	im.kaStrict(k, "%s: %q is not one of on off true false yes no", k.args[0], k.args[1])
	return false, false
}

// kaMethod reads lvs_method NAT|DR|TUN [type ipip|gue port N|gre]
// [nocsum|csum|remcsum]. keepalived wants the method in capitals and
// ignores (with an error) anything else, so the import refuses it.
func (im *importer) kaMethod(k *kaNode) (string, bool) {
	if len(k.args) < 2 {
		im.kaStrict(k, "%s wants NAT, DR or TUN", k.args[0])
		return "", false
	}
	f, ok := kaForward[k.args[1]]
	if !ok {
		im.kaStrict(k, "%s %s: keepalived wants NAT, DR or TUN, in capitals", k.args[0], k.args[1])
		return "", false
	}
	for i := 2; i < len(k.args); i++ {
		switch a := k.args[i]; {
		case a == "type" && i+1 < len(k.args) && k.args[i+1] == "ipip" && f == "tun":
			i++
		case a == "nocsum" && f == "tun":
		default:
			im.kaStrict(k, "%s: %s cannot be expressed: shoal tunnels with IP-in-IP only (no GUE, GRE or checksum options)", k.args[0], strings.Join(k.args[2:], " "))
			return "", false
		}
	}
	return f, true
}

// kaCommon reads the settings a virtual_server, a real_server and a checker
// all accept into inh; it reports whether kw was one of them.
func (im *importer) kaCommon(k *kaNode, inh *kaInherit, level string) bool {
	switch k.args[0] {
	case "delay_loop":
		if d, ok := im.kaTimer(k); ok {
			inh.delayLoop = d
			if level == "virtual_server" {
				inh.vsDelayLoop = d
			}
		}
	case "connect_timeout":
		if level == "MISC_CHECK" {
			return false
		}
		if d, ok := im.kaTimer(k); ok {
			inh.timeout = d
		}
	case "retry", "nb_get_retry":
		if k.args[0] == "nb_get_retry" && level != "HTTP_GET" && level != "SSL_GET" {
			return false
		}
		lo := uint64(0)
		if level == "virtual_server" {
			lo = 1 // vs_retry_handler's minimum
		}
		if r, ok := im.kaUint(k, lo, 1<<32-1); ok {
			inh.retry = &r
		}
	case "alpha":
		if level == "virtual_server" {
			inh.alpha = true // takes no value there
			return true
		}
		if b, ok := im.kaBool(k); ok {
			inh.alpha = b
		}
	case "delay_before_retry", "warmup":
		if len(k.args) > 1 && strings.Trim(k.args[1], "0.") == "" && strings.Contains(k.args[1], "0") {
			im.kaNote(k, k.args[0], "%s", kaVSNotes[k.args[0]]) // 0 is allowed here: no delay
		} else if _, ok := im.kaTimer(k); ok {
			im.kaNote(k, k.args[0], "%s", kaVSNotes[k.args[0]])
		}
	default:
		return false
	}
	return true
}

// kaVSID is what identifies one virtual service: an address and port, or
// a firewall mark.
type kaVSID struct {
	vip    netip.Addr
	port   uint32
	fwmark uint32
}

// kaVirtual reads a virtual_server: one service, or one per address and
// firewall mark of the virtual_server_group it names, each with the same
// settings and real servers, which is what keepalived programs.
func (im *importer) kaVirtual(n *kaNode, groups map[string]*kaNode, used map[string]bool) []*shoalv1.VirtualService {
	var ids []kaVSID
	switch {
	case len(n.args) == 3 && n.args[1] == "fwmark":
		m, err := parseUint(n.args[2], 1<<32-1)
		if err != nil || m == 0 {
			im.kaStrict(n, "virtual_server fwmark: %q is not a firewall mark", n.args[2])
			return nil
		}
		ids = []kaVSID{{fwmark: uint32(m)}}
	case len(n.args) == 3 && n.args[1] == "group":
		g := groups[n.args[2]]
		used[n.args[2]] = true
		if g == nil {
			im.kaStrict(n, "virtual_server group %s: no virtual_server_group %s", n.args[2], n.args[2])
			return nil
		}
		ids = im.kaGroup(g)
		if ids == nil {
			return nil
		}
	case len(n.args) == 2 || len(n.args) == 3:
		id, ok := im.kaAddrPort(n, n.args[1], n.args[2:], "virtual_server")
		if !ok {
			return nil
		}
		ids = []kaVSID{id}
	default:
		im.kaStrict(n, "virtual_server wants ADDRESS PORT, fwmark N or group NAME")
		return nil
	}
	if n.kids == nil {
		im.kaStrict(n, "virtual_server without a block")
		return nil
	}
	var out []*shoalv1.VirtualService
	for _, id := range ids {
		s := &shoalv1.VirtualService{Fwmark: id.fwmark, Port: id.port}
		if id.vip.IsValid() {
			s.Vip = &shoalv1.Address{Address: id.vip.String()}
		}
		if s = im.kaVirtualBody(n, s); s != nil {
			out = append(out, s)
		}
	}
	return out
}

// kaPort reads a port as keepalived does: a number, 0 meaning none.
func kaPort(s string) (uint32, error) {
	p, err := parseUint(s, 65535)
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	return uint32(p), nil
}

// kaAddrPort reads ADDRESS PORT of a virtual_server or group entry. A
// service without a port (persistent on every port) cannot be expressed.
func (im *importer) kaAddrPort(n *kaNode, addr string, port []string, what string) (kaVSID, bool) {
	a, err := parseAddr(addr)
	if err != nil {
		im.kaStrict(n, "%s: %v", what, err)
		return kaVSID{}, false
	}
	p := uint32(0)
	if len(port) > 0 {
		if p, err = kaPort(port[0]); err != nil {
			im.kaStrict(n, "%s: %v", what, err)
			return kaVSID{}, false
		}
	}
	if p == 0 {
		im.kaStrict(n, "%s %s without a port (a persistent service on every port) cannot be expressed: shoal's address services have one port; use a fwmark service", what, addr)
		return kaVSID{}, false
	}
	return kaVSID{vip: a, port: p}, true
}

// kaMaxGroup bounds what one virtual_server_group expands to: shoal has no
// address ranges, so each address is a service of its own.
const kaMaxGroup = 256

// kaGroup expands a virtual_server_group: addresses, ranges (A-N on the
// last byte, or the last 16 bits in hex for IPv6; A-B; A/N) with their
// port, and firewall marks.
func (im *importer) kaGroup(g *kaNode) []kaVSID {
	var ids []kaVSID
	bad := false
	for _, e := range g.kids {
		if e.args[0] == "fwmark" {
			if len(e.args) < 2 || len(e.args) > 3 {
				im.kaStrict(e, "fwmark wants a mark and maybe inet or inet6")
				bad = true
				continue
			}
			m, err := parseUint(e.args[1], 1<<32-1)
			if err != nil || m == 0 {
				im.kaStrict(e, "fwmark: %q is not a firewall mark", e.args[1])
				bad = true
				continue
			}
			if len(e.args) == 3 {
				im.kaNote(e, "fwmark", "%s not imported: a fwmark service's family follows its addresses", e.args[2])
			}
			ids = append(ids, kaVSID{fwmark: uint32(m)})
			continue
		}
		addrs, err := kaRange(e.args[0])
		if err != nil {
			im.kaStrict(e, "virtual_server_group %s: %v", e.args[0], err)
			bad = true
			continue
		}
		if len(ids)+len(addrs) > kaMaxGroup {
			im.kaStrict(e, "virtual_server_group expands to more than %d services: shoal has no address ranges; split it", kaMaxGroup)
			return nil
		}
		for _, a := range addrs {
			id, ok := im.kaAddrPort(e, a.String(), e.args[1:], "virtual_server_group entry")
			if !ok {
				bad = true
				break
			}
			ids = append(ids, id)
		}
	}
	if bad {
		return nil
	}
	return ids
}

// kaRange lists the addresses of a group entry.
func kaRange(s string) ([]netip.Addr, error) {
	if a, bits, ok := strings.Cut(s, "/"); ok {
		p, err := netip.ParsePrefix(a + "/" + bits)
		if err != nil || p.Bits() == 0 {
			return nil, fmt.Errorf("%q is not an address/prefix", s)
		}
		if p.Masked().Addr() != p.Addr() {
			return nil, fmt.Errorf("%q has host bits set", s)
		}
		if p.Addr().BitLen()-p.Bits() > 16 {
			return nil, fmt.Errorf("%q has too many addresses", s)
		}
		var out []netip.Addr
		for a := p.Addr(); p.Contains(a) && len(out) <= kaMaxGroup; a = a.Next() {
			out = append(out, a)
		}
		return out, nil
	}
	from, to, isRange := strings.Cut(s, "-")
	start, err := parseAddr(from)
	if err != nil {
		return nil, err
	}
	if !isRange {
		return []netip.Addr{start}, nil
	}
	var end netip.Addr
	if strings.ContainsAny(to, ".:") {
		if end, err = parseAddr(to); err != nil {
			return nil, err
		}
	} else {
		base, max := 10, uint64(255)
		if start.Is6() {
			base, max = 16, 0xffff
		}
		n, err := strconv.ParseUint(to, base, 64)
		if err != nil || n > max {
			return nil, fmt.Errorf("%q is not a range end", to)
		}
		b := start.AsSlice()
		if start.Is6() {
			b[14], b[15] = byte(n>>8), byte(n)
		} else {
			b[3] = byte(n)
		}
		end, _ = netip.AddrFromSlice(b)
	}
	if end.Is4() != start.Is4() || end.Less(start) {
		return nil, fmt.Errorf("%q is not a range", s)
	}
	var out []netip.Addr
	for a := start; !end.Less(a) && len(out) <= kaMaxGroup; a = a.Next() {
		out = append(out, a)
	}
	return out, nil
}

func (im *importer) kaVirtualBody(n *kaNode, s *shoalv1.VirtualService) *shoalv1.VirtualService {
	inh := kaInherit{delayLoop: kaDefaultDelayLoop, vsDelayLoop: kaDefaultDelayLoop, timeout: kaDefaultConnectTimeout}
	var weight *uint32
	granularity := false
	var sorry, sorryMethod *kaNode
	var reals []*kaNode
	lines := map[string]*kaNode{}
	for _, k := range n.kids {
		kw := k.args[0]
		arg := ""
		if len(k.args) > 1 {
			arg = k.args[1]
		}
		needArg := func() bool {
			if len(k.args) < 2 {
				im.kaStrict(k, "%s wants a value", kw)
				return false
			}
			return true
		}
		if im.kaCommon(k, &inh, "virtual_server") {
			if kw == "delay_loop" {
				lines["health_check.interval"] = k
			}
			continue
		}
		switch kw {
		case "lb_algo", "lvs_sched":
			if !needArg() {
				continue
			}
			s.Scheduler = arg // keepalived's names are lower case, as shoal's
			lines["scheduler"] = k
			if len(k.args) > 2 {
				im.kaNote(k, kw, "%s not imported: keepalived ignores words after the scheduler", strings.Join(k.args[2:], " "))
			}
		case "lb_kind", "lvs_method":
			if f, ok := im.kaMethod(k); ok {
				s.Forward = f
				lines["forward"] = k
			}
		case "persistence_timeout":
			if len(k.args) == 1 {
				s.PersistenceTimeout = kaDefaultPersistence
			} else if t, ok := im.kaUint(k, 1, 1<<32-1); ok {
				s.PersistenceTimeout = uint32(t)
			}
			lines["persistence_timeout"] = k
		case "persistence_granularity":
			if !needArg() {
				continue
			}
			// keepalived reads a dotted mask for IPv4 and a prefix length
			// for IPv6 (a fwmark service: by whether it has a dot).
			v6 := s.Vip != nil && isV6(s.Vip.Address) || s.Vip == nil && !strings.Contains(arg, ".")
			p, err := parseMask(arg, v6)
			if err != nil {
				im.kaStrict(k, "persistence_granularity: %v", err)
				continue
			}
			if s.Vip != nil && p == uint32(addrBits(s.Vip.Address)) || s.Vip == nil && (p == 32 && !v6 || p == 128) {
				p = 0 // a single address, as the model spells it
			}
			s.PersistencePrefix = p
			granularity = true
			lines["persistence_prefix"] = k
		case "protocol":
			if !needArg() {
				continue
			}
			s.Protocol = strings.ToLower(arg)
			lines["protocol"] = k
		case "sorry_server":
			if len(k.args) < 2 || len(k.args) > 3 {
				im.kaStrict(k, "sorry_server wants ADDRESS [PORT]")
				continue
			}
			sorry = k
		case "sorry_server_lvs_method":
			sorryMethod = k
		case "virtualhost":
			if needArg() {
				inh.host = arg
			}
		case "inhibit_on_failure":
			inh.inhibit = true // takes no value here
		case "weight":
			if w, ok := im.kaUint(k, 1, kaMaxWeight); ok {
				w32 := uint32(w)
				weight = &w32
			}
		case "real_server":
			reals = append(reals, k)
		default:
			if why, ok := kaVSNotes[kw]; ok {
				im.kaNote(k, kw, "%s", why)
				continue
			}
			im.kaStrict(k, "unknown keyword %q in virtual_server", kw)
		}
	}
	if granularity && s.PersistenceTimeout == 0 {
		// keepalived makes a service with a granularity persistent.
		s.PersistenceTimeout = kaDefaultPersistence
		lines["persistence_timeout"] = lines["persistence_prefix"]
	}
	protocol := s.Protocol
	if protocol == "" {
		protocol = config.DefaultProtocol
	}
	s.Name = kaServiceName(protocol, s.GetVip().GetAddress(), s.Port, s.Fwmark)
	sp := servicePath(s.Name)
	im.kaMark(sp, n)
	for f, k := range lines {
		im.kaMark(sp+"."+f, k)
	}
	if sorry != nil {
		im.kaSorry(s, sorry, sorryMethod)
	} else if sorryMethod != nil {
		im.kaNote(sorryMethod, sorryMethod.args[0], "not imported: there is no sorry_server")
	}

	var checks [][]*shoalv1.HealthCheck
	var nodes []*kaNode
	var quiesce []bool
	seen := map[string]*kaNode{}
	for _, k := range reals {
		rs, hcs, inhibit := im.kaReal(s, k, inh, weight)
		if rs == nil {
			continue
		}
		hp := hostPort(rs.Address, config.RealServerPort(s, rs))
		if prev, dup := seen[hp]; dup {
			im.kaStrict(k, "real_server %s is already defined on line %d", hp, prev.line)
			continue
		}
		seen[hp] = k
		s.RealServers = append(s.RealServers, rs)
		checks = append(checks, hcs)
		nodes = append(nodes, k)
		quiesce = append(quiesce, inhibit)
	}
	if len(checks) == 0 {
		// Nothing to check: say what keepalived would have checked with.
		s.Quiesce = inh.inhibit
		return s
	}
	s.Quiesce = quiesce[0]
	for i := 1; i < len(quiesce); i++ {
		if quiesce[i] != quiesce[0] {
			im.kaNote(nodes[i], "inhibit_on_failure", "set on some real servers only; shoal quiesces per service (%v, as on the first real server)", quiesce[0])
		}
	}
	kaServiceChecks(s, checks)
	return s
}

// kaServiceChecks gives the service a check (kaTemplate), and each real
// server that is not checked exactly that way (on the same port) its own
// health_checks: its checkers, or a single check of kind none for one
// without any. A service whose every real server has the same single check
// thus reads as keepalived's usual file is meant: one check for the
// service.
func kaServiceChecks(s *shoalv1.VirtualService, checks [][]*shoalv1.HealthCheck) {
	single := make([]*shoalv1.HealthCheck, len(checks))
	for i, hcs := range checks {
		single[i] = &shoalv1.HealthCheck{Kind: "none"}
		if len(hcs) == 1 {
			single[i] = hcs[0]
		}
	}
	kaTemplateCommands(s, single)
	s.HealthCheck = kaTemplate(s, checks)
	if s.HealthCheck.Kind == "none" {
		return // no real server is checked
	}
	for i, hcs := range checks {
		rs := s.RealServers[i]
		switch {
		case len(hcs) == 0:
			rs.HealthChecks = []*shoalv1.HealthCheck{{Kind: "none"}}
		case len(hcs) == 1 && sameCheck(s, rs, hcs[0], s.HealthCheck):
		default:
			rs.HealthChecks = hcs
		}
	}
}

// kaTemplate picks the service's check: the one the most real servers are
// checked with alone (a check on each server's own port counts as one), so
// that the fewest carry checks of their own. The choice must not depend on
// the order of the real servers, which the configuration sorts: ties go to
// the check whose encoding sorts first, and with no server checked by one
// check alone, to the smallest first check of a server with several.
func kaTemplate(s *shoalv1.VirtualService, checks [][]*shoalv1.HealthCheck) *shoalv1.HealthCheck {
	var best *shoalv1.HealthCheck
	bestN := 0
	var bestKey []byte
	consider := func(c *shoalv1.HealthCheck, n int) {
		key, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
		if best == nil || n > bestN || n == bestN && string(key) < string(bestKey) {
			best, bestN, bestKey = c, n, key
		}
	}
	for i, hcs := range checks {
		if len(hcs) != 1 {
			continue
		}
		t := proto.Clone(hcs[0]).(*shoalv1.HealthCheck)
		if checkPort(s, s.RealServers[i], t) == config.RealServerPort(s, s.RealServers[i]) {
			t.Port = 0 // each server's own port
		}
		n := 0
		for j, o := range checks {
			if len(o) == 1 && sameCheck(s, s.RealServers[j], o[0], t) {
				n++
			}
		}
		consider(t, n)
	}
	if best == nil {
		for i, hcs := range checks {
			if len(hcs) > 0 {
				t := proto.Clone(hcs[0]).(*shoalv1.HealthCheck)
				if checkPort(s, s.RealServers[i], t) == config.RealServerPort(s, s.RealServers[i]) {
					t.Port = 0
				}
				consider(t, 0)
			}
		}
	}
	if best == nil {
		return &shoalv1.HealthCheck{Kind: "none", InitiallyUp: true}
	}
	return best
}

// checkPort is the port hc checks rs on.
func checkPort(s *shoalv1.VirtualService, rs *shoalv1.RealServer, hc *shoalv1.HealthCheck) uint32 {
	if hc.Port != 0 {
		return hc.Port
	}
	return config.RealServerPort(s, rs)
}

// sameCheck reports whether a and b check rs the same way.
func sameCheck(s *shoalv1.VirtualService, rs *shoalv1.RealServer, a, b *shoalv1.HealthCheck) bool {
	if checkPort(s, rs, a) != checkPort(s, rs, b) {
		return false
	}
	a = proto.Clone(a).(*shoalv1.HealthCheck)
	b = proto.Clone(b).(*shoalv1.HealthCheck)
	a.Port, b.Port = 0, 0
	return proto.Equal(a, b)
}

// kaSorry reads sorry_server ADDR [PORT] and its sorry_server_lvs_method.
// As keepalived does, a sorry server that IPVS cannot send to another port
// (DR, TUN, or any fwmark service) loses its port.
func (im *importer) kaSorry(s *shoalv1.VirtualService, k, method *kaNode) {
	a, err := parseAddr(k.args[1])
	if err != nil {
		im.kaStrict(k, "sorry_server: %v", err)
		return
	}
	ss := &shoalv1.RealServer{Address: a.String()}
	if len(k.args) == 3 {
		p, err := kaPort(k.args[2])
		if err != nil {
			im.kaStrict(k, "sorry_server: %v", err)
			return
		}
		ss.Port = p
	}
	f := fwd(s.Forward)
	if method != nil {
		m, ok := im.kaMethod(method)
		if !ok {
			return
		}
		if m != f {
			ss.Forward = m
			f = m
		}
	}
	if ss.Port == s.Port {
		ss.Port = 0
	}
	if ss.Port != 0 && (f != "nat" || s.Fwmark != 0) {
		im.kaNote(k, "sorry_server", "port %d not imported: %s forwarding keeps the service's port, and keepalived resets it too", ss.Port, f)
		ss.Port = 0
	}
	s.SorryServer = ss
	im.kaMark(servicePath(s.Name)+".sorry_server", k)
}

// kaRSNotes are real_server keys shoal has no place for, with why.
var kaRSNotes = map[string]string{
	"smtp_alert": "not imported: shoal sends no mail; watch lvsctl status or the metrics",
	"snmp_name":  "not imported: shoal has no SNMP agent",
}

// kaReal reads a real_server: the server, the checks shoal can run of its
// checkers (in order, none when it has none), and its inhibit_on_failure.
func (im *importer) kaReal(s *shoalv1.VirtualService, n *kaNode, inh kaInherit, weight *uint32) (*shoalv1.RealServer, []*shoalv1.HealthCheck, bool) {
	if len(n.args) < 2 || len(n.args) > 3 {
		im.kaStrict(n, "real_server wants ADDRESS [PORT]")
		return nil, nil, false
	}
	a, err := parseAddr(n.args[1])
	if err != nil {
		im.kaStrict(n, "real_server: %v", err)
		return nil, nil, false
	}
	rs := &shoalv1.RealServer{Address: a.String(), Weight: weight}
	if len(n.args) == 3 {
		p, err := kaPort(n.args[2])
		if err != nil {
			im.kaStrict(n, "real_server: %v", err)
			return nil, nil, false
		}
		if p != s.Port {
			rs.Port = p // the same port as the service's is the model's 0
		}
	}
	var checkers []*kaNode
	var upper, lower, weightNode *kaNode
	notify := map[string]*kaNode{}
	var notifyKeys []string
	for _, k := range n.kids {
		kw := k.args[0]
		if im.kaCommon(k, &inh, "real_server") {
			continue
		}
		switch kw {
		case "weight":
			w, ok := im.kaUint(k, 0, kaMaxWeight)
			if !ok {
				continue
			}
			w32 := uint32(w)
			rs.Weight = &w32
			weightNode = k
		case "uthreshold", "lthreshold":
			// keepalived reads any unsigned 32-bit number; 0 is its default
			// and the kernel's "no limit".
			t, ok := im.kaUint(k, 0, 1<<32-1)
			if !ok {
				continue
			}
			if kw == "uthreshold" {
				rs.UpperThreshold, upper = uint32(t), k
			} else {
				rs.LowerThreshold, lower = uint32(t), k
			}
		case "notify_up", "notify_down":
			if prev := notify[kw]; prev != nil {
				im.kaNote(k, kw, "not imported: keepalived ignores a second %s (the one on line %d is used)", kw, prev.line)
				continue
			}
			notify[kw] = k
			notifyKeys = append(notifyKeys, kw)
		case "inhibit_on_failure":
			if b, ok := im.kaBool(k); ok {
				inh.inhibit = b
			}
		case "lvs_method":
			if f, ok := im.kaMethod(k); ok && f != fwd(s.Forward) {
				rs.Forward = f
			}
		case "virtualhost":
			if len(k.args) < 2 {
				im.kaStrict(k, "virtualhost wants a name")
				continue
			}
			inh.host = k.args[1]
		default:
			if kaCheckers[kw] {
				checkers = append(checkers, k)
				continue
			}
			if why, ok := kaRSNotes[kw]; ok {
				im.kaNote(k, kw, "%s", why)
				continue
			}
			im.kaStrict(k, "unknown keyword %q in real_server", kw)
		}
	}
	switch {
	case rs.LowerThreshold != 0 && rs.UpperThreshold == 0:
		// The kernel refuses a lower threshold without an upper one.
		im.kaNote(lower, "lthreshold", "not imported: without uthreshold there is no limit for it to end (the kernel refuses it alone)")
		rs.LowerThreshold, lower = 0, nil
	case rs.LowerThreshold > rs.UpperThreshold:
		// An error; with --lenient, the lthreshold line is what is skipped.
		im.kaStrict(lower, "lthreshold %d is above uthreshold %d: the kernel refuses it", rs.LowerThreshold, rs.UpperThreshold)
		rs.LowerThreshold, lower = 0, nil
	}
	// Every checker shoal can run, in order; a real server is up while
	// all of them pass, as in keepalived.
	var checks []*shoalv1.HealthCheck
	var checkNodes []*kaNode
next:
	for i, c := range im.kaChecks(checkers, inh) {
		if c == nil {
			continue
		}
		for j, o := range checks {
			if proto.Equal(c, o) {
				im.kaNote(checkers[i], checkers[i].args[0], "not imported: the same check as the %s on line %d", checkNodes[j].args[0], checkNodes[j].line)
				continue next
			}
		}
		checks = append(checks, c)
		checkNodes = append(checkNodes, checkers[i])
	}
	if len(checks) == 0 && len(checkers) > 0 {
		im.kaNote(n, "real_server "+strings.Join(n.args[1:], " "), "not health-checked after the import: shoal cannot run any of its checkers; add a check by hand")
	}
	// Direct routing and tunnelling deliver packets on the service's port
	// (any port for a fwmark service); keepalived used the real server's
	// port only to check it, so that is what it becomes.
	if f := orDefault(rs.Forward, fwd(s.Forward)); (f == "dr" || f == "tun") && rs.Port != 0 && rs.Port != s.Port {
		for _, hc := range checks {
			if hc.Port == 0 {
				hc.Port = rs.Port
			}
		}
		im.kaNote(n, "real_server "+strings.Join(n.args[1:], " "), "port %d is not used by %s forwarding: it is only the check port", rs.Port, f)
		rs.Port = 0
	}
	rp := realServerPath(s, rs)
	im.kaMark(rp, n)
	for f, k := range map[string]*kaNode{"weight": weightNode, "upper_threshold": upper, "lower_threshold": lower} {
		if k != nil {
			im.kaMark(rp+"."+f, k)
		}
	}
	for i, k := range checkNodes {
		im.kaMark(fmt.Sprintf("%s.health_checks[%d]", rp, i), k)
	}
	for _, kw := range notifyKeys {
		im.kaHook(notify[kw], s.Name, hostPort(rs.Address, config.RealServerPort(s, rs)))
	}
	return rs, checks, inh.inhibit
}

// kaTemplateCommands undoes what keepalived makes people write: each real
// server's own address (and port) in its own misc_path, where shoal writes
// %h and %p once for the service. When the real servers' commands differ
// only by that, each becomes the one command with %h and %p, which shoal
// runs as the very same words for each server (kaMiscPath refused any %h or
// %p of the file's own). Commands that are all the same are kept as they
// are: they check the same thing from every server, as keepalived did.
func kaTemplateCommands(s *shoalv1.VirtualService, checks []*shoalv1.HealthCheck) {
	var execs []int
	for i, hc := range checks {
		if hc.Kind == "exec" {
			execs = append(execs, i)
		}
	}
	if len(execs) < 2 {
		return
	}
	same := true
	for _, i := range execs[1:] {
		same = same && slices.Equal(checks[i].Command, checks[execs[0]].Command)
	}
	if same {
		return
	}
	// The address alone first; the port too only if that is not enough,
	// so that a digit of a path is not taken for a port needlessly.
	for _, withPort := range []bool{false, true} {
		if t := kaTemplates(s, checks, execs, withPort); t != nil {
			for _, i := range execs {
				checks[i].Command = t[i]
			}
			return
		}
	}
}

func kaTemplates(s *shoalv1.VirtualService, checks []*shoalv1.HealthCheck, execs []int, withPort bool) map[int][]string {
	tmpl := make(map[int][]string, len(execs))
	for _, i := range execs {
		port := checks[i].Port
		if port == 0 {
			port = config.RealServerPort(s, s.RealServers[i])
		}
		for _, a := range checks[i].Command {
			a = strings.ReplaceAll(a, s.RealServers[i].Address, "%h")
			if withPort && port != 0 {
				a = strings.ReplaceAll(a, strconv.FormatUint(uint64(port), 10), "%p")
			}
			tmpl[i] = append(tmpl[i], a)
		}
		if !slices.Equal(tmpl[i], tmpl[execs[0]]) {
			return nil
		}
	}
	return tmpl
}

// kaSyncGroup reads a vrrp_sync_group's notify scripts; the rest of it
// (which instances move together) is Raft's business in shoal.
func (im *importer) kaSyncGroup(n *kaNode) {
	rest := false
	for _, k := range n.kids {
		switch k.args[0] {
		case "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify":
			im.kaHook(k, "", "")
		default:
			rest = true
		}
	}
	if rest || len(n.kids) == 0 {
		im.kaNote(n, n.key(), "%s", kaTopNotes["vrrp_sync_group"])
	}
}

// kaHookAt is an imported notify script and the line it came from.
type kaHookAt struct {
	hook *shoalv1.Hook
	node *kaNode
}

// kaHook reads a notify key as keepalived does (notify_script_init): its
// line is split with quotes kept, the second word split again with quotes
// and escapes into the program and its arguments, which keepalived execs
// without a shell; a third and fourth word are the user and group to run
// it as.
func (im *importer) kaHook(k *kaNode, service, realServer string) {
	words, err := kaSplitQuoted(k.raw, false)
	if err != nil || len(words) < 2 {
		im.kaStrict(k, "%s wants a command", k.args[0])
		return
	}
	h, err := KeepalivedHook(k.args[0], words[1], service, realServer)
	if err != nil {
		im.kaStrict(k, "%v", err)
		return
	}
	if len(words) > 2 {
		im.kaNote(k, k.args[0], "%s not imported: hooks run as the routers' lvsd --script-user", strings.Join(words[2:], " "))
	}
	im.kaHooks = append(im.kaHooks, kaHookAt{h, k})
}

// kaMergeHooks puts the notify scripts in global.hooks. keepalived runs a
// real server's notify_up or notify_down for that server only; when every
// real server of a service runs the same command for an event, that is
// one hook for the service. Hooks that run the same command for the same
// servers are one hook with all their events, and an event given twice
// (an instance and its sync group) runs once: shoal has one leader.
func (im *importer) kaMergeHooks(c *shoalv1.Config) {
	if len(im.kaHooks) == 0 {
		return
	}
	servers := map[string]int{}
	for _, s := range c.Services {
		servers[s.Name] = len(s.RealServers)
	}
	type key struct{ event, service, command string }
	count := map[key]int{}
	cmd := func(h *shoalv1.Hook) string { return strings.Join(h.Command, "\x00") }
	for _, at := range im.kaHooks {
		if at.hook.RealServer != "" {
			count[key{at.hook.Events[0], at.hook.Service, cmd(at.hook)}]++
		}
	}
	// The configuration sorts services and real servers; the hooks follow
	// that order (the routers' notify scripts first, as read), so that an
	// export, which writes them in that order, reads back the same.
	sorted := proto.Clone(c).(*shoalv1.Config)
	config.Normalize(sorted)
	rank := map[string]int{}
	for _, s := range sorted.Services {
		rank[s.Name] = len(rank) + 1
		for _, rs := range s.RealServers {
			rank[s.Name+"\x00"+hostPort(rs.Address, config.RealServerPort(s, rs))] = len(rank) + 1
		}
	}
	slices.SortStableFunc(im.kaHooks, func(a, b kaHookAt) int {
		ra := rank[a.hook.Service] + rank[a.hook.Service+"\x00"+a.hook.RealServer]
		rb := rank[b.hook.Service] + rank[b.hook.Service+"\x00"+b.hook.RealServer]
		return ra - rb
	})
	g := c.Global
	for _, at := range im.kaHooks {
		h := at.hook
		if n := servers[h.Service]; h.RealServer != "" && n > 1 && count[key{h.Events[0], h.Service, cmd(h)}] == n {
			h.RealServer = ""
		}
		i := slices.IndexFunc(g.Hooks, func(o *shoalv1.Hook) bool {
			return o.Service == h.Service && o.RealServer == h.RealServer && slices.Equal(o.Command, h.Command)
		})
		if i < 0 {
			g.Hooks = append(g.Hooks, h)
			im.kaMark(fmt.Sprintf("global.hooks[%d]", len(g.Hooks)-1), at.node)
			continue
		}
		if !slices.Contains(g.Hooks[i].Events, h.Events[0]) {
			g.Hooks[i].Events = append(g.Hooks[i].Events, h.Events[0])
		}
		im.kaMark(fmt.Sprintf("global.hooks[%d].events", i), at.node)
	}
	im.setGlobal("hooks")
}
