package netlab

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shoal-lb/shoal/e2e/harness"
	"github.com/shoal-lb/shoal/pki"
)

// Daemon is a VIP-holding daemon that runs on every router of a lab: lvsd,
// or keepalived for comparison.
type Daemon interface {
	// Label names the daemon and its settings in reports.
	Label() string
	// Start starts the daemon on r, or restarts it after Kill with the state
	// it persisted.
	Start(r *Node) error
	// Kill crashes the daemon on r: SIGKILL of its whole process group.
	Kill(r *Node)
}

// Shoal runs lvsd in every router of a lab with the VIP dataplane.
//
// The lab's addresses are not loopback ones, so lvsd secures its API and
// Raft with mutual TLS: on the first Start the routers share a new bootstrap
// token (Dir/token, 0600), the first of them makes the cluster CA and the
// others get their certificates from it. Ctl, CtlRetry and Conn then
// authenticate as admin with the credentials lvsd writes into a router's
// data directory. Insecure runs them all in plaintext instead.
type Shoal struct {
	Lab *Lab
	// Lvsd and Lvsctl are paths to the binaries.
	Lvsd, Lvsctl string
	// Dir holds each router's data directory and log (Dir/r1/lvsd.log).
	Dir string
	// Profile is lvsd's --profile (lan, fast, wan); Flags are extra flags.
	Profile string
	Flags   []string
	// Wrap is a command prefix for lvsd, e.g. {"chrt", "-r", "50"} to
	// measure it with a real-time scheduling policy.
	Wrap []string
	// Dataplane is lvsd's --dataplane (default vip: this lab has no IPVS).
	Dataplane string
	// RaftPort, APIPort and MetricsPort on each router's address (default
	// 7000, 7001, 7002).
	RaftPort, APIPort, MetricsPort uint16
	// Insecure runs lvsd with --insecure: the API and Raft in plaintext,
	// without the bootstrap token, and clients without certificates.
	Insecure bool
	// Bootstrap are the routers of the first bootstrap (default: every
	// router of the lab). Start the others with Join.
	Bootstrap []*Node

	mu     sync.Mutex
	procs  map[string]*Process
	logs   map[string]*os.File
	killed map[string]bool
	joined map[string]*Node // router -> the member whose API it joined through
}

// Label implements Daemon.
func (s *Shoal) Label() string {
	l := "shoal"
	if s.Profile != "" {
		l += " --profile " + s.Profile
	}
	if len(s.Flags) > 0 {
		l += " " + strings.Join(s.Flags, " ")
	}
	if s.Insecure {
		l += " --insecure"
	}
	if len(s.Wrap) > 0 {
		l += " (under " + strings.Join(s.Wrap, " ") + ")"
	}
	return l
}

// TokenPath is the file of the bootstrap token that every router of the
// first bootstrap is given (--token-file).
func (s *Shoal) TokenPath() string { return filepath.Join(s.Dir, "token") }

// DataDir is r's lvsd --data-dir.
func (s *Shoal) DataDir(r *Node) string { return filepath.Join(s.Dir, r.Name, "data") }

// Creds are root's admin credentials in r's data directory, which lvsd
// writes once it has the cluster CA.
func (s *Shoal) Creds(r *Node) harness.ClientCreds { return harness.AdminCreds(s.DataDir(r)) }

func (s *Shoal) bootstrap() []*Node {
	if len(s.Bootstrap) > 0 {
		return s.Bootstrap
	}
	return s.Lab.Routers
}

// RaftAddr is r's Raft address.
func (s *Shoal) RaftAddr(r *Node) netip.AddrPort {
	return netip.AddrPortFrom(r.Addr, cmp.Or(s.RaftPort, 7000))
}

// APIAddr is r's gRPC API address.
func (s *Shoal) APIAddr(r *Node) netip.AddrPort {
	return netip.AddrPortFrom(r.Addr, cmp.Or(s.APIPort, 7001))
}

// MetricsAddr is where r serves Prometheus metrics.
func (s *Shoal) MetricsAddr(r *Node) netip.AddrPort {
	return netip.AddrPortFrom(r.Addr, cmp.Or(s.MetricsPort, 7002))
}

// Args is the lvsd command line for r: a router of the first bootstrap,
// or one that Join started.
func (s *Shoal) Args(r *Node) []string {
	args := []string{
		"--id", r.Name,
		"--raft-addr", s.RaftAddr(r).String(),
		"--api-addr", s.APIAddr(r).String(),
		"--metrics-addr", s.MetricsAddr(r).String(),
		"--data-dir", s.DataDir(r),
		"--dataplane", cmp.Or(s.Dataplane, "vip"),
		"--interface", Iface,
	}
	if via := s.joined[r.Name]; via != nil {
		args = append(args, "--join", s.APIAddr(via).String(), "--token-file", s.joinTokenPath(r))
	} else {
		var boot []string
		for _, p := range s.bootstrap() {
			boot = append(boot, p.Name+"="+s.RaftAddr(p).String())
		}
		args = append(args, "--bootstrap", strings.Join(boot, ","))
		if !s.Insecure {
			args = append(args, "--token-file", s.TokenPath())
		}
	}
	if s.Insecure {
		args = append(args, "--insecure")
	}
	if s.Profile != "" {
		args = append(args, "--profile", s.Profile)
	}
	return append(args, s.Flags...)
}

// Start implements Daemon; lvsd's output is appended to Dir/<router>/lvsd.log.
func (s *Shoal) Start(r *Node) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.procs == nil {
		s.procs, s.logs, s.killed = map[string]*Process{}, map[string]*os.File{}, map[string]bool{}
	}
	if p := s.procs[r.Name]; p != nil {
		if exited, _ := p.Exited(); !exited {
			return fmt.Errorf("netlab: lvsd already runs on %s", r.Name)
		}
	}
	if err := os.MkdirAll(filepath.Join(s.Dir, r.Name), 0o755); err != nil {
		return err
	}
	if s.joined[r.Name] == nil && !slices.Contains(s.bootstrap(), r) {
		return fmt.Errorf("netlab: %s is not a router of the bootstrap; start it with Join", r.Name)
	}
	if err := s.ensureToken(); err != nil {
		return err
	}
	if s.logs[r.Name] == nil {
		f, err := os.OpenFile(s.LogPath(r), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		s.logs[r.Name] = f
	}
	argv := append(append(append([]string(nil), s.Wrap...), s.Lvsd), s.Args(r)...)
	p, err := r.Start(s.logs[r.Name], argv[0], argv[1:]...)
	if err != nil {
		return err
	}
	s.procs[r.Name] = p
	s.killed[r.Name] = false
	return nil
}

// ensureToken draws the bootstrap token on the first Start (s.mu held). A
// token already in Dir (a restart of the same lab directory) is kept: the
// routers' certificates came with it.
func (s *Shoal) ensureToken() error {
	if s.Insecure || pki.Exists(s.TokenPath()) {
		return nil
	}
	tok, err := pki.NewBootstrapToken()
	if err != nil {
		return err
	}
	return harness.WriteToken(s.TokenPath(), tok.String())
}

// Join starts lvsd on r, a router outside the first bootstrap, to join the
// cluster through via's API with token (from JoinToken). Later Starts of r
// run the same command line; its data directory then has its certificate.
func (s *Shoal) Join(r, via *Node, token string) error {
	if err := harness.WriteToken(s.joinTokenPath(r), token); err != nil {
		return err
	}
	s.mu.Lock()
	if s.joined == nil {
		s.joined = map[string]*Node{}
	}
	s.joined[r.Name] = via
	s.mu.Unlock()
	return s.Start(r)
}

func (s *Shoal) joinTokenPath(r *Node) string { return filepath.Join(s.Dir, r.Name, "join-token") }

// JoinToken asks server for a join token for one more router (`lvsctl
// cluster token`, which needs admin).
func (s *Shoal) JoinToken(ctx context.Context, server *Node) (string, error) {
	out, err := s.Ctl(ctx, server, "cluster", "token")
	if err != nil {
		return "", err
	}
	// The token alone is on stdout; stderr says how long it is good.
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "shoal1.") {
			return l, nil
		}
	}
	return "", fmt.Errorf("lvsctl cluster token printed no token: %s", strings.TrimSpace(out))
}

// Crashed returns an error naming an lvsd that exited without being killed
// (a bad flag, a bind error, a panic), with the end of its log, so that
// callers fail at once instead of waiting for a leader that will not come.
func (s *Shoal) Crashed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, p := range s.procs {
		if exited, err := p.Exited(); exited && !s.killed[name] {
			b, _ := os.ReadFile(filepath.Join(s.Dir, name, "lvsd.log"))
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) > 5 {
				lines = lines[len(lines)-5:]
			}
			return fmt.Errorf("lvsd on %s exited (%v): %s", name, err, strings.Join(lines, " | "))
		}
	}
	return nil
}

// LogPath is where r's lvsd writes its log.
func (s *Shoal) LogPath(r *Node) string { return filepath.Join(s.Dir, r.Name, "lvsd.log") }

// Process returns the lvsd process of r (nil before Start).
func (s *Shoal) Process(r *Node) *Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[r.Name]
}

// Kill implements Daemon.
func (s *Shoal) Kill(r *Node) {
	s.mu.Lock()
	p := s.procs[r.Name]
	if p != nil {
		s.killed[r.Name] = true
	}
	s.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}

// Close stops every lvsd (SIGTERM, so that they release their VIPs) and
// closes the logs.
func (s *Shoal) Close() {
	s.mu.Lock()
	procs := s.procs
	logs := s.logs
	s.procs, s.logs = nil, nil
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.Stop(5 * time.Second) }()
	}
	wg.Wait()
	for _, f := range logs {
		_ = f.Close()
	}
}

// Ctl runs lvsctl in the client namespace against server (a router's API
// address) and returns its combined output. Over TLS it authenticates as
// admin (see creds), waiting for the credentials while ctx allows.
func (s *Shoal) Ctl(ctx context.Context, server *Node, args ...string) (string, error) {
	all := []string{"-s", s.APIAddr(server).String()}
	if !s.Insecure {
		c, err := s.waitCreds(ctx, server)
		if err != nil {
			return "", err
		}
		all = append(all, c.Args()...)
	}
	all = append(all, args...)
	out, err := s.Lab.Client.Command(ctx, s.Lvsctl, all...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("lvsctl %s: %w: %s", strings.Join(all, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// CtlRetry runs lvsctl against each router in turn until one call
// succeeds (say, once the cluster has elected a leader), fails for good
// (already exists, invalid), or ctx ends.
func (s *Shoal) CtlRetry(ctx context.Context, args ...string) (string, error) {
	var last error
	for {
		if err := s.Crashed(); err != nil {
			return "", err
		}
		for _, r := range s.Lab.Routers {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			out, err := s.Ctl(cctx, r, args...)
			cancel()
			if err == nil || permanent(err) {
				return out, err
			}
			last = err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// permanent reports lvsctl failures that a retry cannot fix; anything else
// (no leader yet, connection refused, a timeout) is retried.
func permanent(err error) bool {
	s := strings.ToLower(err.Error())
	for _, w := range []string{"already exists", "invalid", "not found", "unknown flag", "usage:"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// creds are the admin credentials for a call to r: r's own, or until
// lvsd has written those (a few seconds after a first bootstrap, once the
// cluster CA has reached r) those of another router of the lab, which the
// same CA signed.
func (s *Shoal) creds(r *Node) (harness.ClientCreds, bool) {
	if c := s.Creds(r); c.Ready() {
		return c, true
	}
	for _, o := range s.Lab.Routers {
		if c := s.Creds(o); c.Ready() {
			return c, true
		}
	}
	return harness.ClientCreds{}, false
}

// waitCreds waits for creds(r) while ctx allows and no lvsd has crashed.
func (s *Shoal) waitCreds(ctx context.Context, r *Node) (harness.ClientCreds, error) {
	for {
		if c, ok := s.creds(r); ok {
			return c, nil
		}
		if err := s.Crashed(); err != nil {
			return harness.ClientCreds{}, err
		}
		select {
		case <-ctx.Done():
			return harness.ClientCreds{}, fmt.Errorf("netlab: no admin credentials in any router's data directory (%s): %w", filepath.Dir(s.Creds(r).Cert), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Conn opens a gRPC connection from the client namespace to r's API; over
// TLS it authenticates as admin, waiting up to 10s for the credentials.
func (s *Shoal) Conn(r *Node) (*grpc.ClientConn, error) {
	client := s.Lab.Client
	creds := insecure.NewCredentials()
	if !s.Insecure {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := s.waitCreds(ctx, r)
		cancel()
		if err != nil {
			return nil, err
		}
		cfg, err := c.TLSConfig()
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(cfg)
	}
	return grpc.NewClient("passthrough:///"+s.APIAddr(r).String(),
		grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return client.DialContext(ctx, "tcp", addr)
		}))
}

// Metrics fetches r's Prometheus metrics, in the text format, from the
// client namespace.
func (s *Shoal) Metrics(ctx context.Context, r *Node) (string, error) {
	hc := &http.Client{Transport: &http.Transport{DialContext: s.Lab.Client.DialContext}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.MetricsAddr(r).String()+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("metrics of %s: %w", r.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("metrics of %s: %s", r.Name, resp.Status)
	}
	return string(b), err
}

// Keepalived runs keepalived (VRRP only) in every router for comparison:
// priorities 150, 100, 50, ... so that r1 leads and preempts.
type Keepalived struct {
	Lab *Lab
	Dir string
	VIP netip.Prefix
	// Version is the VRRP version (default 3); AdvertInt is advert_int in
	// seconds as keepalived writes it (default "0.01", its fastest).
	Version   int
	AdvertInt string

	mu    sync.Mutex
	procs map[string]*Process
}

// KeepalivedInstalled reports whether keepalived is in PATH.
func KeepalivedInstalled() bool {
	_, err := exec.LookPath("keepalived")
	return err == nil
}

// Label implements Daemon.
func (k *Keepalived) Label() string {
	v, a := k.settings()
	return fmt.Sprintf("keepalived VRRPv%d advert_int %s", v, a)
}

func (k *Keepalived) settings() (int, string) {
	v, a := k.Version, k.AdvertInt
	if v == 0 {
		v = 3
	}
	if a == "" {
		a = "0.01"
	}
	return v, a
}

// Start implements Daemon.
func (k *Keepalived) Start(r *Node) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.procs == nil {
		k.procs = map[string]*Process{}
	}
	idx := 0
	for i, p := range k.Lab.Routers {
		if p == r {
			idx = i
		}
	}
	v, a := k.settings()
	dir := filepath.Join(k.Dir, r.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	conf := fmt.Sprintf(`global_defs {
    router_id %s
    vrrp_version %d
}
vrrp_instance VI_77 {
    state BACKUP
    interface %s
    virtual_router_id 77
    priority %d
    advert_int %s
    virtual_ipaddress {
        %s dev %s
    }
}
`, r.Name, v, Iface, 150-50*idx, a, k.VIP, Iface)
	cf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return err
	}
	for _, f := range []string{"keepalived.pid", "vrrp.pid"} {
		_ = os.Remove(filepath.Join(dir, f))
	}
	log, err := os.OpenFile(filepath.Join(dir, "keepalived.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// -n: foreground, -P: VRRP only, -G: no namespace detection; the pid
	// files are ours so that parallel labs do not fight over /run.
	p, err := r.Start(log, "keepalived", "-n", "-l", "-G", "-P", "-f", cf,
		"-p", filepath.Join(dir, "keepalived.pid"), "-r", filepath.Join(dir, "vrrp.pid"))
	log.Close() // the child has its own descriptor
	if err != nil {
		return err
	}
	k.procs[r.Name] = p
	return nil
}

// Kill implements Daemon: the parent and its VRRP child at once, a real
// crash (killing the parent alone makes the child resign gracefully).
func (k *Keepalived) Kill(r *Node) {
	k.mu.Lock()
	p := k.procs[r.Name]
	k.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}
