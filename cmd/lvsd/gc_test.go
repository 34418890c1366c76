package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, gcPercent},
		{1 << 20, gcPercent}, // a small table: the failover's 400
		{4 << 20, 400},       // headroom 16 MB = 4 x live
		{8 << 20, 200},       // headroom 16 MB = 2 x live
		{16 << 20, 100},      // headroom = live
		{64 << 20, 100},      // the largest headroom
		{80 << 20, 80},       // 100,000 real servers: 64 MB of headroom
		{128 << 20, 50},      // 64 MB = half the live heap
		{1 << 30, 50},        // never less than half
		{12 << 20, 133},      // in between
	} {
		if got := gcPercentFor(tc.live); got != tc.want {
			t.Errorf("gcPercentFor(%d MB) = %d, want %d", tc.live>>20, got, tc.want)
		}
	}
}

// TestTuneGCFollowsCollections: after a collection with a live heap of
// 32 MB, tuneGC has set GOGC to 100.
func TestTuneGCFollowsCollections(t *testing.T) {
	prev := debug.SetGCPercent(gcPercent)
	defer debug.SetGCPercent(prev)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tuneGC(ctx); close(done) }()
	defer func() { cancel(); runtime.GC(); <-done }()
	live := make([]byte, 32<<20)
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		if metrics.Read(gogc); gogc[0].Value.Uint64() == 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("GOGC not lowered after collections with a 32 MB live heap")
		}
	}
	runtime.KeepAlive(live)
}
