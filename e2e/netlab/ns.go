package netlab

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs f on an OS thread that has joined the node's network namespace.
// Sockets created inside f belong to that namespace for their whole life,
// whichever thread later reads or writes them; so tests can listen and dial
// "inside" a namespace without a helper process.
func (n *Node) Do(f func() error) error {
	// A fresh goroutine: if the thread cannot be moved back, it stays locked
	// and the runtime discards it when the goroutine ends, so no other
	// goroutine ever runs in the wrong namespace.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netlab: current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(n.ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netlab: enter %s: %w", n.NS, err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// Listen opens a listener inside the node's namespace.
func (n *Node) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: listen %s in %s: %w", addr, n.NS, err)
	}
	return ln, nil
}

// DialContext connects from inside the node's namespace. addr must be a
// literal IP:port (no name resolution happens inside the namespace).
func (n *Node) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
