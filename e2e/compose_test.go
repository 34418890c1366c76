package e2e

// The docker-compose e2e test drives deploy/docker-compose.yml, the cluster
// the README tells users to bring up, the way a user would: lvsctl from the
// client container, docker kill, docker network disconnect, docker restart.
// It builds its own image and runs under a compose project, subnets and
// bootstrap token of its own, so it neither needs nor touches a `make up`
// cluster. As `make demo` does, it gives the client an operator certificate
// issued on director1 and makes configuration changes (admin) there.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// composeCommand is docker-compose (1.29 here), or the compose plugin where
// that is all there is.
var composeCommand = []string{"docker-compose"}

// composeDirectors are the director services of deploy/docker-compose.yml.
var composeDirectors = []string{"director1", "director2", "director3"}

// composeCluster is one compose project brought up by the test.
type composeCluster struct {
	t         *testing.T
	root      string // repository root
	project   string
	env       []string
	publicNet string // first three octets, e.g. 10.213.77
	cluster   string // first three octets of the raft network
	dataplane string
	ids       map[string]string // service -> container id
}

func TestComposeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("compose e2e: skipped in -short mode")
	}
	if os.Getenv("SHOAL_E2E_COMPOSE") == "0" {
		t.Skip("compose e2e: SHOAL_E2E_COMPOSE=0")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("compose e2e: docker not found in PATH; install Docker and docker-compose to run it")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("compose e2e: docker daemon not reachable: %v: %s", err, bytes.TrimSpace(out))
	}
	if _, err := exec.LookPath("docker-compose"); err != nil {
		if exec.Command("docker", "compose", "version").Run() != nil {
			t.Skip("compose e2e: neither docker-compose nor the docker compose plugin found")
		}
		composeCommand = []string{"docker", "compose"}
	}
	composeReapStale(t)
	c := newComposeCluster(t)
	c.up()

	var serial uint64
	var leader string
	if !t.Run("client-cert", func(t *testing.T) {
		start := time.Now()
		c.issueClientCert(t, 90*time.Second)
		t.Logf("client certificate issued %s after up", time.Since(start).Round(time.Millisecond))
	}) {
		return
	}
	if !t.Run("leader", func(t *testing.T) {
		start := time.Now()
		leader = c.waitOneLeader(t, 90*time.Second)
		t.Logf("leader %s elected %s after up", leader, time.Since(start).Round(time.Millisecond))
	}) {
		return
	}
	if !t.Run("tls", func(t *testing.T) {
		c.checkTLS(t)
	}) {
		return
	}
	if !t.Run("apply", func(t *testing.T) {
		serial = c.applyDemo(t)
		c.waitSerialEverywhere(t, serial, 30*time.Second)
	}) {
		return
	}
	if !t.Run("vip-answers", func(t *testing.T) {
		c.waitStableLeader(t, time.Second, 60*time.Second)
		leader = c.waitVIPHolder(t, "", 30*time.Second)
	}) {
		return
	}
	if !t.Run("kill-leader", func(t *testing.T) {
		leader = c.killLeader(t, serial)
	}) {
		return
	}
	if !t.Run("partition-leader", func(t *testing.T) {
		leader = c.partitionLeader(t, serial)
	}) {
		return
	}
	t.Run("rolling-restart", func(t *testing.T) {
		c.rollingRestart(t, serial)
	})
}

func newComposeCluster(t *testing.T) *composeCluster {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	project := fmt.Sprintf("shoale2e%d", os.Getpid())
	publicNet, clusterNet := composeSubnets(t)
	dataplane := os.Getenv("SHOAL_E2E_DATAPLANE")
	if dataplane == "" {
		dataplane = "vip"
		if _, err := os.Stat("/proc/net/ip_vs"); err == nil {
			dataplane = "ipvs"
		}
	}
	profile := os.Getenv("SHOAL_E2E_PROFILE")
	if profile == "" {
		profile = "lan"
	}
	image := "shoal-e2e:" + project
	c := &composeCluster{
		t: t, root: root, project: project, publicNet: publicNet, cluster: clusterNet,
		dataplane: dataplane, ids: map[string]string{},
		env: append(os.Environ(),
			"SHOAL_IMAGE="+image, "SHOAL_PUBLIC_NET="+publicNet, "SHOAL_CLUSTER_NET="+clusterNet,
			"SHOAL_DATAPLANE="+dataplane, "SHOAL_PROFILE="+profile, "SHOAL_LOG_LEVEL=debug"),
	}
	t.Logf("compose project %s: public %s.0/24, cluster %s.0/24, dataplane %s, profile %s",
		project, publicNet, clusterNet, dataplane, profile)

	// Static binaries into a build context of their own, so a `make up`
	// tree (deploy/bin) is neither needed nor overwritten.
	ctxDir := t.TempDir()
	tokenFile := filepath.Join(t.TempDir(), "token")
	c.env = append(c.env, "SHOAL_TOKEN_FILE="+tokenFile)
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(ctxDir, "bin")+"/",
		"./cmd/lvsd", "./cmd/lvsctl", "./deploy/shoal-demo")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build static binaries: %v\n%s", err, out)
	}
	for _, f := range []string{"Dockerfile", ".dockerignore"} {
		b, err := os.ReadFile(filepath.Join(root, "deploy", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ctxDir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("docker", "build", "-q", "-t", image, ctxDir).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	// The directors' shared bootstrap token, as `make up` makes it.
	token, err := exec.Command(filepath.Join(ctxDir, "bin", "lvsctl"), "cluster", "token", "--bootstrap").Output()
	if err != nil {
		t.Fatalf("lvsctl cluster token --bootstrap: %v", err)
	}
	if err := os.WriteFile(tokenFile, token, 0o600); err != nil {
		t.Fatal(err)
	}

	// Registered before up, so a failure anywhere below still tears the
	// project, its volumes, networks and image down.
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.compose("logs", "--no-color", "--tail=100")
			t.Logf("docker-compose logs:\n%s", out)
		}
		if out, err := c.compose("down", "-v", "--remove-orphans", "-t", "5"); err != nil {
			t.Errorf("docker-compose down: %v\n%s", err, out)
		}
		_ = exec.Command("docker", "rmi", "-f", image).Run()
	})
	return c
}

// composeReapStale takes down the projects of earlier runs whose test
// process is gone: t.Cleanup does not run when go test's -timeout panics or
// the process is killed, and their fixed subnets would stay taken.
func composeReapStale(t *testing.T) {
	projects := map[string]bool{}
	for _, args := range [][]string{
		{"ps", "-a", "--format", `{{.Label "com.docker.compose.project"}}`},
		{"network", "ls", "--format", `{{.Label "com.docker.compose.project"}}`},
		{"volume", "ls", "--format", `{{.Label "com.docker.compose.project"}}`},
	} {
		out, _ := exec.Command("docker", args...).Output()
		for _, p := range strings.Fields(string(out)) {
			projects[p] = true
		}
	}
	for p := range projects {
		pid, err := strconv.Atoi(strings.TrimPrefix(p, "shoale2e"))
		if !strings.HasPrefix(p, "shoale2e") || err != nil || syscall.Kill(pid, 0) == nil {
			continue
		}
		t.Logf("taking down %s, left behind by an earlier run", p)
		cmd := exec.Command(composeCommand[0], append(composeCommand[1:],
			"-p", p, "-f", filepath.Join("..", "deploy", "docker-compose.yml"), "down", "-v", "--remove-orphans", "-t", "1")...)
		cmd.Env = append(os.Environ(), "SHOAL_IMAGE=shoal-e2e:"+p)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("docker-compose -p %s down: %v\n%s", p, err, out)
		}
		_ = exec.Command("docker", "rmi", "-f", "shoal-e2e:"+p).Run()
	}
}

// composeSubnets picks two /24s (as three octets) that no docker network and
// no host interface uses, unless SHOAL_E2E_PUBLIC_NET / SHOAL_E2E_CLUSTER_NET
// say which.
func composeSubnets(t *testing.T) (public, cluster string) {
	public, cluster = os.Getenv("SHOAL_E2E_PUBLIC_NET"), os.Getenv("SHOAL_E2E_CLUSTER_NET")
	if public != "" && cluster != "" {
		return public, cluster
	}
	var used []netip.Prefix
	if ids, err := exec.Command("docker", "network", "ls", "-q").Output(); err == nil {
		for _, id := range strings.Fields(string(ids)) {
			out, _ := exec.Command("docker", "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", id).Output()
			for _, s := range strings.Fields(string(out)) {
				if p, err := netip.ParsePrefix(s); err == nil {
					used = append(used, p)
				}
			}
		}
	}
	if as, err := net.InterfaceAddrs(); err == nil {
		for _, a := range as {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				used = append(used, p.Masked())
			}
		}
	}
	free := func(third int) bool {
		p := netip.MustParsePrefix(fmt.Sprintf("10.213.%d.0/24", third))
		for _, u := range used {
			if u.Overlaps(p) {
				return false
			}
		}
		return true
	}
	for third := 101; third < 250; third += 2 {
		if free(third) && free(third+1) {
			return fmt.Sprintf("10.213.%d", third), fmt.Sprintf("10.213.%d", third+1)
		}
	}
	t.Fatal("no free pair of 10.213.x.0/24 subnets; set SHOAL_E2E_PUBLIC_NET and SHOAL_E2E_CLUSTER_NET")
	return "", ""
}

func (c *composeCluster) compose(args ...string) (string, error) {
	args = append([]string{"-p", c.project, "-f", filepath.Join(c.root, "deploy", "docker-compose.yml")}, args...)
	cmd := exec.Command(composeCommand[0], append(composeCommand[1:], args...)...)
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *composeCluster) up() {
	if out, err := c.compose("up", "-d", "--no-build"); err != nil {
		c.t.Fatalf("docker-compose up: %v\n%s", err, out)
	}
	for _, svc := range append([]string{"client", "rs1", "rs2"}, composeDirectors...) {
		out, err := c.compose("ps", "-q", svc)
		id := strings.TrimSpace(out)
		if err != nil || id == "" {
			c.t.Fatalf("container of %s: %v\n%s", svc, err, out)
		}
		c.ids[svc] = id
	}
}

func (c *composeCluster) vip() string { return c.publicNet + ".100" }

func (c *composeCluster) apiAddr(director string) string {
	return fmt.Sprintf("%s.1%s:7070", c.publicNet, strings.TrimPrefix(director, "director"))
}

func (c *composeCluster) raftIP(director string) string {
	return fmt.Sprintf("%s.1%s", c.cluster, strings.TrimPrefix(director, "director"))
}

// exec runs a program in a service's container (docker exec, not
// docker-compose exec: a tenth of the start-up time, which matters when
// polling).
func (c *composeCluster) exec(stdin io.Reader, svc string, args ...string) (string, error) {
	a := []string{"exec"}
	if stdin != nil {
		a = append(a, "-i")
	}
	cmd := exec.Command("docker", append(append(a, c.ids[svc]), args...)...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("%s: %s: %w: %s", svc, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// admin runs lvsctl in director1 against its own API, with root's admin
// credentials from its data volume (lvsctl's default), as `make demo` does.
func (c *composeCluster) admin(stdin io.Reader, args ...string) (string, error) {
	return c.exec(stdin, "director1", append([]string{"/lvsctl", "-s", c.apiAddr("director1")}, args...)...)
}

// issueClientCert issues the client container its operator certificate
// into the client-tls volume, as `make demo` does; it waits for the group
// to have a leader, which records the certificate.
func (c *composeCluster) issueClientCert(t *testing.T, timeout time.Duration) {
	t.Helper()
	composeEventually(t, timeout, "lvsctl certs issue on director1", func() (bool, string) {
		out, err := c.admin(nil, "--request-timeout", "3s", "certs", "issue", "--role", "operator", "--name", "client", "--out", "/client-tls")
		if err != nil {
			return false, err.Error()
		}
		return true, out
	})
}

// checkTLS checks that the API is served over mutual TLS only, that the
// client holds the operator certificate and no more, that every director
// has a certificate of the one cluster CA and that the directors' compose
// health checks authenticate with the node's own admin credentials.
func (c *composeCluster) checkTLS(t *testing.T) {
	t.Helper()
	noCreds := []string{"-e", "SHOAL_CACERT=", "-e", "SHOAL_CERT=", "-e", "SHOAL_KEY="}
	for _, d := range composeDirectors {
		// lvsctl without credentials speaks plaintext: refused.
		out, err := exec.Command("docker", append(append([]string{"exec"}, noCreds...),
			c.ids["client"], "/lvsctl", "-s", c.apiAddr(d), "--request-timeout", "3s", "status")...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "TLS") {
			t.Errorf("plaintext lvsctl status to %s: %v: %s; want a refusal that mentions TLS", d, err, out)
		}
		// TLS with the CA but no client certificate: Unauthenticated.
		out, err = exec.Command("docker", "exec", "-e", "SHOAL_CERT=", "-e", "SHOAL_KEY=",
			c.ids["client"], "/lvsctl", "-s", c.apiAddr(d), "--request-timeout", "3s", "status").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "needs a client certificate") {
			t.Errorf("lvsctl status to %s without a client certificate: %v: %s; want it refused", d, err, out)
		}
	}

	who := &shoalv1.WhoAmIResponse{}
	if err := c.lvsctl(who, "director2", "whoami"); err != nil {
		t.Fatal(err)
	}
	if who.GetName() != "client" || who.GetRole() != "operator" || !who.GetTls() {
		t.Errorf("lvsctl whoami in the client: %v; want client (operator) over TLS", who)
	}
	t.Logf("the client is %s (%s), certificate %s", who.GetName(), who.GetRole(), who.GetCertificate().GetSerialNumber())

	// An operator may not change the configuration.
	if out, err := c.exec(strings.NewReader(c.demoConfig(t)), "client", "/lvsctl", "config", "apply", "-f", "-"); err == nil || !strings.Contains(err.Error(), "needs role admin") {
		t.Errorf("config apply with the operator certificate: %v %s; want it refused for role admin", err, out)
	}

	certs := &shoalv1.GetClusterStatusResponse{}
	if err := c.lvsctl(certs, "director3", "cluster", "certs"); err != nil {
		t.Fatal(err)
	}
	cas := map[string]bool{}
	for _, m := range certs.GetMembers() {
		ci := m.GetCertificate()
		if ci.GetRole() != "node" || ci.GetName() != m.GetId() || !ci.GetNotAfter().AsTime().After(time.Now()) {
			t.Errorf("lvsctl cluster certs: %s has certificate %v (error %q); want a valid node certificate named %s", m.GetId(), ci, m.GetError(), m.GetId())
		}
		cas[ci.GetCaFingerprint()] = true
	}
	if len(certs.GetMembers()) != len(composeDirectors) || len(cas) != 1 {
		t.Errorf("lvsctl cluster certs: %d members under %d CAs; want %d under one", len(certs.GetMembers()), len(cas), len(composeDirectors))
	}

	// The health check is lvsctl status with the node's admin
	// credentials, which director2 and 3 get with their certificates.
	composeEventually(t, 60*time.Second, "every director's compose health check passes", func() (bool, string) {
		var seen []string
		ok := true
		for _, d := range composeDirectors {
			out, err := exec.Command("docker", "inspect", "-f", "{{.State.Health.Status}}", c.ids[d]).Output()
			h := strings.TrimSpace(string(out))
			seen = append(seen, fmt.Sprintf("%s=%s %v", d, h, err))
			ok = ok && h == "healthy"
		}
		return ok, strings.Join(seen, " ")
	})
}

// lvsctl runs lvsctl in the client container against one director's API
// and decodes its JSON output into m.
func (c *composeCluster) lvsctl(m proto.Message, director string, args ...string) error {
	out, err := c.exec(nil, "client", append([]string{"/lvsctl", "-s", c.apiAddr(director), "-o", "json", "--request-timeout", "3s"}, args...)...)
	if err != nil {
		return err
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(out), m); err != nil {
		return fmt.Errorf("decode lvsctl %s: %w: %q", strings.Join(args, " "), err, out)
	}
	return nil
}

func (c *composeCluster) clusterStatus(director string) (*shoalv1.GetClusterStatusResponse, error) {
	st := &shoalv1.GetClusterStatusResponse{}
	return st, c.lvsctl(st, director, "cluster", "status")
}

func (c *composeCluster) nodeStatus(director string) (*shoalv1.NodeStatus, error) {
	st := &shoalv1.GetNodeStatusResponse{}
	if err := c.lvsctl(st, director, "status"); err != nil {
		return nil, err
	}
	return st.GetStatus(), nil
}

// composeEventually polls cond until it holds or the deadline passes; cond
// says what it saw, for the failure message.
func composeEventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last seen: %s", what, timeout, seen)
		}
		time.Sleep(200 * time.Millisecond) // poll interval, not synchronisation
	}
}

// waitOneLeader waits until the running directors agree on one leader and
// every one of them answers; it returns the leader's id.
func (c *composeCluster) waitOneLeader(t *testing.T, timeout time.Duration, skip ...string) string {
	t.Helper()
	var leader string
	composeEventually(t, timeout, "one leader that every running director names", func() (bool, string) {
		leader = ""
		var seen []string
		for _, d := range composeDirectors {
			if contains(skip, d) {
				continue
			}
			st, err := c.nodeStatus(d)
			if err != nil {
				return false, err.Error()
			}
			seen = append(seen, fmt.Sprintf("%s:%s(leader %q, term %d)", d, st.GetRole(), st.GetLeaderId(), st.GetTerm()))
			if st.GetLeaderId() == "" || (leader != "" && st.GetLeaderId() != leader) {
				return false, strings.Join(seen, " ")
			}
			leader = st.GetLeaderId()
		}
		return true, ""
	})
	return leader
}

// waitStableLeader waits until one director has led and held the VIP, as
// every director sees it, for at least hold without a change: a failover
// measured while the group still settles (elections on a loaded machine)
// would measure the settling.
func (c *composeCluster) waitStableLeader(t *testing.T, hold, timeout time.Duration) string {
	t.Helper()
	var leader string
	var since time.Time
	composeEventually(t, timeout, fmt.Sprintf("one leader holding the VIP for %s", hold), func() (bool, string) {
		now := time.Now()
		cur, seen := "", []string{}
		for _, d := range composeDirectors {
			st, err := c.nodeStatus(d)
			if err != nil {
				leader = ""
				return false, err.Error()
			}
			seen = append(seen, fmt.Sprintf("%s:%s(leader %q, vips %v)", d, st.GetRole(), st.GetLeaderId(), st.GetHoldsVips()))
			if st.GetLeaderId() == "" || (cur != "" && st.GetLeaderId() != cur) || st.GetHoldsVips() != (d == st.GetLeaderId()) {
				leader = ""
				return false, strings.Join(seen, " ")
			}
			cur = st.GetLeaderId()
		}
		if cur != leader {
			leader, since = cur, now
		}
		return now.Sub(since) >= hold, strings.Join(seen, " ")
	})
	return leader
}

// drainTime reads from lvsd's log how long its shutdown took after SIGTERM
// ("shutting down" to "lvsd stopped"), to tell lvsd's drain from docker's
// own teardown in the stop time.
func (c *composeCluster) drainTime(d string, since time.Time) string {
	out, err := exec.Command("docker", "logs", "--since", since.UTC().Format(time.RFC3339Nano), c.ids[d]).CombinedOutput()
	if err != nil {
		return "unknown"
	}
	var begin, end time.Time
	for _, line := range strings.Split(string(out), "\n") {
		ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		switch {
		case err != nil:
		case strings.Contains(line, `msg="shutting down`) && begin.IsZero():
			begin = at
		case strings.Contains(line, `msg="lvsd stopped"`):
			end = at
		}
	}
	if begin.IsZero() || end.IsZero() {
		return "unknown"
	}
	return end.Sub(begin).Round(time.Millisecond).String()
}

// composeFigure logs one measured figure and, when SHOAL_E2E_FIGURES names
// a file, appends it there: `go test ./...` shows a passing test's log only
// with -v, and `make test` prints that file at the end.
func composeFigure(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf("compose: "+format, args...)
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

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

// applyDemo applies deploy/demo.yaml with lvsctl on director1 (a change
// of configuration needs the admin role) and returns the committed serial.
func (c *composeCluster) applyDemo(t *testing.T) uint64 {
	t.Helper()
	out, err := c.admin(strings.NewReader(c.demoConfig(t)), "config", "apply", "-f", "-")
	if err != nil {
		t.Fatalf("lvsctl apply: %v\n%s", err, out)
	}
	t.Logf("lvsctl apply:\n%s", out)
	st, err := c.clusterStatus("director1")
	if err != nil {
		t.Fatal(err)
	}
	if st.GetSerial() == 0 {
		t.Fatalf("serial after apply is 0: %v", st)
	}
	return st.GetSerial()
}

// demoConfig is deploy/demo.yaml for this project's public network.
func (c *composeCluster) demoConfig(t *testing.T) string {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join(c.root, "deploy", "demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(tmpl), "${SHOAL_PUBLIC_NET}", c.publicNet)
}

// waitSerialEverywhere waits until every running director reports serial as
// applied, asked through its own API.
func (c *composeCluster) waitSerialEverywhere(t *testing.T, serial uint64, timeout time.Duration) {
	t.Helper()
	composeEventually(t, timeout, fmt.Sprintf("every director applied serial %d", serial), func() (bool, string) {
		var seen []string
		ok := true
		for _, d := range composeDirectors {
			st, err := c.nodeStatus(d)
			if err != nil {
				return false, err.Error()
			}
			seen = append(seen, fmt.Sprintf("%s=%d", d, st.GetAppliedSerial()))
			ok = ok && st.GetAppliedSerial() == serial
		}
		return ok, strings.Join(seen, " ")
	})
	t.Logf("every director applied serial %d", serial)
}

// ask makes one request to the VIP from the client container.
func (c *composeCluster) ask() (string, error) {
	out, err := c.exec(nil, "client", "/shoal-demo", "get", "-timeout", "1s", "-url", "http://"+c.vip()+"/")
	if err != nil {
		return "", err
	}
	_, who, _ := strings.Cut(strings.TrimSpace(out), "-> ")
	return who, nil
}

// waitVIPHolder waits until the cluster reports holder ("": any director)
// as the VIP holder, that director has the VIP on an interface and the VIP
// answers: in vip mode with the holder's own responder, in ipvs mode with a
// real server. It returns the holder.
func (c *composeCluster) waitVIPHolder(t *testing.T, want string, timeout time.Duration) string {
	t.Helper()
	var holder string
	what := "a director holds the VIP and the VIP answers"
	if want != "" {
		what = want + " holds the VIP and the VIP answers"
	}
	composeEventually(t, timeout, what, func() (bool, string) {
		var st *shoalv1.GetClusterStatusResponse
		var err error
		for _, d := range composeDirectors {
			if want == "" || d == want {
				if st, err = c.clusterStatus(d); err == nil {
					break
				}
			}
		}
		if err != nil {
			return false, err.Error()
		}
		holder = st.GetVipHolder()
		if holder == "" || (want != "" && holder != want) {
			return false, "vip_holder " + holder
		}
		addrs, err := c.exec(nil, holder, "/shoal-demo", "addrs")
		if err != nil || !strings.Contains(addrs, c.vip()+"/") {
			return false, fmt.Sprintf("addresses of %s: %s %v", holder, addrs, err)
		}
		who, err := c.ask()
		if err != nil {
			return false, err.Error()
		}
		if c.dataplane == "ipvs" {
			return who == "rs1" || who == "rs2", "answered by " + who
		}
		return who == holder, "answered by " + who
	})
	return holder
}

// composeProbe is shoal-demo probe running in the client container.
type composeProbe struct {
	cmd    *exec.Cmd
	events chan map[string]any
	done   chan error
	once   sync.Once
}

func (c *composeCluster) startProbe(t *testing.T, from string) *composeProbe {
	t.Helper()
	args := []string{"exec", c.ids["client"], "/shoal-demo", "probe", "-url", "http://" + c.vip() + "/",
		"-interval", "10ms", "-timeout", "200ms", "-max", "60s"}
	if c.dataplane == "ipvs" {
		// Real servers answer in turn whoever leads: count the first
		// answer after an outage as the switch.
		args = append(args, "-after-failure")
	} else {
		args = append(args, "-from", from)
	}
	p := &composeProbe{cmd: exec.Command("docker", args...), events: make(chan map[string]any, 8), done: make(chan error, 1)}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	p.cmd.Stderr = &stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start probe: %v", err)
	}
	// The reader ends when the probe's stdout closes; done reports the exit.
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				p.events <- ev
			}
		}
		close(p.events)
		err := p.cmd.Wait()
		if err != nil {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		}
		p.done <- err
	}()
	t.Cleanup(p.stop)
	return p
}

// next waits for the probe's next event of kind.
func (p *composeProbe) next(kind string, timeout time.Duration) (map[string]any, error) {
	limit := time.After(timeout)
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				return nil, fmt.Errorf("probe ended before %q", kind)
			}
			if ev["event"] == kind {
				return ev, nil
			}
			if ev["event"] == "timeout" {
				return nil, fmt.Errorf("probe gave up: %v", ev)
			}
		case <-limit:
			return nil, fmt.Errorf("no %q from the probe within %s", kind, timeout)
		}
	}
}

// stop ends the local docker exec and waits for its reader. (The probe in
// the container ends by itself at -max.)
func (p *composeProbe) stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
}

func unixNano(v any) time.Time {
	f, _ := v.(float64)
	return time.Unix(0, int64(f))
}

// killLeader docker-kills the leader, measures until the VIP answers from
// the new leader, then starts the old one again and waits for it to catch
// up. It returns the new leader.
func (c *composeCluster) killLeader(t *testing.T, serial uint64) string {
	// On a loaded machine the group may re-elect between "stable" and the
	// probe's first answers; then the measurement starts over.
	var leader string
	var p *composeProbe
	for attempt := 1; ; attempt++ {
		leader = c.waitStableLeader(t, 2*time.Second, 60*time.Second)
		p = c.startProbe(t, leader)
		_, err := p.next("ready", 20*time.Second)
		if err == nil {
			break
		}
		p.stop()
		if attempt == 3 {
			t.Fatalf("probe never steady on %s: %v", leader, err)
		}
		t.Logf("probe on %s: %v; the group moved, measuring again", leader, err)
	}
	killed := time.Now()
	if out, err := exec.Command("docker", "kill", c.ids[leader]).CombinedOutput(); err != nil {
		t.Fatalf("docker kill %s: %v\n%s", leader, err, out)
	}
	ev, err := p.next("switched", 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	firstNew, lastOld := unixNano(ev["first_new_unix_nano"]), unixNano(ev["last_old_unix_nano"])
	composeFigure(t, "FAILOVER docker kill %s -> VIP answered by %v: kill-to-answer %s, outage (last old answer to first new) %s, %v failed requests",
		leader, ev["name"], firstNew.Sub(killed).Round(time.Millisecond), firstNew.Sub(lastOld).Round(time.Millisecond), ev["failures"])

	next := c.waitOneLeader(t, 30*time.Second, leader)
	if next == leader {
		t.Fatalf("killed %s is still named leader", leader)
	}
	if c.dataplane != "ipvs" && ev["name"] != next {
		t.Errorf("VIP answered by %v, but the new leader is %s", ev["name"], next)
	}
	c.waitVIPHolder(t, "", 20*time.Second)

	if out, err := exec.Command("docker", "start", c.ids[leader]).CombinedOutput(); err != nil {
		t.Fatalf("docker start %s: %v\n%s", leader, err, out)
	}
	c.waitSerialEverywhere(t, serial, 60*time.Second)
	final := c.waitOneLeader(t, 30*time.Second)
	c.assertOneVIPHolder(t, "")
	return final
}

// partitionLeader cuts the leader off the raft network (its VIP interface
// stays up), measures how long it keeps the VIP and how soon another node
// raises it, then reconnects it and checks it rejoins as one of three.
func (c *composeCluster) partitionLeader(t *testing.T, serial uint64) string {
	// Watchers inside the containers timestamp the moment the VIP leaves
	// the old leader and appears on another director. They start from a
	// settled group; should it re-elect before the cut, start over.
	var leader string
	var watches []*composeAddrWatch
	for attempt := 1; ; attempt++ {
		leader = c.waitStableLeader(t, 2*time.Second, 60*time.Second)
		watches = watches[:0]
		var err error
		for _, d := range composeDirectors {
			var w *composeAddrWatch
			if w, err = c.watchVIP(t, d, d == leader); err != nil {
				break
			}
			watches = append(watches, w)
		}
		if err == nil {
			break
		}
		for _, w := range watches {
			w.stop()
		}
		if attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("%v; the group moved, measuring again", err)
	}
	network := c.project + "_cluster"
	cut := time.Now()
	if out, err := exec.Command("docker", "network", "disconnect", network, c.ids[leader]).CombinedOutput(); err != nil {
		t.Fatalf("docker network disconnect: %v\n%s", err, out)
	}
	var dropped, raised time.Time
	var raisedBy string
	results := make(chan *composeAddrWatch, len(watches))
	for _, w := range watches {
		go func(w *composeAddrWatch) { w.wait(); results <- w }(w)
	}
	for dropped.IsZero() || raised.IsZero() {
		w := <-results
		switch {
		case w.err != nil && w.who == leader:
			t.Fatalf("old leader %s kept the VIP: %v", leader, w.err)
		case w.err != nil:
			continue // the director that did not take over; its watcher times out
		case w.who == leader:
			dropped = w.at
		default:
			raised, raisedBy = w.at, w.who
		}
	}
	// Positive: both held the VIP for that long; negative: nobody did.
	overlap := dropped.Sub(raised).Round(time.Millisecond)
	composeFigure(t, "PARTITION %s cut off the raft network: dropped the VIP after %s; %s raised it after %s (two holders for %s)",
		leader, dropped.Sub(cut).Round(time.Millisecond), raisedBy, raised.Sub(cut).Round(time.Millisecond), max(overlap, 0))
	if bound := composeLeaseBound(); dropped.Sub(cut) > bound {
		t.Errorf("old leader held the VIP %s after the cut; want at most %s (lease plus reconcile)", dropped.Sub(cut), bound)
	}
	st, err := c.nodeStatus(leader)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetHoldsVips() || st.GetRole() == "leader" {
		t.Errorf("cut-off %s reports role %s, holds_vips %v", leader, st.GetRole(), st.GetHoldsVips())
	}
	c.waitVIPHolder(t, "", 20*time.Second)

	if out, err := exec.Command("docker", "network", "connect", "--ip", c.raftIP(leader), network, c.ids[leader]).CombinedOutput(); err != nil {
		t.Fatalf("docker network connect: %v\n%s", err, out)
	}
	reconnected := time.Now()
	final := c.waitOneLeader(t, 30*time.Second)
	c.waitSerialEverywhere(t, serial, 30*time.Second)
	composeFigure(t, "PARTITION %s back on the raft network: one leader (%s) again after %s", leader, final, time.Since(reconnected).Round(time.Millisecond))
	c.assertOneVIPHolder(t, "")
	return final
}

// composeLeaseBound is how long a cut-off leader may keep its VIP: its
// fence lapses one leader lease (180ms with the lan profile) after the last
// request a quorum accepted, the dataplane then drops the addresses; the
// rest is slack for a
// shared CI machine (1.4s was seen at a load average of 20 on 2 cores). SHOAL_E2E_LEASE_BOUND overrides it.
func composeLeaseBound() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("SHOAL_E2E_LEASE_BOUND")); err == nil {
		return d
	}
	return 3 * time.Second
}

// assertOneVIPHolder checks that holder ("": any one director), and no
// other director, has the VIP on an interface.
func (c *composeCluster) assertOneVIPHolder(t *testing.T, holder string) {
	t.Helper()
	what := "exactly one director has the VIP"
	if holder != "" {
		what = "only " + holder + " has the VIP"
	}
	composeEventually(t, 10*time.Second, what, func() (bool, string) {
		var with []string
		for _, d := range composeDirectors {
			out, err := c.exec(nil, d, "/shoal-demo", "addrs")
			if err != nil {
				return false, err.Error()
			}
			if strings.Contains(out, c.vip()+"/") {
				with = append(with, d)
			}
		}
		return len(with) == 1 && (holder == "" || with[0] == holder), fmt.Sprintf("VIP on %v", with)
	})
}

// rollingRestart restarts the directors one at a time (docker stop: SIGTERM,
// SIGKILL after 10s; then docker start), each time waiting for the group to
// be whole again.
func (c *composeCluster) rollingRestart(t *testing.T, serial uint64) {
	start := time.Now()
	for _, d := range composeDirectors {
		t0 := time.Now()
		if out, err := exec.Command("docker", "stop", "-t", "10", c.ids[d]).CombinedOutput(); err != nil {
			t.Fatalf("docker stop %s: %v\n%s", d, err, out)
		}
		stopped := time.Since(t0)
		// lvsd leaves with 0 after draining; 137 means docker had to
		// SIGKILL it after the grace period, i.e. the drain hung.
		out, err := exec.Command("docker", "inspect", "-f", "{{.State.ExitCode}}", c.ids[d]).Output()
		if code := strings.TrimSpace(string(out)); err != nil || code != "0" {
			t.Errorf("%s after SIGTERM: exit code %s (%v); want a clean drain", d, code, err)
		}
		if out, err := exec.Command("docker", "start", c.ids[d]).CombinedOutput(); err != nil {
			t.Fatalf("docker start %s: %v\n%s", d, err, out)
		}
		c.waitOneLeader(t, 60*time.Second)
		c.waitSerialEverywhere(t, serial, 60*time.Second)
		composeFigure(t, "ROLLING restart of %s: docker stop took %s (lvsd's own drain %s), whole again after %s", d,
			stopped.Round(time.Millisecond), c.drainTime(d, t0), time.Since(t0).Round(time.Millisecond))
	}
	// The group may still re-elect on a loaded machine: wait for the
	// settled state instead of sampling it once.
	leader := c.waitStableLeader(t, time.Second, 60*time.Second)
	composeEventually(t, 30*time.Second, "one leader and two followers", func() (bool, string) {
		roles := map[string]int{}
		for _, d := range composeDirectors {
			st, err := c.nodeStatus(d)
			if err != nil {
				return false, err.Error()
			}
			roles[st.GetRole()]++
		}
		return roles["leader"] == 1 && roles["follower"] == 2, fmt.Sprint(roles)
	})
	cfg := &shoalv1.GetConfigResponse{}
	if err := c.lvsctl(cfg, leader, "config", "get"); err != nil {
		t.Fatal(err)
	}
	if got := cfg.GetConfig(); got.GetSerial() != serial || len(got.GetServices()) != 1 || got.GetServices()[0].GetName() != "web" {
		t.Errorf("config after the rolling restart: serial %d, services %v; want serial %d with service web", got.GetSerial(), got.GetServices(), serial)
	}
	c.waitVIPHolder(t, "", 20*time.Second)
	c.assertOneVIPHolder(t, "")
	composeFigure(t, "ROLLING restart of all three directors: %s, config serial %d kept, leader %s", time.Since(start).Round(time.Millisecond), serial, leader)
}

// composeAddrWatch is shoal-demo wait-addr running in a director: it
// timestamps the moment the VIP appears on (or leaves) that director.
type composeAddrWatch struct {
	who    string
	cmd    *exec.Cmd
	stdout *bufio.Scanner
	at     time.Time
	err    error
}

// watchVIP starts a watcher in director d and returns once the watcher has
// seen the VIP's current state, which must be the opposite of what it
// waits for.
func (c *composeCluster) watchVIP(t *testing.T, d string, untilGone bool) (*composeAddrWatch, error) {
	t.Helper()
	w := &composeAddrWatch{who: d, cmd: exec.Command("docker", "exec", c.ids[d], "/shoal-demo", "wait-addr",
		"-addr", c.vip(), "-gone="+strconv.FormatBool(untilGone), "-max", "20s")}
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w.cmd.Stderr = os.Stderr
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("start wait-addr in %s: %v", d, err)
	}
	t.Cleanup(func() { _ = w.cmd.Process.Kill() })
	w.stdout = bufio.NewScanner(out)
	want := "watching absent"
	if untilGone {
		want = "watching present"
	}
	if !w.stdout.Scan() || w.stdout.Text() != want {
		err := fmt.Errorf("wait-addr in %s: want %q first, got %q (%v)", d, want, w.stdout.Text(), w.stdout.Err())
		w.stop()
		return nil, err
	}
	return w, nil
}

// stop ends the local docker exec of a watcher that is no longer needed.
func (w *composeAddrWatch) stop() {
	_ = w.cmd.Process.Kill()
	_ = w.cmd.Wait()
}

// wait reads the watcher's timestamp and waits for it to exit.
func (w *composeAddrWatch) wait() {
	line := ""
	if w.stdout.Scan() {
		line = strings.TrimSpace(w.stdout.Text())
	}
	err := w.cmd.Wait()
	if err != nil {
		w.err = fmt.Errorf("wait-addr in %s: %w", w.who, err)
		return
	}
	n, err := strconv.ParseInt(line, 10, 64)
	if err != nil {
		w.err = fmt.Errorf("wait-addr in %s printed %q", w.who, line)
		return
	}
	w.at = time.Unix(0, n)
}
