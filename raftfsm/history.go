package raftfsm

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
)

// The history keeps the latest configuration changes, up to HistoryLimit of
// them and HistoryBytes of encoded records (what each replaced and its list
// of changes), whichever is reached first: a thousand small edits cost
// little, but a thousand applies of a large configuration would each keep
// the whole of it, and their change lists can be larger still (a changed
// string appears in one twice, old and new).
//
// Of one change's list of changes it keeps the first HistoryChanges (an
// apply of a whole table has one for every real server): GetHistoryEntry
// rebuilds the rest from the configurations before and after it.
const (
	HistoryLimit   = 1000
	HistoryBytes   = 64 << 20
	HistoryChanges = 1000
)

// undoRecord is the part of a history record that undoes the change from
// old to c: the global settings and services it replaced, and the names of
// those it added. It shares old's, which, like every stored state, are
// never modified.
func undoRecord(old, c *shoalv1.Config) *shoalv1.HistoryRecord {
	rec := &shoalv1.HistoryRecord{}
	if old.GetGlobal() != c.GetGlobal() && !proto.Equal(old.GetGlobal(), c.GetGlobal()) {
		rec.GlobalBefore = old.GetGlobal()
	}
	// Both lists are sorted by name (config.Normalize): walk them together.
	os, ns := old.GetServices(), c.GetServices()
	for len(os) > 0 || len(ns) > 0 {
		switch {
		case len(ns) == 0 || len(os) > 0 && os[0].GetName() < ns[0].GetName():
			rec.ServicesBefore = append(rec.ServicesBefore, os[0])
			os = os[1:]
		case len(os) == 0 || ns[0].GetName() < os[0].GetName():
			rec.ServicesAdded = append(rec.ServicesAdded, ns[0].GetName())
			ns = ns[1:]
		default:
			// A service the command did not touch is shared with old,
			// never modified: no need to compare its fields.
			if os[0] != ns[0] && !proto.Equal(os[0], ns[0]) {
				rec.ServicesBefore = append(rec.ServicesBefore, os[0])
			}
			os, ns = os[1:], ns[1:]
		}
	}
	return rec
}

// appendHistory completes rec (undoRecord) into the record of the change
// that made c, with who asked for it (the command's audit), and drops the
// oldest records beyond the limits. The writes of batch b (nil: a write
// alone) share one copy of the history, as they do the list of services
// (batch).
func appendHistory(b *batch, h []*shoalv1.HistoryRecord, rec *shoalv1.HistoryRecord, c *shoalv1.Config, cmd *shoalv1.Command, changes []*shoalv1.Change) []*shoalv1.HistoryRecord {
	a := cmd.GetAudit()
	method := a.GetMethod()
	if method == "" {
		// A command proposed without an audit (tests, or a log written
		// before audits existed) is named by its operation.
		if f := commandOp(cmd); f != nil {
			method = string(f.Name())
		}
	}
	rec.Entry = &shoalv1.HistoryEntry{
		Serial: c.GetSerial(), Time: a.GetTime(), Actor: a.GetActor(), Role: a.GetRole(), Method: method,
		Changes: changes, RolledBackTo: cmd.GetRollbackConfig().GetSerial(),
	}
	if n := len(changes); n > HistoryChanges {
		// A copy, so that the rest can go: HistoryEntry rebuilds them.
		rec.Entry.Changes = slices.Clone(changes[:HistoryChanges])
		rec.Entry.ChangesOmitted = uint32(n - HistoryChanges)
	}
	// The entry counts too: what the limit bounds is the memory and the
	// snapshot the history takes, and a change list can outweigh what the
	// change replaced.
	rec.UndoBytes = uint64(proto.Size(rec))

	if b == nil {
		b = &batch{} // owns nothing: the history is copied
	}
	if !b.ownsHistory(h) {
		b.history = append(make([]*shoalv1.HistoryRecord, 0, len(h)+batchRoom), h...)
		b.historyBytes = 0
		for _, r := range h {
			b.historyBytes += r.GetUndoBytes()
		}
	}
	// The longest run of newest records that keeps within the limits:
	// the oldest go first.
	hist, total := b.history, b.historyBytes+rec.UndoBytes
	drop := 0
	for drop < len(hist) && (len(hist)-drop > HistoryLimit-1 || total > HistoryBytes) {
		total -= hist[drop].GetUndoBytes()
		drop++
	}
	b.history, b.historyBytes = append(hist[drop:], rec), total
	return b.history
}

// OldestSerial is the oldest serial whose configuration ConfigAt can still
// rebuild.
func OldestSerial(st *shoalv1.State) uint64 {
	if h := st.GetHistory(); len(h) > 0 {
		return h[0].GetEntry().GetSerial() - 1
	}
	return st.GetConfig().GetSerial()
}

// ConfigAt rebuilds the configuration as it was at serial by undoing, newest
// first, every recorded change after it. The result shares parts with st:
// clone it before changing it.
func ConfigAt(st *shoalv1.State, serial uint64) (*shoalv1.Config, error) {
	cur := st.GetConfig()
	switch {
	case serial == cur.GetSerial():
		return cur, nil
	case serial > cur.GetSerial():
		return nil, &Error{Kind: KindNotFound, Reason: fmt.Sprintf("serial %d has not been reached (the serial is %d)", serial, cur.GetSerial())}
	case serial < OldestSerial(st):
		return nil, &Error{Kind: KindFailedPrecondition, Reason: fmt.Sprintf(
			"the history reaches back to serial %d only (it keeps the latest %d changes, fewer when they are large)", OldestSerial(st), HistoryLimit)}
	}
	global := cur.GetGlobal()
	services := map[string]*shoalv1.VirtualService{}
	for _, s := range cur.GetServices() {
		services[s.GetName()] = s
	}
	h := st.GetHistory()
	for i := len(h) - 1; i >= 0 && h[i].GetEntry().GetSerial() > serial; i-- {
		if g := h[i].GetGlobalBefore(); g != nil {
			global = g
		}
		for _, name := range h[i].GetServicesAdded() {
			delete(services, name)
		}
		for _, s := range h[i].GetServicesBefore() {
			services[s.GetName()] = s
		}
	}
	out := &shoalv1.Config{Serial: serial, Global: global}
	for _, s := range services {
		out.Services = append(out.Services, s)
	}
	slices.SortFunc(out.Services, func(a, b *shoalv1.VirtualService) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out, nil
}

// ServiceAt is ConfigAt for the one service named name: the service as it
// was at serial, nil when it did not exist then. It undoes only what the
// history says about that service, so it costs the history's length, not
// the table's (a write answering with the service it changed, while later
// writes have applied, asks it).
func ServiceAt(st *shoalv1.State, serial uint64, name string) (*shoalv1.VirtualService, error) {
	cur := st.GetConfig()
	if serial != cur.GetSerial() {
		// The same refusals as ConfigAt's.
		if serial > cur.GetSerial() || serial < OldestSerial(st) {
			_, err := ConfigAt(st, serial)
			return nil, err
		}
	}
	var s *shoalv1.VirtualService
	if i, ok := searchService(cur.GetServices(), name); ok {
		s = cur.Services[i]
	}
	h := st.GetHistory()
	for i := len(h) - 1; i >= 0 && h[i].GetEntry().GetSerial() > serial; i-- {
		if slices.Contains(h[i].GetServicesAdded(), name) {
			s = nil
		}
		for _, b := range h[i].GetServicesBefore() {
			if b.GetName() == name {
				s = b
			}
		}
	}
	return s, nil
}

// HistoryEntry returns the recorded change that produced serial, with the
// global settings (when it touched them) and the services it touched as they
// were before and after it.
func HistoryEntry(st *shoalv1.State, serial uint64) (entry *shoalv1.HistoryEntry, before, after *shoalv1.Config, err error) {
	h := st.GetHistory()
	i, found := slices.BinarySearchFunc(h, serial, func(r *shoalv1.HistoryRecord, s uint64) int {
		return cmp.Compare(r.GetEntry().GetSerial(), s)
	})
	if !found {
		return nil, nil, nil, &Error{Kind: KindNotFound, Reason: fmt.Sprintf(
			"no change with serial %d in the history (it holds %d to %d)", serial, OldestSerial(st)+1, st.GetConfig().GetSerial())}
	}
	rec := h[i]
	full := [2]*shoalv1.Config{}
	for j, s := range []uint64{serial - 1, serial} {
		if full[j], err = ConfigAt(st, s); err != nil {
			return nil, nil, nil, err
		}
	}
	touched := map[string]bool{}
	for _, name := range rec.GetServicesAdded() {
		touched[name] = true
	}
	for _, s := range rec.GetServicesBefore() {
		touched[s.GetName()] = true
	}
	part := func(c *shoalv1.Config) *shoalv1.Config {
		p := &shoalv1.Config{Serial: c.GetSerial()}
		if rec.GetGlobalBefore() != nil {
			p.Global = c.GetGlobal()
		}
		for _, s := range c.GetServices() {
			if touched[s.GetName()] {
				p.Services = append(p.Services, s)
			}
		}
		return p
	}
	entry = rec.GetEntry()
	if entry.GetChangesOmitted() > 0 {
		// The history keeps the first HistoryChanges; the diff of the
		// two configurations is every one, as the change first had them.
		entry = proto.CloneOf(entry)
		entry.Changes, entry.ChangesOmitted = config.Diff(full[0], full[1]), 0
	}
	return entry, part(full[0]), part(full[1]), nil
}

// rollbackConfig sets c to the configuration as it was at the requested
// serial; Apply then validates and diffs it like any other.
func rollbackConfig(st *shoalv1.State, c *shoalv1.Config, req *shoalv1.RollbackConfigRequest) error {
	if err := checkSerial(c, req.GetExpectedSerial()); err != nil {
		return err
	}
	// Serial 0 is refused even while the history reaches back to it: a
	// request that forgot the field must not empty the configuration, and
	// rolled_back_to 0 would read as "not a rollback". An empty
	// configuration can still be applied as one.
	if req.GetSerial() == 0 && st.GetConfig().GetSerial() > 0 {
		return invalid("serial", "required")
	}
	target, err := ConfigAt(st, req.GetSerial())
	if err != nil {
		return err
	}
	target = proto.Clone(target).(*shoalv1.Config)
	c.Global, c.Services = target.Global, target.Services
	return nil
}
