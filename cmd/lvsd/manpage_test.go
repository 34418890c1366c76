package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/shoal-lb/shoal/buildinfo"
)

// TestManPage checks that lvsd(8) lists every flag, carries the build's
// version and date, and holds nothing of the machine it was written on;
// with groff at hand, that it formats without a warning.
func TestManPage(t *testing.T) {
	var b bytes.Buffer
	if err := writeManPage(&b, buildinfo.Info{Version: "v1.4.0", Date: "2026-12-07T03:00:00Z"}); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if !strings.HasPrefix(page, `.TH LVSD 8 "2026-12-07" "shoal v1.4.0" "shoal manual"`) {
		t.Errorf("title line: %q", strings.SplitN(page, "\n", 2)[0])
	}
	newFlagSet(&flags{}, "").VisitAll(func(fl *flag.Flag) {
		want := `\fB\-\-` + manEscape(fl.Name) + `\fR`
		if !strings.Contains(page, want) {
			t.Errorf("no entry %q for --%s", want, fl.Name)
		}
	})
	for _, want := range []string{`\fIduration|off\fR`, "(default: the host name)", "(default: /var/lib/shoal)", "/etc/default/lvsd"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if host, _ := os.Hostname(); host != "" && strings.Contains(page, "(default: "+manEscape(host)+")") {
		t.Errorf("page shows this machine's host name %q", host)
	}
	if _, err := exec.LookPath("groff"); err == nil {
		cmd := exec.Command("groff", "-man", "-ww", "-z")
		cmd.Stdin = strings.NewReader(page)
		out, err := cmd.CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("groff: %v\n%s", err, out)
		}
	}
}
