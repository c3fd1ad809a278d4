package main

import (
	"fmt"
	"strings"
	"time"
)

// t10kReport is the many-tables scenario's part of latest.json.
type t10kReport struct {
	Date    string  `json:"date"`
	Machine machine `json:"machine"`
	Tables  int     `json:"tables"`
	Rows    int     `json:"rows_per_table"`
	// Select is how the task selects the tables: "schema" or "tables".
	Select        string       `json:"select"`
	CreateSeconds float64      `json:"create_seconds"`
	Runs          []t10kResult `json:"runs"`
	Error         string       `json:"error,omitempty"`
}

func newT10kReport(c *config) *t10kReport {
	return &t10kReport{Date: time.Now().UTC().Format(time.RFC3339), Machine: describeMachine(),
		Tables: c.t10kTables, Rows: c.t10kRows, Select: c.t10kSelect}
}

// Temporal's payload limits (its blob size limits' defaults): a payload
// over the error limit fails the workflow task or activity that made it.
const (
	temporalPayloadWarnBytes  = 512 * 1024
	temporalPayloadErrorBytes = 2 * 1024 * 1024
)

// t10kFigures lists the scenario's rows; there are no goals, only the
// Temporal payload limit, which an event must stay under.
func t10kFigures(runs []t10kResult) []figure {
	get := func(f func(t10kResult) float64) []float64 {
		out := make([]float64, 0, len(runs))
		for _, r := range runs {
			out = append(out, f(r))
		}
		return out
	}
	fs := []figure{
		{name: "Precheck, s (CreateTask to the workflow leaving precheck)", values: get(func(r t10kResult) float64 { return r.PrecheckSeconds }), format: "%.1f"},
		{name: "Schema sync, s (tables resolved, topic, publication, slot)", values: get(func(r t10kResult) float64 { return r.SchemaSyncSeconds }), format: "%.1f"},
		{name: "Full sync, s (every table read and confirmed)", values: get(func(r t10kResult) float64 { return r.FullSyncSeconds }), format: "%.1f"},
		{name: "CreateTask to incremental (slot streaming), s", values: get(func(r t10kResult) float64 { return r.ToIncrementalSecs }), format: "%.1f"},
		{name: "Slowest GetTask while the task ran, s", values: get(func(r t10kResult) float64 { return r.MaxGetTaskSeconds }), format: "%.2f"},
		{name: "Workflow history, events", values: get(func(r t10kResult) float64 { return float64(r.HistoryEvents) }), format: "%.0f"},
		{name: "Workflow history, KB", values: get(func(r t10kResult) float64 { return float64(r.HistoryBytes) / 1024 }), format: "%.0f"},
		{name: "Largest history event, KB (Temporal refuses payloads over 2048)", values: get(func(r t10kResult) float64 { return float64(r.LargestEventBytes) / 1024 }),
			atMost: temporalPayloadErrorBytes / 1024, format: "%.0f"},
		{name: "Continue-as-new input at incremental (the state), KB", values: get(func(r t10kResult) float64 { return float64(r.StateBytes) / 1024 }),
			atMost: temporalPayloadErrorBytes / 1024, format: "%.0f"},
	}
	for _, s := range services {
		fs = append(fs, figure{name: s + ": peak RSS, MB", values: get(func(r t10kResult) float64 { return r.Processes[s].PeakRSSMB }), atMost: goalRSSMB, format: "%.0f"})
	}
	for _, s := range services {
		fs = append(fs, figure{name: s + ": CPU s, CreateTask to incremental", values: get(func(r t10kResult) float64 { return r.Processes[s].CPUSeconds }), format: "%.1f"})
	}
	return fs
}

func renderT10k(b *strings.Builder, rep *t10kReport) {
	fmt.Fprintf(b, "# Ferry benchmark: %d tables in one task\n\n", rep.Tables)
	fmt.Fprintf(b, "- Date: %s\n", rep.Date)
	b.WriteString(rep.Machine.line())
	fmt.Fprintf(b, "- %d tables `%s.bench_t10k_NNNNN(id bigint primary key, n integer, note text)` of %d rows each (created in %.1f s, %d per transaction); %d run(s)\n",
		rep.Tables, t10kSchema, rep.Rows, rep.CreateSeconds, t10kBatch, len(rep.Runs))
	sel := "the schema whole (`objects.schemas`, FOR TABLES IN SCHEMA, as the superuser)"
	if rep.Select == "tables" {
		sel = "every table by name (`objects.tables`, as the `ferry` role)"
	}
	fmt.Fprintf(b, "- The task selects %s, with schema and full sync, into one topic; fresh Ferry processes per run. No goals: the figures are reported. Peak RSS is checked against the 256 MB per-process goal, the largest history event against Temporal's 2 MB payload limit.\n\n", sel)
	if rep.Error != "" {
		fmt.Fprintf(b, "**The tables10k scenario failed:** %s\n\n", rep.Error)
	}
	b.WriteString("| Figure | Median | Min – max | Limit | Status |\n|---|---|---|---|---|\n")
	for _, f := range t10kFigures(rep.Runs) {
		b.WriteString(f.row() + "\n")
	}
	b.WriteString("\n| Run | full sync rows | tables done | topic messages | largest event |\n|---|---|---|---|---|\n")
	for _, r := range rep.Runs {
		fmt.Fprintf(b, "| %d | %d / %d | %d / %d | %d | %s |\n", r.Run, r.FullSyncRows, rep.Tables*rep.Rows,
			r.FullSyncTablesDone, rep.Tables, r.TopicMessages, r.LargestEventType)
	}
}
