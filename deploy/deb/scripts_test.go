package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMaintainerScripts runs postinst, prerm and postrm as dpkg would, for
// each of dpkg's calls, with a systemctl that records its arguments and a
// directory standing in for /run/systemd/system: which systemctl calls
// each makes, and none without systemd.
func TestMaintainerScripts(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	scripts := map[string][]byte{"postinst": postinst, "prerm": prerm, "postrm": postrm}
	tests := []struct {
		script string
		args   []string
		want   string // systemctl calls, one per line
	}{
		{"postinst", []string{"configure", ""}, "--system daemon-reload\n"},
		{"postinst", []string{"configure", "1.4.0"}, "--system daemon-reload\ntry-restart lvsd.service\n"},
		{"postinst", []string{"abort-upgrade", "1.5.0"}, ""},
		{"prerm", []string{"remove"}, "--no-reload disable --now lvsd.service\n"},
		{"prerm", []string{"upgrade", "1.5.0"}, ""},
		{"postrm", []string{"remove"}, "--system daemon-reload\n"},
		{"postrm", []string{"purge"}, "--system daemon-reload\n"},
		{"postrm", []string{"upgrade", "1.5.0"}, "--system daemon-reload\n"},
	}
	for _, systemd := range []bool{true, false} {
		for _, tt := range tests {
			dir := t.TempDir()
			run := filepath.Join(dir, "run-systemd-system")
			if systemd {
				if err := os.Mkdir(run, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			calls := filepath.Join(dir, "calls")
			fake := "#!/bin/sh\necho \"$*\" >> " + calls + "\n"
			if err := os.WriteFile(filepath.Join(dir, "systemctl"), []byte(fake), 0o755); err != nil {
				t.Fatal(err)
			}
			body := strings.ReplaceAll(string(scripts[tt.script]), "/run/systemd/system", run)
			script := filepath.Join(dir, tt.script)
			if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("sh", append([]string{"-eu", script}, tt.args...)...)
			cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin"}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s %v: %v\n%s", tt.script, tt.args, err, out)
				continue
			}
			got, _ := os.ReadFile(calls)
			want := tt.want
			if !systemd {
				want = ""
			}
			if string(got) != want {
				t.Errorf("%s %v (systemd %v): systemctl calls %q, want %q", tt.script, tt.args, systemd, got, want)
			}
		}
	}
}
