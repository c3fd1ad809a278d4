package main

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"
)

// streamProtoReport is the streamproto scenario's part of latest.json.
type streamProtoReport struct {
	Date    string           `json:"date"`
	Machine machine          `json:"machine"`
	Major   int              `json:"postgres_major"`
	Version string           `json:"postgres_version"`
	Runs    []streamProtoRun `json:"runs"`
	Error   string           `json:"error,omitempty"`
}

type streamProtoRun struct {
	Run    int        `json:"run"`
	Shapes []spResult `json:"shapes"`
}

// spResult is one shape of one run: capture on protocol 2 and on protocol
// 4 over the same WAL.
type spResult struct {
	Shape        string        `json:"shape"`
	Rows         int           `json:"rows"`
	Committed    int           `json:"committed_rows"`
	Sessions     int           `json:"sessions"`
	WriteSeconds float64       `json:"write_seconds"`
	V2           captureResult `json:"protocol_2"`
	V4           captureResult `json:"protocol_4"`
	// V2Streamed and V4Streamed are the transactions the walsender streamed
	// on each slot (pg_stat_replication_slots.stream_txns).
	V2Streamed int64 `json:"protocol_2_streamed_txns"`
	V4Streamed int64 `json:"protocol_4_streamed_txns"`
	// Ratio is protocol 4's rows/s over protocol 2's; First, the protocol
	// measured first.
	Ratio float64 `json:"ratio_4_to_2"`
	First int     `json:"first"`
}

func newStreamProtoReport(c *config) *streamProtoReport {
	return &streamProtoReport{Date: time.Now().UTC().Format(time.RFC3339), Machine: describeMachine(), Major: c.spMajor}
}

// runStreamProtoScenario starts the private server once and measures every
// shape in every run, stopping at the first failure.
func runStreamProtoScenario(ctx context.Context, e *benchEnv, rep *streamProtoReport) error {
	log.Printf("streamproto: starting PostgreSQL %d", e.c.spMajor)
	pg, err := startPrivatePG(ctx, e.c.repoRoot, e.c.spMajor)
	if err != nil {
		return err
	}
	defer pg.stop()
	rep.Version = pg.version
	for i := 1; i <= e.c.runs; i++ {
		r := streamProtoRun{Run: i}
		for _, s := range streamProtoShapes(e.c) {
			res, err := measureStreamProto(ctx, e, pg, s, i)
			if err != nil {
				return fmt.Errorf("streamproto run %d, %s: %w", i, s.name, err)
			}
			r.Shapes = append(r.Shapes, res)
		}
		rep.Runs = append(rep.Runs, r)
	}
	return nil
}

func pickSP(runs []streamProtoRun, shape string, get func(spResult) float64) []float64 {
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

func renderStreamProto(b *strings.Builder, d *streamProtoReport) {
	fmt.Fprintf(b, "# Ferry benchmark: streaming protocol 2 against 4\n\n")
	fmt.Fprintf(b, "- Date: %s\n", d.Date)
	b.WriteString(d.Machine.line())
	fmt.Fprintf(b, "- PostgreSQL %s (a private server, default `logical_decoding_work_mem`). Capture with `-stream-protocol 2` (pgoutput protocol 2, `streaming 'on'`) and with `-stream-protocol 4` (protocol 4, `streaming 'parallel'`), each a fresh process reading its own slot over the same WAL, as the decode scenario reads; the order alternates between runs; %d run(s). See bench/README.md.\n", d.Version, len(d.Runs))
	b.WriteString("- Figures are medians over runs with (min – max).\n\n")
	if d.Error != "" {
		fmt.Fprintf(b, "**The streamproto scenario failed:** %s\n\n", d.Error)
	}
	b.WriteString("| Shape | Rows written | Sessions | Rows committed | Streamed txns, 2 / 4 | Protocol 2, rows/s | Protocol 4, rows/s | 4 / 2 | CPU s per M rows, 2 | CPU s per M rows, 4 | Peak RSS MB, 2 | Peak RSS MB, 4 |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, shape := range []string{"one", "concurrent"} {
		get := func(f func(spResult) float64) []float64 { return pickSP(d.Runs, shape, f) }
		rows := get(func(s spResult) float64 { return float64(s.Rows) })
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(b, "| %s | %.0f | %s | %s | %s / %s | %s | %s | %s | %s | %s | %s | %s |\n", shape, rows[0],
			cell(get(func(s spResult) float64 { return float64(s.Sessions) }), "%.0f"),
			cell(get(func(s spResult) float64 { return float64(s.Committed) }), "%.0f"),
			cell(get(func(s spResult) float64 { return float64(s.V2Streamed) }), "%.0f"),
			cell(get(func(s spResult) float64 { return float64(s.V4Streamed) }), "%.0f"),
			cell(get(func(s spResult) float64 { return s.V2.RowsPerSecond }), "%.0f"),
			cell(get(func(s spResult) float64 { return s.V4.RowsPerSecond }), "%.0f"),
			cell(get(func(s spResult) float64 { return s.Ratio }), "%.3f"),
			cell(get(func(s spResult) float64 { return s.V2.CPUSecondsPerMillion }), "%.2f"),
			cell(get(func(s spResult) float64 { return s.V4.CPUSecondsPerMillion }), "%.2f"),
			cell(get(func(s spResult) float64 { return s.V2.PeakRSSMB }), "%.0f"),
			cell(get(func(s spResult) float64 { return s.V4.PeakRSSMB }), "%.0f"))
	}
}
