package console

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/migrate"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Every edit is two steps: a preview, which shows the diff the change
// makes and the serial it applies on, then an apply, which sends the
// change with that serial as expected_serial. If anything committed in
// between, the API refuses it (FailedPrecondition) and the user sees the
// new preview; nothing applies that the user did not see.

// form is an edit form's values and what is wrong with them.
type form struct {
	// V are the fields as the user gave them (or as they are now).
	V map[string]string
	// Errs are the problems by field; Other those that name no field of
	// the form.
	Errs  map[string]string
	Other []string
}

func (f *form) Err(field string) string { return f.Errs[field] }

func (f *form) add(field, msg string) {
	if f.Errs == nil {
		f.Errs = map[string]string{}
	}
	if old, ok := f.Errs[field]; ok {
		msg = old + "; " + msg
	}
	f.Errs[field] = msg
}

func (f *form) bad() bool { return len(f.Errs) > 0 || len(f.Other) > 0 }

// fieldOf is the form field a validation path is about: the part after
// the service or real server it names, as in
// services[web].real_servers[10.0.0.1:80].weight → weight.
func fieldOf(path string) string {
	if i := strings.LastIndex(path, "]."); i >= 0 {
		return path[i+2:]
	}
	return ""
}

// addErrors files each problem under its field, or Other when the form
// has no such field.
func (f *form) addErrors(fields []string, errs []config.FieldError) {
	for _, e := range errs {
		if k := fieldOf(e.Field); slices.Contains(fields, k) {
			f.add(k, e.Reason)
		} else {
			f.Other = append(f.Other, e.Field+": "+e.Reason)
		}
	}
}

// addAPIError files an API refusal: its field violations under their
// fields, anything else as a message.
func (f *form) addAPIError(fields []string, err error) {
	st := status.Convert(err)
	var errs []config.FieldError
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				errs = append(errs, config.FieldError{Field: v.GetField(), Reason: v.GetDescription()})
			}
		}
	}
	if len(errs) == 0 {
		f.Other = append(f.Other, st.Message())
		return
	}
	f.addErrors(fields, errs)
}

// editData is what an edit page shows.
type editData struct {
	F *form
	// Changes is the preview's diff; empty: nothing would change.
	Changes []*shoalv1.Change
	// Serial is the serial the change applies on (expected_serial).
	Serial    uint64
	RequestID string
	// Preview says the form was checked and may be applied.
	Preview bool
	// Applied is the serial the change committed at (after an apply).
	Applied uint64
	// Service and Key name what is edited; Add says it is new.
	Service, Key string
	Add          bool
	Notes        []migrate.Note
	// Mask is the fields of a real server the previewed edit changes.
	Mask string
}

func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// withRequestID makes a write idempotent: the id travels in the confirm
// form, so a second submit (a double click, a reload) is answered with
// the first outcome instead of applied twice.
func withRequestID(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "x-shoal-request-id", id)
}

// write retries a write that found no leader for a moment, with the same
// request id, so that the user is told the outcome rather than "failed"
// for a change that may have committed.
func write(ctx context.Context, id string, call func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(withRequestID(ctx, id), 10*time.Second)
	defer cancel()
	for {
		err := call(ctx)
		if status.Code(err) != codes.Unavailable || id == "" {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *Console) currentConfig(ctx context.Context, u *user) (*shoalv1.Config, error) {
	resp, err := c.cfg.GetConfig(u.ctx(ctx), &shoalv1.GetConfigRequest{})
	if err != nil {
		return nil, err
	}
	return resp.GetConfig(), nil
}

func findService(cf *shoalv1.Config, name string) *shoalv1.VirtualService {
	for _, s := range cf.GetServices() {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

func findReal(s *shoalv1.VirtualService, key string) *shoalv1.RealServer {
	for _, rs := range s.GetRealServers() {
		if config.RealServerKey(s, rs) == key {
			return rs
		}
	}
	return nil
}

// preview checks next against the rules the API applies and diffs it
// with cur; problems go into f under fields.
func preview(cur, next *shoalv1.Config, f *form, fields []string) []*shoalv1.Change {
	config.Normalize(next)
	if err := config.Validate(next); err != nil {
		var ce config.Errors
		if errors.As(err, &ce) {
			f.addErrors(fields, ce)
		} else {
			f.Other = append(f.Other, err.Error())
		}
		return nil
	}
	return config.Diff(cur, next)
}

// expectedSerial is the serial the preview was made on. Every apply
// carries one: without it the API would apply on whatever serial is
// current, which the user never saw.
func expectedSerial(r *http.Request, f *form) uint64 {
	n, err := strconv.ParseUint(r.PostFormValue("expected_serial"), 10, 64)
	if err != nil || n == 0 {
		f.Other = append(f.Other, "expected_serial: missing; preview the change first")
	}
	return n
}

func parseUint(f *form, field string, bits int) uint64 {
	s := strings.TrimSpace(f.V[field])
	if s == "" {
		return 0
	}
	n, err := strconv.ParseUint(s, 10, bits)
	if err != nil {
		f.add(field, fmt.Sprintf("%q is not a whole number of at most %d bits", s, bits))
	}
	return n
}

// --- real servers ---

var realFields = []string{"address", "port", "weight", "active", "forward", "name"}

// realServerForm: ?service=S&rs=KEY&op=enable|disable|drain|weight|edit,
// or ?service=S&op=add. The quick operations come with their preview.
func (c *Console) realServerForm(w http.ResponseWriter, r *http.Request, u *user) {
	q := r.URL.Query()
	cur, err := c.currentConfig(r.Context(), u)
	if err != nil {
		c.fail(w, u, err)
		return
	}
	svc := findService(cur, q.Get("service"))
	if svc == nil {
		c.fail(w, u, status.Errorf(codes.NotFound, "services[%s]: no such virtual service", q.Get("service")))
		return
	}
	d := &editData{F: &form{V: map[string]string{"port": "0", "weight": "1", "active": "on"}}, Service: svc.GetName(), Serial: cur.GetSerial(), Add: q.Get("op") == "add"}
	if !d.Add {
		rs := findReal(svc, q.Get("rs"))
		if rs == nil {
			c.fail(w, u, status.Errorf(codes.NotFound, "services[%s].real_servers[%s]: no such real server", svc.GetName(), q.Get("rs")))
			return
		}
		d.Key = q.Get("rs")
		d.F.V = realValues(rs)
		switch q.Get("op") {
		case "enable":
			d.F.V["active"] = "on"
		case "disable":
			d.F.V["active"] = ""
		case "drain":
			// Weight 0: IPVS sends no new connections and lets the
			// established ones finish (quiesce).
			d.F.V["weight"] = "0"
		case "weight":
			d.F.V["weight"] = q.Get("weight")
		}
		if q.Get("op") != "edit" {
			c.previewReal(d, cur, svc)
		}
	}
	c.render(w, http.StatusOK, "realserver.html", view{Title: "Real server", Node: c.o.Node, U: u, D: d})
}

func realValues(rs *shoalv1.RealServer) map[string]string {
	v := map[string]string{
		"address": rs.GetAddress(), "port": strconv.FormatUint(uint64(rs.GetPort()), 10),
		"weight": "1", "forward": rs.GetForward(), "name": rs.GetName(), "active": "on",
	}
	if rs.Weight != nil {
		v["weight"] = strconv.FormatUint(uint64(rs.GetWeight()), 10)
	}
	if rs.Active != nil && !rs.GetActive() {
		v["active"] = ""
	}
	return v
}

// realFromForm is the real server the form describes, on top of old.
func realFromForm(f *form, old *shoalv1.RealServer) *shoalv1.RealServer {
	rs := &shoalv1.RealServer{}
	if old != nil {
		rs = proto.Clone(old).(*shoalv1.RealServer)
	} else {
		rs.Address = strings.TrimSpace(f.V["address"])
		rs.Port = uint32(parseUint(f, "port", 32))
	}
	rs.Weight = proto.Uint32(uint32(parseUint(f, "weight", 32)))
	rs.Active = proto.Bool(f.V["active"] != "")
	rs.Forward = strings.TrimSpace(f.V["forward"])
	rs.Name = strings.TrimSpace(f.V["name"])
	return rs
}

// previewReal fills d's diff for the form on top of cur.
func (c *Console) previewReal(d *editData, cur *shoalv1.Config, svc *shoalv1.VirtualService) {
	next := proto.Clone(cur).(*shoalv1.Config)
	s := findService(next, svc.GetName())
	var old *shoalv1.RealServer
	if !d.Add {
		old = findReal(s, d.Key)
	}
	rs := realFromForm(d.F, old)
	if d.F.bad() {
		return
	}
	s.RealServers = put(s.RealServers, old, rs, d.Add)
	d.Changes = preview(cur, next, d.F, realFields)
	d.Serial, d.RequestID, d.Preview = cur.GetSerial(), newRequestID(), !d.F.bad()
	if old != nil {
		d.Mask = strings.Join(realMask(old, rs), ",")
	}
}

// realMask is what an edit changes of a real server, so that an
// operator's weight or enable/disable is sent as that and no more. It is
// taken at the preview and sent with the apply, so that a second submit
// of the same form is the same request (and answered as the first).
func realMask(old, rs *shoalv1.RealServer) []string {
	var mask []string
	if old.GetWeight() != rs.GetWeight() || old.Weight == nil {
		mask = append(mask, "weight")
	}
	if (old.Active == nil || old.GetActive()) != rs.GetActive() {
		mask = append(mask, "active")
	}
	if old.GetForward() != rs.GetForward() {
		mask = append(mask, "forward")
	}
	if old.GetName() != rs.GetName() {
		mask = append(mask, "name")
	}
	return mask
}

func formValues(r *http.Request, fields ...string) map[string]string {
	v := map[string]string{}
	for _, k := range fields {
		v[k] = r.PostFormValue(k)
	}
	return v
}

// realServerEdit previews (step=preview) or applies (step=apply) the form.
func (c *Console) realServerEdit(w http.ResponseWriter, r *http.Request, u *user) {
	cur, err := c.currentConfig(r.Context(), u)
	if err != nil {
		c.fail(w, u, err)
		return
	}
	name := r.PostFormValue("service")
	svc := findService(cur, name)
	if svc == nil {
		c.fail(w, u, status.Errorf(codes.NotFound, "services[%s]: no such virtual service", name))
		return
	}
	d := &editData{F: &form{V: formValues(r, realFields...)}, Service: name, Key: r.PostFormValue("key"), Add: r.PostFormValue("key") == ""}
	var old *shoalv1.RealServer
	if !d.Add {
		if old = findReal(svc, d.Key); old == nil {
			c.fail(w, u, status.Errorf(codes.NotFound, "services[%s].real_servers[%s]: no such real server", name, d.Key))
			return
		}
	}
	if r.PostFormValue("step") != "apply" {
		c.previewReal(d, cur, svc)
		c.render(w, formCode(d.F), "realserver.html", view{Title: "Real server", Node: c.o.Node, U: u, D: d})
		return
	}
	expect := expectedSerial(r, d.F)
	rs := realFromForm(d.F, old)
	if d.F.bad() {
		c.render(w, http.StatusBadRequest, "realserver.html", view{Title: "Real server", Node: c.o.Node, U: u, D: d})
		return
	}
	ctx := u.ctx(r.Context())
	err = write(ctx, r.PostFormValue("request_id"), func(ctx context.Context) error {
		var resp interface{ GetSerial() uint64 }
		var err error
		if d.Add {
			resp, err = c.lb.AddRealServer(ctx, &shoalv1.AddRealServerRequest{Service: name, RealServer: rs, ExpectedSerial: expect})
		} else {
			mask := strings.Split(r.PostFormValue("mask"), ",")
			if r.PostFormValue("mask") == "" {
				mask = realMask(old, rs)
			}
			resp, err = c.lb.UpdateRealServer(ctx, &shoalv1.UpdateRealServerRequest{Service: name, RealServer: rs,
				UpdateMask: &fieldmaskpb.FieldMask{Paths: mask}, ExpectedSerial: expect})
		}
		if err == nil {
			d.Applied = resp.GetSerial()
		}
		return err
	})
	c.finish(w, r, u, "realserver.html", d, realFields, err, func() { c.previewReal(d, mustConfig(c, r, u, cur), svc) })
}

// finish answers an apply: the committed serial, or the form again with
// the API's refusal next to its fields (and, if the configuration moved
// on, the preview against the new one).
func (c *Console) finish(w http.ResponseWriter, r *http.Request, u *user, page string, d *editData, fields []string, err error, repreview func()) {
	if err == nil {
		c.log.Info("console change", "user", u.Name, "role", u.Role, "serial", d.Applied, "page", page)
		c.render(w, http.StatusOK, page, view{Title: "Applied", Node: c.o.Node, U: u, D: d})
		return
	}
	if status.Code(err) == codes.FailedPrecondition && repreview != nil {
		repreview()
	}
	d.F.addAPIError(fields, err)
	c.render(w, httpCode(err), page, view{Title: "Refused", Node: c.o.Node, U: u, D: d})
}

// mustConfig is the configuration now, or cur if it cannot be read.
func mustConfig(c *Console, r *http.Request, u *user, cur *shoalv1.Config) *shoalv1.Config {
	if now, err := c.currentConfig(r.Context(), u); err == nil {
		return now
	}
	return cur
}

func formCode(f *form) int {
	if f.bad() {
		return http.StatusBadRequest
	}
	return http.StatusOK
}

// --- virtual services ---

var serviceFields = []string{"name", "vip.address", "port", "protocol", "fwmark", "scheduler", "forward", "persistence_timeout"}

func serviceValues(s *shoalv1.VirtualService) map[string]string {
	return map[string]string{
		"name": s.GetName(), "vip.address": s.GetVip().GetAddress(), "port": strconv.FormatUint(uint64(s.GetPort()), 10),
		"protocol": s.GetProtocol(), "fwmark": strconv.FormatUint(uint64(s.GetFwmark()), 10), "scheduler": s.GetScheduler(),
		"forward": s.GetForward(), "persistence_timeout": strconv.FormatUint(uint64(s.GetPersistenceTimeout()), 10),
	}
}

// serviceFromForm is the service the form describes, on top of old.
func serviceFromForm(f *form, old *shoalv1.VirtualService) *shoalv1.VirtualService {
	s := &shoalv1.VirtualService{}
	if old != nil {
		s = proto.Clone(old).(*shoalv1.VirtualService)
	} else {
		s.Name = strings.TrimSpace(f.V["name"])
	}
	if a := strings.TrimSpace(f.V["vip.address"]); a != "" || s.Vip != nil {
		if s.Vip == nil {
			s.Vip = &shoalv1.Address{}
		}
		s.Vip.Address = a
	}
	s.Port = uint32(parseUint(f, "port", 32))
	s.Protocol = strings.TrimSpace(f.V["protocol"])
	s.Fwmark = uint32(parseUint(f, "fwmark", 32))
	s.Scheduler = strings.TrimSpace(f.V["scheduler"])
	s.Forward = strings.TrimSpace(f.V["forward"])
	s.PersistenceTimeout = uint32(parseUint(f, "persistence_timeout", 32))
	return s
}

func (c *Console) serviceForm(w http.ResponseWriter, r *http.Request, u *user) {
	d := &editData{F: &form{V: map[string]string{"protocol": "tcp", "scheduler": "wlc", "forward": "nat", "port": "80"}}, Add: true}
	if name := r.URL.Query().Get("service"); name != "" {
		cur, err := c.currentConfig(r.Context(), u)
		if err != nil {
			c.fail(w, u, err)
			return
		}
		s := findService(cur, name)
		if s == nil {
			c.fail(w, u, status.Errorf(codes.NotFound, "services[%s]: no such virtual service", name))
			return
		}
		d.Add, d.Service, d.F.V = false, name, serviceValues(s)
	}
	c.render(w, http.StatusOK, "service.html", view{Title: "Virtual service", Node: c.o.Node, U: u, D: d})
}

func (c *Console) previewService(d *editData, cur *shoalv1.Config) {
	next := proto.Clone(cur).(*shoalv1.Config)
	old := findService(next, d.Service)
	s := serviceFromForm(d.F, old)
	if d.F.bad() {
		return
	}
	next.Services = put(next.Services, old, s, d.Add)
	d.Changes = preview(cur, next, d.F, serviceFields)
	d.Serial, d.RequestID, d.Preview = cur.GetSerial(), newRequestID(), !d.F.bad()
}

func (c *Console) serviceEdit(w http.ResponseWriter, r *http.Request, u *user) {
	cur, err := c.currentConfig(r.Context(), u)
	if err != nil {
		c.fail(w, u, err)
		return
	}
	d := &editData{F: &form{V: formValues(r, serviceFields...)}, Service: r.PostFormValue("service"), Add: r.PostFormValue("service") == ""}
	var old *shoalv1.VirtualService
	if !d.Add {
		if old = findService(cur, d.Service); old == nil {
			c.fail(w, u, status.Errorf(codes.NotFound, "services[%s]: no such virtual service", d.Service))
			return
		}
	}
	if r.PostFormValue("step") != "apply" {
		c.previewService(d, cur)
		c.render(w, formCode(d.F), "service.html", view{Title: "Virtual service", Node: c.o.Node, U: u, D: d})
		return
	}
	expect := expectedSerial(r, d.F)
	s := serviceFromForm(d.F, old)
	if d.F.bad() {
		c.render(w, http.StatusBadRequest, "service.html", view{Title: "Virtual service", Node: c.o.Node, U: u, D: d})
		return
	}
	err = write(u.ctx(r.Context()), r.PostFormValue("request_id"), func(ctx context.Context) error {
		var resp interface{ GetSerial() uint64 }
		var err error
		if d.Add {
			resp, err = c.lb.CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: s, ExpectedSerial: expect})
		} else {
			resp, err = c.lb.UpdateVirtualService(ctx, &shoalv1.UpdateVirtualServiceRequest{Service: s, ExpectedSerial: expect,
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"vip", "port", "protocol", "fwmark", "scheduler", "forward", "persistence_timeout"}}})
		}
		if err == nil {
			d.Applied = resp.GetSerial()
		}
		return err
	})
	c.finish(w, r, u, "service.html", d, serviceFields, err, func() { c.previewService(d, mustConfig(c, r, u, cur)) })
}

// --- import ---

// importEdit previews or applies an lvs.cf, keepalived.conf or
// ipvsadm-save file as lvsctl migrate import does: the file's services
// replace the cluster's, the global settings it sets replace those.
func (c *Console) importEdit(w http.ResponseWriter, r *http.Request, u *user) {
	text := r.PostFormValue("file")
	if f, _, err := r.FormFile("upload"); err == nil {
		b, err := io.ReadAll(io.LimitReader(f, 2<<20))
		f.Close()
		if err == nil && len(b) > 0 {
			text = string(b)
		}
	}
	d := &editData{F: &form{V: map[string]string{"file": text, "format": r.PostFormValue("format")}}}
	render := func(code int) {
		c.render(w, code, "import.html", view{Title: "Import", Node: c.o.Node, U: u, D: d})
	}
	format, err := migrate.ParseFormat(d.F.V["format"])
	if d.F.V["format"] == "" {
		format, err = migrate.Detect([]byte(text))
	}
	if err != nil {
		d.F.add("format", err.Error())
		render(http.StatusBadRequest)
		return
	}
	res, err := migrate.Import([]byte(text), migrate.Options{Format: format, Filename: "file",
		// An include would read the router's own files: never from a form.
		ReadFile: func(name string) ([]byte, error) {
			return nil, fmt.Errorf("include %s: the console does not read files on the router; paste the included file's content instead", name)
		},
		// Each pattern "matches" itself, so ReadFile refuses it by name.
		Glob: func(pattern string) ([]string, error) { return []string{pattern}, nil },
	})
	if err != nil {
		var le migrate.Errors
		if errors.As(err, &le) {
			for _, e := range le {
				d.F.Other = append(d.F.Other, e.Error())
			}
		} else {
			d.F.Other = append(d.F.Other, err.Error())
		}
		render(http.StatusBadRequest)
		return
	}
	d.Notes = res.Notes
	cur, err := c.currentConfig(r.Context(), u)
	if err != nil {
		c.fail(w, u, err)
		return
	}
	next := res.Merge(cur)
	if r.PostFormValue("step") != "apply" {
		// The API's dry run is the preview: its validation and diff, and
		// an admin's, since only an admin may apply a whole config.
		resp, err := c.cfg.ApplyConfig(u.ctx(r.Context()), &shoalv1.ApplyConfigRequest{Config: next, DryRun: true, ExpectedSerial: cur.GetSerial()})
		if err != nil {
			d.F.addAPIError(nil, err)
			render(httpCode(err))
			return
		}
		d.Changes, d.Serial, d.RequestID, d.Preview = resp.GetChanges(), cur.GetSerial(), newRequestID(), true
		render(http.StatusOK)
		return
	}
	expect := expectedSerial(r, d.F)
	if d.F.bad() {
		render(http.StatusBadRequest)
		return
	}
	next.Serial = 0
	err = write(u.ctx(r.Context()), r.PostFormValue("request_id"), func(ctx context.Context) error {
		resp, err := c.cfg.ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{Config: next, ExpectedSerial: expect})
		if err == nil {
			d.Applied, d.Changes = resp.GetSerial(), resp.GetChanges()
		}
		return err
	})
	c.finish(w, r, u, "import.html", d, nil, err, nil)
}

func (c *Console) importForm(w http.ResponseWriter, r *http.Request, u *user) {
	c.render(w, http.StatusOK, "import.html", view{Title: "Import", Node: c.o.Node, U: u, D: &editData{F: &form{V: map[string]string{}}}})
}

// --- rollback ---

func (c *Console) rollback(w http.ResponseWriter, r *http.Request, u *user) {
	serial, err1 := strconv.ParseUint(r.PostFormValue("serial"), 10, 64)
	expect, err2 := strconv.ParseUint(r.PostFormValue("expected_serial"), 10, 64)
	if err1 != nil || err2 != nil {
		c.fail(w, u, status.Error(codes.InvalidArgument, "serial and expected_serial: want serial numbers"))
		return
	}
	var applied uint64
	err := write(u.ctx(r.Context()), r.PostFormValue("request_id"), func(ctx context.Context) error {
		resp, err := c.cfg.RollbackConfig(ctx, &shoalv1.RollbackConfigRequest{Serial: serial, ExpectedSerial: expect})
		if err == nil {
			applied = resp.GetSerial()
		}
		return err
	})
	if err != nil {
		c.fail(w, u, err)
		return
	}
	c.log.Info("console rollback", "user", u.Name, "to", serial, "serial", applied)
	http.Redirect(w, r, "/history/"+strconv.FormatUint(applied, 10), http.StatusSeeOther)
}

// put is list with v appended (add) or put in old's place: the edit a form
// previews, on a clone of the configuration.
func put[T comparable](list []T, old, v T, add bool) []T {
	if add {
		return append(list, v)
	}
	for i, x := range list {
		if x == old {
			list[i] = v
		}
	}
	return list
}
