package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-lb/shoal/migrate"
)

func runCtl(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	a := newApp(&out, &errb)
	root := a.root()
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errb.String(), err
}

// TestConvert converts without a cluster: lvs.cf to keepalived and back to
// YAML, with the report on stderr.
func TestConvert(t *testing.T) {
	out, errs, err := runCtl(t, "convert", "../../migrate/testdata/nat.lvs.cf", "--to", "keepalived")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "virtual_server 192.168.1.250 80 {") || !strings.Contains(errs, "primary: not imported") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", out, errs)
	}
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	y, _, err := runCtl(t, "convert", path, "--to", "yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig([]byte(y))
	if err != nil {
		t.Fatalf("convert --to yaml is not readable by config apply: %v\n%s", err, y)
	}
	if len(cfg.GetServices()) != 2 { // the inactive smtp service is not written to keepalived
		t.Errorf("services %v", cfg.GetServices())
	}
}

// TestImportReportsLines: a bad file fails before any call, naming each
// bad line.
func TestImportReportsLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lvs.cf")
	bad := "network = nat\nvirtual web {\naddress = 192.0.2.1\nport = 80\ncolour = blue\n}\nbogus line\n"
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, err := runCtl(t, "-s", "127.0.0.1:1", "import", path, "--format", "lvs.cf")
	if err == nil || !strings.Contains(err.Error(), "2 problem(s), nothing applied") {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{path + `:5: unknown key "colour"`, path + ":7: cannot read"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if _, err := migrate.ParseFormat("nope"); err == nil {
		t.Error("ParseFormat accepted nope")
	}
}
