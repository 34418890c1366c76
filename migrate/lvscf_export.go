package migrate

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func (ex *exporter) lvscf(c *shoalv1.Config) {
	g := c.GetGlobal()
	ex.printf("serial_no = %d\n", c.GetSerial())
	ex.printf("service = lvs\n")
	forward := commonForward(c)
	ex.printf("network = %s\n", map[string]string{"nat": "nat", "dr": "direct", "tun": "tunnel"}[forward])
	if a := g.GetNatRouter(); a != nil && a.GetAddress() != "" {
		ex.printf("nat_router = %s\n", lvsAddressString(a))
		if a.GetPrefixLength() != 0 {
			ex.printf("nat_nmask = %s\n", maskString(a.GetPrefixLength(), isV6(a.GetAddress())))
		}
		ex.lvsLabelNote("nat_router", a)
	}
	if len(g.GetMonitorLinks()) == 0 {
		ex.printf("monitor_links = 0\n")
	} else {
		ex.printf("monitor_links = 1\n")
		if want := lvsInterfaces(c); strings.Join(want, ",") != strings.Join(g.GetMonitorLinks(), ",") {
			ex.note("monitor_links", "lvs.cf only switches link monitoring on: the links watched become the VIP and NAT router devices (%s), not %s",
				strings.Join(want, ", "), strings.Join(g.GetMonitorLinks(), ", "))
		}
	}
	if d := g.GetTcpTimeout(); d != nil {
		ex.printf("tcp_timeout = %d\n", seconds(d.AsDuration()))
	}
	if d := g.GetTcpfinTimeout(); d != nil {
		ex.printf("tcpfin_timeout = %d\n", seconds(d.AsDuration()))
	}
	if d := g.GetUdpTimeout(); d != nil {
		ex.printf("udp_timeout = %d\n", seconds(d.AsDuration()))
	}
	ex.lvsExportSync(g.GetConnectionSync())
	ex.lvsHooks(g.GetHooks())
	ex.garpNotes(g)
	for _, s := range c.GetServices() {
		ex.lvsVirtual(s, forward)
	}
	ex.prependNotes("#")
}

// commonForward is the forwarding method most services use: lvs.cf has one
// network setting for the whole router.
func commonForward(c *shoalv1.Config) string {
	count := map[string]int{}
	for _, s := range c.GetServices() {
		count[fwd(s.GetForward())]++
	}
	best := config.DefaultForward
	for _, f := range []string{"nat", "dr", "tun"} {
		if count[f] > count[best] {
			best = f
		}
	}
	return best
}

func fwd(f string) string {
	if f == "" {
		return config.DefaultForward
	}
	return f
}

func lvsAddressString(a *shoalv1.Address) string {
	switch {
	case a.GetLabel() != "" && strings.HasPrefix(a.GetLabel(), a.GetInterface()+":"):
		return a.GetAddress() + " " + a.GetLabel()
	case a.GetInterface() != "":
		return a.GetAddress() + " " + a.GetInterface()
	}
	return a.GetAddress()
}

func (ex *exporter) lvsLabelNote(key string, a *shoalv1.Address) {
	if a.GetLabel() != "" && !strings.HasPrefix(a.GetLabel(), a.GetInterface()+":") {
		ex.note(key, "label %s is not an alias of %s and cannot be written in lvs.cf", a.GetLabel(), a.GetInterface())
	}
}

func (ex *exporter) garpNotes(g *shoalv1.Global) {
	if g.GetGarpCount() != 0 && g.GetGarpCount() != config.DefaultGARPCount ||
		g.GetGarpInterval() != nil && g.GetGarpInterval().AsDuration() != config.DefaultGARPInterval ||
		g.GetGarpRefresh() != nil && g.GetGarpRefresh().AsDuration() != config.DefaultGARPRefresh {
		ex.note("global", "garp_count, garp_interval and garp_refresh have no equivalent; an import keeps the cluster's values")
	}
}

func lvsName(n string) string {
	if plainToken(n) {
		return n
	}
	return encodeEscapes(n)
}

func (ex *exporter) lvsVirtual(s *shoalv1.VirtualService, forward string) {
	name := s.GetName()
	key := "services[" + name + "]"
	ex.printf("\nvirtual %s {\n", lvsName(name))
	ex.printf("\tactive = %d\n", b2i(s.Active == nil || s.GetActive()))
	if v := s.GetVip(); v != nil && v.GetAddress() != "" {
		ex.printf("\taddress = %s\n", lvsAddressString(v))
		if v.GetPrefixLength() != 0 {
			ex.printf("\tvip_nmask = %s\n", maskString(v.GetPrefixLength(), isV6(v.GetAddress())))
		}
		ex.lvsLabelNote(key+".vip", v)
	}
	if fwd(s.GetForward()) != forward {
		ex.note(key, "forward %s cannot be written: lvs.cf has one network setting (%s) for every virtual", fwd(s.GetForward()), forward)
	}
	hc := s.GetHealthCheck()
	if s.GetFwmark() != 0 {
		ex.printf("\tfwmark = %d\n", s.GetFwmark())
		if hc.GetPort() != 0 {
			ex.printf("\tport = %d\n", hc.GetPort())
		}
	} else {
		ex.printf("\tport = %d\n", s.GetPort())
		if hc.GetPort() != 0 {
			ex.note(key+".health_check.port", "%d cannot be written: nanny checks the service port", hc.GetPort())
		}
	}
	if s.GetProtocol() != "" {
		ex.printf("\tprotocol = %s\n", s.GetProtocol())
	}
	if s.GetScheduler() != "" {
		ex.printf("\tscheduler = %s\n", s.GetScheduler())
	}
	if s.GetPersistenceTimeout() != 0 {
		ex.printf("\tpersistent = %d\n", s.GetPersistenceTimeout())
	}
	if p := s.GetPersistencePrefix(); p != 0 {
		ex.printf("\tpmask = %s\n", maskString(p, s.GetVip() != nil && isV6(s.GetVip().GetAddress())))
	}
	ex.lvsCheck(key, hc)
	ex.printf("\tquiesce_server = %d\n", b2i(s.GetQuiesce()))
	if ss := s.GetSorryServer(); ss != nil && ss.GetAddress() != "" {
		if ss.GetPort() != 0 {
			ex.printf("\tsorry_server = %s\n", hostPort(ss.GetAddress(), ss.GetPort()))
		} else {
			ex.printf("\tsorry_server = %s\n", ss.GetAddress())
		}
	}
	for _, rs := range s.GetRealServers() {
		rkey := realServerPath(s, rs)
		n := rs.GetName()
		if n == "" {
			n = rs.GetAddress()
		}
		ex.printf("\n\tserver %s {\n", lvsName(n))
		ex.printf("\t\taddress = %s\n", rs.GetAddress())
		ex.printf("\t\tactive = %d\n", b2i(rs.Active == nil || rs.GetActive()))
		if rs.GetPort() != 0 {
			ex.printf("\t\tport = %d\n", rs.GetPort())
		}
		if rs.Weight != nil {
			ex.printf("\t\tweight = %d\n", rs.GetWeight())
		}
		ex.printf("\t}\n")
		if rs.GetForward() != "" && rs.GetForward() != fwd(s.GetForward()) {
			ex.note(rkey, "forward %s cannot be written: lvs.cf has one network setting for every real server", rs.GetForward())
		}
		if rs.GetUpperThreshold() != 0 || rs.GetLowerThreshold() != 0 {
			ex.note(rkey, "connection thresholds cannot be written: lvs.cf has none; the server is not limited")
		}
		if len(rs.GetHealthChecks()) > 0 {
			ex.note(rkey+".health_checks", "cannot be written: nanny has one monitor per virtual; the server gets the virtual's")
		}
	}
	ex.printf("}\n")
}

func (ex *exporter) lvsCheck(key string, hc *shoalv1.HealthCheck) {
	if hc == nil {
		return
	}
	key += ".health_check"
	switch hc.GetKind() {
	case "", "tcp":
		if hc.GetExpect() != "" {
			ex.printf("\texpect = %s\n", encodeEscapes(hc.GetExpect()))
		}
	case "send-expect":
		ex.printf("\tsend = %s\n", encodeEscapes(config.DecodeSend(hc.GetSend())))
		if hc.GetExpect() != "" {
			ex.printf("\texpect = %s\n", encodeEscapes(hc.GetExpect()))
		}
	case "exec":
		prog := strings.Join(hc.GetCommand(), " ")
		if hc.GetShell() && len(hc.GetCommand()) > 0 {
			prog = hc.GetCommand()[0]
			if len(hc.GetCommand()) > 1 {
				ex.note(key+".command", "only the shell command %q is written; its extra arguments are dropped", prog)
			}
		} else if !hc.GetShell() {
			// Quoted so that nanny's shell, and an import, see the same argv.
			prog = joinCommand(hc.GetCommand())
		}
		ex.printf("\tsend_program = %s\n", encodeEscapes(prog))
		if hc.GetExpect() != "" {
			ex.printf("\texpect = %s\n", encodeEscapes(hc.GetExpect()))
		}
	case "http", "https":
		req := "GET " + hc.GetHttpPath() + " HTTP/1.0\r\n"
		if hc.GetHttpHost() != "" {
			req += "Host: " + hc.GetHttpHost() + "\r\n"
		}
		req += "\r\n"
		ex.printf("\tsend = %s\n", encodeEscapes(req))
		expect := "HTTP/1."
		if hc.GetExpect() != "" {
			expect = hc.GetExpect()
		}
		ex.printf("\texpect = %s\n", encodeEscapes(expect))
		ex.note(key, "%s check written as a send/expect of an HTTP request: nanny does not speak TLS or check the status code", hc.GetKind())
	case "none":
		ex.note(key, "kind none cannot be written: nanny always checks; the export checks the port with TCP")
	}
	if hc.GetRegex() {
		ex.printf("\tuse_regex = 1\n")
	}
	if d := hc.GetDownAfter(); d != nil && d.AsDuration() > 0 {
		ex.printf("\ttimeout = %d\n", seconds(d.AsDuration()))
	}
	if d := hc.GetReentry(); d != nil && d.AsDuration() > 0 {
		ex.printf("\treentry = %d\n", seconds(d.AsDuration()))
	}
	var lost []string
	if d := hc.GetInterval(); d != nil && d.AsDuration() != config.DefaultCheckInterval {
		lost = append(lost, "interval "+d.AsDuration().String())
	}
	if d := hc.GetTimeout(); d != nil && d.AsDuration() != config.DefaultCheckTimeout {
		lost = append(lost, "timeout "+d.AsDuration().String())
	}
	if r := hc.GetRise(); r != 0 && r != config.DefaultCheckRise {
		lost = append(lost, fmt.Sprintf("rise %d", r))
	}
	if f := hc.GetFall(); f != 0 && f != config.DefaultCheckFall {
		lost = append(lost, fmt.Sprintf("fall %d", f))
	}
	if hc.GetInitiallyUp() {
		lost = append(lost, "initially_up")
	}
	if hc.GetHttpStatus() != 0 {
		lost = append(lost, fmt.Sprintf("http_status %d", hc.GetHttpStatus()))
	}
	if hc.GetTlsServerName() != "" || hc.GetTlsSkipVerify() {
		lost = append(lost, "tls settings")
	}
	if len(lost) > 0 {
		ex.note(key, "%s cannot be written in lvs.cf; an import gets shoal's defaults", strings.Join(lost, ", "))
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// prependNotes puts the export's notes at the top of the file as comments,
// so the file itself says what it lost.
func (ex *exporter) prependNotes(comment string) {
	if len(ex.notes) == 0 {
		return
	}
	sort.SliceStable(ex.notes, func(i, j int) bool { return ex.notes[i].Key < ex.notes[j].Key })
	var head bytes.Buffer
	fmt.Fprintf(&head, "%s written by shoal; not expressible in this format:\n", comment)
	for _, n := range ex.notes {
		fmt.Fprintf(&head, "%s   %s\n", comment, strings.ReplaceAll(n.String(), "\n", " "))
	}
	head.WriteString("\n")
	head.Write(ex.buf.Bytes())
	ex.buf = head
}

// lvsHooks writes the hooks of leader and follower as active_cmd and
// inactive_cmd; lvs.cf has one of each and no other events.
func (ex *exporter) lvsHooks(hs []*shoalv1.Hook) {
	written := map[string]bool{}
	for i, h := range hs {
		key := fmt.Sprintf("global.hooks[%d]", i)
		for _, e := range h.GetEvents() {
			cmdKey := ""
			for k, ev := range piranhaHookEvents {
				if ev == e {
					cmdKey = k
				}
			}
			switch {
			case cmdKey == "":
				ex.note(key, "event %s has no lvs.cf equivalent (active_cmd and inactive_cmd only)", e)
			case written[cmdKey]:
				ex.note(key, "%s is written for an earlier hook; lvs.cf has one", cmdKey)
			default:
				written[cmdKey] = true
				ex.printf("%s = %s\n", cmdKey, encodeEscapes(joinCommand(h.GetCommand())))
				if h.GetTimeout() != nil {
					ex.note(key+".timeout", "pulse has no timeout for %s", cmdKey)
				}
			}
		}
	}
}
