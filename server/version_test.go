package server

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shoal-lb/shoal/buildinfo"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestBuildInfo checks that each node reports its own build in NodeStatus,
// that cluster status shows every member's (so a rolling upgrade shows as
// mixed versions), and the shoal_build_info metric.
func TestBuildInfo(t *testing.T) {
	nodes := startCluster(t, 3, clusterOptions{})
	ctx := ctxT(t)

	// What the test binary itself is: unstamped, so devel.
	self := buildinfo.Get()
	resp, err := nodes[0].nodeSvc().GetNodeStatus(ctx, &shoalv1.GetNodeStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if b := resp.GetStatus().GetBuild(); b.GetVersion() != self.Version || b.GetGoVersion() != self.GoVersion || b.GetPlatform() != self.Platform {
		t.Errorf("node status build %v, want %+v", b, self)
	}

	// A rolling upgrade half done: n3 runs a newer release. Options are
	// set before any call reads them.
	old := buildinfo.Info{Version: "v1.4.0", Commit: "0123456789abcdef0123456789abcdef01234567", Date: "2026-11-01T00:00:00Z", GoVersion: "go1.26.7", Platform: "linux/amd64"}
	newer := buildinfo.Info{Version: "v1.5.0", Commit: "89abcdef0123456789abcdef0123456789abcdef", Date: "2026-12-01T00:00:00Z", GoVersion: "go1.26.8", Platform: "linux/amd64"}
	want := map[string]buildinfo.Info{"n1": old, "n2": old, "n3": newer}
	for _, n := range nodes {
		n.srv.o.Build = want[n.id]
	}
	for _, n := range nodes {
		resp, err := n.nodeSvc().GetNodeStatus(ctx, &shoalv1.GetNodeStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		w := want[n.id]
		if b := resp.GetStatus().GetBuild(); b.GetVersion() != w.Version || b.GetCommit() != w.Commit || b.GetBuildDate() != w.Date || b.GetGoVersion() != w.GoVersion {
			t.Errorf("%s: node status build %v, want %+v", n.id, b, w)
		}
	}
	cs, err := nodes[0].cluster().GetClusterStatus(ctx, &shoalv1.GetClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range cs.GetMembers() {
		if got := m.GetBuild().GetVersion(); got != want[m.GetId()].Version {
			t.Errorf("cluster status: member %s version %q, want %q", m.GetId(), got, want[m.GetId()].Version)
		}
	}

	// A member that does not answer has no build to show.
	nodes[2].stop()
	cs, err = nodes[0].cluster().GetClusterStatus(ctx, &shoalv1.GetClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range cs.GetMembers() {
		if m.GetId() == "n3" && (m.GetRole() != "unreachable" || m.GetBuild() != nil) {
			t.Errorf("stopped member: %v", m)
		}
	}

	// The metric carries the build the server was made with.
	rec := httptest.NewRecorder()
	nodes[0].srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	line := fmt.Sprintf("shoal_build_info{commit=%q,goversion=%q,version=%q} 1\n", self.Commit, self.GoVersion, self.Version)
	if !strings.Contains(rec.Body.String(), line) {
		t.Errorf("metrics lack %q", line)
	}
}
