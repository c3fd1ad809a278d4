package main

import (
	"fmt"
	"slices"
	"strings"
)

// Goals of the full sync scenario (Ferry issues 3 and 5).
const (
	goalFsOverDbz       = 5    // Ferry's rows/s over Debezium's snapshot
	goalCaptureOverCopy = 0.80 // capture's ReadSnapshot over psql's COPY
)

func fsCollect(runs []fsRunResult, get func(fsRunResult) float64) []float64 {
	out := make([]float64, 0, len(runs))
	for _, r := range runs {
		out = append(out, get(r))
	}
	return out
}

// fsFigures lists one shape's rows: the limits, capture alone, Ferry, the
// ratios, Debezium, then per-process costs.
func fsFigures(runs []fsRunResult) []figure {
	get := func(f func(fsRunResult) float64) []float64 { return fsCollect(runs, f) }
	pct := func(f func(fsRunResult) float64) []float64 {
		return fsCollect(runs, func(r fsRunResult) float64 { return 100 * f(r) })
	}
	fs := []figure{
		{name: "Source limit (psql COPY), rows/s", values: get(func(r fsRunResult) float64 { return r.Copy.RowsPerSec }), format: "%.0f"},
		{name: "Source limit, MB/s (COPY text)", values: get(func(r fsRunResult) float64 { return r.Copy.MBPerSec }), format: "%.1f"},
		{name: "Capture alone (ReadSnapshot, batches discarded), rows/s", values: get(func(r fsRunResult) float64 { return r.Capture.RowsPerSec }), format: "%.0f"},
		{name: "Capture alone / COPY", unit: "%", values: pct(func(r fsRunResult) float64 { return r.Capture.OverCopy }), atLeast: 100 * goalCaptureOverCopy, format: "%.0f"},
		{name: "Kafka limit (librdkafka, Ferry's settings), msgs/s", values: get(func(r fsRunResult) float64 { return r.Kafka.MessagesPerSecond }), format: "%.0f"},
		{name: "Kafka limit, MB/s (uncompressed)", values: get(func(r fsRunResult) float64 { return r.Kafka.MBPerSecond }), format: "%.1f"},
		{name: "Ferry, rows/s to Kafka", values: get(func(r fsRunResult) float64 { return r.Ferry.RowsPerSecToKafka }), format: "%.0f"},
		{name: "Ferry, rows/s to full sync done", values: get(func(r fsRunResult) float64 { return r.Ferry.RowsPerSecToDone }), format: "%.0f"},
		{name: "Ferry, MB/s to Kafka (uncompressed)", values: get(func(r fsRunResult) float64 { return r.Ferry.MBPerSecToKafka }), format: "%.1f"},
		{name: "Ferry / min(COPY, Kafka), to Kafka", unit: "%", values: pct(func(r fsRunResult) float64 { return r.ShareToKafka }), atLeast: 100 * goalShare, format: "%.0f"},
		{name: "Ferry / min(COPY, Kafka), done", unit: "%", values: pct(func(r fsRunResult) float64 { return r.ShareToDone }), atLeast: 100 * goalShare, format: "%.0f"},
		{name: "Average Canal JSON message, bytes (key + value)", values: get(func(r fsRunResult) float64 { return r.Ferry.Topic.AvgKey + r.Ferry.Topic.AvgValue }), format: "%.0f"},
	}
	fs = append(fs, fsDebeziumFigures(runs)...)
	fs = append(fs, figure{name: "capture alone: peak RSS, MB", values: get(func(r fsRunResult) float64 { return r.Capture.Process.PeakRSSMB }), atMost: goalRSSMB, format: "%.0f"})
	for _, s := range services {
		fs = append(fs, figure{name: s + ": peak RSS, MB", values: get(func(r fsRunResult) float64 { return r.Ferry.Processes[s].PeakRSSMB }), atMost: goalRSSMB, format: "%.0f"})
	}
	fs = append(fs, figure{name: "capture alone: CPU s per million rows", values: get(func(r fsRunResult) float64 { return r.Capture.Process.CPUSecondsPerMillion }), format: "%.2f"})
	for _, s := range services {
		fs = append(fs, figure{name: s + ": CPU s per million rows", values: get(func(r fsRunResult) float64 { return r.Ferry.Processes[s].CPUSecondsPerMillion }), format: "%.2f"})
	}
	return append(fs, figure{name: "Ferry, all processes: CPU s per million rows", values: get(func(r fsRunResult) float64 { return cpuPerMillionTotal(r.Ferry.Processes) }), format: "%.2f"})
}

// fsDebeziumFigures are Debezium's rows, when every run has it. A capped
// snapshot says so in every row's name: its rate is over fewer rows.
func fsDebeziumFigures(runs []fsRunResult) []figure {
	if len(runs) == 0 || slices.ContainsFunc(runs, func(r fsRunResult) bool { return r.Debezium == nil }) {
		return nil
	}
	d := runs[0].Debezium
	name := "Debezium snapshot"
	if d.Capped {
		name = fmt.Sprintf("Debezium snapshot (**capped**: %d rows in %d table(s))", d.Rows, d.Tables)
	}
	dbz := func(get func(d *fsDbzResult) float64) []float64 {
		return fsCollect(runs, func(r fsRunResult) float64 { return get(r.Debezium) })
	}
	return []figure{
		{name: name + ", rows/s to Kafka", values: dbz(func(d *fsDbzResult) float64 { return d.RowsPerSec }), format: "%.0f"},
		{name: name + ", MB/s to Kafka (uncompressed)", values: dbz(func(d *fsDbzResult) float64 { return d.MBPerSec }), format: "%.1f"},
		{name: "Ferry / Debezium, to Kafka", unit: "x", values: fsCollect(runs, func(r fsRunResult) float64 { return r.OverDebeziumToKafka }), atLeast: goalFsOverDbz, format: "%.2f"},
		{name: "Ferry / Debezium, done", unit: "x", values: fsCollect(runs, func(r fsRunResult) float64 { return r.OverDebeziumToDone }), atLeast: goalFsOverDbz, format: "%.2f"},
		{name: "Average Debezium JSON message, bytes (key + value)", values: dbz(func(d *fsDbzResult) float64 { return d.Topic.AvgKey + d.Topic.AvgValue }), format: "%.0f"},
		{name: "Debezium (Kafka Connect JVM): peak RSS, MB", values: dbz(func(d *fsDbzResult) float64 { return d.Process.PeakRSSMB }), format: "%.0f"},
		{name: "Debezium (Kafka Connect JVM): CPU s per million rows", values: dbz(func(d *fsDbzResult) float64 { return d.Process.CPUSecondsPerMillion }), format: "%.2f"},
	}
}

// fsPath names the full sync path the task took, as its state reported it.
func fsPath(runs []fsRunResult) string {
	chunked := 0
	for _, r := range runs {
		if r.Ferry.Chunked {
			chunked++
		}
	}
	switch chunked {
	case 0:
		return "one exported snapshot (capture's ReadSnapshot, the path capture alone measures)"
	case len(runs):
		return "chunked (DBLog: primary-key chunks of 10,000 rows between watermarks, beside the stream; `state.full_sync_chunked`), not the exported snapshot capture alone measures"
	}
	return fmt.Sprintf("chunked in %d of %d runs", chunked, len(runs))
}

func renderFullSync(b *strings.Builder, r *fsReport) {
	b.WriteString("# Ferry benchmark: full sync\n\n")
	fmt.Fprintf(b, "- Date: %s\n", r.Date)
	b.WriteString(r.Machine.line())
	fmt.Fprintf(b, "- Tables generated and vacuumed once in %.0f s; %d run(s) per shape. Each run measures psql's COPY (up to %d tables at once), capture's ReadSnapshot alone, Ferry (task with schema + full sync, Canal JSON, lz4, one topic; clock from StartTask), the Kafka limit and Debezium, one after another; see bench/README.md.\n",
		r.SetupSeconds, r.Runs, fsCopyConnections)
	switch {
	case r.DebeziumVersion == "":
		b.WriteString("- Debezium baseline: **skipped** (-debezium=false)\n")
	case r.DebeziumMaxRows > 0:
		fmt.Fprintf(b, "- Debezium baseline: debezium-connector-postgres %s, `snapshot.mode=initial`, clock from creating the connector; snapshots above %d rows are **capped** (-fullsync-debezium-max-rows) and its rate is over the rows it read\n", r.DebeziumVersion, r.DebeziumMaxRows)
	default:
		fmt.Fprintf(b, "- Debezium baseline: debezium-connector-postgres %s, `snapshot.mode=initial`, clock from creating the connector; not capped\n", r.DebeziumVersion)
	}
	if r.Error != "" {
		fmt.Fprintf(b, "\n**The full sync scenario failed:** %s\n", r.Error)
	}
	for _, p := range r.Parts {
		fmt.Fprintf(b, "\n## %s (%d rows)\n\n", p.Name, p.Rows)
		if len(p.Runs) > 0 {
			fmt.Fprintf(b, "Ferry's full sync path: %s.\n\n", fsPath(p.Runs))
		}
		renderFigures(b, fsFigures(p.Runs))
		renderFsRuns(b, p)
	}
}

// renderFsRuns is the per-run table: rows arrived and each timing.
func renderFsRuns(b *strings.Builder, p *fsPartReport) {
	b.WriteString("\n| Run | Ferry rows arrived (distinct / rows) | messages | COPY s | capture s | Ferry s to Kafka | Ferry s done | Kafka s | Debezium rows arrived / snapshotted | Debezium s |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range p.Runs {
		fmt.Fprintf(b, "| %d | %d / %d | %d | %.2f | %.2f | %.2f | %.2f | %.2f |", r.Run, r.Ferry.Topic.Distinct, p.Rows,
			r.Ferry.Topic.Messages, r.Copy.Seconds, r.Capture.Seconds, r.Ferry.ToKafkaSeconds, r.Ferry.ToDoneSeconds, r.Kafka.Seconds)
		if d := r.Debezium; d != nil {
			fmt.Fprintf(b, " %d / %d | %.2f |\n", d.Topic.Distinct, d.Rows, d.Seconds)
		} else {
			b.WriteString(" – | – |\n")
		}
	}
}
