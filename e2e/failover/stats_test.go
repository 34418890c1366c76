package failover

import (
	"math"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	msd := func(xs ...int) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		want string
	}{
		{"empty", nil, "0 | – | – | – | –"},
		{"one", msd(7), "1 | 7 | 7 | 7 | 7"},
		{"even median is the mean of the middle two", msd(40, 10, 30, 20), "4 | 10 | 25 | 40 | 40"},
		{"p90 is nearest rank", msd(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), "10 | 1 | 6 | 9 | 10"},
	} {
		if got := Summarize(tc.in).Cells(); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestFenceStats(t *testing.T) {
	const before = `# HELP shoal_raft_fence_lapses_total x
shoal_raft_fence_lapses_total 1
shoal_raft_quorum_ack_gap_seconds_bucket{le="0.01"} 100
shoal_raft_quorum_ack_gap_seconds_bucket{le="0.02"} 100
shoal_raft_quorum_ack_gap_seconds_bucket{le="0.03"} 100
shoal_raft_quorum_ack_gap_seconds_bucket{le="+Inf"} 100
shoal_raft_quorum_ack_gap_seconds_sum 0.5
shoal_raft_disk_write_seconds_bucket{store="log",le="0.01"} 10
shoal_raft_disk_write_seconds_bucket{store="log",le="0.1"} 10
shoal_raft_disk_write_seconds_bucket{store="log",le="5"} 10
shoal_raft_disk_write_seconds_bucket{store="log",le="+Inf"} 10
shoal_raft_disk_write_seconds_bucket{store="stable",le="+Inf"} 99
`
	const after = `shoal_raft_fence_lapses_total 3
shoal_raft_quorum_ack_gap_seconds_bucket{le="0.01"} 150
shoal_raft_quorum_ack_gap_seconds_bucket{le="0.02"} 155
shoal_raft_quorum_ack_gap_seconds_bucket{le="0.03"} 157
shoal_raft_quorum_ack_gap_seconds_bucket{le="+Inf"} 157
shoal_raft_disk_write_seconds_bucket{store="log",le="0.01"} 19
shoal_raft_disk_write_seconds_bucket{store="log",le="0.1"} 20
shoal_raft_disk_write_seconds_bucket{store="log",le="5"} 21
shoal_raft_disk_write_seconds_bucket{store="log",le="+Inf"} 21
shoal_raft_disk_write_seconds_bucket{store="stable",le="+Inf"} 120
`
	d := parseFence(after).since(parseFence(before))
	if d.lapses != 2 || d.gaps.over(0.01) != 7 || d.gaps.over(0.02) != 2 || d.gaps.longest() != 0.03 {
		t.Errorf("lapses %v, over 10ms %v, over 20ms %v, longest %v; want 2, 7, 2, 0.03", d.lapses, d.gaps.over(0.01), d.gaps.over(0.02), d.gaps.longest())
	}
	if w := d.logWrites; w.over(0.1) != 1 || w.longest() != 5 || w[math.Inf(1)] != 11 {
		t.Errorf("log writes %v: want 11, one over 100 ms, longest 5 s", w)
	}
	if got := d.logWrites.longestText(); got != "≤ 5000 ms" {
		t.Errorf("longest log write %q, want ≤ 5000 ms", got)
	}
	if got := (buckets{0.1: 1, 5: 1, math.Inf(1): 2}).longestText(); got != "> 5000 ms" {
		t.Errorf("longest of a write past every bound %q, want > 5000 ms", got)
	}
	if l := parseFence("").gaps.longest(); l != 0 {
		t.Errorf("longest of nothing = %v", l)
	}
}
