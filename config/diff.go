package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Diff lists what changed from old to new, in a stable order: the global
// settings first, then services by name, each service's own change before
// those of its real servers. Real servers are matched by address and
// configured port, so a change of the service port is reported once, on the
// service. Either config may be nil (empty). The serial is not compared.
// Diff compares values as given; callers normally diff normalised configs.
func Diff(old, new *shoalv1.Config) []*shoalv1.Change {
	var out []*shoalv1.Change
	if d := fieldDiff("", old.GetGlobal(), new.GetGlobal(), nil); len(d) > 0 {
		out = append(out, &shoalv1.Change{Action: shoalv1.ChangeAction_CHANGE_ACTION_MODIFIED, Detail: strings.Join(d, ", ")})
	}
	olds, news := servicesByName(old), servicesByName(new)
	for _, name := range unionKeys(olds, news) {
		out = append(out, DiffService(olds[name], news[name])...)
	}
	return out
}

// DiffService is Diff for one service: o before, n after, either nil
// (added, removed). Diff of two configurations that differ in one service
// alone is DiffService of its two versions, which a write of one service
// uses instead of comparing every service of a large table.
func DiffService(o, n *shoalv1.VirtualService) []*shoalv1.Change {
	switch {
	case o == nil && n == nil:
		return nil
	case o == nil:
		out := []*shoalv1.Change{{Action: shoalv1.ChangeAction_CHANGE_ACTION_ADDED, Service: n.Name, Detail: describeService(n)}}
		for _, rs := range n.RealServers {
			out = append(out, rsChange(shoalv1.ChangeAction_CHANGE_ACTION_ADDED, n, rs, describeRealServer(rs)))
		}
		return out
	case n == nil:
		return []*shoalv1.Change{{Action: shoalv1.ChangeAction_CHANGE_ACTION_REMOVED, Service: o.Name, Detail: describeService(o)}}
	case o == n:
		return nil // shared, never modified: the same
	}
	return diffService(o, n)
}

func diffService(o, n *shoalv1.VirtualService) []*shoalv1.Change {
	var out []*shoalv1.Change
	if d := fieldDiff("", o, n, map[string]bool{"real_servers": true}); len(d) > 0 {
		out = append(out, &shoalv1.Change{Action: shoalv1.ChangeAction_CHANGE_ACTION_MODIFIED, Service: n.Name, Detail: strings.Join(d, ", ")})
	}
	olds, news := realServersByID(o), realServersByID(n)
	for _, id := range unionKeys(olds, news) {
		ors, nrs := olds[id], news[id]
		switch {
		case ors == nil:
			out = append(out, rsChange(shoalv1.ChangeAction_CHANGE_ACTION_ADDED, n, nrs, describeRealServer(nrs)))
		case nrs == nil:
			out = append(out, rsChange(shoalv1.ChangeAction_CHANGE_ACTION_REMOVED, o, ors, describeRealServer(ors)))
		default:
			if d := fieldDiff("", ors, nrs, nil); len(d) > 0 {
				out = append(out, rsChange(shoalv1.ChangeAction_CHANGE_ACTION_MODIFIED, n, nrs, strings.Join(d, ", ")))
			}
		}
	}
	return out
}

func rsChange(a shoalv1.ChangeAction, s *shoalv1.VirtualService, rs *shoalv1.RealServer, detail string) *shoalv1.Change {
	return &shoalv1.Change{Action: a, Service: s.GetName(), RealServer: RealServerKey(s, rs), Detail: detail}
}

func servicesByName(c *shoalv1.Config) map[string]*shoalv1.VirtualService {
	m := map[string]*shoalv1.VirtualService{}
	for _, s := range c.GetServices() {
		if s != nil {
			m[s.Name] = s
		}
	}
	return m
}

// realServersByID keys real servers by address and configured port: their
// identity does not change when the service port does.
func realServersByID(s *shoalv1.VirtualService) map[string]*shoalv1.RealServer {
	m := map[string]*shoalv1.RealServer{}
	for _, rs := range s.GetRealServers() {
		if rs == nil {
			continue
		}
		key := rs.Address
		if ip, err := netip.ParseAddr(rs.Address); err == nil {
			key = ip.String()
		}
		m[key+"|"+strconv.FormatUint(uint64(rs.Port), 10)] = rs
	}
	return m
}

func unionKeys[V any](a, b map[string]V) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func describeService(s *shoalv1.VirtualService) string {
	var b strings.Builder
	if s.Fwmark > 0 {
		fmt.Fprintf(&b, "fwmark %d", s.Fwmark)
		if s.GetVip().GetAddress() != "" {
			fmt.Fprintf(&b, " vip %s", s.GetVip().GetAddress())
		}
	} else {
		host := s.GetVip().GetAddress()
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		fmt.Fprintf(&b, "%s:%d/%s", host, s.Port, s.Protocol)
	}
	fmt.Fprintf(&b, " %s %s", s.Scheduler, s.Forward)
	if n := len(s.RealServers); n > 0 {
		fmt.Fprintf(&b, ", %d real servers", n)
	}
	return b.String()
}

func describeRealServer(rs *shoalv1.RealServer) string {
	d := "weight " + strconv.FormatUint(uint64(rs.GetWeight()), 10)
	if rs.Forward != "" {
		d += " " + rs.Forward
	}
	if rs.Active != nil && !rs.GetActive() {
		d += " inactive"
	}
	if rs.UpperThreshold > 0 {
		d += " upper_threshold " + strconv.FormatUint(uint64(rs.UpperThreshold), 10)
	}
	if rs.LowerThreshold > 0 {
		d += " lower_threshold " + strconv.FormatUint(uint64(rs.LowerThreshold), 10)
	}
	switch n := len(rs.HealthChecks); n {
	case 0:
	case 1:
		d += " 1 own check"
	default:
		d += " " + strconv.Itoa(n) + " own checks"
	}
	return d
}

// fieldDiff lists "field: old -> new" for every populated field that differs,
// descending into nested messages (health_check.interval) except those that
// read better as one value (durations, addresses, the sorry server).
func fieldDiff(prefix string, o, n proto.Message, skip map[string]bool) []string {
	if proto.Equal(o, n) {
		return nil
	}
	var desc protoreflect.MessageDescriptor
	var om, nm protoreflect.Message
	switch {
	case o != nil && o.ProtoReflect().IsValid():
		desc = o.ProtoReflect().Descriptor()
	case n != nil && n.ProtoReflect().IsValid():
		desc = n.ProtoReflect().Descriptor()
	default:
		return nil
	}
	if o != nil {
		om = o.ProtoReflect()
	}
	if n != nil {
		nm = n.ProtoReflect()
	}
	var out []string
	fields := desc.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		name := string(fd.Name())
		if skip[name] {
			continue
		}
		ov, oset := get(om, fd)
		nv, nset := get(nm, fd)
		if oset == nset && (!oset || ov.Equal(nv)) {
			continue
		}
		if fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() && !atomicMessage(fd) {
			var oc, nc proto.Message
			if oset {
				oc = ov.Message().Interface()
			}
			if nset {
				nc = nv.Message().Interface()
			}
			out = append(out, fieldDiff(prefix+name+".", oc, nc, nil)...)
			continue
		}
		out = append(out, fmt.Sprintf("%s%s: %s -> %s", prefix, name, format(fd, ov, oset), format(fd, nv, nset)))
	}
	return out
}

func get(m protoreflect.Message, fd protoreflect.FieldDescriptor) (protoreflect.Value, bool) {
	if m == nil || !m.IsValid() || !m.Has(fd) {
		return protoreflect.Value{}, false
	}
	return m.Get(fd), true
}

func atomicMessage(fd protoreflect.FieldDescriptor) bool {
	switch fd.Message().FullName() {
	case "google.protobuf.Duration", "shoal.v1.Address", "shoal.v1.RealServer":
		return true
	}
	return false
}

func format(fd protoreflect.FieldDescriptor, v protoreflect.Value, set bool) string {
	if !set {
		if fd.IsList() {
			return "[]"
		}
		switch {
		case fd.Kind() == protoreflect.MessageKind:
			return "none"
		case fd.HasPresence():
			return "unset"
		}
		v = fd.Default()
	}
	if fd.IsList() {
		l := v.List()
		parts := make([]string, l.Len())
		for i := range parts {
			parts[i] = formatScalar(fd, l.Get(i))
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return formatScalar(fd, v)
}

func formatScalar(fd protoreflect.FieldDescriptor, v protoreflect.Value) string {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if s := v.String(); s != "" && !strings.ContainsAny(s, " \t\n\"\\") {
			return s
		}
		return strconv.Quote(v.String())
	case protoreflect.MessageKind:
		switch m := v.Message().Interface().(type) {
		case *durationpb.Duration:
			return m.AsDuration().String()
		case *shoalv1.Address:
			s := m.GetAddress() + "/" + strconv.FormatUint(uint64(m.GetPrefixLength()), 10)
			if m.GetInterface() != "" {
				s += " dev " + m.GetInterface()
			}
			return s
		case *shoalv1.HealthCheck:
			// A list of checks reads as their kinds and ports; what changed
			// inside one is in the real server's new definition.
			if m.GetPort() != 0 {
				return m.GetKind() + ":" + strconv.FormatUint(uint64(m.GetPort()), 10)
			}
			return m.GetKind()
		case *shoalv1.RealServer:
			s := m.GetAddress()
			if m.GetPort() != 0 {
				s = netJoin(s, m.GetPort())
			}
			return s
		default:
			return formatMessage(v.Message())
		}
	}
	return fmt.Sprint(v.Interface())
}

// formatMessage writes any other message (a hook, a BGP peer) as its set
// fields, {name=value ...}, in field order, so that a diff reads the same
// every time (prototext varies its spacing on purpose).
func formatMessage(m protoreflect.Message) string {
	var parts []string
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if m.Has(fd) {
			parts = append(parts, string(fd.Name())+"="+format(fd, m.Get(fd), true))
		}
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func netJoin(host string, port uint32) string {
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.FormatUint(uint64(port), 10)
}
