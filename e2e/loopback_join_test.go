package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/e2e/harness"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestLoopbackJoinAndApply grows a cluster from one node with --join, then
// drives config apply (dry run, diff, YAML round trip), leadership transfer
// and member removal through lvsctl.
func TestLoopbackJoinAndApply(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	lvsd := harness.Build(t, "cmd/lvsd")
	ctl := harness.Build(t, "cmd/lvsctl")
	first := harness.StartCluster(t, lvsd, harness.ClusterOptions{N: 1, Args: []string{"--dataplane", "none"}})[0]
	harness.Eventually(t, 10*time.Second, func() bool {
		st, err := clusterStatus(t, ctl, first.APIAddr)
		return err == nil && st.GetLeaderId() == first.ID
	}, "single node leading")

	// Two more join through the first node's API.
	for _, id := range []string{"j2", "j3"} {
		api, rft := harness.FreeAddr(t), harness.FreeAddr(t)
		harness.Start(t, id, lvsd, "--id", id, "--api-addr", api, "--raft-addr", rft,
			"--data-dir", filepath.Join(t.TempDir(), id), "--join", first.APIAddr, "--dataplane", "none")
	}
	harness.Eventually(t, 20*time.Second, func() bool {
		st, err := clusterStatus(t, ctl, first.APIAddr)
		if err != nil || len(st.GetMembers()) != 3 {
			return false
		}
		for _, m := range st.GetMembers() {
			if m.GetRole() != "leader" && m.GetRole() != "follower" {
				return false
			}
		}
		return true
	}, "two nodes joined and answering")

	// config apply: dry run shows the diff and commits nothing.
	file := filepath.Join(t.TempDir(), "shoal.yaml")
	yaml := `
global:
  garp_count: 3
services:
- name: web
  vip: {address: 10.0.0.1}
  port: 80
  scheduler: rr
  real_servers:
  - {address: 10.0.1.1, weight: 2}
  - {address: 10.0.1.2}
`
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	dry := lvsctl(t, ctl, first.APIAddr, "config", "apply", "-f", file, "--dry-run")
	if err := dry.Err(); err != nil || !strings.Contains(dry.Stdout, "+ service web") || !strings.Contains(dry.Stdout, "dry run") {
		t.Fatalf("dry run: %v\n%s", err, dry.Stdout)
	}
	var resp shoalv1.ApplyConfigResponse
	if err := lvsctl(t, ctl, first.APIAddr, "-o", "json", "config", "apply", "-f", file, "--expect-serial", "0").Proto(&resp); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if resp.GetSerial() != 1 || len(resp.GetConfig().GetServices()[0].GetRealServers()) != 2 {
		t.Fatalf("apply answered %v", &resp)
	}
	// A stale --expect-serial is refused.
	if r := lvsctl(t, ctl, first.APIAddr, "config", "apply", "-f", file, "--expect-serial", "7"); r.ExitCode != 1 {
		t.Fatalf("stale expect-serial: exit %d %s", r.ExitCode, r.Stderr)
	}

	// What config get prints in YAML applies back as "no changes".
	got := lvsctl(t, ctl, first.APIAddr, "-o", "yaml", "config", "get")
	if err := got.Err(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(got.Stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	again := lvsctl(t, ctl, first.APIAddr, "config", "apply", "-f", file)
	if err := again.Err(); err != nil || !strings.Contains(again.Stdout, "no changes") {
		t.Fatalf("round trip of config get -o yaml: %v\n%s\n---\n%s", err, again.Stdout, got.Stdout)
	}

	// Hand leadership to j2, then remove j3 through it.
	tr := lvsctl(t, ctl, first.APIAddr, "cluster", "transfer", "j2")
	if err := tr.Err(); err != nil || !strings.Contains(tr.Stdout, "j2") {
		t.Fatalf("transfer: %v %s", err, tr.Stdout)
	}
	if err := lvsctl(t, ctl, first.APIAddr, "cluster", "remove", "j3").Err(); err != nil {
		t.Fatalf("remove: %v", err)
	}
	st, err := clusterStatus(t, ctl, first.APIAddr)
	if err != nil || len(st.GetMembers()) != 2 || st.GetLeaderId() != "j2" {
		t.Fatalf("after transfer and remove: %v %v", st, err)
	}
}
