package scale

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/e2e/harness"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestMemory applies the whole table (default 10,000 services × 10) to 3
// real lvsd and prints, for each node, its RSS and what the Go heap holds
// once the apply has reached every node, then again after a collection
// (the heap profile's gc=1). With SHOAL_SCALE_PROFILES=dir it keeps each
// node's heap profile there (go tool pprof -sample_index=inuse_space).
//
//	SHOAL_SCALE_SERVICES=10000 go test ./e2e/scale -run TestMemory -v -count=1
func TestMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	n := oneSize(t)
	lvsd := harness.Build(t, "cmd/lvsd")
	c := startWith(t, lvsd, harness.ClusterOptions{Metrics: true})
	w := c.watch(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := shoalv1.NewConfigServiceClient(c.conns[c.leader]).ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{Config: table(n)})
	if err != nil {
		t.Fatal(err)
	}
	w.on(t, resp.GetSerial(), 2*time.Minute)
	dir := os.Getenv("SHOAL_SCALE_PROFILES")
	rows := make([]string, len(c.nodes))
	for i, node := range c.nodes {
		rss := rssMB(t, node.Proc.Pid())
		anon, file := rssParts(t, node.Proc.Pid())
		inuse := metric(t, node.MetricsAddr, "go_memstats_heap_inuse_bytes")
		profile := get(t, "http://"+node.MetricsAddr+"/debug/pprof/heap?gc=1")
		if dir != "" {
			if err := os.WriteFile(filepath.Join(dir, node.ID+".heap"), profile, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		role := "follower"
		if i == c.leader {
			role = "leader"
		}
		rows[i] = fmt.Sprintf("| %s (%s) | %.0f MB (%.0f + %.0f) | %.0f MB | %.0f MB |", node.ID, role, rss, anon, file, inuse/1e6,
			metric(t, node.MetricsAddr, "go_memstats_heap_inuse_bytes")/1e6)
	}
	// What Go returns to the system in the half minute after.
	time.Sleep(30 * time.Second)
	for i, node := range c.nodes {
		rows[i] += fmt.Sprintf(" %.0f MB |", rssMB(t, node.Proc.Pid()))
	}
	t.Logf("\n%d services (%d real servers):\n"+
		"| node | RSS after the apply (anonymous + file: bolt's map of raft.db) | heap in use | heap in use after a GC | RSS 30 s later |\n|---|---|---|---|---|\n%s",
		n, n*realsPerService, strings.Join(rows, "\n"))
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	r, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, r.StatusCode, err)
	}
	return b
}

// metric is the value of an unlabelled metric from a node's /metrics.
func metric(t *testing.T, addr, name string) float64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(string(get(t, "http://"+addr+"/metrics"))))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return v
		}
	}
	t.Fatalf("no %s at %s/metrics", name, addr)
	return 0
}

// rssParts is a process's anonymous and file-backed resident memory in
// MiB, from /proc.
func rssParts(t *testing.T, pid int) (anon, file float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "RssAnon:":
			anon = kb / 1024
		case "RssFile:":
			file = kb / 1024
		}
	}
	return anon, file
}
