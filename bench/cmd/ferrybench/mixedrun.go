package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"
)

// mixedRun is one run of the mixed scenario.
type mixedRun struct {
	Run      int          `json:"run"`
	Source   sourceResult `json:"source"`
	Ferry    mixedSide    `json:"ferry"`
	Kafka    kafkaResult  `json:"kafka"`
	Debezium *mixedSide   `json:"debezium,omitempty"`
	// Ferry's changes/s over min(source, Kafka), and over Debezium's.
	ShareToKafka            float64 `json:"share_to_kafka"`
	ShareToConfirmed        float64 `json:"share_to_confirmed"`
	OverDebeziumToKafka     float64 `json:"ferry_over_debezium_to_kafka,omitempty"`
	OverDebeziumToConfirmed float64 `json:"ferry_over_debezium_confirmed,omitempty"`
}

// mixedSide is Ferry's or Debezium's catch-up on the mixed backlog.
type mixedSide struct {
	WriteSeconds       float64 `json:"write_seconds"`
	ToStreamingSeconds float64 `json:"to_streaming_seconds"`
	ToKafkaSeconds     float64 `json:"to_kafka_seconds"`
	ToConfirmedSeconds float64 `json:"to_confirmed_seconds"`
	PerSecToKafka      float64 `json:"changes_per_second_to_kafka"`
	PerSecConfirmed    float64 `json:"changes_per_second_confirmed"`
	// PerSecSteady is the rate between 10% and 90% of the changes in Kafka.
	PerSecSteady    float64              `json:"changes_per_second_steady"`
	MBPerSecToKafka float64              `json:"mb_per_second_to_kafka"`
	Messages        map[string]int       `json:"messages_by_kind"`
	Topic           topicAudit           `json:"topic"`
	Processes       map[string]procUsage `json:"processes"`
}

// finish fills the rates from the timings and the audit.
func (s *mixedSide) finish(n int, d drainTimes, samples []drainSample, a topicAudit, kinds kindCounter) {
	s.ToStreamingSeconds, s.ToKafkaSeconds, s.ToConfirmedSeconds = d.toStreaming.Seconds(), d.toKafka.Seconds(), d.toConfirmed.Seconds()
	s.PerSecToKafka = float64(n) / s.ToKafkaSeconds
	s.PerSecConfirmed = float64(n) / s.ToConfirmedSeconds
	s.PerSecSteady = steadyRate(samples, n)
	s.MBPerSecToKafka = float64(a.Bytes) / 1e6 / s.ToKafkaSeconds
	s.Topic, s.Messages = a, kinds
}

// runMixed runs the mixed scenario e.c.runs times, stopping at the first
// failure: a figure for an incomplete delivery means nothing.
func runMixed(ctx context.Context, e *benchEnv, rep *mixedReport) error {
	w := newMixWorkload(e.c.mixedN, e.c.mixedPrefill, e.c.mixedTxnRows)
	rep.Counts = w.counts
	log.Printf("mixed: %d changes (%v) in %d-change transactions on %d pre-filled rows", len(w.ops), w.counts, w.txnRows, w.prefill)
	for i := 1; i <= e.c.runs; i++ {
		r, err := runMixedOnce(ctx, e, w, i)
		if err != nil {
			return fmt.Errorf("mixed run %d: %w", i, err)
		}
		rep.Runs = append(rep.Runs, r)
	}
	return nil
}

func runMixedOnce(ctx context.Context, e *benchEnv, w *mixWorkload, run int) (mixedRun, error) {
	r := mixedRun{Run: run}
	n := len(w.ops)
	src, err := e.measureMixedSource(ctx, w)
	if err != nil {
		return r, fmt.Errorf("source limit: %w", err)
	}
	r.Source = src
	log.Printf("mixed run %d: source %.0f changes/s; Ferry", run, src.ChangesPerSecond)
	fr, err := e.measureMixedFerry(ctx, w, run)
	if err != nil {
		return r, fmt.Errorf("ferry: %w", err)
	}
	r.Ferry = fr
	topic := fmt.Sprintf("ferrybench_mixed_kafka_%d_%d", os.Getpid(), run)
	if err := createTopic(ctx, e.admin, topic); err != nil {
		return r, err
	}
	r.Kafka, err = measureKafka(ctx, e.c.kafkaBootstrap, topic, "lz4", n, fr.Topic.sampleKeys, fr.Topic.sampleVals)
	if derr := deleteTopics(context.WithoutCancel(ctx), e.admin, topic); derr != nil {
		log.Printf("cleanup: %v", derr)
	}
	if err != nil {
		return r, fmt.Errorf("kafka limit: %w", err)
	}
	limit := min(r.Source.ChangesPerSecond, r.Kafka.MessagesPerSecond)
	r.ShareToKafka, r.ShareToConfirmed = fr.PerSecToKafka/limit, fr.PerSecConfirmed/limit
	log.Printf("mixed run %d: Ferry %.0f changes/s to Kafka (%.0f steady), %.0f confirmed; Kafka %.0f msgs/s; Ferry at %.0f%% (confirmed) of the lower limit",
		run, fr.PerSecToKafka, fr.PerSecSteady, fr.PerSecConfirmed, r.Kafka.MessagesPerSecond, 100*r.ShareToConfirmed)
	if e.dbzLibs == "" {
		return r, nil
	}
	dr, err := e.measureMixedDebezium(ctx, w, run)
	if err != nil {
		return r, fmt.Errorf("debezium: %w", err)
	}
	r.Debezium = &dr
	r.OverDebeziumToKafka, r.OverDebeziumToConfirmed = fr.PerSecToKafka/dr.PerSecToKafka, fr.PerSecConfirmed/dr.PerSecConfirmed
	log.Printf("mixed run %d: Debezium %.0f changes/s to Kafka, %.0f confirmed; Ferry at %.2fx (confirmed)", run, dr.PerSecToKafka, dr.PerSecConfirmed, r.OverDebeziumToConfirmed)
	return r, nil
}

// measureMixedSource is the source limit for the mixed backlog, as
// measureSource is for the backlog scenario's.
func (e *benchEnv) measureMixedSource(ctx context.Context, w *mixWorkload) (sourceResult, error) {
	var res sourceResult
	if err := recreateMixedTable(ctx, e.owner, w.prefill); err != nil {
		return res, err
	}
	defer func() { _ = dropNamedTable(context.WithoutCancel(ctx), e.owner, mixedTable) }()
	if err := dropSlotAndPublication(ctx, e.super, mixedSrcSlot, mixedSrcPub); err != nil {
		return res, err
	}
	defer func() { _ = dropSlotAndPublication(context.WithoutCancel(ctx), e.super, mixedSrcSlot, mixedSrcPub) }()
	if _, err := e.super.Exec(ctx, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE public.%s", mixedSrcPub, mixedTable)); err != nil {
		return res, fmt.Errorf("creating publication %s: %w", mixedSrcPub, err)
	}
	if _, err := e.super.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, mixedSrcSlot); err != nil {
		return res, fmt.Errorf("creating slot %s: %w", mixedSrcSlot, err)
	}
	b, err := e.writeMix(ctx, w)
	if err != nil {
		return res, err
	}
	res.WriteSeconds = b.took.Seconds()
	took, err := drainSlot(ctx, e.c, mixedSrcSlot, mixedSrcPub, b.end)
	if err != nil {
		return res, err
	}
	res.Seconds = took.Seconds()
	res.ChangesPerSecond = float64(len(w.ops)) / res.Seconds
	return res, nil
}

func (e *benchEnv) writeMix(ctx context.Context, w *mixWorkload) (backlog, error) {
	dsn, err := e.c.ferryDSN()
	if err != nil {
		return backlog{}, err
	}
	return w.write(ctx, dsn)
}

// measureMixedFerry times Ferry's catch-up on the mixed backlog as
// measureFerry does on the inserts-only one. With -cpuprofile the last
// run's capture and delivery write CPU profiles (whole process lives: the
// catch-up is nearly all of their work).
func (e *benchEnv) measureMixedFerry(ctx context.Context, w *mixWorkload, run int) (res mixedSide, err error) {
	taskID := fmt.Sprintf("bench-mixed-%d-%d", os.Getpid(), run)
	topic := fmt.Sprintf("ferrybench_mixed_%d_%d", os.Getpid(), run)
	slot := ferrySlot(taskID)
	if err := recreateMixedTable(ctx, e.owner, w.prefill); err != nil {
		return res, err
	}
	logDir, err := os.MkdirTemp("", "ferrybench-logs-")
	if err != nil {
		return res, fmt.Errorf("creating the log folder: %w", err)
	}
	var procEnv map[string][]string
	if e.c.cpuProfileDir != "" && run == e.c.runs {
		procEnv = map[string][]string{}
		for _, s := range []string{"capture", "delivery"} {
			procEnv[s] = []string{"FERRY_CPU_PROFILE=" + filepath.Join(e.c.cpuProfileDir, s+".pprof")}
		}
	}
	f, err := startFerryWith(ctx, e.c, e.binDir, logDir, "ferrybench-"+taskID, procEnv)
	if err != nil {
		return res, fmt.Errorf("%w (logs in %s)", err, logDir)
	}
	defer e.cleanupFerry(ctx, f, ferryLeftovers{
		taskID: taskID, topic: topic, slot: ferrySlot(taskID), logDir: logDir,
		unfinished: e.slotLeft(ferrySlot(taskID)), failed: errSet(&err),
		dropTable: func(ctx context.Context) error { return dropNamedTable(ctx, e.owner, mixedTable) },
	})
	if err = f.createTaskOn(ctx, e.c, taskID, topic, mixedTable); err != nil {
		return res, err
	}
	if err = f.waitSlot(ctx, e.super, taskID, true); err != nil {
		return res, err
	}
	if err = e.primeFerry(ctx, topic, mixedPrefillSQL); err != nil {
		return res, err
	}
	if err = f.pause(ctx, e.super, taskID); err != nil {
		return res, err
	}
	return e.timeMixedFerry(ctx, f, w, taskID, topic, slot, logDir)
}

// timeMixedFerry writes the backlog while the task is paused, resumes it
// and times the catch-up.
func (e *benchEnv) timeMixedFerry(ctx context.Context, f *ferry, w *mixWorkload, taskID, topic, slot, logDir string) (mixedSide, error) {
	var res mixedSide
	n := len(w.ops)
	b, err := e.writeMix(ctx, w)
	if err != nil {
		return res, err
	}
	res.WriteSeconds = b.took.Seconds()
	base, err := topicEnd(e.admin, topic)
	if err != nil {
		return res, err
	}
	before, err := f.sample()
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	if err := f.resume(ctx, taskID); err != nil {
		return res, err
	}
	d, samples, err := e.watchSampledDrain(ctx, topic, slot, base, n, func(lsn uint64) bool { return lsn >= b.end }, t0, e.c.ferryTimeout)
	if err != nil {
		return res, fmt.Errorf("%w (logs in %s)", err, logDir)
	}
	after, err := f.sample()
	if err != nil {
		return res, err
	}
	res.Processes = usage(before, after, n)
	audit, kinds, err := e.auditMixed(ctx, topic, base, w.counts, kindCounter.canal)
	if err != nil {
		return res, err
	}
	res.finish(n, d, samples, audit, kinds)
	return res, f.stopAndRelease(ctx, e.super, taskID)
}
