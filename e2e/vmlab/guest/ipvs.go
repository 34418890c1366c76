package main

import (
	"fmt"
	"net"
	"sort"
	"strings"
	"syscall"

	"github.com/moby/ipvs"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// table is an IPVS table in a canonical text form, one service per entry:
// "tcp 10.0.1.10:80 rr | 10.0.2.11:80 nat w1, 10.0.2.12:80 nat w1". Two
// tables are equal when their strings are; stats and connection counts are
// left out because they differ between directors by nature.
type table map[string]string // service key "tcp 10.0.1.10:80" -> entry

func (t table) String() string {
	var lines []string
	for _, v := range t {
		lines = append(lines, v)
	}
	sort.Strings(lines)
	return strings.Join(lines, "; ")
}

// dests returns "addr:port" -> "nat w1" of one service, or nil.
func (t table) dests(key string) map[string]string {
	e, ok := t[key]
	if !ok {
		return nil
	}
	out := map[string]string{}
	_, list, _ := strings.Cut(e, " | ")
	for _, d := range strings.Split(list, ", ") {
		if a, rest, ok := strings.Cut(d, " "); ok {
			out[a] = rest
		}
	}
	return out
}

func (t table) scheduler(key string) string {
	f := strings.Fields(t[key])
	if len(f) < 3 {
		return ""
	}
	return f[2]
}

func entry(proto, addr string, port uint32, fwmark uint32, sched string, dests []string) (string, string) {
	key := fmt.Sprintf("%s %s", proto, net.JoinHostPort(addr, fmt.Sprint(port)))
	if fwmark != 0 {
		key = fmt.Sprintf("fwm %d", fwmark)
	}
	sort.Strings(dests)
	return key, fmt.Sprintf("%s %s | %s", key, sched, strings.Join(dests, ", "))
}

// kernelTable reads the machine's IPVS table from the kernel over generic
// netlink, as ipvsadm -Ln would show it.
func kernelTable(m *machine) (table, *ipvs.Handle, error) {
	h, err := ipvs.New(m.nsPath())
	if err != nil {
		return nil, nil, fmt.Errorf("ipvs in %s: %w", m.name, err)
	}
	svcs, err := h.GetServices()
	if err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("%s: list IPVS services: %w", m.name, err)
	}
	t := table{}
	for _, s := range svcs {
		ds, err := h.GetDestinations(s)
		if err != nil {
			h.Close()
			return nil, nil, fmt.Errorf("%s: list destinations: %w", m.name, err)
		}
		var dl []string
		for _, d := range ds {
			dl = append(dl, fmt.Sprintf("%s %s w%d", net.JoinHostPort(d.Address.String(), fmt.Sprint(d.Port)), forwardName(d.ConnectionFlags), d.Weight))
		}
		k, v := entry(protoName(s.Protocol), s.Address.String(), uint32(s.Port), s.FWMark, s.SchedName, dl)
		t[k] = v
	}
	return t, h, nil
}

func readTable(m *machine) (table, error) {
	t, h, err := kernelTable(m)
	if h != nil {
		h.Close()
	}
	return t, err
}

// reportedTable is the IPVS table a node reports in its status (what
// `lvsctl status` shows), in the same canonical form.
func reportedTable(st *shoalv1.NodeStatus) table {
	t := table{}
	for _, s := range st.GetIpvs() {
		var dl []string
		for _, d := range s.GetDestinations() {
			dl = append(dl, fmt.Sprintf("%s %s w%d", net.JoinHostPort(d.GetAddress(), fmt.Sprint(d.GetPort())), d.GetForward(), d.GetWeight()))
		}
		k, v := entry(strings.ToLower(s.GetProtocol()), s.GetAddress(), s.GetPort(), s.GetFwmark(), s.GetScheduler(), dl)
		t[k] = v
	}
	return t
}

func protoName(p uint16) string {
	switch p {
	case syscall.IPPROTO_TCP:
		return "tcp"
	case syscall.IPPROTO_UDP:
		return "udp"
	case 132:
		return "sctp"
	}
	return fmt.Sprint(p)
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
