package main

import (
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// The status column is what makes a miss visible: a median miss is marked,
// and a median pass with missing runs says so.
func TestFigureStatus(t *testing.T) {
	share := figure{name: "share", unit: "%", atLeast: 70, format: "%.0f"}
	rss := figure{name: "rss", atMost: 256, format: "%.0f"}
	for _, tc := range []struct {
		f      figure
		values []float64
		want   string
	}{
		{share, []float64{50, 60, 80}, missedMark},
		{share, []float64{75, 60, 80}, "met (missed in 1 of 3 runs)"},
		{share, []float64{70, 71, 90}, "met"},
		{rss, []float64{300, 100, 400}, missedMark},
		{rss, []float64{100}, "met"},
		{figure{format: "%.0f"}, []float64{1}, ""},
	} {
		tc.f.values = tc.values
		if got := tc.f.status(); got != tc.want {
			t.Errorf("%s %v: status %q, want %q", tc.f.name, tc.values, got, tc.want)
		}
	}
	share.values = []float64{50}
	if row := share.row(); !strings.Contains(row, "≥ 70%") || !strings.Contains(row, missedMark) {
		t.Errorf("row %q lacks the goal or the miss marker", row)
	}
}
