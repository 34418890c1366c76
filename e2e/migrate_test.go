package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoal-lb/shoal/e2e/harness"
	"github.com/shoal-lb/shoal/migrate"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestMigrateImport imports a Piranha lvs.cf into a three-node loopback
// cluster with lvsctl import and checks that every node shows the same
// services and real servers, that a dry run and a stale --expect-serial
// change nothing, and that the export reads back to the same services.
func TestMigrateImport(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	lvsd := harness.Build(t, "cmd/lvsd")
	ctl := harness.Build(t, "cmd/lvsctl")
	nodes := harness.StartCluster(t, lvsd, harness.ClusterOptions{N: 3, Args: []string{"--dataplane", "none"}})

	var leader string
	harness.Eventually(t, 15*time.Second, func() bool {
		st, err := clusterStatus(t, ctl, nodes[0].APIAddr)
		if err != nil || st.GetLeaderId() == "" || len(st.GetMembers()) != 3 {
			return false
		}
		for _, m := range st.GetMembers() {
			if m.GetApiAddress() == "" || m.GetRole() == "unreachable" {
				return false
			}
		}
		leader = st.GetLeaderId()
		return true
	}, "cluster of 3 with a leader")
	var follower *harness.Node
	for _, n := range nodes {
		if n.ID != leader {
			follower = n
			break
		}
	}

	const file = "../migrate/testdata/nat.lvs.cf"
	want, err := migrate.ImportFile(file, migrate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	getConfig := func(n *harness.Node, args ...string) (*shoalv1.Config, error) {
		var resp shoalv1.GetConfigResponse
		err := lvsctl(t, ctl, n.APIAddr, append([]string{"-o", "json", "--request-timeout", "2s", "config", "get"}, args...)...).Proto(&resp)
		return resp.GetConfig(), err
	}
	before, err := getConfig(follower)
	if err != nil {
		t.Fatal(err)
	}

	// A dry run shows the diff and the result and commits nothing.
	var dry shoalv1.ApplyConfigResponse
	if err := lvsctl(t, ctl, follower.APIAddr, "-o", "json", "import", file, "--dry-run").Proto(&dry); err != nil {
		t.Fatalf("import --dry-run: %v", err)
	}
	if len(dry.GetChanges()) == 0 || len(dry.GetConfig().GetServices()) != len(want.Config.GetServices()) || dry.GetSerial() != before.GetSerial() {
		t.Fatalf("dry run: %d changes, %d services, serial %d (before %d)", len(dry.GetChanges()), len(dry.GetConfig().GetServices()), dry.GetSerial(), before.GetSerial())
	}
	if after, err := getConfig(follower); err != nil || after.GetSerial() != before.GetSerial() {
		t.Fatalf("dry run committed something: serial %d -> %d (%v)", before.GetSerial(), after.GetSerial(), err)
	}

	// A stale --expect-serial is refused and changes nothing.
	stale := lvsctl(t, ctl, follower.APIAddr, "import", file, "--expect-serial", "999")
	if stale.ExitCode == 0 || !strings.Contains(stale.Stderr, "999") {
		t.Fatalf("import --expect-serial 999: exit %d, stderr %q", stale.ExitCode, stale.Stderr)
	}

	// The import itself, through a follower; the report names what was not
	// imported.
	res := lvsctl(t, ctl, follower.APIAddr, "import", file)
	if err := res.Err(); err != nil {
		t.Fatalf("import: %v", err)
	}
	if !strings.Contains(res.Stderr, "primary: not imported: replaced by Raft membership") {
		t.Errorf("import report lacks the heartbeat keys:\n%s", res.Stderr)
	}
	t.Logf("lvsctl import:\n%s", res.Stdout)

	// Every node shows the same services and real servers, as the file has
	// them.
	var first *shoalv1.Config
	for _, n := range nodes {
		var got *shoalv1.Config
		harness.Eventually(t, 10*time.Second, func() bool {
			c, err := getConfig(n, "--stale")
			if err != nil || c.GetSerial() <= before.GetSerial() {
				return false
			}
			got = c
			return true
		}, "node %s applying the import", n.ID)
		if first == nil {
			first = got
		} else if !proto.Equal(first, got) {
			t.Fatalf("node %s differs:\n%v\nfrom\n%v", n.ID, got, first)
		}
		if !sameServices(want.Config.GetServices(), got.GetServices()) {
			t.Fatalf("node %s services differ from the file:\n%v\nwant\n%v", n.ID, got.GetServices(), want.Config.GetServices())
		}
	}
	if first.GetGlobal().GetNatRouter().GetAddress() != "10.0.0.254" {
		t.Errorf("nat_router %v", first.GetGlobal().GetNatRouter())
	}

	// Exporting gives a file that imports to the same services.
	exp := lvsctl(t, ctl, nodes[2].APIAddr, "export", "--format", "lvs.cf")
	if err := exp.Err(); err != nil {
		t.Fatalf("export: %v", err)
	}
	path := filepath.Join(t.TempDir(), "lvs.cf")
	if err := os.WriteFile(path, []byte(exp.Stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	back, err := migrate.ImportFile(path, migrate.Options{})
	if err != nil {
		t.Fatalf("import of the export: %v\n%s", err, exp.Stdout)
	}
	if !sameServices(want.Config.GetServices(), back.Config.GetServices()) {
		t.Errorf("export does not read back:\n%s", exp.Stdout)
	}

	// Importing the same file again changes nothing.
	again := lvsctl(t, ctl, nodes[0].APIAddr, "import", file)
	if err := again.Err(); err != nil || !strings.Contains(again.Stdout, "no changes") {
		t.Errorf("second import: %v\n%s", err, again.Stdout)
	}

	// A keepalived.conf (with an include) replaces every service; the
	// global settings it does not describe (tcp_timeout from lvs.cf) stay.
	const kfile = "../migrate/testdata/nat.keepalived.conf"
	kwant, err := migrate.ImportFile(kfile, migrate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := lvsctl(t, ctl, nodes[1].APIAddr, "import", kfile, "--expect-serial", fmt.Sprint(first.GetSerial())).Err(); err != nil {
		t.Fatalf("keepalived import: %v", err)
	}
	for _, n := range nodes {
		harness.Eventually(t, 10*time.Second, func() bool {
			c, err := getConfig(n, "--stale")
			return err == nil && c.GetSerial() > first.GetSerial() && sameServices(kwant.Config.GetServices(), c.GetServices()) &&
				c.GetGlobal().GetTcpTimeout().AsDuration() == 15*time.Minute &&
				c.GetGlobal().GetNatRouter().GetAddress() == "10.20.0.254"
		}, "node %s serving the keepalived services with lvs.cf's tcp_timeout kept", n.ID)
	}
}

func sameServices(a, b []*shoalv1.VirtualService) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
