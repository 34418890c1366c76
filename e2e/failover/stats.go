package failover

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Summary is min/median/p90/max of a series, as the reference lab computes
// them: the median of an even count is the mean of the two middle values,
// p90 is the nearest rank ceil(0.9 n).
type Summary struct {
	N                     int
	Min, Median, P90, Max time.Duration
}

// Summarize sorts a copy of ds and summarises it.
func Summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	v := slices.Clone(ds)
	slices.Sort(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return Summary{N: n, Min: v[0], Median: med, P90: v[int(math.Ceil(0.9*float64(n)))-1], Max: v[n-1]}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond)) }

// Cells renders the summary as markdown table cells: n | min | median | p90 | max.
func (s Summary) Cells() string {
	if s.N == 0 {
		return "0 | – | – | – | –"
	}
	return fmt.Sprintf("%d | %s | %s | %s | %s", s.N, ms(s.Min), ms(s.Median), ms(s.P90), ms(s.Max))
}

// fenceStats is what a router's /metrics says of its leader fence: how
// often it lapsed, and the cumulative buckets (upper bound in seconds →
// count) of the gaps between quorum-accepted sends.
type fenceStats struct {
	lapses float64
	gaps   map[float64]float64
}

// parseFence reads fenceStats from Prometheus' text format.
func parseFence(text string) fenceStats {
	fs := fenceStats{gaps: map[float64]float64{}}
	for line := range strings.Lines(text) {
		name, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch {
		case name == "shoal_raft_fence_lapses_total":
			fs.lapses = v
		case strings.HasPrefix(name, `shoal_raft_quorum_ack_gap_seconds_bucket{le="`):
			le, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(name, `shoal_raft_quorum_ack_gap_seconds_bucket{le="`), `"}`), 64)
			if err == nil {
				fs.gaps[le] = v
			}
		}
	}
	return fs
}

// since returns what was counted after before.
func (fs fenceStats) since(before fenceStats) fenceStats {
	d := fenceStats{lapses: fs.lapses - before.lapses, gaps: map[float64]float64{}}
	for le, n := range fs.gaps {
		d.gaps[le] = n - before.gaps[le]
	}
	return d
}

// over returns how many gaps were longer than limit seconds, which must be
// a bucket bound.
func (fs fenceStats) over(limit float64) float64 { return fs.gaps[math.Inf(1)] - fs.gaps[limit] }

// longest returns the smallest bucket bound that holds every gap, 0 when
// there was none.
func (fs fenceStats) longest() float64 {
	total := fs.gaps[math.Inf(1)]
	if total == 0 {
		return 0
	}
	les := slices.Sorted(maps.Keys(fs.gaps))
	for _, le := range les {
		if fs.gaps[le] == total {
			return le
		}
	}
	return math.Inf(1)
}
