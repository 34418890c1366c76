package migrate

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestKeepalivedThresholds: uthreshold and lthreshold become the real
// server's thresholds; what the kernel would refuse is refused with its
// line, or noted and dropped when keepalived's file means nothing by it.
func TestKeepalivedThresholds(t *testing.T) {
	r, err := kaOne(t, "real_server 10.0.0.1 80 {\nuthreshold 4294967295\nlthreshold 7\n}\nreal_server 10.0.0.2 80 {\nlthreshold 5\n}\nreal_server 10.0.0.3 80 {\nuthreshold 9\nlthreshold 9\n}")
	if err != nil {
		t.Fatal(err)
	}
	rs := r.Config.GetServices()[0].GetRealServers()
	if rs[0].GetUpperThreshold() != 4294967295 || rs[0].GetLowerThreshold() != 7 ||
		rs[1].GetUpperThreshold() != 0 || rs[1].GetLowerThreshold() != 0 ||
		rs[2].GetUpperThreshold() != 9 || rs[2].GetLowerThreshold() != 9 {
		t.Errorf("thresholds %v", rs)
	}
	if n := notesText(r.Notes); !strings.Contains(n, "k.conf:7: lthreshold: not imported: without uthreshold") {
		t.Errorf("notes lack the lone lthreshold:\n%s", n)
	}
	roundTrip(t, FormatKeepalived, []byte("virtual_server 192.0.2.1 80 {\nreal_server 10.0.0.1 80 {\nuthreshold 10\nlthreshold 3\n}\n}\n"))

	// --lenient skips the lthreshold line only.
	r, err = Import([]byte("virtual_server 192.0.2.1 80 {\nreal_server 10.0.0.1 80 {\nuthreshold 10\nlthreshold 11\n}\n}\n"), noFiles(Options{Format: FormatKeepalived, Lenient: true}))
	if err != nil || len(r.Config.GetServices()[0].GetRealServers()) != 1 || r.Config.GetServices()[0].GetRealServers()[0].GetUpperThreshold() != 10 || r.Config.GetServices()[0].GetRealServers()[0].GetLowerThreshold() != 0 {
		t.Errorf("lenient lthreshold above uthreshold: %v, %v", r.Config, err)
	}

	for _, tt := range []struct{ body, want string }{
		{"real_server 10.0.0.1 80 {\nuthreshold 10\nlthreshold 11\n}", ":4: lthreshold 11 is above uthreshold 10"},
		{"real_server 10.0.0.1 80 {\nuthreshold 4294967296\n}", ":3: uthreshold"},
		{"real_server 10.0.0.1 80 {\nlthreshold -1\n}", ":3: lthreshold"},
		{"real_server 10.0.0.1 80 {\nuthreshold\n}", ":3: uthreshold wants a number"},
	} {
		if _, err := kaOne(t, tt.body); err == nil || !strings.Contains(err.Error(), "k.conf"+tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.body, err, tt.want)
		}
	}
}

// TestKeepalivedSeveralCheckers: a real server keeps every checker shoal
// can run; the service's own check stays for the servers checked the same
// single way.
func TestKeepalivedSeveralCheckers(t *testing.T) {
	in := "virtual_server 192.0.2.1 80 {\n" +
		"real_server 10.0.0.1 80 {\nTCP_CHECK {\n}\n}\n" +
		"real_server 10.0.0.2 80 {\nTCP_CHECK {\n}\nDNS_CHECK {\n}\nHTTP_GET {\nurl {\npath /h\nstatus_code 200\n}\nconnect_port 81\n}\n}\n" +
		"real_server 10.0.0.3 80 {\n}\n" +
		"real_server 10.0.0.4 80 {\nTCP_CHECK {\nconnect_port 8080\n}\n}\n" +
		"real_server 10.0.0.5 80 {\nTCP_CHECK {\n}\n}\n}\n"
	r, err := Import([]byte(in), noFiles(Options{Format: FormatKeepalived, Filename: "k.conf"}))
	if err != nil {
		t.Fatal(err)
	}
	s := r.Config.GetServices()[0]
	if hc := s.GetHealthCheck(); hc.GetKind() != "tcp" || hc.GetPort() != 0 {
		t.Errorf("service check %v", hc)
	}
	rs := s.GetRealServers()
	kinds := func(i int) string {
		var k []string
		for _, hc := range rs[i].GetHealthChecks() {
			k = append(k, hc.GetKind())
		}
		return strings.Join(k, ",")
	}
	// The service's check is the one most servers have alone: tcp on
	// their own port (10.0.0.1 and 10.0.0.5), whatever their order.
	for i, want := range []string{"", "tcp,http", "none", "tcp", ""} {
		if got := kinds(i); got != want {
			t.Errorf("real server %d checks %q, want %q", i, got, want)
		}
	}
	if p := rs[1].GetHealthChecks()[1].GetPort(); p != 81 {
		t.Errorf("http check port %d", p)
	}
	if p := rs[3].GetHealthChecks()[0].GetPort(); p != 8080 {
		t.Errorf("tcp check port %d", p)
	}
	if n := notesText(r.Notes); !strings.Contains(n, "k.conf:9: DNS_CHECK: cannot be expressed") || strings.Contains(n, "differs") {
		t.Errorf("notes:\n%s", n)
	}
	roundTrip(t, FormatKeepalived, []byte(in))

	// Every server with the same single check: the service's, as before.
	r, err = kaOne(t, "real_server 10.0.0.1 80 {\nTCP_CHECK {\n}\n}\nreal_server 10.0.0.2 80 {\nTCP_CHECK {\n}\n}")
	if err != nil {
		t.Fatal(err)
	}
	for _, rs := range r.Config.GetServices()[0].GetRealServers() {
		if len(rs.GetHealthChecks()) != 0 {
			t.Errorf("%s has checks of its own: %v", rs.GetAddress(), rs.GetHealthChecks())
		}
	}

	// A checker given twice is one check: validation refuses two alike.
	r, err = kaOne(t, "real_server 10.0.0.1 80 {\nTCP_CHECK {\n}\nTCP_CHECK {\n}\nHTTP_GET {\nurl {\npath /\n}\n}\n}")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(r.Config.GetServices()[0].GetRealServers()[0].GetHealthChecks()); got != 2 || !strings.Contains(notesText(r.Notes), "k.conf:5: TCP_CHECK: not imported: the same check as the TCP_CHECK on line 3") {
		t.Errorf("%d checks, notes:\n%s", got, notesText(r.Notes))
	}
}

// TestKeepalivedNotifyScripts: notify keys become hooks, split as
// keepalived splits them; what cannot be a hook fails with its line.
func TestKeepalivedNotifyScripts(t *testing.T) {
	in := "vrrp_sync_group G {\ngroup {\nVI\n}\nnotify_master \"/s/state master\"\n}\n" +
		"vrrp_instance VI {\ninterface eth0\nnotify_backup \"/s/state 'a b' c\\ d \\\"q\\\" | $x\"\nnotify_master \"/s/state master\"\n" +
		"virtual_ipaddress {\n192.0.2.1/24\n}\n}\n" +
		"virtual_server 192.0.2.1 80 {\n" +
		"real_server 10.0.0.1 80 {\nnotify_up /s/up\nnotify_down /s/down\n}\n" +
		"real_server 10.0.0.2 80 {\nnotify_up /s/up\n}\n}\n"
	r, err := Import([]byte(in), noFiles(Options{Format: FormatKeepalived, Filename: "k.conf"}))
	if err != nil {
		t.Fatal(err)
	}
	want := []*shoalv1.Hook{
		{Events: []string{"leader"}, Command: []string{"/s/state", "master"}},
		{Events: []string{"follower"}, Command: []string{"/s/state", "a b", "c d", `"q"`, "|", "$x"}},
		{Events: []string{"server-up"}, Command: []string{"/s/up"}, Service: "tcp-192.0.2.1-80"},
		{Events: []string{"server-down"}, Command: []string{"/s/down"}, Service: "tcp-192.0.2.1-80", RealServer: "10.0.0.1:80"},
	}
	got := r.Config.GetGlobal().GetHooks()
	if len(got) != len(want) {
		t.Fatalf("hooks %v, want %v", got, want)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("hooks[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if !slices.Contains(r.GlobalSet, "hooks") {
		t.Errorf("global_set %v lacks hooks", r.GlobalSet)
	}
	roundTrip(t, FormatKeepalived, []byte(in))

	for _, tt := range []struct{ in, want string }{
		{"vrrp_instance VI {\ninterface eth0\nnotify_master master.sh\n}\n", `k.conf:3: notify_master "master.sh": "master.sh" is not an absolute path`},
		{"vrrp_instance VI {\ninterface eth0\nnotify /s/notify\n}\n", "k.conf:3: notify: its TYPE NAME STATE arguments have no equivalent"},
		{"vrrp_sync_group G {\nnotify_fault\n}\n", "k.conf:2: notify_fault wants a command"},
		{"virtual_server 192.0.2.1 80 {\nreal_server 10.0.0.1 80 {\nnotify_up \"/s/up 'open\"\n}\n}\n", "k.conf:3: notify_up"},
	} {
		if _, err := Import([]byte(tt.in), noFiles(Options{Format: FormatKeepalived, Filename: "k.conf"})); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.in, err, tt.want)
		}
	}
}

// TestKeepalivedExportHooks: hooks go where keepalived reads them, and
// what it cannot say is reported.
func TestKeepalivedExportHooks(t *testing.T) {
	c := &shoalv1.Config{
		Global: &shoalv1.Global{Hooks: []*shoalv1.Hook{
			{Events: []string{"leader", "reconcile-error"}, Command: []string{"/s/x", `q"uote`, "{brace}", "#", ""}, Timeout: durationpb.New(0)},
			{Events: []string{"leader"}, Command: []string{"/s/y"}},
			{Events: []string{"server-down"}, Command: []string{"/s/down"}, Service: "web", RealServer: "10.0.0.2"},
			{Events: []string{"server-up"}, Command: []string{"/s/up"}, Service: "nope"},
			{Events: []string{"server-up", "server-down"}, Command: []string{"/s/both"}, RealServer: "10.0.0.2:80"},
		}},
		Services: []*shoalv1.VirtualService{{
			Name: "web", Vip: &shoalv1.Address{Address: "192.0.2.1", Interface: "eth0"}, Port: 80,
			RealServers: []*shoalv1.RealServer{{Address: "10.0.0.1"}, {Address: "10.0.0.2"}},
		}},
	}
	out, notes, err := Export(c, FormatKeepalived)
	if err != nil {
		t.Fatal(err)
	}
	n := notesText(notes)
	for _, want := range []string{
		"global.hooks[0]: events reconcile-error cannot be written",
		"global.hooks[0]: timeout cannot be written",
		"global.hooks[1]: notify_master not written: keepalived takes one per vrrp_instance, and global.hooks[0]'s is written",
		"global.hooks[3]: server-up and server-down cannot be written: no real server",
		"global.hooks[4]: server-down not written for services[web].real_servers[10.0.0.2:80]: keepalived takes one script per event and real_server, and global.hooks[2]'s is written",
	} {
		if !strings.Contains(n, want) {
			t.Errorf("notes lack %q:\n%s", want, n)
		}
	}
	if strings.Count(string(out), "notify_down \"") != 1 || strings.Count(string(out), "notify_master \"") != 1 {
		t.Errorf("export:\n%s", out)
	}
	r, err := Import(out, noFiles(Options{Format: FormatKeepalived}))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	hooks := r.Config.GetGlobal().GetHooks()
	if len(hooks) != 3 || !slices.Equal(hooks[0].GetCommand(), c.Global.Hooks[0].Command) || hooks[1].GetRealServer() != "10.0.0.2:80" ||
		!slices.Equal(hooks[2].GetEvents(), []string{"server-up"}) || strings.Contains(notesText(notes), "server-up not written") {
		t.Errorf("hooks back: %v\n%s", hooks, out)
	}
}

// TestKeepalivedExportHooksWithoutInstance: with no VIP to make a
// vrrp_instance from, the router's notify scripts go in a sync group, where
// keepalived reads them once it names an instance, and come back.
func TestKeepalivedExportHooksWithoutInstance(t *testing.T) {
	in := "vrrp_instance VI {\ninterface eth0\nnotify_master /s/m\nnotify_stop /s/m\n}\n" +
		"virtual_server 192.0.2.1 80 {\nreal_server 10.0.0.1 80 {\nnotify_up /s/up\n}\n}\n"
	r, err := Import([]byte(in), noFiles(Options{Format: FormatKeepalived}))
	if err != nil {
		t.Fatal(err)
	}
	out, notes, err := Export(r.Config, FormatKeepalived)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "vrrp_sync_group VG_1 {\n    notify_master \"/s/m\"\n    notify_stop \"/s/m\"\n}") ||
		!strings.Contains(notesText(notes), "global.hooks[0]: notify_master is written in vrrp_sync_group VG_1, which names no vrrp_instance") {
		t.Errorf("export:\n%s", out)
	}
	roundTrip(t, FormatKeepalived, []byte(in))
}
