package raftfsm

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// Result is the outcome of a command: the state after it and what changed.
// When the command changed nothing, State is the very state that was passed
// in (compare pointers) and Changes is empty; a command with a request id
// that applied always gets a state of its own, which remembers the id.
type Result struct {
	State   *shoalv1.State
	Changes []*shoalv1.Change
	// Serial is the serial the command produced or kept: what a write
	// answers. It is State.Config.Serial, except for a replay, whose
	// serial is the first outcome's and may be older.
	Serial uint64
	// Replayed says that the state remembered the command's request id:
	// nothing was applied, State is the state passed in, and Serial and
	// Changes are the first outcome's (requests.go).
	Replayed bool
	// Summary is set, and Changes nil, for a replay of a write of more
	// than HistoryChanges changes that the history no longer holds: what
	// the state remembers of its changes.
	Summary *shoalv1.ChangeSummary
	// Index is the command's Raft index, set by Node.Apply (0 from the
	// pure Apply).
	Index uint64
	// Service names the one service the command changed, when it changed
	// the configuration in one service alone: the API then judges that
	// service alone too (config.AdmitService). After is that service as
	// the command left it, nil when it deleted it.
	Service string
	After   *shoalv1.VirtualService

	// one is set by Judge instead of State for a write of one service:
	// what finish needs to build the state after it.
	one *oneWrite
}

// ErrorKind classifies why a command was rejected; the API maps it to a
// status code in one place.
type ErrorKind int

const (
	// KindInvalid: the command or the configuration it would produce is invalid.
	KindInvalid ErrorKind = iota + 1
	// KindNotFound: the named service or real server does not exist.
	KindNotFound
	// KindAlreadyExists: a create named something that exists.
	KindAlreadyExists
	// KindFailedPrecondition: expected_serial did not match.
	KindFailedPrecondition
)

func (k ErrorKind) String() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindNotFound:
		return "not found"
	case KindAlreadyExists:
		return "already exists"
	case KindFailedPrecondition:
		return "failed precondition"
	}
	return fmt.Sprintf("ErrorKind(%d)", int(k))
}

// Error is a rejected command. Every node rejects the same command the same
// way, so it is a result of the log, not a fault.
type Error struct {
	Kind   ErrorKind
	Reason string
	// Fields lists the configuration problems when Kind is KindInvalid.
	Fields config.Errors
}

func (e *Error) Error() string { return e.Reason }

func invalid(field, format string, args ...any) *Error {
	reason := fmt.Sprintf(format, args...)
	return &Error{Kind: KindInvalid, Reason: field + ": " + reason, Fields: config.Errors{{Field: field, Reason: reason}}}
}

// ErrNotLeader is wrapped by Node.Apply and Node.ReadIndex when this node is
// not the leader; the caller forwards to the leader.
var ErrNotLeader = errors.New("not the raft leader")

// Updatable fields: a VirtualService's top-level fields except its identity and
// the real servers, which have their own commands; a RealServer's attributes
// except its identity (address and port).
var (
	serviceMaskFields    = maskFields((&shoalv1.VirtualService{}).ProtoReflect().Descriptor(), "name", "real_servers")
	realServerMaskFields = []string{"weight", "active", "forward", "name", "upper_threshold", "lower_threshold", "health_checks"}
)

func maskFields(md protoreflect.MessageDescriptor, except ...string) []string {
	var out []string
	for i := 0; i < md.Fields().Len(); i++ {
		if name := string(md.Fields().Get(i).Name()); !slices.Contains(except, name) {
			out = append(out, name)
		}
	}
	return out
}

// EmptyState is the state of a new cluster: no services, default global
// settings, serial 0.
func EmptyState() *shoalv1.State {
	c := &shoalv1.Config{}
	config.Normalize(c)
	return &shoalv1.State{Config: c}
}

// Apply computes the state after cmd. It is pure: it never mutates st (nor
// cmd), reads no clock and does no I/O, so every node computes the same result
// from the same log. The FSM calls it for every entry; the API calls it for
// early validation and dry runs.
//
// The result is normalised and validated as a whole. The serial grows by one
// when the configuration changed and not at all otherwise; member
// registrations never change it.
//
// A command whose request id the state remembers is not applied again: the
// result is the first outcome (Replayed), whatever happened since, even if
// the command's expected_serial is stale by now.
func Apply(st *shoalv1.State, cmd *shoalv1.Command) (*Result, error) {
	res, err := Judge(st, cmd)
	if err != nil || res.one == nil {
		return res, err
	}
	return res.one.finish(), nil
}

// Judge is Apply for a judgement of cmd before it is proposed: the same
// verdict, changes, serial and (for a command of one service) Service and
// After, except that a command that changed one service leaves State nil.
// Building that state copies the list of every service, the one cost of
// such a write that grows with the table; the API's judgement needs the
// service, not the state, and the FSM builds the state when it applies
// the command (FSM.Apply finishes a judgement it takes).
func Judge(st *shoalv1.State, cmd *shoalv1.Command) (*Result, error) {
	if st == nil {
		st = EmptyState()
	}
	id := cmd.GetRequestId()
	if id != "" {
		if err := checkRequestID(id); err != nil {
			return nil, err
		}
		if r := findRequest(st, id); r != nil {
			return replay(st, r), nil
		}
	}
	res, err := apply(st, cmd)
	if err != nil {
		// Not remembered: a retry is judged afresh (requests.go).
		return nil, err
	}
	if res.one != nil {
		res.Serial = res.one.old.GetSerial() + 1
		return res, nil
	}
	res.Serial = res.State.GetConfig().GetSerial()
	if id != "" {
		res.State = rememberRequest(st, res, cmd)
	}
	return res, nil
}

// apply is Apply without request ids.
func apply(st *shoalv1.State, cmd *shoalv1.Command) (*Result, error) {
	old := st.GetConfig()
	if old == nil {
		old = EmptyState().Config
	}

	// Commands that leave the configuration alone.
	switch op := cmd.GetOp().(type) {
	case *shoalv1.Command_RegisterMember:
		return registerMember(st, op.RegisterMember)
	case *shoalv1.Command_UnregisterMember:
		return unregisterMember(st, op.UnregisterMember)
	case *shoalv1.Command_CreateJoinToken:
		return createJoinToken(st, op.CreateJoinToken, cmd.GetAudit())
	case *shoalv1.Command_DeleteJoinToken:
		return deleteJoinToken(st, op.DeleteJoinToken)
	case *shoalv1.Command_InstallCa:
		return installCA(st, op.InstallCa)
	case *shoalv1.Command_RecordCertificate:
		return recordCertificate(st, op.RecordCertificate, cmd.GetAudit())
	case *shoalv1.Command_RevokeCertificate:
		return revokeCertificate(st, op.RevokeCertificate, cmd.GetAudit(), pki.MaxClientLifetime)
	}

	// A command of one service reads old, which is never modified, and
	// works on a clone of that one service (editService), so that a
	// write costs what it touches, not the size of the table.
	var one touched
	var err error
	switch op := cmd.GetOp().(type) {
	case *shoalv1.Command_ApplyConfig, *shoalv1.Command_RollbackConfig:
	case *shoalv1.Command_CreateVirtualService:
		one, err = createService(old, op.CreateVirtualService)
	case *shoalv1.Command_UpdateVirtualService:
		one, err = updateService(old, op.UpdateVirtualService)
	case *shoalv1.Command_DeleteVirtualService:
		one, err = deleteService(old, op.DeleteVirtualService)
	case *shoalv1.Command_AddRealServer:
		one, err = addRealServer(old, op.AddRealServer)
	case *shoalv1.Command_UpdateRealServer:
		one, err = updateRealServer(old, op.UpdateRealServer)
	case *shoalv1.Command_RemoveRealServer:
		one, err = removeRealServer(old, op.RemoveRealServer)
	default:
		return nil, &Error{Kind: KindInvalid, Reason: "command has no operation"}
	}
	if err != nil {
		return nil, err
	}
	if one.name != "" {
		return applyOne(st, old, one, cmd)
	}

	// A shallow copy, whose global settings and services the command
	// replaces with its own clones.
	c := &shoalv1.Config{Global: old.Global, Services: old.Services, Serial: old.Serial}
	switch op := cmd.GetOp().(type) {
	case *shoalv1.Command_ApplyConfig:
		err = applyConfig(c, op.ApplyConfig)
	case *shoalv1.Command_RollbackConfig:
		err = rollbackConfig(st, c, op.RollbackConfig)
	}
	if err != nil {
		return nil, err
	}

	// A whole new configuration (apply, rollback): its global settings
	// and services are the command's own clones, so normalising them in
	// place touches nothing shared.
	config.Normalize(c)
	if err := validate(config.ValidateNormalized(c)); err != nil {
		return nil, err
	}
	c.Serial = old.Serial
	if proto.Equal(old, c) {
		return &Result{State: st}, nil
	}
	return commit(st, old, c, config.Diff(old, c), cmd), nil
}

// touched is the one service a command changed: its name (before any
// normalisation for a create, which trims it), and the service as the
// command left it, a clone of its own (nil when it was deleted).
type touched struct {
	name  string
	after *shoalv1.VirtualService
}

// applyOne finishes a command that changed one service: it normalises
// and validates that service alone, and diffs it alone. The result is what
// normalising, validating and diffing the whole configuration would give
// (config.ValidateService), since every other service is shared with a
// state that passed all of that already. The state after it is left to
// oneWrite.finish.
func applyOne(st *shoalv1.State, old *shoalv1.Config, one touched, cmd *shoalv1.Command) (*Result, error) {
	after := one.after
	name := strings.TrimSpace(one.name)
	if after != nil {
		// It reads the global settings alone, which the command keeps.
		config.NormalizeService(old, after)
		name = after.GetName()
	}
	w := &oneWrite{st: st, old: old, after: after, name: name, cmd: cmd}
	if i, ok := searchService(old.GetServices(), name); ok {
		w.before = old.Services[i]
	}
	whole := func() *shoalv1.Config {
		w.readAll = true
		return w.config()
	}
	if err := validate(config.ValidateService(old, name, after, whole)); err != nil {
		return nil, err
	}
	// A write that changes something has changes, so the exact
	// comparison is only needed to tell a no-op from a change the diff
	// does not describe.
	w.changes = config.DiffService(w.before, after)
	if len(w.changes) == 0 && proto.Equal(w.before, after) {
		return &Result{State: st}, nil
	}
	return &Result{Changes: w.changes, Service: name, After: after, one: w}, nil
}

// oneWrite is a command of one service that applyOne judged: the state
// it applied to, the service as it was and as it is now, and its changes.
type oneWrite struct {
	st            *shoalv1.State
	old           *shoalv1.Config
	before, after *shoalv1.VirtualService
	name          string
	changes       []*shoalv1.Change
	cmd           *shoalv1.Command
	// c is the configuration after the write, once config built it.
	c *shoalv1.Config
	// readAll says that ValidateService judged the whole configuration.
	readAll bool
}

// on is the write judged against w.st as Judge(st, w.cmd) would judge it
// on st, a later state, or nil when that may differ: when the leader's
// FSM applies a judged write after others, it takes the judgement if
// nothing it read has changed. What it read: the global settings and the
// service (the same objects, which are never modified, so the same
// values), the serial only when the command names one, the request id
// (still unknown), and no other service when the write kept the
// service's keys and ValidateService did not fall back to Validate.
// Neighbours' names it read cannot equal the service's in a valid state.
func (w *oneWrite) on(st *shoalv1.State) *oneWrite {
	old := st.GetConfig()
	if w.before == nil || w.after == nil || w.readAll || !config.SameKeys(w.before, w.after) ||
		old.GetGlobal() != w.old.GetGlobal() || expectedSerial(w.cmd) != 0 {
		return nil
	}
	if i, ok := searchService(old.GetServices(), w.name); !ok || old.Services[i] != w.before {
		return nil
	}
	if id := w.cmd.GetRequestId(); id != "" && findRequest(st, id) != nil {
		return nil
	}
	return &oneWrite{st: st, old: old, before: w.before, after: w.after, name: w.name, changes: w.changes, cmd: w.cmd}
}

// commandOp is the field of cmd's op that is set, nil when none is.
func commandOp(cmd *shoalv1.Command) protoreflect.FieldDescriptor {
	m := cmd.ProtoReflect()
	return m.WhichOneof(m.Descriptor().Oneofs().ByName("op"))
}

// expectedSerial is the expected_serial of a command's request, 0 when
// it names none.
func expectedSerial(cmd *shoalv1.Command) uint64 {
	op := commandOp(cmd)
	if op == nil || op.Message() == nil {
		return 0
	}
	if r, ok := cmd.ProtoReflect().Get(op).Message().Interface().(interface{ GetExpectedSerial() uint64 }); ok {
		return r.GetExpectedSerial()
	}
	return 0
}

// config is the configuration after the write: old's global settings
// and services, with after in before's place, or where Normalize's sort
// by name would put it. It copies the list of services, once.
func (w *oneWrite) config() *shoalv1.Config {
	return w.configIn(nil)
}

// configIn is config for a write applied in batch b (nil: alone). When
// old's list of services is b's own, made by an earlier write of the
// batch and seen by nothing outside it, the write changes that list in
// place: the writes of a batch share one copy.
func (w *oneWrite) configIn(b *batch) *shoalv1.Config {
	if w.c != nil {
		return w.c
	}
	ss := w.old.GetServices()
	i, found := searchService(ss, w.name)
	var out []*shoalv1.VirtualService
	if b.owns(ss) {
		switch {
		case found && w.after != nil:
			out = ss
			out[i] = w.after
		case found:
			out = slices.Delete(ss, i, i+1)
		case w.after != nil:
			out = slices.Insert(ss, i, w.after)
		}
	} else {
		// Room for a batch's creates, so that they need not copy again.
		out = make([]*shoalv1.VirtualService, 0, len(ss)+batchRoom)
		switch {
		case found && w.after != nil:
			out = append(out, ss...)
			out[i] = w.after
		case found:
			out = append(append(out, ss[:i]...), ss[i+1:]...)
		case w.after != nil:
			out = append(append(append(out, ss[:i]...), w.after), ss[i:]...)
		default:
			out = append(out, ss...)
		}
	}
	b.own(out)
	w.c = &shoalv1.Config{Global: w.old.GetGlobal(), Services: out, Serial: w.old.GetSerial()}
	return w.c
}

// finish is the Result of Apply: the state after the write, with the
// next serial, its history record and its request id.
func (w *oneWrite) finish() *Result {
	return w.finishIn(nil)
}

// finishIn is finish for a write applied in batch b (configIn).
func (w *oneWrite) finishIn(b *batch) *Result {
	// The history record appendHistory's walk over both lists would make.
	rec := &shoalv1.HistoryRecord{}
	if w.before != nil {
		rec.ServicesBefore = []*shoalv1.VirtualService{w.before}
	} else {
		rec.ServicesAdded = []string{w.name}
	}
	res := commitRecord(w.st, w.old, w.configIn(b), w.changes, w.cmd, rec, b)
	res.Serial = res.State.GetConfig().GetSerial()
	res.Service, res.After = w.name, w.after
	if w.cmd.GetRequestId() != "" {
		res.State = rememberRequest(w.st, res, w.cmd)
	}
	return res
}

// batchRoom is the spare room a batch's copy of the list of services is
// made with, so that its creates need not copy it again.
const batchRoom = 16

// batch is the list of services the writes of one batch of raft entries
// share (FSM.ApplyBatch). The states between the writes of a batch are
// seen by nothing outside it: the FSM hands every result and event of
// the batch the state after the last. So a write may change the list an
// earlier write of the batch copied, instead of copying it again: the
// one cost of a write of one service that grows with the table is paid
// once a batch.
type batch struct {
	services []*shoalv1.VirtualService
	// history is the history the batch made last, and historyBytes the
	// sum of its records' sizes.
	history      []*shoalv1.HistoryRecord
	historyBytes uint64
}

// owns says that ss is the list the batch made last.
func (b *batch) owns(ss []*shoalv1.VirtualService) bool {
	return b != nil && len(ss) > 0 && len(ss) == len(b.services) && &ss[0] == &b.services[0]
}

// ownsHistory says that h is the history the batch made last.
func (b *batch) ownsHistory(h []*shoalv1.HistoryRecord) bool {
	return len(h) > 0 && len(h) == len(b.history) && &h[0] == &b.history[0]
}

func (b *batch) own(ss []*shoalv1.VirtualService) {
	if b != nil {
		b.services = ss
	}
}

// validate wraps a config.Validate error as the command's rejection.
func validate(err error) error {
	if err == nil {
		return nil
	}
	var fields config.Errors
	errors.As(err, &fields)
	return &Error{Kind: KindInvalid, Reason: err.Error(), Fields: fields}
}

// commit is the state after a command that changed the configuration
// from old to c: the next serial, and the history record.
func commit(st *shoalv1.State, old, c *shoalv1.Config, changes []*shoalv1.Change, cmd *shoalv1.Command) *Result {
	return commitRecord(st, old, c, changes, cmd, undoRecord(old, c), nil)
}

// commitRecord is commit with the history record's undo part made.
func commitRecord(st *shoalv1.State, old, c *shoalv1.Config, changes []*shoalv1.Change, cmd *shoalv1.Command, rec *shoalv1.HistoryRecord, b *batch) *Result {
	c.Serial = old.GetSerial() + 1
	next := derive(st)
	next.Config = c
	next.History = appendHistory(b, st.GetHistory(), rec, c, cmd, changes)
	return &Result{State: next, Changes: changes}
}

// derive returns a shallow copy of st for a command to change: the fields it
// replaces are its own, the others are shared with st and, like st, never
// modified. Copying the history and the member list whole on every command
// would cost in proportion to their size.
func derive(st *shoalv1.State) *shoalv1.State {
	return &shoalv1.State{
		Config:        st.GetConfig(),
		Members:       st.GetMembers(),
		History:       st.GetHistory(),
		JoinTokens:    st.GetJoinTokens(),
		Ca:            st.GetCa(),
		Certificates:  st.GetCertificates(),
		Requests:      st.GetRequests(),
		RequestBlocks: st.GetRequestBlocks(),
	}
}

func checkSerial(c *shoalv1.Config, expected uint64) error {
	if expected != 0 && expected != c.Serial {
		return &Error{Kind: KindFailedPrecondition, Reason: fmt.Sprintf("expected serial %d, but the serial is %d", expected, c.Serial)}
	}
	return nil
}

func applyConfig(c *shoalv1.Config, req *shoalv1.ApplyConfigRequest) error {
	if err := checkSerial(c, req.ExpectedSerial); err != nil {
		return err
	}
	nc := req.GetConfig()
	if nc == nil {
		return invalid("config", "required")
	}
	nc = proto.Clone(nc).(*shoalv1.Config)
	c.Global, c.Services = nc.Global, nc.Services
	return nil
}

// searchService finds name in services sorted by name, as every stored
// configuration's are (config.Normalize): where it is, or where it would go.
func searchService(ss []*shoalv1.VirtualService, name string) (int, bool) {
	return slices.BinarySearchFunc(ss, name, func(s *shoalv1.VirtualService, name string) int {
		return strings.Compare(s.GetName(), name)
	})
}

func findService(c *shoalv1.Config, name string) (int, *shoalv1.VirtualService, error) {
	if i, ok := searchService(c.Services, name); ok {
		return i, c.Services[i], nil
	}
	return -1, nil, &Error{Kind: KindNotFound, Reason: fmt.Sprintf("virtual service %q not found", name)}
}

// editService is findService for a command that changes the service: a
// clone of its own, since the service is shared with the state the
// command applies to.
func editService(c *shoalv1.Config, name string) (*shoalv1.VirtualService, error) {
	_, s, err := findService(c, name)
	if err != nil {
		return nil, err
	}
	return config.CloneService(s), nil
}

func createService(c *shoalv1.Config, req *shoalv1.CreateVirtualServiceRequest) (touched, error) {
	if err := checkSerial(c, req.ExpectedSerial); err != nil {
		return touched{}, err
	}
	s := req.GetService()
	if s == nil {
		return touched{}, invalid("service", "required")
	}
	name := strings.TrimSpace(s.Name)
	if name == "" {
		return touched{}, invalid("service.name", "required")
	}
	if _, _, err := findService(c, name); err == nil {
		return touched{}, &Error{Kind: KindAlreadyExists, Reason: fmt.Sprintf("virtual service %q already exists", name)}
	}
	return touched{name: name, after: config.CloneService(s)}, nil
}

// maskPaths returns the fields an update sets: the mask's paths, or every
// allowed field when the mask is empty.
func maskPaths(mask *fieldmaskpb.FieldMask, allowed []string) ([]string, error) {
	if len(mask.GetPaths()) == 0 {
		return allowed, nil
	}
	for _, p := range mask.GetPaths() {
		if !slices.Contains(allowed, p) {
			return nil, invalid("update_mask", "%q is not an updatable field (one of %s)", p, strings.Join(allowed, " "))
		}
	}
	return mask.GetPaths(), nil
}

// copyFields sets each named top-level field of dst to its value in src,
// clearing it when src does not have it.
func copyFields(dst, src proto.Message, paths []string) {
	// A clone of the whole source, so that no message or list (a real
	// server's health_checks) is shared with the command, which Apply must
	// not mutate when it normalises the result.
	d, s := dst.ProtoReflect(), proto.Clone(src).ProtoReflect()
	fields := d.Descriptor().Fields()
	for _, p := range paths {
		fd := fields.ByName(protoreflect.Name(p))
		if s.Has(fd) {
			d.Set(fd, s.Get(fd))
		} else {
			d.Clear(fd)
		}
	}
}

func updateService(c *shoalv1.Config, req *shoalv1.UpdateVirtualServiceRequest) (touched, error) {
	if err := checkSerial(c, req.ExpectedSerial); err != nil {
		return touched{}, err
	}
	src := req.GetService()
	if src == nil {
		return touched{}, invalid("service", "required")
	}
	paths, err := maskPaths(req.GetUpdateMask(), serviceMaskFields)
	if err != nil {
		return touched{}, err
	}
	s, err := editService(c, src.Name)
	if err != nil {
		return touched{}, err
	}
	copyFields(s, src, paths)
	return touched{name: s.Name, after: s}, nil
}

func deleteService(c *shoalv1.Config, req *shoalv1.DeleteVirtualServiceRequest) (touched, error) {
	if err := checkSerial(c, req.ExpectedSerial); err != nil {
		return touched{}, err
	}
	_, s, err := findService(c, req.Name)
	if err != nil {
		return touched{}, err
	}
	return touched{name: s.Name}, nil
}

// findRealServer finds the real server of s that receives traffic at
// address:port (port 0 meaning the service's port), comparing addresses
// numerically so "2001:db8::1" finds "2001:0db8::1".
func findRealServer(s *shoalv1.VirtualService, address string, port uint32) (int, error) {
	want, err := netip.ParseAddr(strings.TrimSpace(address))
	if err != nil {
		return -1, invalid("real_server.address", "%q is not an IP address", address)
	}
	if port == 0 {
		port = s.Port
	}
	for i, rs := range s.RealServers {
		if ip, err := netip.ParseAddr(rs.GetAddress()); err == nil && ip == want && config.RealServerPort(s, rs) == port {
			return i, nil
		}
	}
	return -1, &Error{Kind: KindNotFound, Reason: fmt.Sprintf("real server %s not found in virtual service %q",
		netip.AddrPortFrom(want, uint16(port)), s.Name)}
}

func addRealServer(c *shoalv1.Config, req *shoalv1.AddRealServerRequest) (touched, error) {
	if err := checkSerial(c, req.ExpectedSerial); err != nil {
		return touched{}, err
	}
	rs := req.GetRealServer()
	if rs == nil {
		return touched{}, invalid("real_server", "required")
	}
	_, s, err := findService(c, req.Service)
	if err != nil {
		return touched{}, err
	}
	_, err = findRealServer(s, rs.Address, rs.Port)
	var e *Error
	switch {
	case err == nil:
		return touched{}, &Error{Kind: KindAlreadyExists, Reason: fmt.Sprintf("real server %s already exists in virtual service %q",
			config.RealServerKey(s, rs), s.Name)}
	case errors.As(err, &e) && e.Kind != KindNotFound:
		return touched{}, err
	}
	s, _ = editService(c, req.Service)
	s.RealServers = append(s.RealServers, proto.Clone(rs).(*shoalv1.RealServer))
	return touched{name: s.Name, after: s}, nil
}

func updateRealServer(c *shoalv1.Config, req *shoalv1.UpdateRealServerRequest) (touched, error) {
	if err := checkSerial(c, req.ExpectedSerial); err != nil {
		return touched{}, err
	}
	src := req.GetRealServer()
	if src == nil {
		return touched{}, invalid("real_server", "required")
	}
	paths, err := maskPaths(req.GetUpdateMask(), realServerMaskFields)
	if err != nil {
		return touched{}, err
	}
	_, s, err := findService(c, req.Service)
	if err != nil {
		return touched{}, err
	}
	i, err := findRealServer(s, src.Address, src.Port)
	if err != nil {
		return touched{}, err
	}
	s, _ = editService(c, req.Service)
	copyFields(s.RealServers[i], src, paths)
	return touched{name: s.Name, after: s}, nil
}

func removeRealServer(c *shoalv1.Config, req *shoalv1.RemoveRealServerRequest) (touched, error) {
	if err := checkSerial(c, req.ExpectedSerial); err != nil {
		return touched{}, err
	}
	_, s, err := findService(c, req.Service)
	if err != nil {
		return touched{}, err
	}
	i, err := findRealServer(s, req.Address, req.Port)
	if err != nil {
		return touched{}, err
	}
	s, _ = editService(c, req.Service)
	s.RealServers = slices.Delete(s.RealServers, i, i+1)
	return touched{name: s.Name, after: s}, nil
}

func registerMember(st *shoalv1.State, m *shoalv1.RegisterMember) (*Result, error) {
	if m.GetId() == "" {
		return nil, invalid("id", "required")
	}
	if m.GetApiAddress() == "" {
		return nil, invalid("api_address", "required")
	}
	next := derive(st)
	next.Members = slices.Clone(st.GetMembers())
	i, found := slices.BinarySearchFunc(next.Members, m.Id, func(e *shoalv1.RegisterMember, id string) int {
		return strings.Compare(e.GetId(), id)
	})
	if found {
		if proto.Equal(next.Members[i], m) {
			return &Result{State: st}, nil
		}
		next.Members[i] = proto.Clone(m).(*shoalv1.RegisterMember)
	} else {
		next.Members = slices.Insert(next.Members, i, proto.Clone(m).(*shoalv1.RegisterMember))
	}
	return &Result{State: next}, nil
}

// unregisterMember is idempotent: forgetting an unknown member is not an
// error, so a retried removal succeeds.
func unregisterMember(st *shoalv1.State, m *shoalv1.UnregisterMember) (*Result, error) {
	i := slices.IndexFunc(st.GetMembers(), func(e *shoalv1.RegisterMember) bool { return e.GetId() == m.GetId() })
	if i < 0 {
		return &Result{State: st}, nil
	}
	next := derive(st)
	next.Members = slices.Delete(slices.Clone(st.GetMembers()), i, i+1)
	return &Result{State: next}, nil
}
