package bench

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

// summary is the distribution of one measurement.
type summary struct {
	N                int
	Median, P90, P99 time.Duration
	Min, Max         time.Duration
}

// summarize computes percentiles by the nearest-rank method: p99 of 50
// samples is the largest one, which is what a reader of a 50-run table
// expects.
func summarize(samples []time.Duration) summary {
	if len(samples) == 0 {
		return summary{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return summary{
		N:      len(s),
		Median: percentile(s, 50),
		P90:    percentile(s, 90),
		P99:    percentile(s, 99),
		Min:    s[0],
		Max:    s[len(s)-1],
	}
}

// percentile returns the nearest-rank p-th percentile of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(rank, 1)
	return sorted[rank-1]
}

// ratio formats a/b as "1.23×".
func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}

// ms formats d in milliseconds with a precision that suits its size.
func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f >= 100:
		return fmt.Sprintf("%.0f ms", f)
	case f >= 10:
		return fmt.Sprintf("%.1f ms", f)
	default:
		return fmt.Sprintf("%.2f ms", f)
	}
}

func TestSummarize(t *testing.T) {
	seq := func(n int) []time.Duration {
		var out []time.Duration
		for i := n; i >= 1; i-- { // reversed: summarize must sort
			out = append(out, time.Duration(i)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		name    string
		samples []time.Duration
		want    summary
	}{
		{"no samples give a zero summary", nil, summary{}},
		{"one sample is every percentile", seq(1), summary{N: 1, Median: time.Millisecond, P90: time.Millisecond, P99: time.Millisecond, Min: time.Millisecond, Max: time.Millisecond}},
		{"fifty samples: p99 is the largest", seq(50), summary{N: 50, Median: 25 * time.Millisecond, P90: 45 * time.Millisecond, P99: 50 * time.Millisecond, Min: time.Millisecond, Max: 50 * time.Millisecond}},
		{"two hundred samples", seq(200), summary{N: 200, Median: 100 * time.Millisecond, P90: 180 * time.Millisecond, P99: 198 * time.Millisecond, Min: time.Millisecond, Max: 200 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := summarize(tt.samples); got != tt.want {
				t.Errorf("summarize = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRatioAndFormat(t *testing.T) {
	if got := ratio(3*time.Second, 2*time.Second); got != "1.50×" {
		t.Errorf("ratio = %q", got)
	}
	if got := ratio(time.Second, 0); got != "n/a" {
		t.Errorf("ratio by zero = %q", got)
	}
	for d, want := range map[time.Duration]string{
		1500 * time.Microsecond: "1.50 ms",
		42 * time.Millisecond:   "42.0 ms",
		1234 * time.Millisecond: "1234 ms",
	} {
		if got := ms(d); got != want {
			t.Errorf("ms(%v) = %q, want %q", d, got, want)
		}
	}
}
