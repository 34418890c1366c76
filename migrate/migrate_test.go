package migrate

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// testdataFiles are the hand-written inputs; each has a golden import
// (NAME.golden.yaml: the configuration and the report).
var testdataFiles = []struct {
	path   string
	format Format
}{
	{"testdata/nat.lvs.cf", FormatLVSCF},
	{"testdata/dr.lvs.cf", FormatLVSCF},
	{"testdata/nat.keepalived.conf", FormatKeepalived},
	{"testdata/dr.keepalived.conf", FormatKeepalived},
	{"testdata/forms.keepalived.conf", FormatKeepalived},
	{"testdata/rules.ipvsadm", FormatIPVSADM},
}

func mustYAML(t testing.TB, m proto.Message) string {
	t.Helper()
	j, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		t.Fatal(err)
	}
	return string(y)
}

// TestImportGolden imports every hand-written file and compares the
// configuration and the report (notes) with its golden file.
func TestImportGolden(t *testing.T) {
	for _, tf := range testdataFiles {
		t.Run(filepath.Base(tf.path), func(t *testing.T) {
			r, err := ImportFile(tf.path, Options{})
			if err != nil {
				t.Fatalf("import: %v", err)
			}
			if r.Format != tf.format {
				t.Errorf("detected %s, want %s", r.Format, tf.format)
			}
			var b strings.Builder
			b.WriteString(mustYAML(t, r.Config))
			b.WriteString("# global_set: " + strings.Join(r.GlobalSet, " ") + "\n")
			for _, n := range r.Notes {
				b.WriteString("# note: " + n.String() + "\n")
			}
			golden := tf.path + ".golden.yaml"
			if *update {
				if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got := b.String(); got != string(want) {
				t.Errorf("import of %s differs from %s (go test -update rewrites it):\n%s", tf.path, golden, got)
			}
		})
	}
}

// TestRoundTrip: import → export → import is the identity, for every
// hand-written file in its own format; exporting to the other formats gives
// files that import cleanly.
func TestRoundTrip(t *testing.T) {
	for _, tf := range testdataFiles {
		t.Run(filepath.Base(tf.path), func(t *testing.T) {
			r, err := ImportFile(tf.path, Options{})
			if err != nil {
				t.Fatalf("import: %v", err)
			}
			for _, f := range Formats {
				out, _, err := Export(r.Config, f)
				if err != nil {
					t.Fatalf("export %s: %v", f, err)
				}
				again, err := Import(out, Options{Format: f, Filename: "export." + string(f)})
				if f != tf.format {
					// Another format may not hold everything (one lvs.cf
					// network for all services, no names in keepalived);
					// its export still reads back, or fails with lines.
					var es Errors
					if err != nil && !errors.As(err, &es) {
						t.Errorf("re-import of the %s export: %v", f, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("re-import of the %s export: %v\n%s", f, err, out)
				}
				if !proto.Equal(r.Config, again.Config) {
					t.Errorf("%s round trip changed the config:\nfirst:\n%s\nagain:\n%s\nexport:\n%s",
						f, mustYAML(t, r.Config), mustYAML(t, again.Config), out)
				}
			}
		})
	}
}

func service(t *testing.T, c *shoalv1.Config, name string) *shoalv1.VirtualService {
	t.Helper()
	for _, s := range c.GetServices() {
		if s.GetName() == name {
			return s
		}
	}
	t.Fatalf("no service %q in %s", name, mustYAML(t, c))
	return nil
}

func TestLVSCFKeys(t *testing.T) {
	const head = "network = direct\n"
	tests := []struct {
		name string
		in   string
		want func(t *testing.T, r *Result)
	}{
		{
			name: "escapes in send and expect",
			in: head + `virtual v {
	address = 192.0.2.1 eth0:1
	port = 80
	send = "GET / HTTP/1.0\r\n\tX: \"q\" \\ \'s\' \z\r\n\r\n"
	expect = 'a\nb'
}`,
			want: func(t *testing.T, r *Result) {
				hc := service(t, r.Config, "v").GetHealthCheck()
				if want := `GET / HTTP/1.0\r\n\tX: "q" \\ 's' \\z\r\n\r\n`; hc.GetSend() != want {
					t.Errorf("send = %q, want %q", hc.GetSend(), want)
				}
				if hc.GetExpect() != "a\nb" || hc.GetKind() != "send-expect" {
					t.Errorf("expect = %q kind %q", hc.GetExpect(), hc.GetKind())
				}
			},
		},
		{
			name: "unquoted send keeps its escapes",
			in:   head + "virtual v {\naddress = 192.0.2.1\nport = 21\nsend = QUIT\\r\\n\n}\n",
			want: func(t *testing.T, r *Result) {
				if got := service(t, r.Config, "v").GetHealthCheck().GetSend(); got != `QUIT\r\n` {
					t.Errorf("send = %q", got)
				}
			},
		},
		{
			name: "timeout reentry quiesce persistence",
			in: head + `virtual v {
  address = 192.0.2.1 eth1
  vip_nmask = 255.255.255.128
  port = https
  timeout = 6
  reentry = 15
  quiesce_server = 1
  persistent = 60
  pmask = 255.255.0.0
  scheduler = WRR
  protocol = TCP
}`,
			want: func(t *testing.T, r *Result) {
				s := service(t, r.Config, "v")
				hc := s.GetHealthCheck()
				if hc.GetDownAfter().AsDuration() != 6*time.Second || hc.GetReentry().AsDuration() != 15*time.Second {
					t.Errorf("down_after %v reentry %v", hc.GetDownAfter().AsDuration(), hc.GetReentry().AsDuration())
				}
				if !s.GetQuiesce() || s.GetPersistenceTimeout() != 60 || s.GetPersistencePrefix() != 16 {
					t.Errorf("quiesce %v persistence %d/%d", s.GetQuiesce(), s.GetPersistenceTimeout(), s.GetPersistencePrefix())
				}
				if s.GetPort() != 443 || s.GetScheduler() != "wrr" || s.GetForward() != "dr" {
					t.Errorf("port %d scheduler %s forward %s", s.GetPort(), s.GetScheduler(), s.GetForward())
				}
				if v := s.GetVip(); v.GetInterface() != "eth1" || v.GetLabel() != "" || v.GetPrefixLength() != 25 {
					t.Errorf("vip %v", v)
				}
			},
		},
		{
			name: "send_program without shell syntax becomes an argv exec check",
			in:   head + "virtual v {\naddress = 192.0.2.1\nport = 80\nsend_program = \"/bin/check %h\"\nexpect = \"OK\"\nuse_regex = 1\n}\n",
			want: func(t *testing.T, r *Result) {
				hc := service(t, r.Config, "v").GetHealthCheck()
				if hc.GetKind() != "exec" || hc.GetShell() || !slices.Equal(hc.GetCommand(), []string{"/bin/check", "%h"}) || !hc.GetRegex() {
					t.Errorf("check %v", hc)
				}
			},
		},
		{
			name: "duplicate server names are fine, addresses identify",
			in: head + `virtual v {
address = 192.0.2.1
port = 80
server localhost.localdomain {
address = 10.0.0.1
}
server localhost.localdomain {
address = 10.0.0.2
weight = 0
active = 0
}
}`,
			want: func(t *testing.T, r *Result) {
				rs := service(t, r.Config, "v").GetRealServers()
				if len(rs) != 2 || rs[1].GetWeight() != 0 || rs[1].GetActive() || rs[0].GetName() != "localhost.localdomain" {
					t.Errorf("real servers %v", rs)
				}
			},
		},
		{
			name: "brace on the next line, comments, CRLF, trailing semicolon",
			in:   "# c\r\nnetwork = nat\r\nvirtual v\r\n{\r\n  address = 192.0.2.1 # vip\r\n  port = 80\r\n};\r\n",
			want: func(t *testing.T, r *Result) {
				if s := service(t, r.Config, "v"); s.GetPort() != 80 || s.GetForward() != "nat" {
					t.Errorf("service %v", s)
				}
			},
		},
		{
			name: "fwmark keeps the port for the check",
			in:   head + "virtual m {\naddress = 192.0.2.1\nfwmark = 5\nport = 443\n}\n",
			want: func(t *testing.T, r *Result) {
				s := service(t, r.Config, "m")
				if s.GetFwmark() != 5 || s.GetPort() != 0 || s.GetHealthCheck().GetPort() != 443 {
					t.Errorf("service %v", s)
				}
			},
		},
		{
			name: "global settings and what is set",
			in:   "nat_router = 10.0.0.254 eth1:1\nnat_nmask = 255.255.255.0\ntcp_timeout = 900\nmonitor_links = 1\nvirtual v {\naddress = 192.0.2.1 eth0:1\nport = 80\n}\n",
			want: func(t *testing.T, r *Result) {
				g := r.Config.GetGlobal()
				if g.GetNatRouter().GetPrefixLength() != 24 || g.GetNatRouter().GetLabel() != "eth1:1" || g.GetTcpTimeout().AsDuration() != 900*time.Second {
					t.Errorf("global %v", g)
				}
				if strings.Join(g.GetMonitorLinks(), ",") != "eth0,eth1" {
					t.Errorf("monitor_links %v", g.GetMonitorLinks())
				}
				if got := strings.Join(r.GlobalSet, ","); got != "monitor_links,nat_router,tcp_timeout" {
					t.Errorf("GlobalSet %s", got)
				}
			},
		},
		{
			name: "empty values are unset; nat_router only with network = nat",
			in:   "network = direct\nnat_router = 10.0.0.254 eth1\nvirtual v {\naddress = 192.0.2.1\nport = 80\npersistent =\nsorry_server = \"\"\nsend =\n}\n",
			want: func(t *testing.T, r *Result) {
				s := service(t, r.Config, "v")
				if s.GetPersistenceTimeout() != 0 || s.GetSorryServer() != nil || s.GetHealthCheck().GetKind() != "send-expect" {
					t.Errorf("service %v", s)
				}
				if r.Config.GetGlobal().GetNatRouter() != nil || len(r.GlobalSet) != 0 {
					t.Errorf("nat_router imported with network = direct: %v", r.Config.GetGlobal())
				}
				if len(r.Notes) != 1 || r.Notes[0].Line != 2 {
					t.Errorf("notes %v", r.Notes)
				}
			},
		},
		{
			name: "heartbeat keys are reported, never dropped",
			in:   "primary = 1.2.3.4\nkeepalive = 6\nrsh_command = ssh\nload_monitor = none\n",
			want: func(t *testing.T, r *Result) {
				if len(r.Notes) != 3 {
					t.Fatalf("notes %v", r.Notes)
				}
				for _, n := range r.Notes {
					if !strings.Contains(n.Text, "not imported: replaced by") {
						t.Errorf("note %q", n)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Import([]byte(tt.in), Options{Format: FormatLVSCF})
			if tt.name == "heartbeat keys are reported, never dropped" {
				// load_monitor is a virtual key: it is unknown globally.
				if err == nil || !strings.Contains(err.Error(), `4: unknown global key "load_monitor"`) {
					t.Fatalf("err = %v", err)
				}
				r, err = Import([]byte(tt.in), Options{Format: FormatLVSCF, Lenient: true})
			}
			if err != nil {
				t.Fatalf("import: %v", err)
			}
			tt.want(t, r)
		})
	}
}

// TestLVSCFErrors: every problem is reported with its line, all at once.
func TestLVSCFErrors(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  []string // substrings, one per expected error, in line order
		loose bool     // --lenient imports it
	}{
		{"unknown key", "virtual v {\naddress = 192.0.2.1\nport = 80\ncolour = blue\n}\n", []string{`:4: unknown key "colour" in virtual v`}, true},
		{"malformed line", "network = nat\nthis is not a key\n", []string{":2: cannot read"}, true},
		{"unterminated quote", "virtual v {\naddress = 192.0.2.1\nport = 80\nsend = \"GET /\n}\n", []string{":4: send: unterminated quote"}, true},
		{"missing brace", "virtual v {\naddress = 192.0.2.1\nport = 80\n", []string{":1: virtual v is never closed"}, true},
		{"duplicate real server", "virtual v {\naddress = 192.0.2.1\nport = 80\nserver a {\naddress = 10.0.0.1\n}\nserver b {\naddress = 10.0.0.1\nport = 80\n}\n}\n",
			[]string{":7: server b: 10.0.0.1:80 is already a real server"}, true},
		{"bad values, all reported", "network = sideways\nvirtual v {\naddress = 999.0.0.1\nport = 99999\nweight = 1\n}\n",
			[]string{":1: network = sideways", ":3: address", ":4: port", `:5: unknown key "weight"`, ":2: virtual v has no address"}, false},
		{"validation error names the line", "virtual v {\naddress = 192.0.2.1\nport = 80\nscheduler = fastest\n}\n", []string{`:4: services[v].scheduler: "fastest" is not one of`}, false},
		{"validation error of a real server", "network = direct\nvirtual v {\naddress = 192.0.2.1\nport = 80\nserver a {\naddress = 10.0.0.1\nweight = 70000\n}\n}\n",
			[]string{":7: services[v].real_servers[10.0.0.1:80].weight: 70000 is above 65535"}, false},
		{"failover only service", "service = fos\n", []string{":1: service = fos"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Import([]byte(tt.in), Options{Format: FormatLVSCF, Filename: "lvs.cf"})
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("err = %v, want Errors", err)
			}
			if len(es) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(es), len(tt.want), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), "lvs.cf"+w) {
					t.Errorf("errors lack %q:\n%v", w, err)
				}
			}
			r, err := Import([]byte(tt.in), Options{Format: FormatLVSCF, Lenient: true})
			if tt.loose && (err != nil || len(r.Warnings) == 0) {
				t.Errorf("lenient import: err %v, warnings %v", err, r)
			}
		})
	}
}

func TestKeepalivedMapping(t *testing.T) {
	r, err := ImportFile("testdata/nat.keepalived.conf", Options{})
	if err != nil {
		t.Fatal(err)
	}
	web := service(t, r.Config, "tcp-192.168.200.10-80")
	hc := web.GetHealthCheck()
	switch {
	case web.GetScheduler() != "wrr", web.GetForward() != "nat", web.GetPersistenceTimeout() != 50, web.GetPersistencePrefix() != 24:
		t.Errorf("service %v", web)
	case web.GetVip().GetInterface() != "eth0" || web.GetVip().GetLabel() != "eth0:1" || web.GetVip().GetPrefixLength() != 24:
		t.Errorf("vip %v", web.GetVip())
	case hc.GetKind() != "http" || hc.GetHttpPath() != "/health" || hc.GetHttpStatus() != 200 || hc.GetHttpHost() != "www.example.com":
		t.Errorf("check %v", hc)
	case hc.GetInterval().AsDuration() != 6*time.Second || hc.GetTimeout().AsDuration() != 3*time.Second || hc.GetFall() != 4 || !hc.GetInitiallyUp():
		t.Errorf("check timing %v", hc)
	case !web.GetQuiesce() || web.GetSorryServer().GetPort() != 8080:
		t.Errorf("quiesce/sorry %v", web)
	}
	tls := service(t, r.Config, "tcp-192.168.200.11-443").GetHealthCheck()
	if tls.GetKind() != "https" || !tls.GetTlsSkipVerify() || tls.GetPort() != 8443 || tls.GetFall() != 3 || tls.GetInitiallyUp() {
		t.Errorf("SSL_GET check %v", tls)
	}
	dns := service(t, r.Config, "udp-192.168.200.11-53").GetHealthCheck()
	if dns.GetKind() != "exec" || strings.Join(dns.GetCommand(), "|") != "/usr/local/bin/check_dns|10.20.0.5" || dns.GetShell() || dns.GetTimeout().AsDuration() != 3*time.Second || dns.GetFall() != 1 {
		t.Errorf("MISC_CHECK from the included file %v", dns)
	}
	if nr := r.Config.GetGlobal().GetNatRouter(); nr.GetAddress() != "10.20.0.254" || nr.GetInterface() != "eth1" || nr.GetPrefixLength() != 24 {
		t.Errorf("nat_router %v", nr)
	}
	if got := strings.Join(r.Config.GetGlobal().GetMonitorLinks(), ","); got != "eth0,eth1" {
		t.Errorf("monitor_links %s", got)
	}
}

func TestKeepalivedErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"unknown keyword", "virtual_server 192.0.2.1 80 {\n  lb_algo rr\n  frobnicate 3\n}\n", `:3: unknown keyword "frobnicate" in virtual_server`},
		{"bad address", "virtual_server 192.0.2 80 {\n}\n", ":1: virtual_server"},
		{"unclosed", "virtual_server 192.0.2.1 80 {\n  lb_algo rr\n", "never closed"},
		{"missing includem", "includem /nonexistent/*.conf\n", ":1: includem /nonexistent/*.conf: no file matches"},
		{"vrrp without interface", "vrrp_instance V {\n virtual_ipaddress {\n 192.0.2.1\n }\n}\n", ":1: vrrp_instance V has no interface"},
		{"bad delay_loop", "virtual_server 192.0.2.1 80 {\n  delay_loop 0\n  real_server 10.0.0.1 80 {\n    TCP_CHECK {\n    }\n  }\n}\n", `:2: delay_loop: "0": must be more than 0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Import([]byte(tt.in), Options{Format: FormatKeepalived, Filename: "k.conf"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	for _, tf := range testdataFiles {
		data, err := os.ReadFile(tf.path)
		if err != nil {
			t.Fatal(err)
		}
		if f, err := Detect(data); err != nil || f != tf.format {
			t.Errorf("%s: detected %q, %v; want %s", tf.path, f, err, tf.format)
		}
	}
	if _, err := Detect([]byte("\n# nothing\n")); err == nil {
		t.Error("empty file detected as a format")
	}
}

// TestMerge: the file's services replace the cluster's; global settings the
// file does not set are kept.
func TestMerge(t *testing.T) {
	r, err := Import([]byte("tcp_timeout = 60\nvirtual v {\naddress = 192.0.2.1\nport = 80\n}\n"), Options{Format: FormatLVSCF})
	if err != nil {
		t.Fatal(err)
	}
	cur := &shoalv1.Config{Serial: 9, Global: &shoalv1.Global{
		GarpCount:    9,
		NatRouter:    &shoalv1.Address{Address: "10.9.9.9"},
		TcpTimeout:   nil,
		UdpTimeout:   r.Config.GetGlobal().GetTcpTimeout(),
		MonitorLinks: []string{"eth7"},
	}, Services: []*shoalv1.VirtualService{{Name: "old"}}}
	m := r.Merge(cur)
	g := m.GetGlobal()
	if g.GetGarpCount() != 9 || g.GetNatRouter().GetAddress() != "10.9.9.9" || g.GetMonitorLinks()[0] != "eth7" || g.GetUdpTimeout() == nil {
		t.Errorf("kept settings lost: %v", g)
	}
	if g.GetTcpTimeout().AsDuration() != time.Minute {
		t.Errorf("tcp_timeout = %v", g.GetTcpTimeout())
	}
	if len(m.GetServices()) != 1 || m.GetServices()[0].GetName() != "v" || m.GetSerial() != 9 {
		t.Errorf("services %v", m.GetServices())
	}
	if cur.GetServices()[0].GetName() != "old" {
		t.Error("Merge changed the current config")
	}
}

// TestKeepalivedIncludeLines: a problem in an included file names that
// file and its line.
func TestKeepalivedIncludeLines(t *testing.T) {
	files := map[string]string{
		"/etc/keepalived/conf.d/web.conf": "virtual_server 192.0.2.1 80 {\n  lb_algo rr\n  lb_kind NAT\n  persistence_timeout 60\n  lb_algo fastest\n}\n",
	}
	o := Options{
		Format:   FormatKeepalived,
		Filename: "/etc/keepalived/keepalived.conf",
		ReadFile: func(name string) ([]byte, error) {
			if s, ok := files[name]; ok {
				return []byte(s), nil
			}
			return nil, os.ErrNotExist
		},
		Glob: func(pattern string) ([]string, error) {
			if pattern == "/etc/keepalived/conf.d/*.conf" {
				return []string{"/etc/keepalived/conf.d/web.conf"}, nil
			}
			return nil, nil
		},
	}
	_, err := Import([]byte("global_defs {\n}\ninclude conf.d/*.conf\n"), o)
	if want := `/etc/keepalived/conf.d/web.conf:5: services[tcp-192.0.2.1-80].scheduler: "fastest"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want %q", err, want)
	}
}

func TestIPVSADMErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"server before service", "-a -t 192.0.2.1:80 -r 10.0.0.1:80 -m\n", ":1: real server for tcp 192.0.2.1:80 before its -A line"},
		{"unknown option", "-A -t 192.0.2.1:80 -s rr --frob\n", `:1: cannot read "--frob"`},
		{"two services on a line", "-A -t 192.0.2.1:80 -f 3\n", ":1: more than one service"},
		{"duplicate", "-A -t 192.0.2.1:80\n-A -t 192.0.2.1:80\n", ":2: service tcp 192.0.2.1:80 is added twice"},
		{"bad scheduler", "-A -t 192.0.2.1:80 -s fastest\n", `:1: services[tcp-192.0.2.1-80].scheduler`},
		{"lower above upper", "-A -t 192.0.2.1:80\n-a -t 192.0.2.1:80 -r 10.0.0.1 -m -x 10 -y 20\n",
			`:2: services[tcp-192.0.2.1-80].real_servers[10.0.0.1:80].lower_threshold: 20 is above upper_threshold 10`},
		{"threshold not a number", "-A -t 192.0.2.1:80\n-a -t 192.0.2.1:80 -r 10.0.0.1 -m -x many\n", `:2: -x: `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Import([]byte(tt.in), Options{Format: FormatIPVSADM, Filename: "rules"})
			if err == nil || !strings.Contains(err.Error(), "rules"+tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestLVSCFLenientSkipsBlocks: --lenient skips an unreadable block whole and
// imports the rest.
func TestLVSCFLenientSkipsBlocks(t *testing.T) {
	in := "virtual a {\naddress = 192.0.2.1\nport = 80\nmonitor x {\nsend = y\n}\nserver s {\naddress = 10.0.0.1\n}\n}\nvirtual b {\naddress = 192.0.2.2\nport = 80\n}\n"
	if _, err := Import([]byte(in), Options{Format: FormatLVSCF}); err == nil || !strings.Contains(err.Error(), `4: cannot read "monitor x {"`) {
		t.Fatalf("err = %v", err)
	}
	r, err := Import([]byte(in), Options{Format: FormatLVSCF, Lenient: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Config.GetServices()) != 2 || len(service(t, r.Config, "a").GetRealServers()) != 1 || len(r.Warnings) != 1 {
		t.Errorf("services %v warnings %v", r.Config.GetServices(), r.Warnings)
	}
}

// TestDRPortBecomesCheckPort: a direct-routed real server's own port only
// ever served the check.
func TestDRPortBecomesCheckPort(t *testing.T) {
	in := "virtual_server fwmark 1 {\n  lb_kind DR\n  real_server 10.0.0.1 80 {\n    TCP_CHECK {\n    }\n  }\n}\n"
	r, err := Import([]byte(in), Options{Format: FormatKeepalived})
	if err != nil {
		t.Fatal(err)
	}
	s := service(t, r.Config, "fwmark-1")
	if rs := s.GetRealServers()[0]; rs.GetPort() != 0 || s.GetHealthCheck().GetPort() != 80 {
		t.Errorf("real server port %d, check port %d", rs.GetPort(), s.GetHealthCheck().GetPort())
	}
	r, err = Import([]byte("-A -f 1 -s rr\n-a -f 1 -r 10.0.0.1:80 -g -w 1\n"), Options{Format: FormatIPVSADM})
	if err != nil {
		t.Fatal(err)
	}
	if rs := service(t, r.Config, "fwmark-1").GetRealServers()[0]; rs.GetPort() != 0 || len(r.Notes) != 1 {
		t.Errorf("real server port %d, notes %v", rs.GetPort(), r.Notes)
	}
	r, err = Import([]byte("network = direct\nvirtual v {\naddress = 192.0.2.1\nport = 80\nserver a {\naddress = 10.0.0.1\nport = 8080\n}\n}\n"), Options{Format: FormatLVSCF})
	if err != nil {
		t.Fatal(err)
	}
	if rs := service(t, r.Config, "v").GetRealServers()[0]; rs.GetPort() != 0 || len(r.Notes) != 1 || r.Notes[0].Line != 5 {
		t.Errorf("real server port %d, notes %v", rs.GetPort(), r.Notes)
	}
}
