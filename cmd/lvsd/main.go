// Command lvsd is the shoal daemon: one router of the Raft group. It serves
// the gRPC API, replicates the configuration and (with --dataplane ipvs or
// vip) keeps the kernel's IPVS table and the leader's addresses in line
// with it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/shoal-lb/shoal/buildinfo"
	"github.com/shoal-lb/shoal/dataplane"
	"github.com/shoal-lb/shoal/dataplane/script"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"github.com/shoal-lb/shoal/raftfsm"
	"github.com/shoal-lb/shoal/server"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "lvsd:", err)
		os.Exit(1)
	}
}

// flags is the command line as parsed.
type flags struct {
	id, raftAddr, apiAddr, dataDir, bootstrap, join  string
	dataplane, iface, profile, metricsAddr, logLevel string
	stallTrace, webAddr                              string
	tlsCert, tlsKey, tlsCA, tlsSAN, tokenFile        string
	clusterName                                      string
	insecure                                         bool
	heartbeat, election, lease, commit, probe        time.Duration
	addressLifetime                                  time.Duration
	snapshots                                        raftfsm.SnapshotPolicy
	bgp                                              bgpFlags
	realtime                                         rtPriority
	pprof                                            bool
	version                                          bool
	scriptDirs                                       stringList
	scriptUser                                       string
	allowShell                                       bool
}

// profiles are coherent raft timing sets; single flags override one value.
//
// A follower starts an election one heartbeat timeout (HT) after it last
// heard from the leader, the second follower HT/5 later unless it saw the
// first one's campaign (see raftfsm's detector), so failover takes a
// little over HT. The heartbeat timeout is also how long the leader's
// daemon may go unheard, stalled on a busy host, before it is replaced.
// The leader drops its VIPs one lease after it sent the last request a
// quorum accepted (raftfsm's fence); the lease is nine tenths of HT, so a
// partitioned leader lets go of the VIPs before anyone else can take them,
// and the rest of HT is for taking them down.
//
// fast adds kernel probes (package liveness) with a 25ms timeout: a
// follower finds the leader gone when its router has not answered them
// for 25ms, or when its daemon exits, whether or not any daemon got a CPU
// meanwhile. HT is then only for a daemon that hangs: lan's 200ms, so that
// a leader whose process stalls (111ms was seen under full load) is not
// replaced. The 10ms commit timeout lets followers learn of
// a commit within 10-20ms when no write follows. Measured in e2e/failover,
// see e2e/failover/README.md.
var profiles = map[string]raftfsm.Timing{
	"lan":  {Heartbeat: 200 * time.Millisecond, Election: 200 * time.Millisecond, LeaderLease: 180 * time.Millisecond, Commit: 20 * time.Millisecond},
	"fast": {Heartbeat: 200 * time.Millisecond, Election: 200 * time.Millisecond, LeaderLease: 180 * time.Millisecond, Commit: 10 * time.Millisecond, Probe: 25 * time.Millisecond},
	"wan":  {Heartbeat: time.Second, Election: time.Second, LeaderLease: 900 * time.Millisecond, Commit: 50 * time.Millisecond},
}

func parseFlags(args []string) (*flags, error) {
	f := &flags{}
	host, _ := os.Hostname()
	fs := newFlagSet(f, host)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if f.id == "" && !f.version {
		return nil, errors.New("--id is required")
	}
	return f, nil
}

// newFlagSet is lvsd's command line, parsed into f; host is --id's
// default. The manual page (manpage.go) is written from it too.
func newFlagSet(f *flags, host string) *flag.FlagSet {
	fs := flag.NewFlagSet("lvsd", flag.ContinueOnError)
	fs.StringVar(&f.id, "id", host, "node id, unique in the cluster")
	fs.StringVar(&f.raftAddr, "raft-addr", "127.0.0.1:7071", "raft transport address (host:port), as peers reach it")
	fs.StringVar(&f.apiAddr, "api-addr", "127.0.0.1:7070", "gRPC API address (host:port), as clients and peers reach it")
	fs.StringVar(&f.dataDir, "data-dir", "/var/lib/shoal", "directory for the raft log, stable store and snapshots")
	fs.StringVar(&f.bootstrap, "bootstrap", "", "bootstrap a new cluster: id=raftaddr,id=raftaddr,... (ignored when state exists)")
	fs.StringVar(&f.join, "join", "", "API address of a member to join through when this node has no state")
	fs.StringVar(&f.clusterName, "cluster-name", "", "with --bootstrap: a name that sets this cluster apart from another bootstrapped with the same "+
		"--bootstrap list; part of the cluster ID that every Raft connection and peer call shows (same on every router; ignored once a node has state)")
	fs.StringVar(&f.dataplane, "dataplane", "ipvs", "ipvs (program IPVS and hold VIPs), vip (hold VIPs only) or none")
	fs.StringVar(&f.iface, "interface", "", "default interface for VIPs without one")
	fs.DurationVar(&f.addressLifetime, "address-lifetime", dataplane.DefaultAddressLifetime, "kernel lifetime of the VIPs and the NAT router address, "+
		"renewed every third of it by the leader, so that a router whose lvsd died or hangs drops them within it (whole seconds; negative: none)")
	fs.StringVar(&f.bgp.routerID, "bgp-router-id", "", "this router's BGP identifier (IPv4, unique per router) for bgp-mode services; "+
		"default --bgp-source, else the address of --raft-addr, when IPv4 and not loopback; without one the router holds bgp-mode VIPs but announces nothing")
	fs.StringVar(&f.bgp.source, "bgp-source", "", "local address BGP sessions are opened from (empty: chosen by route)")
	fs.IntVar(&f.bgp.listenPort, "bgp-listen-port", 0, "also accept BGP sessions the peers open, on this TCP port (0: open them from this side only)")
	fs.StringVar(&f.profile, "profile", "lan", "raft timing profile: lan, fast or wan")
	fs.DurationVar(&f.heartbeat, "heartbeat-timeout", 0, "override the profile's raft heartbeat timeout")
	fs.DurationVar(&f.election, "election-timeout", 0, "override the profile's raft election timeout")
	fs.DurationVar(&f.lease, "lease-timeout", 0, "override the profile's leader lease: how long a leader keeps the VIPs after the last request a quorum accepted (at most 9/10 of the heartbeat timeout)")
	fs.DurationVar(&f.commit, "commit-timeout", 0, "override the profile's raft commit timeout")
	fs.Var(durationOrOff{&f.probe}, "probe-timeout", "override the profile's kernel probe timeout: followers find the leader gone when its router has not "+
		"answered ICMP echo for this long, or when its daemon exits (needs CAP_NET_RAW; off: heartbeat timeout only)")
	fs.DurationVar(&f.snapshots.Interval, "raft-snapshot-interval", 0, "how often raft checks whether to snapshot the state and compact its log "+
		"(at a random time between this and twice this; 0: raft's 2m)")
	fs.Uint64Var(&f.snapshots.Threshold, "raft-snapshot-threshold", 0, "entries since the last snapshot that make raft take one (0: raft's 8192)")
	fs.Uint64Var(&f.snapshots.TrailingLogs, "raft-trailing-logs", 0, "entries the log keeps behind a snapshot, so that a follower a little behind "+
		"catches up from the log; one further behind, or a joining router, is sent the snapshot (0: raft's 10240)")
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding a join token (lvsctl cluster token) for --join, or the bootstrap token "+
		"(lvsctl cluster token --bootstrap) every --bootstrap router shares ($SHOAL_TOKEN otherwise)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "your own PKI: this node's certificate (PEM, with the URI SAN shoal://node/ID); with --tls-key and --tls-ca, reloaded when the files change")
	fs.StringVar(&f.tlsKey, "tls-key", "", "your own PKI: the key of --tls-cert (PEM)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "your own PKI: the CA certificates to trust (PEM)")
	fs.StringVar(&f.tlsSAN, "tls-san", "", "extra DNS names or IP addresses for this node's certificate, comma-separated")
	fs.BoolVar(&f.insecure, "insecure", false, "serve the API and Raft in plaintext, without authentication, on any address (loopback-only clusters are plaintext without it)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address (empty: off)")
	fs.StringVar(&f.webAddr, "web-addr", "", "serve the web console on this address (empty: off); over TLS with this node's certificate when the API runs TLS, "+
		"logging in by client certificate or `lvsctl console token`; plaintext only on a loopback address (or with --insecure)")
	fs.BoolVar(&f.pprof, "pprof", false, "also serve Go's /debug/pprof/ profiles on --metrics-addr")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.stallTrace, "stall-trace", "", "keep the Go runtime's flight recorder and write its last 2s to this directory "+
		"when the leader's fence lapses or a follower starts an election (empty: off; tracing costs some CPU)")
	fs.Var(&f.realtime, "realtime", "run every thread under SCHED_RR (--realtime = priority 50, --realtime=N for 1-99); "+
		"needs CAP_SYS_NICE; measured to move the leader more, not less, on a saturated host (docs/failover.md)")
	fs.Var(&f.scriptDirs, "script-dir", "a directory this router runs exec checks and hooks from (repeatable; default "+script.DefaultDir+
		"): programs must be absolute paths inside one, owned by root and not writable by others, nor any directory above them")
	fs.StringVar(&f.scriptUser, "script-user", script.DefaultUser, "the user exec checks and hooks run as (name or uid); root only if you mean it")
	fs.BoolVar(&f.allowShell, "allow-shell-scripts", false, "let exec checks with shell: true run through /bin/sh -c as the script user "+
		"(off: refused, because any admin client of the API could then run any command on every router)")
	fs.BoolVar(&f.version, "version", false, "print the version, git commit, build date and Go version, and exit")
	return fs
}

// timing is the profile with the individual overrides applied.
func (f *flags) timing() (raftfsm.Timing, error) {
	t, ok := profiles[f.profile]
	if !ok {
		return t, fmt.Errorf("--profile %q: want lan, fast or wan", f.profile)
	}
	for _, o := range []struct {
		v   time.Duration
		dst *time.Duration
	}{{f.heartbeat, &t.Heartbeat}, {f.election, &t.Election}, {f.lease, &t.LeaderLease}, {f.commit, &t.Commit}, {f.probe, &t.Probe}} {
		if o.v > 0 {
			*o.dst = o.v
		}
	}
	if f.probe < 0 {
		t.Probe = 0
	}
	return t, t.Validate()
}

// parseBootstrap reads "id=raftaddr,id=raftaddr".
func parseBootstrap(s string) ([]raft.Server, error) {
	if s == "" {
		return nil, nil
	}
	var out []raft.Server
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--bootstrap %q: want id=raftaddr", part)
		}
		out = append(out, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(addr), Suffrage: raft.Voter})
	}
	return out, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	if err != nil {
		return l, fmt.Errorf("--log-level %q: %w", s, err)
	}
	return l, nil
}

// gcPercent is lvsd's GOGC, while the live heap is small, unless the
// environment sets one (tuneGC lowers it for a large heap). The live heap
// of a small table is 3-6 MB under a steady write load, so Go's default of 100
// runs a collection more than once a second, and each has two
// stop-the-world phases that, on a host with every core busy, wait for
// every thread the kernel has set aside: 60-100 of them over 1 ms (up to
// 10 ms) per node in 10 minutes of the failover benchmark's load, each a
// moment in which a follower cannot answer a heartbeat. 400 runs a quarter
// as many cycles for a heap goal of about 20 MB instead of 6-11.
const gcPercent = 400

func run(args []string) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if len(args) == 1 && args[0] == genManArg {
		return writeManPage(os.Stdout, buildinfo.Get())
	}
	f, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if f.version {
		_, err := fmt.Println("lvsd", buildinfo.Get())
		return err
	}
	level, err := parseLevel(f.logLevel)
	if err != nil {
		return err
	}
	// The packages below tag their own lines with the node where it
	// matters; lvsd's own lines carry it here.
	base := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	log := base.With("node", f.id)
	timing, err := f.timing()
	if err != nil {
		return err
	}
	// A renewal may be two thirds of the lifetime late before the address
	// lapses; a leader that keeps its lease must never be that late.
	if f.addressLifetime > 0 && f.addressLifetime*2/3 <= timing.LeaderLease {
		return fmt.Errorf("--address-lifetime %s: two thirds of it must exceed the leader lease %s, or a leader could lose its VIPs while it still leads",
			f.addressLifetime, timing.LeaderLease)
	}
	// Before anything else starts threads of its own, although later
	// threads would inherit the policy anyway.
	if f.realtime > 0 {
		n, err := setRealtime(int(f.realtime))
		if err != nil {
			return err
		}
		log.Info("realtime scheduling on", "policy", "SCHED_RR", "priority", int(f.realtime), "threads", n)
	}
	boot, err := parseBootstrap(f.bootstrap)
	if err != nil {
		return err
	}
	if f.join != "" && len(boot) > 0 {
		return errors.New("--join and --bootstrap exclude each other")
	}

	// Raft's snapshots and log hold the cluster CA's key and the join
	// tokens' keys, and raft creates its files with the process umask:
	// nothing lvsd writes is for anyone but root.
	syscall.Umask(0o077)
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := os.Chmod(f.dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Before raft: a router that joins needs its certificate before it can
	// talk to anyone, and one that cannot get it should fail now.
	tlsConf, clusterID, err := setupTLS(ctx, f, boot, log)
	if err != nil {
		return err
	}
	if clusterID == "" && f.join != "" {
		// A router that joins without a token learns the cluster ID
		// from the member before it can speak Raft.
		if clusterID, err = learnClusterID(ctx, log, f, tlsConf); err != nil {
			return err
		}
	}
	// Build the dataplane before raft, so a kernel without IPVS fails at
	// once with advice instead of after joining a cluster.
	dp, err := newDataplane(f, base, timing.Election)
	if err != nil {
		return err
	}
	stalled := dp.stalled
	if f.stallTrace != "" {
		st, err := startStallTracer(f.stallTrace, f.id, log)
		if err != nil {
			return err
		}
		defer st.stop()
		stalled = func(what string) { st.stalled(what); dp.stalled(what) }
		log.Info("stall traces on", "dir", f.stallTrace)
	}
	node, err := raftfsm.Open(raftfsm.Options{
		ID: f.id, RaftAddr: f.raftAddr, DataDir: f.dataDir, ClusterID: clusterID,
		Bootstrap: boot, Timing: timing, Logger: base, Stalled: stalled, TLS: raftTLS(tlsConf), Snapshots: f.snapshots,
	})
	if err != nil {
		return openError(err, f, boot)
	}
	srv, err := server.New(server.Options{
		Node: node, ID: f.id, APIAddr: f.apiAddr, RaftAddr: f.raftAddr, Logger: base,
		Dataplane: dp.status(), Health: dp.health(), Sync: dp.sync(), TLS: tlsConf,
	})
	if err != nil {
		_ = node.Shutdown()
		return err
	}
	lis, err := net.Listen("tcp", f.apiAddr)
	if err != nil {
		_ = node.Shutdown()
		return fmt.Errorf("listen for the API: %w", err)
	}
	gs := srv.NewGRPCServer()
	var joinSrv *grpc.Server
	if jl := node.JoinListener(); jl != nil {
		joinSrv = srv.JoinServer()
	}
	log.Info("lvsd starting", "version", buildinfo.Get().Version, "raft_addr", f.raftAddr, "api_addr", f.apiAddr, "dataplane", f.dataplane,
		"profile", f.profile, "heartbeat", timing.Heartbeat, "election", timing.Election, "tls", tlsConf != nil)

	// dpCtx ends before raft shuts down: the dataplane drops its VIPs
	// first, while the rest of the node still runs.
	dpCtx, dpCancel := context.WithCancel(context.Background())
	defer dpCancel()
	var dpGroup errgroup.Group
	dp.start(dpCtx, &dpGroup, node)

	var g errgroup.Group
	g.Go(func() error {
		if err := gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serve API: %w", err)
		}
		return nil
	})
	if joinSrv != nil {
		g.Go(func() error {
			// The listener also closes with raft's transport.
			if err := joinSrv.Serve(node.JoinListener()); err != nil && !errors.Is(err, grpc.ErrServerStopped) && !errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("serve joins on the raft port: %w", err)
			}
			return nil
		})
	}
	runCtx, runCancel := context.WithCancel(context.Background())
	defer runCancel()
	g.Go(func() error { return srv.Run(runCtx) })
	if os.Getenv("GOGC") == "" {
		g.Go(func() error { tuneGC(runCtx); return nil })
	}
	var metricsSrv *http.Server
	if f.metricsAddr != "" {
		// With the Go runtime's histograms of scheduling latency and GC
		// pauses: what delays a heartbeat on a busy host shows there first.
		prometheus.Unregister(collectors.NewGoCollector())
		prometheus.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsScheduler, collectors.MetricsGC)))
		mux := http.NewServeMux()
		mux.Handle("/metrics", srv.MetricsHandler())
		if f.pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		metricsSrv = &http.Server{Addr: f.metricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		ml, err := net.Listen("tcp", f.metricsAddr)
		if err != nil {
			log.Error("metrics listener", "err", err)
		} else {
			g.Go(func() error {
				if err := metricsSrv.Serve(ml); err != nil && !errors.Is(err, http.ErrServerClosed) {
					return fmt.Errorf("serve metrics: %w", err)
				}
				return nil
			})
		}
	}
	var web *webConsole
	if f.webAddr != "" {
		var webErr error
		if web, webErr = startConsole(runCtx, &g, f, srv, tlsConf, base); webErr != nil {
			log.Error("web console failed; stopping", "err", webErr)
			g.Go(func() error { return webErr })
			stop()
		}
	}
	if f.join != "" {
		g.Go(func() error {
			err := joinCluster(runCtx, log, node, f, tlsConf)
			if err != nil {
				log.Error("join failed; stopping", "err", err)
				stop()
			}
			return err
		})
	}

	<-ctx.Done()
	log.Info("shutting down: dropping addresses, then leaving raft")
	srv.Drain()
	if joinSrv != nil {
		joinSrv.Stop()
	}
	dp.release()
	dpCancel()
	if err := dpGroup.Wait(); err != nil {
		log.Error("dataplane", "err", err)
	}
	runCancel()
	if err := node.Shutdown(); err != nil {
		log.Error("raft shutdown", "err", err)
	}
	dp.finishHooks()
	stopGRPC(gs, 2*time.Second)
	if metricsSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = metricsSrv.Shutdown(sctx)
		cancel()
	}
	web.close()
	_ = srv.Close()
	if err := g.Wait(); err != nil {
		return err
	}
	log.Info("lvsd stopped")
	return nil
}

// joinCluster asks a member to add this node as a voter, retrying with
// backoff until it works, when this node has no raft configuration of its
// own yet or is in it as the non-voter that learnClusterID made it. A
// member of another cluster is an error.
func joinCluster(ctx context.Context, log *slog.Logger, node *raftfsm.Node, f *flags, t *server.TLS) error {
	cf := node.Raft().GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("read raft configuration: %w", err)
	}
	servers := cf.Configuration().Servers
	if len(servers) > 0 && !slices.ContainsFunc(servers, func(s raft.Server) bool {
		return string(s.ID) == f.id && s.Suffrage == raft.Nonvoter
	}) {
		log.Info("existing raft state found; not joining", "join", f.join)
		return nil
	}
	conn, err := dialAPI(f.join, t)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := shoalv1.NewClusterServiceClient(conn)
	backoff := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		resp, err := client.AddMember(cctx, &shoalv1.AddMemberRequest{Id: f.id, RaftAddress: f.raftAddr, ApiAddress: f.apiAddr})
		cancel()
		if err == nil {
			if id := resp.GetClusterId(); id != node.ClusterID() {
				return fmt.Errorf("the member at --join %s belongs to cluster %s, this node to %s (from its data dir or its join): "+
					"it was added to a cluster it cannot talk to; remove it there (lvsctl cluster remove %s) and check --join",
					f.join, orNone(id), node.ClusterID(), f.id)
			}
			log.Info("joined the cluster", "via", f.join, "cluster_id", node.ClusterID())
			return nil
		}
		log.Warn("join failed; retrying", "via", f.join, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// durationOrOff is a duration flag that also takes "off" (or 0), stored
// as -1 so that it overrides a profile's value.
type durationOrOff struct{ d *time.Duration }

func (f durationOrOff) String() string {
	switch {
	case f.d == nil || *f.d == 0:
		return ""
	case *f.d < 0:
		return "off"
	}
	return f.d.String()
}

func (f durationOrOff) Set(s string) error {
	if s == "off" || s == "0" {
		*f.d = -1
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("want a positive duration or off, got %q", s)
	}
	*f.d = d
	return nil
}
