package health

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/dataplane/script"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Check kinds as the configuration spells them.
const (
	KindTCP        = "tcp"
	KindSendExpect = "send-expect"
	KindHTTP       = "http"
	KindHTTPS      = "https"
	KindExec       = "exec"
	KindNone       = "none"
)

// maxRead bounds what a check reads from a server or a program: enough for
// any banner, status page or script output, small enough that 10,000 checks
// cannot exhaust memory.
const maxRead = 64 << 10

// probe is one resolved health check: the HealthCheck message with its
// defaults filled in, aimed at one real server. It is immutable once built
// and safe to run from several goroutines.
type probe struct {
	kind     string
	target   netip.AddrPort // the real server's address and the port checked
	network  string         // tcp or udp (send-expect on a udp service)
	send     []byte
	expect   string
	re       *regexp.Regexp
	path     string
	status   int
	host     string
	command  []string
	shell    bool
	interval time.Duration
	timeout  time.Duration
	rules    rules
	initUp   bool
	client   *http.Client
	scripts  *script.Runner // runs exec checks; nil refuses them
	invalid  error          // the definition could not be used; every run fails with it

	// fingerprint identifies the definition: two probes with the same
	// fingerprint check the same thing the same way, so a server's history
	// carries over from one to the other.
	fingerprint string
}

// newProbe resolves hc (nil = all defaults) for real server rs of service s.
func newProbe(s *shoalv1.VirtualService, rs *shoalv1.RealServer, addr netip.Addr, hc *shoalv1.HealthCheck) (*probe, error) {
	if hc == nil {
		hc = &shoalv1.HealthCheck{}
	}
	p := &probe{
		kind:     hc.GetKind(),
		network:  "tcp",
		expect:   hc.GetExpect(),
		path:     hc.GetHttpPath(),
		status:   int(hc.GetHttpStatus()),
		host:     hc.GetHttpHost(),
		command:  hc.GetCommand(),
		shell:    hc.GetShell(),
		interval: hc.GetInterval().AsDuration(),
		timeout:  hc.GetTimeout().AsDuration(),
		initUp:   hc.GetInitiallyUp(),
		rules: rules{
			Rise:      int(hc.GetRise()),
			Fall:      int(hc.GetFall()),
			Reentry:   hc.GetReentry().AsDuration(),
			DownAfter: hc.GetDownAfter().AsDuration(),
		},
	}
	// Zero values mean the defaults even when the config was not normalised.
	if p.kind == "" {
		p.kind = config.DefaultCheckKind
	}
	if p.path == "" {
		p.path = config.DefaultHTTPPath
	}
	if !strings.HasPrefix(p.path, "/") {
		p.path = "/" + p.path // "health" would otherwise join the port: http://10.0.0.1:80health
	}
	if p.interval <= 0 {
		p.interval = config.DefaultCheckInterval
	}
	if p.timeout <= 0 {
		p.timeout = config.DefaultCheckTimeout
	}
	if p.rules.Rise <= 0 {
		p.rules.Rise = config.DefaultCheckRise
	}
	if p.rules.Fall <= 0 {
		p.rules.Fall = config.DefaultCheckFall
	}
	port := config.RealServerPort(s, rs)
	if hc.GetPort() != 0 {
		port = hc.GetPort()
	}
	p.target = netip.AddrPortFrom(addr, uint16(port))
	if strings.EqualFold(s.GetProtocol(), "udp") {
		p.network = "udp"
	}
	p.send = []byte(config.DecodeSend(hc.GetSend()))
	if hc.GetRegex() && p.expect != "" {
		re, err := regexp.Compile(p.expect)
		if err != nil {
			return nil, fmt.Errorf("expect regex %q: %w", p.expect, err)
		}
		p.re = re
	}
	switch p.kind {
	case KindTCP, KindSendExpect, KindNone:
	case KindHTTP, KindHTTPS:
		p.client = newHTTPClient(p, hc)
	case KindExec:
		if len(p.command) == 0 {
			return nil, errors.New("exec check without a command")
		}
	default:
		return nil, fmt.Errorf("unknown check kind %q", p.kind)
	}
	p.fingerprint = fmt.Sprintf("%s|%s|%s|%q|%q|%t|%q|%d|%q|%q|%t|%q|%t|%s|%s|%+v|%t",
		p.kind, p.target, p.network, p.send, p.expect, p.re != nil, p.path, p.status, p.host,
		p.command, p.shell, hc.GetTlsServerName(), hc.GetTlsSkipVerify(),
		p.interval, p.timeout, p.rules, p.initUp)
	return p, nil
}

// run performs one check; nil means the server passed. The context carries
// the per-check deadline.
func (p *probe) run(ctx context.Context) error {
	if p.invalid != nil {
		return failf(CauseConfig, "unusable check: %s", p.invalid)
	}
	if !p.target.Addr().IsValid() {
		return failf(CauseConfig, "no address to check")
	}
	if p.target.Port() == 0 && p.kind != KindExec && p.kind != KindNone {
		return failf(CauseConfig, "no port to check: set health_check.port")
	}
	switch p.kind {
	case KindTCP:
		return p.runTCP(ctx)
	case KindSendExpect:
		return p.runSendExpect(ctx)
	case KindHTTP, KindHTTPS:
		return p.runHTTP(ctx)
	case KindExec:
		return p.runExec(ctx)
	}
	return nil
}

func (p *probe) dial(ctx context.Context) (net.Conn, error) {
	// No keepalive: the connection lives for one check, and its four
	// setsockopt calls are a measurable share of a 10,000-check load.
	d := net.Dialer{KeepAlive: -1}
	c, err := d.DialContext(ctx, p.network, p.target.String())
	if err != nil {
		c, why := p.cause(ctx, err)
		return nil, failf(c, "connect %s: %s", p.target, why)
	}
	return c, nil
}

func (p *probe) runTCP(ctx context.Context) error {
	c, err := p.dial(ctx)
	if err != nil {
		return err
	}
	// Abortive close (RST, as HAProxy's checks do): a director checking
	// 10,000 servers every second would otherwise keep ~600,000 sockets in
	// TIME_WAIT.
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	return c.Close()
}

func (p *probe) runSendExpect(ctx context.Context) error {
	c, err := p.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	// Cancellation (a removed server) must not wait for the deadline.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if len(p.send) > 0 || p.network == "udp" {
		if _, err := c.Write(p.send); err != nil {
			cause, why := p.cause(ctx, err)
			return failf(cause, "send to %s: %s", p.target, why)
		}
	}
	// Over TCP a connection that took the request proves a listener; a UDP
	// write proves nothing, so UDP always waits for a reply.
	if p.expect == "" && len(p.send) > 0 && p.network == "tcp" {
		return nil
	}
	buf := make([]byte, 0, 4096)
	for len(buf) < maxRead {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):min(cap(buf), maxRead)])
		buf = buf[:len(buf)+n]
		if n > 0 && (p.expect == "" || p.matches(buf)) {
			return nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return p.notFound(buf, "", CauseMismatch)
			}
			cause, why := p.cause(ctx, err)
			if len(buf) == 0 && cause != CauseTimeout {
				return failf(cause, "read from %s: %s", p.target, why)
			}
			return p.notFound(buf, " before "+why, cause)
		}
	}
	return p.notFound(buf, " (read limit)", CauseMismatch)
}

func (p *probe) matches(b []byte) bool {
	if p.re != nil {
		return p.re.Match(b)
	}
	return bytes.Contains(b, []byte(p.expect))
}

// notFound reports a reply that did not match; c is CauseMismatch unless
// the reply was cut short (timeout, reset).
func (p *probe) notFound(b []byte, suffix string, c Cause) error {
	if p.expect == "" {
		return failf(c, "no reply in %d bytes%s", len(b), suffix)
	}
	what := "expect"
	if p.re != nil {
		what = "expect regex"
	}
	return failf(c, "%s %q not found in %d bytes%s", what, p.expect, len(b), suffix)
}

func newHTTPClient(p *probe, hc *shoalv1.HealthCheck) *http.Client {
	target := p.target.String()
	serverName := hc.GetTlsServerName()
	if serverName == "" && p.host != "" {
		serverName = p.host
		if h, _, err := net.SplitHostPort(p.host); err == nil {
			serverName = h
		}
	}
	tr := &http.Transport{
		// Every check tests the server afresh: a kept-alive connection
		// would hide a listener that stopped accepting.
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			// Always the real server, whatever Host the request names.
			d := net.Dialer{KeepAlive: -1}
			return d.DialContext(ctx, network, target)
		},
		TLSClientConfig: &tls.Config{
			ServerName:         serverName,
			InsecureSkipVerify: hc.GetTlsSkipVerify(), //nolint:gosec // operator's explicit choice
		},
		MaxResponseHeaderBytes: maxRead,
		ForceAttemptHTTP2:      false,
	}
	return &http.Client{
		Transport: tr,
		// A redirect is an answer; following it would check another server.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (p *probe) runHTTP(ctx context.Context) error {
	scheme := "http"
	if p.kind == KindHTTPS {
		scheme = "https"
	}
	url := scheme + "://" + p.target.String() + p.path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return failf(CauseConfig, "request %s: %s", url, err)
	}
	if p.host != "" {
		req.Host = p.host
	}
	req.Header.Set("User-Agent", "shoal-health/1")
	resp, err := p.client.Do(req)
	if err != nil {
		c, why := p.httpCause(ctx, err)
		return failf(c, "GET %s: %s", url, why)
	}
	defer resp.Body.Close()
	switch {
	case p.status != 0 && resp.StatusCode != p.status:
		return failf(CauseStatus, "status %d, want %d", resp.StatusCode, p.status)
	case p.status == 0 && (resp.StatusCode < 200 || resp.StatusCode > 399):
		return failf(CauseStatus, "status %d, want 2xx/3xx", resp.StatusCode)
	}
	if p.expect == "" {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRead))
	if p.matches(body) {
		return nil
	}
	if err != nil {
		c, why := p.cause(ctx, err)
		return bodyFailure(p.notFound(body, " before "+why, c))
	}
	return bodyFailure(p.notFound(body, "", CauseMismatch))
}

func bodyFailure(err error) error {
	return failf(CauseOf(err), "body: %s", err)
}

func (p *probe) httpCause(ctx context.Context, err error) (Cause, string) {
	var errno syscall.Errno
	var ce *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	var ae tls.AlertError
	switch {
	case ctx.Err() != nil || errors.As(err, &errno):
		return p.cause(ctx, err)
	case errors.As(err, &ce):
		return CauseTLS, "tls: " + ce.Err.Error()
	case errors.As(err, &rh):
		return CauseTLS, "tls: " + rh.Msg
	case errors.As(err, &ae):
		return CauseTLS, ae.Error()
	}
	// A url.Error repeats the method and URL the caller already names.
	if inner := errors.Unwrap(err); inner != nil {
		err = inner
	}
	c, why := p.cause(ctx, err)
	if c == CauseOther {
		c = CauseProtocol
	}
	return c, why
}

func (p *probe) runExec(ctx context.Context) error {
	if p.scripts == nil {
		return failf(CauseConfig, "%s: exec checks are off on this node (no script runner)", p.command[0])
	}
	host, port := p.target.Addr().String(), strconv.Itoa(int(p.target.Port()))
	// Per argument, so an address lands in one argument whatever the rest
	// holds; the address comes from the config's validated netip, so it
	// carries no shell syntax even when a shell is allowed.
	sub := strings.NewReplacer("%h", host, "%p", port)
	args := make([]string, len(p.command))
	for i, a := range p.command {
		args[i] = sub.Replace(a)
	}
	res := p.scripts.Run(ctx, script.Command{
		Argv: args, Shell: p.shell,
		Env: []string{"SHOAL_HOST=" + host, "SHOAL_PORT=" + port},
	})
	var refused *script.RefusedError
	var ee *exec.ExitError
	switch {
	case res.Err == nil:
	case errors.As(res.Err, &refused):
		return failf(CauseRefusedProgram, "%s", refused)
	case errors.Is(res.Err, context.DeadlineExceeded):
		return failf(CauseTimeout, "%s: killed after timeout %s", p.command[0], p.timeout)
	case errors.Is(res.Err, context.Canceled):
		return failf(CauseCancelled, "%s: check cancelled", p.command[0])
	case errors.As(res.Err, &ee):
		return failf(CauseExit, "%s: %s%s", p.command[0], ee.ProcessState.String(), firstLine(res.Output))
	default:
		return failf(CauseConfig, "%s: %s", p.command[0], res.Err)
	}
	if p.expect != "" && !p.matches(res.Output) {
		return failf(CauseMismatch, "%s: %s", p.command[0], p.notFound(res.Output, " of output", CauseMismatch))
	}
	return nil
}

// firstLine gives a failing program's first line of output as context.
func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte("\n"))
	if len(line) == 0 {
		return ""
	}
	if len(line) > 200 {
		line = line[:200]
	}
	return ": " + string(line)
}
