package migrate

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// lvsBlock is one block of lvs.cf: the file itself (kind ""), a virtual,
// server or failover block.
type lvsBlock struct {
	kind, name string
	line       int
	keys       []lvsKey
	blocks     []*lvsBlock
}

type lvsKey struct {
	key, val string
	line     int
}

// lvsReplaced says what replaces each key of the old two-node heartbeat
// world; they are reported, never silently dropped.
var lvsReplaced = map[string]string{
	"primary":         "not imported: replaced by Raft membership (lvsd --id/--raft-addr, --bootstrap or --join)",
	"primary_private": "not imported: replaced by Raft membership; the Raft address (lvsd --raft-addr) is the private heartbeat network",
	"backup":          "not imported: replaced by Raft membership (add each router with lvsd --join); every node is a backup",
	"backup_private":  "not imported: replaced by Raft membership; the Raft address (lvsd --raft-addr) is the private heartbeat network",
	"backup_active":   "not imported: replaced by Raft membership (any number of routers, 3 or 5 recommended)",
	"heartbeat":       "not imported: replaced by Raft heartbeats (lvsd --profile, --heartbeat-timeout)",
	"heartbeat_port":  "not imported: replaced by the Raft transport address (lvsd --raft-addr)",
	"keepalive":       "not imported: replaced by Raft heartbeats (lvsd --profile, --heartbeat-timeout)",
	"deadtime":        "not imported: replaced by Raft leader election (lvsd --profile, --election-timeout, --lease-timeout)",
	"rsh_command":     "not imported: replaced by Raft replication; the configuration is no longer copied between routers with rsh/ssh",
	"debug_level":     "not imported: replaced by lvsd --log-level",
	"hard_shutdown":   "not imported: replaced by lvsd's SIGTERM drain (release the VIPs, hand leadership away, close Raft)",
	"service":         "",
	"serial_no":       "",
}

func (im *importer) lvscf(data []byte) *shoalv1.Config {
	root := im.lvsParse(string(data))
	c := &shoalv1.Config{Global: &shoalv1.Global{}}
	forward := ""
	forwardLine := 0
	monitorLinks, monitorLine := false, 0
	var natMask *lvsKey
	for _, k := range root.keys {
		v := k.val
		switch k.key {
		case "serial_no":
			im.note(k.line, k.key, "%s not imported: the cluster numbers its own changes (lvsctl import --expect-serial makes an import conditional)", v)
		case "service":
			if strings.ToLower(v) != "lvs" {
				im.strictf(k.line, "service = %s: only lvs (virtual servers) can be imported; failover services (fos) have no shoal equivalent", v)
			}
		case "network":
			switch strings.ToLower(v) {
			case "nat", "masq", "masquerade":
				forward = "nat"
			case "direct", "dr", "gatewaying", "gate", "route":
				forward = "dr"
			case "tunnel", "tun", "ipip":
				forward = "tun"
			default:
				im.strictf(k.line, "network = %s: want nat, direct or tunnel", v)
			}
			forwardLine = k.line
		case "nat_router":
			a, err := im.lvsAddress(k)
			if err != nil {
				im.strictf(k.line, "nat_router: %v", err)
				continue
			}
			c.Global.NatRouter = a
			im.setGlobal("nat_router")
			im.mark("global.nat_router", k.line)
		case "nat_nmask":
			kk := k
			natMask = &kk
		case "monitor_links":
			b, err := parseBool(v)
			if err != nil {
				im.strictf(k.line, "monitor_links: %v", err)
				continue
			}
			monitorLinks, monitorLine = b, k.line
			im.setGlobal("monitor_links")
		case "syncdaemon", "syncd_iface", "syncd_id":
			if c.Global.ConnectionSync == nil {
				c.Global.ConnectionSync = &shoalv1.ConnectionSync{}
			}
			im.lvsSyncKey(c.Global.ConnectionSync, k)
		case "tcp_timeout", "tcpfin_timeout", "udp_timeout":
			d, err := parseSeconds(v)
			if err != nil {
				im.strictf(k.line, "%s: %v", k.key, err)
				continue
			}
			dp := durationpb.New(d)
			switch k.key {
			case "tcp_timeout":
				c.Global.TcpTimeout = dp
			case "tcpfin_timeout":
				c.Global.TcpfinTimeout = dp
			default:
				c.Global.UdpTimeout = dp
			}
			im.setGlobal(k.key)
			im.mark("global."+k.key, k.line)
		case "active_cmd", "inactive_cmd":
			im.lvsHook(c.Global, k)
		default:
			if why, ok := lvsReplaced[k.key]; ok && why != "" {
				im.note(k.line, k.key, "%s", why)
				continue
			}
			im.strictf(k.line, "unknown global key %q", k.key)
		}
	}
	if c.Global.NatRouter != nil && forward != "" && forward != "nat" {
		// pulse raises the NAT router only for network = nat.
		im.note(im.lines["global.nat_router"].line, "nat_router", "not imported: network is not nat, so Piranha never raised it")
		c.Global.NatRouter = nil
		im.res.GlobalSet = removeString(im.res.GlobalSet, "nat_router")
		natMask = nil
	}
	if natMask != nil {
		if c.Global.NatRouter == nil {
			im.note(natMask.line, "nat_nmask", "not imported: there is no nat_router for it to apply to")
		} else if p, err := parseMask(natMask.val, isV6(c.Global.NatRouter.Address)); err != nil {
			im.strictf(natMask.line, "nat_nmask: %v", err)
		} else {
			c.Global.NatRouter.PrefixLength = p
		}
	}

	names := map[string]int{}
	for _, b := range root.blocks {
		switch b.kind {
		case "virtual":
			if name := serviceName(b.name); name != b.name {
				im.note(b.line, "virtual "+b.name, "not a valid service name: imported as %s", name)
				b.name = name
			}
			if l, dup := names[b.name]; dup {
				im.strictf(b.line, "virtual %s: the name is already used on line %d", b.name, l)
				continue
			}
			names[b.name] = b.line
			if s := im.lvsVirtual(b); s != nil {
				s.Forward = forward
				if forward == "dr" || forward == "tun" {
					im.lvsDropDRPorts(s)
				}
				if forward != "" {
					im.mark(servicePath(s.Name)+".forward", forwardLine)
				}
				c.Services = append(c.Services, s)
			}
		case "failover":
			im.note(b.line, "failover "+b.name, "not imported: failover services (fos) start and stop daemons on the routers; shoal balances virtual services only")
		default:
			im.strictf(b.line, "%s block is not allowed at the top level", b.kind)
		}
	}
	if cs := c.Global.ConnectionSync; cs.GetEnabled() {
		im.note(im.lineOf(syncPath).line, "syncdaemon", "imported as global.connection_sync: every router runs a backup daemon, and the Raft leader a master as well")
		if cs.Interface == "" {
			im.note(im.lineOf(syncPath).line, "syncd_iface", "not set: each router uses its lvsd --interface")
		}
	}
	if monitorLinks {
		c.Global.MonitorLinks = lvsInterfaces(c)
		if len(c.Global.MonitorLinks) == 0 {
			im.note(monitorLine, "monitor_links", "no address names an interface to monitor; set global.monitor_links by hand")
		}
	}
	return c
}

// lvsInterfaces lists the devices the VIPs and the NAT router live on: what
// Piranha's monitor_links watched.
func lvsInterfaces(c *shoalv1.Config) []string {
	seen := map[string]bool{}
	var out []string
	add := func(a *shoalv1.Address) {
		if a.GetInterface() != "" && !seen[a.GetInterface()] {
			seen[a.GetInterface()] = true
			out = append(out, a.GetInterface())
		}
	}
	add(c.GetGlobal().GetNatRouter())
	for _, s := range c.GetServices() {
		add(s.GetVip())
	}
	sort.Strings(out)
	return out
}

// lvsAddress reads "ADDR [DEV[:N]]".
func (im *importer) lvsAddress(k lvsKey) (*shoalv1.Address, error) {
	f := strings.Fields(k.val)
	if len(f) == 0 || len(f) > 2 {
		return nil, fmt.Errorf("want ADDRESS [DEVICE[:N]], got %q", k.val)
	}
	a, err := parseAddr(f[0])
	if err != nil {
		return nil, err
	}
	out := &shoalv1.Address{Address: a.String()}
	if len(f) == 2 {
		out.Interface, out.Label = splitInterface(f[1])
		if out.Interface == "" {
			return nil, fmt.Errorf("%q is not a device name", f[1])
		}
	}
	return out, nil
}

func (im *importer) lvsVirtual(b *lvsBlock) *shoalv1.VirtualService {
	s := &shoalv1.VirtualService{Name: b.name}
	sp := servicePath(b.name)
	im.mark(sp, b.line)
	hc := &shoalv1.HealthCheck{}
	var send, expect, program *lvsKey
	var mask, pmask *lvsKey
	portLine := 0
	regex := false
	for _, k := range b.keys {
		v := k.val
		switch k.key {
		case "active":
			on, err := parseBool(v)
			if err != nil {
				im.strictf(k.line, "active: %v", err)
				continue
			}
			if !on {
				s.Active = &on
			}
			im.mark(sp+".active", k.line)
		case "address":
			a, err := im.lvsAddress(k)
			if err != nil {
				im.strictf(k.line, "address: %v", err)
				continue
			}
			s.Vip = a
			im.mark(sp+".vip", k.line)
		case "vip_nmask":
			kk := k
			mask = &kk
		case "fwmark":
			n, err := parseUint(v, 1<<32-1)
			if err != nil {
				im.strictf(k.line, "fwmark: %v", err)
				continue
			}
			s.Fwmark = uint32(n)
			im.mark(sp+".fwmark", k.line)
		case "port":
			p, err := parsePort(v)
			if err != nil {
				im.strictf(k.line, "port: %v", err)
				continue
			}
			s.Port, portLine = p, k.line
			im.mark(sp+".port", k.line)
		case "persistent":
			n, err := parseUint(v, 1<<32-1)
			if err != nil {
				im.strictf(k.line, "persistent: %v", err)
				continue
			}
			s.PersistenceTimeout = uint32(n)
			im.mark(sp+".persistence_timeout", k.line)
		case "pmask":
			kk := k
			pmask = &kk
		case "send":
			kk := k
			send = &kk
		case "expect":
			kk := k
			expect = &kk
		case "send_program":
			kk := k
			program = &kk
		case "use_regex":
			on, err := parseBool(v)
			if err != nil {
				im.strictf(k.line, "use_regex: %v", err)
				continue
			}
			regex = on
		case "load_monitor":
			if l := strings.ToLower(v); l != "" && l != "none" {
				im.note(k.line, k.key, "%s not imported: shoal does not scale weights by the real servers' load average; weights stay as configured", v)
			}
		case "scheduler":
			s.Scheduler = strings.ToLower(v)
			im.mark(sp+".scheduler", k.line)
		case "protocol":
			s.Protocol = strings.ToLower(v)
			im.mark(sp+".protocol", k.line)
		case "timeout":
			d, err := parseSeconds(v)
			if err != nil {
				im.strictf(k.line, "timeout: %v", err)
				continue
			}
			if d > 0 { // 0 is nanny's "off", the model's unset
				hc.DownAfter = durationpb.New(d)
			}
			im.mark(sp+".health_check.down_after", k.line)
		case "reentry":
			d, err := parseSeconds(v)
			if err != nil {
				im.strictf(k.line, "reentry: %v", err)
				continue
			}
			if d > 0 { // 0 is nanny's "off", the model's unset
				hc.Reentry = durationpb.New(d)
			}
			im.mark(sp+".health_check.reentry", k.line)
		case "quiesce_server":
			on, err := parseBool(v)
			if err != nil {
				im.strictf(k.line, "quiesce_server: %v", err)
				continue
			}
			s.Quiesce = on
		case "sorry_server":
			rs, err := parseSorry(v)
			if err != nil {
				im.strictf(k.line, "sorry_server: %v", err)
				continue
			}
			s.SorryServer = rs
			im.mark(sp+".sorry_server", k.line)
		default:
			im.strictf(k.line, "unknown key %q in virtual %s", k.key, b.name)
		}
	}
	if s.Vip == nil && s.Fwmark == 0 {
		im.strictf(b.line, "virtual %s has no address", b.name)
		return nil
	}
	if mask != nil && s.Vip == nil {
		im.strictf(mask.line, "vip_nmask without an address")
	} else if mask != nil {
		p, err := parseMask(mask.val, isV6(s.Vip.Address))
		if err != nil {
			im.strictf(mask.line, "vip_nmask: %v", err)
		} else {
			s.Vip.PrefixLength = p
			im.mark(sp+".vip.prefix_length", mask.line)
		}
	}
	if pmask != nil {
		// Read after the loop: pmask may come before address.
		v6 := s.Vip == nil || isV6(s.Vip.Address)
		if p, err := parseMask(pmask.val, v6); err != nil {
			im.strictf(pmask.line, "pmask: %v", err)
		} else {
			if s.Vip != nil && p == uint32(addrBits(s.Vip.Address)) {
				p = 0 // a single address, as the model spells it
			}
			s.PersistencePrefix = p
			im.mark(sp+".persistence_prefix", pmask.line)
		}
	}
	if s.Fwmark != 0 {
		// A firewall-mark service has no port of its own; Piranha still
		// needed one for nanny, which is what the check port is.
		hc.Port, s.Port = s.Port, 0
	} else if portLine == 0 {
		s.Port = 80
		im.note(b.line, "virtual "+b.name, "no port given: Piranha's default 80 used")
	}

	switch {
	case program != nil:
		hc.Kind = "exec"
		line := im.lvsString(*program)
		if argv, err := programArgv(line); err == nil {
			hc.Command = argv
		} else {
			// nanny ran it with /bin/sh -c; routers refuse that unless
			// lvsd --allow-shell-scripts.
			hc.Command = []string{line}
			hc.Shell = true
			im.note(program.line, "send_program", "imported as a shell command (%v): routers run it only with lvsd --allow-shell-scripts; "+
				"put it in a script under their --script-dir to run it without a shell", err)
		}
		if send != nil {
			im.note(send.line, "send", "not imported: nanny ignores send when send_program is set")
		}
		im.mark(sp+".health_check.command", program.line)
	case send != nil || expect != nil:
		hc.Kind = "send-expect"
		if send != nil {
			hc.Send = config.EncodeSend(im.lvsString(*send))
			im.mark(sp+".health_check.send", send.line)
		}
	}
	if expect != nil {
		hc.Expect = im.lvsString(*expect)
		im.mark(sp+".health_check.expect", expect.line)
	}
	if regex {
		hc.Regex = true
	}
	if hc.Kind != "" || hc.DownAfter != nil || hc.Reentry != nil || hc.Port != 0 || hc.Expect != "" || hc.Regex {
		s.HealthCheck = hc
	}

	seen := map[netip.AddrPort]int{}
	for _, rb := range b.blocks {
		if rb.kind != "server" {
			im.strictf(rb.line, "%s block is not allowed inside virtual %s", rb.kind, b.name)
			continue
		}
		rs := im.lvsServer(s, rb)
		if rs == nil {
			continue
		}
		a, _ := netip.ParseAddr(rs.Address)
		key := netip.AddrPortFrom(a, uint16(config.RealServerPort(s, rs)))
		if l, dup := seen[key]; dup {
			im.strictf(rb.line, "server %s: %s is already a real server of virtual %s (line %d); real servers are identified by address and port, not name", rb.name, key, b.name, l)
			continue
		}
		seen[key] = rb.line
		s.RealServers = append(s.RealServers, rs)
	}
	return s
}

func (im *importer) lvsServer(s *shoalv1.VirtualService, b *lvsBlock) *shoalv1.RealServer {
	rs := &shoalv1.RealServer{Name: b.name}
	keyLines := map[string]int{}
	for _, k := range b.keys {
		switch k.key {
		case "address":
			f := strings.Fields(k.val)
			if len(f) == 0 {
				im.strictf(k.line, "address: empty")
				continue
			}
			a, err := parseAddr(f[0])
			if err != nil {
				im.strictf(k.line, "address: %v", err)
				continue
			}
			if len(f) > 1 {
				im.note(k.line, "address", "device %s not imported: real servers are reached by routing", f[1])
			}
			rs.Address = a.String()
		case "active":
			on, err := parseBool(k.val)
			if err != nil {
				im.strictf(k.line, "active: %v", err)
				continue
			}
			if !on {
				rs.Active = &on
			}
		case "port":
			p, err := parsePort(k.val)
			if err != nil {
				im.strictf(k.line, "port: %v", err)
				continue
			}
			rs.Port = p
		case "weight":
			n, err := parseUint(k.val, 1<<32-1)
			if err != nil {
				im.strictf(k.line, "weight: %v", err)
				continue
			}
			w := uint32(n)
			rs.Weight = &w
		default:
			im.strictf(k.line, "unknown key %q in server %s", k.key, b.name)
			continue
		}
		keyLines[k.key] = k.line
	}
	if rs.Address == "" {
		im.strictf(b.line, "server %s has no address", b.name)
		return nil
	}
	p := realServerPath(s, rs)
	im.mark(p, b.line)
	for k, l := range keyLines {
		im.mark(p+"."+k, l)
	}
	return rs
}

// parseSorry reads a sorry server as ADDR, ADDR:PORT, [V6]:PORT or ADDR PORT.
func parseSorry(v string) (*shoalv1.RealServer, error) {
	f := strings.Fields(v)
	switch len(f) {
	case 1:
		if ap, err := netip.ParseAddrPort(f[0]); err == nil {
			return &shoalv1.RealServer{Address: ap.Addr().Unmap().String(), Port: uint32(ap.Port())}, nil
		}
		a, err := parseAddr(f[0])
		if err != nil {
			return nil, err
		}
		return &shoalv1.RealServer{Address: a.String()}, nil
	case 2:
		a, err := parseAddr(f[0])
		if err != nil {
			return nil, err
		}
		p, err := parsePort(f[1])
		if err != nil {
			return nil, err
		}
		return &shoalv1.RealServer{Address: a.String(), Port: p}, nil
	}
	return nil, fmt.Errorf("want ADDRESS[:PORT], got %q", v)
}

// lvsString is a string value with nanny's escapes undone.
func (im *importer) lvsString(k lvsKey) string { return decodeEscapes(k.val) }

// lvsParse reads lvs.cf into blocks. It is forgiving about layout (tabs or
// spaces, "{" on the header line or the next, trailing ";", comments after
// values) and strict about content: anything it cannot read is an error
// naming the line.
func (im *importer) lvsParse(text string) *lvsBlock {
	root := &lvsBlock{}
	stack := []*lvsBlock{root}
	var pending *lvsBlock // header seen, waiting for "{" on a later line
	lines := strings.Split(strings.TrimPrefix(text, "\ufeff"), "\n")
	for i, raw := range lines {
		n := i + 1
		if !utf8.ValidString(raw) {
			if !im.opt.Lenient {
				im.errorf(n, "line is not valid UTF-8")
				continue
			}
			im.res.Warnings = append(im.res.Warnings, Note{File: im.file, Line: n, Text: "invalid UTF-8 replaced (--lenient)"})
			raw = strings.ToValidUTF8(raw, "\uFFFD")
		}
		line, err := stripComment(raw)
		if err != nil {
			im.strictf(n, "%v", err)
			continue
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if pending != nil {
			if line == "{" {
				top := stack[len(stack)-1]
				top.blocks = append(top.blocks, pending)
				stack = append(stack, pending)
				pending = nil
				continue
			}
			im.strictf(pending.line, "%s %s: missing {", pending.kind, pending.name)
			pending = nil
		}
		// Closing braces, possibly several or with a trailing ";".
		if strings.Trim(line, "}; \t") == "" {
			for _, c := range line {
				if c != '}' {
					continue
				}
				if len(stack) == 1 {
					im.strictf(n, "} without an open block")
					continue
				}
				stack = stack[:len(stack)-1]
			}
			continue
		}
		if eq := strings.IndexByte(line, '='); eq < 0 || isHeader(line[:eq]) {
			hdr := strings.TrimSpace(strings.TrimSuffix(line, "{"))
			kind, name, ok := splitHeader(hdr)
			top := stack[len(stack)-1]
			bad := ""
			switch {
			case !ok:
				bad = fmt.Sprintf("cannot read %q: want key = value, virtual NAME {, server NAME { or }", line)
			case kind == "virtual" && len(stack) != 1, kind == "failover" && len(stack) != 1:
				bad = fmt.Sprintf("%s %s inside another block: missing }?", kind, name)
			case kind == "server" && (len(stack) != 2 || top.kind != "virtual"):
				bad = fmt.Sprintf("server %s outside a virtual block", name)
			}
			if bad != "" {
				im.strictf(n, "%s", bad)
				if strings.HasSuffix(line, "{") {
					// Skip the block's body (--lenient) and keep the
					// braces balanced.
					stack = append(stack, &lvsBlock{kind: "skipped", line: n})
				}
				continue
			}
			b := &lvsBlock{kind: kind, name: name, line: n}
			if !strings.HasSuffix(line, "{") {
				pending = b
				continue
			}
			top.blocks = append(top.blocks, b)
			stack = append(stack, b)
			continue
		}
		eq := strings.IndexByte(line, '=')
		key := strings.ToLower(strings.TrimSpace(line[:eq]))
		val, err := unquote(strings.TrimSpace(line[eq+1:]))
		if err != nil {
			im.strictf(n, "%s: %v", key, err)
			continue
		}
		if !validKey(key) {
			im.strictf(n, "cannot read %q: %q is not a key", line, key)
			continue
		}
		if val == "" && key != "send" && key != "expect" {
			// The GUI writes unset values as empty: nothing to import.
			continue
		}
		top := stack[len(stack)-1]
		top.keys = append(top.keys, lvsKey{key: key, val: val, line: n})
	}
	if pending != nil {
		im.strictf(pending.line, "%s %s: missing {", pending.kind, pending.name)
	}
	if len(stack) > 1 && stack[len(stack)-1].kind != "skipped" {
		b := stack[len(stack)-1]
		im.strictf(b.line, "%s %s is never closed: missing }", b.kind, b.name)
	}
	return root
}

// isHeader tells "virtual x {" from "key = value" when a quoted block name
// contains "=".
func isHeader(before string) bool {
	f := strings.Fields(before)
	return len(f) >= 2 && (f[0] == "virtual" || f[0] == "server" || f[0] == "failover")
}

func splitHeader(h string) (kind, name string, ok bool) {
	f := strings.Fields(h)
	if len(f) < 2 {
		return "", "", false
	}
	kind = strings.ToLower(f[0])
	if kind != "virtual" && kind != "server" && kind != "failover" {
		return "", "", false
	}
	rest := strings.TrimSpace(h[len(f[0]):])
	name, err := unquote(rest)
	if err != nil || name == "" {
		return "", "", false
	}
	if rest[0] != '"' && rest[0] != '\'' && len(strings.Fields(rest)) != 1 {
		return "", "", false
	}
	if rest[0] == '"' || rest[0] == '\'' {
		name = decodeEscapes(name)
	}
	return kind, name, true
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// stripComment cuts a "#" comment that starts a line or follows white space,
// outside quotes.
func stripComment(line string) (string, error) {
	line = strings.TrimSuffix(line, "\r")
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return line[:i], nil
		}
	}
	return line, nil
}

// unquote returns the text between matching quotes, escapes still in place,
// or the value as written when it is not quoted.
func unquote(v string) (string, error) {
	if v == "" || (v[0] != '"' && v[0] != '\'') {
		return v, nil
	}
	q := v[0]
	for i := 1; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case q:
			if rest := strings.TrimSpace(strings.TrimRight(v[i+1:], ";")); rest != "" {
				return "", fmt.Errorf("unexpected %q after the closing quote", rest)
			}
			return v[1:i], nil
		}
	}
	return "", fmt.Errorf("unterminated quote in %s", v)
}

// serviceName turns a Piranha virtual name into a valid service name
// (letters, digits, ".", "_" and "-", at most 64): Piranha's GUI let people
// type anything.
func serviceName(n string) string {
	var b strings.Builder
	dash := false
	for _, c := range n {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok || (b.Len() == 0 && !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9')) {
			if b.Len() > 0 && !dash {
				b.WriteByte('-')
				dash = true
			}
			continue
		}
		b.WriteRune(c)
		dash = false
	}
	out := strings.TrimRight(b.String(), "-")
	if len(out) > 64 {
		out = strings.TrimRight(out[:64], "-")
	}
	if out == "" {
		out = "virtual"
	}
	return out
}

func removeString(list []string, s string) []string {
	out := list[:0]
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

// lvsDropDRPorts clears real server ports that direct routing and
// tunnelling cannot honour: IPVS delivers on the service's port whatever
// ipvsadm was told, and the model insists on 0.
func (im *importer) lvsDropDRPorts(s *shoalv1.VirtualService) {
	for _, rs := range s.RealServers {
		if rs.Port == 0 || rs.Port == s.Port {
			continue
		}
		old := im.lineOf(realServerPath(s, rs)).line
		im.note(old, "server "+rs.Name, "port %d not imported: %s forwarding delivers on the service's port", rs.Port, s.Forward)
		rs.Port = 0
		im.mark(realServerPath(s, rs), old)
	}
}

// lvsHook imports active_cmd or inactive_cmd as a hook; the same command
// for both becomes one hook with both events.
func (im *importer) lvsHook(g *shoalv1.Global, k lvsKey) {
	argv, err := programArgv(im.lvsString(k))
	if err != nil {
		im.strictf(k.line, "%s %q: %v; %s", k.key, k.val, err, hookAdvice)
		return
	}
	event := piranhaHookEvents[k.key]
	for i, h := range g.Hooks {
		if slices.Equal(h.Command, argv) {
			if !slices.Contains(h.Events, event) {
				h.Events = append(h.Events, event)
			}
			im.mark(fmt.Sprintf("global.hooks[%d].events", i), k.line)
			return
		}
	}
	g.Hooks = append(g.Hooks, &shoalv1.Hook{Events: []string{event}, Command: argv})
	im.mark(fmt.Sprintf("global.hooks[%d]", len(g.Hooks)-1), k.line)
	im.setGlobal("hooks")
}
