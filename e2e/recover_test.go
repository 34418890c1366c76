package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/e2e/harness"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestQuorumLossRecovery is what docs/recovery.md tells an operator to do
// when a majority is gone for good: the survivor can elect no leader and
// commit nothing; stopped, `lvsctl cluster recover --force-new-cluster`
// makes it the only member, with its configuration and history; started
// again it leads and takes writes; a lost router comes back with an empty
// data directory by joining.
func TestQuorumLossRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	lvsd := harness.Build(t, "cmd/lvsd")
	ctl := harness.Build(t, "cmd/lvsctl")
	nodes := harness.StartCluster(t, lvsd, harness.ClusterOptions{N: 3, Args: []string{"--dataplane", "none"}})
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	harness.Eventually(t, 15*time.Second, func() bool {
		st, err := clusterStatus(t, ctl, n1.APIAddr)
		return err == nil && st.GetLeaderId() != ""
	}, "a leader")
	if err := lvsctl(t, ctl, n1.APIAddr, "service", "add", "web", "--vip", "10.0.0.1", "--port", "80").Err(); err != nil {
		t.Fatal(err)
	}

	// A majority gone: n1 alone elects nobody and commits nothing.
	n2.Proc.Kill()
	n3.Proc.Kill()
	harness.Eventually(t, 10*time.Second, func() bool {
		st, err := clusterStatus(t, ctl, n1.APIAddr)
		return err == nil && st.GetLeaderId() == ""
	}, "n1 without a leader")
	if r := lvsctl(t, ctl, n1.APIAddr, "--request-timeout", "3s", "service", "add", "lost", "--vip", "10.0.0.2", "--port", "80"); r.ExitCode == 0 {
		t.Fatalf("a write without a majority was accepted: %s", r.Stdout)
	}

	// Recovery refuses while lvsd runs, and without --force-new-cluster.
	if r := lvsctl(t, ctl, n1.APIAddr, "cluster", "recover", "--force-new-cluster", "--data-dir", n1.DataDir, "--id", n1.ID); r.ExitCode == 0 || !strings.Contains(r.Stderr, "stop lvsd") {
		t.Fatalf("recover with lvsd running: exit %d %s", r.ExitCode, r.Stderr)
	}
	if err := n1.Proc.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if r := lvsctl(t, ctl, n1.APIAddr, "cluster", "recover", "--data-dir", n1.DataDir, "--id", n1.ID); r.ExitCode == 0 {
		t.Fatal("recover without --force-new-cluster went ahead")
	}
	if r := lvsctl(t, ctl, n1.APIAddr, "cluster", "recover", "--force-new-cluster", "--data-dir", n1.DataDir, "--id", "n9"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "not in the configuration") {
		t.Fatalf("recover as a node the cluster does not have: exit %d %s", r.ExitCode, r.Stderr)
	}
	start := time.Now()
	if err := lvsctl(t, ctl, n1.APIAddr, "cluster", "recover", "--force-new-cluster", "--data-dir", n1.DataDir, "--id", n1.ID).Err(); err != nil {
		t.Fatal(err)
	}
	// What recovery writes is root's alone: the snapshot holds the state.
	filepath.WalkDir(filepath.Join(n1.DataDir, "snapshots"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if st, _ := os.Stat(p); st.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s is %v after recover", p, st.Mode().Perm())
			}
		}
		return nil
	})

	// Started again (with the same flags, --bootstrap included), n1 leads
	// alone with the configuration it had, and takes writes.
	n1.Proc.Restart()
	harness.Eventually(t, 15*time.Second, func() bool {
		st, err := clusterStatus(t, ctl, n1.APIAddr)
		return err == nil && st.GetLeaderId() == n1.ID && len(st.GetMembers()) == 1
	}, "n1 leading a cluster of one")
	t.Logf("recovered: n1 leads alone %s after the recover command", time.Since(start).Round(time.Millisecond))
	var cfg shoalv1.GetConfigResponse
	if err := lvsctl(t, ctl, n1.APIAddr, "-o", "json", "config", "get").Proto(&cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.GetConfig().GetServices()) != 1 || cfg.GetConfig().GetServices()[0].GetName() != "web" {
		t.Fatalf("configuration after recovery: %v", cfg.GetConfig())
	}
	if err := lvsctl(t, ctl, n1.APIAddr, "service", "add", "after", "--vip", "10.0.0.3", "--port", "80").Err(); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}

	// A lost router that comes back with its old data directory is of the
	// old cluster: n1 refuses it on the wire, keeps its term and stays
	// alone, whatever n3 campaigns for.
	before, err := clusterStatus(t, ctl, n1.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	n3.Proc.Restart()
	harness.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(n3.Proc.Log(), "cluster ID mismatch")
	}, "n3 told that n1 is of another cluster")
	after, err := clusterStatus(t, ctl, n1.APIAddr)
	if err != nil || after.GetLeaderId() != n1.ID || after.GetTerm() != before.GetTerm() || len(after.GetMembers()) != 1 {
		t.Fatalf("n1 after n3 came back with its old data: %v (term before %d) %v", after, before.GetTerm(), err)
	}
	n3.Proc.Kill()

	// A lost router comes back with its data directory moved away, by
	// joining; then the cluster has a majority of two again.
	moved := n2.DataDir + ".old"
	if err := os.Rename(n2.DataDir, moved); err != nil {
		t.Fatal(err)
	}
	j := harness.Start(t, "n2-rejoined", lvsd, "--id", n2.ID, "--api-addr", n2.APIAddr, "--raft-addr", n2.RaftAddr,
		"--data-dir", n2.DataDir, "--join", n1.APIAddr, "--dataplane", "none")
	harness.Eventually(t, 20*time.Second, func() bool {
		st, err := clusterStatus(t, ctl, n1.APIAddr)
		if err != nil || len(st.GetMembers()) != 2 {
			return false
		}
		for _, m := range st.GetMembers() {
			if m.GetRole() != "leader" && m.GetRole() != "follower" {
				return false
			}
		}
		return true
	}, "n2 joined again")
	if err := lvsctl(t, ctl, n2.APIAddr, "service", "add", "two", "--vip", "10.0.0.4", "--port", "80").Err(); err != nil {
		t.Fatalf("write through the rejoined n2: %v", err)
	}
	_ = j.Signal(syscall.SIGTERM)
}
