package failover

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoal-lb/shoal/e2e/harness"
	"github.com/shoal-lb/shoal/e2e/netlab"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// settings come from the environment so that the benchmark runs with a
// plain `go test`; see README.md.
type settings struct {
	trials   int
	profiles []string
	loadFor  time.Duration
	jitter   time.Duration
	out      string
	bin      string
	only     map[string]bool // which series to run: shoal, keepalived
	wrap     []string        // command prefix for lvsd (SHOAL_BENCH_WRAP)
	flags    []string        // extra lvsd flags (SHOAL_BENCH_FLAGS)
	writes   int             // API writes per second under load, 0 = as fast as they commit
	insecure []bool          // lvsd over mutual TLS (false), --insecure (true), or both (SHOAL_BENCH_TLS)
}

func envSettings(t *testing.T) settings {
	s := settings{trials: 10, profiles: []string{"lan", "fast"}, loadFor: 30 * time.Second, jitter: 100 * time.Millisecond,
		bin: os.Getenv("SHOAL_BIN"), only: map[string]bool{"shoal": true, "keepalived": true}}
	if v := os.Getenv("SHOAL_BENCH_TRIALS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("SHOAL_BENCH_TRIALS=%q: want a positive integer", v)
		}
		s.trials = n
	}
	if v := os.Getenv("SHOAL_BENCH_PROFILES"); v != "" {
		s.profiles = strings.Split(v, ",")
	}
	if v := os.Getenv("SHOAL_BENCH_LOAD"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SHOAL_BENCH_LOAD=%q: %v", v, err)
		}
		s.loadFor = d
	}
	if v := os.Getenv("SHOAL_BENCH_JITTER"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SHOAL_BENCH_JITTER=%q: %v", v, err)
		}
		s.jitter = d
	}
	if v := os.Getenv("SHOAL_BENCH_ONLY"); v != "" {
		s.only = map[string]bool{}
		for _, k := range strings.Split(v, ",") {
			s.only[k] = true
		}
	}
	switch v := os.Getenv("SHOAL_BENCH_TLS"); v {
	case "", "on":
		s.insecure = []bool{false}
	case "off":
		s.insecure = []bool{true}
	case "both":
		s.insecure = []bool{false, true}
	default:
		t.Fatalf("SHOAL_BENCH_TLS=%q: want on (mutual TLS, lvsd's default), off (--insecure) or both", v)
	}
	s.wrap = strings.Fields(os.Getenv("SHOAL_BENCH_WRAP"))
	s.flags = strings.Fields(os.Getenv("SHOAL_BENCH_FLAGS"))
	if v := os.Getenv("SHOAL_BENCH_WRITES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("SHOAL_BENCH_WRITES=%q: want writes per second, 0 for as fast as they commit", v)
		}
		s.writes = n
	}
	s.out = os.Getenv("SHOAL_BENCH_OUT")
	if s.out == "" {
		dir, err := os.MkdirTemp("", "shoal-failover-")
		if err != nil {
			t.Fatal(err)
		}
		s.out = dir
	}
	return s
}

// row is one line of the result table.
type row struct {
	daemon, scenario string
	sum              Summary
	notes            string
}

// TestFailoverBenchmark measures failover as a client sees it; it prints a
// markdown table. It is skipped unless SHOAL_FAILOVER_BENCH=1.
func TestFailoverBenchmark(t *testing.T) {
	if os.Getenv("SHOAL_FAILOVER_BENCH") == "" {
		t.Skip("failover benchmark: set SHOAL_FAILOVER_BENCH=1 to run it (root, several minutes; see e2e/failover/README.md)")
	}
	netlab.SkipUnlessRoot(t)
	s := envSettings(t)
	t.Logf("results and logs in %s", s.out)
	var rows []row
	report := func() {
		table := renderTable(s, rows)
		fmt.Println(table)
		_ = os.WriteFile(filepath.Join(s.out, "results.md"), []byte(table), 0o644)
	}
	defer report()

	if s.only["shoal"] {
		lvsd, lvsctl := binaries(t, s)
		for _, p := range s.profiles {
			for _, insecure := range s.insecure {
				dir := filepath.Join(s.out, "shoal-"+p)
				if insecure {
					dir += "-insecure"
				}
				rows = append(rows, runSeries(t, s, dir, func(l *netlab.Lab) netlab.Daemon {
					return &netlab.Shoal{Lab: l, Lvsd: lvsd, Lvsctl: lvsctl, Dir: dir, Profile: p, Flags: s.flags, Wrap: s.wrap, Insecure: insecure}
				})...)
			}
		}
	}
	if s.only["keepalived"] {
		if !netlab.KeepalivedInstalled() {
			rows = append(rows, row{daemon: "keepalived", scenario: "not installed", notes: "apt-get install keepalived to compare"})
		} else {
			dir := filepath.Join(s.out, "keepalived")
			rows = append(rows, runSeries(t, s, dir, func(l *netlab.Lab) netlab.Daemon {
				return &netlab.Keepalived{Lab: l, Dir: dir, VIP: netip.PrefixFrom(l.Host(250), 24)}
			})...)
		}
	}
}

func renderTable(s settings, rows []row) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nfailover benchmark, %d trials per crash kind, %d CPUs, kernel %s, load test %v; host load average when each series started in its notes\n\n", s.trials, runtime.NumCPU(), kernel(), s.loadFor)
	b.WriteString("| daemon | scenario | n | min ms | median ms | p90 ms | max ms | notes |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.daemon, r.scenario, r.sum.Cells(), r.notes)
	}
	return b.String()
}

func kernel() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return "?"
	}
	var sb strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

// series is one daemon running in one lab for a whole set of trials.
type series struct {
	t      *testing.T
	s      settings
	lab    *netlab.Lab
	d      netlab.Daemon
	vip    netip.Prefix
	prober *netlab.Prober
	resp   map[string]*netlab.Responder
	holder *netlab.HolderLog
	arp    *netlab.ARPWatch
	stable time.Duration
}

func runSeries(t *testing.T, s settings, dir string, mk func(*netlab.Lab) netlab.Daemon) []row {
	t.Helper()
	lab, err := netlab.New(netlab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	}()
	d := mk(lab)
	if sh, ok := d.(*netlab.Shoal); ok {
		defer sh.Close()
	}
	loadAvg := loadAverage()
	sr := &series{t: t, s: s, lab: lab, d: d, vip: netip.PrefixFrom(lab.Host(250), 24), resp: map[string]*netlab.Responder{}, stable: 2 * time.Second}
	t.Logf("%s: lab %s, logs in %s", d.Label(), lab.Prefix, dir)
	for _, r := range lab.Routers {
		sr.serve(r)
		if err := d.Start(r); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	sr.holder = &netlab.HolderLog{}
	wg.Add(1)
	go func() { defer wg.Done(); sr.holder.Run(ctx, lab, sr.vip.Addr()) }()

	if sh, ok := d.(*netlab.Shoal); ok {
		if err := addService(ctx, sh, sr.vip); err != nil {
			t.Fatalf("%s: add the VIP service: %v", d.Label(), err)
		}
	}
	if sr.arp, err = lab.Client.WatchARP(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); sr.arp.Wait() }() // stops with ctx, like the others
	sr.prober = lab.Client.NewProber(netip.AddrPortFrom(sr.vip.Addr(), 80), netlab.ProberOptions{})
	wg.Add(1)
	go func() { defer wg.Done(); sr.prober.Run(ctx) }()

	defer sr.dump(dir)
	var rows []row
	kinds := []string{"daemon", "node"}
	if _, ok := d.(*netlab.Shoal); ok {
		kinds = append(kinds, "writes")
	}
	for _, kind := range kinds {
		rows = append(rows, sr.crashTrials(ctx, kind))
	}
	if sh, ok := d.(*netlab.Shoal); ok {
		rows = append(rows, sr.transferTrials(ctx, sh))
	}
	if s.loadFor > 0 {
		rows = append(rows, sr.loadTest(ctx))
	}
	// Other work on the host shows in the figures: say how busy it was.
	rows[0].notes += "; host loadavg " + loadAvg
	return rows
}

// loadAverage is the 1-minute load average from /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// dump writes every probe and every holder transition of the series, for
// reading a bad trial afterwards (times are Unix nanoseconds).
func (sr *series) dump(dir string) {
	var b strings.Builder
	b.WriteString("start_ns,end_ns,ok,router,err\n")
	for _, r := range sr.prober.Results() {
		fmt.Fprintf(&b, "%d,%d,%t,%s,%s\n", r.Start.UnixNano(), r.End.UnixNano(), r.OK, r.Router, r.Err)
	}
	_ = os.WriteFile(filepath.Join(dir, "probes.csv"), []byte(b.String()), 0o644)
	b.Reset()
	b.WriteString("at_ns,time,holders\n")
	for _, h := range sr.holder.Samples() {
		fmt.Fprintf(&b, "%d,%s,%s\n", h.At.UnixNano(), h.At.UTC().Format("15:04:05.000"), h.Holders)
	}
	_ = os.WriteFile(filepath.Join(dir, "holders.csv"), []byte(b.String()), 0o644)
}

func (sr *series) serve(r *netlab.Node) {
	resp, err := r.Serve(r.Name, "0.0.0.0:80")
	if err != nil {
		sr.t.Fatal(err)
	}
	sr.resp[r.Name] = resp
}

// addService creates the VIP service through lvsctl, retrying until the
// cluster has elected a leader.
func addService(ctx context.Context, sh *netlab.Shoal, vip netip.Prefix) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := sh.CtlRetry(ctx, "service", "add", "web", "--vip", vip.String(), "--interface", netlab.Iface, "--port", "80")
	if err != nil && strings.Contains(err.Error(), "already exists") {
		return nil // an earlier attempt committed but its answer was lost to a leader change
	}
	return err
}

// waitLeader waits until exactly one router has held the VIP for
// sr.stable, the prober has seen 50 answers from it, and (for shoal) every
// member reports the same leader.
func (sr *series) waitLeader(ctx context.Context) (*netlab.Node, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		h, err := sr.holder.Stable(ctx, sr.stable)
		if err != nil {
			return nil, fmt.Errorf("no stable VIP holder: %w (holders now %s)", err, sr.holder.Current())
		}
		leader := sr.lab.Router(h)
		since := time.Now()
		if _, err := sr.prober.Wait(ctx, 50, func(r netlab.ProbeResult) bool {
			return r.OK && r.Router == leader.Name && r.Start.After(since)
		}); err != nil {
			nb, ok, _ := sr.lab.Client.Neighbour(sr.vip.Addr())
			owner := "none"
			if r := sr.lab.RouterByMAC(nb.MAC); ok && r != nil {
				owner = r.Name + " " + nb.State
			}
			return nil, fmt.Errorf("prober never reached %s: %w (holders now %s, client's ARP entry for the VIP: %s)", leader.Name, err, sr.holder.Current(), owner)
		}
		if sh, ok := sr.d.(*netlab.Shoal); ok {
			if err := clusterSettled(ctx, sh, leader); err != nil {
				continue
			}
		}
		if sr.holder.Current() == leader.Name {
			return leader, nil
		}
	}
}

// clusterSettled checks that every lvsd answers and names leader as leader,
// so that the next crash leaves a working majority.
func clusterSettled(ctx context.Context, sh *netlab.Shoal, leader *netlab.Node) error {
	for _, r := range sh.Lab.Routers {
		conn, err := sh.Conn(r)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := shoalv1.NewNodeServiceClient(conn).GetNodeStatus(cctx, &shoalv1.GetNodeStatusRequest{})
		cancel()
		conn.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", r.Name, err)
		}
		if st := resp.GetStatus(); st.GetLeaderId() != leader.Name {
			return fmt.Errorf("%s names leader %q, role %s", r.Name, st.GetLeaderId(), st.GetRole())
		}
	}
	return nil
}

func (sr *series) jitter() {
	if sr.s.jitter > 0 {
		time.Sleep(rand.N(sr.s.jitter)) // a random phase of the heartbeat, not a synchronisation
	}
}

// crashTrials crashes the VIP holder trials times. kind "daemon" is a
// SIGKILL of the daemon (the VIP stays on a live interface, the responder
// keeps running); "node" also unplugs the router's switch port and stops its
// responder, as when the whole host dies.
func (sr *series) crashTrials(ctx context.Context, kind string) row {
	t := sr.t
	label := map[string]string{"daemon": "crash: daemon SIGKILL", "node": "crash: whole router (SIGKILL + port unplugged)",
		"writes": "crash: daemon SIGKILL amid writes"}[kind]
	var outs, toGARP, fromGARP []time.Duration
	fails, noFailover, oldAnswers := 0, 0, 0
	var wl writeStats
	aborted := ""
	for i := 1; i <= sr.s.trials; i++ {
		leader, err := sr.waitLeader(ctx)
		if err != nil {
			// Counted, not fatal: the other scenarios still say something.
			t.Logf("%s %s trial %d: %v; giving up this crash kind", sr.d.Label(), kind, i, err)
			aborted = fmt.Sprintf("; **stopped before trial %d: %v**", i, err)
			break
		}
		// "writes": a client writes to the leader as fast as it commits,
		// so that the crash often finds a write on one follower and not
		// yet on the other, whose own campaign then cannot win.
		stopWrites := func() {}
		if sh, ok := sr.d.(*netlab.Shoal); ok && kind == "writes" {
			wctx, cancel := context.WithCancel(ctx)
			done := make(chan writeStats)
			go func() { done <- writeLoad(wctx, sh, leader, 0) }()
			stopWrites = func() {
				cancel()
				w := <-done
				wl.ok += w.ok
			}
			time.Sleep(200 * time.Millisecond) // the writes under way
		}
		sr.jitter()
		kill := time.Now()
		if kind == "node" {
			if err := leader.Unplug(); err != nil {
				t.Fatal(err)
			}
		}
		sr.d.Kill(leader)
		if kind == "node" {
			_ = sr.resp[leader.Name].Close()
		}
		// On a starved host even this can take a while; a crash that
		// takes long to inflict inflates the figures, so say so.
		if took := time.Since(kill); took > 20*time.Millisecond {
			t.Logf("%s %s trial %d: the crash itself took %v", sr.d.Label(), kind, i, took.Round(time.Millisecond))
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		first, err := sr.prober.Wait(wctx, 1, func(r netlab.ProbeResult) bool {
			return r.OK && r.Router != leader.Name && !r.Start.Before(kill)
		})
		if err == nil {
			// Let the probes in flight at the switch finish, so that every
			// failure before it is counted.
			_, err = sr.prober.Wait(wctx, 1, func(r netlab.ProbeResult) bool { return r.Start.After(first.End.Add(150 * time.Millisecond)) })
		}
		cancel()
		stopWrites()
		f, ok := netlab.AnalyzeFailover(sr.prober.Results(), kill, leader.Name)
		if err != nil || !ok {
			t.Logf("%s %s trial %d: no answer from another router within 30s (holders %s)", sr.d.Label(), kind, i, sr.holder.Current())
			noFailover++
		} else {
			outs = append(outs, f.Outage)
			fails += f.Fails
			oldAnswers += f.OldAfterKill
			garp := "no GARP seen"
			if g, ok := sr.arp.FirstGARP(sr.vip.Addr(), sr.lab.Router(f.New).MAC, kill); ok {
				toGARP = append(toGARP, g.At.Sub(kill))
				fromGARP = append(fromGARP, kill.Add(f.KillToNew).Sub(g.At))
				garp = fmt.Sprintf("kill->GARP %v", g.At.Sub(kill).Round(time.Millisecond))
			}
			t.Logf("%s %s trial %d (%s): %s -> %s outage %v kill->new %v (%s) fails %d %v", sr.d.Label(), kind, i, kill.UTC().Format("15:04:05.000"), leader.Name, f.New, f.Outage.Round(time.Millisecond), f.KillToNew.Round(time.Millisecond), garp, f.Fails, f.FailKinds)
		}
		// Bring the router back for the next trial.
		if kind == "node" {
			if err := leader.Plug(); err != nil {
				t.Fatal(err)
			}
			sr.serve(leader)
		}
		if err := sr.d.Start(leader); err != nil {
			t.Fatal(err)
		}
	}
	notes := fmt.Sprintf("failed probes %d; median kill→GARP of the new holder %s ms, GARP→first answer %s ms (%d GARPs seen)",
		fails, ms(Summarize(toGARP).Median), ms(Summarize(fromGARP).Median), len(toGARP))
	if noFailover > 0 {
		notes += fmt.Sprintf("; %d trials without failover", noFailover)
	}
	notes += aborted
	if kind == "writes" {
		notes += fmt.Sprintf("; writes committed before the crashes: %d (0.2–0.3 s of writing per trial)", wl.ok)
	}
	if kind != "node" {
		notes += fmt.Sprintf("; answers from the crashed router %d", oldAnswers)
	}
	return row{daemon: sr.d.Label(), scenario: label, sum: Summarize(outs), notes: notes}
}

// transferTrials hands leadership over with `lvsctl cluster transfer` and
// measures the gap between the last answer of the old holder and the first
// answer of the new one.
func (sr *series) transferTrials(ctx context.Context, sh *netlab.Shoal) row {
	t := sr.t
	var gaps, cmds []time.Duration
	fails, errs := 0, 0
	for i := 1; i <= sr.s.trials; i++ {
		leader, err := sr.waitLeader(ctx)
		if err != nil {
			t.Logf("%s transfer trial %d: %v", sh.Label(), i, err)
			errs++
			break
		}
		sr.jitter()
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		out, err := sh.Ctl(cctx, leader, "cluster", "transfer")
		cancel()
		took := time.Since(start)
		if err != nil {
			t.Logf("%s transfer trial %d: %v", sh.Label(), i, err)
			errs++
			continue
		}
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		first, err := sr.prober.Wait(wctx, 1, func(r netlab.ProbeResult) bool {
			return r.OK && r.Router != leader.Name && !r.Start.Before(start)
		})
		if err == nil {
			_, err = sr.prober.Wait(wctx, 1, func(r netlab.ProbeResult) bool { return r.Start.After(first.End.Add(150 * time.Millisecond)) })
		}
		wcancel()
		if err != nil {
			t.Logf("%s transfer trial %d: no answer from another router (lvsctl said %q)", sh.Label(), i, strings.TrimSpace(out))
			errs++
			continue
		}
		rs := sr.prober.Results()
		var lastOld time.Time
		n := 0
		for _, r := range rs {
			if r.OK && r.Router == leader.Name && r.End.Before(first.End) && r.End.After(lastOld) {
				lastOld = r.End
			}
			if !r.OK && !r.Start.Before(start) && r.Start.Before(first.Start) {
				n++
			}
		}
		gaps = append(gaps, first.End.Sub(lastOld))
		cmds = append(cmds, took)
		fails += n
		t.Logf("%s transfer trial %d: %s -> %s gap %v (lvsctl %v), failed probes %d", sh.Label(), i, leader.Name, first.Router, first.End.Sub(lastOld).Round(time.Millisecond), took.Round(time.Millisecond), n)
	}
	notes := fmt.Sprintf("failed probes %d; lvsctl run time median %s ms", fails, ms(Summarize(cmds).Median))
	if errs > 0 {
		notes += fmt.Sprintf("; %d failed transfers", errs)
	}
	return row{daemon: sh.Label(), scenario: "planned `lvsctl cluster transfer` gap", sum: Summarize(gaps), notes: notes}
}

// loadTest runs stress-ng on every CPU (when installed) and, for shoal, a
// stream of configuration writes, and counts how often the VIP moves on its
// own.
func (sr *series) loadTest(ctx context.Context) row {
	t := sr.t
	leader, err := sr.waitLeader(ctx)
	if err != nil {
		t.Logf("%s load: %v", sr.d.Label(), err)
		return row{daemon: sr.d.Label(), scenario: "under load", notes: err.Error()}
	}
	lctx, cancel := context.WithTimeout(ctx, sr.s.loadFor)
	defer cancel()
	var what []string
	var wg sync.WaitGroup
	if _, err := exec.LookPath("stress-ng"); err == nil {
		cmd := exec.CommandContext(lctx, "stress-ng", "--cpu", strconv.Itoa(runtime.NumCPU()), "--timeout", strconv.Itoa(int(sr.s.loadFor.Seconds())+1)+"s")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		if err := cmd.Start(); err != nil {
			t.Errorf("stress-ng: %v", err)
		} else {
			what = append(what, fmt.Sprintf("stress-ng --cpu %d", runtime.NumCPU()))
			wg.Add(1)
			go func() { defer wg.Done(); _ = cmd.Wait() }()
		}
	} else {
		what = append(what, "no stress-ng")
	}
	probe, err := startRTProbe(lctx, sr.s.loadFor)
	if err != nil {
		t.Errorf("real-time probe: %v", err)
	}
	var wl writeStats
	sh, isShoal := sr.d.(*netlab.Shoal)
	var fenceBefore map[string]fenceStats
	if isShoal {
		fenceBefore = sr.fenceStats(ctx, sh)
		wg.Add(1)
		go func() {
			defer wg.Done()
			wl = writeLoad(lctx, sh, leader, sr.s.writes)
		}()
	}
	start := time.Now()
	<-lctx.Done()
	wg.Wait()
	end := time.Now()
	c := sr.holder.Churn(start, end)
	gap := netlab.MaxGap(sr.prober.Results(), start, end)
	if wl.ok+wl.failed > 0 {
		errs := fmt.Sprintf("%d errors", wl.failed)
		if wl.failed > 0 {
			errs += fmt.Sprintf(", the first at %s: %v", wl.firstAt.UTC().Format("15:04:05.000"), wl.first)
		}
		what = append(what, fmt.Sprintf("%.0f writes/s (%s)", float64(wl.ok)/end.Sub(start).Seconds(), errs))
	}
	notes := fmt.Sprintf("**%d VIP moves, %d drops** in %v; longest client gap %s ms; longest time without holder %s ms; %s",
		c.Moves, c.Drops, sr.s.loadFor, ms(gap), ms(c.NoHolder), strings.Join(what, ", "))
	if c.Dual > 0 {
		notes += fmt.Sprintf("; **%d samples with two VIP holders**", c.Dual)
	}
	if isShoal {
		notes += "; " + sr.fenceNote(ctx, sh, fenceBefore)
	}
	if probe != nil {
		samples, late, worst, err := probe.wait()
		if err != nil {
			t.Errorf("real-time probe: %v", err)
		}
		notes += "; " + rtProbeNote(samples, late, worst)
		// With their times, to be read beside the daemons' logs.
		logged := 0
		for _, l := range late {
			if l.by > 10*time.Millisecond && logged < 100 {
				logged++
				t.Logf("%s load: real-time probe on CPU %d woke %s ms late at %s", sr.d.Label(), l.cpu, ms(l.by), l.at.Format("15:04:05.000"))
			}
		}
	}
	return row{daemon: sr.d.Label(), scenario: "under load: leadership changes", notes: notes}
}

// fenceStats scrapes every router's fence metrics; a router that does not
// answer is left out.
func (sr *series) fenceStats(ctx context.Context, sh *netlab.Shoal) map[string]fenceStats {
	out := map[string]fenceStats{}
	for _, r := range sr.lab.Routers {
		mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		text, err := sh.Metrics(mctx, r)
		cancel()
		if err != nil {
			sr.t.Logf("fence metrics: %v", err)
			continue
		}
		out[r.Name] = parseFence(text)
	}
	return out
}

// fenceNote says how close the leaders came to losing the VIPs during the
// load: gaps between quorum-accepted sends on the leader (the fence drops
// the VIPs after one of more than the lease) and the fence's lapses; and
// raft's log writes on every router, whose stalls hold up commits.
func (sr *series) fenceNote(ctx context.Context, sh *netlab.Shoal, before map[string]fenceStats) string {
	var lapses, over15, over20, slowWrites float64
	gaps, writes := buckets{}, buckets{} // of the router with the longest one
	for name, after := range sr.fenceStats(ctx, sh) {
		b, ok := before[name]
		if !ok {
			return "fence metrics: " + name + " not scraped before the load"
		}
		d := after.since(b)
		lapses += d.lapses
		over15 += d.gaps.over(0.015)
		over20 += d.gaps.over(0.02)
		slowWrites += d.logWrites.over(0.1)
		if d.gaps.longest() > gaps.longest() {
			gaps = d.gaps
		}
		if d.logWrites.longest() > writes.longest() {
			writes = d.logWrites
		}
	}
	return fmt.Sprintf("leader's gaps between quorum-accepted sends: %.0f over 15 ms, %.0f over 20 ms, longest %s; %.0f fence lapses; "+
		"raft log writes (all routers) over 100 ms: %.0f, longest %s",
		over15, over20, gaps.longestText(), lapses, slowWrites, writes.longestText())
}

// writeLoad adds and removes a real server, perSecond times a second or
// (0) as fast as the cluster commits, from the client namespace through the
// API of router to (the leader when the load starts, so that it serves
// every write itself; should leadership move, to forwards them).
func writeLoad(ctx context.Context, sh *netlab.Shoal, to *netlab.Node, perSecond int) (st writeStats) {
	conn, err := sh.Conn(to)
	if err != nil {
		return writeStats{failed: 1, first: err, firstAt: time.Now()}
	}
	defer conn.Close()
	lb := shoalv1.NewLoadBalancerServiceClient(conn)
	rs := sh.Lab.Host(201).String()
	var tick <-chan time.Time
	if perSecond > 0 {
		t := time.NewTicker(time.Second / time.Duration(perSecond))
		defer t.Stop()
		tick = t.C
	}
	end, bounded := ctx.Deadline()
	present := false // whether rs is in the service, as far as the answers tell
	for ctx.Err() == nil {
		if tick != nil {
			select {
			case <-tick:
			case <-ctx.Done():
				return st
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if !present {
			_, err = lb.AddRealServer(cctx, &shoalv1.AddRealServerRequest{Service: "web", RealServer: &shoalv1.RealServer{Address: rs, Port: 80}})
		} else {
			_, err = lb.RemoveRealServer(cctx, &shoalv1.RemoveRealServerRequest{Service: "web", Address: rs, Port: 80})
		}
		cancel()
		switch {
		case err == nil:
			st.ok++
			present = !present
		case status.Code(err) == codes.AlreadyExists, status.Code(err) == codes.NotFound:
			// A right answer: an earlier load (a crash trial's) left the
			// server there, or a write that timed out committed after all.
			present = status.Code(err) == codes.AlreadyExists
		case ctx.Err() != nil, bounded && !time.Now().Before(end):
			// Cut off by the end of the load: the server's deadline timer
			// can fire, and answer, before the client's context is done.
		default:
			if st.failed == 0 {
				st.first, st.firstAt = err, time.Now()
			}
			st.failed++
			// A write refused for a reason other than a lost leader must
			// not turn into a busy loop.
			if !errors.Is(err, context.DeadlineExceeded) {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	return st
}

// writeStats counts a write load's answers and keeps its first error.
type writeStats struct {
	ok, failed int
	first      error
	firstAt    time.Time
}

// binaries returns the lvsd and lvsctl paths: from $SHOAL_BIN, or built by
// the e2e harness.
func binaries(t *testing.T, s settings) (string, string) {
	t.Helper()
	if s.bin == "" {
		return harness.Build(t, "cmd/lvsd"), harness.Build(t, "cmd/lvsctl")
	}
	lvsd, lvsctl := filepath.Join(s.bin, "lvsd"), filepath.Join(s.bin, "lvsctl")
	for _, p := range []string{lvsd, lvsctl} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("SHOAL_BIN: %v", err)
		}
	}
	return lvsd, lvsctl
}

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
