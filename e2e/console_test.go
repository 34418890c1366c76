package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/shoal-lb/shoal/e2e/harness"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestConsoleBrowser drives the web console in headless Chromium against
// three real lvsd over mutual TLS, each with --web-addr: log in with a
// token from `lvsctl console token`, see the leader lvsctl sees, disable
// a real server in the page and find it disabled with lvsctl, change the
// service with lvsctl and watch the page follow without a reload, submit
// an invalid port and see the field error with nothing changed, and, as a
// viewer, find no edit controls and a forged edit refused.
//
// Screenshots go to $SHOAL_ARTIFACTS/console, or
// /tmp/shoal-console-artifacts without it.
func TestConsoleBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes and a browser; skipped with -short")
	}
	chromium := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			chromium = p
			break
		}
	}
	if chromium == "" {
		t.Skip("no chromium on PATH: install Debian's chromium package (apt-get install -y chromium; .ci/run does)")
	}
	artifacts := filepath.Join(os.TempDir(), "shoal-console-artifacts")
	if d := os.Getenv("SHOAL_ARTIFACTS"); d != "" {
		artifacts = filepath.Join(d, "console")
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", artifacts)

	lvsd := harness.Build(t, "cmd/lvsd")
	ctl := harness.Build(t, "cmd/lvsctl")
	token := harness.BootstrapToken(t)
	type router struct {
		*harness.Node
		web string
	}
	var nodes []router
	var boot []string
	for i := range 3 {
		n := &harness.Node{ID: fmt.Sprintf("n%d", i+1), APIAddr: harness.FreeAddr(t), RaftAddr: harness.FreeAddr(t)}
		n.DataDir = filepath.Join(t.TempDir(), n.ID)
		nodes = append(nodes, router{Node: n, web: harness.FreeAddr(t)})
		boot = append(boot, n.ID+"="+n.RaftAddr)
	}
	for _, n := range nodes {
		n.Proc = harness.Start(t, n.ID, lvsd, "--id", n.ID, "--api-addr", n.APIAddr, "--raft-addr", n.RaftAddr,
			"--data-dir", n.DataDir, "--bootstrap", strings.Join(boot, ","), "--token-file", token,
			"--dataplane", "none", "--web-addr", n.web)
	}
	admin := harness.AdminCreds(nodes[0].DataDir)
	harness.Eventually(t, 15*time.Second, admin.Ready, "admin credentials")
	as := func(args ...string) harness.Result {
		t.Helper()
		return lvsctl(t, ctl, nodes[0].APIAddr, append(admin.Args(), args...)...)
	}
	var st shoalv1.GetClusterStatusResponse
	harness.Eventually(t, 30*time.Second, func() bool {
		r := as("-o", "json", "--request-timeout", "2s", "cluster", "status")
		if r.Proto(&st) != nil || st.GetLeaderId() == "" {
			return false
		}
		for _, m := range st.GetMembers() {
			if m.GetError() != "" {
				return false
			}
		}
		return len(st.GetMembers()) == 3
	}, "three routers answering, with a leader")
	if r := as("service", "add", "web", "--vip", "192.0.2.10/32", "--port", "80", "--check", "none"); r.Err() != nil {
		t.Fatal(r.Err())
	}
	for _, rs := range []string{"10.0.0.1", "10.0.0.2"} {
		if r := as("server", "add", "web", rs); r.Err() != nil {
			t.Fatal(r.Err())
		}
	}
	serviceNow := func() *shoalv1.VirtualService {
		t.Helper()
		var resp shoalv1.GetVirtualServiceResponse
		if err := as("-o", "json", "service", "get", "web").Proto(&resp); err != nil {
			t.Fatal(err)
		}
		return resp.GetService()
	}
	serial := func() uint64 {
		t.Helper()
		var resp shoalv1.GetVirtualServiceResponse
		if err := as("-o", "json", "service", "get", "web").Proto(&resp); err != nil {
			t.Fatal(err)
		}
		return resp.GetSerial()
	}
	tokenFor := func(role, name string) string {
		t.Helper()
		var out struct{ Token string }
		r := as("-o", "json", "console", "token", "--role", role, "--name", name, "--ttl", "10m")
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil || !strings.HasPrefix(out.Token, "shoalweb1.") {
			t.Fatalf("console token: %v %q", err, r.Stdout)
		}
		return out.Token
	}

	// One browser per role: a viewer's cookies are not an operator's.
	browser := func(width, height int) context.Context {
		alloc, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
			// The routers' certificates are of the cluster's own CA,
			// which this browser has no way to trust.
			chromedp.IgnoreCertErrors,
			chromedp.WindowSize(width, height))...)
		t.Cleanup(cancel)
		ctx, cancel2 := chromedp.NewContext(alloc)
		t.Cleanup(cancel2)
		// The first call starts the browser for the context's life; the
		// steps after it each get a deadline of their own.
		if err := chromedp.Do(ctx); err != nil {
			t.Fatalf("start %s: %v", chromium, err)
		}
		return ctx
	}
	// do runs steps with a deadline.
	do := func(ctx context.Context, steps ...chromedp.Action[chromedp.Void]) error {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		return chromedp.Do(ctx, steps...)
	}
	eval := func(ctx context.Context, js string, opts ...chromedp.EvaluateOption) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		return chromedp.Run(ctx, chromedp.Evaluate[string](js, opts...))
	}
	text := func(ctx context.Context, id string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		return chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
	}
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(artifacts, name+".png"), png, 0o644)
		})
	}
	login := func(ctx context.Context, url, tok string) error {
		return do(ctx,
			chromedp.Navigate(url+"/login"),
			chromedp.WaitVisible(chromedp.ID("token")),
			chromedp.SetValue(chromedp.ID("token"), tok),
			chromedp.Submit(chromedp.ID("token")),
			chromedp.WaitVisible(chromedp.ID("leader")))
	}
	// The console of a follower: its edits go through the leader as
	// lvsctl's do.
	var web string
	for _, n := range nodes {
		if n.ID != st.GetLeaderId() {
			web = "https://" + n.web
			break
		}
	}
	t.Logf("leader %s; browsing %s", st.GetLeaderId(), web)

	start := time.Now()
	op := browser(1280, 900)
	if err := login(op, web, tokenFor("operator", "olga")); err != nil {
		where, _ := eval(op, `location.href + "\n" + document.body.innerText`)
		_ = do(op, shot("0-login-failed"))
		t.Fatalf("log in as an operator: %v; the page: %s", err, where)
	}
	// Asked again each time: on a loaded host leadership may move between
	// lvsctl's answer and the page's.
	var leader string
	agree := func() bool {
		l, err := text(op, "leader")
		r := as("-o", "json", "--request-timeout", "2s", "cluster", "status")
		if err != nil || r.Proto(&st) != nil {
			return false
		}
		leader = l
		return leader == st.GetLeaderId()
	}
	deadline := time.Now().Add(15 * time.Second)
	for !agree() {
		if time.Now().After(deadline) {
			t.Fatalf("the overview shows leader %q, lvsctl %q", leader, st.GetLeaderId())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := do(op, shot("1-overview")); err != nil {
		t.Fatal(err)
	}

	t.Run("the overview follows a leader change", func(t *testing.T) {
		if err := do(op, chromedp.WaitVisible(chromedp.CSS(`.stream.ok`))); err != nil {
			t.Fatal(err)
		}
		// To the third router, so that this console stays a follower's
		// (its edits below go through the leader).
		target := ""
		for _, n := range nodes {
			if n.ID != st.GetLeaderId() && "https://"+n.web != web {
				target = n.ID
			}
		}
		if r := as("cluster", "transfer", target); r.Err() != nil {
			t.Fatal(r.Err())
		}
		moved := time.Now()
		err := do(op, chromedp.Poll[chromedp.Void](`document.getElementById("leader").textContent === "`+target+`"`, chromedp.WithPollingTimeout(10*time.Second)))
		if err != nil {
			t.Fatalf("the overview did not show leader %s: %v", target, err)
		}
		t.Logf("the overview showed the new leader %v after lvsctl returned", time.Since(moved).Round(time.Millisecond))
		if err := do(op, shot("1b-overview-new-leader")); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("disable in the page", func(t *testing.T) {
		before := serial()
		disable := chromedp.CSS(`[id="rs-web-10.0.0.1:80"] a[href*="op=disable"]`)
		err := do(op,
			chromedp.Navigate(web+"/services"),
			// The stream's first update redraws the table: a link found
			// before it may be gone when it is clicked.
			chromedp.WaitVisible(chromedp.CSS(`.stream.ok`)),
			chromedp.WaitVisible(disable),
			chromedp.Click(disable),
			chromedp.WaitVisible(chromedp.ID("apply")),
			shot("2-disable-preview"),
			chromedp.Click(chromedp.ID("apply")),
			chromedp.WaitVisible(chromedp.ID("applied")))
		if err != nil {
			t.Fatal(err)
		}
		for _, rs := range serviceNow().GetRealServers() {
			if rs.GetAddress() == "10.0.0.1" && rs.Active != nil && !rs.GetActive() {
				if s := serial(); s != before+1 {
					t.Errorf("serial %d after the disable, want %d", s, before+1)
				}
				return
			}
		}
		t.Fatalf("lvsctl does not see 10.0.0.1 disabled: %v", serviceNow())
	})

	t.Run("the page follows lvsctl", func(t *testing.T) {
		err := do(op,
			chromedp.Navigate(web+"/services"),
			chromedp.WaitVisible(chromedp.CSS(`.stream.ok`)))
		if err == nil {
			// Gone if the page reloads.
			_, err = eval(op, `window.shoalMarker = "same page"`)
		}
		if err != nil {
			t.Fatal(err)
		}
		if r := as("server", "add", "web", "10.0.0.3", "--weight", "7"); r.Err() != nil {
			t.Fatal(r.Err())
		}
		changed := time.Now()
		err = do(op, chromedp.WaitVisible(chromedp.CSS(`[id="rs-web-10.0.0.3:80"]`)))
		if err != nil {
			t.Fatal(err)
		}
		seen := time.Since(changed)
		if marker, err := eval(op, `window.shoalMarker`); err != nil || marker != "same page" {
			t.Fatalf("the page reloaded: %q %v", marker, err)
		}
		if err := do(op, shot("3-live-update")); err != nil {
			t.Fatal(err)
		}
		t.Logf("the page showed lvsctl's change %v after lvsctl returned", seen.Round(time.Millisecond))

		// A keyboard user on a link of the table keeps it: the update
		// waits until the focus leaves the table.
		if _, err := eval(op, `document.querySelector('[id="rs-web-10.0.0.3:80"] a').focus(); document.activeElement.textContent`); err != nil {
			t.Fatal(err)
		}
		if r := as("server", "add", "web", "10.0.0.4"); r.Err() != nil {
			t.Fatal(r.Err())
		}
		err = do(op, chromedp.Poll[chromedp.Void](`document.querySelector(".stream").textContent.includes("held")`, chromedp.WithPollingTimeout(10*time.Second)))
		if err != nil {
			t.Fatalf("no update held while the focus was in the table: %v", err)
		}
		if got, err := eval(op, `String(document.activeElement.closest('[id="rs-web-10.0.0.3:80"]') !== null) + " " + String(document.getElementById("rs-web-10.0.0.4:80") === null)`); err != nil || got != "true true" {
			t.Fatalf("focus kept and update held: %q %v", got, err)
		}
		if _, err := eval(op, `document.activeElement.blur(); "ok"`); err != nil {
			t.Fatal(err)
		}
		if err := do(op, chromedp.WaitVisible(chromedp.CSS(`[id="rs-web-10.0.0.4:80"]`))); err != nil {
			t.Fatalf("the held update was not drawn when the focus left: %v", err)
		}
	})

	t.Run("invalid port", func(t *testing.T) {
		before := serial()
		err := do(op,
			chromedp.Navigate(web+"/edit/service?service=web"),
			chromedp.WaitVisible(chromedp.ID("f-port")),
			chromedp.SetValue(chromedp.ID("f-port"), "70000"),
			chromedp.Click(chromedp.ID("preview")),
			chromedp.WaitVisible(chromedp.ID("e-port")),
			shot("4-field-error"))
		if err != nil {
			t.Fatal(err)
		}
		msg, err := text(op, "e-port")
		if err != nil || !strings.Contains(msg, "70000 is outside 1..65535") {
			t.Errorf("the field error says %q (%v)", msg, err)
		}
		if s := serial(); s != before {
			t.Fatalf("serial %d after a refused edit, was %d", s, before)
		}
		if p := serviceNow().GetPort(); p != 80 {
			t.Fatalf("port %d after a refused edit", p)
		}
	})

	t.Run("viewer", func(t *testing.T) {
		vw := browser(390, 844) // a phone's width
		before := serial()
		if err := login(vw, web, tokenFor("viewer", "vera")); err != nil {
			t.Fatalf("log in as a viewer: %v", err)
		}
		err := do(vw,
			chromedp.Navigate(web+"/services"),
			chromedp.WaitVisible(chromedp.CSS(`[id="rs-web-10.0.0.3:80"]`)),
			shot("5-viewer-phone"))
		if err != nil {
			t.Fatal(err)
		}
		edits, err := eval(vw, `String(document.querySelectorAll('a[href*="op="], a[href^="/edit"], a[href="/import"], #apply').length)`)
		if err != nil || edits != "0" {
			t.Errorf("a viewer's services page has %s edit controls (%v)", edits, err)
		}
		// What a page that only hid its buttons would let through: the
		// viewer's own session and CSRF token, an operator's edit.
		forged, err := eval(vw, `(async () => {
			const csrf = document.querySelector('input[name=csrf]').value;
			const body = new URLSearchParams({csrf, service: "web", key: "10.0.0.2:80", step: "apply",
				expected_serial: "`+fmt.Sprint(before)+`", weight: "0", active: "on", mask: "weight"});
			const r = await fetch("/edit/realserver", {method: "POST", body});
			return r.status + " " + (await r.text()).includes("needs role operator");
		})()`, chromedp.EvalAwaitPromise)
		if err != nil || forged != "403 true" {
			t.Errorf("a viewer's forged edit: %q %v, want 403 and the API's refusal", forged, err)
		}
		if s := serial(); s != before {
			t.Fatalf("serial %d after a viewer's forged edit, was %d", s, before)
		}
	})
	t.Logf("browser part: %v", time.Since(start).Round(time.Millisecond))
}
