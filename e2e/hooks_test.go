package e2e_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoal-lb/shoal/e2e/harness"
	"github.com/shoal-lb/shoal/e2e/netlab"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestNetnsHooks runs three real lvsd in the namespace lab with hooks in
// the config: the router that takes over after the leader's daemon is
// killed runs the leader hook, with the VIP in SHOAL_VIPS, as the script
// user; and every router runs the server-down hook when a real server
// stops answering. A hook that names a program outside the routers'
// --script-dir is refused there and counted, not run. A router told to stop
// runs its shutdown hook before it exits.
func TestNetnsHooks(t *testing.T) {
	netlab.SkipUnlessRoot(t)
	lvsd, lvsctl := harness.Build(t, "cmd/lvsd"), harness.Build(t, "cmd/lvsctl")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	lab, err := netlab.New(netlab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})

	// The script directory must be root's all the way up, and the script
	// user must pass through it; what the hook writes goes to out.
	base := t.TempDir()
	for p := base; p != os.TempDir(); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	scripts, out := filepath.Join(base, "scripts"), filepath.Join(base, "out")
	for _, d := range []string{scripts, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	hook := filepath.Join(scripts, "record")
	body := "#!/bin/sh\n{ id -u; env | grep ^SHOAL_ | sort; } > \"$1/$SHOAL_EVENT.$SHOAL_NODE.tmp\" && mv \"$1/$SHOAL_EVENT.$SHOAL_NODE.tmp\" \"$1/$SHOAL_EVENT.$SHOAL_NODE\"\n"
	if err := os.WriteFile(hook, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	read := func(event string, r *netlab.Node) string {
		b, _ := os.ReadFile(filepath.Join(out, event+"."+r.Name))
		return string(b)
	}

	backend, err := lab.Client.Serve("backend", "0.0.0.0:8080")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = backend.Close() })

	dir := labDir(t, lab)
	sh := &netlab.Shoal{Lab: lab, Lvsd: lvsd, Lvsctl: lvsctl, Dir: dir, Insecure: true,
		Flags: []string{"--script-dir", scripts}}
	stopWithLogs(t, sh)
	for _, r := range lab.Routers {
		if err := sh.Start(r); err != nil {
			t.Fatal(err)
		}
	}

	vip := netip.PrefixFrom(lab.Host(250), 24)
	cfg := &shoalv1.Config{
		Global: &shoalv1.Global{Hooks: []*shoalv1.Hook{
			{Events: []string{"leader", "follower", "shutdown"}, Command: []string{hook, out}},
			{Events: []string{"server-down", "server-up"}, Command: []string{hook, out}, Service: "web"},
			{Events: []string{"leader"}, Command: []string{"/usr/bin/touch", filepath.Join(out, "outside")}},
		}},
		Services: []*shoalv1.VirtualService{{
			Name: "web", Vip: &shoalv1.Address{Address: vip.Addr().String(), PrefixLength: 24, Interface: netlab.Iface}, Port: 80,
			HealthCheck: &shoalv1.HealthCheck{Interval: durationpb.New(200 * time.Millisecond), Timeout: durationpb.New(200 * time.Millisecond), Fall: 1},
			RealServers: []*shoalv1.RealServer{{Address: lab.Client.Addr.String(), Port: 8080}},
		}},
	}
	conn, err := sh.Conn(lab.Routers[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := shoalv1.NewConfigServiceClient(conn)
	var serial uint64
	harness.Eventually(t, 30*time.Second, func() bool {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := client.ApplyConfig(cctx, &shoalv1.ApplyConfigRequest{Config: cfg})
		serial = resp.GetSerial()
		return err == nil
	}, "the config with hooks was never applied")
	// A router runs the hooks it has applied: wait for every one, so that
	// whichever takes over knows them.
	for _, r := range lab.Routers {
		rc, err := sh.Conn(r)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		node := shoalv1.NewNodeServiceClient(rc)
		harness.Eventually(t, 10*time.Second, func() bool {
			st, err := node.GetNodeStatus(ctx, &shoalv1.GetNodeStatusRequest{})
			return err == nil && st.GetStatus().GetAppliedSerial() >= serial
		}, "%s did not apply serial %d", r.Name, serial)
	}

	var leader *netlab.Node
	harness.Eventually(t, 20*time.Second, func() bool {
		h, err := lab.Holders(vip.Addr())
		if err != nil || len(h) != 1 {
			return false
		}
		leader = h[0]
		return true
	}, "no single VIP holder")
	t.Logf("leader %s holds %s", leader.Name, vip)

	// 1. Takeover: the new leader runs the leader hook once it holds the VIP.
	kill := time.Now()
	sh.Kill(leader)
	var next *netlab.Node
	harness.Eventually(t, 20*time.Second, func() bool {
		for _, r := range lab.Routers {
			if r != leader && strings.Contains(read("leader", r), "SHOAL_EVENT=leader") {
				next = r
				return true
			}
		}
		return false
	}, "no router ran the leader hook after %s was killed", leader.Name)
	got := read("leader", next)
	t.Logf("%s ran the leader hook %v after the kill:\n%s", next.Name, time.Since(kill).Round(time.Millisecond), got)
	for _, want := range []string{"SHOAL_NODE=" + next.Name + "\n", "SHOAL_VIPS=" + vip.Addr().String() + "\n", "SHOAL_SERIAL="} {
		if !strings.Contains(got, want) {
			t.Errorf("leader hook environment lacks %q:\n%s", want, got)
		}
	}
	if uid, _, _ := strings.Cut(got, "\n"); uid == "0" {
		t.Error("the hook ran as root; want the script user")
	}
	if held, err := next.HasAddr(vip.Addr()); err != nil || !held {
		t.Errorf("%s ran the leader hook but does not hold %s (%v)", next.Name, vip.Addr(), err)
	}

	// 2. The real server stops answering: every running router runs the
	// server-down hook with the server and the check's reason.
	if err := backend.Close(); err != nil {
		t.Fatal(err)
	}
	server := netip.AddrPortFrom(lab.Client.Addr, 8080).String()
	for _, r := range lab.Routers {
		if r == leader {
			continue
		}
		harness.Eventually(t, 10*time.Second, func() bool {
			return strings.Contains(read("server-down", r), "SHOAL_SERVER="+server+"\n")
		}, "%s did not run the server-down hook for %s", r.Name, server)
		got := read("server-down", r)
		if !strings.Contains(got, "SHOAL_SERVICE=web\n") || !strings.Contains(got, "SHOAL_REASON=") {
			t.Errorf("%s server-down environment:\n%s", r.Name, got)
		}
	}

	// 3. The program outside --script-dir never ran; the refusal is counted.
	if _, err := os.Stat(filepath.Join(out, "outside")); err == nil {
		t.Error("a hook outside --script-dir ran")
	}
	harness.Eventually(t, 10*time.Second, func() bool {
		m, err := sh.Metrics(ctx, next)
		return err == nil && strings.Contains(m, `shoal_hook_runs_total{event="leader",result="refused"} 1`) &&
			strings.Contains(m, `shoal_hook_runs_total{event="leader",result="ok"} 1`)
	}, "%s's metrics do not count one refused and one ok leader hook", next.Name)

	// 4. SIGTERM: lvsd drops the VIP, runs the shutdown hook and waits for
	// it before it exits.
	if err := sh.Process(next).Stop(10 * time.Second); err != nil {
		t.Fatalf("stop %s: %v", next.Name, err)
	}
	if got := read("shutdown", next); !strings.Contains(got, "SHOAL_EVENT=shutdown\n") {
		t.Errorf("%s exited without having run its shutdown hook (%q)", next.Name, got)
	}
}
