package dataplane

import (
	"errors"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/shoal-lb/shoal/dataplane/ipvssync"
	"github.com/shoal-lb/shoal/dataplane/kernelfake"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestKernelSyncDaemons drives the kernel's sync daemons through the
// reconciler and the real generic-netlink implementation, in a namespace
// of its own with a veth pair to sync on. It skips where the kernel has no
// IPVS; the VM lab runs it.
func TestKernelSyncDaemons(t *testing.T) {
	k, ns := kernelIPVS(t)
	h := nlHandle(t, ns)
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "s0"}, PeerName: "s1"}); err != nil {
		t.Fatal(err)
	}
	s0 := linkUpIn(t, h, "s0")
	linkUpIn(t, h, "s1")
	a, _ := netlink.ParseAddr("198.51.100.1/24")
	if err := h.AddrAdd(s0, a); err != nil {
		t.Fatal(err)
	}
	sd, err := ipvssync.OpenAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sd.Close() })
	addrs := kernelfake.NewAddresses()
	d, err := New(Options{Mode: ModeIPVS, NodeID: "vm", DefaultInterface: "s0", Logger: quietLogger(),
		IPVS: k, Addresses: addrs, Announcer: &kernelfake.Announcer{}, Links: kernelfake.NewLinks(),
		SyncDaemons: sd, Sysctls: kernelfake.NewSysctls(), Conns: &kernelfake.Conns{}})
	if err != nil {
		t.Fatal(err)
	}
	list := func() []string {
		t.Helper()
		ds, err := sd.Daemons()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, x := range ds {
			out = append(out, x.String())
		}
		return out
	}
	c := syncConfig(func(cs *shoalv1.ConnectionSync) { cs.MaxLen = 1400 })
	d.SetConfig(c)
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	backup := "backup on s0 syncid 7 group 224.0.0.81 port 8848 ttl 1 maxlen 1400"
	master := "master on s0 syncid 7 group 224.0.0.81 port 8848 ttl 1 maxlen 1400"
	eq(t, "follower", list(), []string{backup})
	d.SetLeader(true)
	eq(t, "leader", list(), []string{master, backup})

	// Idle: nothing restarts (the kernel reports what it was given).
	d.SetConfig(c)
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	eq(t, "idle", list(), []string{master, backup})

	// A hand-stopped backup comes back; a new port restarts both.
	if err := sd.StopDaemon(ipvssync.Backup); err != nil {
		t.Fatal(err)
	}
	d.SetConfig(syncConfig(func(cs *shoalv1.ConnectionSync) { cs.MaxLen, cs.Port = 1400, 8850 }))
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	eq(t, "new port", list(), []string{
		"master on s0 syncid 7 group 224.0.0.81 port 8850 ttl 1 maxlen 1400",
		"backup on s0 syncid 7 group 224.0.0.81 port 8850 ttl 1 maxlen 1400",
	})

	d.SetLeader(false)
	if got := list(); len(got) != 1 {
		t.Errorf("follower again: %v", got)
	}
	d.SetConfig(webConfig())
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	eq(t, "sync off", list(), nil)
	if err := sd.StopDaemon(ipvssync.Backup); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("stop without a daemon: %v", err)
	}
}
