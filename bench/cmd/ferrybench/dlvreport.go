package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// dlvReport is the delivery scenario's part of latest.json.
type dlvReport struct {
	Date          string   `json:"date"`
	Machine       machine  `json:"machine"`
	Rows          int      `json:"rows"` // per throughput measurement
	BatchRows     int      `json:"batch_rows"`
	Codecs        []string `json:"codecs"`
	LatencyRate   int      `json:"latency_rows_per_second"`
	LatencyFor    float64  `json:"latency_seconds"`
	LatencyWarmup float64  `json:"latency_warmup_seconds"`
	Runs          []dlvRun `json:"runs"`
	Error         string   `json:"error,omitempty"`
}

// Goals of the delivery scenario.
const (
	goalDeliveryShare = 0.85 // delivery's msgs/s over the baseline's
	// goalPacedShare: the paced stream must actually run at its rate for its
	// latency to mean anything.
	goalPacedShare = 0.99
)

func newDlvReport(c *config) *dlvReport {
	return &dlvReport{Date: time.Now().UTC().Format(time.RFC3339), Machine: describeMachine(), Rows: c.dlvRows,
		BatchRows: c.dlvBatch, Codecs: c.codecs, LatencyRate: c.latencyRate,
		LatencyFor: c.latencyFor.Seconds(), LatencyWarmup: c.latencyWarmup.Seconds()}
}

// cell is "median (min – max)", or the one value of a single run.
func cell(v []float64, format string) string {
	if len(v) == 0 {
		return "–"
	}
	med := fmt.Sprintf(format, median(v))
	lo, hi := slices.Min(v), slices.Max(v)
	if lo == hi {
		return med
	}
	return fmt.Sprintf("%s (%s – %s)", med, fmt.Sprintf(format, lo), fmt.Sprintf(format, hi))
}

// pick collects one figure of the throughput (or latency) entry named by
// format and codec across runs.
func pickThroughput(runs []dlvRun, format, codec string, get func(dlvThroughput) float64) []float64 {
	var out []float64
	for _, r := range runs {
		for _, t := range r.Throughput {
			if t.Format == format && t.Codec == codec {
				out = append(out, get(t))
			}
		}
	}
	return out
}

func pickLatency(runs []dlvRun, format string, get func(dlvLatency) float64) []float64 {
	var out []float64
	for _, r := range runs {
		for _, l := range r.Latency {
			if l.Format == format {
				out = append(out, get(l))
			}
		}
	}
	return out
}

func renderDelivery(b *strings.Builder, d *dlvReport) {
	fmt.Fprintf(b, "# Ferry benchmark: delivery service\n\n")
	fmt.Fprintf(b, "- Date: %s\n", d.Date)
	b.WriteString(d.Machine.line())
	fmt.Fprintf(b, "- Throughput: N = %d generated rows per measurement, %d rows per change batch, sent over `Deliver` to the delivery binary; "+
		"the baseline is a plain librdkafka producer loop with delivery's own producer configuration sending the same messages pre-encoded by delivery's encoders; %d run(s)\n",
		d.Rows, d.BatchRows, len(d.Runs))
	fmt.Fprintf(b, "- Ack latency: %d rows/s in %d batches a second, %s, measured for %g s after %g s of warm-up; "+
		"per batch, from when it was due to the DeliverResponse whose safe LSN covers it\n",
		d.LatencyRate, pacedBatchesPerSecond, latencyCodec, d.LatencyFor, d.LatencyWarmup)
	fmt.Fprintf(b, "- Figures are medians over runs with (min – max); goals are checked on the median. See bench/README.md.\n\n")
	if d.Error != "" {
		fmt.Fprintf(b, "**The delivery scenario failed:** %s\n\n", d.Error)
	}
	renderThroughput(b, d)
	renderLatency(b, d)
	rss := figure{name: "delivery: peak RSS, MB", atMost: goalRSSMB, format: "%.0f",
		values: collectDlv(d.Runs, func(r dlvRun) float64 { return r.PeakRSSMB })}
	b.WriteString("| Figure | Median | Min – max | Goal | Status |\n|---|---|---|---|---|\n" + rss.row() + "\n")
}

func collectDlv(runs []dlvRun, get func(dlvRun) float64) []float64 {
	out := make([]float64, 0, len(runs))
	for _, r := range runs {
		out = append(out, get(r))
	}
	return out
}

func renderThroughput(b *strings.Builder, d *dlvReport) {
	b.WriteString("| Format | Codec | Message, bytes | Delivery, msgs/s | Delivery, MB/s | Baseline, msgs/s | Baseline, MB/s | Delivery / baseline | Goal | Status | Delivery CPU s per M msgs |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, f := range dlvFormats {
		name := formatName(f)
		for _, c := range d.Codecs {
			get := func(fn func(dlvThroughput) float64) []float64 { return pickThroughput(d.Runs, name, c, fn) }
			share := figure{unit: "%", atLeast: 100 * goalDeliveryShare, format: "%.0f",
				values: get(func(t dlvThroughput) float64 { return 100 * t.Share })}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, c,
				cell(get(func(t dlvThroughput) float64 { return t.AvgMessageBytes }), "%.0f"),
				cell(get(func(t dlvThroughput) float64 { return t.Delivery.MessagesPerSecond }), "%.0f"),
				cell(get(func(t dlvThroughput) float64 { return t.Delivery.MBPerSecond }), "%.1f"),
				cell(get(func(t dlvThroughput) float64 { return t.Baseline.MessagesPerSecond }), "%.0f"),
				cell(get(func(t dlvThroughput) float64 { return t.Baseline.MBPerSecond }), "%.1f"),
				cell(share.values, "%.0f%%"), share.goal(), share.status(),
				cell(get(func(t dlvThroughput) float64 { return t.CPUSecondsPerMillion }), "%.2f"))
		}
	}
	b.WriteString("\n")
}

func renderLatency(b *strings.Builder, d *dlvReport) {
	b.WriteString("| Format | Codec | Rows/s held | Goal | Status | p50 ack latency, ms | p99 ack latency, ms | Max, ms | Worst send lag, ms |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, f := range dlvFormats {
		name := formatName(f)
		get := func(fn func(dlvLatency) float64) []float64 { return pickLatency(d.Runs, name, fn) }
		held := figure{atLeast: goalPacedShare * float64(d.LatencyRate), format: "%.0f",
			values: get(func(l dlvLatency) float64 { return l.RowsPerSecond })}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, latencyCodec,
			cell(held.values, "%.0f"), held.goal(), held.status(),
			cell(get(func(l dlvLatency) float64 { return l.P50Ms }), "%.1f"),
			cell(get(func(l dlvLatency) float64 { return l.P99Ms }), "%.1f"),
			cell(get(func(l dlvLatency) float64 { return l.MaxMs }), "%.1f"),
			cell(get(func(l dlvLatency) float64 { return l.MaxSendLagMs }), "%.1f"))
	}
	b.WriteString("\n")
}
