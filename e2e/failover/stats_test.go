package failover

import (
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
