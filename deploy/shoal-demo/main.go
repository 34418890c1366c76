// Command shoal-demo is the small static helper of the docker-compose demo
// cluster. The demo image is FROM scratch (no shell, no curl, no ip), so
// everything the cluster and its e2e test need besides lvsd and lvsctl lives
// here:
//
//	serve     a real server: answers every HTTP request with its name; for
//	          direct routing it raises the VIP on lo first (needs NET_ADMIN)
//	director  runs lvsd as a child next to an HTTP responder that answers with
//	          the director's name, and finds the interface that carries the
//	          public network so lvsd is told the right --interface
//	idle      waits for a signal (the client container)
//	get       one HTTP request; prints the first line of the answer
//	probe     keeps asking the VIP and reports when another node answers
//	wait-addr waits until an address is present on or gone from this host
//	addrs     prints this host's addresses
//
// It is demo and test tooling, never part of a production director: nothing
// in lvsd depends on it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	cmds := map[string]func(ctx context.Context, w io.Writer, args []string) error{
		"serve":     serve,
		"director":  director,
		"idle":      idle,
		"get":       get,
		"probe":     probe,
		"wait-addr": waitAddr,
		"addrs":     addrs,
	}
	run, ok := cmds[os.Args[1]]
	if !ok {
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Stdout, os.Args[2:])
	stop()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		// director: leave with lvsd's own status so docker reports it.
		os.Exit(exit.ExitCode())
	case err != nil:
		fmt.Fprintf(os.Stderr, "shoal-demo %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: shoal-demo serve|director|idle|get|probe|wait-addr|addrs [flags]")
}

// responder answers every request with name, so a client can tell which
// machine the VIP led it to.
func responder(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Shoal-Node", name)
		fmt.Fprintln(w, name)
	})
}

// listenHTTP serves h on addr until ctx ends; the returned wait blocks until
// the server has stopped.
func listenHTTP(ctx context.Context, addr string, h http.Handler) (wait func() error, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var result error
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
			// A demo responder: cut open connections rather than wait for
			// them, so the container stops as soon as lvsd has.
			_ = srv.Close()
			result = <-errc
		case result = <-errc:
		}
	}()
	return func() error {
		<-stopped
		if errors.Is(result, http.ErrServerClosed) {
			return nil
		}
		return result
	}, nil
}

func serve(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	name := fs.String("name", hostname(), "name to answer with")
	listen := fs.String("listen", ":80", "address to serve HTTP on")
	vip := fs.String("vip-on-lo", "", "raise this address on lo first, as a direct-routing real server must (needs NET_ADMIN)")
	_ = fs.Parse(args)
	if *vip != "" {
		if err := addToLoopback(*vip); err != nil {
			return err
		}
	}
	wait, err := listenHTTP(ctx, *listen, responder(*name))
	if err != nil {
		return err
	}
	slog.Info("real server answering", "name", *name, "listen", *listen, "vip_on_lo", *vip)
	return wait()
}

// addToLoopback raises addr/32 (/128) on lo: a direct-routing real server
// accepts packets for the VIP without answering ARP for it (the compose file
// sets arp_ignore=1 and arp_announce=2).
func addToLoopback(s string) error {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("vip-on-lo: %w", err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}}
	if err := netlink.AddrAdd(lo, addr); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("add %s to lo: %w", a, err)
	}
	return nil
}

// director runs lvsd (the arguments after --) with an HTTP responder beside
// it. The responder is what answers on the VIP in the vip dataplane, where
// there is no IPVS to pass the connection on: the answer names the director
// that holds the VIP. With the ipvs dataplane IPVS takes VIP:port before any
// local socket sees it, so the real servers answer instead.
func director(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("director", flag.ExitOnError)
	name := fs.String("name", hostname(), "name to answer with")
	listen := fs.String("listen", ":80", "address of the responder; empty turns it off")
	subnet := fs.String("iface-subnet", "", "replace {iface} in lvsd's arguments by the interface with an address in this prefix")
	_ = fs.Parse(args)
	child := fs.Args()
	if len(child) == 0 {
		return errors.New("no lvsd command after --")
	}
	if *subnet != "" {
		// Docker does not keep interface names stable across restarts and
		// network reconnects when a container has several networks, so the
		// name is looked up at every start.
		dev, err := interfaceIn(*subnet)
		if err != nil {
			return err
		}
		for i, a := range child {
			child[i] = strings.ReplaceAll(a, "{iface}", dev)
		}
	}
	rctx, stopResponder := context.WithCancel(context.Background())
	defer stopResponder()
	if *listen != "" {
		wait, err := listenHTTP(rctx, *listen, responder(*name))
		if err != nil {
			return err
		}
		defer func() {
			stopResponder()
			_ = wait()
		}()
	}

	cmd := exec.Command(child[0], child[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	// We are PID 1 in the container: pass docker's SIGTERM on so lvsd drains
	// (drops its VIPs, hands leadership away) before the container ends.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", child[0], err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case err := <-waited:
			return err
		}
	}
}

// interfaceIn names the interface that has an address inside prefix.
func interfaceIn(prefix string) (string, error) {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return "", fmt.Errorf("iface-subnet: %w", err)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("list interfaces: %w", err)
	}
	for _, ifc := range ifs {
		as, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range as {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && p.Contains(ip.Unmap()) {
					return ifc.Name, nil
				}
			}
		}
	}
	return "", fmt.Errorf("no interface has an address in %s", p)
}

func idle(ctx context.Context, _ io.Writer, _ []string) error {
	<-ctx.Done()
	return nil
}

func client(timeout time.Duration) *http.Client {
	// A new connection per request: a kept-alive connection would hide a VIP
	// that has moved to another machine.
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
}

// ask makes one request and returns the first line of the answer.
func ask(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line), nil
}

func get(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("get", flag.ExitOnError)
	url := fs.String("url", "", "URL to ask")
	timeout := fs.Duration("timeout", 2*time.Second, "timeout of the request")
	n := fs.Int("n", 1, "number of requests")
	_ = fs.Parse(args)
	c := client(*timeout)
	failed := 0
	for i := 0; i < *n; i++ {
		who, err := ask(ctx, c, *url)
		if err != nil {
			failed++
			fmt.Fprintf(w, "%s -> error: %v\n", *url, err)
			continue
		}
		fmt.Fprintf(w, "%s -> %s\n", *url, who)
	}
	if failed == *n {
		return fmt.Errorf("no answer from %s", *url)
	}
	return nil
}

// probeEvent is one line of probe's output (JSON); times are Unix
// nanoseconds so the test on the host can compare them with its own clock
// (containers share the host's clock).
type probeEvent struct {
	Event string `json:"event"` // ready, switched, timeout
	Name  string `json:"name,omitempty"`
	// LastOld is the end of the last successful request answered by -from.
	LastOld int64 `json:"last_old_unix_nano,omitempty"`
	// FirstNew is the end of the first successful request answered by another node.
	FirstNew int64 `json:"first_new_unix_nano,omitempty"`
	// Failures counts failed requests after ready.
	Failures int `json:"failures"`
	OK       int `json:"ok"`
}

// probe asks url every interval, each time on a new connection. It reports
// "ready" once ready answers came from -from and "switched" at the first
// answer from any other node, then exits.
func probe(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	url := fs.String("url", "", "URL to ask")
	from := fs.String("from", "", "the node answering now; empty takes the first answer")
	interval := fs.Duration("interval", 10*time.Millisecond, "pause between requests")
	timeout := fs.Duration("timeout", 200*time.Millisecond, "timeout of one request")
	ready := fs.Int("ready", 3, "answers from -from before reporting ready")
	limit := fs.Duration("max", time.Minute, "give up after this long")
	afterFailure := fs.Bool("after-failure", false, "report the first answer after a failed request as the switch, whoever gives it (for IPVS, where real servers answer)")
	_ = fs.Parse(args)

	ctx, cancel := context.WithTimeout(ctx, *limit)
	defer cancel()
	out := json.NewEncoder(w)
	c := client(*timeout)
	var ev probeEvent
	old := *from
	for {
		who, err := ask(ctx, c, *url)
		now := time.Now().UnixNano()
		switch {
		case err != nil && ev.OK < *ready:
			// Not ready yet: an outage is only counted once the VIP answered.
		case err != nil:
			ev.Failures++
		case *afterFailure && ev.Failures > 0 && ev.OK >= *ready:
			ev.Event, ev.Name, ev.FirstNew = "switched", who, now
			return out.Encode(ev)
		case *afterFailure:
			ev.OK++
			ev.LastOld = now
			if ev.OK == *ready {
				_ = out.Encode(probeEvent{Event: "ready", Name: who, OK: ev.OK, Failures: ev.Failures})
			}
		case old == "":
			old = who
			fallthrough
		case who == old:
			ev.OK++
			ev.LastOld = now
			if ev.OK == *ready {
				_ = out.Encode(probeEvent{Event: "ready", Name: old, OK: ev.OK, Failures: ev.Failures})
			}
		default:
			ev.Event, ev.Name, ev.FirstNew = "switched", who, now
			return out.Encode(ev)
		}
		select {
		case <-ctx.Done():
			ev.Event = "timeout"
			_ = out.Encode(ev)
			return fmt.Errorf("no answer from a node other than %q within %s", old, *limit)
		case <-time.After(*interval):
		}
	}
}

// waitAddr polls this host's addresses (every 5ms) until addr is gone (or
// present). It prints "watching present|absent" at once, then the moment of
// the change as Unix nanoseconds.
func waitAddr(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("wait-addr", flag.ExitOnError)
	addr := fs.String("addr", "", "address to watch")
	gone := fs.Bool("gone", false, "wait until the address is gone instead of present")
	limit := fs.Duration("max", 30*time.Second, "give up after this long")
	_ = fs.Parse(args)
	want, err := netip.ParseAddr(*addr)
	if err != nil {
		return fmt.Errorf("addr: %w", err)
	}
	deadline := time.Now().Add(*limit)
	for first := true; ; first = false {
		has, err := hasAddr(want)
		if err != nil {
			return err
		}
		if first {
			// Tells a caller that the watch has begun and what it saw.
			fmt.Fprintln(w, "watching", map[bool]string{true: "present", false: "absent"}[has])
		}
		if has != *gone {
			fmt.Fprintln(w, time.Now().UnixNano())
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still %s after %s", want, map[bool]string{true: "present", false: "absent"}[has], *limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func hostAddrs() ([]netip.Prefix, []string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, nil, fmt.Errorf("list interfaces: %w", err)
	}
	var ps []netip.Prefix
	var devs []string
	for _, ifc := range ifs {
		as, err := ifc.Addrs()
		if err != nil {
			return nil, nil, fmt.Errorf("addresses of %s: %w", ifc.Name, err)
		}
		for _, a := range as {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				ps = append(ps, p)
				devs = append(devs, ifc.Name)
			}
		}
	}
	return ps, devs, nil
}

func hasAddr(want netip.Addr) (bool, error) {
	ps, _, err := hostAddrs()
	if err != nil {
		return false, err
	}
	for _, p := range ps {
		if p.Addr() == want {
			return true, nil
		}
	}
	return false, nil
}

func addrs(_ context.Context, w io.Writer, _ []string) error {
	ps, devs, err := hostAddrs()
	if err != nil {
		return err
	}
	for i, p := range ps {
		fmt.Fprintf(w, "%s %s\n", p, devs[i])
	}
	return nil
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
