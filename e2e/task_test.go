package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	enumspb "go.temporal.io/api/enums/v1"
	"google.golang.org/protobuf/proto"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// createTask starts a task on one table and waits until its slot streams.
func (f *ferry) createTask(conn *pgx.Conn, taskID, table, topic string) {
	f.t.Helper()
	f.createTaskWithOptions(conn, taskID, table, topic, nil)
}

// createTaskWithOptions is createTask with the task's Kafka options set; nil
// takes the defaults.
func (f *ferry) createTaskWithOptions(conn *pgx.Conn, taskID, table, topic string, opts *taskv1.KafkaOptions) {
	f.t.Helper()
	// Schema sync creates the topic; some tests create it first, with
	// settings of their own, and have the task write into it.
	opts = proto.Clone(cmp.Or(opts, &taskv1.KafkaOptions{})).(*taskv1.KafkaOptions)
	opts.ConflictMode = taskv1.ConflictMode_CONFLICT_MODE_IGNORE
	// Table definitions go to a topic of their own, so that the data topic
	// holds exactly the rows the tests count.
	opts.DdlTopic = cmp.Or(opts.DdlTopic, topic+"_ddl")
	f.createTaskFromSpec(conn, taskID, &taskv1.TaskSpec{
		Name:        "e2e " + table,
		Source:      sourceEndpoint(),
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: kafkaBootstrap(), Topic: topic},
		Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: table}}},
		Kafka:       opts,
		SyncTypes:   &taskv1.SyncTypes{Schema: true},
		Advanced:    &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2},
	})
}

// createTaskFromSpec creates a task and waits until it streams.
func (f *ferry) createTaskFromSpec(conn *pgx.Conn, taskID string, spec *taskv1.TaskSpec) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := f.control.CreateTask(ctx, &taskv1.CreateTaskRequest{TaskId: taskID, Spec: spec})
	if err != nil {
		f.t.Fatalf("CreateTask %s: %v", taskID, err)
	}
	f.cleanupTask(conn, taskID)
	f.waitStreaming(conn, taskID)
}

// cleanupTask makes sure the task leaves no slot behind, however the test ends.
func (f *ferry) cleanupTask(conn *pgx.Conn, taskID string) {
	f.t.Cleanup(func() {
		f.releaseIfRunning(taskID)
		dropLeftovers(f.t, conn, slotName(taskID))
	})
}

// waitStreaming waits until the task is in incremental sync and its slot is
// being read.
func (f *ferry) waitStreaming(conn *pgx.Conn, taskID string) {
	f.t.Helper()
	slot := slotName(taskID)
	eventually(f.t, 60*time.Second, "task "+taskID+" to stream", func() (bool, string) {
		var active bool
		err := conn.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active)
		st := f.state(taskID)
		return err == nil && active && st.GetPhase() == taskv1.Phase_PHASE_INCREMENTAL,
			"phase " + st.GetPhase().String() + " status " + st.GetStatus().String() + " error " + st.GetLastError()
	})
}

func slotName(taskID string) string {
	return taskapi.ReplicationName(taskID)
}

func (f *ferry) state(taskID string) *taskv1.TaskState {
	res := f.task(taskID)
	if res.GetState() == nil {
		return &taskv1.TaskState{LastError: "GetTask failed"}
	}
	return res.GetState()
}

// task is GetTask's answer, or an empty one when the call fails (the test
// polls again).
func (f *ferry) task(taskID string) *taskv1.GetTaskResponse {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := f.control.GetTask(ctx, &taskv1.GetTaskRequest{TaskId: taskID})
	if err != nil {
		f.t.Logf("GetTask %s: %v", taskID, err)
		return &taskv1.GetTaskResponse{}
	}
	return res
}

// releaseIfRunning stops a task a failed test left behind, so that its slot
// does not pin WAL for the tests that follow.
func (f *ferry) releaseIfRunning(taskID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	desc, err := f.temporal.DescribeWorkflowExecution(ctx, taskID, "")
	if err != nil || desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return
	}
	if _, err := f.control.StopTask(ctx, &taskv1.StopTaskRequest{TaskId: taskID, Release: true}); err != nil {
		f.t.Logf("stopping %s: %v", taskID, err)
		return
	}
	_ = f.temporal.GetWorkflow(ctx, taskID, "").Get(ctx, nil)
}

// dropLeftovers removes the slot and publication of a task that failed: a
// failed task keeps them on purpose, so that it can resume without loss, but
// on the shared test cluster they would pin WAL for every later test.
func dropLeftovers(t *testing.T, conn *pgx.Conn, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active`, name); err != nil {
		t.Logf("dropping slot %s: %v", name, err)
	}
	if _, err := conn.Exec(ctx, `DROP PUBLICATION IF EXISTS `+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Logf("dropping publication %s: %v", name, err)
	}
}

// stopAndRelease stops the task and checks that its slot and publication are
// gone and the workflow completed.
func (f *ferry) stopAndRelease(conn *pgx.Conn, taskID string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := f.control.StopTask(ctx, &taskv1.StopTaskRequest{TaskId: taskID, Release: true}); err != nil {
		f.t.Fatalf("StopTask: %v", err)
	}
	if err := f.temporal.GetWorkflow(ctx, taskID, "").Get(ctx, nil); err != nil {
		f.t.Fatalf("task %s ended with %v, want a clean stop", taskID, err)
	}
	var slots, pubs int
	name := slotName(taskID)
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1),
		(SELECT count(*) FROM pg_publication WHERE pubname = $1)`, name).Scan(&slots, &pubs); err != nil {
		f.t.Fatal(err)
	}
	if slots != 0 || pubs != 0 {
		f.t.Fatalf("after stop with release: %d slots and %d publications named %s remain, want none", slots, pubs, name)
	}
}

func confirmedFlushLSN(t *testing.T, conn *pgx.Conn, slot string) uint64 {
	t.Helper()
	var lsn uint64
	err := conn.QueryRow(context.Background(),
		`SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&lsn)
	if err != nil {
		t.Fatalf("reading confirmed_flush_lsn of %s: %v", slot, err)
	}
	return lsn
}

func currentLSN(t *testing.T, conn *pgx.Conn) uint64 {
	t.Helper()
	var lsn uint64
	if err := conn.QueryRow(context.Background(), `SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return lsn
}

// canalMessage is Canal JSON's FlatMessage; decoding it with unknown fields
// disallowed proves the message carries nothing a strict consumer rejects.
type canalMessage struct {
	ID        int64                `json:"id"`
	Database  string               `json:"database"`
	Table     string               `json:"table"`
	PkNames   []string             `json:"pkNames"`
	IsDdl     bool                 `json:"isDdl"`
	Type      string               `json:"type"`
	Es        int64                `json:"es"`
	Ts        int64                `json:"ts"`
	SQL       string               `json:"sql"`
	SQLType   map[string]int       `json:"sqlType"`
	MysqlType map[string]string    `json:"mysqlType"`
	Data      []map[string]*string `json:"data"`
	Old       []map[string]*string `json:"old"`
}

var canalKeys = []string{"id", "database", "table", "pkNames", "isDdl", "type", "es", "ts", "sql", "sqlType", "mysqlType", "data", "old"}

func decodeCanal(t *testing.T, b []byte) canalMessage {
	t.Helper()
	var m canalMessage
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("strict Canal JSON decode of %s: %v", b, err)
	}
	var ordered []string
	dec = json.NewDecoder(strings.NewReader(string(b)))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		ordered = append(ordered, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Join(ordered, ",") != strings.Join(canalKeys, ",") {
		t.Fatalf("Canal JSON keys %v, want exactly %v in that order", ordered, canalKeys)
	}
	return m
}

func ptr(s string) *string { return &s }

// assertNoSecretInHistory scans every event of the task's history for the
// source password: a spec carries only a reference to it.
func (f *ferry) assertNoSecretInHistory(taskID string) {
	f.t.Helper()
	secret, err := os.ReadFile(sourceEndpoint().GetPassword().GetFile())
	if err != nil {
		f.t.Fatal(err)
	}
	secret = trimNL(secret)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	it := f.temporal.GetWorkflowHistory(ctx, taskID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	events := 0
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			f.t.Fatalf("reading history of %s: %v", taskID, err)
		}
		events++
		raw, err := proto.Marshal(ev)
		if err != nil {
			f.t.Fatal(err)
		}
		if bytes.Contains(raw, secret) {
			f.t.Fatalf("event %d (%s) of task %s contains the source password", ev.GetEventId(), ev.GetEventType(), taskID)
		}
	}
	if events == 0 {
		f.t.Fatalf("task %s has an empty history", taskID)
	}
}
