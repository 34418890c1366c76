package console

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// view is what every page's template gets.
type view struct {
	Title string
	// Page names the live part the page subscribes to ("" for none).
	Page string
	Node string
	U    *user
	D    any
}

var funcs = template.FuncMap{
	"ago": func(ts *timestamppb.Timestamp) string {
		if ts == nil {
			return "—"
		}
		return since(time.Since(ts.AsTime())) + " ago"
	},
	"stamp": func(ts *timestamppb.Timestamp) string {
		if ts == nil {
			return "—"
		}
		return ts.AsTime().UTC().Format("2006-01-02 15:04:05Z")
	},
	"dur": func(d *durationpb.Duration) string {
		if d == nil {
			return "—"
		}
		return d.AsDuration().Round(10 * time.Microsecond).String()
	},
	"rate":      rateString,
	"sparkline": sparkline,
	"field": func(f *form, name, label, typ string, readOnly bool) fieldView {
		return fieldView{Name: name, Label: label, Type: typ, ReadOnly: readOnly, Value: f.V[name], Err: f.Err(name)}
	},
	"action": func(a shoalv1.ChangeAction) string {
		return strings.TrimPrefix(strings.ToLower(a.String()), "change_action_")
	},
}

// fieldView is one input of a form, for the "input" template.
type fieldView struct {
	Name, Label, Type, Value, Err string
	ReadOnly                      bool
}

func since(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Hour).String()
}

// parsePages parses each page with the layout.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := path.Base(n)
		if base == "layout.html" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", base, err)
		}
		pages[base] = t
	}
	return pages, nil
}

// render writes a whole page, or an error page if the template fails
// (rendered to a buffer first, so nothing half-written goes out).
func (c *Console) render(w http.ResponseWriter, code int, page string, v view) {
	var b bytes.Buffer
	if err := c.pages[page].ExecuteTemplate(&b, "layout", v); err != nil {
		c.log.Error("console template", "page", page, "err", err)
		http.Error(w, "the console could not draw this page; see lvsd's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(b.Bytes())
}

// fragment renders a page's live part alone, for the event stream.
func (c *Console) fragment(page string, v view) (string, error) {
	var b bytes.Buffer
	err := c.pages[page].ExecuteTemplate(&b, "live", v)
	return b.String(), err
}

// httpCode is the HTTP status for an API error.
func httpCode(err error) int {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.FailedPrecondition, codes.Aborted:
		return http.StatusConflict
	case codes.Unavailable, codes.DeadlineExceeded:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// fail renders an API error as a page: the API's own words, and the code.
func (c *Console) fail(w http.ResponseWriter, u *user, err error) {
	st := status.Convert(err)
	c.render(w, httpCode(err), "error.html", view{Title: "Refused", Node: c.o.Node, U: u,
		D: struct{ Code, Message string }{st.Code().String(), st.Message()}})
}
