package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// The Debezium snapshot's own slot and publication.
const (
	fsDbzSlot = "bench_fs_dbz_slot"
	fsDbzPub  = "bench_fs_dbz_pub"
)

// fsDbzResult is Debezium's initial snapshot of the part's tables, or of a
// capped share of them (-fullsync-debezium-max-rows).
type fsDbzResult struct {
	Rows         int        `json:"rows"` // snapshotted; fewer than the part's when capped
	Tables       int        `json:"tables"`
	Capped       bool       `json:"capped"`
	StartSeconds float64    `json:"start_seconds"` // JVM start to the REST API answering; not timed
	Seconds      float64    `json:"to_kafka_seconds"`
	RowsPerSec   float64    `json:"rows_per_second_to_kafka"`
	MBPerSec     float64    `json:"mb_per_second_to_kafka"`
	Topic        topicAudit `json:"topic"`
	Process      procUsage  `json:"process"`
}

// fsDbzScope is what Debezium snapshots under the cap: all of a part, or
// the first rows of its one table, or its first tables whole (so that the
// per-table cost keeps its share of the work).
func fsDbzScope(p fsPart, maxRows int) (tables []string, rows int, capped bool) {
	if maxRows <= 0 || p.total() <= maxRows {
		return p.tables, p.rows, false
	}
	if len(p.tables) == 1 {
		return p.tables, maxRows, true
	}
	return p.tables[:max(1, maxRows/p.rows)], p.rows, true
}

// measureDebeziumSnapshot starts a Kafka Connect worker with no connector,
// waits for its REST API, then creates the connector with
// snapshot.mode=initial: the clock runs from that POST to the topics
// holding every row. The JVM's start is outside the clock, as Ferry's
// processes' is; its JIT warms up inside it, as a user's snapshot's does.
func measureDebeziumSnapshot(ctx context.Context, e *benchEnv, p fsPart, key string, run int) (res fsDbzResult, err error) {
	tables, rows, capped := fsDbzScope(p, e.c.fsDbzMaxRows)
	res.Rows, res.Tables, res.Capped = len(tables)*rows, len(tables), capped
	prefix := fmt.Sprintf("ferrybench_fsdbz_%d_%s_%d", os.Getpid(), key, run)
	topics := make([]string, len(tables))
	for i, t := range tables {
		topics[i] = prefix + ".public." + t
	}
	dir, err := os.MkdirTemp("", "ferrybench-debezium-")
	if err != nil {
		return res, fmt.Errorf("creating the Kafka Connect folder: %w", err)
	}
	k, err := e.startSnapshotWorker(ctx, dir, tables, topics)
	defer e.cleanupDebezium(ctx, k, dbzLeftovers{slot: fsDbzSlot, pub: fsDbzPub, dir: dir, topics: topics}, &err)
	if err != nil {
		return res, err
	}
	started := time.Now()
	if err = k.waitREST(ctx); err != nil {
		return res, err
	}
	res.StartSeconds = time.Since(started).Seconds()
	before, err := readProc(k.cmd.Process.Pid)
	if err != nil {
		return res, fmt.Errorf("sampling Kafka Connect: %w", err)
	}
	t0 := time.Now()
	if err = k.create(ctx, e.fsDbzConnector(prefix, tables, rows, capped)); err != nil {
		return res, err
	}
	err = poll(ctx, e.c.ferryTimeout, 100*time.Millisecond, "Debezium's snapshot in "+prefix+".*", func() (bool, string, error) {
		n, err := topicsEnd(e.admin, topics)
		return n >= int64(res.Rows), fmt.Sprintf("%d of %d rows in Kafka; %s", n, res.Rows, k.status(ctx)), err
	})
	if err != nil {
		return res, err
	}
	res.Seconds = time.Since(t0).Seconds()
	after, err := readProc(k.cmd.Process.Pid)
	if err != nil {
		return res, fmt.Errorf("sampling Kafka Connect: %w", err)
	}
	cpu := after.CPUSeconds - before.CPUSeconds
	res.Process = procUsage{CPUSeconds: cpu, CPUSecondsPerMillion: cpu * 1e6 / float64(res.Rows), PeakRSSMB: after.PeakRSSMB}
	end, err := topicsEnd(e.admin, topics)
	if err != nil {
		return res, err
	}
	if res.Topic, _, err = auditFullSync(ctx, e.c.kafkaBootstrap, topics, end, tables, rows, debeziumRow); err != nil {
		return res, err
	}
	if res.Topic.Missing > 0 {
		err = fmt.Errorf("%d of %d rows never reached Debezium's topics", res.Topic.Missing, res.Rows)
		return res, err
	}
	res.RowsPerSec = float64(res.Rows) / res.Seconds
	res.MBPerSec = float64(res.Topic.Bytes) / 1e6 / res.Seconds
	return res, nil
}

// startSnapshotWorker creates the publication and the topics the connector
// needs (the stack's broker does not create topics) and starts a worker
// with the backlog scenario's settings (connectWorkerConf) and no connector
// yet.
func (e *benchEnv) startSnapshotWorker(ctx context.Context, dir string, tables, topics []string) (*connectWorker, error) {
	if err := e.prepareDebezium(ctx, fsDbzSlot, fsDbzPub, tables, topics); err != nil {
		return nil, err
	}
	k, err := startConnect(e.dbzLibs, dir, connectWorkerConf(e.c, dir), nil)
	if k != nil {
		k.connector = dbzConnector
	}
	return k, err
}

// fsDbzConnector is the connector's configuration: the backlog scenario's,
// with snapshot.mode=initial and, when capped, a select that stops at the
// cap for a single table.
func (e *benchEnv) fsDbzConnector(prefix string, tables []string, rows int, capped bool) map[string]string {
	pw, _ := os.ReadFile(e.c.pgPasswordFile)
	conf := map[string]string{
		"connector.class":   "io.debezium.connector.postgresql.PostgresConnector",
		"tasks.max":         "1",
		"database.hostname": e.c.pgHost, "database.port": strconv.Itoa(e.c.pgPort),
		"database.user": "ferry", "database.password": strings.TrimRight(string(pw), "\r\n"),
		"database.dbname":             e.c.pgDatabase,
		"topic.prefix":                prefix,
		"plugin.name":                 "pgoutput",
		"slot.name":                   fsDbzSlot,
		"publication.name":            fsDbzPub,
		"publication.autocreate.mode": "disabled",
		"table.include.list":          strings.ReplaceAll(qualified(tables), " ", ""),
		"snapshot.mode":               "initial",
		"message.prefix.exclude.list": ".*",
	}
	if capped && len(tables) == 1 {
		t := "public." + tables[0]
		conf["snapshot.select.statement.overrides"] = t
		conf["snapshot.select.statement.overrides."+t] = fmt.Sprintf("SELECT * FROM %s WHERE id <= %d", t, rows)
	}
	return conf
}

// waitREST waits until the worker's REST API answers, failing early when
// the JVM exits.
func (k *connectWorker) waitREST(ctx context.Context) error {
	return poll(ctx, dbzStartTimeout, 100*time.Millisecond, "Kafka Connect's REST API", func() (bool, string, error) {
		select {
		case <-k.exited:
			return false, "", fmt.Errorf("kafka Connect exited; its log ends: %s", k.logTail())
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.rest+"/connectors", nil)
		if err != nil {
			return false, "", fmt.Errorf("building the REST request: %w", err)
		}
		// Refused connections are expected until the worker listens.
		res, doErr := k.http.Do(req)
		if doErr != nil {
			return false, doErr.Error(), nil //nolint:nilerr // not serving yet: keep waiting
		}
		_ = res.Body.Close()
		return res.StatusCode == http.StatusOK, res.Status, nil
	})
}

// create sends POST /connectors with the connector's configuration.
func (k *connectWorker) create(ctx context.Context, conf map[string]string) error {
	body, err := json.Marshal(map[string]any{"name": k.connector, "config": conf})
	if err != nil {
		return fmt.Errorf("encoding the connector: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.rest+"/connectors", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building the create request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := k.http.Do(req)
	if err != nil {
		return fmt.Errorf("creating connector %s: %w", k.connector, err)
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 2000))
		return fmt.Errorf("creating connector %s: HTTP %s: %s", k.connector, res.Status, msg)
	}
	return nil
}
