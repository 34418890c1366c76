package health

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoal-lb/shoal/dataplane/script"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// serveTCP runs handle for every connection to a fresh listener on
// 127.0.0.1 until the test ends.
func serveTCP(t *testing.T, handle func(net.Conn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	conns := make(chan net.Conn, 64)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(conns)
		for c := range conns {
			c.Close()
		}
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}

// closedPort returns a loopback port nobody listens on.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	return ap
}

// probeAt builds the probe of hc for a real server at target in a service
// of the given protocol.
func probeAt(t *testing.T, target netip.AddrPort, protocol string, hc *shoalv1.HealthCheck) *probe {
	t.Helper()
	if hc.Timeout == nil {
		// Generous: a TLS handshake under -race on a busy machine can take
		// a second. Tests about timeouts set their own.
		hc.Timeout = durationpb.New(10 * time.Second)
	}
	svc := &shoalv1.VirtualService{Name: "web", Port: 80, Protocol: protocol, HealthCheck: hc}
	rs := &shoalv1.RealServer{Address: target.Addr().String(), Port: uint32(target.Port())}
	if hc.Kind == KindExec {
		dir := execDir(t)
		if !hc.Shell && !filepath.IsAbs(hc.Command[0]) {
			// The test names system programs; the router runs only what
			// lies in its script directory.
			prog, err := exec.LookPath(hc.Command[0])
			if err != nil {
				t.Skipf("exec checks need %s: %v", hc.Command[0], err)
			}
			hc.Command[0] = filepath.Join(dir, hc.Command[0])
			if err := os.Symlink(prog, hc.Command[0]); err != nil && !os.IsExist(err) {
				t.Fatal(err)
			}
		}
	}
	p, err := newProbe(svc, rs, target.Addr(), hc)
	if err != nil {
		t.Fatal(err)
	}
	if hc.Kind == KindExec {
		p.scripts = testScripts(t, execDir(t), true)
	}
	return p
}

// execDirs holds each test's script directory.
var execDirs sync.Map

// execDir is a root-owned script directory for test t (exec checks need
// root: the runner wants root-owned programs and switches users).
func execDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("exec checks need root to run as the script user")
	}
	if d, ok := execDirs.Load(t.Name()); ok {
		return d.(string)
	}
	base := t.TempDir()
	d := filepath.Join(base, "scripts")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for p := base; p != os.TempDir(); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	execDirs.Store(t.Name(), d)
	t.Cleanup(func() { execDirs.Delete(t.Name()) })
	return d
}

func testScripts(t *testing.T, dir string, shell bool) *script.Runner {
	t.Helper()
	r, err := script.New(script.Options{Dirs: []string{dir}, AllowShell: shell})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func runProbe(p *probe) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	return p.run(ctx)
}

// checkResult compares an error with the wanted outcome: "" is success,
// anything else must be a substring of the error.
func checkResult(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("check failed: %v", err)
	case want != "" && err == nil:
		t.Fatalf("check passed, want failure %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

func TestTCPCheck(t *testing.T) {
	up := serveTCP(t, func(net.Conn) {})
	down := closedPort(t)
	tests := []struct {
		name   string
		target netip.AddrPort
		want   string
	}{
		{"listening", up, ""},
		{"refused", down, fmt.Sprintf("connect %s: connection refused", down)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := probeAt(t, tt.target, "tcp", &shoalv1.HealthCheck{Kind: "tcp"})
			checkResult(t, runProbe(p), tt.want)
		})
	}
}

func TestTCPCheckNoPort(t *testing.T) {
	// A fwmark service has no port; without health_check.port there is
	// nothing to connect to.
	svc := &shoalv1.VirtualService{Name: "mark", Fwmark: 7}
	rs := &shoalv1.RealServer{Address: "127.0.0.1"}
	p, err := newProbe(svc, rs, netip.MustParseAddr("127.0.0.1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, runProbe(p), "no port to check: set health_check.port")
}

func TestSendExpectCheck(t *testing.T) {
	// httpish answers a request line with a status line, as a web server would.
	httpish := serveTCP(t, func(c net.Conn) {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "GET / HTTP/1.0\r") {
			io.WriteString(c, "400 bad\n")
			return
		}
		io.WriteString(c, "HTTP/1.0 200 OK\r\n\r\n")
	})
	wrong := serveTCP(t, func(c net.Conn) {
		bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "nope\n")
	})
	banner := serveTCP(t, func(c net.Conn) { io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n"); io.Copy(io.Discard, c) })
	hang := serveTCP(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	reset := serveTCP(t, func(c net.Conn) {
		c.(*net.TCPConn).SetLinger(0)
		bufio.NewReader(c).ReadString('\n')
	})
	tests := []struct {
		name   string
		target netip.AddrPort
		hc     *shoalv1.HealthCheck
		want   string
	}{
		{"answers", httpish, &shoalv1.HealthCheck{Send: `GET / HTTP/1.0\r\n\r\n`, Expect: "200 OK"}, ""},
		{"regex", httpish, &shoalv1.HealthCheck{Send: `GET / HTTP/1.0\r\n\r\n`, Expect: `^HTTP/1\.[01] 2\d\d`, Regex: true}, ""},
		{"escapes matter", httpish, &shoalv1.HealthCheck{Send: `GET / HTTP/1.0\n`, Expect: "200 OK"}, `expect "200 OK" not found in 8 bytes`},
		{"answers wrongly", wrong, &shoalv1.HealthCheck{Send: `HELO\r\n`, Expect: "HTTP"}, `expect "HTTP" not found in 5 bytes`},
		{"regex no match", wrong, &shoalv1.HealthCheck{Send: `HELO\r\n`, Expect: `^HTTP`, Regex: true}, `expect regex "^HTTP" not found in 5 bytes`},
		{"banner", banner, &shoalv1.HealthCheck{Expect: "SSH-2.0-"}, ""},
		{"banner any", banner, &shoalv1.HealthCheck{}, ""},
		{"send suffices", hang, &shoalv1.HealthCheck{Send: `PING\r\n`}, ""},
		{"hangs", hang, &shoalv1.HealthCheck{Send: `PING\r\n`, Expect: "PONG", Timeout: durationpb.New(200 * time.Millisecond)},
			`expect "PONG" not found in 0 bytes before timeout after 200ms`},
		{"resets", reset, &shoalv1.HealthCheck{Send: `PING\r\n`, Expect: "PONG"}, "connection reset by peer"},
		{"refused", closedPort(t), &shoalv1.HealthCheck{Send: `PING\r\n`, Expect: "PONG"}, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.hc.Kind = "send-expect"
			start := time.Now()
			checkResult(t, runProbe(probeAt(t, tt.target, "tcp", tt.hc)), tt.want)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("check took %s", d)
			}
		})
	}
}

func TestSendExpectUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	echo := netip.MustParseAddrPort(pc.LocalAddr().String())
	closed := netip.AddrPortFrom(echo.Addr(), closedPort(t).Port())

	tests := []struct {
		name   string
		target netip.AddrPort
		hc     *shoalv1.HealthCheck
		want   string
	}{
		{"echo", echo, &shoalv1.HealthCheck{Send: `ping\n`, Expect: "ping"}, ""},
		{"echo wrong", echo, &shoalv1.HealthCheck{Send: `ping\n`, Expect: "pong", Timeout: durationpb.New(200 * time.Millisecond)},
			`expect "pong" not found in 5 bytes before timeout after 200ms`},
		{"any reply", echo, &shoalv1.HealthCheck{Send: `ping\n`}, ""},
		{"unreachable", closed, &shoalv1.HealthCheck{Send: `ping\n`, Expect: "ping"}, "connection refused"},
		{"no reply is not up", closed, &shoalv1.HealthCheck{Send: `ping\n`}, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.hc.Kind = "send-expect"
			checkResult(t, runProbe(probeAt(t, tt.target, "udp", tt.hc)), tt.want)
		})
	}
}

func TestHTTPCheck(t *testing.T) {
	var conns atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "all good") })
	mux.HandleFunc("/err", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "broken", 500) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/err", http.StatusFound)
	})
	mux.HandleFunc("/host", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "host="+r.Host) })
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	tlsSrv := httptest.NewUnstartedServer(mux)
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	plain := netip.MustParseAddrPort(srv.Listener.Addr().String())
	secure := netip.MustParseAddrPort(tlsSrv.Listener.Addr().String())

	tests := []struct {
		name   string
		target netip.AddrPort
		hc     *shoalv1.HealthCheck
		want   string
	}{
		{"200", plain, &shoalv1.HealthCheck{Kind: "http", HttpPath: "/ok"}, ""},
		{"path without slash", plain, &shoalv1.HealthCheck{Kind: "http", HttpPath: "ok"}, ""},
		{"200 body", plain, &shoalv1.HealthCheck{Kind: "http", HttpPath: "/ok", Expect: "good"}, ""},
		{"200 body regex", plain, &shoalv1.HealthCheck{Kind: "http", HttpPath: "/ok", Expect: `^all\s+good$`, Regex: true}, ""},
		{"200 wrong body", plain, &shoalv1.HealthCheck{Kind: "http", HttpPath: "/ok", Expect: "HTTP"}, `body: expect "HTTP" not found in 8 bytes`},
		{"500", plain, &shoalv1.HealthCheck{Kind: "http", HttpPath: "/err"}, "status 500, want 2xx/3xx"},
		{"500 wanted", plain, &shoalv1.HealthCheck{Kind: "http", HttpPath: "/err", HttpStatus: 500}, ""},
		{"404", plain, &shoalv1.HealthCheck{Kind: "http", HttpPath: "/missing", HttpStatus: 200}, "status 404, want 200"},
		{"redirect not followed", plain, &shoalv1.HealthCheck{Kind: "http", HttpPath: "/redirect"}, ""},
		{"redirect is not 200", plain, &shoalv1.HealthCheck{Kind: "http", HttpPath: "/redirect", HttpStatus: 200}, "status 302, want 200"},
		{"host header", plain, &shoalv1.HealthCheck{Kind: "http", HttpPath: "/host", HttpHost: "www.example.org", Expect: "host=www.example.org"}, ""},
		{"slow", plain, &shoalv1.HealthCheck{Kind: "http", HttpPath: "/slow", Timeout: durationpb.New(200 * time.Millisecond)}, "timeout after 200ms"},
		{"refused", closedPort(t), &shoalv1.HealthCheck{Kind: "http"}, "connection refused"},
		{"https skip verify", secure, &shoalv1.HealthCheck{Kind: "https", HttpPath: "/ok", TlsSkipVerify: true, Expect: "good"}, ""},
		{"https self-signed", secure, &shoalv1.HealthCheck{Kind: "https", HttpPath: "/ok"}, "tls: x509: certificate signed by unknown authority"},
		{"https to plain http", plain, &shoalv1.HealthCheck{Kind: "https", HttpPath: "/ok", TlsSkipVerify: true}, "server gave HTTP response to HTTPS client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			checkResult(t, runProbe(probeAt(t, tt.target, "tcp", tt.hc)), tt.want)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("check took %s", d)
			}
		})
	}

	t.Run("fresh connection per check", func(t *testing.T) {
		p := probeAt(t, plain, "tcp", &shoalv1.HealthCheck{Kind: "http", HttpPath: "/ok"})
		before := conns.Load()
		for range 3 {
			checkResult(t, runProbe(p), "")
		}
		if got := conns.Load() - before; got != 3 {
			t.Fatalf("3 checks opened %d connections, want 3", got)
		}
	})
}

func TestExecCheck(t *testing.T) {
	for _, prog := range []string{"sh", "true", "false", "sleep", "echo"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("exec checks need %s in PATH: %v", prog, err)
		}
	}
	target := netip.MustParseAddrPort("127.0.0.1:8080")
	short := durationpb.New(300 * time.Millisecond)
	tests := []struct {
		name string
		hc   *shoalv1.HealthCheck
		want string
	}{
		{"exit 0", &shoalv1.HealthCheck{Command: []string{"true"}}, ""},
		{"exit 1", &shoalv1.HealthCheck{Command: []string{"false"}}, "false: exit status 1"},
		{"exit 3 with output", &shoalv1.HealthCheck{Command: []string{"sh", "-c", "echo backend is sad; exit 3"}}, "sh: exit status 3: backend is sad"},
		{"outside the script dirs", &shoalv1.HealthCheck{Command: []string{"/nonexistent/check"}}, "not inside the script directories"},
		{"substitution", &shoalv1.HealthCheck{Command: []string{"echo", "host=%h", "port=%p"}, Expect: "host=127.0.0.1 port=8080"}, ""},
		{"output mismatch", &shoalv1.HealthCheck{Command: []string{"echo", "%h"}, Expect: "OK"}, `echo: expect "OK" not found in 10 bytes of output`},
		{"no shell without shell", &shoalv1.HealthCheck{Command: []string{"echo", "$((1+2))"}, Expect: "$((1+2))"}, ""},
		{"shell", &shoalv1.HealthCheck{Command: []string{"echo $((1+2)) %p"}, Shell: true, Expect: `^3 8080\n$`, Regex: true}, ""},
		{"hangs", &shoalv1.HealthCheck{Command: []string{"sleep", "30"}, Timeout: short}, "sleep: killed after timeout 300ms"},
		// The children of a shell script die with it: the check returns at
		// the timeout, not when the grandchildren would have ended.
		{"hangs with children", &shoalv1.HealthCheck{Command: []string{"sleep 30 & sleep 30 & wait"}, Shell: true, Timeout: short}, "killed after timeout 300ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.hc.Kind = "exec"
			start := time.Now()
			checkResult(t, runProbe(probeAt(t, target, "tcp", tt.hc)), tt.want)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("check took %s", d)
			}
		})
	}
}

// An API client may name any command; a router without
// --allow-shell-scripts runs no shell, and the refusal is the reason.
func TestExecShellRefused(t *testing.T) {
	p := probeAt(t, netip.MustParseAddrPort("127.0.0.1:80"), "tcp", &shoalv1.HealthCheck{
		Kind: "exec", Command: []string{"id > /tmp/x"}, Shell: true,
	})
	p.scripts = testScripts(t, execDir(t), false)
	err := runProbe(p)
	if CauseOf(err) != CauseRefusedProgram || !strings.Contains(err.Error(), "--allow-shell-scripts") {
		t.Errorf("shell check on a router without shell: %v", err)
	}
	p.scripts = nil
	if err := runProbe(p); CauseOf(err) != CauseConfig {
		t.Errorf("exec check without a runner: %v, want a config failure", err)
	}
}

func TestExecOutputBounded(t *testing.T) {
	if _, err := exec.LookPath("head"); err != nil {
		t.Skip("needs head in PATH")
	}
	p := probeAt(t, netip.MustParseAddrPort("127.0.0.1:80"), "tcp", &shoalv1.HealthCheck{
		Kind: "exec", Command: []string{"head -c 1000000 /dev/zero; echo done"}, Shell: true, Expect: "done",
	})
	err := runProbe(p)
	checkResult(t, err, fmt.Sprintf("not found in %d bytes of output", maxRead))
}

func TestCheckCancelled(t *testing.T) {
	// A removed server's check must stop at once, not at its timeout.
	hang := serveTCP(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	p := probeAt(t, hang, "tcp", &shoalv1.HealthCheck{Kind: "send-expect", Expect: "x", Timeout: durationpb.New(time.Minute)})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.run(ctx) }()
	time.AfterFunc(50*time.Millisecond, cancel)
	select {
	case err := <-errc:
		if err == nil || !errors.Is(ctx.Err(), context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("check did not stop on cancellation")
	}
}

func TestNewProbeDefaults(t *testing.T) {
	svc := &shoalv1.VirtualService{Name: "web", Port: 80}
	rs := &shoalv1.RealServer{Address: "10.0.0.1"}
	p, err := newProbe(svc, rs, netip.MustParseAddr("10.0.0.1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := rules{Rise: 1, Fall: 3}
	if p.kind != "tcp" || p.interval != 2*time.Second || p.timeout != time.Second || p.rules != want ||
		p.path != "/" || p.target != netip.MustParseAddrPort("10.0.0.1:80") {
		t.Fatalf("defaults not applied: %+v", p)
	}
	p, err = newProbe(svc, &shoalv1.RealServer{Address: "10.0.0.1", Port: 8080}, netip.MustParseAddr("10.0.0.1"), &shoalv1.HealthCheck{Port: 9000})
	if err != nil || p.target.Port() != 9000 {
		t.Fatalf("check port override: %v %v", p.target, err)
	}
	if _, err := newProbe(svc, rs, netip.MustParseAddr("10.0.0.1"), &shoalv1.HealthCheck{Expect: "(", Regex: true}); err == nil {
		t.Fatal("bad regex accepted")
	}
}

func TestFailureCauses(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 503) })
	web := httptest.NewServer(mux)
	t.Cleanup(web.Close)
	plain := netip.MustParseAddrPort(web.Listener.Addr().String())
	hang := serveTCP(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	reset := serveTCP(t, func(c net.Conn) { c.(*net.TCPConn).SetLinger(0); bufio.NewReader(c).ReadString('\n') })
	closes := serveTCP(t, func(c net.Conn) { bufio.NewReader(c).ReadString('\n') })
	garbage := serveTCP(t, func(c net.Conn) { bufio.NewReader(c).ReadString('\n'); io.WriteString(c, "SSH-2.0-x\r\n\r\n") })
	short := durationpb.New(200 * time.Millisecond)
	tests := []struct {
		name   string
		target netip.AddrPort
		hc     *shoalv1.HealthCheck
		want   Cause
	}{
		{"refused", closedPort(t), &shoalv1.HealthCheck{}, CauseRefused},
		{"timeout", hang, &shoalv1.HealthCheck{Kind: "send-expect", Expect: "x", Timeout: short}, CauseTimeout},
		{"reset", reset, &shoalv1.HealthCheck{Kind: "send-expect", Send: `x\n`, Expect: "x"}, CauseReset},
		{"http closed", closes, &shoalv1.HealthCheck{Kind: "http"}, CauseClosed},
		{"closed before expect", closes, &shoalv1.HealthCheck{Kind: "send-expect", Send: `x\n`, Expect: "y"}, CauseMismatch},
		{"status", plain, &shoalv1.HealthCheck{Kind: "http"}, CauseStatus},
		{"http timeout", hang, &shoalv1.HealthCheck{Kind: "http", Timeout: short}, CauseTimeout},
		{"not http", garbage, &shoalv1.HealthCheck{Kind: "http"}, CauseProtocol},
		{"tls to plain", plain, &shoalv1.HealthCheck{Kind: "https", TlsSkipVerify: true}, CauseProtocol},
		{"exit", plain, &shoalv1.HealthCheck{Kind: "exec", Command: []string{"false"}}, CauseExit},
		{"exec timeout", plain, &shoalv1.HealthCheck{Kind: "exec", Command: []string{"sleep", "10"}, Timeout: short}, CauseTimeout},
		{"exec refused", plain, &shoalv1.HealthCheck{Kind: "exec", Command: []string{"/nonexistent"}}, CauseRefusedProgram},
		{"exec mismatch", plain, &shoalv1.HealthCheck{Kind: "exec", Command: []string{"true"}, Expect: "x"}, CauseMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runProbe(probeAt(t, tt.target, "tcp", tt.hc))
			if got := CauseOf(err); got != tt.want {
				t.Fatalf("cause %q, want %q (error: %v)", got, tt.want, err)
			}
		})
	}
}
