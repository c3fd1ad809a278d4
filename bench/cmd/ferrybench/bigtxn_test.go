package main

import (
	"strings"
	"testing"
)

// Every format and codec gets its row, judged on its own share of the same
// run's lower limit; the big transaction's and the decode scenario's parts
// render with their goals.
func TestCombosBigTxnAndDecodeInReport(t *testing.T) {
	run := func(n int, share float64) runResult {
		r := runResult{Run: n, Combo: "canal/lz4", ShareToConfirmed: share}
		r.Ferry.RowsPerSecToConfirmed = 1000
		r.Others = []comboResult{{Combo: "avro/zstd", ShareToConfirmed: share / 2, Ferry: ferryResult{
			Processes: map[string]procUsage{"delivery": {PeakRSSMB: 120}}}}}
		return r
	}
	dec := func(n int, share, rss float64) decodeRun {
		return decodeRun{Run: n, Shapes: []decodeShape{
			{Shape: "backlog", Rows: 500, TxnRows: 10, Share: share, Capture: captureResult{PeakRSSMB: 30}},
			{Shape: "bigtxn", Rows: 1000, TxnRows: 1000, Share: share, Capture: captureResult{PeakRSSMB: rss}},
		}}
	}
	rep := report{Rows: 10, Runs: []runResult{run(1, 0.8)},
		BigTxn: &bigTxnReport{Rows: 1000, Runs: []runResult{run(1, 0.5)}},
		Decode: &decodeReport{Runs: []decodeRun{dec(1, 0.95, 300), dec(2, 0.85, 200), dec(3, 0.92, 250)}}}
	md := renderMarkdown(rep)
	for _, want := range []string{
		"Ferry's format and codec in the table above: Canal JSON, lz4.",
		"| Canal JSON, lz4 | 0 | 1000 | 0 | 80% | ≥ 70% | met | – |",
		"| DTS Avro, zstd | 0 | 0 | 0 | 40% | ≥ 70% | **missed** | – | 0 | 0.00 | 120 |",
		"# Ferry benchmark: one big transaction",
		"One transaction of N = 1000 inserts",
		"| Canal JSON, lz4 | 0 | 1000 | 0 | 50% | ≥ 70% | **missed** |",
		"| backlog | 500 | 10 | 0 | 0 | 92% (85% – 95%) | ≥ 90% | met (missed in 1 of 3 runs) |",
		"| bigtxn | 1000 | 1000 | 0 | 0 | 92% (85% – 95%) | ≥ 90% | met (missed in 1 of 3 runs) | 0.00 | 250 (200 – 300) | ≤ 256 | met (missed in 1 of 3 runs) |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}
