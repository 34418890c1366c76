package migrate

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func TestSplitCommand(t *testing.T) {
	for _, tt := range []struct {
		line string
		want []string // nil: needs a shell
	}{
		{"/usr/local/bin/check %h %p", []string{"/usr/local/bin/check", "%h", "%p"}},
		{"  /x   a\tb ", []string{"/x", "a", "b"}},
		{`/x --site "lab one" 'it''s'`, []string{"/x", "--site", "lab one", "its"}},
		{`/x '$HOME' "a'b"`, []string{"/x", "$HOME", "a'b"}},
		{`/x --opt=1 a,b 10.0.0.1:80`, []string{"/x", "--opt=1", "a,b", "10.0.0.1:80"}},
		{"/x | mail root", nil},
		{"/x > /tmp/out", nil},
		{"/x; reboot", nil},
		{"/x $HOST", nil},
		{`/x "$HOST"`, nil},
		{"/x `id`", nil},
		{"/x *", nil},
		{"/x && /y", nil},
		{`/x "open`, nil},
		{"", nil},
	} {
		got, err := SplitCommand(tt.line)
		if tt.want == nil {
			if err == nil {
				t.Errorf("SplitCommand(%q) = %q, want a refusal", tt.line, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("SplitCommand(%q) = %q, %v, want %q", tt.line, got, err, tt.want)
		}
	}
}

func TestJoinCommandRoundTrips(t *testing.T) {
	for _, argv := range [][]string{
		{"/x"},
		{"/x", "%h", "%p"},
		{"/x", "lab one", "it's", `a"b`, "$HOME", "", "a|b", "tab\there"},
	} {
		got, err := SplitCommand(joinCommand(argv))
		if err != nil || !slices.Equal(got, argv) {
			t.Errorf("split(join(%q)) = %q, %v", argv, got, err)
		}
	}
}

func TestKeepalivedHook(t *testing.T) {
	for _, tt := range []struct {
		key, value, service, server string
		want                        *shoalv1.Hook
		err                         string
	}{
		{"notify_master", "/etc/keepalived/master.sh", "", "", &shoalv1.Hook{Events: []string{"leader"}, Command: []string{"/etc/keepalived/master.sh"}}, ""},
		{"notify_backup", `/etc/shoal/scripts/state BACKUP "site a"`, "", "", &shoalv1.Hook{Events: []string{"follower"}, Command: []string{"/etc/shoal/scripts/state", "BACKUP", "site a"}}, ""},
		{"notify_fault", "/s/fault", "", "", &shoalv1.Hook{Events: []string{"fence-lapse"}, Command: []string{"/s/fault"}}, ""},
		{"notify_stop", "/s/stop", "", "", &shoalv1.Hook{Events: []string{"shutdown"}, Command: []string{"/s/stop"}}, ""},
		{"notify_up", "/s/up", "web", "10.0.0.1:80", &shoalv1.Hook{Events: []string{"server-up"}, Command: []string{"/s/up"}, Service: "web", RealServer: "10.0.0.1:80"}, ""},
		{"notify_down", "/s/down", "web", "10.0.0.1:80", &shoalv1.Hook{Events: []string{"server-down"}, Command: []string{"/s/down"}, Service: "web", RealServer: "10.0.0.1:80"}, ""},
		{"notify_master", "master.sh", "", "", nil, `"master.sh" is not an absolute path`},
		// keepalived execs the words without a shell: a | is an argument,
		// and quotes and backslashes group as keepalived's own split does.
		{"notify_master", "/s/m | logger $X", "", "", &shoalv1.Hook{Events: []string{"leader"}, Command: []string{"/s/m", "|", "logger", "$X"}}, ""},
		{"notify_master", `/s/m 'a b' c\ d \x41`, "", "", &shoalv1.Hook{Events: []string{"leader"}, Command: []string{"/s/m", "a b", "c d", "A"}}, ""},
		{"notify_master", "/s/../m", "", "", nil, "not an absolute path"},
		{"notify_master", "/s/m 'open", "", "", nil, "missing its closing"},
		{"notify_master", "", "", "", nil, "empty command"},
		{"notify", "/s/notify", "", "", nil, "TYPE NAME STATE"},
		{"notify_deleted", "/s/x", "", "", nil, "not a notify key"},
	} {
		got, err := KeepalivedHook(tt.key, tt.value, tt.service, tt.server)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s %q: %v, want an error with %q", tt.key, tt.value, err, tt.err)
		case tt.err == "" && (err != nil || !proto.Equal(got, tt.want)):
			t.Errorf("%s %q = %v, %v, want %v", tt.key, tt.value, got, err, tt.want)
		}
	}
}

func TestKeepalivedNotify(t *testing.T) {
	keys, skipped := KeepalivedNotify(&shoalv1.Hook{
		Events:  []string{"leader", "follower", "reconcile-error", "server-down"},
		Command: []string{"/s/notify", "site a"},
	})
	want := [][2]string{{"notify_master", `"/s/notify site\ a"`}, {"notify_backup", `"/s/notify site\ a"`}, {"notify_down", `"/s/notify site\ a"`}}
	if !slices.Equal(keys, want) || !slices.Equal(skipped, []string{"reconcile-error"}) {
		t.Errorf("keys %q skipped %q, want %q and [reconcile-error]", keys, skipped, want)
	}
	// And back, through keepalived's first split of the line.
	for _, kv := range keys {
		words, err := kaSplitQuoted(kv[0]+" "+kv[1], false)
		if err != nil || len(words) != 2 {
			t.Fatalf("%s %s splits into %q, %v", kv[0], kv[1], words, err)
		}
		h, err := KeepalivedHook(kv[0], words[1], "", "")
		if err != nil || !slices.Equal(h.GetCommand(), []string{"/s/notify", "site a"}) {
			t.Errorf("%s %q back: %v, %v", kv[0], kv[1], h, err)
		}
	}
}

func TestLVSCFHooks(t *testing.T) {
	in := "network = direct\nactive_cmd = /etc/shoal/scripts/up --loud\ninactive_cmd = /etc/shoal/scripts/down\n" +
		"virtual v {\naddress = 192.0.2.1\nport = 80\nserver a {\naddress = 10.0.0.1\n}\n}\n"
	r, err := Import([]byte(in), Options{Format: FormatLVSCF})
	if err != nil {
		t.Fatal(err)
	}
	want := []*shoalv1.Hook{
		{Events: []string{"leader"}, Command: []string{"/etc/shoal/scripts/up", "--loud"}},
		{Events: []string{"follower"}, Command: []string{"/etc/shoal/scripts/down"}},
	}
	if got := r.Config.GetGlobal().GetHooks(); len(got) != 2 || !proto.Equal(got[0], want[0]) || !proto.Equal(got[1], want[1]) {
		t.Errorf("hooks %v, want %v", got, want)
	}
	if !slices.Contains(r.GlobalSet, "hooks") {
		t.Errorf("global_set %v lacks hooks", r.GlobalSet)
	}

	// A command line that needs a shell is an error naming the line.
	_, err = Import([]byte("network = direct\nactive_cmd = /usr/bin/logger active; /etc/init.d/squid start\n"), Options{Format: FormatLVSCF})
	if err == nil || !strings.HasPrefix(err.Error(), "2: ") || !strings.Contains(err.Error(), "shell syntax") {
		t.Errorf("shell active_cmd: %v, want an error at line 2 saying it needs a shell", err)
	}
}
