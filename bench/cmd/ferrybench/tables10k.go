package main

import (
	"context"
	"fmt"
	"log"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/proto"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// t10kResult is one run of the many-tables scenario: how long each phase of
// a task over that many tables takes, what it costs the processes, and how
// big the task's Temporal workflow grew.
type t10kResult struct {
	Run int `json:"run"`
	// Phase times, each from CreateTask: the workflow left precheck, left
	// schema sync (setup: resolve, topics, publication, slot), reached
	// incremental with the slot streaming.
	PrecheckSeconds    float64 `json:"precheck_seconds"`
	SchemaSyncSeconds  float64 `json:"schema_sync_seconds"`
	FullSyncSeconds    float64 `json:"full_sync_seconds"`
	ToIncrementalSecs  float64 `json:"to_incremental_seconds"`
	FullSyncRows       uint64  `json:"full_sync_rows"`
	FullSyncTablesDone int     `json:"full_sync_tables_done"`
	TopicMessages      int64   `json:"topic_messages"`
	// GetTask's slowest answer while the task ran: the control API queries
	// the workflow's whole state.
	MaxGetTaskSeconds float64 `json:"max_get_task_seconds"`
	// The workflow's history when the task reached incremental.
	HistoryEvents     int64  `json:"history_events"`
	HistoryBytes      int64  `json:"history_bytes"`
	LargestEventBytes int    `json:"largest_event_bytes"`
	LargestEventType  string `json:"largest_event_type"`
	// The task's state at incremental in the workflow's encoding: a
	// continue-as-new carries it as one payload.
	StateBytes int `json:"state_bytes"`
	// CPU from CreateTask to incremental; peak RSS since each process began.
	Processes map[string]procUsage `json:"processes"`
}

// t10kSetup is what every run of the scenario shares.
type t10kSetup struct {
	taskUser, passwordFile string
}

// runTables10kScenario creates the tables once, runs the task t10kRuns times
// and drops the tables, whatever happened.
func runTables10kScenario(ctx context.Context, e *benchEnv, rep *t10kReport) error {
	log.Printf("tables10k: creating %d tables of %d rows in schema %s", e.c.t10kTables, e.c.t10kRows, t10kSchema)
	took, err := createT10kTables(ctx, e.super, e.owner, e.c.t10kTables, e.c.t10kRows)
	defer func() {
		if err := dropT10kTables(context.WithoutCancel(ctx), e.super); err != nil {
			log.Printf("cleanup: %v", err)
		}
	}()
	if err != nil {
		return err
	}
	rep.CreateSeconds = took.Seconds()
	log.Printf("tables10k: created in %.1f s", rep.CreateSeconds)
	s, cleanup, err := t10kPrepare(e.c)
	if err != nil {
		return err
	}
	defer cleanup()
	for i := 1; i <= e.c.t10kRuns; i++ {
		r, err := measureT10k(ctx, e, s, i)
		if err != nil {
			return fmt.Errorf("tables10k run %d: %w", i, err)
		}
		rep.Runs = append(rep.Runs, r)
	}
	return nil
}

// t10kPrepare picks the task's role. A whole schema is published FOR TABLES
// IN SCHEMA, which PostgreSQL lets only a superuser do, so that selection
// runs as the superuser of FERRY_PG_DSN, whose password goes to Ferry as a
// file reference like the "ferry" role's.
func t10kPrepare(c *config) (t10kSetup, func(), error) {
	if c.t10kSelect == "tables" {
		return t10kSetup{taskUser: "ferry", passwordFile: c.pgPasswordFile}, func() {}, nil
	}
	u, err := url.Parse(c.pgSuperDSN)
	if err != nil {
		return t10kSetup{}, nil, fmt.Errorf("parsing FERRY_PG_DSN: %w", err)
	}
	pw, _ := u.User.Password()
	dir, err := os.MkdirTemp("", "ferrybench-t10k-")
	if err != nil {
		return t10kSetup{}, nil, fmt.Errorf("creating a folder for the superuser's password: %w", err)
	}
	file := filepath.Join(dir, "pg-password")
	if err := os.WriteFile(file, []byte(pw), 0o600); err != nil {
		return t10kSetup{}, nil, fmt.Errorf("writing the superuser's password file: %w", err)
	}
	return t10kSetup{taskUser: u.User.Username(), passwordFile: file}, func() { _ = os.RemoveAll(dir) }, nil
}

// t10kSpec selects the scenario's tables, all into one topic: one topic per
// table would be 10,000 topics, a benchmark of the broker instead. Full sync
// is on, so the phases include reading every table.
func t10kSpec(c *config, s t10kSetup, topic string) *taskv1.TaskSpec {
	objects := &taskv1.ObjectSelection{}
	if c.t10kSelect == "tables" {
		for i := 1; i <= c.t10kTables; i++ {
			objects.Tables = append(objects.Tables, &taskv1.TableSelection{Schema: t10kSchema, Table: t10kTableName(i)})
		}
	} else {
		objects.Schemas = []*taskv1.SchemaSelection{{Schema: t10kSchema}}
	}
	return &taskv1.TaskSpec{
		Name: "ferrybench tables10k",
		Source: &taskv1.SourceEndpoint{
			Host: c.pgHost, Port: uint32(c.pgPort), Database: c.pgDatabase, User: s.taskUser,
			Password: &taskv1.SecretRef{Source: &taskv1.SecretRef_File{File: s.passwordFile}},
		},
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: c.kafkaBootstrap, Topic: topic},
		Objects:     objects,
		SyncTypes:   &taskv1.SyncTypes{Schema: true, Full: true},
		Kafka:       &taskv1.KafkaOptions{ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE},
		Advanced:    &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2},
		// The tables have text columns without REPLICA IDENTITY FULL: a
		// warning, which does not block the task.
		AcknowledgedWarnings: []string{"toast"},
	}
}

// measureT10k runs one task over the tables on fresh Ferry processes and
// times its phases from CreateTask.
func measureT10k(ctx context.Context, e *benchEnv, s t10kSetup, run int) (t10kResult, error) {
	r := t10kResult{Run: run}
	taskID := fmt.Sprintf("bench-t10k-%d-%d", os.Getpid(), run)
	topic := fmt.Sprintf("ferrybench_t10k_%d_%d", os.Getpid(), run)
	slot := ferrySlot(taskID)
	logDir, err := os.MkdirTemp("", "ferrybench-logs-")
	if err != nil {
		return r, fmt.Errorf("creating the log folder: %w", err)
	}
	f, err := startFerry(ctx, e.c, e.binDir, logDir, "ferrybench-"+taskID)
	if err != nil {
		return r, fmt.Errorf("%w (logs in %s)", err, logDir)
	}
	defer e.cleanupFerry(ctx, f, ferryLeftovers{
		taskID: taskID, topic: topic, slot: slot, logDir: logDir,
		// The tables go with the scenario.
		unfinished: func(ctx context.Context) bool {
			return f.state(ctx, taskID).GetPhase() != taskv1.Phase_PHASE_STOPPED
		},
	})
	before, err := f.sample()
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	if _, err := f.control.CreateTask(ctx, &taskv1.CreateTaskRequest{TaskId: taskID, Spec: t10kSpec(e.c, s, topic)}); err != nil {
		return r, fmt.Errorf("CreateTask %s: %w", taskID, err)
	}
	st, err := f.watchPhases(ctx, e, taskID, slot, t0, &r)
	if err != nil {
		return r, fmt.Errorf("%w (logs in %s)", err, logDir)
	}
	after, err := f.sample()
	if err != nil {
		return r, err
	}
	r.Processes = usage(before, after, 1_000_000) // CPU s per million = CPU s
	// As the workflow continues as new: the state, which holds the spec,
	// in the workflow's own encoding.
	if p, err := taskapi.DataConverter().ToPayload(&taskv1.TaskWorkflowInput{TaskId: taskID, State: st}); err == nil {
		r.StateBytes = len(p.GetData())
	}
	for _, t := range st.GetFullSyncRows() {
		r.FullSyncRows += t.GetRows()
		if t.GetDone() {
			r.FullSyncTablesDone++
		}
	}
	if r.TopicMessages, err = topicEnd(e.admin, topic); err != nil {
		return r, err
	}
	if err := workflowHistory(ctx, e.c, taskID, &r); err != nil {
		return r, err
	}
	log.Printf("tables10k run %d: precheck %.1f s, schema sync %.1f s, full sync %.1f s, incremental after %.1f s; history %d events, %d bytes",
		run, r.PrecheckSeconds, r.SchemaSyncSeconds, r.FullSyncSeconds, r.ToIncrementalSecs, r.HistoryEvents, r.HistoryBytes)
	if want := uint64(e.c.t10kTables * e.c.t10kRows); r.FullSyncRows != want || r.FullSyncTablesDone != e.c.t10kTables {
		return r, fmt.Errorf("full sync counted %d rows in %d finished tables; want %d rows in %d tables", r.FullSyncRows, r.FullSyncTablesDone, want, e.c.t10kTables)
	}
	return r, f.stopAndRelease(ctx, e.super, taskID)
}

// watchPhases polls the task's state until it streams incrementally and
// records when each phase ended. GetTask queries the workflow's whole
// state and decodes the running activity's heartbeat, both of which grow
// with the tables (a megabyte each at 10,000): polled every 200 ms through
// a full sync of 10,000 tables it took about 50 CPU seconds of the control
// API and as many of the worker. So once full sync runs, which takes
// minutes, it is polled once a second.
func (f *ferry) watchPhases(ctx context.Context, e *benchEnv, taskID, slot string, t0 time.Time, r *t10kResult) (*taskv1.TaskState, error) {
	var st *taskv1.TaskState
	var fullStart time.Duration
	var next time.Time // no GetTask before this
	err := poll(ctx, e.c.ferryTimeout, 100*time.Millisecond, "task "+taskID+" to reach incremental sync", func() (bool, string, error) {
		if time.Now().Before(next) {
			return false, describe(st), nil
		}
		q := time.Now()
		st = f.state(ctx, taskID)
		r.MaxGetTaskSeconds = max(r.MaxGetTaskSeconds, time.Since(q).Seconds())
		since := time.Since(t0)
		if st.GetStatus() == taskv1.Status_STATUS_FAILED {
			return false, "", fmt.Errorf("task failed: %s", describe(st))
		}
		p := st.GetPhase()
		if r.PrecheckSeconds == 0 && p > taskv1.Phase_PHASE_PRECHECK {
			r.PrecheckSeconds = since.Seconds()
		}
		if fullStart == 0 && p >= taskv1.Phase_PHASE_FULL_SYNC {
			fullStart = since
			r.SchemaSyncSeconds = (since - time.Duration(r.PrecheckSeconds*float64(time.Second))).Seconds()
		}
		if p == taskv1.Phase_PHASE_FULL_SYNC {
			next = time.Now().Add(time.Second)
		}
		if p != taskv1.Phase_PHASE_INCREMENTAL {
			return false, describe(st), nil
		}
		s, err := readSlot(ctx, e.super, slot)
		if err != nil {
			return false, "", err
		}
		if !s.active {
			return false, "slot inactive; " + describe(st), nil
		}
		r.ToIncrementalSecs = since.Seconds()
		r.FullSyncSeconds = (since - fullStart).Seconds()
		return true, "", nil
	})
	return st, err
}

// workflowHistory reads the size of the task's workflow history and its
// largest event: Temporal refuses a payload over 2 MB (and warns from
// 512 KB), and every activity input, result and heartbeat is one.
func workflowHistory(ctx context.Context, c *config, taskID string, r *t10kResult) error {
	tc, err := client.Dial(client.Options{HostPort: c.temporalAddress, Logger: quietLogger{}})
	if err != nil {
		return fmt.Errorf("connecting to Temporal at %s: %w", c.temporalAddress, err)
	}
	defer tc.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	desc, err := tc.DescribeWorkflowExecution(ctx, taskID, "")
	if err != nil {
		return fmt.Errorf("describing workflow %s: %w", taskID, err)
	}
	r.HistoryEvents = desc.GetWorkflowExecutionInfo().GetHistoryLength()
	r.HistoryBytes = desc.GetWorkflowExecutionInfo().GetHistorySizeBytes()
	it := tc.GetWorkflowHistory(ctx, taskID, "", false, 0)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return fmt.Errorf("reading the history of workflow %s: %w", taskID, err)
		}
		if n := proto.Size(ev); n > r.LargestEventBytes {
			r.LargestEventBytes, r.LargestEventType = n, ev.GetEventType().String()
		}
	}
	return nil
}

// quietLogger keeps the Temporal client's connection chatter out of the
// benchmark's output.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(msg string, kv ...any) {
	log.Printf("temporal client: %s %v", msg, kv)
}
