package migrate

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

var ipvsadmMethod = map[string]string{"nat": "-m", "dr": "-g", "tun": "-i"}

// ipvsadm writes the rules ipvsadm-save -n prints for the configuration as
// a node with every real server healthy would program them.
func (ex *exporter) ipvsadm(c *shoalv1.Config) {
	ex.note("", "health checks, VIP devices, names and the sorry servers are not part of ipvsadm rules")
	g := c.GetGlobal()
	if g.GetTcpTimeout() != nil || g.GetTcpfinTimeout() != nil || g.GetUdpTimeout() != nil {
		ex.note("global", "connection timeouts are set with ipvsadm --set, not written here")
	}
	if cs := g.GetConnectionSync(); cs.GetEnabled() {
		ex.note(syncPath, "the sync daemons are started with ipvsadm --start-daemon master|backup --mcast-interface %s --syncid %d, not written here", orDefault(cs.GetInterface(), "IFACE"), cs.GetSyncId())
	}
	for _, s := range c.GetServices() {
		key := "services[" + s.GetName() + "]"
		if s.Active != nil && !s.GetActive() {
			ex.note(key, "inactive: not written")
			continue
		}
		svc := ipvsadmService(s)
		if svc == "" {
			ex.note(key, "has no address: not written")
			continue
		}
		line := "-A " + svc + " -s " + orDefault(s.GetScheduler(), config.DefaultScheduler)
		if s.GetPersistenceTimeout() != 0 {
			line += " -p " + itoa(s.GetPersistenceTimeout())
		}
		if p := s.GetPersistencePrefix(); p != 0 {
			line += " -M " + maskString(p, isV6(s.GetVip().GetAddress()))
		}
		ex.printf("%s\n", line)
		for _, rs := range s.GetRealServers() {
			if rs.Active != nil && !rs.GetActive() {
				ex.note(realServerPath(s, rs), "inactive: not written")
				continue
			}
			f := rs.GetForward()
			if f == "" {
				f = fwd(s.GetForward())
			}
			w := uint32(config.DefaultWeight)
			if rs.Weight != nil {
				w = rs.GetWeight()
			}
			line := fmt.Sprintf("-a %s -r %s %s -w %d", svc, hostPort(rs.GetAddress(), config.RealServerPort(s, rs)), ipvsadmMethod[f], w)
			// As ipvsadm-save prints them: only when set.
			if x := rs.GetUpperThreshold(); x != 0 {
				line += " -x " + itoa(x)
			}
			if y := rs.GetLowerThreshold(); y != 0 {
				line += " -y " + itoa(y)
			}
			ex.printf("%s\n", line)
		}
	}
}

func ipvsadmService(s *shoalv1.VirtualService) string {
	if s.GetFwmark() != 0 {
		if isV6(s.GetVip().GetAddress()) {
			return "-f " + itoa(s.GetFwmark()) + " -6"
		}
		return "-f " + itoa(s.GetFwmark())
	}
	if s.GetVip().GetAddress() == "" {
		return ""
	}
	flag := map[string]string{"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}[orDefault(s.GetProtocol(), config.DefaultProtocol)]
	return flag + " " + hostPort(s.GetVip().GetAddress(), s.GetPort())
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// ipvsadm reads ipvsadm-save -n rules: -A lines make services, -a lines
// their real servers. The forwarding method the most real servers of a
// service use becomes the service's.
func (im *importer) ipvsadm(data []byte) *shoalv1.Config {
	c := &shoalv1.Config{Global: &shoalv1.Global{}}
	byKey := map[string]*shoalv1.VirtualService{}
	methods := map[*shoalv1.VirtualService][]string{}
	var order []*shoalv1.VirtualService
	for i, raw := range strings.Split(string(data), "\n") {
		n := i + 1
		line := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		var (
			cmd, svcKey, proto, addr, rsAddr, method, sched string
			fwmark, pt, weight, upper, lower                uint64
			hasP, hasW, v6                                  bool
			mask                                            string
			bad                                             bool
		)
		for j := 0; j < len(f) && !bad; j++ {
			arg := func() string {
				if j+1 >= len(f) {
					im.strictf(n, "%s wants a value", f[j])
					bad = true
					return ""
				}
				j++
				return f[j]
			}
			switch f[j] {
			case "-t", "--tcp-service", "-u", "--udp-service", "--sctp-service", "-f", "--fwmark-service":
				if svcKey != "" {
					im.strictf(n, "more than one service in %q", line)
					bad = true
					continue
				}
			}
			switch f[j] {
			case "-A", "--add-service", "-a", "--add-server":
				cmd = f[j]
			case "-t", "--tcp-service", "-u", "--udp-service", "--sctp-service":
				proto = map[string]string{"-t": "tcp", "--tcp-service": "tcp", "-u": "udp", "--udp-service": "udp", "--sctp-service": "sctp"}[f[j]]
				addr = arg()
				svcKey = proto + " " + addr
			case "-f", "--fwmark-service":
				v := arg()
				m, err := parseUint(v, 1<<32-1)
				if err != nil || m == 0 {
					im.strictf(n, "-f %s: not a firewall mark", v)
					bad = true
				}
				fwmark = m
				svcKey = "fwmark " + v
			case "-6", "--ipv6":
				v6 = true
			case "-s", "--scheduler":
				sched = arg()
			case "-p", "--persistent":
				hasP = true
				pt = 300 // ipvsadm's default
				if j+1 < len(f) && !strings.HasPrefix(f[j+1], "-") {
					v, err := parseUint(arg(), 1<<32-1)
					if err != nil {
						im.strictf(n, "-p: %v", err)
						bad = true
					}
					pt = v
				}
			case "-M", "--netmask":
				mask = arg()
			case "-r", "--real-server":
				rsAddr = arg()
			case "-m", "--masquerading":
				method = "nat"
			case "-g", "--gatewaying":
				method = "dr"
			case "-i", "--ipip":
				method = "tun"
			case "-w", "--weight":
				v, err := parseUint(arg(), 65535)
				if err != nil {
					im.strictf(n, "-w: %v", err)
					bad = true
				}
				weight, hasW = v, true
			case "-x", "--u-threshold", "-y", "--l-threshold":
				// ipvsadm takes 0..INT_MAX; the kernel refuses a lower
				// above the upper, which validation reports on this line.
				opt := f[j]
				v, err := parseUint(arg(), 1<<31-1)
				if err != nil {
					im.strictf(n, "%s: %v", opt, err)
					bad = true
				}
				if opt == "-x" || opt == "--u-threshold" {
					upper = v
				} else {
					lower = v
				}
			case "-b", "--sched-flags", "--pe", "--tun-type", "--tun-port", "--tun-nocsum", "--tun-csum", "--tun-remcsum":
				v := arg()
				im.note(n, f[j], "%s not imported: not supported by shoal", v)
			case "-o", "--ops":
				im.note(n, f[j], "not imported: one-packet scheduling is not supported")
			default:
				im.strictf(n, "cannot read %q in %q", f[j], line)
				bad = true
			}
		}
		if bad {
			continue
		}
		if svcKey == "" {
			im.strictf(n, "no service (-t, -u, --sctp-service or -f) in %q", line)
			continue
		}
		switch cmd {
		case "-A", "--add-service":
			if byKey[svcKey] != nil {
				im.strictf(n, "service %s is added twice", svcKey)
				continue
			}
			// ipvsadm rules carry no health checks: the servers were
			// programmed as they are, so they are imported unchecked.
			s := &shoalv1.VirtualService{Scheduler: sched, Fwmark: uint32(fwmark), Protocol: proto, HealthCheck: &shoalv1.HealthCheck{Kind: "none"}}
			if fwmark == 0 {
				ap, err := netip.ParseAddrPort(addr)
				if err != nil {
					im.strictf(n, "%s is not ADDRESS:PORT", addr)
					continue
				}
				s.Vip = &shoalv1.Address{Address: ap.Addr().Unmap().String()}
				s.Port = uint32(ap.Port())
			} else if v6 {
				im.note(n, "-6", "the IPv6 fwmark service gets no VIP; set its vip by hand")
			}
			if hasP {
				s.PersistenceTimeout = uint32(pt)
			}
			if mask != "" {
				p, err := parseMask(mask, v6 || isV6(s.GetVip().GetAddress()))
				if err != nil {
					im.strictf(n, "-M: %v", err)
					continue
				}
				if s.Vip != nil && p == uint32(addrBits(s.Vip.Address)) {
					p = 0 // a single address, as the model spells it
				}
				s.PersistencePrefix = p
			}
			s.Name = kaServiceName(orDefault(proto, config.DefaultProtocol), s.GetVip().GetAddress(), s.Port, s.Fwmark)
			im.mark(servicePath(s.Name), n)
			byKey[svcKey] = s
			order = append(order, s)
		case "-a", "--add-server":
			s := byKey[svcKey]
			if s == nil {
				im.strictf(n, "real server for %s before its -A line", svcKey)
				continue
			}
			rs := &shoalv1.RealServer{}
			if ap, err := netip.ParseAddrPort(rsAddr); err == nil {
				rs.Address = ap.Addr().Unmap().String()
				if uint32(ap.Port()) != s.Port {
					rs.Port = uint32(ap.Port()) // the service's port is the model's 0
				}
			} else if a, err := parseAddr(rsAddr); err == nil {
				rs.Address = a.String()
			} else {
				im.strictf(n, "-r %s is not ADDRESS[:PORT]", rsAddr)
				continue
			}
			if hasW {
				w := uint32(weight)
				rs.Weight = &w
			}
			rs.UpperThreshold, rs.LowerThreshold = uint32(upper), uint32(lower)
			for _, x := range s.RealServers {
				if x.Address == rs.Address && config.RealServerPort(s, x) == config.RealServerPort(s, rs) {
					im.strictf(n, "real server %s is added twice", rsAddr)
					rs = nil
					break
				}
			}
			if rs == nil {
				continue
			}
			if method == "" {
				method = "dr" // ipvsadm's default is gatewaying
			}
			im.mark(realServerPath(s, rs), n)
			s.RealServers = append(s.RealServers, rs)
			methods[s] = append(methods[s], method)
		default:
			im.strictf(n, "want -A or -a in %q", line)
		}
	}
	for _, s := range order {
		count := map[string]int{}
		for _, m := range methods[s] {
			count[m]++
		}
		best := ""
		keys := []string{"nat", "dr", "tun"}
		sort.SliceStable(keys, func(i, j int) bool { return count[keys[i]] > count[keys[j]] })
		if len(methods[s]) > 0 {
			best = keys[0]
		}
		s.Forward = best
		for i, rs := range s.RealServers {
			if methods[s][i] != fwd(best) {
				rs.Forward = methods[s][i]
			}
			// IPVS ignores the port of a direct-routed or tunnelled
			// real server; the model insists it is left 0.
			if f := methods[s][i]; (f == "dr" || f == "tun") && rs.Port != 0 && rs.Port != s.Port {
				im.note(im.lineOf(realServerPath(s, rs)).line, hostPort(rs.Address, rs.Port), "port %d not imported: %s forwarding delivers on the service's port", rs.Port, f)
				rs.Port = 0
			}
		}
		c.Services = append(c.Services, s)
	}
	return c
}
