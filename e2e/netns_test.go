package e2e_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/shoal-lb/shoal/e2e/harness"
	"github.com/shoal-lb/shoal/e2e/netlab"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// A leader cut off from the majority drops its VIPs a lease after the last
// evidence a quorum had of it, which was before the cut: in lan, the last
// request a quorum accepted, plus 180ms; in fast, also its kernel's last
// answer to a follower's probe that the follower confirmed, plus nine
// tenths of the 25ms probe timeout. leaseMargin is for a busy machine.
const (
	lanLease    = 180 * time.Millisecond
	fastLease   = 25 * time.Millisecond * 9 / 10
	leaseMargin = 300 * time.Millisecond
)

// TestNetnsVIPFailover runs three real lvsd with the VIP dataplane in router
// namespaces on one bridge and checks what a client namespace sees: the VIP
// on the leader only, a takeover after the leader's daemon is killed (with
// the client's ARP entry moved by gratuitous ARP), and a partitioned leader
// dropping the VIP within its lease while the majority elects a new holder;
// in the default profile, and in fast, whose followers also probe the
// leader's kernel.
func TestNetnsVIPFailover(t *testing.T) {
	for _, p := range []struct {
		profile string
		lease   time.Duration
	}{{"lan", lanLease}, {"fast", fastLease}} {
		t.Run(p.profile, func(t *testing.T) { testVIPFailover(t, p.profile, p.lease) })
	}
}

func testVIPFailover(t *testing.T, profile string, lease time.Duration) {
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
	for _, r := range lab.Routers {
		resp, err := r.Serve(r.Name, "0.0.0.0:80")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resp.Close() })
	}
	dir := labDir(t, lab)
	sh := &netlab.Shoal{Lab: lab, Lvsd: lvsd, Lvsctl: lvsctl, Dir: dir, Profile: profile}
	stopWithLogs(t, sh)
	for _, r := range lab.Routers {
		if err := sh.Start(r); err != nil {
			t.Fatal(err)
		}
	}

	vip := netip.PrefixFrom(lab.Host(250), 24)
	holders := &netlab.HolderLog{}
	bg, stopBG := context.WithCancel(ctx)
	hdone := make(chan struct{})
	go func() { defer close(hdone); holders.Run(bg, lab, vip.Addr()) }()
	arp, err := lab.Client.WatchARP(bg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(arp.Wait)
	prober := lab.Client.NewProber(netip.AddrPortFrom(vip.Addr(), 80), netlab.ProberOptions{Interval: 10 * time.Millisecond})
	pdone := make(chan struct{})
	go func() { defer close(pdone); prober.Run(bg) }()
	t.Cleanup(func() { stopBG(); <-hdone; <-pdone })
	start := time.Now()

	if out, err := sh.CtlRetry(ctx, "service", "add", "web", "--vip", vip.String(), "--interface", netlab.Iface, "--port", "80"); err != nil {
		t.Fatalf("lvsctl service add: %v", err)
	} else {
		t.Logf("lvsctl: %s", strings.TrimSpace(out))
	}

	// 1. Only the leader holds the VIP, and the client reaches it there.
	leader := stableLeader(ctx, t, sh, holders, nil)
	if _, err := prober.Wait(ctx, 10, func(r netlab.ProbeResult) bool { return r.OK && r.Router == leader.Name }); err != nil {
		t.Fatalf("client never reached the VIP on leader %s: %v", leader.Name, err)
	}
	t.Logf("leader %s holds %s; client reaches it", leader.Name, vip)

	// 2. SIGKILL of the leader's lvsd: another router takes over and the
	// client's neighbour entry for the VIP moves to its MAC (GARP). The dead
	// daemon cannot remove its VIP; that is allowed until it restarts.
	killed := leader
	kill := time.Now()
	sh.Kill(killed)
	first, err := prober.Wait(ctx, 1, func(r netlab.ProbeResult) bool {
		return r.OK && r.Router != killed.Name && !r.Start.Before(kill)
	})
	if err != nil {
		t.Fatalf("after SIGKILL of %s the client never reached another router: %v (holders %s)", killed.Name, err, holders.Current())
	}
	newLeader := lab.Router(first.Router)
	t.Logf("+%v SIGKILL %s: client answered by %s after %v", kill.Sub(start).Round(time.Millisecond), killed.Name, newLeader.Name, first.End.Sub(kill).Round(time.Millisecond))
	harness.Eventually(t, 2*time.Second, func() bool {
		nb, ok, err := lab.Client.Neighbour(vip.Addr())
		return err == nil && ok && lab.RouterByMAC(nb.MAC) == newLeader
	}, "client neighbour entry for the VIP is not %s's MAC %s (GARP)", newLeader.Name, newLeader.MAC)
	if g, ok := arp.FirstGARP(vip.Addr(), newLeader.MAC, kill); !ok {
		t.Errorf("client saw no gratuitous ARP for %s from %s after the kill", vip.Addr(), newLeader.Name)
	} else {
		t.Logf("first GARP from %s reached the client %v after the kill", newLeader.Name, g.At.Sub(kill).Round(time.Millisecond))
	}
	if got := stableLeader(ctx, t, sh, holders, killed); got != newLeader {
		t.Fatalf("leader after SIGKILL is %s, but %s answered the client", got.Name, newLeader.Name)
	}
	// The restarted daemon is a follower and takes its stale VIP away.
	if err := sh.Start(killed); err != nil {
		t.Fatal(err)
	}
	if _, err := holders.Until(within(t, ctx, 10*time.Second), func(h string) bool { return h == newLeader.Name }); err != nil {
		t.Fatalf("restarted %s did not drop its stale VIP: holders %s", killed.Name, holders.Current())
	}
	cleaned := time.Now()
	settledLeader := stableLeader(ctx, t, sh, holders, nil)

	// 3. Partition the leader (its switch port down): it must drop the VIP
	// within its lease, and the majority must elect a new holder.
	part := settledLeader
	if err := part.Unplug(); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	harness.Eventually(t, 10*time.Second, func() bool {
		ok, err := part.HasAddr(vip.Addr())
		return err == nil && !ok
	}, "partitioned %s still holds the VIP", part.Name)
	dropped := holderGone(holders, part.Name, cut)
	t.Logf("+%v partitioned %s dropped the VIP %v after its link went down (lease %v)", cut.Sub(start).Round(time.Millisecond), part.Name, dropped.Sub(cut).Round(time.Millisecond), lease)
	if d := dropped.Sub(cut); d > lease+leaseMargin {
		t.Errorf("partitioned leader %s held the VIP %v after losing the majority; want <= lease %v + %v", part.Name, d.Round(time.Millisecond), lease, leaseMargin)
	}
	nh, err := holders.Until(within(t, ctx, 10*time.Second), func(h string) bool { return h != "-" && h != part.Name && !strings.Contains(h, ",") })
	if err != nil {
		t.Fatalf("majority elected no VIP holder after %s was cut off: holders %s", part.Name, holders.Current())
	}
	majority := lab.Router(nh)
	after := time.Now()
	if _, err := prober.Wait(ctx, 1, func(r netlab.ProbeResult) bool { return r.OK && r.Router == majority.Name && r.Start.After(after) }); err != nil {
		t.Fatalf("client never reached new holder %s: %v", majority.Name, err)
	}
	t.Logf("majority elected %s, %v after the cut", majority.Name, holderSince(holders, majority.Name, cut).Sub(cut).Round(time.Millisecond))

	// Heal: the old leader comes back as a follower and takes no VIP.
	if err := part.Plug(); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	final := stableLeader(ctx, t, sh, holders, nil)
	end := time.Now()

	// Never two holders outside the allowed windows: the killed daemon's
	// stale VIP until its restart cleaned it, and the partition until the
	// cut-off leader dropped it.
	for _, at := range holders.DualBetween(start, end) {
		if (!at.Before(kill) && !at.After(cleaned)) || (!at.Before(cut) && !at.After(dropped)) {
			continue
		}
		t.Errorf("two routers held the VIP at %s (outside the crash/partition windows)", at.Format("15:04:05.000"))
	}
	t.Logf("healed partition: leader %s (%v after replug); VIP holder transitions: %s", final.Name, end.Sub(healed).Round(time.Millisecond), transitions(holders, start))
}

// TestNetnsTLS checks lvsd's default security on real, non-loopback
// addresses: three routers of the namespace lab bootstrap over mutual TLS
// with a bootstrap token; from the client namespace, bytes and TLS without
// a node certificate on the leader's Raft port commit nothing, and a
// plaintext gRPC call to the API is refused; a fourth router joins with a
// token from `lvsctl cluster token` and answers with its own admin
// credentials.
func TestNetnsTLS(t *testing.T) {
	netlab.SkipUnlessRoot(t)
	lvsd, lvsctl := harness.Build(t, "cmd/lvsd"), harness.Build(t, "cmd/lvsctl")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	lab, err := netlab.New(netlab.Options{Routers: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	dir := labDir(t, lab)
	r4 := lab.Routers[3]
	sh := &netlab.Shoal{Lab: lab, Lvsd: lvsd, Lvsctl: lvsctl, Dir: dir, Bootstrap: lab.Routers[:3]}
	stopWithLogs(t, sh)
	start := time.Now()
	for _, r := range sh.Bootstrap {
		if err := sh.Start(r); err != nil {
			t.Fatal(err)
		}
	}
	status := func() (*shoalv1.GetClusterStatusResponse, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := sh.CtlRetry(cctx, "-o", "json", "--request-timeout", "2s", "cluster", "status")
		if err != nil {
			return nil, err
		}
		var st shoalv1.GetClusterStatusResponse
		if err := protojson.Unmarshal([]byte(out), &st); err != nil {
			return nil, fmt.Errorf("cluster status: %w: %s", err, out)
		}
		return &st, nil
	}
	// members waits for a leader and want members that each answer.
	members := func(t *testing.T, want ...string) *shoalv1.GetClusterStatusResponse {
		t.Helper()
		var st *shoalv1.GetClusterStatusResponse
		harness.Eventually(t, 30*time.Second, func() bool {
			s, err := status()
			if err != nil || s.GetLeaderId() == "" || len(s.GetMembers()) != len(want) {
				return false
			}
			for _, m := range s.GetMembers() {
				if !strings.Contains(" "+strings.Join(want, " ")+" ", " "+m.GetId()+" ") || (m.GetRole() != "leader" && m.GetRole() != "follower") || m.GetCertificate() == nil {
					return false
				}
			}
			st = s
			return true
		}, "members %v answering over TLS, with a leader", want)
		return st
	}
	st := members(t, "r1", "r2", "r3")
	leader := lab.Router(st.GetLeaderId())
	t.Logf("3 routers on %s over TLS: leader %s %v after the first start", lab.Subnet, leader.Name, time.Since(start).Round(time.Millisecond))

	t.Run("raft-port", func(t *testing.T) {
		pos := func() harness.RaftPosition {
			st, err := status()
			if err != nil {
				t.Fatal(err)
			}
			return harness.RaftPosition{Leader: st.GetLeaderId(), Term: st.GetTerm(), Commit: st.GetCommitIndex()}
		}
		harness.AssertNoCommit(t, pos, func(id string) {
			target := lab.Router(id)
			seen, err := harness.ProbeRaftPort(lab.Client.DialContext, sh.RaftAddr(target).String(), sh.Creds(lab.Routers[0]))
			if err != nil {
				t.Fatalf("%s's Raft port %s: %v", target.Name, sh.RaftAddr(target), err)
			}
			t.Logf("%s's Raft port %s from the client namespace:\n  %s", target.Name, sh.RaftAddr(target), strings.Join(seen, "\n  "))
		})
	})

	t.Run("api-plaintext", func(t *testing.T) {
		conn, err := grpc.NewClient("passthrough:///"+sh.APIAddr(leader).String(),
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				return lab.Client.DialContext(ctx, "tcp", addr)
			}))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := shoalv1.NewNodeServiceClient(conn).GetNodeStatus(cctx, &shoalv1.GetNodeStatusRequest{}); err == nil {
			t.Fatalf("a plaintext gRPC call to %s's API was answered", leader.Name)
		} else {
			t.Logf("plaintext gRPC call to %s: %v", sh.APIAddr(leader), err)
		}
	})

	t.Run("join", func(t *testing.T) {
		token, err := sh.JoinToken(ctx, leader)
		if err != nil {
			t.Fatal(err)
		}
		joined := time.Now()
		if err := sh.Join(r4, leader, token); err != nil {
			t.Fatal(err)
		}
		members(t, "r1", "r2", "r3", "r4")
		t.Logf("r4 joined through %s with a token from lvsctl cluster token: a member %v after its start", leader.Name, time.Since(joined).Round(time.Millisecond))
		own := sh.Creds(r4)
		harness.Eventually(t, 20*time.Second, own.Ready, "r4's own admin credentials in %s", filepath.Dir(own.Cert))
		out, err := sh.Ctl(ctx, r4, "whoami")
		if err != nil || !strings.Contains(out, "root@r4 (admin)") {
			t.Fatalf("whoami on r4 with its own admin credentials: %v %q", err, out)
		}
		t.Logf("r4: %s", strings.TrimSpace(out))
	})
}

// stableLeader waits for exactly one VIP holder, unchanged for a second,
// that every running lvsd names as raft leader and that alone reports
// holding VIPs. ignore is a router whose daemon is down (its stale VIP is
// tolerated).
func stableLeader(ctx context.Context, t *testing.T, sh *netlab.Shoal, holders *netlab.HolderLog, ignore *netlab.Node) *netlab.Node {
	t.Helper()
	const stable = time.Second
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var last string
	for {
		h, err := holders.Until(ctx, func(h string) bool { return len(liveHolders(h, ignore)) == 1 })
		if err != nil {
			t.Fatalf("no single VIP holder: %s (last check: %s)", holders.Current(), last)
		}
		leader := sh.Lab.Router(liveHolders(h, ignore)[0])
		err = sameRaftLeader(ctx, sh, leader, ignore)
		if err == nil {
			if since := lastChange(holders); time.Since(since) < stable {
				err = fmt.Errorf("VIP holders changed %v ago", time.Since(since).Round(time.Millisecond))
			}
		}
		if err == nil {
			return leader
		}
		last = err.Error()
		select {
		case <-ctx.Done():
			t.Fatalf("no stable leader (VIP on %s): %s", h, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func lastChange(h *netlab.HolderLog) time.Time {
	s := h.Samples()
	if len(s) == 0 {
		return time.Now()
	}
	return s[len(s)-1].At
}

// liveHolders splits a holder list, leaving out ignore.
func liveHolders(h string, ignore *netlab.Node) []string {
	var live []string
	for _, n := range strings.Split(h, ",") {
		if n != "-" && (ignore == nil || n != ignore.Name) {
			live = append(live, n)
		}
	}
	return live
}

// sameRaftLeader asks every running lvsd who leads.
func sameRaftLeader(ctx context.Context, sh *netlab.Shoal, leader, ignore *netlab.Node) error {
	for _, r := range sh.Lab.Routers {
		if r == ignore {
			continue
		}
		conn, err := sh.Conn(r)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := shoalv1.NewNodeServiceClient(conn).GetNodeStatus(cctx, &shoalv1.GetNodeStatusRequest{})
		cancel()
		conn.Close()
		if err != nil {
			return err
		}
		st := resp.GetStatus()
		if st.GetLeaderId() != leader.Name {
			return &leaderMismatch{node: r.Name, says: st.GetLeaderId(), vip: leader.Name}
		}
		if (st.GetRole() == "leader") != (r == leader) || st.GetHoldsVips() != (r == leader) {
			return &leaderMismatch{node: r.Name, says: st.GetLeaderId(), vip: leader.Name, role: st.GetRole(), holds: st.GetHoldsVips()}
		}
	}
	return nil
}

type leaderMismatch struct {
	node, says, vip, role string
	holds                 bool
}

func (e *leaderMismatch) Error() string {
	return e.node + " says leader=" + e.says + " role=" + e.role + " holds_vips=" + boolStr(e.holds) + ", VIP on " + e.vip
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// holderGone is when name stopped holding the VIP after t.
func holderGone(h *netlab.HolderLog, name string, t time.Time) time.Time {
	for _, s := range h.Samples() {
		if s.At.After(t) && !strings.Contains(","+s.Holders+",", ","+name+",") {
			return s.At
		}
	}
	return time.Now()
}

// holderSince is when name started holding the VIP alone after t.
func holderSince(h *netlab.HolderLog, name string, t time.Time) time.Time {
	for _, s := range h.Samples() {
		if s.At.After(t) && s.Holders == name {
			return s.At
		}
	}
	return time.Now()
}

func transitions(h *netlab.HolderLog, start time.Time) string {
	var b strings.Builder
	for _, s := range h.Samples() {
		b.WriteString(" +" + s.At.Sub(start).Round(time.Millisecond).String() + "=" + s.Holders)
	}
	return b.String()
}

func within(t *testing.T, ctx context.Context, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(ctx, d)
	t.Cleanup(cancel)
	return c
}

// labDir is where a netns test's routers keep their files: a temporary
// directory, or under $SHOAL_E2E_LOGS, kept after the test for reading the
// lvsd logs.
func labDir(t *testing.T, lab *netlab.Lab) string {
	if d := os.Getenv("SHOAL_E2E_LOGS"); d != "" {
		return filepath.Join(d, lab.Prefix)
	}
	return t.TempDir()
}

// stopWithLogs stops sh's routers when the test ends and, if it failed,
// logs the tail of every router's lvsd.log.
func stopWithLogs(t *testing.T, sh *netlab.Shoal) {
	t.Cleanup(func() {
		sh.Close()
		if t.Failed() {
			for _, r := range sh.Lab.Routers {
				if b, err := os.ReadFile(sh.LogPath(r)); err == nil {
					t.Logf("--- %s lvsd.log (tail)\n%s", r.Name, tail(string(b), 40))
				}
			}
		}
	})
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
