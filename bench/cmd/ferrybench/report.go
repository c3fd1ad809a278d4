package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// report is latest.json: the raw figures of every run, so that medians can
// be recomputed and runs compared later.
type report struct {
	Date    string      `json:"date"`
	Machine machine     `json:"machine"`
	Rows    int         `json:"rows"`
	TxnRows int         `json:"txn_rows"`
	Runs    []runResult `json:"runs"`
	Error   string      `json:"error,omitempty"`
	// The Debezium baseline's versions; empty when it was skipped.
	DebeziumVersion string `json:"debezium_version,omitempty"`
	ConnectVersion  string `json:"kafka_connect_version,omitempty"`
	// Delivery is the delivery scenario's part (dlvreport.go).
	Delivery *dlvReport `json:"delivery,omitempty"`
	// Mixed and Latency are those scenarios' parts (mixedreport.go,
	// latencyrun.go).
	Mixed   *mixedReport   `json:"mixed,omitempty"`
	Latency *latencyReport `json:"latency,omitempty"`
	// FullSync is the full sync scenario's part (fullsync_report.go).
	FullSync *fsReport `json:"fullsync,omitempty"`
	// BigTxn and Decode are those scenarios' parts (bigtxn.go, decodereport.go).
	BigTxn *bigTxnReport `json:"bigtxn,omitempty"`
	Decode *decodeReport `json:"decode,omitempty"`
	// StreamProto is the streaming protocol comparison's (streamproto_report.go).
	StreamProto *streamProtoReport `json:"streamproto,omitempty"`
	// Tables10k is the many-tables scenario's part (tables10k_report.go).
	Tables10k *t10kReport `json:"tables10k,omitempty"`
}

// Goals, printed beside the figures so that a miss is visible.
const (
	goalShare   = 0.70 // Ferry's rows/s over min(source, Kafka)
	goalOverDbz = 3    // Ferry's rows/s over Debezium's
	goalRSSMB   = 256  // peak RSS of each Ferry process
	missedMark  = "**missed**"
)

// figure is one row of the Markdown table.
type figure struct {
	name   string
	unit   string
	values []float64
	// atLeast/atMost is the goal; both zero means no goal.
	atLeast, atMost float64
	format          string
}

func (f figure) goal() string {
	switch {
	case f.atLeast > 0:
		return "≥ " + f.fmt(f.atLeast)
	case f.atMost > 0:
		return "≤ " + f.fmt(f.atMost)
	}
	return ""
}

func (f figure) misses(v float64) bool {
	return (f.atLeast > 0 && v < f.atLeast) || (f.atMost > 0 && v > f.atMost)
}

// status marks a miss by the median, and says so too when only some runs
// missed, so that a goal met by luck of the median still shows.
func (f figure) status() string {
	if f.goal() == "" || len(f.values) == 0 {
		return ""
	}
	n := 0
	for _, v := range f.values {
		if f.misses(v) {
			n++
		}
	}
	switch {
	case f.misses(median(f.values)):
		return missedMark
	case n > 0:
		return fmt.Sprintf("met (missed in %d of %d runs)", n, len(f.values))
	}
	return "met"
}

func (f figure) fmt(v float64) string {
	s := fmt.Sprintf(f.format, v)
	switch f.unit {
	case "%":
		return s + "%"
	case "x":
		return s + "×"
	}
	return s
}

func (f figure) row() string {
	if len(f.values) == 0 {
		return fmt.Sprintf("| %s | – | – | %s | |", f.name, f.goal())
	}
	lo, hi := slices.Min(f.values), slices.Max(f.values)
	return fmt.Sprintf("| %s | %s | %s – %s | %s | %s |", f.name, f.fmt(median(f.values)), f.fmt(lo), f.fmt(hi), f.goal(), f.status())
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func collect(runs []runResult, get func(runResult) float64) []float64 {
	out := make([]float64, 0, len(runs))
	for _, r := range runs {
		out = append(out, get(r))
	}
	return out
}

// figures lists the table's rows in reading order: the two limits, Ferry,
// the ratio that matters, then per-process costs.
func figures(runs []runResult) []figure {
	pct := func(get func(runResult) float64) []float64 {
		return collect(runs, func(r runResult) float64 { return 100 * get(r) })
	}
	fs := []figure{
		{name: "Source limit (pg_recvlogical), changes/s", values: collect(runs, func(r runResult) float64 { return r.Source.ChangesPerSecond }), format: "%.0f"},
		{name: "Kafka limit (librdkafka, Ferry's settings), msgs/s", values: collect(runs, func(r runResult) float64 { return r.Kafka.MessagesPerSecond }), format: "%.0f"},
		{name: "Kafka limit, MB/s (uncompressed)", values: collect(runs, func(r runResult) float64 { return r.Kafka.MBPerSecond }), format: "%.1f"},
		{name: "Ferry, rows/s to Kafka", values: collect(runs, func(r runResult) float64 { return r.Ferry.RowsPerSecToKafka }), format: "%.0f"},
		{name: "Ferry, rows/s confirmed (slot flushed)", values: collect(runs, func(r runResult) float64 { return r.Ferry.RowsPerSecToConfirmed }), format: "%.0f"},
		{name: "Ferry, MB/s to Kafka (uncompressed)", values: collect(runs, func(r runResult) float64 { return r.Ferry.MBPerSecToKafka }), format: "%.1f"},
		{name: "Ferry / min(source, Kafka), to Kafka", unit: "%", values: pct(func(r runResult) float64 { return r.ShareToKafka }), atLeast: 100 * goalShare, format: "%.0f"},
		{name: "Ferry / min(source, Kafka), confirmed", unit: "%", values: pct(func(r runResult) float64 { return r.ShareToConfirmed }), atLeast: 100 * goalShare, format: "%.0f"},
		{name: "Average Ferry message, bytes (key + value)", values: collect(runs, func(r runResult) float64 { return r.Ferry.Topic.AvgKey + r.Ferry.Topic.AvgValue }), format: "%.0f"},
	}
	fs = append(fs, debeziumFigures(runs)...)
	for _, s := range services {
		fs = append(fs, figure{name: s + ": peak RSS, MB", values: collect(runs, func(r runResult) float64 { return r.Ferry.Processes[s].PeakRSSMB }), atMost: goalRSSMB, format: "%.0f"})
	}
	for _, s := range services {
		fs = append(fs, figure{name: s + ": CPU s per million rows", values: collect(runs, func(r runResult) float64 { return r.Ferry.Processes[s].CPUSecondsPerMillion }), format: "%.2f"})
	}
	fs = append(fs, figure{name: "Ferry, all processes: CPU s per million rows", values: collect(runs, func(r runResult) float64 { return cpuPerMillionTotal(r.Ferry.Processes) }), format: "%.2f"})
	return fs
}

// debeziumFigures are the Debezium baseline's rows, when every run has it
// (it runs in all or none).
func debeziumFigures(runs []runResult) []figure {
	if len(runs) == 0 || slices.ContainsFunc(runs, func(r runResult) bool { return r.Debezium == nil }) {
		return nil
	}
	dbz := func(get func(d *debeziumResult) float64) []float64 {
		return collect(runs, func(r runResult) float64 { return get(r.Debezium) })
	}
	return []figure{
		{name: "Debezium, rows/s to Kafka", values: dbz(func(d *debeziumResult) float64 { return d.RowsPerSecToKafka }), format: "%.0f"},
		{name: "Debezium, rows/s confirmed (slot flushed)", values: dbz(func(d *debeziumResult) float64 { return d.RowsPerSecToConfirmed }), format: "%.0f"},
		{name: "Debezium, MB/s to Kafka (uncompressed)", values: dbz(func(d *debeziumResult) float64 { return d.MBPerSecToKafka }), format: "%.1f"},
		{name: "Ferry / Debezium, to Kafka", unit: "x", values: collect(runs, func(r runResult) float64 { return r.OverDebeziumToKafka }), atLeast: goalOverDbz, format: "%.2f"},
		{name: "Ferry / Debezium, confirmed", unit: "x", values: collect(runs, func(r runResult) float64 { return r.OverDebeziumToConfirmed }), atLeast: goalOverDbz, format: "%.2f"},
		{name: "Average Debezium JSON message, bytes (key + value)", values: dbz(func(d *debeziumResult) float64 { return d.Topic.AvgKey + d.Topic.AvgValue }), format: "%.0f"},
		{name: "Debezium (Kafka Connect JVM): peak RSS, MB", values: dbz(func(d *debeziumResult) float64 { return d.Process.PeakRSSMB }), format: "%.0f"},
		{name: "Debezium (Kafka Connect JVM): CPU s per million rows", values: dbz(func(d *debeziumResult) float64 { return d.Process.CPUSecondsPerMillion }), format: "%.2f"},
	}
}

func renderMarkdown(rep report) string {
	var b strings.Builder
	if len(rep.Runs) > 0 || rep.Error != "" {
		renderBacklog(&b, rep)
	}
	if rep.Delivery != nil {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		renderDelivery(&b, rep.Delivery)
	}
	if rep.Mixed != nil {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		renderMixed(&b, rep.Mixed)
	}
	if rep.Latency != nil {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		renderE2ELatency(&b, rep.Latency)
	}
	if rep.FullSync != nil {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		renderFullSync(&b, rep.FullSync)
	}
	if rep.BigTxn != nil {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		renderBigTxn(&b, rep.BigTxn)
	}
	if rep.Decode != nil {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		renderDecode(&b, rep.Decode)
	}
	if rep.StreamProto != nil {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		renderStreamProto(&b, rep.StreamProto)
	}
	if rep.Tables10k != nil {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		renderT10k(&b, rep.Tables10k)
	}
	return b.String()
}

func renderBacklog(b *strings.Builder, rep report) {
	fmt.Fprintf(b, "# Ferry benchmark: incremental backlog\n\n")
	fmt.Fprintf(b, "- Date: %s\n", rep.Date)
	b.WriteString(rep.Machine.line())
	fmt.Fprintf(b, "- Backlog: N = %d inserts into `bench_orders`, %d rows per transaction; %d run(s)\n", rep.Rows, rep.TxnRows, len(rep.Runs))
	fmt.Fprintf(b, "- Figures are medians over runs with min – max; goals are checked on the median. Each run measures the source limit, Ferry, the Kafka limit and Debezium one after another on this machine; see bench/README.md.\n")
	if rep.DebeziumVersion != "" {
		fmt.Fprintf(b, "- Debezium baseline: debezium-connector-postgres %s in Kafka Connect %s standalone: JsonConverter with schemas off, Ferry's producer settings, offsets committed and heartbeats every 100 ms, up to %d warm-up rows before the clock; Connect's and Debezium's defaults otherwise (see bench/README.md)\n\n",
			rep.DebeziumVersion, rep.ConnectVersion, dbzWarmupRows)
	} else {
		b.WriteString("- Debezium baseline: **skipped** (-debezium=false)\n\n")
	}
	if rep.Error != "" {
		fmt.Fprintf(b, "**The backlog scenario failed:** %s\n\n", rep.Error)
	}
	renderFigures(b, figures(rep.Runs))
	renderCombos(b, rep.Runs)
	renderBacklogRuns(b, rep)
}

// renderBacklogRuns is the per-run table: rows arrived and each timing.
func renderBacklogRuns(b *strings.Builder, rep report) {
	b.WriteString("\n| Run | rows arrived (distinct / N) | messages | source s | Ferry s to Kafka | Ferry s confirmed | Kafka s | Debezium rows arrived | Debezium messages | Debezium s to Kafka | Debezium s confirmed |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rep.Runs {
		fmt.Fprintf(b, "| %d | %d / %d | %d | %.2f | %.2f | %.2f | %.2f |", r.Run, r.Ferry.Topic.Distinct, rep.Rows,
			r.Ferry.Topic.Messages, r.Source.Seconds, r.Ferry.ToKafkaSeconds, r.Ferry.ToConfirmedSeconds, r.Kafka.Seconds)
		if d := r.Debezium; d != nil {
			fmt.Fprintf(b, " %d / %d | %d | %.2f | %.2f |\n", d.Topic.Distinct, rep.Rows, d.Topic.Messages, d.ToKafkaSeconds, d.ToConfirmedSeconds)
		} else {
			b.WriteString(" – | – | – | – |\n")
		}
	}
}

// writeReport writes latest.md and latest.json into dir.
func writeReport(dir string, rep report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	raw, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "latest.json"), append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing latest.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "latest.md"), []byte(renderMarkdown(rep)), 0o644); err != nil {
		return fmt.Errorf("writing latest.md: %w", err)
	}
	return nil
}

func newReport(c *config) report {
	rep := report{Date: time.Now().UTC().Format(time.RFC3339), Machine: describeMachine(), Rows: c.rows, TxnRows: c.txnRows}
	if c.debezium {
		rep.DebeziumVersion, rep.ConnectVersion = debeziumVersion, connectVersion
	}
	return rep
}

// renderFigures writes the figures as a Markdown table.
func renderFigures(b *strings.Builder, fs []figure) {
	b.WriteString("| Figure | Median | Min – max | Goal | Status |\n|---|---|---|---|---|\n")
	for _, f := range fs {
		b.WriteString(f.row() + "\n")
	}
}

// cpuPerMillionTotal is the CPU all of Ferry's processes spent per million
// rows.
func cpuPerMillionTotal(ps map[string]procUsage) float64 {
	total := 0.0
	for _, p := range ps {
		total += p.CPUSecondsPerMillion
	}
	return total
}
