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
	if d := serviceFields.diff("", o, n); len(d) > 0 {
		out = append(out, &shoalv1.Change{Action: shoalv1.ChangeAction_CHANGE_ACTION_MODIFIED, Service: n.Name, Detail: strings.Join(d, ", ")})
	}
	if changed, ok := realServersInPlace(o, n); ok {
		return append(out, changed...)
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
			if d := realServerFields.diff("", ors, nrs); len(d) > 0 {
				out = append(out, rsChange(shoalv1.ChangeAction_CHANGE_ACTION_MODIFIED, n, nrs, strings.Join(d, ", ")))
			}
		}
	}
	return out
}

// realServersInPlace is the part of diffService that matches real
// servers, for the common case of a write that changed some of their
// attributes: o and n list the same real servers in the same order, so
// they pair by position, without the maps of realServersByID. ok is
// false when they do not (one added, removed or moved, or a nil), or
// when a changed one shares its identity with another, which the maps
// would keep one of; diffService then matches by identity.
func realServersInPlace(o, n *shoalv1.VirtualService) (changes []*shoalv1.Change, ok bool) {
	ors, nrs := o.GetRealServers(), n.GetRealServers()
	if len(ors) != len(nrs) {
		return nil, false
	}
	var changed []int
	var details [][]string
	for i := range ors {
		a, b := ors[i], nrs[i]
		if a == nil || b == nil || a.Address != b.Address || a.Port != b.Port {
			return nil, false
		}
		if d := realServerFields.diff("", a, b); len(d) > 0 {
			changed = append(changed, i)
			details = append(details, d)
		}
	}
	if len(changed) == 0 {
		return nil, true
	}
	keys := make([]string, len(changed))
	for k, i := range changed {
		keys[k] = realServerID(ors[i])
		id := identityOf(ors[i])
		for j := range ors {
			if j != i && identityOf(ors[j]) == id {
				return nil, false
			}
		}
	}
	// In the order of realServersByID's keys, as unionKeys sorts them.
	order := make([]int, len(changed))
	for k := range order {
		order[k] = k
	}
	slices.SortFunc(order, func(x, y int) int { return strings.Compare(keys[x], keys[y]) })
	for _, k := range order {
		changes = append(changes, rsChange(shoalv1.ChangeAction_CHANGE_ACTION_MODIFIED, n, nrs[changed[k]], strings.Join(details[k], ", ")))
	}
	return changes, true
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
		if rs != nil {
			m[realServerID(rs)] = rs
		}
	}
	return m
}

// identity is what realServerID says, without making a string: two real
// servers have the same identity exactly when they have the same ID.
type identity struct {
	ip   netip.Addr
	raw  string // the address, when it does not parse
	port uint32
}

func identityOf(rs *shoalv1.RealServer) identity {
	if ip, err := netip.ParseAddr(rs.Address); err == nil {
		return identity{ip: ip, port: rs.Port}
	}
	return identity{raw: rs.Address, port: rs.Port}
}

// realServerID is a real server's key in realServersByID.
func realServerID(rs *shoalv1.RealServer) string {
	key := rs.Address
	if ip, err := netip.ParseAddr(rs.Address); err == nil {
		key = ip.String()
	}
	return key + "|" + strconv.FormatUint(uint64(rs.Port), 10)
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
		if skip[string(fd.Name())] {
			continue
		}
		out = fieldChange(out, prefix, fd, om, nm)
	}
	return out
}

// fieldChange appends to out what fieldDiff says of the field fd of om
// and nm (either may be nil): nothing when it is the same in both.
func fieldChange(out []string, prefix string, fd protoreflect.FieldDescriptor, om, nm protoreflect.Message) []string {
	name := string(fd.Name())
	ov, oset := get(om, fd)
	nv, nset := get(nm, fd)
	if oset == nset && (!oset || ov.Equal(nv)) {
		return out
	}
	if fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() && !atomicMessage(fd) {
		var oc, nc proto.Message
		if oset {
			oc = ov.Message().Interface()
		}
		if nset {
			nc = nv.Message().Interface()
		}
		return append(out, fieldDiff(prefix+name+".", oc, nc, nil)...)
	}
	return append(out, fmt.Sprintf("%s%s: %s -> %s", prefix, name, format(fd, ov, oset), format(fd, nv, nset)))
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

// A write of one real server diffs its service, which at scale is done
// for every write on every node: the fields of a service and of a real
// server are compared without reflection (fieldDiff's proto.Equal and
// its reflective walk were most of a write's diff). Only a field that
// differs is formatted, by fieldChange, so the words are fieldDiff's.
var (
	serviceFields = fastFields(&shoalv1.VirtualService{}, []fastField[*shoalv1.VirtualService]{
		{"name", func(o, n *shoalv1.VirtualService) bool { return o.Name != n.Name }},
		{"vip", func(o, n *shoalv1.VirtualService) bool { return messageDiffers(o.Vip, n.Vip) }},
		{"port", func(o, n *shoalv1.VirtualService) bool { return o.Port != n.Port }},
		{"protocol", func(o, n *shoalv1.VirtualService) bool { return o.Protocol != n.Protocol }},
		{"fwmark", func(o, n *shoalv1.VirtualService) bool { return o.Fwmark != n.Fwmark }},
		{"scheduler", func(o, n *shoalv1.VirtualService) bool { return o.Scheduler != n.Scheduler }},
		{"persistence_timeout", func(o, n *shoalv1.VirtualService) bool { return o.PersistenceTimeout != n.PersistenceTimeout }},
		{"persistence_prefix", func(o, n *shoalv1.VirtualService) bool { return o.PersistencePrefix != n.PersistencePrefix }},
		{"forward", func(o, n *shoalv1.VirtualService) bool { return o.Forward != n.Forward }},
		{"active", func(o, n *shoalv1.VirtualService) bool { return optionalDiffers(o.Active, n.Active) }},
		{"quiesce", func(o, n *shoalv1.VirtualService) bool { return o.Quiesce != n.Quiesce }},
		{"sorry_server", func(o, n *shoalv1.VirtualService) bool { return messageDiffers(o.SorryServer, n.SorryServer) }},
		{"health_check", func(o, n *shoalv1.VirtualService) bool { return messageDiffers(o.HealthCheck, n.HealthCheck) }},
		{"announce", func(o, n *shoalv1.VirtualService) bool { return o.Announce != n.Announce }},
	}, "real_servers")
	realServerFields = fastFields(&shoalv1.RealServer{}, []fastField[*shoalv1.RealServer]{
		{"address", func(o, n *shoalv1.RealServer) bool { return o.Address != n.Address }},
		{"port", func(o, n *shoalv1.RealServer) bool { return o.Port != n.Port }},
		{"weight", func(o, n *shoalv1.RealServer) bool { return optionalDiffers(o.Weight, n.Weight) }},
		{"active", func(o, n *shoalv1.RealServer) bool { return optionalDiffers(o.Active, n.Active) }},
		{"forward", func(o, n *shoalv1.RealServer) bool { return o.Forward != n.Forward }},
		{"name", func(o, n *shoalv1.RealServer) bool { return o.Name != n.Name }},
		{"upper_threshold", func(o, n *shoalv1.RealServer) bool { return o.UpperThreshold != n.UpperThreshold }},
		{"lower_threshold", func(o, n *shoalv1.RealServer) bool { return o.LowerThreshold != n.LowerThreshold }},
		{"health_checks", func(o, n *shoalv1.RealServer) bool {
			return !slices.EqualFunc(o.HealthChecks, n.HealthChecks, func(a, b *shoalv1.HealthCheck) bool { return proto.Equal(a, b) })
		}},
	})
)

// fastField is one field of a message and whether it differs between
// two of them, as fieldDiff judges it: a field without presence differs
// when its values do, an optional one or a message when one is set and
// the other not or their values differ, a list when its elements do.
// differs may say yes too often (fieldChange looks again and says
// nothing), never too seldom.
type fastField[M proto.Message] struct {
	name    string
	differs func(o, n M) bool
}

// fastDiff is fieldDiff over the fields of one message type, with the
// comparisons written out.
type fastDiff[M proto.Message] struct {
	fields []fastField[M]
	fds    []protoreflect.FieldDescriptor
	// skip is fieldDiff's skip, for the reflective fallback.
	skip map[string]bool
	// reflective is set when the message has fields the table does not
	// name, in its order: a field added to the proto is then still
	// diffed (TestFastDiffCoversEveryField fails until it is named).
	reflective bool
}

// fastFields checks fields against m's descriptor: every field but skip,
// in declaration order, as fieldDiff visits them.
func fastFields[M proto.Message](m M, fields []fastField[M], skip ...string) *fastDiff[M] {
	d := &fastDiff[M]{fields: fields, skip: map[string]bool{}}
	for _, s := range skip {
		d.skip[s] = true
	}
	all := m.ProtoReflect().Descriptor().Fields()
	k := 0
	for i := 0; i < all.Len(); i++ {
		fd := all.Get(i)
		if d.skip[string(fd.Name())] {
			continue
		}
		if k >= len(fields) || fields[k].name != string(fd.Name()) {
			d.reflective = true
			return d
		}
		d.fds = append(d.fds, fd)
		k++
	}
	d.reflective = k != len(fields)
	return d
}

// diff is fieldDiff(prefix, o, n, skip) for o and n not nil.
func (d *fastDiff[M]) diff(prefix string, o, n M) []string {
	if d.reflective {
		return fieldDiff(prefix, o, n, d.skip)
	}
	var out []string
	for i, f := range d.fields {
		if f.differs(o, n) {
			out = fieldChange(out, prefix, d.fds[i], o.ProtoReflect(), n.ProtoReflect())
		}
	}
	return out
}

func optionalDiffers[T comparable](o, n *T) bool {
	return (o == nil) != (n == nil) || o != nil && *o != *n
}

func messageDiffers[M interface {
	comparable
	proto.Message
}](o, n M) bool {
	var none M
	return (o == none) != (n == none) || o != none && !proto.Equal(o, n)
}

// Summarize counts changes by what they touch.
func Summarize(changes []*shoalv1.Change) *shoalv1.ChangeSummary {
	s := &shoalv1.ChangeSummary{}
	for _, c := range changes {
		switch {
		case c.GetService() == "":
			s.GlobalModified = true
		case c.GetRealServer() == "":
			switch c.GetAction() {
			case shoalv1.ChangeAction_CHANGE_ACTION_ADDED:
				s.ServicesAdded++
			case shoalv1.ChangeAction_CHANGE_ACTION_REMOVED:
				s.ServicesRemoved++
			default:
				s.ServicesModified++
			}
		default:
			switch c.GetAction() {
			case shoalv1.ChangeAction_CHANGE_ACTION_ADDED:
				s.RealServersAdded++
			case shoalv1.ChangeAction_CHANGE_ACTION_REMOVED:
				s.RealServersRemoved++
			default:
				s.RealServersModified++
			}
		}
	}
	return s
}
