package migrate

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// kaOne imports one virtual_server around body and returns its service.
func kaOne(t *testing.T, body string) (*Result, error) {
	t.Helper()
	return Import([]byte("virtual_server 192.0.2.1 80 {\n"+body+"\n}\n"), noFiles(Options{Format: FormatKeepalived, Filename: "k.conf"}))
}

// TestKeepalivedSplitQuoted: misc_path's two splits, as keepalived's
// alloc_strvec_quoted_escaped_common does them (its man page's examples).
func TestKeepalivedSplitQuoted(t *testing.T) {
	for _, tt := range []struct {
		in      string
		escapes bool
		want    []string
	}{
		{`abcd" efg h jkl "mnop`, true, []string{"abcd efg h jkl mnop"}},
		{`abcd "efg h jkl" mnop`, true, []string{"abcd", "efg h jkl", "mnop"}},
		{`a\x41\101\cA\n\q`, true, []string{"aAA\x01\nq"}},
		{`a\ b 'c d' ''`, true, []string{"a b", "c d", ""}},
		{`x "a\"b" y`, false, []string{"x", `a\"b`, "y"}},
	} {
		got, err := kaSplitQuoted(tt.in, tt.escapes)
		if err != nil || strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("kaSplitQuoted(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestKeepalivedMiscPathArgv: misc_path becomes the argv keepalived
// execs, without a shell, and the export writes it back word for word.
func TestKeepalivedMiscPathArgv(t *testing.T) {
	r, err := kaOne(t, `real_server 10.0.0.1 80 {
MISC_CHECK {
misc_path "/bin/check 'a b' \"c\" d\ e #!{}"
}
}`)
	if err != nil {
		t.Fatal(err)
	}
	hc := r.Config.GetServices()[0].GetHealthCheck()
	if got := strings.Join(hc.GetCommand(), "|"); got != `/bin/check|a b|"c"|d e|#!{}` || hc.GetShell() {
		t.Fatalf("argv %q shell %v", hc.GetCommand(), hc.GetShell())
	}
	// A timeout of the virtual server's delay_loop and no retry, as keepalived.
	if hc.GetTimeout().AsDuration() != kaDefaultDelayLoop || hc.GetFall() != 1 {
		t.Errorf("timeout %v fall %d", hc.GetTimeout().AsDuration(), hc.GetFall())
	}
	hc.Command = []string{"/bin/x", "", "tab\there", `back\slash`, `quote"`, "it's", "new\nline"}
	out, _, err := Export(r.Config, FormatKeepalived)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Import(out, noFiles(Options{Format: FormatKeepalived}))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !proto.Equal(again.Config, r.Config) {
		t.Errorf("argv %q came back as %q\n%s", hc.Command, again.Config.GetServices()[0].GetHealthCheck().GetCommand(), out)
	}
	if _, err := kaOne(t, "real_server 10.0.0.1 80 {\nMISC_CHECK {\nmisc_path \"/bin/check %h\"\n}\n}"); err == nil || !strings.Contains(err.Error(), "k.conf:4: misc_path") {
		t.Errorf("%%h: err = %v", err)
	}
}

// TestKeepalivedForms: value forms of the man page, one at a time.
func TestKeepalivedForms(t *testing.T) {
	tcp := "real_server 10.0.0.1 80 {\nTCP_CHECK {\n}\n}"
	tests := []struct {
		name, body string
		check      func(r *Result) string
	}{
		{"timer fractions inherited", "delay_loop 0.5\nconnect_timeout 0.000001\n" + tcp, func(r *Result) string {
			hc := r.Config.GetServices()[0].GetHealthCheck()
			if hc.GetInterval().AsDuration() != 500*time.Millisecond || hc.GetTimeout().AsDuration() != time.Microsecond {
				return hc.String()
			}
			return ""
		}},
		{"checker overrides real server overrides virtual server", "retry 5\nalpha\nreal_server 10.0.0.1 80 {\nretry 2\nalpha no\nTCP_CHECK {\nretry 0\n}\n}", func(r *Result) string {
			if hc := r.Config.GetServices()[0].GetHealthCheck(); hc.GetFall() != 1 || !hc.GetInitiallyUp() {
				return hc.String()
			}
			return ""
		}},
		{"virtual server weight is the default", "weight 9\n" + tcp, func(r *Result) string {
			if w := r.Config.GetServices()[0].GetRealServers()[0].GetWeight(); w != 9 {
				return "weight " + string(rune('0'+w))
			}
			return ""
		}},
		{"persistence_timeout alone is 360", "persistence_timeout\n" + tcp, func(r *Result) string {
			if p := r.Config.GetServices()[0].GetPersistenceTimeout(); p != 360 {
				return "persistence"
			}
			return ""
		}},
		{"status 200-399 is shoal's 0", "real_server 10.0.0.1 80 {\nHTTP_GET {\nurl {\npath /\nstatus_code 200-299 300-399\n}\n}\n}", func(r *Result) string {
			if r.Config.GetServices()[0].GetHealthCheck().GetHttpStatus() != 0 || len(r.Notes) != 0 {
				return "status"
			}
			return ""
		}},
		{"comments anywhere, escaped ones kept", "virtualhost a\\#b # comment\n" + "real_server 10.0.0.1 80 { ! comment\nHTTP_GET { url { path \"/x#y\" } }\n}", func(r *Result) string {
			hc := r.Config.GetServices()[0].GetHealthCheck()
			if hc.GetHttpHost() != "a#b" || hc.GetHttpPath() != "/x#y" {
				return hc.String()
			}
			return ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := kaOne(t, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if bad := tt.check(r); bad != "" {
				t.Errorf("%s\nnotes %v", bad, r.Notes)
			}
		})
	}
}

// TestKeepalivedRefusals: what keepalived itself refuses, or shoal cannot
// express, fails with its line.
func TestKeepalivedRefusals(t *testing.T) {
	for _, tt := range []struct{ body, want string }{
		{"lb_kind nat", ":2: lb_kind nat: keepalived wants NAT, DR or TUN, in capitals"},
		{"lvs_method TUN type gue port 6080", ":2: lvs_method: type gue port 6080 cannot be expressed"},
		{"retry 0", `:2: retry: "0" is below 1`},
		{"delay_loop 1.5s", `:2: delay_loop: "1.5s" is not a time`},
		{"real_server 10.0.0.1 80 {\nweight 65536\n}", ":3: weight"},
		{"real_server 10.0.0.1 80 {\nHTTP_GET {\nurl {\npath /\nstatus_code 600\n}\n}\n}", `:6: status_code: "600"`},
		{"real_server 10.0.0.1 80 {\nHTTP_GET {\nurl {\npath /\nregex \"a(?=b)\"\n}\n}\n}", ":6: regex cannot be expressed in Go's RE2 syntax"},
		{"real_server 10.0.0.1 80 {\nMISC_CHECK {\nconnect_timeout 3\n}\n}", `:4: unknown keyword "connect_timeout" in MISC_CHECK`},
	} {
		if _, err := kaOne(t, tt.body); err == nil || !strings.Contains(err.Error(), "k.conf"+tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.body, err, tt.want)
		}
	}
	for _, in := range []string{"virtual_server 192.0.2.1 {\n}\n", "virtual_server 192.0.2.1 0 {\n}\n", "virtual_server_group G {\n192.0.2.1\n}\nvirtual_server group G {\n}\n"} {
		if _, err := Import([]byte(in), noFiles(Options{Format: FormatKeepalived, Filename: "k.conf"})); err == nil || !strings.Contains(err.Error(), ": virtual_server") || !strings.Contains(err.Error(), "cannot be expressed") {
			t.Errorf("%q: err = %v", in, err)
		}
	}
}

func TestKeepalivedBraces(t *testing.T) {
	got := strings.Join(kaBraces("d/{a,b{1,2}}.conf"), " ")
	if got != "d/a.conf d/b1.conf d/b2.conf" {
		t.Errorf("kaBraces = %s", got)
	}
}

// TestKeepalivedSmallRoundTrips: forms the testdata files do not lead
// with come back from an export unchanged.
func TestKeepalivedSmallRoundTrips(t *testing.T) {
	for _, in := range []string{
		"virtual_server 192.0.2.1 25 {\nreal_server 10.0.0.1 25 {\nSMTP_CHECK {\nconnect_timeout 2.5\n}\n}\n}\n",
		"virtual_server 192.0.2.1 443 {\nreal_server 10.0.0.1 443 {\nSSL_GET {\nurl {\npath \"/a b\"\nregex \"^ok\\\\s+\\x22q\\x22\"\n}\nsni_name x.example\n}\n}\n}\n",
		"virtual_server 192.0.2.1 80 {\nsorry_server 10.0.0.9 80\nsorry_server_lvs_method DR\nreal_server 10.0.0.1 80 {\nHTTP_GET {\nurl {\npath /\nstatus_code 204\n}\n}\n}\n}\n",
	} {
		if _, err := Import([]byte(in), noFiles(Options{Format: FormatKeepalived})); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		roundTrip(t, FormatKeepalived, []byte(in))
	}
}

// TestKeepalivedMiscPathPerServer: keepalived.conf writes each real
// server's address into its own misc_path; shoal's %h says it once, and the
// export writes each address back.
func TestKeepalivedMiscPathPerServer(t *testing.T) {
	in := "virtual_server 192.0.2.1 53 {\nprotocol UDP\n" +
		"real_server 10.0.0.1 53 {\nMISC_CHECK {\nmisc_path \"/bin/dig @10.0.0.1 -p 53\"\n}\n}\n" +
		"real_server 10.0.0.2 5353 {\nMISC_CHECK {\nmisc_path \"/bin/dig @10.0.0.2 -p 5353\"\n}\n}\n}\n"
	r, err := Import([]byte(in), noFiles(Options{Format: FormatKeepalived}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Config.GetServices()[0].GetHealthCheck().GetCommand(), " "); got != "/bin/dig @%h -p %p" || len(r.Notes) != 0 {
		t.Errorf("command %q, notes %v", got, r.Notes)
	}
	out, _, err := Export(r.Config, FormatKeepalived)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`misc_path "/bin/dig @10.0.0.1 -p 53"`, `misc_path "/bin/dig @10.0.0.2 -p 5353"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("export lacks %s:\n%s", want, out)
		}
	}
	roundTrip(t, FormatKeepalived, []byte(in))
}
