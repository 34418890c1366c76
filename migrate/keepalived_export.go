package migrate

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func (ex *exporter) keepalived(c *shoalv1.Config) {
	g := c.GetGlobal()
	ex.printf("! keepalived.conf written by shoal (serial %d)\n", c.GetSerial())
	ex.printf("! The vrrp_instance blocks only carry the addresses' devices and prefixes:\n")
	ex.printf("! shoal elects its leader with Raft, not VRRP.\n")

	// One VRRP instance per device carries that device's addresses.
	type inst struct {
		iface string
		addrs []string
	}
	var insts []*inst
	byIface := map[string]*inst{}
	seen := map[string]bool{}
	add := func(key string, a *shoalv1.Address) {
		if a == nil || a.GetAddress() == "" || seen[a.GetAddress()] {
			return
		}
		if a.GetInterface() == "" {
			if a.GetPrefixLength() != 0 && a.GetPrefixLength() != 32 && a.GetPrefixLength() != 128 {
				ex.note(key, "prefix /%d of %s cannot be written without an interface", a.GetPrefixLength(), a.GetAddress())
			}
			return
		}
		seen[a.GetAddress()] = true
		in := byIface[a.GetInterface()]
		if in == nil {
			in = &inst{iface: a.GetInterface()}
			byIface[in.iface] = in
			insts = append(insts, in)
		}
		e := a.GetAddress()
		if a.GetPrefixLength() != 0 {
			e += fmt.Sprintf("/%d", a.GetPrefixLength())
		}
		if w, ok := kaWord(a.GetLabel()); ok && a.GetLabel() != "" {
			e += " label " + w
		} else if a.GetLabel() != "" {
			ex.note(key, "label %q cannot be written in keepalived.conf", a.GetLabel())
		}
		in.addrs = append(in.addrs, e)
	}
	for _, s := range c.GetServices() {
		if s.GetFwmark() != 0 && s.GetVip().GetAddress() != "" {
			ex.note("services["+s.GetName()+"].vip", "a fwmark service's address is written as a VRRP address only; keepalived does not tie it to the service")
		}
		add("services["+s.GetName()+"].vip", s.GetVip())
	}
	if nr := g.GetNatRouter(); nr != nil && nr.GetAddress() != "" {
		add("global.nat_router", nr)
	}
	links := g.GetMonitorLinks()
	if len(insts) == 0 && len(links) > 0 {
		insts = append(insts, &inst{iface: links[0]})
	}
	if cs := g.GetConnectionSync(); cs.GetEnabled() && len(insts) == 0 && cs.GetInterface() != "" {
		// lvs_sync_daemon names an instance: one without addresses, on
		// the sync interface.
		insts = append(insts, &inst{iface: cs.GetInterface()})
	}
	if cs := g.GetConnectionSync(); cs != nil {
		var ifaces []string
		for _, in := range insts {
			ifaces = append(ifaces, in.iface)
		}
		ex.kaExportSync(cs, ifaces)
	}
	for i, in := range insts {
		ex.printf("\nvrrp_instance VI_%d {\n", i+1)
		ex.printf("    state BACKUP\n    interface %s\n    virtual_router_id %d\n    priority 100\n    advert_int 1\n", in.iface, 51+i)
		if i == 0 && len(links) > 0 {
			ex.printf("    track_interface {\n")
			for _, l := range links {
				ex.printf("        %s\n", l)
			}
			ex.printf("    }\n")
		}
		if i == 0 {
			ex.kaNotify("    ", g.GetHooks(), func(h *shoalv1.Hook, event string) bool { return !kaServerEvent(event) })
		}
		ex.printf("    virtual_ipaddress {\n")
		for _, a := range in.addrs {
			ex.printf("        %s\n", a)
		}
		ex.printf("    }\n}\n")
	}
	if len(insts) == 0 && slices.ContainsFunc(g.GetHooks(), func(h *shoalv1.Hook) bool {
		keys, _ := KeepalivedNotify(h)
		return slices.ContainsFunc(keys, func(kv [2]string) bool { return !kaServerEvent(keepalivedHookEvents[kv[0]]) })
	}) {
		// No interface to make an instance from: the scripts still go where
		// keepalived reads them, a sync group, for the operator to complete.
		ex.printf("\nvrrp_sync_group VG_1 {\n")
		ex.kaNotify("    ", g.GetHooks(), func(h *shoalv1.Hook, event string) bool { return !kaServerEvent(event) })
		ex.printf("}\n")
	}
	ex.kaHookNotes(g.GetHooks(), c.GetServices(), len(insts))
	if g.GetTcpTimeout() != nil || g.GetTcpfinTimeout() != nil || g.GetUdpTimeout() != nil {
		ex.note("global", "tcp_timeout, tcpfin_timeout and udp_timeout cannot be written in keepalived.conf; an import keeps the cluster's values")
	}
	ex.garpNotes(g)
	for _, s := range c.GetServices() {
		ex.kaVirtual(s, g.GetHooks())
	}
	ex.prependNotes("!")
}

// kaServerEvent reports whether a hook event is a real server's, which
// keepalived notifies in the real_server block.
func kaServerEvent(event string) bool {
	return event == config.EventServerUp || event == config.EventServerDown
}

// kaHookFor reports whether a hook's filters take in rs of s.
func kaHookFor(h *shoalv1.Hook, s *shoalv1.VirtualService, rs *shoalv1.RealServer) bool {
	if h.GetService() != "" && h.GetService() != s.GetName() {
		return false
	}
	ref := h.GetRealServer()
	return ref == "" || ref == rs.GetAddress() || ref == hostPort(rs.GetAddress(), config.RealServerPort(s, rs))
}

// kaNotify writes the notify keys of the hooks' events that want says
// belong here. keepalived takes one script per key and block, so a second
// hook with the same event is not written here (kaHookNotes says so).
func (ex *exporter) kaNotify(indent string, hooks []*shoalv1.Hook, want func(h *shoalv1.Hook, event string) bool) {
	done := map[string]bool{}
	for _, h := range hooks {
		keys, _ := KeepalivedNotify(h)
		for _, kv := range keys {
			if !want(h, keepalivedHookEvents[kv[0]]) || done[kv[0]] {
				continue
			}
			done[kv[0]] = true
			ex.printf("%s%s %s\n", indent, kv[0], kv[1])
		}
	}
}

// kaHookNotes reports what of the hooks keepalived.conf cannot say.
func (ex *exporter) kaHookNotes(hooks []*shoalv1.Hook, services []*shoalv1.VirtualService, instances int) {
	first := map[string]int{} // a router event's key → the hook that has it
	for i, h := range hooks {
		key := fmt.Sprintf("global.hooks[%d]", i)
		keys, skipped := KeepalivedNotify(h)
		if len(skipped) > 0 {
			ex.note(key, "events %s cannot be written in keepalived.conf: it has no notify key for them", strings.Join(skipped, ", "))
		}
		if h.GetTimeout() != nil {
			ex.note(key, "timeout cannot be written in keepalived.conf: keepalived does not time notify scripts out")
		}
		for _, kv := range keys {
			if kaServerEvent(keepalivedHookEvents[kv[0]]) {
				continue
			}
			switch j, dup := first[kv[0]]; {
			case dup:
				ex.note(key, "%s not written: keepalived takes one per vrrp_instance, and global.hooks[%d]'s is written", kv[0], j)
			case instances == 0:
				first[kv[0]] = i
				ex.note(key, "%s is written in vrrp_sync_group VG_1, which names no vrrp_instance (no VIP has an interface to make one): keepalived runs it once the group has one", kv[0])
			default:
				first[kv[0]] = i
				if instances > 1 {
					ex.note(key, "%s is written in VI_1 only: keepalived runs it when that instance changes state", kv[0])
				}
			}
		}
		hasServerEvent := slices.ContainsFunc(h.GetEvents(), kaServerEvent)
		if !hasServerEvent {
			continue
		}
		found := false
		for _, s := range services {
			for _, rs := range s.GetRealServers() {
				if !kaHookFor(h, s, rs) {
					continue
				}
				found = true
				for _, e := range h.GetEvents() {
					if !kaServerEvent(e) {
						continue
					}
					j := slices.IndexFunc(hooks[:i], func(o *shoalv1.Hook) bool { return kaHookFor(o, s, rs) && slices.Contains(o.GetEvents(), e) })
					if j >= 0 {
						ex.note(key, "%s not written for %s: keepalived takes one script per event and real_server, and global.hooks[%d]'s is written", e, realServerPath(s, rs), j)
					}
				}
			}
		}
		if !found {
			ex.note(key, "server-up and server-down cannot be written: no real server to notify from matches its filters")
		}
	}
}

var kaKind = map[string]string{"nat": "NAT", "dr": "DR", "tun": "TUN"}

func (ex *exporter) kaVirtual(s *shoalv1.VirtualService, hooks []*shoalv1.Hook) {
	key := "services[" + s.GetName() + "]"
	if s.Active != nil && !s.GetActive() {
		ex.note(key, "inactive: not written (keepalived has no inactive virtual_server)")
		return
	}
	protocol := s.GetProtocol()
	if protocol == "" {
		protocol = config.DefaultProtocol
	}
	if s.GetName() != kaServiceName(protocol, s.GetVip().GetAddress(), s.GetPort(), s.GetFwmark()) {
		ex.note(key, "the name is not kept: keepalived's virtual_server has none (an import names it %s)",
			kaServiceName(protocol, s.GetVip().GetAddress(), s.GetPort(), s.GetFwmark()))
	}
	if s.GetFwmark() != 0 {
		ex.printf("\nvirtual_server fwmark %d {\n", s.GetFwmark())
	} else {
		ex.printf("\nvirtual_server %s %d {\n", s.GetVip().GetAddress(), s.GetPort())
	}
	hc := s.GetHealthCheck()
	ex.printf("    delay_loop %s\n", timerString(kaInterval(hc)))
	if s.GetScheduler() != "" {
		ex.printf("    lb_algo %s\n", s.GetScheduler())
	}
	ex.printf("    lb_kind %s\n", kaKind[fwd(s.GetForward())])
	if s.GetPersistenceTimeout() != 0 {
		ex.printf("    persistence_timeout %d\n", s.GetPersistenceTimeout())
	}
	if p := s.GetPersistencePrefix(); p != 0 {
		ex.printf("    persistence_granularity %s\n", maskString(p, isV6(s.GetVip().GetAddress())))
	}
	ex.printf("    protocol %s\n", strings.ToUpper(protocol))
	kind := hc.GetKind()
	if kind == "" {
		kind = config.DefaultCheckKind
	}
	if !kaServiceUp(hc) {
		ex.printf("    alpha\n")
	}
	if ss := s.GetSorryServer(); ss != nil && ss.GetAddress() != "" {
		if ss.GetPort() != 0 {
			ex.printf("    sorry_server %s %d\n", ss.GetAddress(), ss.GetPort())
		} else {
			ex.printf("    sorry_server %s\n", ss.GetAddress())
		}
		if f := ss.GetForward(); f != "" && f != fwd(s.GetForward()) {
			ex.printf("    sorry_server_lvs_method %s\n", kaKind[f])
		}
	}
	ex.kaCheckNotes(key+".health_check", kind, hc, hc)
	for _, rs := range s.GetRealServers() {
		rkey := realServerPath(s, rs)
		if rs.Active != nil && !rs.GetActive() {
			ex.note(rkey, "inactive: not written (keepalived has no inactive real_server)")
			continue
		}
		if rs.GetName() != "" {
			ex.note(rkey, "name %q is not kept: keepalived's real_server has none", rs.GetName())
		}
		ex.printf("    real_server %s %d {\n", rs.GetAddress(), config.RealServerPort(s, rs))
		if rs.Weight != nil {
			ex.printf("        weight %d\n", rs.GetWeight())
		}
		if s.GetQuiesce() {
			ex.printf("        inhibit_on_failure\n")
		}
		if f := rs.GetForward(); f != "" && f != fwd(s.GetForward()) {
			ex.printf("        lvs_method %s\n", kaKind[f])
		}
		if rs.GetUpperThreshold() != 0 {
			ex.printf("        uthreshold %d\n", rs.GetUpperThreshold())
		}
		if rs.GetLowerThreshold() != 0 {
			ex.printf("        lthreshold %d\n", rs.GetLowerThreshold())
		}
		ex.kaNotify("        ", hooks, func(h *shoalv1.Hook, event string) bool { return kaServerEvent(event) && kaHookFor(h, s, rs) })
		own := rs.GetHealthChecks()
		if len(own) == 0 {
			own = []*shoalv1.HealthCheck{hc}
		} else if kind == "none" && !(len(own) == 1 && own[0].GetKind() == "none") {
			ex.note(rkey+".health_checks", "written, but the service is not checked: an import makes the first checked real server's check the service's")
		}
		for i, c := range own {
			ckind := orDefault(c.GetKind(), config.DefaultCheckKind)
			if len(rs.GetHealthChecks()) > 0 {
				ex.kaCheckNotes(fmt.Sprintf("%s.health_checks[%d]", rkey, i), ckind, c, hc)
			}
			ex.kaChecker(ckind, c, s, rs, hc)
		}
		ex.printf("    }\n")
	}
	ex.printf("}\n")
}

// kaChecker writes one checker of rs; svc is the service's check, whose
// interval and alpha the virtual_server block sets for every checker, so
// a checker writes its own only when they differ. An exec check's %h and
// %p become rs's address and checked port, which keepalived does not
// replace.
func (ex *exporter) kaChecker(kind string, hc *shoalv1.HealthCheck, s *shoalv1.VirtualService, rs *shoalv1.RealServer, svc *shoalv1.HealthCheck) {
	block := map[string]string{"tcp": "TCP_CHECK", "send-expect": "TCP_CHECK", "http": "HTTP_GET", "https": "SSL_GET", "exec": "MISC_CHECK"}[kind]
	if kaSMTP(kind, hc) {
		block = "SMTP_CHECK"
	}
	if block == "" {
		return
	}
	host, port := rs.GetAddress(), checkPort(s, rs, hc)
	ex.printf("        %s {\n", block)
	if d, base := kaInterval(hc), kaInterval(svc); d != base {
		ex.printf("            delay_loop %s\n", timerString(d))
	}
	if up, base := hc.GetInitiallyUp(), kaServiceUp(svc); up != base {
		ex.printf("            alpha %s\n", map[bool]string{true: "no", false: "yes"}[up])
	}
	if kind == "http" || kind == "https" {
		ex.printf("            url {\n")
		path := hc.GetHttpPath()
		if path == "" {
			path = config.DefaultHTTPPath
		}
		ex.kaWordLine("                path", path, "http_path")
		if hc.GetHttpStatus() != 0 {
			ex.printf("                status_code %d\n", hc.GetHttpStatus())
		} else {
			ex.printf("                status_code 200-399\n") // shoal's 0; keepalived's default is 200-299
		}
		if hc.GetRegex() && hc.GetExpect() != "" {
			ex.printf("                regex %s\n", kaEscaped(hc.GetExpect()))
		}
		ex.printf("            }\n")
		if hc.GetHttpHost() != "" {
			ex.kaWordLine("            virtualhost", hc.GetHttpHost(), "http_host")
		}
		if kind == "https" && hc.GetTlsServerName() != "" {
			ex.kaWordLine("            sni_name", hc.GetTlsServerName(), "tls_server_name")
		}
	}
	timeout := config.DefaultCheckTimeout
	if hc.GetTimeout() != nil {
		timeout = hc.GetTimeout().AsDuration()
	}
	if kind == "exec" {
		r := strings.NewReplacer("%h", host, "%p", strconv.FormatUint(uint64(port), 10))
		argv := make([]string, len(hc.GetCommand()))
		for i, a := range hc.GetCommand() {
			argv[i] = r.Replace(a)
		}
		if hc.GetShell() && len(argv) > 0 {
			// keepalived runs misc_path without a shell: ask for one.
			argv = []string{"/bin/sh", "-c", argv[0]}
		}
		ex.printf("            misc_path %s\n", kaArgv(argv))
		// Left out, keepalived's misc_timeout is the virtual server's
		// delay_loop, which may be a fraction of a second.
		if timeout != kaInterval(svc) {
			ex.printf("            misc_timeout %d\n", seconds(timeout))
		}
	} else {
		if hc.GetPort() != 0 {
			ex.printf("            connect_port %d\n", hc.GetPort())
		}
		ex.printf("            connect_timeout %s\n", timerString(timeout))
	}
	fall := hc.GetFall()
	if fall == 0 {
		fall = config.DefaultCheckFall
	}
	ex.printf("            retry %d\n", fall-1)
	ex.printf("        }\n")
}

// kaArgv writes a program and its arguments as misc_path's quoted command
// line, which keepalived splits twice (see kaMiscPath): the first split
// keeps backslash pairs as they are, the second decodes them, so every
// character the second split treats specially is backslash-escaped, and a
// double quote is written \x22 so that no quote inside can end the string
// for the first split, or for read_line's search of braces.
func kaArgv(argv []string) string {
	words := make([]string, len(argv))
	for i, a := range argv {
		if a == "" {
			words[i] = "''"
			continue
		}
		var b strings.Builder
		for j := 0; j < len(a); j++ {
			switch c := a[j]; {
			case c == '\\' || c == '\'' || c == ' ':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c == '"' || c < ' ' || c == 0x7f:
				fmt.Fprintf(&b, `\x%02x`, c)
			default:
				b.WriteByte(c)
			}
		}
		words[i] = b.String()
	}
	return `"` + strings.Join(words, " ") + `"`
}

// kaEscaped writes s as one double-quoted word for a keyword that splits
// its line once with escapes (regex).
func kaEscaped(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for j := 0; j < len(s); j++ {
		switch c := s[j]; {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '"' || c < ' ' || c == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// kaWord writes s as one word of keepalived.conf: bare when keepalived's
// tokenizer keeps it whole, else between double quotes. ok is false when
// neither can hold it (a double quote, or an odd run of backslashes before
// the closing quote, which decomment would read as an escaped quote).
func kaWord(s string) (w string, ok bool) {
	if s != "" && !strings.ContainsAny(s, " \t\r\n\f\v\"{}#!") {
		return s, true
	}
	trailing := len(s) - len(strings.TrimRight(s, `\`))
	if strings.ContainsAny(s, "\"\r\n") || trailing%2 == 1 {
		return "", false
	}
	return `"` + s + `"`, true
}

// kaCheckNotes notes what keepalived.conf cannot say of hc; svcCheck is
// the service's check, whose interval is the virtual server's delay_loop.
func (ex *exporter) kaCheckNotes(key, kind string, hc, svcCheck *shoalv1.HealthCheck) {
	var lost []string
	switch kind {
	case "send-expect":
		if !kaSMTP(kind, hc) {
			ex.note(key, "send/expect checks cannot be written in keepalived.conf: written as TCP_CHECK")
		}
	case "exec":
		if hc.GetShell() && len(hc.GetCommand()) > 1 {
			lost = append(lost, "extra command arguments")
		}
		if hc.GetShell() {
			ex.note(key, "the shell command is written as misc_path /bin/sh -c: keepalived runs misc_path without a shell")
		}
		if t := hc.GetTimeout(); t != nil && t.AsDuration()%time.Second != 0 && t.AsDuration() != kaInterval(svcCheck) {
			lost = append(lost, "a timeout that is not whole seconds (misc_timeout is rounded up)")
		}
	case "https":
		if !hc.GetTlsSkipVerify() {
			lost = append(lost, "certificate verification (SSL_GET does not verify)")
		}
	}
	httpRegex := (kind == "http" || kind == "https") && hc.GetRegex()
	if hc.GetExpect() != "" && kind != "send-expect" && !httpRegex {
		lost = append(lost, "expect")
	}
	if hc.GetRegex() && !httpRegex {
		lost = append(lost, "regex")
	}
	if hc.GetTlsServerName() != "" && kind != "https" {
		lost = append(lost, "tls_server_name")
	}
	if r := hc.GetRise(); r != 0 && r != config.DefaultCheckRise {
		lost = append(lost, fmt.Sprintf("rise %d", r))
	}
	if d := hc.GetReentry(); d != nil && d.AsDuration() > 0 {
		lost = append(lost, "reentry "+d.AsDuration().String())
	}
	if d := hc.GetDownAfter(); d != nil && d.AsDuration() > 0 {
		lost = append(lost, "down_after "+d.AsDuration().String())
	}
	if kind == "exec" && hc.GetPort() != 0 {
		lost = append(lost, "port")
	}
	if len(lost) > 0 {
		ex.note(key, "%s cannot be written in keepalived.conf", strings.Join(lost, ", "))
	}
}

// kaWordLine writes "key value", or notes that value cannot be written.
func (ex *exporter) kaWordLine(key, value, field string) {
	if w, ok := kaWord(value); ok {
		ex.printf("%s %s\n", key, w)
		return
	}
	ex.note("health_check."+field, "%q cannot be written in keepalived.conf", value)
}

// kaSMTP reports whether a send/expect check is the import of SMTP_CHECK:
// read the greeting, want 220.
func kaSMTP(kind string, hc *shoalv1.HealthCheck) bool {
	return kind == "send-expect" && hc.GetSend() == "" && hc.GetExpect() == "220" && !hc.GetRegex()
}

// kaInterval is a check's interval, written as delay_loop.
func kaInterval(hc *shoalv1.HealthCheck) time.Duration {
	if hc.GetInterval() != nil {
		return hc.GetInterval().AsDuration()
	}
	return config.DefaultCheckInterval
}

// kaServiceUp is whether the virtual_server block leaves its checkers
// starting up: it writes alpha only for a check that starts down.
func kaServiceUp(hc *shoalv1.HealthCheck) bool {
	return orDefault(hc.GetKind(), config.DefaultCheckKind) == "none" || hc.GetInitiallyUp()
}
