package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// mixedReport is the mixed scenario's part of latest.json.
type mixedReport struct {
	Date     string         `json:"date"`
	Machine  machine        `json:"machine"`
	Changes  int            `json:"changes"`
	TxnRows  int            `json:"txn_changes"`
	Prefill  int            `json:"prefill_rows"`
	Counts   map[string]int `json:"changes_by_kind"`
	Debezium string         `json:"debezium_version,omitempty"`
	Runs     []mixedRun     `json:"runs"`
	Error    string         `json:"error,omitempty"`
	Profiles string         `json:"cpu_profiles,omitempty"`
}

func newMixedReport(c *config) *mixedReport {
	r := &mixedReport{Date: time.Now().UTC().Format(time.RFC3339), Machine: describeMachine(),
		Changes: c.mixedN, TxnRows: c.mixedTxnRows, Prefill: c.mixedPrefill, Profiles: c.cpuProfileDir}
	if c.debezium {
		r.Debezium = debeziumVersion
	}
	return r
}

func mixedFigures(runs []mixedRun) []figure {
	get := func(f func(mixedRun) float64) []float64 {
		out := make([]float64, 0, len(runs))
		for _, r := range runs {
			out = append(out, f(r))
		}
		return out
	}
	fs := []figure{
		{name: "Source limit (pg_recvlogical), changes/s", values: get(func(r mixedRun) float64 { return r.Source.ChangesPerSecond }), format: "%.0f"},
		{name: "Kafka limit (librdkafka, Ferry's messages), msgs/s", values: get(func(r mixedRun) float64 { return r.Kafka.MessagesPerSecond }), format: "%.0f"},
		{name: "Kafka limit, MB/s (uncompressed)", values: get(func(r mixedRun) float64 { return r.Kafka.MBPerSecond }), format: "%.1f"},
		{name: "Ferry, changes/s to Kafka", values: get(func(r mixedRun) float64 { return r.Ferry.PerSecToKafka }), format: "%.0f"},
		{name: "Ferry, changes/s confirmed (slot flushed)", values: get(func(r mixedRun) float64 { return r.Ferry.PerSecConfirmed }), format: "%.0f"},
		{name: "Ferry, changes/s steady (10% to 90% in Kafka)", values: get(func(r mixedRun) float64 { return r.Ferry.PerSecSteady }), format: "%.0f"},
		{name: "Ferry, MB/s to Kafka (uncompressed)", values: get(func(r mixedRun) float64 { return r.Ferry.MBPerSecToKafka }), format: "%.1f"},
		{name: "Ferry / min(source, Kafka), to Kafka", unit: "%", values: get(func(r mixedRun) float64 { return 100 * r.ShareToKafka }), atLeast: 100 * goalShare, format: "%.0f"},
		{name: "Ferry / min(source, Kafka), confirmed", unit: "%", values: get(func(r mixedRun) float64 { return 100 * r.ShareToConfirmed }), atLeast: 100 * goalShare, format: "%.0f"},
		{name: "Average Canal JSON message, bytes (key + value)", values: get(func(r mixedRun) float64 { return r.Ferry.Topic.AvgKey + r.Ferry.Topic.AvgValue }), format: "%.0f"},
	}
	if len(runs) > 0 && !slices.ContainsFunc(runs, func(r mixedRun) bool { return r.Debezium == nil }) {
		fs = append(fs,
			figure{name: "Debezium, changes/s to Kafka", values: get(func(r mixedRun) float64 { return r.Debezium.PerSecToKafka }), format: "%.0f"},
			figure{name: "Debezium, changes/s confirmed (slot flushed)", values: get(func(r mixedRun) float64 { return r.Debezium.PerSecConfirmed }), format: "%.0f"},
			figure{name: "Debezium, changes/s steady (10% to 90% in Kafka)", values: get(func(r mixedRun) float64 { return r.Debezium.PerSecSteady }), format: "%.0f"},
			figure{name: "Debezium, MB/s to Kafka (uncompressed)", values: get(func(r mixedRun) float64 { return r.Debezium.MBPerSecToKafka }), format: "%.1f"},
			figure{name: "Ferry / Debezium, to Kafka", unit: "x", values: get(func(r mixedRun) float64 { return r.OverDebeziumToKafka }), atLeast: goalOverDbz, format: "%.2f"},
			figure{name: "Ferry / Debezium, confirmed", unit: "x", values: get(func(r mixedRun) float64 { return r.OverDebeziumToConfirmed }), atLeast: goalOverDbz, format: "%.2f"},
			figure{name: "Average Debezium JSON message, bytes (key + value)", values: get(func(r mixedRun) float64 { return r.Debezium.Topic.AvgKey + r.Debezium.Topic.AvgValue }), format: "%.0f"},
			figure{name: "Debezium (Kafka Connect JVM): peak RSS, MB", values: get(func(r mixedRun) float64 { return r.Debezium.Processes["debezium"].PeakRSSMB }), format: "%.0f"},
			figure{name: "Debezium (Kafka Connect JVM): CPU s per million changes", values: get(func(r mixedRun) float64 { return r.Debezium.Processes["debezium"].CPUSecondsPerMillion }), format: "%.2f"},
		)
	}
	for _, s := range services {
		fs = append(fs, figure{name: s + ": peak RSS, MB", values: get(func(r mixedRun) float64 { return r.Ferry.Processes[s].PeakRSSMB }), atMost: goalRSSMB, format: "%.0f"})
	}
	for _, s := range services {
		fs = append(fs, figure{name: s + ": CPU s per million changes", values: get(func(r mixedRun) float64 { return r.Ferry.Processes[s].CPUSecondsPerMillion }), format: "%.2f"})
	}
	return append(fs, figure{name: "Ferry, all processes: CPU s per million changes", values: get(func(r mixedRun) float64 { return cpuPerMillionTotal(r.Ferry.Processes) }), format: "%.2f"})
}

func renderMixed(b *strings.Builder, rep *mixedReport) {
	fmt.Fprintf(b, "# Ferry benchmark: incremental at maximum rate, mixed changes\n\n")
	fmt.Fprintf(b, "- Date: %s\n", rep.Date)
	b.WriteString(rep.Machine.line())
	fmt.Fprintf(b, "- Backlog: %d changes to `bench_mixed` (INSERT %d, UPDATE %d, DELETE %d; seeded), %d changes per transaction, on %d pre-filled rows; REPLICA IDENTITY DEFAULT with a primary key; %d run(s)\n",
		rep.Changes, rep.Counts[opInsert], rep.Counts[opUpdate], rep.Counts[opDelete], rep.TxnRows, rep.Prefill, len(rep.Runs))
	fmt.Fprintf(b, "- Timed as the backlog scenario is (a backlog written while the consumer is stopped, the clock from resume); \"steady\" is the rate between 10%% and 90%% of the changes in Kafka. See bench/README.md.\n")
	if rep.Debezium != "" {
		fmt.Fprintf(b, "- Debezium baseline: debezium-connector-postgres %s, set up as in the backlog scenario, with `tombstones.on.delete=false` (one message per change, as Ferry)\n", rep.Debezium)
	} else {
		b.WriteString("- Debezium baseline: **skipped** (-debezium=false)\n")
	}
	if rep.Profiles != "" {
		fmt.Fprintf(b, "- CPU profiles of the last run's capture and delivery: %s (`go tool pprof -top`)\n", rep.Profiles)
	}
	b.WriteString("\n")
	if rep.Error != "" {
		fmt.Fprintf(b, "**The mixed scenario failed:** %s\n\n", rep.Error)
	}
	renderFigures(b, mixedFigures(rep.Runs))
	b.WriteString("\n| Run | Ferry messages (I / U / D) | source s | Ferry s to Kafka | Ferry s confirmed | Kafka s | Debezium messages (I / U / D) | Debezium s to Kafka | Debezium s confirmed |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rep.Runs {
		k := r.Ferry.Messages
		fmt.Fprintf(b, "| %d | %d / %d / %d | %.2f | %.2f | %.2f | %.2f |", r.Run, k[opInsert], k[opUpdate], k[opDelete],
			r.Source.Seconds, r.Ferry.ToKafkaSeconds, r.Ferry.ToConfirmedSeconds, r.Kafka.Seconds)
		if d := r.Debezium; d != nil {
			k = d.Messages
			fmt.Fprintf(b, " %d / %d / %d | %.2f | %.2f |\n", k[opInsert], k[opUpdate], k[opDelete], d.ToKafkaSeconds, d.ToConfirmedSeconds)
		} else {
			b.WriteString(" – | – | – |\n")
		}
	}
}
