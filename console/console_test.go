package console

import (
	"bufio"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"github.com/shoal-lb/shoal/raftfsm"
	"github.com/shoal-lb/shoal/server"
)

// testNode is one router with TLS on, wired as lvsd wires it, with its
// console served by an httptest TLS server.
type testNode struct {
	ca   *pki.CA
	srv  *server.Server
	node *raftfsm.Node
	con  *Console
	web  *httptest.Server
	// admin is a client certificate's chain for direct API calls.
	admin []*x509.Certificate
}

func startNode(t *testing.T) *testNode {
	t.Helper()
	now := time.Now()
	ca, err := pki.NewCA(now)
	if err != nil {
		t.Fatal(err)
	}
	boot, err := pki.NewBootstrapToken()
	if err != nil {
		t.Fatal(err)
	}
	dir := &pki.NodeDir{Dir: t.TempDir(), ID: "n1", Store: pki.NewStore()}
	if err := pki.WriteKey(filepath.Join(dir.Dir, pki.CAKeyFile), ca.Key); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteCerts(filepath.Join(dir.Dir, pki.CACertFile), ca.Cert); err != nil {
		t.Fatal(err)
	}
	if _, err := dir.Renew(ca, now); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raftAddr := l.Addr().String()
	l.Close()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := dir.Store
	node, err := raftfsm.Open(raftfsm.Options{ID: "n1", RaftAddr: raftAddr, InMemory: true, Logger: logger,
		Bootstrap: []raft.Server{{ID: "n1", Address: raft.ServerAddress(raftAddr), Suffrage: raft.Voter}},
		Timing:    raftfsm.Timing{Heartbeat: 150 * time.Millisecond, Election: 150 * time.Millisecond, LeaderLease: 75 * time.Millisecond, Commit: 5 * time.Millisecond},
		TLS:       &raftfsm.TransportTLS{Server: store.RaftServerConfig(), Join: store.JoinServerConfig(), Client: store.NodeClientConfig(pki.ALPNRaft)}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{Node: node, ID: "n1", APIAddr: "127.0.0.1:1", RaftAddr: raftAddr, Logger: logger,
		TLS: &server.TLS{Store: store, Dir: dir, BootstrapKey: boot.Key(), BootstrapIDs: []string{"n1"}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Run(ctx); close(done) }()
	conn, stop, err := srv.LocalConn()
	if err != nil {
		t.Fatal(err)
	}
	con, err := New(Options{Conn: conn, Store: store, Node: "n1", Logger: logger, SampleEvery: time.Hour, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewUnstartedServer(con.Handler())
	web.TLS = store.WebServerConfig()
	web.StartTLS()
	n := &testNode{ca: ca, srv: srv, node: node, con: con, web: web, admin: []*x509.Certificate{n0cert(t, ca, "root", pki.RoleAdmin, time.Hour)}}
	t.Cleanup(func() {
		web.Close()
		cancel()
		<-done
		_ = conn.Close()
		stop()
		_ = node.Shutdown()
		_ = srv.Close()
	})
	// Ready: a leader that has the CA in its state and a service to show.
	lb := shoalv1.NewLoadBalancerServiceClient(conn)
	eventually(t, 10*time.Second, func() bool {
		_, err := lb.CreateVirtualService(server.WithCaller(ctx, n.admin), &shoalv1.CreateVirtualServiceRequest{Service: &shoalv1.VirtualService{
			Name: "web", Vip: &shoalv1.Address{Address: "192.0.2.10"}, Port: 80, Protocol: "tcp",
			RealServers: []*shoalv1.RealServer{{Address: "10.0.0.1"}, {Address: "10.0.0.2"}}}})
		return err == nil
	}, "a leader that takes a first service")
	return n
}

// n0cert is a client certificate of ca.
func n0cert(t *testing.T, ca *pki.CA, name string, role pki.Role, life time.Duration) *x509.Certificate {
	t.Helper()
	cert, _ := certAndToken(t, ca, name, role, life)
	return cert
}

func certAndToken(t *testing.T, ca *pki.CA, name string, role pki.Role, life time.Duration) (*x509.Certificate, string) {
	t.Helper()
	cert, key := certAndKey(t, ca, name, role, life)
	tok, err := pki.EncodeConsoleToken(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return cert, tok
}

func certAndKey(t *testing.T, ca *pki.CA, name string, role pki.Role, life time.Duration) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := pki.NewCSR(key, name, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(der)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.SignClient(csr, name, role, time.Now(), life)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func eventually(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// browser is a client with its own cookies, as one browser is.
type browser struct {
	t    *testing.T
	n    *testNode
	c    *http.Client
	csrf string
}

func (n *testNode) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	c := new(http.Client)
	*c = *n.web.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{t: t, n: n, c: c}
}

// login exchanges a token of a new certificate with role for a session.
func (n *testNode) login(t *testing.T, name string, role pki.Role) *browser {
	b := n.browser(t)
	_, tok := certAndToken(t, n.ca, name, role, time.Hour)
	code, _, resp := b.post("/login", url.Values{"token": {tok}})
	if code != http.StatusSeeOther {
		t.Fatalf("login as %s: %d", name, code)
	}
	ck := resp.Cookies()
	if len(ck) != 1 || ck[0].Name != sessionCookie || !ck[0].HttpOnly || !ck[0].Secure || ck[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie: %+v", ck)
	}
	if strings.Contains(ck[0].Value, "shoalweb1") {
		t.Fatal("the token is in the cookie")
	}
	b.get("/")
	return b
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) do(req *http.Request) (int, string, *http.Response) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if m := csrfRE.FindSubmatch(body); m != nil {
		b.csrf = string(m[1])
	}
	if len(body) > 100<<10 {
		b.t.Errorf("%s %s: %d bytes, over the 100 KB a page may weigh", req.Method, req.URL.Path, len(body))
	}
	return resp.StatusCode, string(body), resp
}

func (b *browser) get(path string) (int, string) {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.n.web.URL+path, nil)
	code, body, _ := b.do(req)
	return code, body
}

// post sends a form as the page would, with the CSRF token of the last
// page unless the form has its own.
func (b *browser) post(path string, v url.Values) (int, string, *http.Response) {
	b.t.Helper()
	if _, ok := v["csrf"]; !ok && b.csrf != "" {
		v.Set("csrf", b.csrf)
	}
	req, _ := http.NewRequest("POST", b.n.web.URL+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.n.web.URL)
	return b.do(req)
}

// config is the configuration now, read as the admin.
func (n *testNode) config(t *testing.T) *shoalv1.Config {
	t.Helper()
	resp, err := n.con.cfg.GetConfig(server.WithCaller(context.Background(), n.admin), &shoalv1.GetConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetConfig()
}

func realServer(cf *shoalv1.Config, svc, key string) *shoalv1.RealServer {
	return findReal(findService(cf, svc), key)
}

func wantIn(t *testing.T, what, body string, frags ...string) {
	t.Helper()
	for _, f := range frags {
		if !strings.Contains(body, f) {
			t.Errorf("%s does not show %q:\n%s", what, f, body[:min(len(body), 3000)])
		}
	}
}

func wantNotIn(t *testing.T, what, body string, frags ...string) {
	t.Helper()
	for _, f := range frags {
		if strings.Contains(body, f) {
			t.Errorf("%s shows %q", what, f)
		}
	}
}

func TestLogin(t *testing.T) {
	n := startNode(t)
	b := n.browser(t)
	code, body := b.get("/")
	if code != http.StatusUnauthorized {
		t.Fatalf("no session: %d", code)
	}
	wantIn(t, "the login page", body, "lvsctl console token")

	code, body, _ = b.post("/login", url.Values{"token": {"shoal1.abcd.secret"}})
	if code != http.StatusUnauthorized {
		t.Fatalf("a join token: %d", code)
	}
	wantIn(t, "a join token's refusal", body, "not a console token")
	other, _ := pki.NewCA(time.Now())
	_, tok := certAndToken(t, other, "eve", pki.RoleAdmin, time.Hour)
	if code, body, _ := b.post("/login", url.Values{"token": {tok}}); code != http.StatusUnauthorized || !strings.Contains(body, "eve") {
		t.Fatalf("another CA's token: %d %s", code, body)
	}

	v := n.login(t, "vera", pki.RoleViewer)
	code, body = v.get("/")
	if code != http.StatusOK {
		t.Fatalf("overview: %d", code)
	}
	wantIn(t, "the overview", body, `id="leader">n1<`, "vera", "viewer", "Raft: 1 of 1 voters answering", "healthy")

	// A cross-site POST is refused even with the session's token.
	req, _ := http.NewRequest("POST", n.web.URL+"/logout", strings.NewReader(url.Values{"csrf": {v.csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if code, _, _ := v.do(req); code != http.StatusForbidden {
		t.Fatalf("cross-site logout: %d", code)
	}
	m := n.con.metrics
	for result, want := range map[string]float64{"ok": 1, "bad-token": 1, "refused": 1} {
		if got := testutil.ToFloat64(m.logins.WithLabelValues(result)); got != want {
			t.Errorf("shoal_console_logins_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	if got := testutil.ToFloat64(m.refused.WithLabelValues("csrf")); got != 1 {
		t.Errorf("shoal_console_refused_requests_total{reason=\"csrf\"} = %v, want 1", got)
	}
	if code, _, _ := v.post("/logout", url.Values{}); code != http.StatusSeeOther {
		t.Fatalf("logout: %d", code)
	}
	if code, _ := v.get("/"); code != http.StatusUnauthorized {
		t.Fatalf("after logout: %d", code)
	}
}

func TestRevokedTokenEndsSession(t *testing.T) {
	n := startNode(t)
	b := n.browser(t)
	cert, tok := certAndToken(t, n.ca, "olga", pki.RoleOperator, time.Hour)
	// Recorded, as lvsctl console token records it, so it can be revoked.
	cs := shoalv1.NewClusterServiceClient(n.con.o.Conn)
	if code, _, _ := b.post("/login", url.Values{"token": {tok}}); code != http.StatusSeeOther {
		t.Fatalf("login: %d", code)
	}
	if code, _ := b.get("/services"); code != http.StatusOK {
		t.Fatalf("services: %d", code)
	}
	_, err := cs.RevokeCertificate(server.WithCaller(context.Background(), n.admin), &shoalv1.RevokeCertificateRequest{SerialNumber: cert.SerialNumber.Text(16)})
	if err != nil {
		t.Fatal(err)
	}
	code, body := b.get("/services")
	if code != http.StatusUnauthorized {
		t.Fatalf("after revocation: %d", code)
	}
	wantIn(t, "the login page after revocation", body, "revoked")
}

func TestViewerSeesNoEditsAndIsRefused(t *testing.T) {
	n := startNode(t)
	v := n.login(t, "vera", pki.RoleViewer)
	code, body := v.get("/services")
	if code != http.StatusOK {
		t.Fatalf("services: %d", code)
	}
	wantIn(t, "a viewer's services page", body, "10.0.0.1:80", "10.0.0.2:80")
	wantNotIn(t, "a viewer's services page", body, "op=disable", "op=drain", "Add a virtual service", "/import", "op=add")
	before := n.config(t)

	// A forged apply, with the viewer's own valid CSRF token: the API's
	// role table refuses it.
	code, body, _ = v.post("/edit/realserver", url.Values{"service": {"web"}, "key": {"10.0.0.1:80"}, "step": {"apply"},
		"expected_serial": {"1"}, "weight": {"1"}, "port": {"80"}, "address": {"10.0.0.1"}})
	if code != http.StatusForbidden {
		t.Fatalf("a viewer's disable: %d\n%s", code, body)
	}
	wantIn(t, "the refusal", body, "needs role operator")
	for _, f := range []url.Values{
		{"step": {"apply"}, "name": {"api"}, "vip.address": {"192.0.2.20"}, "port": {"443"}, "protocol": {"tcp"}, "scheduler": {"rr"}, "forward": {"nat"}, "expected_serial": {"1"}},
	} {
		if code, _, _ := v.post("/edit/service", f); code != http.StatusForbidden {
			t.Errorf("a viewer's new service: %d", code)
		}
	}
	if code, _, _ := v.post("/rollback", url.Values{"serial": {"1"}, "expected_serial": {"1"}}); code != http.StatusForbidden {
		t.Errorf("a viewer's rollback: %d", code)
	}
	if after := n.config(t); !proto.Equal(before, after) {
		t.Fatalf("a viewer changed the configuration:\n%v\n%v", before, after)
	}
}

func TestOperatorDisablesRealServer(t *testing.T) {
	n := startNode(t)
	o := n.login(t, "olga", pki.RoleOperator)
	code, body := o.get("/services")
	if code != http.StatusOK {
		t.Fatalf("services: %d", code)
	}
	wantIn(t, "an operator's services page", body, "op=disable", "op=drain")
	wantNotIn(t, "an operator's services page", body, "Add a virtual service", "op=add")
	serial := n.config(t).GetSerial()

	code, body = o.get("/edit/realserver?service=web&rs=10.0.0.1:80&op=disable")
	if code != http.StatusOK {
		t.Fatalf("preview: %d", code)
	}
	wantIn(t, "the preview", body, "modified", "10.0.0.1:80", "active", "Apply on serial "+itoa(serial))

	// Without the CSRF token nothing happens.
	if code, _, _ := o.post("/edit/realserver", url.Values{"csrf": {"forged"}, "service": {"web"}, "key": {"10.0.0.1:80"}, "step": {"apply"}}); code != http.StatusForbidden {
		t.Fatalf("no CSRF token: %d", code)
	}
	apply := formOf(t, body, "apply")
	code, body, _ = o.post("/edit/realserver", apply)
	if code != http.StatusOK {
		t.Fatalf("apply: %d\n%s", code, body)
	}
	wantIn(t, "the answer", body, `id="applied"`, "serial <strong>"+itoa(serial+1))
	cf := n.config(t)
	if rs := realServer(cf, "web", "10.0.0.1:80"); rs.GetActive() || cf.GetSerial() != serial+1 {
		t.Fatalf("after the disable: %v at serial %d", rs, cf.GetSerial())
	}
	// The same form again (a double submit) is the same change, once.
	if code, body, _ := o.post("/edit/realserver", apply); code != http.StatusOK {
		t.Fatalf("the same apply again: %d\n%s", code, body)
	}
	if got := n.config(t).GetSerial(); got != serial+1 {
		t.Fatalf("a double submit applied twice: serial %d", got)
	}
	// The audit history names the token's certificate, not the node.
	code, body = o.get("/history/" + itoa(serial+1))
	if code != http.StatusOK {
		t.Fatalf("history entry: %d", code)
	}
	wantIn(t, "the history entry", body, "olga", "operator", "UpdateRealServer")
	wantNotIn(t, "an operator's history entry", body, "Roll back")

	// A stale serial is refused, and the page previews again on the new one.
	code, body = o.get("/edit/realserver?service=web&rs=10.0.0.2:80&op=drain")
	if code != http.StatusOK {
		t.Fatalf("drain preview: %d", code)
	}
	drain := formOf(t, body, "apply")
	if code, _, _ := o.post("/edit/realserver", formOf(t, mustGet(t, o, "/edit/realserver?service=web&rs=10.0.0.1:80&op=enable"), "apply")); code != http.StatusOK {
		t.Fatalf("enable: %d", code)
	}
	code, body, _ = o.post("/edit/realserver", drain)
	if code != http.StatusConflict {
		t.Fatalf("drain on a stale serial: %d\n%s", code, body)
	}
	wantIn(t, "the stale refusal", body, "Apply on serial "+itoa(serial+2))
	if w := realServer(n.config(t), "web", "10.0.0.2:80").Weight; w != nil && *w == 0 {
		t.Fatal("the stale drain applied")
	}

	// An operator may not change what only an admin may.
	code, body, _ = o.post("/edit/realserver", url.Values{"service": {"web"}, "key": {"10.0.0.2:80"}, "step": {"apply"}, "expected_serial": {itoa(serial + 2)},
		"weight": {"1"}, "active": {"on"}, "forward": {"direct"}})
	if code != http.StatusForbidden {
		t.Fatalf("an operator's forward change: %d\n%s", code, body)
	}
}

func mustGet(t *testing.T, b *browser, path string) string {
	t.Helper()
	code, body := b.get(path)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d", path, code)
	}
	return body
}

var textareaRE = regexp.MustCompile(`(?s)<textarea name="([^"]+)" hidden>(.*?)</textarea>`)

var inputRE = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// formOf is the hidden fields of the form whose submit button has id.
func formOf(t *testing.T, body, id string) url.Values {
	t.Helper()
	i := strings.Index(body, `id="`+id+`"`)
	if i < 0 {
		t.Fatalf("no button %s in:\n%s", id, body)
	}
	start := strings.LastIndex(body[:i], "<form")
	v := url.Values{}
	for _, m := range inputRE.FindAllStringSubmatch(body[start:i], -1) {
		v.Add(m[1], htmlUnescape(m[2]))
	}
	for _, m := range textareaRE.FindAllStringSubmatch(body[start:i], -1) {
		v.Add(m[1], htmlUnescape(m[2]))
	}
	return v
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">", "&#34;", `"`, "&#39;", "'").Replace(s)
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestServiceFormFieldErrors(t *testing.T) {
	n := startNode(t)
	a := n.login(t, "ada", pki.RoleAdmin)
	before := n.config(t)
	code, body := a.get("/services")
	if code != http.StatusOK {
		t.Fatal(code)
	}
	wantIn(t, "an admin's services page", body, "Add a virtual service", "op=add")
	mustGet(t, a, "/edit/service")
	bad := url.Values{"step": {"preview"}, "name": {"api"}, "vip.address": {"192.0.2.20"}, "port": {"70000"}, "protocol": {"tcp"},
		"scheduler": {"rr"}, "forward": {"nat"}, "fwmark": {"0"}, "persistence_timeout": {"0"}}
	code, body, _ = a.post("/edit/service", bad)
	if code != http.StatusBadRequest {
		t.Fatalf("an invalid port: %d", code)
	}
	wantIn(t, "the field error", body, `id="e-port"`, "70000 is outside 1..65535")
	wantNotIn(t, "the refused preview", body, `id="apply"`)

	// Sent as if previewed: the API refuses it, next to the same field.
	bad.Set("step", "apply")
	bad.Set("expected_serial", itoa(before.GetSerial()))
	code, body, _ = a.post("/edit/service", bad)
	if code != http.StatusBadRequest {
		t.Fatalf("an invalid port applied: %d", code)
	}
	wantIn(t, "the API's field error", body, `id="e-port"`, "70000 is outside 1..65535")
	bad.Set("port", "http")
	code, body, _ = a.post("/edit/service", bad)
	wantIn(t, "a port that is no number", body, `id="e-port"`, "not a whole number")
	if after := n.config(t); !proto.Equal(before, after) {
		t.Fatal("an invalid service changed the configuration")
	}

	bad.Set("port", "443")
	bad.Set("step", "preview")
	code, body, _ = a.post("/edit/service", bad)
	if code != http.StatusOK {
		t.Fatalf("a good preview: %d\n%s", code, body)
	}
	wantIn(t, "the preview", body, "added", "api")
	if code, body, _ = a.post("/edit/service", formOf(t, body, "apply")); code != http.StatusOK {
		t.Fatalf("apply: %d\n%s", code, body)
	}
	if findService(n.config(t), "api") == nil {
		t.Fatal("the new service is not in the configuration")
	}

	// A new real server, from the form as the page fills it.
	body = mustGet(t, a, "/edit/realserver?service=api&op=add")
	wantIn(t, "the new real server's form", body, `name="weight" value="1"`, `id="f-active" checked`)
	code, body, _ = a.post("/edit/realserver", url.Values{"service": {"api"}, "key": {""}, "step": {"preview"},
		"address": {"10.0.0.9"}, "port": {"0"}, "weight": {"1"}, "active": {"on"}})
	if code != http.StatusOK {
		t.Fatalf("a new real server's preview: %d\n%s", code, body)
	}
	wantIn(t, "the new real server's preview", body, "added", "10.0.0.9:443")
	if code, body, _ = a.post("/edit/realserver", formOf(t, body, "apply")); code != http.StatusOK {
		t.Fatalf("add a real server: %d\n%s", code, body)
	}
	if rs := realServer(n.config(t), "api", "10.0.0.9:443"); rs == nil || rs.GetWeight() != 1 || !rs.GetActive() {
		t.Fatalf("the new real server: %v", rs)
	}
}

func TestImportAndRollback(t *testing.T) {
	n := startNode(t)
	a := n.login(t, "ada", pki.RoleAdmin)
	mustGet(t, a, "/import")
	lvscf := "serial_no = 1\nprimary = 192.168.1.10\nservice = lvs\nnetwork = nat\nnat_router = 10.0.0.254 eth1:1\n" +
		"virtual shop {\n\tactive = 1\n\taddress = 192.168.1.250 eth0:1\n\tport = 443\n\tscheduler = rr\n\tprotocol = tcp\n" +
		"\tserver a {\n\t\taddress = 10.0.0.1\n\t\tactive = 1\n\t\tweight = 5\n\t}\n}\n"
	before := n.config(t)
	code, body, _ := a.post("/import", url.Values{"step": {"preview"}, "file": {lvscf}})
	if code != http.StatusOK {
		t.Fatalf("import preview: %d\n%s", code, body)
	}
	wantIn(t, "the import preview", body, "removed", "web", "added", "shop", "Apply on serial "+itoa(before.GetSerial()))
	if !proto.Equal(before, n.config(t)) {
		t.Fatal("a preview changed the configuration")
	}
	code, body, _ = a.post("/import", url.Values{"step": {"preview"}, "file": {"virtual shop {\n\tport = 443\n\tbogus\n"}, "format": {"lvs.cf"}})
	if code != http.StatusBadRequest {
		t.Fatalf("a bad file: %d", code)
	}
	wantIn(t, "a bad file's refusal", body, "file:")
	code, body, _ = a.post("/import", url.Values{"step": {"preview"}, "file": {"include /etc/shadow\n"}, "format": {"keepalived"}})
	wantIn(t, "an include", body, "does not read files on the router")

	code, body, _ = a.post("/import", url.Values{"step": {"preview"}, "file": {lvscf}})
	code, body, _ = a.post("/import", formOf(t, body, "apply"))
	if code != http.StatusOK {
		t.Fatalf("import: %d\n%s", code, body)
	}
	after := n.config(t)
	if findService(after, "shop") == nil || findService(after, "web") != nil {
		t.Fatalf("after the import: %v", after)
	}

	o := n.login(t, "olga", pki.RoleOperator)
	if code, _, _ := o.post("/import", url.Values{"step": {"preview"}, "file": {lvscf}}); code != http.StatusForbidden {
		t.Fatalf("an operator's import: %d", code)
	}

	// Roll back to the configuration before the import.
	code, body = a.get("/history")
	wantIn(t, "the history", body, "ApplyConfig", "ada")
	code, body = a.get("/history/" + itoa(before.GetSerial()))
	if code != http.StatusOK {
		t.Fatal(code)
	}
	wantIn(t, "the rollback preview", body, "Roll back, applying on serial "+itoa(after.GetSerial()), "added", "web")
	code, _, resp := a.post("/rollback", formOf(t, body, "rollback"))
	if code != http.StatusSeeOther {
		t.Fatalf("rollback: %d", code)
	}
	if loc := resp.Header.Get("Location"); loc != "/history/"+itoa(after.GetSerial()+1) {
		t.Errorf("rollback went to %s", loc)
	}
	if got := n.config(t); findService(got, "web") == nil || findService(got, "shop") != nil {
		t.Fatalf("after the rollback: %v", got)
	}
}

func TestEventsFollowChanges(t *testing.T) {
	n := startNode(t)
	v := n.login(t, "vera", pki.RoleViewer)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", n.web.URL+"/events?page=services", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := v.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		var ev strings.Builder
		for sc.Scan() {
			if sc.Text() == "" {
				events <- ev.String()
				ev.Reset()
				continue
			}
			ev.WriteString(sc.Text() + "\n")
		}
		close(events)
	}()
	next := func(want string) string {
		t.Helper()
		for {
			select {
			case e, ok := <-events:
				if !ok {
					t.Fatalf("the stream ended before %q", want)
				}
				if strings.Contains(e, want) {
					return e
				}
			case <-ctx.Done():
				t.Fatalf("no event with %q", want)
			}
		}
	}
	next("10.0.0.2:80")
	lb := shoalv1.NewLoadBalancerServiceClient(n.con.o.Conn)
	if _, err := lb.AddRealServer(server.WithCaller(ctx, n.admin), &shoalv1.AddRealServerRequest{Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.0.3"}}); err != nil {
		t.Fatal(err)
	}
	e := next("10.0.0.3:80")
	if !strings.HasPrefix(e, "event: live\ndata: ") {
		t.Errorf("event: %q", e[:min(len(e), 40)])
	}
	wantNotIn(t, "a viewer's live part", e, "op=disable", "op=drain")

	if code, _ := v.get("/events?page=nope"); code != http.StatusBadRequest {
		t.Errorf("an unknown page's events: %d", code)
	}
	// Every place taken (the stream above holds one): refused, not queued.
	for range MaxStreams - 1 {
		n.con.streams <- struct{}{}
	}
	if code, _ := v.get("/events?page=overview"); code != http.StatusServiceUnavailable {
		t.Errorf("a live page over the bound: %d", code)
	}
}

func TestRatesAndSparkline(t *testing.T) {
	r := newRates(3)
	at := time.Unix(1000, 0)
	sample := func(sec int, conns, in uint64) {
		r.add(at.Add(time.Duration(sec)*time.Second), []*shoalv1.IpvsService{{Name: "web", Destinations: []*shoalv1.IpvsDestination{
			{Address: "10.0.0.1", Port: 80, Stats: &shoalv1.IpvsStats{Connections: conns, BytesIn: in}}}}})
	}
	sample(0, 100, 1000)
	sample(5, 150, 6000)
	sample(10, 150, 6000)
	sample(15, 10, 0) // a reset: no rate for it
	sample(20, 60, 500)
	sample(25, 110, 1000)
	got := r.get("web/10.0.0.1:80")
	want := []rate{{Conns: 0}, {Conns: 10, BytesIn: 100}, {Conns: 10, BytesIn: 100}}
	if len(got) != len(want) {
		t.Fatalf("rates %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("rates %v, want %v", got, want)
		}
	}
	svg := string(sparkline(got))
	if !strings.HasPrefix(svg, "<svg") || !strings.Contains(svg, "peak 10.0") || strings.Count(strings.Split(svg, `points="`)[1], ",") != 3 {
		t.Fatalf("sparkline: %s", svg)
	}
	if sparkline(got[:1]) != "" {
		t.Error("a sparkline of one sample")
	}
	// A real server that left IPVS leaves the samples.
	r.add(at.Add(30*time.Second), nil)
	if len(r.get("web/10.0.0.1:80")) != 0 {
		t.Error("samples of a real server that is gone")
	}
}

// A browser with a client certificate needs no token: the certificate is
// the caller of every call, its role the API's to judge.
func TestClientCertificate(t *testing.T) {
	n := startNode(t)
	cert, key := certAndKey(t, n.ca, "otto", pki.RoleOperator, time.Hour)
	b := n.browser(t)
	tr := b.c.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}}
	b.c.Transport = tr
	code, body := b.get("/services")
	if code != http.StatusOK {
		t.Fatalf("services with a client certificate: %d", code)
	}
	wantIn(t, "the services page", body, "otto", "operator", "op=disable")
	wantNotIn(t, "a certificate user's page", body, `action="/logout"`)
	body = mustGet(t, b, "/edit/realserver?service=web&rs=10.0.0.2:80&op=drain")
	if code, body, _ := b.post("/edit/realserver", formOf(t, body, "apply")); code != http.StatusOK {
		t.Fatalf("drain with a client certificate: %d\n%s", code, body)
	}
	if w := realServer(n.config(t), "web", "10.0.0.2:80").GetWeight(); w != 0 {
		t.Fatalf("weight %d after the drain", w)
	}
	// The CSRF token is the certificate's: another's does not pass.
	if code, _, _ := b.post("/edit/realserver", url.Values{"csrf": {n.con.mac("cert", []byte("another"))}, "service": {"web"}}); code != http.StatusForbidden {
		t.Fatalf("another certificate's CSRF token: %d", code)
	}

	// The node samples its own counters as itself, which the role table
	// allows a member.
	if _, err := n.con.node.GetNodeStatus(n.con.asNode(context.Background()), &shoalv1.GetNodeStatusRequest{}); err != nil {
		t.Fatalf("the sampler's call: %v", err)
	}
}

// Past summaryAbove real servers the services page lists the services
// alone, each linking to a page of its own, and stays under 100 KB.
func TestManyServices(t *testing.T) {
	n := startNode(t)
	cf := &shoalv1.Config{}
	for i := range 60 {
		s := &shoalv1.VirtualService{Name: "svc" + strconv.Itoa(i), Vip: &shoalv1.Address{Address: "192.0.2." + strconv.Itoa(i+1)}, Port: 80, Protocol: "tcp"}
		for j := range 5 {
			s.RealServers = append(s.RealServers, &shoalv1.RealServer{Address: "10.1." + strconv.Itoa(i) + "." + strconv.Itoa(j+1)})
		}
		cf.Services = append(cf.Services, s)
	}
	if _, err := n.con.cfg.ApplyConfig(server.WithCaller(context.Background(), n.admin), &shoalv1.ApplyConfigRequest{Config: cf}); err != nil {
		t.Fatal(err)
	}
	v := n.login(t, "vera", pki.RoleViewer)
	body := mustGet(t, v, "/services") // browser.do checks the size
	t.Logf("services page, 60 services with 300 real servers: %d bytes", len(body))
	wantIn(t, "the summary", body, "Too many real servers", `href="/services?service=svc59"`)
	wantNotIn(t, "the summary", body, "10.1.59.5")
	body = mustGet(t, v, "/services?service=svc59")
	wantIn(t, "one service's page", body, "10.1.59.5:80", "All services")
	wantNotIn(t, "one service's page", body, "10.1.58.5")
	if code, _ := v.get("/services?service=nope"); code != http.StatusNotFound {
		t.Errorf("an unknown service's page: %d", code)
	}
}

// TestSamplesOnlyWhileLooked: the counters (a whole IPVS listing each)
// are read while someone looks at the services, at once after a pause,
// and not at all otherwise; a pause forgets the samples.
func TestSamplesOnlyWhileLooked(t *testing.T) {
	c := &Console{o: Options{SampleEvery: 20 * time.Millisecond, SampleIdle: 300 * time.Millisecond}, rates: newRates(3), look: make(chan struct{}, 1)}
	var n atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		c.sampleWhileLooked(ctx, func() {
			n.Add(1)
			c.rates.add(time.Now(), []*shoalv1.IpvsService{{Name: "web", Destinations: []*shoalv1.IpvsDestination{{Address: "10.0.0.1", Port: 80}}}})
		})
		close(done)
	}()
	defer func() { cancel(); <-done }()

	time.Sleep(200 * time.Millisecond)
	if got := n.Load(); got != 0 {
		t.Fatalf("%d samples with nobody looking", got)
	}
	c.looked()
	eventually(t, 100*time.Millisecond, func() bool { return n.Load() >= 1 }, "a sample at once after a look")
	eventually(t, time.Second, func() bool { return n.Load() >= 5 }, "samples while looked at")
	eventually(t, 2*time.Second, func() bool { return len(c.rates.get("web/10.0.0.1:80")) == 0 && n.Load() > 5 }, "the samples forgotten after the pause")
	still := n.Load()
	time.Sleep(200 * time.Millisecond)
	if got := n.Load(); got != still {
		t.Fatalf("%d samples after the pause began, want none", got-still)
	}
}
