package nemesis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/shoal-lb/shoal/e2e/harness"
	"github.com/shoal-lb/shoal/e2e/netlab"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Flags for long runs by hand, e.g.
//
//	go test ./e2e/nemesis -run TestNemesis -v -timeout 0 -duration 5m -nodes 5
var (
	flagDuration = flag.Duration("duration", 20*time.Second, "how long each cluster size runs its workload and faults")
	flagNodes    = flag.String("nodes", "3,5", "cluster sizes to run, comma-separated")
	flagClients  = flag.Int("clients", 4, "concurrent API clients")
	flagSeed     = flag.Uint64("seed", 0, "random seed for the workload and the faults (0: from the clock)")
	flagProfile  = flag.String("profile", "lan", "lvsd --profile")
)

func TestMain(m *testing.M) {
	code := harness.Main(m)
	if lvsdPath != "" {
		_ = os.RemoveAll(filepath.Dir(lvsdPath))
	}
	os.Exit(code)
}

// TestNemesis runs real lvsd routers in the namespace lab under a random
// workload and random faults, then checks the history (see the package
// comment). Each cluster size is a subtest.
func TestNemesis(t *testing.T) {
	netlab.SkipUnlessRoot(t)
	for _, f := range strings.Split(*flagNodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			t.Fatalf("-nodes %q: want sizes like 3,5", *flagNodes)
		}
		t.Run(fmt.Sprintf("%dnodes", n), func(t *testing.T) { runNemesis(t, n) })
	}
}

var (
	lvsdOnce sync.Once
	lvsdPath string
	lvsdErr  error
)

// nemesisLvsd is lvsd built with -tags nemesis (the disk failpoint), or
// $SHOAL_NEMESIS_LVSD when set (and $SHOAL_NEMESIS_LVSCTL replaces the
// lvsctl the test builds), say to test a build of another tree.
func nemesisLvsd(t *testing.T) string {
	if p := os.Getenv("SHOAL_NEMESIS_LVSD"); p != "" {
		return p
	}
	lvsdOnce.Do(func() {
		root, err := harness.ModuleRoot()
		if err != nil {
			lvsdErr = err
			return
		}
		dir, err := os.MkdirTemp("", "shoal-nemesis-bin-")
		if err != nil {
			lvsdErr = err
			return
		}
		lvsdPath = filepath.Join(dir, "lvsd")
		cmd := exec.Command("go", "build", "-tags", "nemesis", "-o", lvsdPath, "./cmd/lvsd")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			lvsdErr = fmt.Errorf("go build -tags nemesis ./cmd/lvsd: %w\n%s", err, out)
		}
	})
	if lvsdErr != nil {
		t.Fatal(lvsdErr)
	}
	return lvsdPath
}

// run is one cluster's run: what it needs and what it found.
type run struct {
	t     *testing.T
	nodes int
	lab   *netlab.Lab
	sh    *netlab.Shoal
	h     *History
	dir   string
	vip   netip.Addr
	rs    string
	out   string // where dump keeps the run
}

func (r *run) logf(format string, args ...any) { r.t.Logf(format, args...) }

func runNemesis(t *testing.T, nodes int) {
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	lvsd := nemesisLvsd(t)
	lvsctl := os.Getenv("SHOAL_NEMESIS_LVSCTL")
	if lvsctl == "" {
		lvsctl = harness.Build(t, "cmd/lvsctl")
	}
	if !netlab.NftInstalled() {
		t.Logf("nft is not installed (apt-get install -y nftables): partitions other than an unplugged switch port are skipped")
	}
	lab, err := netlab.New(netlab.Options{Routers: nodes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	dir := t.TempDir()
	if d := os.Getenv("SHOAL_E2E_LOGS"); d != "" {
		dir = filepath.Join(d, lab.Prefix)
	}
	fpDir := filepath.Join(dir, "failpoints")
	t.Setenv("SHOAL_FAILPOINT_DIR", fpDir)
	r := &run{t: t, nodes: nodes, lab: lab, dir: dir, vip: lab.Host(250), rs: lab.Host(200).String(), h: NewHistory()}
	r.sh = &netlab.Shoal{Lab: lab, Lvsd: lvsd, Lvsctl: lvsctl, Dir: dir, Profile: *flagProfile}
	t.Cleanup(r.sh.Close)
	t.Logf("%d routers, seed %d, profile %s, workload and faults for %v; lvsd logs in %s", nodes, seed, *flagProfile, *flagDuration, dir)
	for _, rt := range lab.Routers {
		if err := r.sh.Start(rt); err != nil {
			t.Fatal(err)
		}
		r.h.AddEvent(rt.Name, "start")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *flagDuration+5*time.Minute)
	defer cancel()

	dedupe := r.setup(ctx)
	r.h.Dedupe = dedupe
	r.h.Base = r.baseState(ctx)
	t.Logf("base state %v; exactly-once writes (request ids) %s", r.h.Base, onOff(dedupe))

	// Samplers: who holds the VIP (netlink, every 10 ms) and who answers
	// ARP for it in the client namespace (every 50 ms).
	bg, stopBG := context.WithCancel(context.Background())
	holders := &netlab.HolderLog{}
	var bgWG sync.WaitGroup
	bgWG.Add(1)
	go func() { defer bgWG.Done(); holders.Run(bg, lab, r.vip) }()
	arp, err := lab.Client.AskARP(bg, r.vip, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	stopSamplers := sync.OnceFunc(func() { stopBG(); bgWG.Wait(); arp.Wait() })
	t.Cleanup(stopSamplers)

	runID := make([]byte, 4)
	_, _ = rand.Read(runID)
	wl := &workload{sh: r.sh, h: r.h, rs: r.rs, clients: *flagClients, runID: hex.EncodeToString(runID), seed: seed, logf: t.Logf,
		think: thinkTime(*flagDuration, *flagClients)}
	wl.weight.Store(100)
	nem := newNemesis(lab, r.sh, r.h, fpDir, seed, t.Logf)
	defer nem.close()

	workStart := time.Now()
	wctx, stopWork := context.WithCancel(ctx)
	nctx, stopFaults := context.WithTimeout(ctx, *flagDuration)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); wl.run(wctx) }()
	go func() { defer wg.Done(); wl.historyReader(wctx, time.Second) }()
	// The faults end with the run's time, each healed; the clients go on
	// until they are all healed, then stop.
	nem.run(nctx)
	stopFaults()
	stopWork()
	wg.Wait()
	workEnd := time.Now()
	hctx, hcancel := context.WithTimeout(ctx, 2*time.Minute)
	if err := nem.healAll(hctx); err != nil {
		t.Errorf("%v", err)
	}
	hcancel()

	converged, convErr := r.converge(ctx, 90*time.Second)
	if convErr != nil {
		t.Errorf("after healing: %v", convErr)
	}
	r.finalRead(ctx, *flagClients)
	historyOK := r.finalHistory(ctx)
	stopSamplers()

	// Checks.
	counts := Count(r.h)
	if os.Getenv("SHOAL_NEMESIS_OUT") != "" {
		r.dump(Linearizability{}, false) // the history, before a long check
	}
	_, res := Resolve(r.h)
	t.Logf("indeterminate writes by the configuration history (complete: %s): %d applied, %d not applied, %d open",
		yesNo(res.Complete), res.Applied, res.NotApplied, res.Open)
	checkStart := time.Now()
	lin := CheckLinearizable(r.h, linTimeout(*flagDuration))
	t.Logf("porcupine took %v", time.Since(checkStart).Round(time.Millisecond))
	com := CheckCommitted(r.h)
	stale := CheckStale(r.h)
	wrong := WrongAnswers(r.h)
	dual := r.dualHolders(holders, arp, nem, workStart, time.Now())
	faults := nem.injected()
	if k := r.diskFaults(); k > 0 {
		if slow := r.slowDiskWrites(); slow == 0 {
			t.Logf("%d disk faults had no effect (no \"slow raft disk write\" in any log): lvsd has no disk failpoint; see raftfsm/failpoint_nemesis.go", k)
		} else {
			t.Logf("%d disk faults; the routers logged %d slow raft disk writes", k, slow)
		}
	}

	linWord := map[porcupine.CheckResult]string{porcupine.Ok: "yes", porcupine.Illegal: "NO", porcupine.Unknown: "unknown (checker timed out)"}[lin.Result]
	refWord := map[porcupine.CheckResult]string{porcupine.Ok: "yes", porcupine.Illegal: "NO", porcupine.Unknown: "not checked"}[lin.WithRefusals]
	summary := fmt.Sprintf("nemesis %d nodes %v (%s, seed %d): ops %d, acknowledged %d, failed %d, indeterminate %d (stale reads %d); "+
		"faults %d; linearizable %s (with CAS refusals %s); lost writes %d (unverified %d, duplicates %d unexpected/%d retried); "+
		"wrong refusals %d; two holders: %d samples after a daemon kill/stop (held at most %v after), %d otherwise (ARP: %d/%d); stale reads bad %d; converged %s; dedupe %s",
		nodes, workEnd.Sub(workStart).Round(time.Second), *flagProfile, seed, counts.Ops, counts.Acked, counts.Failed, counts.Unknown, counts.Stale,
		faults, linWord, refWord, len(com.Lost), com.Unverified, com.Unexpected(), len(com.Duplicates)-com.Unexpected(), len(wrong),
		dual.afterDown, dual.longest.Round(10*time.Millisecond), dual.otherwise, dual.arpAfterDown, dual.arpOtherwise, len(stale), yesNo(converged), onOff(dedupe))
	figure(t, summary)

	failed := false
	fail := func(format string, args ...any) {
		failed = true
		t.Errorf(format, args...)
	}
	if lin.Result != porcupine.Ok {
		fail("porcupine: the history is %s", lin.Result)
	}
	if lin.WithRefusals == porcupine.Illegal {
		bad := BadRefusals(r.h, time.Minute)
		var b strings.Builder
		for _, o := range bad {
			fmt.Fprintf(&b, "\n  cas(s%d, w%d) %v..%v %s", o.Expected, o.Weight, o.Call.Round(time.Millisecond), o.Return.Round(time.Millisecond), o.label())
		}
		fail("porcupine: with the CAS refusals (FailedPrecondition) the history is not linearizable: %d CAS refused while the serial they expected was the cluster's all through the call:%s",
			len(bad), b.String())
	}
	for _, o := range com.Lost {
		fail("lost write: %s set w%d, acknowledged with serial %d, which the configuration history holds as w%d", o.label(), o.Weight, o.Serial, r.h.Committed[o.Serial])
	}
	for _, o := range com.Phantoms {
		fail("read %s saw (s%d w%d); the configuration history has w%d at s%d", o.label(), o.Serial, o.ReadWeight, r.h.Committed[o.Serial], o.Serial)
	}
	for _, d := range com.Duplicates {
		if !d.Retried {
			fail("weight %d, sent once, was committed at serials %v", d.Weight, d.Serials)
		} else if dedupe {
			fail("weight %d, retried with one request id, was committed at serials %v although the cluster dedupes", d.Weight, d.Serials)
		}
	}
	for _, m := range com.DedupeMismatches {
		fail("request id %s", m)
	}
	for _, s := range stale {
		fail("%s", s)
	}
	for _, o := range wrong {
		fail("%s %v..%v: a false answer (the service and its real server exist, the request is valid)", o.label(), o.Call.Round(time.Millisecond), o.Return.Round(time.Millisecond))
	}
	if dual.otherwise > 0 || dual.arpOtherwise > 0 {
		fail("two routers held the VIP %d times (netlink samples) and answered ARP for it %d times, other than a killed or paused daemon's stale address: %s",
			dual.otherwise, dual.arpOtherwise, dual.detail)
	}
	if !historyOK {
		fail("the final configuration history could not be read")
	}
	if !converged {
		failed = true
	}
	if failed {
		r.dump(lin, true)
	}
}

// thinkTime paces the clients so that a run's writes stay below the
// weights there are (each write sets a new one) and well inside the
// 1,000 changes the history keeps between two reads of it.
func thinkTime(d time.Duration, clients int) time.Duration {
	think := 20 * time.Millisecond
	// About 0.55 of the operations write; an operation takes a few ms.
	if need := time.Duration(float64(d) * float64(clients) * 0.55 / 60000); need > think {
		think = need
	}
	return think
}

// linTimeout bounds porcupine: generous, as a long run's history is long.
func linTimeout(d time.Duration) time.Duration { return max(time.Minute, d) }

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

// figure logs the run's line and appends it to $SHOAL_E2E_FIGURES, which
// make test prints at the end (go test shows a passing test's log only
// with -v).
func figure(t *testing.T, line string) {
	t.Helper()
	t.Log(line)
	if path := os.Getenv("SHOAL_E2E_FIGURES"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Logf("figures file: %v", err)
			return
		}
		defer f.Close()
		fmt.Fprintln(f, line)
	}
}

// conn opens an admin connection to rt (closed by the caller).
func (r *run) conn(rt *netlab.Node) *grpc.ClientConn {
	c, err := r.sh.Conn(rt)
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// eachRouter calls f with a connection to each router in turn until it
// returns nil or ctx ends.
func (r *run) untilOne(ctx context.Context, what string, f func(ctx context.Context, c *grpc.ClientConn) error) {
	r.t.Helper()
	var last error
	for ctx.Err() == nil {
		if err := r.sh.Crashed(); err != nil {
			r.t.Fatal(err)
		}
		for _, rt := range r.lab.Routers {
			c := r.conn(rt)
			cctx, cancel := context.WithTimeout(ctx, opTimout)
			err := f(cctx, c)
			cancel()
			c.Close()
			if err == nil {
				return
			}
			last = err
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	r.t.Fatalf("%s: %v (last: %v)", what, ctx.Err(), last)
}

// setup creates the service with its one real server and finds out
// whether the cluster dedupes writes by request id: the same request sent
// again after another write must not be applied again.
func (r *run) setup(ctx context.Context) (dedupe bool) {
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	one := uint32(1)
	svc := &shoalv1.VirtualService{
		Name: service, Port: rsPort, Protocol: "tcp", Scheduler: "wrr",
		Vip:         &shoalv1.Address{Address: r.vip.String(), PrefixLength: 24, Interface: netlab.Iface},
		HealthCheck: &shoalv1.HealthCheck{Kind: "none"},
		RealServers: []*shoalv1.RealServer{{Address: r.rs, Port: rsPort, Weight: &one}},
	}
	r.untilOne(sctx, "create the service", func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := shoalv1.NewLoadBalancerServiceClient(c).CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: svc})
		if err != nil && strings.Contains(err.Error(), "already exists") {
			return nil
		}
		return err
	})
	wl := &workload{rs: r.rs}
	for try := 0; ; try++ {
		if try == 5 {
			r.t.Fatal("could not find out whether the cluster dedupes request ids: every probe met an indeterminate answer")
		}
		id := fmt.Sprintf("probe-%d-%d", time.Now().UnixNano(), try)
		write := func(c *grpc.ClientConn, reqID string, w uint32) (uint64, error) {
			cctx, cancel := context.WithTimeout(sctx, opTimout)
			defer cancel()
			cctx = metadata.AppendToOutgoingContext(cctx, requestIDHeader, reqID)
			resp, err := shoalv1.NewLoadBalancerServiceClient(c).UpdateRealServer(cctx, wl.update(w, 0))
			return resp.GetSerial(), err
		}
		c := r.conn(r.lab.Routers[0])
		s1, err1 := write(c, id+"-a", 2)
		_, err2 := write(c, id+"-b", 3)
		s3, err3 := write(c, id+"-a", 2)
		cctx, cancel := context.WithTimeout(sctx, opTimout)
		resp, err4 := shoalv1.NewConfigServiceClient(c).GetConfig(cctx, &shoalv1.GetConfigRequest{})
		cancel()
		c.Close()
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			r.t.Logf("dedupe probe: %v; again", err)
			time.Sleep(time.Second)
			continue
		}
		w := weightOf(resp.GetConfig(), r.rs)
		switch {
		case s3 == s1 && w == 3:
			return true
		case s3 > s1 && w == 2:
			return false
		}
		r.t.Fatalf("dedupe probe: the request sent again answered serial %d (first %d) and left weight %d", s3, s1, w)
	}
}

// baseState is the state the workload starts from.
func (r *run) baseState(ctx context.Context) State {
	var st State
	r.untilOne(ctx, "read the base state", func(ctx context.Context, c *grpc.ClientConn) error {
		resp, err := shoalv1.NewConfigServiceClient(c).GetConfig(ctx, &shoalv1.GetConfigRequest{})
		if err == nil {
			st = State{Serial: resp.GetConfig().GetSerial(), Weight: weightOf(resp.GetConfig(), r.rs)}
		}
		return err
	})
	return st
}

// converge waits until every router is a voter of the group, names the
// same leader and has applied the same serial, then checks that each
// holds the same configuration and history.
func (r *run) converge(ctx context.Context, within time.Duration) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	conns := map[string]*grpc.ClientConn{}
	for _, rt := range r.lab.Routers {
		conns[rt.Name] = r.conn(rt)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var last error
	begin := time.Now()
	for {
		last = r.agree(cctx, conns)
		if last == nil {
			break
		}
		select {
		case <-cctx.Done():
			return false, fmt.Errorf("routers did not converge in %v: %v", within, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
	r.t.Logf("converged %v after healing", time.Since(begin).Round(time.Millisecond))
	// Same configuration and history everywhere, from local state.
	var ref *shoalv1.GetConfigResponse
	var refH *shoalv1.ListHistoryResponse
	var refName string
	for _, rt := range r.lab.Routers {
		gctx, cancel := context.WithTimeout(ctx, opTimout)
		cfg, err := shoalv1.NewConfigServiceClient(conns[rt.Name]).GetConfig(gctx, &shoalv1.GetConfigRequest{Consistency: shoalv1.ReadConsistency_READ_CONSISTENCY_STALE})
		cancel()
		if err != nil {
			return false, fmt.Errorf("config of %s: %w", rt.Name, err)
		}
		hist, err := listHistory(ctx, conns[rt.Name], shoalv1.ReadConsistency_READ_CONSISTENCY_STALE)
		if err != nil {
			return false, fmt.Errorf("history of %s: %w", rt.Name, err)
		}
		if ref == nil {
			ref, refH, refName = cfg, hist, rt.Name
			continue
		}
		if !proto.Equal(ref.GetConfig(), cfg.GetConfig()) {
			return false, fmt.Errorf("%s and %s hold different configurations: serial %d w%d vs serial %d w%d", refName, rt.Name,
				ref.GetConfig().GetSerial(), weightOf(ref.GetConfig(), r.rs), cfg.GetConfig().GetSerial(), weightOf(cfg.GetConfig(), r.rs))
		}
		if !proto.Equal(refH, hist) {
			return false, fmt.Errorf("%s and %s hold different configuration histories (%d and %d entries)", refName, rt.Name, len(refH.GetEntries()), len(hist.GetEntries()))
		}
	}
	return true, nil
}

// agree is nil when every router answers as a voting member, all name
// one leader and all have applied the same serial.
func (r *run) agree(ctx context.Context, conns map[string]*grpc.ClientConn) error {
	var leader string
	var serial uint64
	for i, rt := range r.lab.Routers {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := shoalv1.NewNodeServiceClient(conns[rt.Name]).GetNodeStatus(sctx, &shoalv1.GetNodeStatusRequest{})
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %v", rt.Name, err)
		}
		st := resp.GetStatus()
		if st.GetLeaderId() == "" {
			return fmt.Errorf("%s knows no leader", rt.Name)
		}
		if i == 0 {
			leader, serial = st.GetLeaderId(), st.GetAppliedSerial()
		} else if st.GetLeaderId() != leader || st.GetAppliedSerial() != serial {
			return fmt.Errorf("%s: leader %s serial %d; %s: leader %s serial %d", r.lab.Routers[0].Name, leader, serial, rt.Name, st.GetLeaderId(), st.GetAppliedSerial())
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cs, err := shoalv1.NewClusterServiceClient(conns[leader]).GetClusterStatus(sctx, &shoalv1.GetClusterStatusRequest{})
	if err != nil {
		return fmt.Errorf("cluster status from %s: %v", leader, err)
	}
	if len(cs.GetMembers()) != len(r.lab.Routers) {
		return fmt.Errorf("the group has %d members, want %d", len(cs.GetMembers()), len(r.lab.Routers))
	}
	for _, m := range cs.GetMembers() {
		if m.GetSuffrage() != "voter" {
			return fmt.Errorf("member %s is a %s", m.GetId(), m.GetSuffrage())
		}
	}
	return nil
}

// finalRead records one more linearizable read, after healing, so that
// porcupine weighs every indeterminate write against the final state.
func (r *run) finalRead(ctx context.Context, client int) {
	var o Op
	r.untilOne(ctx, "final read", func(cctx context.Context, c *grpc.ClientConn) error {
		o = Op{Client: client, Node: "any", Kind: KindRead, Call: r.h.Now()}
		resp, err := shoalv1.NewConfigServiceClient(c).GetConfig(cctx, &shoalv1.GetConfigRequest{})
		if err != nil {
			return err
		}
		o.Return, o.Outcome = r.h.Now(), OK
		o.Serial, o.ReadWeight = resp.GetConfig().GetSerial(), weightOf(resp.GetConfig(), r.rs)
		return nil
	})
	r.h.Add(o)
}

// finalHistory reads the whole configuration history once more.
func (r *run) finalHistory(ctx context.Context) bool {
	for _, rt := range r.lab.Routers {
		c := r.conn(rt)
		err := readHistory(ctx, c, r.h, shoalv1.ReadConsistency_READ_CONSISTENCY_UNSPECIFIED)
		c.Close()
		if err == nil {
			return true
		}
	}
	return false
}

// dual is what the samplers saw of two VIP holders.
type dual struct {
	afterDown, otherwise       int
	arpAfterDown, arpOtherwise int
	// longest is the longest a router went on holding the VIP, beside
	// another holder, after its daemon was killed or paused: what the
	// address's kernel lifetime bounds. (Stretches of such samples can be
	// longer, when one stale holder follows another.)
	longest time.Duration
	detail  string
}

// dualHolders counts the samples with two VIP holders (and the ARP
// requests two routers answered), split by cause: a router that has held
// the VIP since before its daemon was killed or paused, until shortly
// after it came back, may keep the address (until the kernel expires it);
// anything else is a fault of shoal's.
func (r *run) dualHolders(hl *netlab.HolderLog, arp *netlab.ARPAsker, nem *nemesis, from, to time.Time) dual {
	samples := hl.Samples()
	// acquired is when name began holding the VIP in the run of samples
	// that is current at t.
	acquired := func(name string, t time.Time) time.Time {
		since := time.Time{}
		for _, s := range samples {
			if s.At.After(t) {
				break
			}
			if strings.Contains(","+s.Holders+",", ","+name+",") {
				if since.IsZero() {
					since = s.At
				}
			} else {
				since = time.Time{}
			}
		}
		return since
	}
	// stale says whether one of names holds the VIP only because its
	// daemon is down, and the longest any of them has since.
	stale := func(names []string, t time.Time) (time.Duration, bool) {
		var held time.Duration
		found := false
		for _, n := range names {
			if a := acquired(n, t); !a.IsZero() {
				if h, ok := nem.staleFor(n, a, t); ok {
					held, found = max(held, h), true
				}
			}
		}
		return held, found
	}
	var d dual
	var notes []string
	holdersAt := func(t time.Time) string {
		cur := "-"
		for _, s := range samples {
			if s.At.After(t) {
				break
			}
			cur = s.Holders
		}
		return cur
	}
	for _, t := range hl.DualBetween(from, to) {
		names := strings.Split(holdersAt(t), ",")
		if held, ok := stale(names, t); ok {
			d.afterDown++
			d.longest = max(d.longest, held)
		} else {
			d.otherwise++
			if len(notes) < 10 {
				notes = append(notes, fmt.Sprintf("+%v %s", r.h.Since(t).Round(time.Millisecond), holdersAt(t)))
			}
		}
	}
	for _, rd := range arp.Rounds() {
		if rd.At.Before(from) || rd.At.After(to) || len(rd.MACs) < 2 {
			continue
		}
		var names []string
		for _, m := range rd.MACs {
			for _, rt := range r.lab.Routers {
				if rt.MAC.String() == m {
					names = append(names, rt.Name)
				}
			}
		}
		if _, ok := stale(names, rd.At); ok {
			d.arpAfterDown++
		} else {
			d.arpOtherwise++
			if len(notes) < 20 {
				notes = append(notes, fmt.Sprintf("ARP +%v %s", r.h.Since(rd.At).Round(time.Millisecond), strings.Join(names, ",")))
			}
		}
	}
	d.detail = strings.Join(notes, "; ")
	return d
}

// dump writes the history, porcupine's visualization and the routers'
// logs where they outlive the test ($SHOAL_NEMESIS_OUT, else the temporary
// directory), and logs the paths. With SHOAL_NEMESIS_OUT set, a run that
// passed keeps its history too.
func (r *run) dump(lin Linearizability, failed bool) {
	out := os.Getenv("SHOAL_NEMESIS_OUT")
	if out == "" {
		out = os.TempDir()
	}
	if r.out == "" {
		r.out = filepath.Join(out, fmt.Sprintf("shoal-nemesis-%s-%dnodes", time.Now().Format("20060102-150405"), r.nodes))
	}
	dir := r.out
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.t.Logf("keep the failing run: %v", err)
		return
	}
	hp := filepath.Join(dir, "history.json")
	if err := r.h.Save(hp); err != nil {
		r.t.Logf("save history: %v", err)
	} else {
		r.t.Logf("history: %s", hp)
	}
	if failed && (lin.Result != porcupine.Ok || lin.WithRefusals == porcupine.Illegal) {
		vp := filepath.Join(dir, "linearizability.html")
		if err := lin.Visualize(r.h, vp); err != nil {
			r.t.Logf("porcupine visualization: %v", err)
		} else {
			r.t.Logf("porcupine visualization: %s", vp)
		}
	}
	for _, rt := range r.lab.Routers {
		if err := copyFile(r.sh.LogPath(rt), filepath.Join(dir, rt.Name+"-lvsd.log")); err != nil {
			r.t.Logf("copy %s's log: %v", rt.Name, err)
		}
	}
	if failed {
		r.t.Logf("faults:\n%s", faultTable(r.h))
	}
}

// diskFaults counts the disk faults put in place.
func (r *run) diskFaults() int {
	k := 0
	for _, f := range r.h.Faults {
		if strings.HasPrefix(f.Kind, "disk") && f.Err == "" {
			k++
		}
	}
	return k
}

// slowDiskWrites counts the routers' "slow raft disk write" log lines,
// which show that the disk failpoint works.
func (r *run) slowDiskWrites() int {
	k := 0
	for _, rt := range r.lab.Routers {
		b, _ := os.ReadFile(r.sh.LogPath(rt))
		k += strings.Count(string(b), "slow raft disk write")
	}
	return k
}

func faultTable(h *History) string {
	var b strings.Builder
	for _, f := range h.Faults {
		fmt.Fprintf(&b, "  %3d +%v..+%v %-14s %-8s %s", f.ID, f.Start.Round(time.Millisecond), f.End.Round(time.Millisecond), f.Kind, strings.Join(f.Nodes, ","), f.What)
		if f.Err != "" {
			fmt.Fprintf(&b, " (%s)", f.Err)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
