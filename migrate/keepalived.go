package migrate

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// keepalived's own defaults, applied where a file leaves a setting out so
// that an imported server is checked as keepalived checked it.
const (
	kaDefaultDelayLoop      = 60 * time.Second
	kaDefaultConnectTimeout = 5 * time.Second
	kaDefaultRetry          = 1 // MISC_CHECK: 0
	kaMaxIncludeDepth       = 8
)

// kaNode is one statement of keepalived.conf with its block, if any.
type kaNode struct {
	file string
	line int
	args []string
	kids []*kaNode
}

func (n *kaNode) key() string { return strings.Join(n.args, " ") }

type kaTok struct {
	s      string
	line   int
	eol    bool
	brace  byte // '{' or '}'
	quoted bool
}

func (im *importer) kaLex(file, text string) []kaTok {
	var toks []kaTok
	for i, line := range strings.Split(strings.TrimPrefix(text, "\ufeff"), "\n") {
		n := i + 1
		if !utf8.ValidString(line) {
			if !im.opt.Lenient {
				im.errs = append(im.errs, LineError{File: file, Line: n, Msg: "line is not valid UTF-8"})
				continue
			}
			line = strings.ToValidUTF8(line, "\uFFFD")
		}
		for j := 0; j < len(line); {
			c := line[j]
			switch {
			case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
				j++
			case c == '#' || c == '!':
				j = len(line)
			case c == '{' || c == '}':
				toks = append(toks, kaTok{line: n, brace: c})
				j++
			case c == '"':
				end := strings.IndexByte(line[j+1:], '"')
				if end < 0 {
					im.errs = append(im.errs, LineError{File: file, Line: n, Msg: "unterminated quote"})
					j = len(line)
					continue
				}
				toks = append(toks, kaTok{s: line[j+1 : j+1+end], line: n, quoted: true})
				j += end + 2
			default:
				k := j
				for k < len(line) && !strings.ContainsRune(" \t\r\f\v{}\"", rune(line[k])) {
					k++
				}
				toks = append(toks, kaTok{s: line[j:k], line: n})
				j = k
			}
		}
		toks = append(toks, kaTok{line: n, eol: true})
	}
	return toks
}

// kaParse turns tokens into statements. A block's "{" may close the
// statement's line or open the next one.
func (im *importer) kaParse(file string, toks []kaTok, depth int) []*kaNode {
	pos := 0
	var parse func(level int) []*kaNode
	parse = func(level int) []*kaNode {
		var out []*kaNode
		var cur *kaNode
		for pos < len(toks) {
			t := toks[pos]
			pos++
			switch {
			case t.eol:
				if cur != nil {
					out = append(out, im.kaInclude(file, cur, depth)...)
				}
				cur = nil
			case t.brace == '{':
				if cur == nil {
					// "{" alone on a line opens the block of the previous statement.
					if len(out) == 0 || out[len(out)-1].kids != nil {
						im.errs = append(im.errs, LineError{File: file, Line: t.line, Msg: "{ without a statement"})
						_ = parse(level + 1)
						continue
					}
					cur = out[len(out)-1]
					out = out[:len(out)-1]
				}
				cur.kids = parse(level + 1)
				if cur.kids == nil {
					cur.kids = []*kaNode{}
				}
				out = append(out, cur)
				cur = nil
			case t.brace == '}':
				if cur != nil {
					out = append(out, im.kaInclude(file, cur, depth)...)
				}
				if level == 0 {
					im.errs = append(im.errs, LineError{File: file, Line: t.line, Msg: "} without an open block"})
					cur = nil
					continue
				}
				return out
			default:
				if cur == nil {
					cur = &kaNode{file: file, line: t.line}
				}
				cur.args = append(cur.args, t.s)
			}
		}
		if cur != nil {
			out = append(out, im.kaInclude(file, cur, depth)...)
		}
		if level > 0 {
			line := 0
			if len(toks) > 0 {
				line = toks[len(toks)-1].line
			}
			im.errs = append(im.errs, LineError{File: file, Line: line, Msg: "block is never closed: missing }"})
		}
		return out
	}
	return parse(0)
}

// kaInclude replaces an include statement by the statements of the files it
// names, as keepalived does; anything else is returned as is.
func (im *importer) kaInclude(file string, n *kaNode, depth int) []*kaNode {
	if len(n.args) == 0 || n.args[0] != "include" || n.kids != nil {
		return []*kaNode{n}
	}
	if len(n.args) != 2 {
		im.errs = append(im.errs, LineError{File: file, Line: n.line, Msg: "include wants one file pattern"})
		return nil
	}
	if depth >= kaMaxIncludeDepth {
		im.errs = append(im.errs, LineError{File: file, Line: n.line, Msg: "includes nested too deep (a loop?)"})
		return nil
	}
	pattern := n.args[1]
	if !filepath.IsAbs(pattern) && file != "" {
		pattern = filepath.Join(filepath.Dir(file), pattern)
	}
	names, err := im.opt.Glob(pattern)
	if err != nil || len(names) == 0 {
		im.errs = append(im.errs, LineError{File: file, Line: n.line, Msg: fmt.Sprintf("include %s: no file matches", n.args[1])})
		return nil
	}
	var out []*kaNode
	for _, name := range names {
		data, err := im.opt.ReadFile(name)
		if err != nil {
			im.errs = append(im.errs, LineError{File: file, Line: n.line, Msg: fmt.Sprintf("include: %v", err)})
			continue
		}
		out = append(out, im.kaParse(name, im.kaLex(name, string(data)), depth+1)...)
	}
	return out
}

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
	"global_defs":          "not imported: router_id, notification and script settings are replaced by lvsd flags (--id, --log-level)",
	"vrrp_script":          "not imported: shoal nodes do not track scripts; leadership follows Raft and global.monitor_links",
	"vrrp_sync_group":      "not imported: replaced by Raft leader election (one leader holds every VIP)",
	"static_ipaddress":     "not imported: static addresses are the host's business, not the cluster's",
	"static_routes":        "not imported: static routes are the host's business, not the cluster's",
	"static_rules":         "not imported: static rules are the host's business, not the cluster's",
	"linkbeat_interfaces":  "not imported: shoal watches links through global.monitor_links",
	"garp_group":           "not imported: GARP is tuned by global.garp_count/garp_interval/garp_refresh",
	"vrrp_track_file":      "not imported: shoal nodes do not track files",
	"track_file":           "not imported: shoal nodes do not track files",
	"bfd_instance":         "not imported: shoal does not run BFD",
	"net_namespace":        "not imported: run lvsd inside the namespace instead",
	"virtual_server_group": "cannot be expressed: shoal has no virtual server groups; define one virtual service per address instead",
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
	sync := &kaSyncState{vrids: map[string]uint32{}}
	for _, n := range nodes {
		switch kw := n.args[0]; {
		case kw == "vrrp_instance":
			vrrp = append(vrrp, im.kaVRRP(n, &links, sync)...)
		case kw == "virtual_server":
			servers = append(servers, n)
		case kw == "global_defs" && n.kids != nil:
			im.kaGlobalDefs(n, sync)
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
	for _, n := range servers {
		s := im.kaVirtual(n)
		if s == nil {
			continue
		}
		if prev, dup := names[s.Name]; dup {
			im.kaStrict(n, "virtual_server %s is already defined on line %d", strings.Join(n.args[1:], " "), prev.line)
			continue
		}
		names[s.Name] = n
		c.Services = append(c.Services, s)
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

var kaForward = map[string]string{"nat": "nat", "dr": "dr", "tun": "tun"}

// kaVSNotes are virtual_server keys that have no equivalent, with why.
var kaVSNotes = map[string]string{
	"ha_suspend":              "not imported: every shoal node keeps IPVS in sync whether it leads or not",
	"ops":                     "not imported: one-packet scheduling is not supported",
	"omega":                   "not imported: shoal runs no quorum scripts",
	"quorum":                  "not imported: shoal runs no quorum scripts",
	"quorum_up":               "not imported: shoal runs no quorum scripts",
	"quorum_down":             "not imported: shoal runs no quorum scripts",
	"hysteresis":              "not imported: shoal runs no quorum scripts",
	"smtp_alert":              "not imported: shoal sends no mail; watch lvsctl/metrics instead",
	"sorry_server_inhibit":    "not imported: the sorry server is added only while every real server is out",
	"sorry_server_lvs_method": "not imported: the sorry server uses the service's forwarding method",
	"lvs_flags":               "not imported: scheduler flags are not supported",
	"ip_family":               "not imported: the family follows the address",
	"retry":                   "",
	"delay_before_retry":      "",
	"connect_timeout":         "",
	"warmup":                  "not imported: checks start at once",
	"real_server":             "",
}

func (im *importer) kaVirtual(n *kaNode) *shoalv1.VirtualService {
	s := &shoalv1.VirtualService{}
	switch {
	case len(n.args) == 3 && n.args[1] == "fwmark":
		m, err := parseUint(n.args[2], 1<<32-1)
		if err != nil || m == 0 {
			im.kaStrict(n, "virtual_server fwmark: %q is not a firewall mark", n.args[2])
			return nil
		}
		s.Fwmark = uint32(m)
	case len(n.args) == 3 && n.args[1] == "group":
		im.kaNote(n, n.key(), "cannot be expressed: shoal has no virtual server groups; define one virtual service per address")
		return nil
	case len(n.args) == 3:
		a, err := parseAddr(n.args[1])
		if err != nil {
			im.kaStrict(n, "virtual_server: %v", err)
			return nil
		}
		p, err := parsePort(n.args[2])
		if err != nil {
			im.kaStrict(n, "virtual_server: %v", err)
			return nil
		}
		s.Vip = &shoalv1.Address{Address: a.String()}
		s.Port = p
	default:
		im.kaStrict(n, "virtual_server wants ADDRESS PORT or fwmark N")
		return nil
	}
	if n.kids == nil {
		im.kaStrict(n, "virtual_server without a block")
		return nil
	}
	interval := kaDefaultDelayLoop
	alpha := false
	host := ""
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
		switch kw {
		case "delay_loop":
			if !needArg() {
				continue
			}
			d, err := parseSeconds(arg)
			if err != nil {
				im.kaStrict(k, "delay_loop: %v", err)
				continue
			}
			interval = d
			lines["health_check.interval"] = k
		case "lb_algo", "lvs_sched":
			if !needArg() {
				continue
			}
			s.Scheduler = strings.ToLower(arg)
			lines["scheduler"] = k
			if len(k.args) > 2 {
				im.kaNote(k, kw, "flags %s not imported: scheduler flags are not supported", strings.Join(k.args[2:], " "))
			}
		case "lb_kind", "lvs_method":
			if !needArg() {
				continue
			}
			f, ok := kaForward[strings.ToLower(arg)]
			if !ok {
				im.kaStrict(k, "%s %s: want NAT, DR or TUN", kw, arg)
				continue
			}
			s.Forward = f
			lines["forward"] = k
		case "persistence_timeout":
			if !needArg() {
				continue
			}
			t, err := parseUint(arg, 1<<32-1)
			if err != nil {
				im.kaStrict(k, "persistence_timeout: %v", err)
				continue
			}
			s.PersistenceTimeout = uint32(t)
			lines["persistence_timeout"] = k
		case "persistence_granularity":
			if !needArg() {
				continue
			}
			v6 := s.Vip == nil || isV6(s.Vip.Address) // a fwmark service may be either
			p, err := parseMask(arg, v6)
			if err != nil {
				im.kaStrict(k, "persistence_granularity: %v", err)
				continue
			}
			if s.Vip != nil && p == uint32(addrBits(s.Vip.Address)) {
				p = 0 // a single address, as the model spells it
			}
			s.PersistencePrefix = p
			lines["persistence_prefix"] = k
		case "protocol":
			if !needArg() {
				continue
			}
			s.Protocol = strings.ToLower(arg)
			lines["protocol"] = k
		case "sorry_server":
			if !needArg() {
				continue
			}
			rs, err := parseSorry(strings.Join(k.args[1:], " "))
			if err != nil {
				im.kaStrict(k, "sorry_server: %v", err)
				continue
			}
			s.SorryServer = rs
			lines["sorry_server"] = k
		case "virtualhost":
			if !needArg() {
				continue
			}
			host = arg
		case "alpha":
			alpha = true
		case "real_server":
			reals = append(reals, k)
		default:
			if why, ok := kaVSNotes[kw]; ok && why != "" {
				im.kaNote(k, kw, "%s", why)
				continue
			}
			im.kaStrict(k, "unknown keyword %q in virtual_server", kw)
		}
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

	var checks []*shoalv1.HealthCheck
	var checkNodes []*kaNode
	var quiesce []bool
	seen := map[string]*kaNode{}
	for _, k := range reals {
		rs, hc, inhibit := im.kaReal(s, k, interval, alpha, host)
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
		checks = append(checks, hc)
		checkNodes = append(checkNodes, k)
		quiesce = append(quiesce, inhibit)
	}
	// keepalived checks each real server its own way; shoal checks every
	// real server of a service the same way. Use the first one's check and
	// say so when the others differ.
	if len(checks) > 0 {
		s.HealthCheck = proto.Clone(checks[0]).(*shoalv1.HealthCheck)
		s.HealthCheck.Port = im.kaCheckPort(s, checks, checkNodes)
		s.Quiesce = quiesce[0]
		for i := 1; i < len(checks); i++ {
			if !equalIgnoringPort(checks[i], checks[0]) {
				im.kaNote(checkNodes[i], "real_server "+strings.Join(checkNodes[i].args[1:], " "),
					"its check differs from the first real server's; shoal checks every real server of %s the same way (the first one's check is used)", s.Name)
			}
			if quiesce[i] != quiesce[0] {
				im.kaNote(checkNodes[i], "inhibit_on_failure", "set on some real servers only; shoal quiesces per service (%v, as on the first real server)", quiesce[0])
			}
		}
	}
	return s
}

// kaCheckPort is the service's check port: 0 when every checked real server
// is checked on its own port, else the one port they are all checked on.
// When they disagree the first checked server's port is used, and said.
func (im *importer) kaCheckPort(s *shoalv1.VirtualService, checks []*shoalv1.HealthCheck, nodes []*kaNode) uint32 {
	if checks[0].Kind == "none" {
		return 0 // the first real server is not checked, so neither is any
	}
	first := -1
	allOwn, allSame := true, true
	eff := make([]uint32, len(checks))
	for i, hc := range checks {
		if hc.Kind == "none" {
			continue
		}
		own := config.RealServerPort(s, s.RealServers[i])
		eff[i] = hc.Port
		if eff[i] == 0 {
			eff[i] = own
		}
		if first < 0 {
			first = i
		}
		allOwn = allOwn && eff[i] == own
		allSame = allSame && eff[i] == eff[first]
	}
	switch {
	case first < 0 || allOwn:
		return 0
	case allSame:
		return eff[first]
	}
	port := eff[first]
	if port == config.RealServerPort(s, s.RealServers[first]) {
		port = 0
	}
	for i := range checks {
		if checks[i].Kind != "none" && eff[i] != eff[first] {
			im.kaNote(nodes[i], "connect_port", "checked on port %d, unlike the first real server; shoal checks every real server of %s on one port", eff[i], s.Name)
		}
	}
	return port
}

func equalIgnoringPort(a, b *shoalv1.HealthCheck) bool {
	a = proto.Clone(a).(*shoalv1.HealthCheck)
	b = proto.Clone(b).(*shoalv1.HealthCheck)
	a.Port, b.Port = 0, 0
	return proto.Equal(a, b)
}

// kaCheckNotes are checker keys with no equivalent.
var kaCheckNotes = map[string]string{
	"connect_ip":       "not imported: the check connects to the real server's address",
	"bindto":           "not imported: checks use the node's default source address",
	"bind_port":        "not imported: checks use an ephemeral source port",
	"bind_if":          "not imported: checks use the node's routing",
	"fwmark":           "not imported: check packets are not marked",
	"warmup":           "not imported: checks start at once",
	"misc_dynamic":     "not imported: shoal does not set weights from a script's exit code",
	"user":             "not imported: exec checks run as lvsd's user",
	"log_all_failures": "not imported: lvsd logs every state change",
	"enable_sni":       "not imported: set health_check.tls_server_name if the server needs SNI",
	"http_protocol":    "not imported: checks speak HTTP/1.1",
	"tls_compliant":    "not imported",
	"dynamic":          "not imported: shoal does not set weights from a check",
}

func (im *importer) kaReal(s *shoalv1.VirtualService, n *kaNode, interval time.Duration, alpha bool, host string) (*shoalv1.RealServer, *shoalv1.HealthCheck, bool) {
	if len(n.args) < 2 || len(n.args) > 3 {
		im.kaStrict(n, "real_server wants ADDRESS [PORT]")
		return nil, nil, false
	}
	a, err := parseAddr(n.args[1])
	if err != nil {
		im.kaStrict(n, "real_server: %v", err)
		return nil, nil, false
	}
	rs := &shoalv1.RealServer{Address: a.String()}
	if len(n.args) == 3 {
		p, err := parsePort(n.args[2])
		if err != nil {
			im.kaStrict(n, "real_server: %v", err)
			return nil, nil, false
		}
		if p != s.Port {
			rs.Port = p // the same port as the service's is the model's 0
		}
	}
	rp := realServerPath(s, rs)
	im.kaMark(rp, n)
	inhibit := false
	var hc *shoalv1.HealthCheck
	for _, k := range n.kids {
		kw := k.args[0]
		switch kw {
		case "weight":
			if len(k.args) != 2 {
				im.kaStrict(k, "weight wants a number")
				continue
			}
			w, err := parseUint(k.args[1], 1<<32-1)
			if err != nil {
				im.kaStrict(k, "weight: %v", err)
				continue
			}
			w32 := uint32(w)
			rs.Weight = &w32
			im.kaMark(rp+".weight", k)
		case "inhibit_on_failure":
			inhibit = true
		case "lvs_method", "lb_kind":
			if len(k.args) != 2 {
				im.kaStrict(k, "%s wants NAT, DR or TUN", kw)
				continue
			}
			f, ok := kaForward[strings.ToLower(k.args[1])]
			if !ok {
				im.kaStrict(k, "%s %s: want NAT, DR or TUN", kw, k.args[1])
				continue
			}
			if f != fwd(s.Forward) {
				rs.Forward = f
			}
		case "delay_loop":
			if len(k.args) != 2 {
				im.kaStrict(k, "delay_loop wants seconds")
				continue
			}
			d, err := parseSeconds(k.args[1])
			if err != nil {
				im.kaStrict(k, "delay_loop: %v", err)
				continue
			}
			interval = d
		case "alpha":
			alpha = true
		case "TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "SMTP_CHECK", "DNS_CHECK", "UDP_CHECK", "PING_CHECK", "FILE_CHECK", "BFD_CHECK":
			if hc != nil {
				im.kaNote(k, kw, "not imported: shoal runs one check per real server (the first one is used)")
				continue
			}
			hc = im.kaCheck(s, rs, k, interval, alpha, host)
		case "notify_up", "notify_down":
			im.kaNote(k, kw, "not imported: watch lvsctl (WatchHealth) or the metrics instead of running a script")
		case "uthreshold", "lthreshold":
			im.kaNote(k, kw, "not imported: connection thresholds are not supported")
		case "smtp_alert":
			im.kaNote(k, kw, "not imported: shoal sends no mail")
		default:
			im.kaStrict(k, "unknown keyword %q in real_server", kw)
		}
	}
	if hc == nil {
		hc = &shoalv1.HealthCheck{Kind: "none", InitiallyUp: true}
	}
	// Direct routing and tunnelling deliver packets on the service's port
	// (any port for a fwmark service); keepalived used the real server's
	// port only to check it, so that is what it becomes.
	if f := orDefault(rs.Forward, fwd(s.Forward)); (f == "dr" || f == "tun") && rs.Port != 0 && rs.Port != s.Port {
		if hc.Kind != "none" && hc.Port == 0 {
			hc.Port = rs.Port
		}
		im.kaNote(n, "real_server "+strings.Join(n.args[1:], " "), "port %d is not used by %s forwarding: it is only the check port", rs.Port, f)
		rs.Port = 0
		im.kaMark(realServerPath(s, rs), n)
	}
	return rs, hc, inhibit
}

func (im *importer) kaCheck(s *shoalv1.VirtualService, rs *shoalv1.RealServer, n *kaNode, interval time.Duration, alpha bool, host string) *shoalv1.HealthCheck {
	hc := &shoalv1.HealthCheck{InitiallyUp: !alpha}
	retry := uint64(kaDefaultRetry)
	timeout := kaDefaultConnectTimeout
	timeoutSet := false
	kind := n.args[0]
	switch kind {
	case "TCP_CHECK":
		hc.Kind = "tcp"
	case "HTTP_GET":
		hc.Kind = "http"
		hc.HttpHost = host
	case "SSL_GET":
		// keepalived's SSL_GET does not verify the server's certificate.
		hc.Kind = "https"
		hc.HttpHost = host
		hc.TlsSkipVerify = true
	case "MISC_CHECK":
		hc.Kind = "exec"
		hc.Shell = true
		retry = 0
	default:
		hc.Kind = "tcp"
		im.kaNote(n, kind, "cannot be expressed: checked with a TCP connect instead")
	}
	for _, k := range n.kids {
		kw := k.args[0]
		arg := ""
		if len(k.args) > 1 {
			arg = k.args[1]
		}
		switch kw {
		case "connect_port":
			p, err := parsePort(arg)
			if err != nil {
				im.kaStrict(k, "connect_port: %v", err)
				continue
			}
			hc.Port = p // made relative to the service in kaVirtual
		case "connect_timeout", "misc_timeout":
			d, err := parseSeconds(arg)
			if err != nil {
				im.kaStrict(k, "%s: %v", kw, err)
				continue
			}
			timeout, timeoutSet = d, true
		case "retry", "nb_get_retry":
			r, err := parseUint(arg, 1<<16)
			if err != nil {
				im.kaStrict(k, "%s: %v", kw, err)
				continue
			}
			retry = r
		case "delay_before_retry":
			im.kaNote(k, kw, "not imported: shoal retries at the check interval (fall = retry + 1 consecutive failures)")
		case "delay_loop":
			d, err := parseSeconds(arg)
			if err != nil {
				im.kaStrict(k, "delay_loop: %v", err)
				continue
			}
			interval = d
		case "url":
			if hc.HttpPath != "" || hc.HttpStatus != 0 {
				im.kaNote(k, "url", "not imported: shoal checks one URL (the first one is used)")
				continue
			}
			for _, u := range k.kids {
				uarg := ""
				if len(u.args) > 1 {
					uarg = u.args[1]
				}
				switch u.args[0] {
				case "path":
					hc.HttpPath = uarg
				case "status_code":
					code, err := parseUint(uarg, 999)
					if err != nil {
						im.kaStrict(u, "status_code: %v", err)
						continue
					}
					hc.HttpStatus = uint32(code)
				case "digest":
					im.kaNote(u, "digest", "not imported: shoal does not compare page digests")
				case "virtualhost":
					hc.HttpHost = uarg
				default:
					im.kaStrict(u, "unknown keyword %q in url", u.args[0])
				}
			}
		case "virtualhost":
			hc.HttpHost = arg
		case "misc_path":
			if len(k.args) < 2 {
				im.kaStrict(k, "misc_path wants a command")
				continue
			}
			hc.Command = []string{strings.Join(k.args[1:], " ")}
		default:
			if why, ok := kaCheckNotes[kw]; ok {
				im.kaNote(k, kw, "%s", why)
				continue
			}
			im.kaStrict(k, "unknown keyword %q in %s", kw, kind)
		}
	}
	if hc.Kind == "exec" && len(hc.Command) == 0 {
		im.kaStrict(n, "MISC_CHECK without misc_path")
	}
	if hc.Kind == "exec" && !timeoutSet {
		timeout = interval // keepalived's misc_timeout defaults to delay_loop
	}
	hc.Interval = durationpb.New(interval)
	hc.Timeout = durationpb.New(timeout)
	hc.Fall = uint32(retry) + 1
	return hc
}
