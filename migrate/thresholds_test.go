package migrate

import (
	"strings"
	"testing"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestExportThresholdsAndChecks: ipvsadm-save carries thresholds as -x/-y
// and they come back on import; lvs.cf can say neither thresholds nor a
// server's own checks, and the export says so instead of dropping them
// silently.
func TestExportThresholdsAndChecks(t *testing.T) {
	c := &shoalv1.Config{Services: []*shoalv1.VirtualService{{
		Name: "web", Vip: &shoalv1.Address{Address: "192.0.2.1"}, Port: 80, Forward: "nat",
		RealServers: []*shoalv1.RealServer{
			{Address: "10.0.0.1", UpperThreshold: 100, LowerThreshold: 75,
				HealthChecks: []*shoalv1.HealthCheck{{Kind: "tcp"}, {Kind: "http", Port: 8081}}},
			{Address: "10.0.0.2", UpperThreshold: 40},
		},
	}}}
	out, _, err := Export(c, FormatIPVSADM)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-r 10.0.0.1:80 -m -w 1 -x 100 -y 75\n", "-r 10.0.0.2:80 -m -w 1 -x 40\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ipvsadm export lacks %q:\n%s", want, out)
		}
	}
	r, err := Import(out, Options{Format: FormatIPVSADM})
	if err != nil {
		t.Fatal(err)
	}
	rs := r.Config.GetServices()[0].GetRealServers()
	if rs[0].GetUpperThreshold() != 100 || rs[0].GetLowerThreshold() != 75 || rs[1].GetUpperThreshold() != 40 || rs[1].GetLowerThreshold() != 0 {
		t.Errorf("thresholds after a round trip: %v", rs)
	}

	_, notes, err := Export(c, FormatLVSCF)
	if err != nil {
		t.Fatal(err)
	}
	n := notesText(notes)
	for _, want := range []string{
		"real_servers[10.0.0.1:80]: connection thresholds cannot be written",
		"real_servers[10.0.0.1:80].health_checks: cannot be written",
		"real_servers[10.0.0.2:80]: connection thresholds cannot be written",
	} {
		if !strings.Contains(n, want) {
			t.Errorf("lvs.cf export notes lack %q:\n%s", want, n)
		}
	}
}
