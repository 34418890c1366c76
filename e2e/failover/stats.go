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

// fenceStats is what a router's /metrics says of its leader fence and its
// disk: how often the fence lapsed, and the cumulative buckets of the gaps
// between quorum-accepted sends and of raft's log writes.
type fenceStats struct {
	lapses    float64
	gaps      buckets
	logWrites buckets
}

// buckets is a Prometheus histogram's cumulative buckets: upper bound in
// seconds → count.
type buckets map[float64]float64

// parseFence reads fenceStats from Prometheus' text format.
func parseFence(text string) fenceStats {
	fs := fenceStats{gaps: buckets{}, logWrites: buckets{}}
	for line := range strings.Lines(text) {
		name, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		if name == "shoal_raft_fence_lapses_total" {
			fs.lapses = v
		}
		fs.gaps.parse(name, `shoal_raft_quorum_ack_gap_seconds_bucket{le="`, v)
		fs.logWrites.parse(name, `shoal_raft_disk_write_seconds_bucket{store="log",le="`, v)
	}
	return fs
}

// parse records the bucket of a sample named prefix + bound + `"}`.
func (b buckets) parse(name, prefix string, v float64) {
	bound, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return
	}
	if le, err := strconv.ParseFloat(strings.TrimSuffix(bound, `"}`), 64); err == nil {
		b[le] = v
	}
}

// since returns what was counted after before.
func (fs fenceStats) since(before fenceStats) fenceStats {
	return fenceStats{lapses: fs.lapses - before.lapses, gaps: fs.gaps.minus(before.gaps), logWrites: fs.logWrites.minus(before.logWrites)}
}

func (b buckets) minus(before buckets) buckets {
	d := buckets{}
	for le, n := range b {
		d[le] = n - before[le]
	}
	return d
}

// over returns how many observations were longer than limit seconds, which
// must be a bucket bound.
func (b buckets) over(limit float64) float64 { return b[math.Inf(1)] - b[limit] }

// longest returns the smallest bucket bound that holds every observation, 0
// when there was none.
func (b buckets) longest() float64 {
	total := b[math.Inf(1)]
	if total == 0 {
		return 0
	}
	for _, le := range slices.Sorted(maps.Keys(b)) {
		if b[le] == total {
			return le
		}
	}
	return math.Inf(1)
}

// longestText says longest in milliseconds: "≤ 40 ms", or "> 5000 ms" past
// the largest finite bound.
func (b buckets) longestText() string {
	l := b.longest()
	if !math.IsInf(l, 1) {
		return fmt.Sprintf("≤ %.0f ms", l*1000)
	}
	finite := 0.0
	for le := range b {
		if !math.IsInf(le, 1) {
			finite = max(finite, le)
		}
	}
	return fmt.Sprintf("> %.0f ms", finite*1000)
}
