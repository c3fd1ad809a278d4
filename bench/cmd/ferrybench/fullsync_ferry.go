package main

import (
	"context"
	"fmt"
	"os"
	"time"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// fsFerryResult is one Ferry full sync, timed from StartTask.
type fsFerryResult struct {
	ToKafkaSeconds    float64              `json:"to_kafka_seconds"` // the topic holds every row
	ToDoneSeconds     float64              `json:"to_done_seconds"`  // the task reports full sync done
	RowsPerSecToKafka float64              `json:"rows_per_second_to_kafka"`
	RowsPerSecToDone  float64              `json:"rows_per_second_to_done"`
	MBPerSecToKafka   float64              `json:"mb_per_second_to_kafka"`
	DDLMessages       int                  `json:"ddl_messages"`      // schema sync's CREATE records, in the same topic
	Chunked           bool                 `json:"full_sync_chunked"` // state.full_sync_chunked: DBLog chunks, not one exported snapshot
	Topic             topicAudit           `json:"topic"`
	Processes         map[string]procUsage `json:"processes"`
}

// measureFerryFull runs a task with schema and full sync (incremental is
// always on) over the part's tables into one topic, as a user moving tables
// into Kafka with Ferry's defaults (every table to the task's topic, Canal
// JSON, lz4) does. The task is created paused and the clock starts at
// StartTask, so Ferry's processes and the task's creation are outside it.
func measureFerryFull(ctx context.Context, e *benchEnv, p fsPart, key string, run int) (fsFerryResult, error) {
	var res fsFerryResult
	taskID := fmt.Sprintf("benchfs-%d-%s-%d", os.Getpid(), key, run)
	topic := fmt.Sprintf("ferrybench_full_%d_%s_%d", os.Getpid(), key, run)
	logDir, err := os.MkdirTemp("", "ferrybench-logs-")
	if err != nil {
		return res, fmt.Errorf("creating the log folder: %w", err)
	}
	f, err := startFerry(ctx, e.c, e.binDir, logDir, "ferrybench-"+taskID)
	if err != nil {
		return res, fmt.Errorf("%w (logs in %s)", err, logDir)
	}
	failed := true
	defer e.cleanupFerry(ctx, f, ferryLeftovers{
		taskID: taskID, topic: topic, slot: ferrySlot(taskID), logDir: logDir,
		unfinished: e.slotLeft(ferrySlot(taskID)), failed: func() bool { return failed },
	})
	if err := f.createFullTask(ctx, e.c, taskID, topic, p.tables); err != nil {
		return res, err
	}
	before, err := f.sample()
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	if _, err := f.control.StartTask(ctx, &taskv1.StartTaskRequest{TaskId: taskID}); err != nil {
		return res, fmt.Errorf("StartTask %s: %w", taskID, err)
	}
	// Schema sync writes one CREATE record per table to the topic first.
	if err := f.watchFullSync(ctx, e, &res, taskID, topic, p.total()+len(p.tables), t0); err != nil {
		return res, fmt.Errorf("%w (logs in %s)", err, logDir)
	}
	after, err := f.sample()
	if err != nil {
		return res, err
	}
	res.Processes = usage(before, after, p.total())
	end, err := topicEnd(e.admin, topic)
	if err != nil {
		return res, err
	}
	if res.Topic, res.DDLMessages, err = auditFullSync(ctx, e.c.kafkaBootstrap, []string{topic}, end, p.tables, p.rows, canalRow); err != nil {
		return res, err
	}
	if res.Topic.Missing > 0 {
		return res, fmt.Errorf("%d of %d rows never reached %s", res.Topic.Missing, p.total(), topic)
	}
	if res.DDLMessages != len(p.tables) {
		// The "to Kafka" end counts on one CREATE record per table.
		return res, fmt.Errorf("%s holds %d DDL records for %d tables: the to-Kafka time is wrong; fix its threshold in measureFerryFull", topic, res.DDLMessages, len(p.tables))
	}
	res.RowsPerSecToKafka = float64(p.total()) / res.ToKafkaSeconds
	res.RowsPerSecToDone = float64(p.total()) / res.ToDoneSeconds
	res.MBPerSecToKafka = float64(res.Topic.Bytes) / 1e6 / res.ToKafkaSeconds
	if err := f.stopAndRelease(ctx, e.super, taskID); err != nil {
		return res, err
	}
	failed = false
	return res, nil
}

func (f *ferry) createFullTask(ctx context.Context, c *config, taskID, topic string, tables []string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sel := make([]*taskv1.TableSelection, len(tables))
	for i, t := range tables {
		sel[i] = &taskv1.TableSelection{Schema: "public", Table: t}
	}
	_, err := f.control.CreateTask(ctx, &taskv1.CreateTaskRequest{TaskId: taskID, CreatePaused: true, Spec: &taskv1.TaskSpec{
		Name: "ferrybench full sync",
		Source: &taskv1.SourceEndpoint{
			Host: c.pgHost, Port: uint32(c.pgPort), Database: c.pgDatabase, User: "ferry",
			Password: &taskv1.SecretRef{Source: &taskv1.SecretRef_File{File: c.pgPasswordFile}},
		},
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: c.kafkaBootstrap, Topic: topic},
		Objects:     &taskv1.ObjectSelection{Tables: sel},
		SyncTypes:   &taskv1.SyncTypes{Schema: true, Full: true},
		Kafka:       &taskv1.KafkaOptions{ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE},
		Advanced:    &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2},
	}})
	if err != nil {
		return fmt.Errorf("CreateTask %s: %w", taskID, err)
	}
	return nil
}

// watchFullSync polls the topic's end offset and the task's state until the
// topic holds n messages and the workflow says full sync is done.
func (f *ferry) watchFullSync(ctx context.Context, e *benchEnv, res *fsFerryResult, taskID, topic string, n int, t0 time.Time) error {
	var toKafka, toDone time.Duration
	return poll(ctx, e.c.ferryTimeout, 100*time.Millisecond, "full sync of task "+taskID, func() (bool, string, error) {
		if toKafka == 0 {
			end, err := topicEnd(e.admin, topic)
			if err != nil {
				return false, "", err
			}
			if end >= int64(n) {
				toKafka = time.Since(t0)
				res.ToKafkaSeconds = toKafka.Seconds()
			}
		}
		st := f.state(ctx, taskID)
		if toDone == 0 && st.GetFullSyncDone() {
			toDone = time.Since(t0)
			res.ToDoneSeconds = toDone.Seconds()
			res.Chunked = st.GetFullSyncChunked()
		}
		return toKafka > 0 && toDone > 0, fmt.Sprintf("in Kafka after %s, done after %s; %s", toKafka, toDone, describe(st)), nil
	})
}
