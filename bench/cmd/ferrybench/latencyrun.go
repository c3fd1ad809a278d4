package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"
)

// latencyRun is one run of the latency scenario.
type latencyRun struct {
	Run      int             `json:"run"`
	Ferry    latencyFigures  `json:"ferry"`
	Debezium *latencyFigures `json:"debezium,omitempty"`
	// Ferry's latency over Debezium's (lower is better).
	P50OverDebezium float64 `json:"ferry_over_debezium_p50,omitempty"`
	P99OverDebezium float64 `json:"ferry_over_debezium_p99,omitempty"`
}

// latencyReport is the latency scenario's part of latest.json.
type latencyReport struct {
	Date     string       `json:"date"`
	Machine  machine      `json:"machine"`
	Rate     int          `json:"rows_per_second"`
	Warmup   string       `json:"warmup"`
	Measured string       `json:"measured"`
	Debezium string       `json:"debezium_version,omitempty"`
	Runs     []latencyRun `json:"runs"`
	Error    string       `json:"error,omitempty"`
}

// goalP99ms is the latency goal at the target rate.
const goalP99ms = 50

func newLatencyReport(c *config) *latencyReport {
	r := &latencyReport{Date: time.Now().UTC().Format(time.RFC3339), Machine: describeMachine(), Rate: c.latencyRate,
		Warmup: c.latencyWarmup.String(), Measured: c.latencyFor.String()}
	if c.debezium {
		r.Debezium = debeziumVersion
	}
	return r
}

// runLatency runs the latency scenario e.c.runs times.
func runLatency(ctx context.Context, e *benchEnv, rep *latencyReport) error {
	for i := 1; i <= e.c.runs; i++ {
		r := latencyRun{Run: i}
		fr, err := e.measureFerryLatency(ctx, i)
		if err != nil {
			return fmt.Errorf("latency run %d, Ferry: %w", i, err)
		}
		r.Ferry = fr
		log.Printf("latency run %d: Ferry p50 %.1f ms, p99 %.1f ms, max %.1f ms at %.0f rows/s", i, fr.P50ms, fr.P99ms, fr.MaxMs, fr.RateHeld)
		if e.dbzLibs != "" {
			dr, err := e.measureDebeziumLatency(ctx, i)
			if err != nil {
				return fmt.Errorf("latency run %d, Debezium: %w", i, err)
			}
			r.Debezium = &dr
			r.P50OverDebezium, r.P99OverDebezium = fr.P50ms/dr.P50ms, fr.P99ms/dr.P99ms
			log.Printf("latency run %d: Debezium p50 %.1f ms, p99 %.1f ms, max %.1f ms at %.0f rows/s", i, dr.P50ms, dr.P99ms, dr.MaxMs, dr.RateHeld)
		}
		rep.Runs = append(rep.Runs, r)
	}
	return nil
}

// measureFerryLatency runs a task on the latency table (streaming, not
// paused), writes the paced rows and reads every row's latency back.
func (e *benchEnv) measureFerryLatency(ctx context.Context, run int) (res latencyFigures, err error) {
	taskID := fmt.Sprintf("bench-latency-%d-%d", os.Getpid(), run)
	topic := fmt.Sprintf("ferrybench_latency_%d_%d", os.Getpid(), run)
	if err := recreateLatencyTable(ctx, e.owner); err != nil {
		return res, err
	}
	logDir, err := os.MkdirTemp("", "ferrybench-logs-")
	if err != nil {
		return res, fmt.Errorf("creating the log folder: %w", err)
	}
	// Created here, so that the broker stamps append times; Ferry takes
	// an existing topic as it is.
	if err := createAppendTimeTopic(ctx, e.admin, topic); err != nil {
		return res, err
	}
	f, err := startFerry(ctx, e.c, e.binDir, logDir, "ferrybench-"+taskID)
	if err != nil {
		_ = deleteTopics(context.WithoutCancel(ctx), e.admin, topic)
		return res, fmt.Errorf("%w (logs in %s)", err, logDir)
	}
	defer e.cleanupFerry(ctx, f, ferryLeftovers{
		taskID: taskID, topic: topic, slot: ferrySlot(taskID), logDir: logDir,
		unfinished: e.slotLeft(ferrySlot(taskID)), failed: errSet(&err),
		dropTable: func(ctx context.Context) error { return dropNamedTable(ctx, e.owner, latencyTable) },
	})
	if err = f.createTaskOn(ctx, e.c, taskID, topic, latencyTable); err != nil {
		return res, err
	}
	if err = f.waitSlot(ctx, e.super, taskID, true); err != nil {
		return res, err
	}
	if err = e.primeFerry(ctx, topic, latencyInsertSQL); err != nil {
		return res, err
	}
	if res, err = e.pacedToTopic(ctx, topic, ferrySlot(taskID), canalStamp); err != nil {
		return res, fmt.Errorf("%w (logs in %s)", err, logDir)
	}
	return res, f.stopAndRelease(ctx, e.super, taskID)
}

// pacedToTopic writes the paced rows while a consumer streams the table to
// topic, waits for all of them there, and reads their latencies.
func (e *benchEnv) pacedToTopic(ctx context.Context, topic, slot string, stamp rowStamp) (latencyFigures, error) {
	base, err := topicEnd(e.admin, topic)
	if err != nil {
		return latencyFigures{}, err
	}
	dsn, err := e.c.ferryDSN()
	if err != nil {
		return latencyFigures{}, err
	}
	p, err := writePaced(ctx, dsn, e.c.latencyRate, e.c.latencyWarmup, e.c.latencyFor)
	if err != nil {
		return latencyFigures{}, err
	}
	if _, _, err := e.watchSampledDrain(ctx, topic, slot, base, p.rows, func(uint64) bool { return true }, time.Now(), e.c.ferryTimeout); err != nil {
		return latencyFigures{}, err
	}
	end, err := topicEnd(e.admin, topic)
	if err != nil {
		return latencyFigures{}, err
	}
	return readLatencies(ctx, e.c.kafkaBootstrap, topic, base, end, p, stamp)
}

// measureDebeziumLatency is measureFerryLatency for Debezium: a fresh
// worker, warm-up rows through it (the JIT compiled), then the paced rows.
func (e *benchEnv) measureDebeziumLatency(ctx context.Context, run int) (res latencyFigures, err error) {
	prefix := fmt.Sprintf("ferrybench_latdbz_%d_%d", os.Getpid(), run)
	topic := prefix + ".public." + latencyTable
	heartbeats := "__debezium-heartbeat." + prefix
	target := dbzTarget{table: latencyTable, slot: latencyDbzSlot, pub: latencyDbzPub}
	dir, err := os.MkdirTemp("", "ferrybench-debezium-")
	if err != nil {
		return res, fmt.Errorf("creating the Kafka Connect folder: %w", err)
	}
	if err := recreateLatencyTable(ctx, e.owner); err != nil {
		return res, err
	}
	if err := createAppendTimeTopic(ctx, e.admin, topic); err != nil {
		return res, err
	}
	k, err := e.startDebeziumOn(ctx, target, dir, prefix, heartbeats)
	defer e.cleanupDebezium(ctx, k, e.targetLeftovers(target, dir, topic, heartbeats), &err)
	if err != nil {
		return res, err
	}
	if err = k.waitSlot(ctx, e.super, latencyDbzSlot, true, dbzStartTimeout); err != nil {
		return res, err
	}
	// No more warm-up than the paced rows themselves (a short smoke run).
	warm := min(dbzWarmupRows, int(float64(e.c.latencyRate)*(e.c.latencyWarmup+e.c.latencyFor).Seconds()))
	for lo := 1; lo <= warm; lo += 1000 {
		if _, err = e.owner.Exec(ctx, latencyInsertSQL, mixedWarmBase+lo, mixedWarmBase+min(lo+999, warm)); err != nil {
			return res, fmt.Errorf("writing Debezium's warm-up rows: %w", err)
		}
	}
	if _, _, err = e.watchSampledDrain(ctx, topic, latencyDbzSlot, 0, warm, func(uint64) bool { return true }, time.Now(), dbzStartTimeout); err != nil {
		return res, fmt.Errorf("warming Debezium up: %w; %s", err, k.status(ctx))
	}
	return e.pacedToTopic(ctx, topic, latencyDbzSlot, debeziumStamp)
}

func latencyFiguresOf(runs []latencyRun) []figure {
	get := func(f func(latencyRun) float64) []float64 {
		out := make([]float64, 0, len(runs))
		for _, r := range runs {
			out = append(out, f(r))
		}
		return out
	}
	fs := []figure{
		{name: "Ferry, rows/s held", values: get(func(r latencyRun) float64 { return r.Ferry.RateHeld }), format: "%.0f"},
		{name: "Ferry, latency p50, ms", values: get(func(r latencyRun) float64 { return r.Ferry.P50ms }), format: "%.1f"},
		{name: "Ferry, latency p99, ms", values: get(func(r latencyRun) float64 { return r.Ferry.P99ms }), atMost: goalP99ms, format: "%.1f"},
		{name: "Ferry, latency max, ms", values: get(func(r latencyRun) float64 { return r.Ferry.MaxMs }), format: "%.1f"},
	}
	for _, r := range runs {
		if r.Debezium == nil {
			return fs
		}
	}
	if len(runs) == 0 {
		return fs
	}
	return append(fs,
		figure{name: "Debezium, rows/s held", values: get(func(r latencyRun) float64 { return r.Debezium.RateHeld }), format: "%.0f"},
		figure{name: "Debezium, latency p50, ms", values: get(func(r latencyRun) float64 { return r.Debezium.P50ms }), format: "%.1f"},
		figure{name: "Debezium, latency p99, ms", values: get(func(r latencyRun) float64 { return r.Debezium.P99ms }), format: "%.1f"},
		figure{name: "Debezium, latency max, ms", values: get(func(r latencyRun) float64 { return r.Debezium.MaxMs }), format: "%.1f"},
		figure{name: "Ferry / Debezium, latency p50 (lower is better)", unit: "x", values: get(func(r latencyRun) float64 { return r.P50OverDebezium }), format: "%.2f"},
		figure{name: "Ferry / Debezium, latency p99 (lower is better)", unit: "x", values: get(func(r latencyRun) float64 { return r.P99OverDebezium }), format: "%.2f"},
	)
}

func renderE2ELatency(b *strings.Builder, rep *latencyReport) {
	fmt.Fprintf(b, "# Ferry benchmark: latency at a fixed rate\n\n")
	fmt.Fprintf(b, "- Date: %s\n", rep.Date)
	b.WriteString(rep.Machine.line())
	fmt.Fprintf(b, "- Inserts into `bench_latency` at %d rows/s (100 transactions a second over %d connections), %s of warm-up not counted, then %s measured; %d run(s)\n",
		rep.Rate, latencyWriters, rep.Warmup, rep.Measured, len(rep.Runs))
	b.WriteString("- Latency: the broker's LogAppendTime of a row's message minus the writer's clock_timestamp() in the row, taken just before its transaction commits (so an upper bound on commit → Kafka; Kafka's timestamps are milliseconds). See bench/README.md.\n")
	if rep.Debezium != "" {
		fmt.Fprintf(b, "- Debezium baseline: debezium-connector-postgres %s, set up as in the backlog scenario, up to %d warm-up rows before the paced ones\n\n", rep.Debezium, dbzWarmupRows)
	} else {
		b.WriteString("- Debezium baseline: **skipped** (-debezium=false)\n\n")
	}
	if rep.Error != "" {
		fmt.Fprintf(b, "**The latency scenario failed:** %s\n\n", rep.Error)
	}
	renderFigures(b, latencyFiguresOf(rep.Runs))
	b.WriteString("\n| Run | Ferry rows measured | Ferry messages | Debezium rows measured | Debezium messages |\n|---|---|---|---|---|\n")
	for _, r := range rep.Runs {
		fmt.Fprintf(b, "| %d | %d | %d |", r.Run, r.Ferry.Rows, r.Ferry.MessagesN)
		if d := r.Debezium; d != nil {
			fmt.Fprintf(b, " %d | %d |\n", d.Rows, d.MessagesN)
		} else {
			b.WriteString(" – | – |\n")
		}
	}
}
