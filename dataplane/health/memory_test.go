package health

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

var heapProfile = flag.String("health.heapprofile", "",
	"TestMemoryWithoutChecks writes a heap profile (after a collection, the monitor holding the table) to this file")

// scaleConfig is n services × per real servers, every service checked by
// hc, as raftfsm would hand it over (sorted by name).
func scaleConfig(n, per int, hc *shoalv1.HealthCheck) *shoalv1.Config {
	c := &shoalv1.Config{Serial: 1}
	for i := range n {
		vs := &shoalv1.VirtualService{Name: fmt.Sprintf("s%05d", i), Vip: &shoalv1.Address{Address: fmt.Sprintf("10.%d.%d.1", 100+i/250, i%250)},
			Port: 80, Protocol: "tcp", HealthCheck: hc}
		for j := range per {
			vs.RealServers = append(vs.RealServers, &shoalv1.RealServer{Address: fmt.Sprintf("172.16.%d.%d", i%250, j+1)})
		}
		c.Services = append(c.Services, vs)
	}
	return c
}

// liveHeap is the heap in use after two collections: what is still
// reachable, and the pages it occupies.
func liveHeap() (alloc, inuse uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.HeapInuse
}

// TestMemoryWithoutChecks is what the monitor holds for 10,000 services ×
// 10 real servers whose check is kind none (the scale table): a
// server that is never checked must cost next to nothing, not a checker,
// a tracker, a probe and a metric series each.
//
//	go test ./dataplane/health -run TestMemoryWithoutChecks -v -count=1 [-health.heapprofile=mon.heap]
func TestMemoryWithoutChecks(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	const per = 10
	c := scaleConfig(n, per, &shoalv1.HealthCheck{Kind: KindNone})
	reg := prometheus.NewRegistry()
	alloc0, inuse0 := liveHeap()
	m := New(Options{NodeID: "n1", Registerer: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	start := time.Now()
	m.SetConfig(c)
	took := time.Since(start)
	alloc1, inuse1 := liveHeap()
	if *heapProfile != "" {
		f, err := os.Create(*heapProfile)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	servers := n * per
	perServer := float64(alloc1-alloc0) / float64(servers)
	t.Logf("monitor with %d services × %d real servers of kind none: heap %.1f MB live (%.1f MB in use), %.0f bytes a server; SetConfig of the table %s",
		n, per, float64(alloc1-alloc0)/1e6, float64(inuse1-inuse0)/1e6, perServer, took.Round(time.Millisecond))

	// Every server is up, none unchecked, however it is asked.
	for i := 0; i < n; i += n / 10 {
		name := fmt.Sprintf("s%05d", i)
		for j := range per {
			ap := netip.MustParseAddrPort(fmt.Sprintf("172.16.%d.%d:80", i%250, j+1))
			if !m.Healthy(name, ap) || m.Unchecked(name, ap) || !m.Healthy(name, netip.AddrPortFrom(ap.Addr(), 0)) {
				t.Fatalf("%s %s: healthy %t, unchecked %t", name, ap, m.Healthy(name, ap), m.Unchecked(name, ap))
			}
		}
	}
	// Nothing is scheduled and no series is kept per server.
	m.mu.Lock()
	queued := m.queue.Len()
	m.mu.Unlock()
	if queued != 0 {
		t.Errorf("%d checks scheduled for servers without checks", queued)
	}
	if s := seriesOf(t, reg, "shoal_health_up"); s != 0 {
		t.Errorf("%d shoal_health_up series for servers without checks", s)
	}
	// A checker, tracker and probe cost over 1,000 bytes a server; what
	// is left is the server's address in its service's list, with room
	// for the maps' growth.
	if perServer > 150 {
		t.Errorf("%.0f bytes a server without checks, want at most 150", perServer)
	}
	runtime.KeepAlive(m)
	runtime.KeepAlive(c)
}

// seriesOf counts the series of a metric family in reg.
func seriesOf(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}
