package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

const (
	apiPort  = 7070
	raftPort = 7071
	// tokenFile holds the bootstrap token every director is given: the
	// directors' addresses are not loopback ones, so lvsd runs the API and
	// Raft over mutual TLS, and the first director makes the cluster CA.
	tokenFile = "/var/lib/shoal/bootstrap-token"
)

// director is one lvsd process in a director namespace.
type director struct {
	*machine
	cluster *cluster
	args    []string
	log     string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been waited for
	conn *grpc.ClientConn
}

func (d *director) api() string { return fmt.Sprintf("%s:%d", d.out, apiPort) }

func (d *director) raft() string { return fmt.Sprintf("%s:%d", d.out, raftPort) }

// dataDir is lvsd's --data-dir; its tls/ holds the node's certificate and
// root's admin credentials once the director has the cluster CA.
func (d *director) dataDir() string { return "/var/lib/shoal/" + d.name }

// creds are the admin credentials in the director's data directory: CA,
// certificate, key.
func (d *director) creds() (ca, cert, key string) {
	dir := filepath.Join(d.dataDir(), "tls")
	return filepath.Join(dir, pki.CACertFile), filepath.Join(dir, pki.AdminCertFile), filepath.Join(dir, pki.AdminKeyFile)
}

// hasCreds reports whether the director has written its admin credentials
// (the key before the certificate, so the certificate means both).
func (d *director) hasCreds() bool {
	_, cert, _ := d.creds()
	_, err := os.Stat(cert)
	return err == nil
}

// startLvsd starts lvsd in the director's namespace with its output in a log
// file that the lab prints when a scenario fails.
func (d *director) startLvsd() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := os.OpenFile(d.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command("/bin/lvsd", d.args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := d.start(cmd); err != nil {
		f.Close()
		return fmt.Errorf("start lvsd on %s: %w", d.name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		f.Close()
		close(done)
	}()
	d.cmd, d.done = cmd, done
	return nil
}

// kill sends sig to lvsd and waits for it to exit.
func (d *director) kill(sig syscall.Signal) {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	<-done
}

func (d *director) running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

func (d *director) client() (*grpc.ClientConn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		return d.conn, nil
	}
	cfg, err := d.cluster.tlsConfig(d)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(d.api(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, err
	}
	d.conn = conn
	return conn, nil
}

func (d *director) status(ctx context.Context) (*shoalv1.NodeStatus, error) {
	conn, err := d.client()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	// The basic view: the whole IPVS table and every verdict take seconds
	// to list at 10,000 services under emulation, longer than the timeout.
	resp, err := shoalv1.NewNodeServiceClient(conn).GetNodeStatus(ctx, &shoalv1.GetNodeStatusRequest{View: shoalv1.NodeStatusView_NODE_STATUS_VIEW_BASIC})
	if err != nil {
		return nil, fmt.Errorf("%s status: %w", d.name, err)
	}
	return resp.GetStatus(), nil
}

// logTail returns the last n lines of lvsd's log.
func (d *director) logTail(n int) []string {
	b, _ := os.ReadFile(d.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// tookOver finds in lvsd's log when its dataplane was told it leads, after
// since: the split of a failover between Raft and the dataplane. The log is
// slog's text format; a line that does not parse is not evidence.
func (d *director) tookOver(since time.Time) (time.Time, bool) {
	b, _ := os.ReadFile(d.log)
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.Contains(l, `msg="leadership changed"`) || !strings.Contains(l, "leader=true") {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(l, "time="), " ")
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err == nil && t.After(since) {
			return t, true
		}
	}
	return time.Time{}, false
}

// cluster is the three directors running shoal.
type cluster struct {
	ds []*director
}

// newCluster writes a new bootstrap token (what `lvsctl cluster token
// --bootstrap` prints) for the directors to share and sets up their lvsd
// command lines.
func newCluster(ms []*machine, extra []string) (*cluster, error) {
	tok, err := pki.NewBootstrapToken()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(tokenFile, []byte(tok.String()+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write the bootstrap token: %w", err)
	}
	var boot []string
	for _, m := range ms {
		boot = append(boot, fmt.Sprintf("%s=%s:%d", m.name, m.out, raftPort))
	}
	c := &cluster{}
	for _, m := range ms {
		d := &director{machine: m, cluster: c, log: "/tmp/lvsd-" + m.name + ".log"}
		d.args = []string{
			"--id", m.name,
			"--raft-addr", d.raft(),
			"--api-addr", d.api(),
			"--data-dir", d.dataDir(),
			"--bootstrap", strings.Join(boot, ","),
			"--token-file", tokenFile,
			"--dataplane", "ipvs",
			"--interface", "eth0",
		}
		d.args = append(d.args, extra...)
		c.ds = append(c.ds, d)
	}
	return c, nil
}

// start starts every director's lvsd. The first makes the cluster CA; the
// others are started once it serves on its Raft port, only so that the
// report can say how long making the CA took under emulation (they would
// ask their peers until one could sign their certificates).
func (c *cluster) start(ctx context.Context) error {
	first := c.ds[0]
	if err := first.startLvsd(); err != nil {
		return err
	}
	up := time.Now()
	if err := eventually(ctx, 60*time.Second, func() error {
		if !first.running() {
			return permanent{fmt.Errorf("lvsd on %s exited: %s", first.name, strings.Join(first.logTail(3), " | "))}
		}
		conn, err := net.DialTimeout("tcp", first.raft(), time.Second)
		if err != nil {
			return err
		}
		return conn.Close()
	}); err != nil {
		return fmt.Errorf("%s serving on its Raft port: %w", first.name, err)
	}
	rep.logf("%s made the cluster CA and serves on %s after %.1fs", first.name, first.raft(), time.Since(up).Seconds())
	for _, d := range c.ds[1:] {
		if err := d.startLvsd(); err != nil {
			return err
		}
	}
	return nil
}

// tlsConfig is the client TLS configuration for calls to d: root's admin
// credentials from d's data directory, or until d has written them (once
// the cluster CA reached it) from another director's, which the same CA
// signed.
func (c *cluster) tlsConfig(d *director) (*tls.Config, error) {
	from := d
	if !d.hasCreds() {
		from = nil
		for _, o := range c.ds {
			if o.hasCreds() {
				from = o
				break
			}
		}
		if from == nil {
			return nil, errors.New("no director has written its admin credentials yet")
		}
	}
	caPath, certPath, keyPath := from.creds()
	cas, err := pki.ReadCerts(caPath)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("admin credentials of %s: %w", from.name, err)
	}
	return pki.ClientConfig(&pair, roots), nil
}

// ctlCreds are lvsctl's TLS flags for a call to d (see tlsConfig).
func (c *cluster) ctlCreds(d *director) []string {
	from := d
	for _, o := range append([]*director{d}, c.ds...) {
		if o.hasCreds() {
			from = o
			break
		}
	}
	ca, cert, key := from.creds()
	return []string{"--cacert", ca, "--cert", cert, "--key", key}
}

// stop ends every lvsd with SIGTERM, as an operator would, and falls back
// to SIGKILL for one that has not drained within 15s.
func (c *cluster) stop() {
	start := time.Now()
	var wg sync.WaitGroup
	for _, d := range c.live() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.mu.Lock()
			cmd, done := d.cmd, d.done
			d.mu.Unlock()
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				rep.logf("lvsd on %s ignored SIGTERM for 15s; killing it", d.name)
				cmd.Process.Kill()
				<-done
			}
		}()
	}
	wg.Wait()
	rep.logf("lvsd stopped in %.1fs", time.Since(start).Seconds())
}

// live are the directors whose lvsd runs.
func (c *cluster) live() []*director {
	var out []*director
	for _, d := range c.ds {
		if d.running() {
			out = append(out, d)
		}
	}
	return out
}

// leader waits until every live director names the same leader and, once
// a configuration with addresses is applied (vips), that leader says it holds
// them; it returns the leader.
func (c *cluster) leader(ctx context.Context, timeout time.Duration) (*director, error) {
	return c.leaderHolding(ctx, timeout, true)
}

func (c *cluster) leaderHolding(ctx context.Context, timeout time.Duration, vips bool) (*director, error) {
	var found *director
	err := eventually(ctx, timeout, func() error {
		found = nil
		ids := map[string]bool{}
		if len(c.live()) == 0 {
			return permanent{errors.New("no lvsd is running")}
		}
		for _, d := range c.live() {
			st, err := d.status(ctx)
			if err != nil {
				return err
			}
			ids[st.GetLeaderId()] = true
			if st.GetRole() == "leader" {
				if vips && !st.GetHoldsVips() {
					return fmt.Errorf("leader %s does not hold the VIPs yet", d.name)
				}
				found = d
			}
		}
		if found == nil || len(ids) != 1 {
			return fmt.Errorf("no agreed leader yet (leader ids seen: %v)", keys(ids))
		}
		return nil
	})
	return found, err
}

// apply replaces the cluster's configuration through the leader.
func (c *cluster) apply(ctx context.Context, cfg *shoalv1.Config) (uint64, error) {
	var serial uint64
	err := eventually(ctx, 30*time.Second, func() error {
		var errs []error
		for _, d := range c.live() {
			conn, err := d.client()
			if err != nil {
				return err
			}
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			resp, err := shoalv1.NewConfigServiceClient(conn).ApplyConfig(cctx, &shoalv1.ApplyConfigRequest{Config: cfg})
			cancel()
			if err == nil {
				serial = resp.GetSerial()
				return nil
			}
			errs = append(errs, fmt.Errorf("%s: %w", d.name, err))
		}
		return errors.Join(errs...)
	})
	return serial, err
}

// lvsctl runs the CLI against one director, from the management namespace.
func (c *cluster) lvsctl(ctx context.Context, d *director, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	all := append(append([]string{"-s", d.api()}, c.ctlCreds(d)...), args...)
	out, err := execCommand(ctx, "/bin/lvsctl", all...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("lvsctl %s: %w: %s", strings.Join(args, " "), err, oneLine(string(out)))
	}
	return string(out), nil
}

// dumpLogs prints the tail of every director's log to the console, for the
// reader of a failed run.
func (c *cluster) dumpLogs(n int) {
	for _, d := range c.ds {
		for _, l := range d.logTail(n) {
			rep.line("lvsd[%s] %s", d.name, l)
		}
	}
}

func execCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// eventually polls cond until it returns nil or the timeout passes, and then
// returns cond's last error.
func eventually(ctx context.Context, timeout time.Duration, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Half a second: every poll reads node status or netlink in the guest,
	// and the directors need the guest's CPU more than the lab does.
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return p.err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w", timeout, err)
		case <-tick.C:
		}
	}
}

// permanent makes eventually give up at once.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
