package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pgx/v5"
)

// runResult holds one run's raw figures; the report takes medians over runs.
type runResult struct {
	Run    int          `json:"run"`
	Source sourceResult `json:"source"`
	Ferry  ferryResult  `json:"ferry"`
	Kafka  kafkaResult  `json:"kafka"`
	// Debezium is nil when the baseline was skipped (-debezium=false).
	Debezium *debeziumResult `json:"debezium,omitempty"`
	// Ferry, Kafka and the ratios are for the first format and codec of the
	// scenario's list (Canal JSON and lz4 by default); Others holds the
	// rest, each timed as the first one is.
	Combo  string        `json:"combo,omitempty"`
	Others []comboResult `json:"other_combos,omitempty"`
	// Shares are Ferry's rows/s over min(source, Kafka) of the same run.
	ShareToKafka     float64 `json:"share_to_kafka"`
	ShareToConfirmed float64 `json:"share_to_confirmed"`
	// Ferry's rows/s over Debezium's in the same run.
	OverDebeziumToKafka     float64 `json:"ferry_over_debezium_to_kafka,omitempty"`
	OverDebeziumToConfirmed float64 `json:"ferry_over_debezium_confirmed,omitempty"`
}

type ferryResult struct {
	WriteSeconds          float64              `json:"write_seconds"`
	ToKafkaSeconds        float64              `json:"to_kafka_seconds"`
	ToConfirmedSeconds    float64              `json:"to_confirmed_seconds"`
	ToStreamingSeconds    float64              `json:"to_streaming_seconds"` // resume to the slot active
	RowsPerSecToKafka     float64              `json:"rows_per_second_to_kafka"`
	RowsPerSecToConfirmed float64              `json:"rows_per_second_to_confirmed"`
	MBPerSecToKafka       float64              `json:"mb_per_second_to_kafka"`
	Topic                 topicAudit           `json:"topic"`
	Processes             map[string]procUsage `json:"processes"`
}

// procUsage is one Ferry process over the catch-up window.
type procUsage struct {
	CPUSeconds           float64 `json:"cpu_seconds"`
	CPUSecondsPerMillion float64 `json:"cpu_seconds_per_million_rows"`
	PeakRSSMB            float64 `json:"peak_rss_mb"` // VmHWM: since the process started
}

// env is what every run shares: connections, clients and the binaries.
type benchEnv struct {
	c       *config
	binDir  string
	dbzLibs string    // Kafka Connect's and Debezium's jars; empty when skipped
	super   *pgx.Conn // superuser: baseline slot and cleanup
	owner   *pgx.Conn // the "ferry" role: owns the table, writes the backlog
	admin   *kafka.AdminClient
}

// runOnce measures in a fixed order: the source limit; for each format and
// codec Ferry, then the Kafka limit, which replays messages taken from
// Ferry's topic; and Debezium (when dbz), whose one format is compared with
// every one of Ferry's.
func runOnce(ctx context.Context, e *benchEnv, w workload, combos []combo, dbz bool, run int) (runResult, error) {
	r := runResult{Run: run, Combo: combos[0].String()}
	log.Printf("%s run %d: source limit (pg_recvlogical)", w.table, run)
	src, err := measureSource(ctx, e.c, e.super, e.owner, w)
	if err != nil {
		return r, fmt.Errorf("run %d, source limit: %w", run, err)
	}
	r.Source = src
	log.Printf("%s run %d: source %.0f changes/s", w.table, run, src.ChangesPerSecond)
	for i, k := range combos {
		cr, err := measureCombo(ctx, e, w, k, run, src)
		if err != nil {
			return r, err
		}
		if i == 0 {
			r.Ferry, r.Kafka, r.ShareToKafka, r.ShareToConfirmed = cr.Ferry, cr.Kafka, cr.ShareToKafka, cr.ShareToConfirmed
		} else {
			r.Others = append(r.Others, cr)
		}
	}
	if e.dbzLibs == "" || !dbz {
		return r, nil
	}
	log.Printf("%s run %d: Debezium %s (Kafka Connect %s standalone)", w.table, run, debeziumVersion, connectVersion)
	dr, err := measureDebezium(ctx, e, w, run)
	if err != nil {
		return r, fmt.Errorf("run %d, Debezium: %w", run, err)
	}
	r.Debezium = &dr
	r.OverDebeziumToKafka = r.Ferry.RowsPerSecToKafka / dr.RowsPerSecToKafka
	r.OverDebeziumToConfirmed = r.Ferry.RowsPerSecToConfirmed / dr.RowsPerSecToConfirmed
	for i := range r.Others {
		o := &r.Others[i]
		o.OverDebeziumToKafka = o.Ferry.RowsPerSecToKafka / dr.RowsPerSecToKafka
		o.OverDebeziumToConfirmed = o.Ferry.RowsPerSecToConfirmed / dr.RowsPerSecToConfirmed
	}
	log.Printf("%s run %d: Debezium %.0f rows/s to Kafka, %.0f rows/s confirmed; Ferry (%s) at %.2fx (to Kafka) and %.2fx (confirmed) Debezium",
		w.table, run, dr.RowsPerSecToKafka, dr.RowsPerSecToConfirmed, r.Combo, r.OverDebeziumToKafka, r.OverDebeziumToConfirmed)
	return r, nil
}

func measureKafkaRun(ctx context.Context, e *benchEnv, w workload, k combo, run int, audit topicAudit) (kafkaResult, error) {
	topic := fmt.Sprintf("ferrybench_kafka_%s_%s_%s_%d_%d", w.table, k.format, k.codec, os.Getpid(), run)
	if err := createTopic(ctx, e.admin, topic); err != nil {
		return kafkaResult{}, err
	}
	defer func() {
		if err := deleteTopics(context.WithoutCancel(ctx), e.admin, topic); err != nil {
			log.Printf("cleanup: %v", err)
		}
	}()
	return measureKafka(ctx, e.c.kafkaBootstrap, topic, k.codec, w.rows, audit.sampleKeys, audit.sampleVals)
}

// measureFerry starts a fresh set of Ferry processes (so that peak RSS is
// this run's), lets a paused task accumulate the backlog, resumes it and
// times the catch-up.
func measureFerry(ctx context.Context, e *benchEnv, w workload, k combo, run int) (ferryResult, topicAudit, error) {
	var res ferryResult
	name := strings.TrimPrefix(w.table, "bench_")
	taskID := fmt.Sprintf("bench-%s-%s-%s-%d-%d", name, k.format, k.codec, os.Getpid(), run)
	topic := fmt.Sprintf("ferrybench_%s_%s_%s_%d_%d", name, k.format, k.codec, os.Getpid(), run)
	slot := ferrySlot(taskID)
	if err := recreateTable(ctx, e.owner, w.table); err != nil {
		return res, topicAudit{}, err
	}
	logDir, err := os.MkdirTemp("", "ferrybench-logs-")
	if err != nil {
		return res, topicAudit{}, fmt.Errorf("creating the log folder: %w", err)
	}
	f, err := startFerry(ctx, e.c, e.binDir, logDir, "ferrybench-"+taskID)
	if err != nil {
		return res, topicAudit{}, fmt.Errorf("%w (logs in %s)", err, logDir)
	}
	defer e.cleanupFerry(ctx, f, ferryLeftovers{
		taskID: taskID, topic: topic, slot: slot, logDir: logDir,
		unfinished: e.slotLeft(slot),
		dropTable:  func(ctx context.Context) error { return dropTable(ctx, e.owner, w.table) },
	})
	if err := f.createTask(ctx, e.c, taskID, topic, w.table, k.kafkaOptions()); err != nil {
		return res, topicAudit{}, err
	}
	if err := f.waitSlot(ctx, e.super, taskID, true); err != nil {
		return res, topicAudit{}, err
	}
	if err := f.pause(ctx, e.super, taskID); err != nil {
		return res, topicAudit{}, err
	}
	b, err := writeBacklog(ctx, e.owner, w)
	if err != nil {
		return res, topicAudit{}, err
	}
	res.WriteSeconds = b.took.Seconds()
	before, err := f.sample()
	if err != nil {
		return res, topicAudit{}, err
	}
	t0 := time.Now()
	if err := f.resume(ctx, taskID); err != nil {
		return res, topicAudit{}, err
	}
	d, err := watchDrain(ctx, e.super, e.admin, topic, slot, w.rows, func(lsn uint64) bool { return lsn >= b.end }, t0, e.c.ferryTimeout)
	if err != nil {
		return res, topicAudit{}, fmt.Errorf("%w (logs in %s)", err, logDir)
	}
	after, err := f.sample()
	if err != nil {
		return res, topicAudit{}, err
	}
	res.Processes = usage(before, after, w.rows)
	end, err := topicEnd(e.admin, topic)
	if err != nil {
		return res, topicAudit{}, err
	}
	audit, err := auditTopic(ctx, e.c.kafkaBootstrap, topic, w.rows, 0, end, k.ids())
	if err != nil {
		return res, audit, err
	}
	res.Topic = audit
	res.ToKafkaSeconds, res.ToConfirmedSeconds = d.toKafka.Seconds(), d.toConfirmed.Seconds()
	res.ToStreamingSeconds = d.toStreaming.Seconds()
	res.RowsPerSecToKafka = float64(w.rows) / res.ToKafkaSeconds
	res.RowsPerSecToConfirmed = float64(w.rows) / res.ToConfirmedSeconds
	res.MBPerSecToKafka = float64(audit.Bytes) / 1e6 / res.ToKafkaSeconds
	if err := f.stopAndRelease(ctx, e.super, taskID); err != nil {
		return res, audit, err
	}
	return res, audit, nil
}

// usage turns two samples into CPU over the catch-up window; startup and
// task setup are left out, peak RSS is not (VmHWM cannot be reset).
func usage(before, after map[string]procSample, rows int) map[string]procUsage {
	out := map[string]procUsage{}
	for name, a := range after {
		cpu := a.CPUSeconds - before[name].CPUSeconds
		out[name] = procUsage{CPUSeconds: cpu, CPUSecondsPerMillion: cpu * 1e6 / float64(rows), PeakRSSMB: a.PeakRSSMB}
	}
	return out
}

// ferryLeftovers is what one Ferry measurement may leave behind, and how
// to tell whether it ended early.
type ferryLeftovers struct {
	taskID, topic, slot, logDir string
	// unfinished tells whether the measurement ended before its own stop
	// and release, so that the task still holds its slot.
	unfinished func(ctx context.Context) bool
	// failed tells whether to keep the logs; nil keeps them exactly when
	// the measurement was unfinished.
	failed func() bool
	// dropTable drops the scenario's table; nil when the tables outlive the
	// measurement.
	dropTable func(ctx context.Context) error
}

// cleanupFerry leaves nothing behind whatever happened: a task stopped with
// release, no processes, no topic, no slot or publication, and no table
// unless the tables outlive the measurement.
func (e *benchEnv) cleanupFerry(ctx context.Context, f *ferry, l ferryLeftovers) {
	ctx = context.WithoutCancel(ctx)
	unfinished := l.unfinished(ctx)
	if unfinished {
		// The measurement failed before its own stop: release now.
		if err := f.stopAndRelease(ctx, e.super, l.taskID); err != nil {
			log.Printf("cleanup: %v", err)
		}
	}
	f.stop()
	if err := dropSlotAndPublication(ctx, e.super, l.slot, l.slot); err != nil {
		log.Printf("cleanup: %v", err)
	}
	if l.dropTable != nil {
		if err := l.dropTable(ctx); err != nil {
			log.Printf("cleanup: %v", err)
		}
	}
	if err := deleteTopics(ctx, e.admin, l.topic); err != nil {
		log.Printf("cleanup: %v", err)
	}
	failed := unfinished
	if l.failed != nil {
		failed = l.failed()
	}
	if failed {
		// Kept for whoever reads the error.
		log.Printf("Ferry's logs are in %s", l.logDir)
		return
	}
	_ = os.RemoveAll(l.logDir)
}

// slotLeft tells whether a slot still exists: a measurement releases its
// task's slot when it stops it, so one left means it ended early.
func (e *benchEnv) slotLeft(slot string) func(ctx context.Context) bool {
	return func(ctx context.Context) bool {
		s, err := readSlot(ctx, e.super, slot)
		return err == nil && s.exists
	}
}

// errSet reports whether *err holds an error when called, for a deferred
// clean-up that has to see the measurement's last error.
func errSet(err *error) func() bool {
	return func() bool { return *err != nil }
}
