package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func TestParseAddrPort(t *testing.T) {
	tests := []struct {
		in   string
		addr string
		port uint32
		bad  bool
	}{
		{"10.0.0.1", "10.0.0.1", 0, false},
		{"10.0.0.1:8080", "10.0.0.1", 8080, false},
		{"[2001:db8::1]:80", "2001:db8::1", 80, false},
		{"2001:db8::1", "2001:db8::1", 0, false},
		{"[2001:db8::1]", "2001:db8::1", 0, false},
		{"web:80", "", 0, true},
		{"10.0.0.1:99999", "", 0, true},
	}
	for _, tt := range tests {
		addr, port, err := parseAddrPort(tt.in)
		if (err != nil) != tt.bad || addr != tt.addr || port != tt.port {
			t.Errorf("parseAddrPort(%q) = %q %d %v", tt.in, addr, port, err)
		}
	}
}

func TestParseAddrPrefix(t *testing.T) {
	tests := []struct {
		in   string
		addr string
		bits uint32
		bad  bool
	}{
		{"10.0.0.1", "10.0.0.1", 0, false},
		{"10.0.0.1/24", "10.0.0.1", 24, false},
		{"2001:db8::1/64", "2001:db8::1", 64, false},
		{"10.0.0.1/33", "", 0, true},
		{"nope", "", 0, true},
	}
	for _, tt := range tests {
		addr, bits, err := parseAddrPrefix(tt.in)
		if (err != nil) != tt.bad || addr != tt.addr || bits != tt.bits {
			t.Errorf("parseAddrPrefix(%q) = %q %d %v", tt.in, addr, bits, err)
		}
	}
}

// serviceFromFlags parses args with the service flags and applies them.
func serviceFromFlags(t *testing.T, vs *shoalv1.VirtualService, args ...string) []string {
	t.Helper()
	var f serviceFlags
	cmd := &cobra.Command{Use: "x"}
	f.register(cmd.Flags())
	if err := cmd.Flags().Parse(args); err != nil {
		t.Fatal(err)
	}
	mask, err := f.apply(cmd.Flags(), vs)
	if err != nil {
		t.Fatal(err)
	}
	return mask
}

func TestServiceFlags(t *testing.T) {
	tests := []struct {
		name string
		cur  *shoalv1.VirtualService
		args []string
		want *shoalv1.VirtualService
		mask string
	}{
		{
			name: "add",
			cur:  &shoalv1.VirtualService{Name: "web"},
			args: []string{"--vip", "10.0.0.1/24", "--interface", "eth1", "--port", "80", "--scheduler", "rr", "--persistent", "300", "--sorry", "10.0.9.9:8080", "--check", "http", "--check-path", "/healthz", "--interval", "5s"},
			want: &shoalv1.VirtualService{Name: "web", Vip: &shoalv1.Address{Address: "10.0.0.1", PrefixLength: 24, Interface: "eth1"}, Port: 80, Scheduler: "rr",
				PersistenceTimeout: 300, SorryServer: &shoalv1.RealServer{Address: "10.0.9.9", Port: 8080},
				HealthCheck: &shoalv1.HealthCheck{Kind: "http", HttpPath: "/healthz", Interval: durationpb.New(5e9)}},
			mask: "vip,port,scheduler,persistence_timeout,sorry_server,health_check",
		},
		{
			name: "update keeps the rest of the check",
			cur:  &shoalv1.VirtualService{Name: "web", Port: 80, HealthCheck: &shoalv1.HealthCheck{Kind: "http", HttpPath: "/"}},
			args: []string{"--fall", "5", "--inactive"},
			want: &shoalv1.VirtualService{Name: "web", Port: 80, Active: proto.Bool(false), HealthCheck: &shoalv1.HealthCheck{Kind: "http", HttpPath: "/", Fall: 5}},
			mask: "active,health_check",
		},
		{
			name: "exec check runs through the shell",
			cur:  &shoalv1.VirtualService{Name: "db"},
			args: []string{"--check", "exec", "--check-command", "/usr/local/bin/check %h %p", "--expect", "OK"},
			want: &shoalv1.VirtualService{Name: "db", HealthCheck: &shoalv1.HealthCheck{Kind: "exec", Command: []string{"/usr/local/bin/check", "%h", "%p"}, Expect: "OK"}},
			mask: "health_check",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mask := serviceFromFlags(t, tt.cur, tt.args...)
			if !proto.Equal(tt.cur, tt.want) {
				t.Errorf("got %v\nwant %v", tt.cur, tt.want)
			}
			if got := strings.Join(mask, ","); got != tt.mask {
				t.Errorf("mask %q, want %q", got, tt.mask)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	for _, in := range []string{
		"services:\n- name: web\n  port: 80\n  vip: {address: 10.0.0.1}\n",
		"config:\n  services:\n  - name: web\n    port: 80\n    vip: {address: 10.0.0.1}\n",
		`{"services":[{"name":"web","port":80,"vip":{"address":"10.0.0.1"}}]}`,
		`{"config":{"services":[{"name":"web","port":80,"vip":{"address":"10.0.0.1"}}]}}`,
		// YAML's flow style: not JSON, so it takes the YAML path.
		`{services: [{name: web, port: 80, vip: {address: 10.0.0.1}}]}`,
	} {
		cfg, err := parseConfig([]byte(in))
		if err != nil || len(cfg.GetServices()) != 1 || cfg.GetServices()[0].GetVip().GetAddress() != "10.0.0.1" {
			t.Errorf("parseConfig(%q) = %v, %v", in, cfg, err)
		}
	}
	if _, err := parseConfig([]byte("services: [{name: web, prot: 80}]")); err == nil {
		t.Error("unknown field accepted")
	}
	if _, err := parseConfig([]byte(`{"services":[{"name":"web","prot":80}]}`)); err == nil {
		t.Error("unknown field accepted in JSON")
	}
	// A broken JSON file is read as YAML, whose error names the line.
	if _, err := parseConfig([]byte("{\n\"services\": [\n  {\"name\": \"web\",\n}")); err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("broken JSON: %v, want an error naming line 4", err)
	}
}

// TestOutputFormats checks that yaml output parses back as the same message.
func TestOutputFormats(t *testing.T) {
	resp := &shoalv1.GetConfigResponse{Config: &shoalv1.Config{Serial: 3, Services: []*shoalv1.VirtualService{{Name: "web", Port: 80, RealServers: []*shoalv1.RealServer{{Address: "10.0.1.1", Weight: proto.Uint32(0)}}}}}}
	for _, format := range []string{"json", "yaml"} {
		var out bytes.Buffer
		a := newApp(&out, &out)
		a.output = format
		if err := a.print(resp, nil); err != nil {
			t.Fatal(err)
		}
		cfg, err := parseConfig(out.Bytes())
		if err != nil || !proto.Equal(cfg, resp.GetConfig()) {
			t.Errorf("%s output does not parse back: %v %v\n%s", format, cfg, err, out.String())
		}
	}
}

func TestCommandTree(t *testing.T) {
	root := newApp(&bytes.Buffer{}, &bytes.Buffer{}).root()
	for _, path := range [][]string{
		{"cluster", "status"}, {"cluster", "remove"}, {"cluster", "transfer"},
		{"service", "add"}, {"service", "get"}, {"service", "list"}, {"service", "delete"}, {"service", "update"},
		{"server", "add"}, {"server", "update"}, {"server", "remove"},
		{"config", "get"}, {"config", "apply"}, {"watch"}, {"status"},
	} {
		cmd, _, err := root.Find(path)
		if err != nil || cmd.Name() != path[len(path)-1] {
			t.Errorf("lvsctl %s: %v", strings.Join(path, " "), err)
		}
	}
}

func TestRealServerThresholdFlags(t *testing.T) {
	var f realServerFlags
	cmd := &cobra.Command{Use: "x"}
	f.register(cmd.Flags())
	if err := cmd.Flags().Parse([]string{"--upper-threshold", "100", "--lower-threshold", "75"}); err != nil {
		t.Fatal(err)
	}
	rs := &shoalv1.RealServer{Address: "10.0.0.1"}
	mask := f.apply(cmd.Flags(), rs)
	if got := strings.Join(mask, ","); got != "upper_threshold,lower_threshold" {
		t.Errorf("mask %q", got)
	}
	if rs.UpperThreshold != 100 || rs.LowerThreshold != 75 || rs.Weight != nil {
		t.Errorf("got %v", rs)
	}

	var b strings.Builder
	vs := &shoalv1.VirtualService{Name: "web", Port: 80, Forward: "nat", RealServers: []*shoalv1.RealServer{
		{Address: "10.0.0.1", UpperThreshold: 100, LowerThreshold: 75, HealthChecks: []*shoalv1.HealthCheck{{Kind: "tcp"}, {Kind: "http", Port: 8081}}},
		{Address: "10.0.0.2"},
	}}
	if err := serviceTable(&b, vs); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"UPPER  LOWER  CHECKS", "100    75     tcp,http:8081", "-      -      service's"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("server table lacks %q:\n%s", want, b.String())
		}
	}
}
