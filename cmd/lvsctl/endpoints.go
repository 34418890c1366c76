package main

// This file holds how lvsctl finds a node to talk to: --server may name
// several nodes (-s a,b,c, as etcdctl's --endpoints), tried in that order
// until one answers, and an error that no node could be reached says which
// and how to name another instead of gRPC's transport message.
//
// The addresses go to one gRPC channel through a resolver of their own, with
// gRPC's pick_first balancer: it connects to the first address that
// accepts (starting the next one after 250 ms if one hangs), and when that
// connection breaks, to the first that accepts again. So a read or a write
// that a node going away failed is retried (retry.go) on another node, on
// the same channel and by the same interceptor: a write keeps its request
// id, and the cluster applies it at most once.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
)

// pickAnother is what to do when no node could be reached.
const pickAnother = "give the API address of a node that is up with --server (-s) or $SHOAL_SERVER; several, comma-separated, are tried in turn"

// splitEndpoints reads --server: addresses separated by commas, in the
// order to try them.
func splitEndpoints(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" || seen[e] {
			continue
		}
		seen[e] = true
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--server %q: no address", s)
	}
	return out, nil
}

// endpointOptions are the dial options that make one channel over the
// addresses of --server, recording each connection attempt in a.dials.
func (a *app) endpointOptions() ([]grpc.DialOption, string, error) {
	eps, err := splitEndpoints(a.server)
	if err != nil {
		return nil, "", err
	}
	var st resolver.State
	for _, e := range eps {
		// ServerName: each node is named by its own address, not the
		// first's (the TLS check identifies a node by its certificate).
		st.Endpoints = append(st.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: e, ServerName: e}}})
	}
	r := manual.NewBuilderWithScheme("lvsctl")
	r.InitialState(st)
	return []grpc.DialOption{grpc.WithResolvers(r), grpc.WithContextDialer(a.dials.dial)}, r.Scheme() + ":///" + eps[0], nil
}

// dialLog remembers how the connection attempts to each address went.
type dialLog struct {
	mu sync.Mutex
	by map[string]*dialOutcome
}

// dialOutcome is the last finished attempt to an address, and how many
// are under way.
type dialOutcome struct {
	connected bool
	err       error
	pending   int
}

func (l *dialLog) dial(ctx context.Context, addr string) (net.Conn, error) {
	l.mu.Lock()
	if l.by == nil {
		l.by = map[string]*dialOutcome{}
	}
	o := l.by[addr]
	if o == nil {
		o = &dialOutcome{}
		l.by[addr] = o
	}
	o.pending++
	l.mu.Unlock()

	network, target := "tcp", addr
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, target = "unix", p
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, target)

	l.mu.Lock()
	defer l.mu.Unlock()
	o.pending--
	o.connected, o.err = err == nil, err
	return c, err
}

// unreachable lists the addresses of eps no attempt connected to, with why.
func (l *dialLog) unreachable(eps []string) (down []string, all bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	all = true
	for _, e := range eps {
		o := l.by[e]
		switch {
		case o == nil:
			all = false // never tried: another answered first
		case o.connected:
			all = false
		case o.err != nil:
			down = append(down, e+" ("+dialReason(o.err)+")")
		case o.pending > 0:
			down = append(down, e+" (no answer)")
		}
	}
	return down, all && len(down) > 0
}

// dialReason is what went wrong in the words an operator uses.
func dialReason(err error) string {
	var errno syscall.Errno
	var dns *net.DNSError
	var ne net.Error
	switch {
	case errors.As(err, &dns):
		return "cannot resolve " + dns.Name + ": " + dns.Err
	case errors.As(err, &errno):
		return errno.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "no answer"
	}
	return err.Error()
}

// explain turns the error of a call that reached no node into one that
// says which nodes could not be reached and how to pick another. Errors
// from a node that answered (TLS, a refusal) are left as they are, so
// their own hints still apply.
func (a *app) explain(err error) error {
	if err == nil {
		return nil
	}
	code := status.Code(err)
	if code != codes.Unavailable && code != codes.DeadlineExceeded {
		return err
	}
	eps, perr := splitEndpoints(a.server)
	if perr != nil {
		return err
	}
	down, all := a.dials.unreachable(eps)
	switch {
	case all && len(eps) == 1:
		return status.Errorf(code, "cannot reach the shoal API at %s; %s", strings.Join(down, ", "), pickAnother)
	case all:
		return status.Errorf(code, "cannot reach the shoal API at any of %s; %s", strings.Join(down, ", "), pickAnother)
	case len(down) > 0:
		st := status.Convert(err).Proto()
		st.Message += " (lvsctl could not reach " + strings.Join(down, ", ") + ")"
		return status.ErrorProto(st)
	}
	return err
}
