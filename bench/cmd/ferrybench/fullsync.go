package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"
)

// fsReport is the full sync scenario's part of latest.json.
type fsReport struct {
	Date    string  `json:"date"`
	Machine machine `json:"machine"`
	Runs    int     `json:"runs"`
	// DebeziumMaxRows caps Debezium's snapshot; zero: no cap.
	DebeziumMaxRows int    `json:"debezium_max_rows"`
	DebeziumVersion string `json:"debezium_version,omitempty"` // empty: skipped
	// SetupSeconds is generating and vacuuming every table, once.
	SetupSeconds float64         `json:"setup_seconds"`
	Parts        []*fsPartReport `json:"parts"`
	Error        string          `json:"error,omitempty"`
}

// fsPartReport is one shape (1 × N rows, M × K rows) over every run.
type fsPartReport struct {
	Name         string        `json:"name"`
	Tables       int           `json:"tables"`
	RowsPerTable int           `json:"rows_per_table"`
	Rows         int           `json:"rows"`
	Runs         []fsRunResult `json:"runs"`
}

// fsRunResult is one run of one shape; ratios are of the same run's figures.
type fsRunResult struct {
	Run      int             `json:"run"`
	Copy     fsCopyResult    `json:"copy"`
	Capture  fsCaptureResult `json:"capture_alone"`
	Ferry    fsFerryResult   `json:"ferry"`
	Kafka    kafkaResult     `json:"kafka"`
	Debezium *fsDbzResult    `json:"debezium,omitempty"`
	// Ferry's rows/s over min(COPY, Kafka).
	ShareToKafka float64 `json:"share_to_kafka"`
	ShareToDone  float64 `json:"share_to_done"`
	// Ferry's rows/s over Debezium's (Debezium's over its own row count).
	OverDebeziumToKafka float64 `json:"ferry_over_debezium_to_kafka,omitempty"`
	OverDebeziumToDone  float64 `json:"ferry_over_debezium_to_done,omitempty"`
}

func newFsReport(c *config) *fsReport {
	r := &fsReport{Date: time.Now().UTC().Format(time.RFC3339), Machine: describeMachine(), Runs: c.fsRuns, DebeziumMaxRows: c.fsDbzMaxRows}
	if c.debezium {
		r.DebeziumVersion = debeziumVersion
	}
	return r
}

// runFullSyncScenario creates the tables once, measures every shape
// c.fsRuns times and drops the tables, whatever happened.
func runFullSyncScenario(ctx context.Context, e *benchEnv, rep *fsReport) error {
	parts := fsParts(e.c)
	defer func() {
		if err := dropFullSyncTables(context.WithoutCancel(ctx), e.owner, parts); err != nil {
			log.Printf("cleanup: %v", err)
		}
	}()
	log.Printf("fullsync: generating %d rows in %d tables", totalRows(parts), totalTables(parts))
	start := time.Now()
	dsn, err := e.c.ferryDSN()
	if err != nil {
		return err
	}
	if err := createFullSyncTables(ctx, e.owner, dsn, parts); err != nil {
		return err
	}
	rep.SetupSeconds = time.Since(start).Seconds()
	for i, p := range parts {
		pr := &fsPartReport{Name: p.name, Tables: len(p.tables), RowsPerTable: p.rows, Rows: p.total()}
		rep.Parts = append(rep.Parts, pr)
		for run := 1; run <= e.c.fsRuns; run++ {
			r, err := fsRunOnce(ctx, e, p, fmt.Sprintf("p%d", i+1), run)
			if err != nil {
				return fmt.Errorf("fullsync %s, run %d: %w", p.name, run, err)
			}
			pr.Runs = append(pr.Runs, r)
		}
	}
	return nil
}

func totalRows(parts []fsPart) (n int) {
	for _, p := range parts {
		n += p.total()
	}
	return n
}

func totalTables(parts []fsPart) (n int) {
	for _, p := range parts {
		n += len(p.tables)
	}
	return n
}

// fsRunOnce measures in a fixed order: COPY, capture alone, Ferry, the
// Kafka limit (which replays Ferry's messages) and Debezium.
func fsRunOnce(ctx context.Context, e *benchEnv, p fsPart, key string, run int) (fsRunResult, error) {
	r := fsRunResult{Run: run}
	var err error
	log.Printf("fullsync %s, run %d: source limit (psql COPY)", p.name, run)
	if r.Copy, err = measureCopy(ctx, e.c, p); err != nil {
		return r, fmt.Errorf("source limit: %w", err)
	}
	log.Printf("fullsync %s, run %d: COPY %.0f rows/s; capture alone (ReadSnapshot)", p.name, run, r.Copy.RowsPerSec)
	if r.Capture, err = measureCaptureAlone(ctx, e, p); err != nil {
		return r, fmt.Errorf("capture alone: %w", err)
	}
	r.Capture.OverCopy = r.Capture.RowsPerSec / r.Copy.RowsPerSec
	log.Printf("fullsync %s, run %d: capture %.0f rows/s (%.0f%% of COPY); Ferry", p.name, run, r.Capture.RowsPerSec, 100*r.Capture.OverCopy)
	if r.Ferry, err = measureFerryFull(ctx, e, p, key, run); err != nil {
		return r, fmt.Errorf("ferry: %w", err)
	}
	log.Printf("fullsync %s, run %d: Ferry %.0f rows/s to Kafka, %.0f rows/s to full sync done (chunked %v); Kafka limit",
		p.name, run, r.Ferry.RowsPerSecToKafka, r.Ferry.RowsPerSecToDone, r.Ferry.Chunked)
	if r.Kafka, err = e.fsKafka(ctx, p, key, run, r.Ferry.Topic); err != nil {
		return r, fmt.Errorf("kafka limit: %w", err)
	}
	limit := min(r.Copy.RowsPerSec, r.Kafka.MessagesPerSecond)
	r.ShareToKafka, r.ShareToDone = r.Ferry.RowsPerSecToKafka/limit, r.Ferry.RowsPerSecToDone/limit
	log.Printf("fullsync %s, run %d: Kafka %.0f msgs/s; Ferry at %.0f%% (to Kafka) and %.0f%% (done) of the lower limit",
		p.name, run, r.Kafka.MessagesPerSecond, 100*r.ShareToKafka, 100*r.ShareToDone)
	if e.dbzLibs == "" {
		return r, nil
	}
	d, err := measureDebeziumSnapshot(ctx, e, p, key, run)
	if err != nil {
		return r, fmt.Errorf("debezium: %w", err)
	}
	r.Debezium = &d
	r.OverDebeziumToKafka, r.OverDebeziumToDone = r.Ferry.RowsPerSecToKafka/d.RowsPerSec, r.Ferry.RowsPerSecToDone/d.RowsPerSec
	log.Printf("fullsync %s, run %d: Debezium %.0f rows/s over %d rows; Ferry at %.2fx (to Kafka) and %.2fx (done)",
		p.name, run, d.RowsPerSec, d.Rows, r.OverDebeziumToKafka, r.OverDebeziumToDone)
	return r, nil
}

// fsKafka is the Kafka limit for as many of Ferry's messages as the part
// has rows, replayed from the sample its audit kept.
func (e *benchEnv) fsKafka(ctx context.Context, p fsPart, key string, run int, audit topicAudit) (kafkaResult, error) {
	topic := fmt.Sprintf("ferrybench_fskafka_%d_%s_%d", os.Getpid(), key, run)
	if err := createTopic(ctx, e.admin, topic); err != nil {
		return kafkaResult{}, err
	}
	defer func() {
		if err := deleteTopics(context.WithoutCancel(ctx), e.admin, topic); err != nil {
			log.Printf("cleanup: %v", err)
		}
	}()
	return measureKafka(ctx, e.c.kafkaBootstrap, topic, "lz4", p.total(), audit.sampleKeys, audit.sampleVals)
}
