package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-lb/shoal/e2e/harness"
	"github.com/shoal-lb/shoal/raftfsm"
)

// usedDataDir is the data dir of a cluster of one, n1 at raftAddr, that
// has run.
func usedDataDir(t *testing.T, raftAddr string) string {
	t.Helper()
	dir := t.TempDir()
	boot := []raft.Server{{ID: "n1", Address: raft.ServerAddress(raftAddr), Suffrage: raft.Voter}}
	n, err := raftfsm.Open(raftfsm.Options{ID: "n1", RaftAddr: raftAddr, DataDir: dir, Bootstrap: boot,
		ClusterID: raftfsm.ClusterIDFor(boot), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.Raft().State() != raft.Leader && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling, not synchronisation
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRefusesDataDirOfAnotherCluster: lvsd --bootstrap of a new cluster on
// a data dir that belongs to another stops at once, and says what to do.
func TestRefusesDataDirOfAnotherCluster(t *testing.T) {
	raftAddr := harness.FreeAddr(t)
	dir := usedDataDir(t, raftAddr)
	old, err := raftfsm.ReadClusterID(dir)
	if err != nil || old == "" {
		t.Fatalf("the data dir's cluster ID: %q %v", old, err)
	}
	args := []string{"--id", "n1", "--data-dir", dir, "--raft-addr", raftAddr, "--api-addr", harness.FreeAddr(t), "--dataplane", "none"}

	err = run(append(args, "--bootstrap", "n1="+raftAddr+",n2=127.0.0.1:7002,n3=127.0.0.1:7003"))
	if err == nil {
		t.Fatal("lvsd started on the data dir of another cluster")
	}
	t.Logf("lvsd: %v", err)
	for _, want := range []string{"data dir " + dir + " belongs to cluster " + old + "; --bootstrap describes cluster ", "move " + dir + " away"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not say %q:\n%v", want, err)
		}
	}
	// The same list with another --cluster-name is another cluster too.
	if err := run(append(args, "--bootstrap", "n1="+raftAddr, "--cluster-name", "blue")); err == nil || !strings.Contains(err.Error(), "belongs to cluster "+old) {
		t.Errorf("another --cluster-name: %v", err)
	}
}

// TestDamagedDataDir: lvsd on a data dir whose raft.db is cut short names
// the file and says how to come back.
func TestDamagedDataDir(t *testing.T) {
	raftAddr := harness.FreeAddr(t)
	dir := usedDataDir(t, raftAddr)
	db := filepath.Join(dir, "raft.db")
	st, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(db, st.Size()/2); err != nil {
		t.Fatal(err)
	}
	err = run([]string{"--id", "n1", "--data-dir", dir, "--raft-addr", raftAddr, "--api-addr", harness.FreeAddr(t), "--dataplane", "none",
		"--bootstrap", "n1=" + raftAddr})
	if err == nil {
		t.Fatal("lvsd started on a truncated raft.db")
	}
	t.Logf("lvsd: %v", err)
	for _, want := range []string{db + ": damaged: truncated", "lvsctl cluster remove n1", "--join", "restore " + dir + " from a backup"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
}
