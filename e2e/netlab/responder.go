package netlab

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Responder is a tiny HTTP server inside a namespace that answers every
// request with its name, so that a client can tell which router answered on
// a VIP.
type Responder struct {
	Name string
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// Serve starts a responder named name on addr (e.g. "0.0.0.0:80") inside the
// node's namespace. Close stops it.
func (n *Node) Serve(name, addr string) (*Responder, error) {
	ln, err := n.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	body := []byte(name + "\n")
	r := &Responder{Name: name, ln: ln, done: make(chan struct{})}
	r.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Router", name)
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			_, _ = w.Write(body)
		}),
		ReadHeaderTimeout: 2 * time.Second,
		WriteTimeout:      2 * time.Second,
	}
	// One connection per request, as the prober does: every probe is a new
	// TCP handshake that has to find the VIP's current holder.
	r.srv.SetKeepAlivesEnabled(false)
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(ln)
	}()
	return r, nil
}

// Addr is the listening address.
func (r *Responder) Addr() net.Addr { return r.ln.Addr() }

// Close stops the responder at once (open connections are dropped) and
// waits for its goroutine.
func (r *Responder) Close() error {
	err := r.srv.Close()
	<-r.done
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("netlab: close responder %s: %w", r.Name, err)
	}
	return nil
}
