package vmlab_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/e2e/vmlab"
)

// TestVMLab boots the lab once and turns each scenario the guest reports into
// a subtest. It skips when the machine cannot run QEMU or fetch a Debian
// kernel; everything else is a failure.
//
//	SHOAL_VMLAB_RUN=nat,dr       run only these scenarios (and "lab", which they need)
//	SHOAL_VMLAB_LVSD_FLAGS=...   comma-separated extra lvsd flags (default --profile=wan)
//	SHOAL_VMLAB_RUN=scale SHOAL_VMLAB_SCALE=10000   the opt-in scale benchmark at 10,000 services (default 1,000)
//	SHOAL_VMLAB_CONSOLE=1        echo the whole serial console into the test log
func TestVMLab(t *testing.T) {
	if testing.Short() {
		t.Skip("vm lab: skipped in -short mode (boots a VM for minutes)")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	deadline := 16 * time.Minute
	if strings.Contains(os.Getenv("SHOAL_VMLAB_RUN"), "scale") {
		// The opt-in scale scenarios take tens of minutes at 10,000
		// services: run them with go test -timeout 60m.
		deadline = 55 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()

	var (
		mu      sync.Mutex
		console bytes.Buffer
	)
	echo := os.Getenv("SHOAL_VMLAB_CONSOLE") != ""
	opts := vmlab.Options{
		Root: root,
		Work: t.TempDir(),
		Console: func(line string) {
			mu.Lock()
			console.WriteString(line + "\n")
			mu.Unlock()
			if echo || strings.Contains(line, "VMLAB ") {
				t.Log(line)
			}
		},
		Logf: t.Logf,
	}
	if s := os.Getenv("SHOAL_VMLAB_RUN"); s != "" {
		opts.Scenarios = strings.Split(s, ",")
	}
	if s := os.Getenv("SHOAL_VMLAB_SCALE"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("SHOAL_VMLAB_SCALE=%q: want a number of services", s)
		}
		opts.Scale = n
	}
	if s := os.Getenv("SHOAL_VMLAB_LVSD_FLAGS"); s != "" {
		opts.LvsdFlags = strings.Split(s, ",")
	}

	start := time.Now()
	rep, err := vmlab.Run(ctx, opts)
	if errors.Is(err, vmlab.ErrGuestLockup) {
		// The emulated kernel wedged (not a verdict on shoal): boot once
		// more, from scratch. A second lockup fails the test.
		t.Logf("first boot abandoned: %v; booting again", err)
		rep, err = vmlab.Run(ctx, opts)
	}
	if errors.Is(err, vmlab.ErrUnavailable) {
		t.Skipf("vm lab cannot run here: %v", err)
	}
	defer func() {
		if t.Failed() {
			path := filepath.Join(os.TempDir(), fmt.Sprintf("shoal-vmlab-console-%d.log", time.Now().Unix()))
			mu.Lock()
			os.WriteFile(path, console.Bytes(), 0o644)
			mu.Unlock()
			t.Logf("full serial console: %s", path)
		}
	}()
	if rep != nil {
		t.Logf("vm ran %.1fs (whole test so far %.1fs)", rep.Duration.Seconds(), time.Since(start).Seconds())
		for _, r := range rep.Results {
			if r.Kind == "INFO" {
				t.Logf("%-14s %s", r.Name, r.Detail)
			}
		}
		for _, r := range rep.Scenarios() {
			t.Run(r.Name, func(t *testing.T) {
				switch r.Kind {
				case "FAIL":
					t.Fatal(r.Detail)
				case "SKIP":
					t.Skip(r.Detail)
				}
			})
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want vmlab.Result
		ok   bool
	}{
		{"VMLAB PASS nat (1.2s)", vmlab.Result{Kind: "PASS", Name: "nat", Detail: "(1.2s)"}, true},
		{"VMLAB FAIL dr: 3 requests failed", vmlab.Result{Kind: "FAIL", Name: "dr", Detail: "3 requests failed"}, true},
		{"[   12.5] ipvs: loaded VMLAB INFO failover: outage 900 ms", vmlab.Result{Kind: "INFO", Name: "failover", Detail: "outage 900 ms"}, true},
		{"VMLAB DONE", vmlab.Result{Kind: "DONE"}, true},
		{"VMLAB SKIP dataplane-test: no dataplane test binary", vmlab.Result{Kind: "SKIP", Name: "dataplane-test", Detail: "no dataplane test binary"}, true},
		{"VMLAB nonsense", vmlab.Result{}, false},
		{"vmlab   3.1s scenario nat", vmlab.Result{}, false},
	} {
		got, ok := vmlab.ParseLine(tc.line)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseLine(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}
