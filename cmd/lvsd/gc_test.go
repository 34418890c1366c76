package main

import "testing"

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
		{80 << 20, 100},      // 100,000 real servers: Go's default
		{12 << 20, 133},      // in between
	} {
		if got := gcPercentFor(tc.live); got != tc.want {
			t.Errorf("gcPercentFor(%d MB) = %d, want %d", tc.live>>20, got, tc.want)
		}
	}
}
