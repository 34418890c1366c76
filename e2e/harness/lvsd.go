package harness

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// Node is one lvsd of a test cluster.
type Node struct {
	ID, APIAddr, RaftAddr, DataDir string
	// MetricsAddr serves /metrics and /debug/pprof/ (ClusterOptions.Metrics).
	MetricsAddr string
	Proc        *Process
}

// ClusterOptions describe a loopback cluster of lvsd processes.
type ClusterOptions struct {
	// N is the number of nodes (default 3).
	N int
	// Args are added to every lvsd command line, e.g. --dataplane none
	// --profile fast.
	Args []string
	// Metrics gives every node a --metrics-addr of its own, with --pprof.
	Metrics bool
}

// StartCluster starts N lvsd on 127.0.0.1 with free ports, bootstrapped
// together, each with a data dir of its own under the test's temp dir.
func StartCluster(t testing.TB, lvsd string, o ClusterOptions) []*Node {
	t.Helper()
	if o.N == 0 {
		o.N = 3
	}
	nodes := make([]*Node, o.N)
	var boot []string
	for i := range nodes {
		n := &Node{ID: fmt.Sprintf("n%d", i+1), APIAddr: FreeAddr(t), RaftAddr: FreeAddr(t)}
		n.DataDir = filepath.Join(t.TempDir(), n.ID)
		nodes[i] = n
		boot = append(boot, n.ID+"="+n.RaftAddr)
	}
	for _, n := range nodes {
		args := append([]string{
			"--id", n.ID, "--api-addr", n.APIAddr, "--raft-addr", n.RaftAddr,
			"--data-dir", n.DataDir, "--bootstrap", strings.Join(boot, ","),
		}, o.Args...)
		if o.Metrics {
			n.MetricsAddr = FreeAddr(t)
			args = append(args, "--metrics-addr", n.MetricsAddr, "--pprof")
		}
		n.Proc = Start(t, n.ID, lvsd, args...)
	}
	return nodes
}
