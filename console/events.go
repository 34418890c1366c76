package console

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// events streams a page's live part as server-sent events: drawn again
// whenever the configuration changes (the API's Watch stream), a health
// check changes state (WatchHealth), and every poll interval for what has
// no stream (leadership, Raft, counters); sent only when it changed.
func (c *Console) events(w http.ResponseWriter, r *http.Request, u *user) {
	page := r.URL.Query().Get("page")
	load := map[string]func(context.Context, *user) (any, error){
		"overview": func(ctx context.Context, u *user) (any, error) { return c.loadOverview(ctx, u) },
		"services": func(ctx context.Context, u *user) (any, error) {
			return c.loadServices(ctx, u, r.URL.Query().Get("service"))
		},
	}[page]
	fl, ok := w.(http.Flusher)
	if load == nil || !ok {
		http.Error(w, "page: want overview or services", http.StatusBadRequest)
		return
	}
	// Each stream reads the cluster status (a call to every router) every
	// 2s: a bound, so that open tabs cannot load the routers without end.
	select {
	case c.streams <- struct{}{}:
		defer func() { <-c.streams }()
	default:
		http.Error(w, "too many live pages open on this router; close some, or reload later", http.StatusServiceUnavailable)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fl.Flush()

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	go c.follow(ctx, func() error {
		st, err := c.cfg.Watch(u.ctx(ctx), &shoalv1.WatchRequest{})
		return pokeEach(st, err, poke)
	})
	if page == "services" {
		go c.follow(ctx, func() error {
			st, err := c.node.WatchHealth(u.ctx(ctx), &shoalv1.WatchHealthRequest{})
			return pokeEach(st, err, poke)
		})
	}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	last := ""
	for {
		d, err := load(ctx, u)
		if err != nil {
			// A session that ended (expired, revoked) ends the stream; the
			// page goes to the login page. Anything else: try again.
			if ctx.Err() != nil {
				return
			}
			fmt.Fprintf(w, "event: problem\ndata: %s\n\n", oneLine(status.Convert(err).Message()))
			fl.Flush()
			if httpCode(err) == http.StatusUnauthorized {
				return
			}
		} else if html, err := c.fragment(page+".html", view{Page: page, Node: c.o.Node, U: u, D: d}); err != nil {
			c.log.Error("console template", "page", page, "err", err)
			return
		} else if html != last {
			last = html
			var b strings.Builder
			b.WriteString("event: live\n")
			for _, line := range strings.Split(html, "\n") {
				b.WriteString("data: ")
				b.WriteString(line)
				b.WriteString("\n")
			}
			b.WriteString("\n")
			if _, err := w.Write([]byte(b.String())); err != nil {
				return
			}
			fl.Flush()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-kick:
			// Let a burst of changes settle into one redraw.
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// follow runs a watch until ctx ends, again after a pause when it breaks
// (a leader change, a restart of the stream).
func (c *Console) follow(ctx context.Context, watch func() error) {
	for ctx.Err() == nil {
		if err := watch(); err != nil && ctx.Err() == nil {
			c.log.Debug("console watch", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// pokeEach calls poke for every message of a watch stream opened with err,
// until the stream ends.
func pokeEach[T any](st interface{ Recv() (T, error) }, err error, poke func()) error {
	if err != nil {
		return err
	}
	for {
		if _, err := st.Recv(); err != nil {
			return err
		}
		poke()
	}
}
