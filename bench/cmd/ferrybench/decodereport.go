package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// decodeReport is the decode scenario's part of latest.json.
type decodeReport struct {
	Date    string      `json:"date"`
	Machine machine     `json:"machine"`
	Runs    []decodeRun `json:"runs"`
	Error   string      `json:"error,omitempty"`
}

type decodeRun struct {
	Run    int           `json:"run"`
	Shapes []decodeShape `json:"shapes"`
}

// goalDecodeShare is capture's decode rate over pg_recvlogical's (issue 3).
const goalDecodeShare = 0.90

func newDecodeReport() *decodeReport {
	return &decodeReport{Date: time.Now().UTC().Format(time.RFC3339), Machine: describeMachine()}
}

// runDecodeScenario measures both shapes in every run and stops at the
// first failure.
func runDecodeScenario(ctx context.Context, e *benchEnv, rep *decodeReport) error {
	for i := 1; i <= e.c.runs; i++ {
		r := decodeRun{Run: i}
		for _, w := range decodeWorkloads(e.c) {
			s, err := measureDecode(ctx, e, w, i)
			if err != nil {
				return fmt.Errorf("decode run %d, %s: %w", i, shapeName(w), err)
			}
			r.Shapes = append(r.Shapes, s)
		}
		rep.Runs = append(rep.Runs, r)
	}
	return nil
}

func pickShape(runs []decodeRun, shape string, get func(decodeShape) float64) []float64 {
	var out []float64
	for _, r := range runs {
		for _, s := range r.Shapes {
			if s.Shape == shape {
				out = append(out, get(s))
			}
		}
	}
	return out
}

func renderDecode(b *strings.Builder, d *decodeReport) {
	fmt.Fprintf(b, "# Ferry benchmark: capture's decode rate\n\n")
	fmt.Fprintf(b, "- Date: %s\n", d.Date)
	b.WriteString(d.Machine.line())
	fmt.Fprintf(b, "- Capture's StreamChanges, read by a client that discards the batches and acknowledges every watermark at once, against `pg_recvlogical` writing pgoutput to /dev/null, over the same WAL (both slots created before the writes); %d run(s). Capture is a fresh process per measurement: its peak RSS is that stream's. See bench/README.md.\n", len(d.Runs))
	fmt.Fprintf(b, "- Figures are medians over runs with (min – max); goals are checked on the median.\n\n")
	if d.Error != "" {
		fmt.Fprintf(b, "**The decode scenario failed:** %s\n\n", d.Error)
	}
	b.WriteString("| Shape | Rows | Rows per txn | pg_recvlogical, rows/s | Capture, rows/s | Capture / pg_recvlogical | Goal | Status | Capture CPU s per M rows | Capture peak RSS, MB | Goal | Status |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, shape := range []string{"backlog", "bigtxn"} {
		var rows, txn int
		for _, r := range d.Runs {
			for _, s := range r.Shapes {
				if s.Shape == shape {
					rows, txn = s.Rows, s.TxnRows
				}
			}
		}
		if rows == 0 {
			continue
		}
		get := func(f func(decodeShape) float64) []float64 { return pickShape(d.Runs, shape, f) }
		share := figure{unit: "%", atLeast: 100 * goalDecodeShare, format: "%.0f", values: get(func(s decodeShape) float64 { return 100 * s.Share })}
		rss := figure{atMost: goalRSSMB, format: "%.0f", values: get(func(s decodeShape) float64 { return s.Capture.PeakRSSMB })}
		fmt.Fprintf(b, "| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", shape, rows, txn,
			cell(get(func(s decodeShape) float64 { return s.Source.RowsPerSecond }), "%.0f"),
			cell(get(func(s decodeShape) float64 { return s.Capture.RowsPerSecond }), "%.0f"),
			cell(share.values, "%.0f%%"), share.goal(), share.status(),
			cell(get(func(s decodeShape) float64 { return s.Capture.CPUSecondsPerMillion }), "%.2f"),
			cell(rss.values, "%.0f"), rss.goal(), rss.status())
	}
}
