package failover

import (
	"fmt"
	"math"
	"slices"
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
