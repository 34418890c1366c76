package liveness

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// inNetNS runs fn in a new network namespace whose loopback is up, on a
// locked thread; sockets fn opens stay in that namespace.
func inNetNS(t *testing.T, fn func(h *netlink.Handle)) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a raw socket in a network namespace")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	defer ns.Close()
	defer netns.Set(orig)
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	fn(h)
}

// TestKernelProbes runs the raw socket for real: probes to this host's
// own loopback are answered by the kernel and seen arriving, with kernel
// times; with the loopback down they are not, and after the timeout the
// leader is down.
func TestKernelProbes(t *testing.T) {
	// The daemon watch dials from other threads, so outside the
	// namespace: give it a listener there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	leader := netip.MustParseAddrPort(ln.Addr().String())
	const timeout = 24 * time.Millisecond
	inNetNS(t, func(h *netlink.Handle) {
		c, err := Open(timeout, WatchDial{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		self := []netip.Addr{leader.Addr()} // our own probes arrive here too
		for range 20 {
			if _, v := c.Follow(time.Now(), leader); v != Up {
				t.Fatalf("%v while the kernel answers", v)
			}
			time.Sleep(timeout / 8)
		}
		now := time.Now()
		conf := c.Evidence(now, self)[0]
		c.mu.Lock()
		answered, answerAt := c.answered, c.answerAt
		c.mu.Unlock()
		t.Logf("answered %d of 20 probes; the evidence is %v old", answered, now.Sub(conf))
		if answered < 15 || now.Sub(answerAt) > timeout {
			t.Fatalf("answered %d of 20, the last %v ago", answered, now.Sub(answerAt))
		}
		if conf.IsZero() || now.Sub(conf) > 2*timeout/8+10*time.Millisecond || conf.After(now) {
			t.Fatalf("evidence %v old, want within about two probes", now.Sub(conf))
		}

		lo, err := h.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetDown(lo); err != nil {
			t.Fatal(err)
		}
		cut := time.Now()
		c.mu.Lock()
		lastAnswer := c.answerAt
		c.mu.Unlock()
		for time.Since(cut) < 10*timeout {
			if _, v := c.Follow(time.Now(), leader); v == RouterSilent {
				t.Logf("down %v after the cut, %v after the last answer", time.Since(cut), time.Since(lastAnswer))
				if time.Since(lastAnswer) < timeout {
					t.Errorf("down %v after the last answer, sooner than the timeout", time.Since(lastAnswer))
				}
				return
			}
			time.Sleep(timeout / 8)
		}
		t.Fatalf("not down %v after the loopback went down", 10*timeout)
	})
}
