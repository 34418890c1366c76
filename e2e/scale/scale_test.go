// Package scale measures shoal at the sizes of issue 22: three real lvsd
// on loopback (--dataplane none), driven as a user would (lvsctl config
// apply -f) and through the API, with services of 10 real servers each.
// Every figure is "committed on all 3 nodes": a write counts as done when
// the Watch stream of every node has reported its serial.
//
//	go test ./e2e/scale -run TestScale -v -count=1 -timeout 30m
//
// SHOAL_SCALE_SERVICES picks the sizes (default 1000,3000,10000).
package scale

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/shoal-lb/shoal/e2e/harness"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// realsPerService is the shape: 10 real servers a service.
const realsPerService = 10

// maxMsg is what the test's own client accepts: enough for any answer at
// these sizes, so that a limit hit is the server's or lvsctl's, not ours.
const maxMsg = 256 << 20

// oneSize is the table size of the tests that run at one size: the first
// of SHOAL_SCALE_SERVICES, 10,000 when it is not set.
func oneSize(t *testing.T) int {
	if os.Getenv("SHOAL_SCALE_SERVICES") == "" {
		return 10000
	}
	return sizes(t)[0]
}

func sizes(t *testing.T) []int {
	v := os.Getenv("SHOAL_SCALE_SERVICES")
	if v == "" {
		v = "1000,3000,10000"
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			t.Fatalf("SHOAL_SCALE_SERVICES=%q: want positive integers separated by commas", v)
		}
		out = append(out, n)
	}
	return out
}

// table returns n services of realsPerService real servers: VIPs in
// 10.0.0.0/8 (never a broadcast address), reals in 172.16.0.0/12.
func table(n int) *shoalv1.Config {
	c := &shoalv1.Config{}
	for i := range n {
		s := &shoalv1.VirtualService{
			Name: fmt.Sprintf("svc-%05d", i),
			Vip:  &shoalv1.Address{Address: fmt.Sprintf("10.%d.%d.10", i/250, i%250), PrefixLength: 24},
			Port: 80, Protocol: "tcp", Scheduler: "wlc",
		}
		for j := range realsPerService {
			k := i*realsPerService + j
			s.RealServers = append(s.RealServers, &shoalv1.RealServer{
				Address: fmt.Sprintf("172.%d.%d.%d", 16+k/62500, k/250%250, k%250+1), Weight: proto.Uint32(100), Forward: "dr",
			})
		}
		c.Services = append(c.Services, s)
	}
	return c
}

func writeConfig(t *testing.T, c *shoalv1.Config) string {
	t.Helper()
	b, err := protojson.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type cluster struct {
	nodes  []*harness.Node
	conns  []*grpc.ClientConn
	leader int // index in nodes of the leader when the cluster came up
}

func start(t *testing.T, lvsd string) *cluster {
	t.Helper()
	return startWith(t, lvsd, harness.ClusterOptions{})
}

// startWith is start with o's Metrics and more arguments for every lvsd.
func startWith(t *testing.T, lvsd string, o harness.ClusterOptions) *cluster {
	t.Helper()
	o.N, o.Args = 3, append([]string{"--dataplane", "none", "--insecure", "--log-level", "warn"}, o.Args...)
	nodes := harness.StartCluster(t, lvsd, o)
	c := &cluster{nodes: nodes}
	for _, n := range nodes {
		cc, err := grpc.NewClient(n.APIAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		c.conns = append(c.conns, cc)
	}
	harness.Eventually(t, 20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := shoalv1.NewClusterServiceClient(c.conns[0]).GetClusterStatus(ctx, &shoalv1.GetClusterStatusRequest{})
		if err != nil || st.GetLeaderId() == "" || len(st.GetMembers()) != 3 {
			return false
		}
		for _, m := range st.GetMembers() {
			if m.GetApiAddress() == "" {
				return false
			}
		}
		c.leader = slices.IndexFunc(nodes, func(n *harness.Node) bool { return n.ID == st.GetLeaderId() })
		return c.leader >= 0
	}, "a leader and 3 registered members")
	return c
}

// watchAll follows every node's Watch stream and reports, for each
// serial, when the last of the 3 nodes had applied it. A stream that falls
// behind (Aborted, at high write rates) is watched again from the node's
// current state, which counts as applying everything up to its serial.
type watchAll struct {
	mu      sync.Mutex
	reports [][]report // per node, serials growing
	changed chan struct{}
	err     error // a stream that failed otherwise
	// behind counts the streams a node closed because this reader fell
	// behind (Aborted), each then watched again from the whole config.
	behind atomic.Int64
}

type report struct {
	serial uint64
	at     time.Time
}

func (c *cluster) watch(t *testing.T) *watchAll {
	t.Helper()
	w := &watchAll{reports: make([][]report, len(c.conns)), changed: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	notify := func() {
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
	for i, cc := range c.conns {
		go func() {
			initial := false
			for ctx.Err() == nil {
				stream, err := shoalv1.NewConfigServiceClient(cc).Watch(ctx, &shoalv1.WatchRequest{Initial: initial})
				for err == nil {
					var m *shoalv1.WatchResponse
					if m, err = stream.Recv(); err == nil {
						w.mu.Lock()
						w.reports[i] = append(w.reports[i], report{m.GetSerial(), time.Now()})
						w.mu.Unlock()
						notify()
					}
				}
				if ctx.Err() != nil {
					return
				}
				if status.Code(err) == codes.Aborted {
					w.behind.Add(1)
				}
				if status.Code(err) != codes.Aborted {
					w.mu.Lock()
					w.err = err
					w.mu.Unlock()
					notify()
					return
				}
				initial = true
			}
		}()
	}
	return w
}

// at is when every node had reported serial or a later one.
func (w *watchAll) at(serial uint64) (time.Time, bool) {
	var last time.Time
	for node := range w.reports {
		at, ok := w.nodeAt(node, serial)
		if !ok {
			return time.Time{}, false
		}
		if at.After(last) {
			last = at
		}
	}
	return last, true
}

// nodeAt is when node reported serial or a later one.
func (w *watchAll) nodeAt(node int, serial uint64) (time.Time, bool) {
	rs := w.reports[node]
	i, _ := slices.BinarySearchFunc(rs, serial, func(r report, s uint64) int { return cmp.Compare(r.serial, s) })
	if i == len(rs) {
		return time.Time{}, false
	}
	return rs[i].at, true
}

// wait returns when every node had reported serial, or a later one (ok),
// when a stream failed otherwise (err), or after timeout (neither).
func (w *watchAll) wait(serial uint64, timeout time.Duration) (at time.Time, ok bool, err error) {
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		at, ok = w.at(serial)
		err = w.err
		w.mu.Unlock()
		if ok || err != nil {
			return at, ok, err
		}
		select {
		case <-w.changed:
		case <-deadline:
			return at, false, nil
		}
	}
}

// on returns when all nodes had applied serial (or fails after timeout).
func (w *watchAll) on(t *testing.T, serial uint64, timeout time.Duration) time.Time {
	t.Helper()
	at, ok, err := w.wait(serial, timeout)
	if err != nil {
		t.Fatalf("a watch stream failed before serial %d: %v", serial, err)
	}
	if !ok {
		t.Fatalf("serial %d not applied on all nodes within %s", serial, timeout)
	}
	return at
}

func (c *cluster) serial(t *testing.T, i int) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := shoalv1.NewConfigServiceClient(c.conns[i]).GetConfig(ctx, &shoalv1.GetConfigRequest{Consistency: shoalv1.ReadConsistency_READ_CONSISTENCY_STALE})
	if err != nil {
		t.Fatalf("GetConfig from %s: %v", c.nodes[i].ID, err)
	}
	return r.GetConfig().GetSerial()
}

// cpuTime is the CPU time (user and system) a process has used, from
// /proc (in clock ticks of 10 ms, USER_HZ on Linux).
func cpuTime(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name, field 2, may hold spaces: count from its end.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		t.Fatalf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// rssMB is a process's resident set in MiB, from /proc.
func rssMB(t *testing.T, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// TestScale prints, for each size, the table row: config apply
// -f through lvsctl (and what it answered), one real-server weight change
// committed on all 3 nodes (p50/p90 over 20), the same through lvsctl,
// each lvsd's RSS, and what a config with one error per service answers.
func TestScale(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes and writes large tables; skipped with -short")
	}
	lvsd := harness.Build(t, "cmd/lvsd")
	ctl := harness.Build(t, "cmd/lvsctl")
	var rows []string
	for _, n := range sizes(t) {
		t.Run(fmt.Sprintf("services=%d", n), func(t *testing.T) {
			rows = append(rows, scaleRow(t, lvsd, ctl, n))
		})
	}
	t.Logf("\n| services (real servers) | config apply -f | lvsctl answered | weight change on 3 nodes p50 / p90 | lvsctl server update | lvsd RSS (3 nodes) | a config with 1 error per service answered |\n|---|---|---|---|---|---|---|\n%s",
		strings.Join(rows, "\n"))
}

func scaleRow(t *testing.T, lvsd, ctl string, n int) string {
	c := start(t, lvsd)
	w := c.watch(t)
	cfg := table(n)
	file := writeConfig(t, cfg)
	leaderAPI := c.nodes[c.leader].APIAddr

	run := func(timeout time.Duration, args ...string) (harness.Result, time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		t0 := time.Now()
		r, err := harness.Run(ctx, ctl, append([]string{"-s", leaderAPI, "--request-timeout", "60s"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return r, time.Since(t0)
	}

	// The whole table from empty, as a user would apply it.
	before := c.serial(t, 0)
	r, applyTook := run(2*time.Minute, "-o", "json", "config", "apply", "-f", file)
	answered := "ok"
	if r.ExitCode != 0 {
		answered = "FAILED: " + firstLine(r.Stderr)
	}
	w.on(t, before+1, 2*time.Minute)
	for i := range c.nodes {
		if got := c.serial(t, i); got < before+1 {
			t.Errorf("%s at serial %d after the apply, want %d", c.nodes[i].ID, got, before+1)
		}
	}
	if r.ExitCode != 0 {
		t.Errorf("config apply of %d services committed but lvsctl said: %s", n, firstLine(r.Stderr))
	}

	// One weight change at a time, through the API: call → applied on
	// all 3 nodes.
	lb := shoalv1.NewLoadBalancerServiceClient(c.conns[c.leader])
	var took []time.Duration
	for k := range 20 {
		svc := cfg.Services[(k*7919)%n]
		rs := svc.RealServers[k%realsPerService]
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		t0 := time.Now()
		resp, err := lb.UpdateRealServer(ctx, &shoalv1.UpdateRealServerRequest{
			Service:    svc.Name,
			RealServer: &shoalv1.RealServer{Address: rs.Address, Weight: proto.Uint32(uint32(200 + k))},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"weight"}},
		})
		cancel()
		if err != nil {
			t.Fatalf("UpdateRealServer: %v", err)
		}
		took = append(took, w.on(t, resp.GetSerial(), time.Minute).Sub(t0))
	}
	// The same through lvsctl, process start included.
	svc := cfg.Services[n/2]
	r, ctlTook := run(time.Minute, "server", "update", svc.Name, svc.RealServers[0].Address, "--weight", "7")
	if r.ExitCode != 0 {
		t.Errorf("lvsctl server update: %s", firstLine(r.Stderr))
	}

	var rss []string
	for _, node := range c.nodes {
		rss = append(rss, fmt.Sprintf("%.0f", rssMB(t, node.Proc.Pid())))
	}

	// A config with one error per service: the answer must be readable.
	bad := table(n)
	for _, s := range bad.Services {
		s.Port = 0
	}
	r, _ = run(2*time.Minute, "config", "apply", "-f", writeConfig(t, bad))
	errAnswer := fmt.Sprintf("exit %d, %d bytes: %s", r.ExitCode, len(r.Stderr), clip(firstLine(r.Stderr), 120))
	if r.ExitCode == 0 {
		t.Errorf("a config with %d errors was accepted", n)
	}
	t.Logf("invalid config answered: %s", errAnswer)

	row := fmt.Sprintf("| %d (%d) | %s | %s | %s / %s | %s | %s MB | %s |", n, n*realsPerService, ms(applyTook), clip(answered, 80),
		ms(pct(took, 0.5)), ms(pct(took, 0.9)), ms(ctlTook), strings.Join(rss, ", "), errAnswer)
	t.Log(row)
	return row
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// TestThroughput is part 5 of issue 22: SHOAL_SCALE_WRITERS clients
// (default 64) change one real server's weight at a time, each its own,
// through the leader's API for SHOAL_SCALE_FOR (default 10s), on a table
// of the first SHOAL_SCALE_SERVICES size (default 10,000). It prints
// writes/s, call latency, and how long after a call returned the last of
// the 3 nodes applied the write (p50, p99).
func TestThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	n := oneSize(t)
	writers := envInt(t, "SHOAL_SCALE_WRITERS", 64)
	dur := 10 * time.Second
	if v := os.Getenv("SHOAL_SCALE_FOR"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SHOAL_SCALE_FOR=%q: %v", v, err)
		}
		dur = d
	}
	lvsd := harness.Build(t, "cmd/lvsd")
	profiles := os.Getenv("SHOAL_SCALE_PROFILES")
	c := startWith(t, lvsd, harness.ClusterOptions{Metrics: profiles != ""})
	cfg := table(n)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The same table again is no change, so an apply that lost its
	// answer to a leadership change (a busy host starves heartbeats) is
	// sent again, to the next node.
	for to := c.leader; ; to = (to + 1) % len(c.conns) {
		_, err := shoalv1.NewConfigServiceClient(c.conns[to]).ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{Config: cfg})
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			t.Fatal(err)
		}
		t.Logf("apply answered %v; again", err)
	}
	w := c.watch(t)
	// A write made before a node's Watch stream subscribed shows on it only
	// with a later one, which would count the stream's start as that
	// node's lag (the first half-second of writes once did, for the p99):
	// the writers start once every stream has reported a write.
	lb := shoalv1.NewLoadBalancerServiceClient(c.conns[c.leader])
	for i := 0; ; i++ {
		svc := cfg.Services[0]
		resp, err := lb.UpdateRealServer(ctx, &shoalv1.UpdateRealServerRequest{
			Service:    svc.Name,
			RealServer: &shoalv1.RealServer{Address: svc.RealServers[0].Address, Weight: proto.Uint32(uint32(1 + i%1000))},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"weight"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		_, ok, err := w.wait(resp.GetSerial(), 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
	}
	if profiles != "" {
		// CPU profiles of every node over the middle of the run.
		for i, node := range c.nodes {
			go func() {
				time.Sleep(dur / 4)
				secs := max(1, int(dur/2/time.Second))
				name := node.ID
				if i == c.leader {
					name += "-leader"
				}
				r, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", node.MetricsAddr, secs))
				if err != nil {
					t.Logf("profile of %s: %v", node.ID, err)
					return
				}
				defer r.Body.Close()
				b, _ := io.ReadAll(r.Body)
				_ = os.WriteFile(filepath.Join(profiles, name+".cpu"), b, 0o644)
			}()
		}
	}
	type done struct {
		serial   uint64
		returned time.Time
		took     time.Duration
	}
	results := make([][]done, writers)
	var retries atomic.Int64
	// What the writes cost the three nodes, a steadier figure than
	// writes/s on a shared host.
	cpu := func() (d time.Duration) {
		for _, node := range c.nodes {
			d += cpuTime(t, node.Proc.Pid())
		}
		return d
	}
	cpu0, self0 := cpu(), cpuTime(t, os.Getpid())
	sys0 := make([][2]int64, len(c.nodes))
	for i, node := range c.nodes {
		sys0[i] = syscalls(t, node.Proc.Pid())
	}
	var wg sync.WaitGroup
	stop := time.Now().Add(dur)
	errs := make(chan error, writers)
	for k := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One connection to every node, as a client given all three
			// (lvsctl -s a,b,c) has; writes go to the leader and move
			// with it.
			var lbs []shoalv1.LoadBalancerServiceClient
			for _, node := range c.nodes {
				cc, err := grpc.NewClient(node.APIAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					errs <- err
					return
				}
				defer cc.Close()
				lbs = append(lbs, shoalv1.NewLoadBalancerServiceClient(cc))
			}
			to := c.leader
			svc := cfg.Services[(k*7919)%n]
			for i := 0; time.Now().Before(stop); i++ {
				t0 := time.Now()
				resp, err := lbs[to].UpdateRealServer(context.Background(), &shoalv1.UpdateRealServerRequest{
					Service:    svc.Name,
					RealServer: &shoalv1.RealServer{Address: svc.RealServers[0].Address, Weight: proto.Uint32(uint32(1 + i%1000))},
					UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"weight"}},
				})
				if status.Code(err) == codes.Unavailable {
					// Leadership moved (the write is idempotent): count
					// it and try the next node.
					retries.Add(1)
					to = (to + 1) % len(lbs)
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				now := time.Now()
				results[k] = append(results[k], done{resp.GetSerial(), now, now.Sub(t0)})
			}
		}()
	}
	t0 := time.Now()
	wg.Wait()
	elapsed := time.Since(t0)
	nodesCPU := cpu() - cpu0
	// The writers share the host with the nodes: what they cost says how
	// much of it was left for lvsd.
	clientsCPU := cpuTime(t, os.Getpid()) - self0
	sys1 := make([][2]int64, len(c.nodes))
	for i, node := range c.nodes {
		sys1[i] = syscalls(t, node.Proc.Pid())
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var calls, applied []time.Duration
	perNode := make([][]time.Duration, len(c.nodes))
	for _, rs := range results {
		for _, r := range rs {
			calls = append(calls, r.took)
			at := w.on(t, r.serial, time.Minute)
			applied = append(applied, max(0, at.Sub(r.returned)))
			w.mu.Lock()
			for i := range w.reports {
				at, _ := w.nodeAt(i, r.serial) // every node has: on said so
				perNode[i] = append(perNode[i], max(0, at.Sub(r.returned)))
			}
			w.mu.Unlock()
		}
	}
	var tails []string
	for i, d := range perNode {
		role := "follower"
		if i == c.leader {
			role = "leader"
		}
		tails = append(tails, fmt.Sprintf("%s %s / %s", role, ms(pct(d, 0.5)), ms(pct(d, 0.99))))
	}
	t.Logf("call return → reported applied by each node's Watch, p50 / p99: %s; Watch streams closed for falling behind (watched again from the whole config): %d",
		strings.Join(tails, ", "), w.behind.Load())
	perWrite := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(max(1, len(calls))) }
	t.Logf("\n| services (real servers) | writers | writes/s | call p50 / p99 | call return → applied on all 3 nodes p50 / p99 | lvsd CPU per write, 3 nodes | the writers' CPU per write | answered Unavailable (retried) |\n|---|---|---|---|---|---|---|---|\n| %d (%d) | %d | %.0f | %s / %s | %s / %s | %.0f µs | %.0f µs | %d |",
		n, n*realsPerService, writers, float64(len(calls))/elapsed.Seconds(), ms(pct(calls, 0.5)), ms(pct(calls, 0.99)),
		ms(pct(applied, 0.5)), ms(pct(applied, 0.99)), perWrite(nodesCPU), perWrite(clientsCPU), retries.Load())
	// Reads and writes a write costs each node: the leader's are mostly
	// its API's and raft's sockets, a follower's raft's and its disk's.
	var sysLine []string
	for i, node := range c.nodes {
		name := node.ID
		if i == c.leader {
			name += " (leader)"
		}
		per := func(k int) float64 { return float64(sys1[i][k]-sys0[i][k]) / float64(max(1, len(calls))) }
		sysLine = append(sysLine, fmt.Sprintf("%s %.2f / %.2f", name, per(0), per(1)))
	}
	t.Logf("read / write system calls per write: %s", strings.Join(sysLine, ", "))
}

// syscalls is a process's read and write system calls so far, from /proc.
func syscalls(t *testing.T, pid int) (rw [2]int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "syscr: "); ok {
			rw[0], _ = strconv.ParseInt(v, 10, 64)
		}
		if v, ok := strings.CutPrefix(l, "syscw: "); ok {
			rw[1], _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return rw
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}
