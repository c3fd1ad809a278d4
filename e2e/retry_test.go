package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pgx/v5"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
	"github.com/ferry-cdc/ferry/services/control"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// The retry-window tests stop a private PostgreSQL or a private Kafka broker
// under a running task. Their windows are counted in one-second "minutes"
// (TaskWorkflowInput.retry_minute_seconds), so that both outcomes, a
// recovery inside the window and a failure past it, take seconds.

const (
	// recoverWindow leaves room for a broker's JVM to restart on a busy
	// machine; failWindow is the smallest connection window a spec allows.
	recoverWindow = 30
	failWindow    = 10
	otherWindow   = 5
)

// retryEnv is one task on a private PostgreSQL, delivering to a private
// broker or, when broker is nil, to the shared one.
type retryEnv struct {
	t         *testing.T
	f         *ferry
	pg        *testenv.Postgres
	broker    *testenv.Broker
	bootstrap string
	table     string
	taskID    string
	rows      *rowCollector
	conn      *pgx.Conn // to the private PostgreSQL; nil after a failure
	hook      *webhook  // receives the task's failure alert
}

// newRetryEnv starts Ferry and a task on a fresh table whose connection
// window is connMinutes one-second minutes, and waits until it streams.
func newRetryEnv(t *testing.T, privateBroker bool, connMinutes uint32) *retryEnv {
	t.Helper()
	e := &retryEnv{t: t, pg: testenv.StartPostgres(t), bootstrap: kafkaBootstrap(), hook: startWebhook(t)}
	if privateBroker {
		e.broker = testenv.StartKafka(t)
		e.bootstrap = e.broker.Bootstrap()
	}
	e.table = uniqueName("e2e_retry")
	e.taskID = strings.ReplaceAll(e.table, "_", "-")
	exec1(t, e.db(), fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, val text NOT NULL)`, e.table))
	e.f = startFerry(t)
	e.startTask(connMinutes)
	e.rows = collectRows(t, e.bootstrap, e.table)
	e.waitStreaming()
	return e
}

// startTask starts the task's workflow as control's CreateTask does, with
// one-second retry minutes, which only the workflow input can set.
func (e *retryEnv) startTask(connMinutes uint32) {
	e.t.Helper()
	e.startSpec(&taskv1.TaskSpec{
		Name:        "e2e " + e.table,
		Source:      e.pg.Source(),
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: e.bootstrap, Topic: e.table},
		Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: e.table}}},
		Kafka:       &taskv1.KafkaOptions{ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE, DdlTopic: e.table + "_ddl"},
		SyncTypes:   &taskv1.SyncTypes{Schema: true},
		Advanced:    &taskv1.AdvancedOptions{ConnectionRetryMinutes: connMinutes, OtherRetryMinutes: otherWindow},
		Alerts:      &taskv1.AlertRules{OnFailure: true, WebhookUrl: e.hook.url},
	})
}

// startSpec starts task e.taskID with spec as control's CreateTask does,
// with one-second retry minutes.
func (e *retryEnv) startSpec(raw *taskv1.TaskSpec) {
	e.t.Helper()
	spec, err := control.Normalize(raw)
	if err != nil {
		e.t.Fatalf("normalizing the spec of %s: %v", e.taskID, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = e.f.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: e.taskID, TaskQueue: e.f.taskQueue, WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			taskapi.SearchTaskName.ValueSet(spec.GetName()),
			taskapi.SearchSourceDatabase.ValueSet(spec.GetSource().GetDatabase()),
			taskapi.SearchPhase.ValueSet(taskv1.Phase_PHASE_PRECHECK.String()),
			taskapi.SearchStatus.ValueSet(taskv1.Status_STATUS_RUNNING.String()),
		),
	}, taskapi.WorkflowName, &taskv1.TaskWorkflowInput{TaskId: e.taskID, Spec: spec, RetryMinuteSeconds: 1})
	if err != nil {
		e.t.Fatalf("starting task %s: %v", e.taskID, err)
	}
	// The private servers go with the test; only the workflow outlives it.
	e.t.Cleanup(func() { e.f.releaseIfRunning(e.taskID) })
}

func (e *retryEnv) waitStreaming() {
	e.t.Helper()
	eventually(e.t, 60*time.Second, "task "+e.taskID+" to stream", func() (bool, string) {
		st := e.f.state(e.taskID)
		return st.GetPhase() == taskv1.Phase_PHASE_INCREMENTAL && st.GetStatus() == taskv1.Status_STATUS_RUNNING && e.slotActive(),
			"phase " + st.GetPhase().String() + " status " + st.GetStatus().String() + " error " + st.GetLastError()
	})
}

// db is a connection to the private PostgreSQL as "ferry", opened again
// after the server restarted.
func (e *retryEnv) db() *pgx.Conn {
	e.t.Helper()
	if e.conn != nil && !e.conn.IsClosed() {
		return e.conn
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pw, err := os.ReadFile(e.pg.Source().GetPassword().GetFile())
	if err != nil {
		e.t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://ferry:%s@127.0.0.1:%d/ferry?sslmode=disable", trimNL(pw), e.pg.Port()))
	if err != nil {
		e.t.Fatalf("connecting to the private PostgreSQL: %v", err)
	}
	e.t.Cleanup(func() { _ = conn.Close(context.Background()) })
	e.conn = conn
	return conn
}

// query runs a one-value query, dropping the connection on failure so that
// the next call reconnects.
func (e *retryEnv) query(dst any, sql string, args ...any) error {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := e.db().QueryRow(ctx, sql, args...).Scan(dst)
	if err != nil && e.conn.IsClosed() {
		e.conn = nil
	}
	return err
}

// stopPG stops the private PostgreSQL, dropping the test's own connection
// with it.
func (e *retryEnv) stopPG() {
	e.t.Helper()
	if e.conn != nil {
		_ = e.conn.Close(context.Background())
		e.conn = nil
	}
	e.pg.Stop()
}

func (e *retryEnv) slotActive() bool {
	var active bool
	err := e.query(&active, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slotName(e.taskID))
	return err == nil && active
}

// insert writes rows [from, to] in one transaction and returns the WAL
// insert position after its rows, before its commit: a slot confirmed at or
// past it has every one of them in Kafka.
func (e *retryEnv) insert(from, to int) uint64 {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tx, err := e.db().Begin(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO public.%s SELECT g, 'row ' || g FROM generate_series($1::bigint, $2::bigint) g`,
		e.table), from, to); err != nil {
		e.t.Fatalf("inserting rows %d to %d: %v", from, to, err)
	}
	var lsn uint64
	if err := tx.QueryRow(ctx, `SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint`).Scan(&lsn); err != nil {
		e.t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		e.t.Fatalf("committing rows %d to %d: %v", from, to, err)
	}
	return lsn
}

func (e *retryEnv) confirmed() uint64 {
	e.t.Helper()
	var lsn uint64
	if err := e.query(&lsn, `SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1`,
		slotName(e.taskID)); err != nil {
		e.t.Fatalf("reading confirmed_flush_lsn of %s: %v", slotName(e.taskID), err)
	}
	return lsn
}

// waitRows waits until every row from 1 to n is in Kafka.
func (e *retryEnv) waitRows(n int, timeout time.Duration) {
	e.t.Helper()
	eventually(e.t, timeout, fmt.Sprintf("rows 1 to %d in Kafka", n), func() (bool, string) {
		missing := e.rows.missing(n)
		return len(missing) == 0, fmt.Sprintf("%d missing (first %v); task %s", len(missing), first(missing),
			e.f.state(e.taskID).GetStatus())
	})
}

// waitRetrying waits until the task retries a connection failure.
func (e *retryEnv) waitRetrying(timeout time.Duration) *taskv1.TaskState {
	e.t.Helper()
	var st *taskv1.TaskState
	eventually(e.t, timeout, "the task to retry a connection failure", func() (bool, string) {
		st = e.f.state(e.taskID)
		return st.GetStatus() == taskv1.Status_STATUS_RETRYING && st.GetFailingClass() == taskv1.ErrorClass_ERROR_CLASS_CONNECTION,
			fmt.Sprintf("status %s class %s failures %d error %s", st.GetStatus(), st.GetFailingClass(), st.GetConsecutiveFailures(), st.GetLastError())
	})
	return st
}

// waitRecovered waits until the task runs again with its slot read and
// confirmed at or past lsn.
func (e *retryEnv) waitRecovered(lsn uint64, timeout time.Duration) {
	e.t.Helper()
	eventually(e.t, timeout, "the task to run again and confirm the new rows", func() (bool, string) {
		st := e.f.state(e.taskID)
		c := e.confirmed()
		return st.GetStatus() == taskv1.Status_STATUS_RUNNING && e.slotActive() && c >= lsn,
			fmt.Sprintf("status %s, confirmed_flush_lsn %d, want >= %d; error %s", st.GetStatus(), c, lsn, st.GetLastError())
	})
}

// waitFailed waits for the workflow to end and returns its error and the
// task's final state.
func (e *retryEnv) waitFailed(timeout time.Duration) (*taskv1.TaskState, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := e.f.temporal.GetWorkflow(ctx, e.taskID, "").Get(ctx, nil)
	if ctx.Err() != nil {
		e.t.Fatalf("task %s still running %s after the outage began; state %v", e.taskID, timeout, e.f.state(e.taskID))
	}
	if err == nil {
		e.t.Fatalf("task %s completed without an error, want it failed past its connection window", e.taskID)
	}
	var st taskv1.TaskState
	qctx, qcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer qcancel()
	res, qerr := e.f.temporal.QueryWorkflow(qctx, e.taskID, "", taskapi.QueryState)
	if qerr != nil {
		e.t.Fatalf("querying the state of the failed task %s: %v", e.taskID, qerr)
	}
	if qerr := res.Get(&st); qerr != nil {
		e.t.Fatalf("decoding the state of %s: %v", e.taskID, qerr)
	}
	return &st, err
}

// checkFailedPastWindow checks the failure names the window (failWindow
// one-second minutes), the cause (all of want) and the connection class.
func (e *retryEnv) checkFailedPastWindow(err error, st *taskv1.TaskState, want ...string) {
	e.t.Helper()
	e.checkFailedPastWindowOf(failWindow, err, st, want...)
}

// checkFailedPastWindowOf is checkFailedPastWindow for a window of window
// one-second minutes.
func (e *retryEnv) checkFailedPastWindowOf(window time.Duration, err error, st *taskv1.TaskState, want ...string) {
	e.t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		e.t.Fatalf("task %s ended with %v (%T), want an application error", e.taskID, err, err)
	}
	if st.GetStatus() != taskv1.Status_STATUS_FAILED || st.GetFailingClass() != taskv1.ErrorClass_ERROR_CLASS_CONNECTION {
		e.t.Fatalf("final state %s class %s, want FAILED with a CONNECTION failure", st.GetStatus(), st.GetFailingClass())
	}
	for _, w := range append([]string{"beyond its connection retry window of " + (window * time.Second).String()}, want...) {
		if !strings.Contains(appErr.Message(), w) || !strings.Contains(st.GetLastError(), w) {
			e.t.Fatalf("the failure does not name %q:\nworkflow error: %s\nlast_error: %s", w, appErr.Message(), st.GetLastError())
		}
	}
}

func first(ids []int) []int { return ids[:min(len(ids), 5)] }

// TestRetryWindowSourceRecovers stops the task's PostgreSQL and starts it
// again inside the connection window: the task retries, resumes by itself
// and loses no row.
func TestRetryWindowSourceRecovers(t *testing.T) {
	e := newRetryEnv(t, false, recoverWindow)
	e.insert(1, 10)
	e.waitRows(10, 30*time.Second)

	began := time.Now()
	e.stopPG()
	st := e.waitRetrying(30 * time.Second)
	t.Logf("retrying %s after the stop: %s", time.Since(began).Round(time.Millisecond), st.GetLastError())
	e.pg.Start()
	last := e.insert(11, 20)
	e.waitRows(20, recoverWindow*time.Second)
	e.waitRecovered(last, 30*time.Second)
	t.Logf("running again %s after the stop, %d consecutive failures; %s",
		time.Since(began).Round(time.Millisecond), e.f.state(e.taskID).GetConsecutiveFailures(), e.rows.summary())
}

// TestRetryWindowSourceDownFails keeps the task's PostgreSQL down past the
// connection window: the task fails, naming the window and the source.
func TestRetryWindowSourceDownFails(t *testing.T) {
	e := newRetryEnv(t, false, failWindow)
	e.insert(1, 5)
	e.waitRows(5, 30*time.Second)

	began := time.Now()
	e.stopPG()
	e.waitRetrying(30 * time.Second)
	st, err := e.waitFailed((failWindow + 60) * time.Second)
	t.Logf("failed %s after the stop, %d consecutive failures: %v", time.Since(began).Round(time.Millisecond),
		st.GetConsecutiveFailures(), err)
	e.checkFailedPastWindow(err, st, fmt.Sprintf("127.0.0.1:%d", e.pg.Port()), "connection refused")
	e.checkFailureAlert("connection refused")
}

// checkFailureAlert waits for the webhook to receive the task_failed alert
// carrying the task's final error.
func (e *retryEnv) checkFailureAlert(want string) {
	e.t.Helper()
	eventually(e.t, 30*time.Second, "the failure alert at the webhook", func() (bool, string) {
		a := e.hook.find("task_failed", "firing")
		if a == nil {
			return false, fmt.Sprintf("%d alerts", e.hook.count())
		}
		msg, _ := a["message"].(string)
		if a["task_id"] != e.taskID || !strings.Contains(msg, "retry window") || !strings.Contains(msg, want) {
			e.t.Fatalf("failure alert %v: want task %s, its retry window and %q", a, e.taskID, want)
		}
		return true, ""
	})
	if got := e.f.state(e.taskID).GetAlertsSent(); got != 1 {
		e.t.Errorf("state counts %d alerts sent, want 1", got)
	}
}

// TestRetryWindowBrokerRecovers stops the task's Kafka broker while rows
// are written and starts it again inside the connection window: the slot
// never confirms rows Kafka does not have, and every row arrives.
func TestRetryWindowBrokerRecovers(t *testing.T) {
	e := newRetryEnv(t, true, recoverWindow)
	e.insert(1, 10)
	e.waitRows(10, 30*time.Second)
	e.waitRecovered(0, 10*time.Second)

	began := time.Now()
	e.broker.Stop()
	t.Logf("broker stopped in %s", time.Since(began).Round(time.Millisecond))
	// The outage's rows start after this position; the slot must not pass
	// it while the broker is down.
	var outageStart uint64
	if err := e.query(&outageStart, `SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint`); err != nil {
		t.Fatal(err)
	}
	e.insert(11, 20)
	st := e.waitRetrying(30 * time.Second)
	t.Logf("retrying %s after the stop: %s", time.Since(began).Round(time.Millisecond), st.GetLastError())
	e.checkConfirmedHolds(outageStart, 2*time.Second)

	e.broker.Start()
	t.Logf("broker restarted in %s, %s after the stop", e.broker.StartTime.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	last := e.insert(21, 30)
	e.waitRows(30, recoverWindow*time.Second)
	e.waitRecovered(last, 30*time.Second)
	t.Logf("running again %s after the stop, %d consecutive failures; %s",
		time.Since(began).Round(time.Millisecond), e.f.state(e.taskID).GetConsecutiveFailures(), e.rows.summary())
}

// checkConfirmedHolds reads the slot's confirmed_flush_lsn for d and fails
// if it ever passes lsn.
func (e *retryEnv) checkConfirmedHolds(lsn uint64, d time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	reads := 0
	for {
		if c := e.confirmed(); c > lsn {
			e.t.Fatalf("with the broker down confirmed_flush_lsn reached %d, past %d where the unacknowledged rows start", c, lsn)
		}
		reads++
		if time.Now().After(deadline) {
			e.t.Logf("confirmed_flush_lsn stayed at or below %d over %d reads in %s", lsn, reads, d)
			return
		}
		<-tick.C
	}
}

// TestRetryWindowBrokerDownFails keeps the task's Kafka broker down past
// the connection window: the task fails, naming the window and Kafka.
func TestRetryWindowBrokerDownFails(t *testing.T) {
	e := newRetryEnv(t, true, failWindow)
	e.insert(1, 5)
	e.waitRows(5, 30*time.Second)

	began := time.Now()
	e.broker.Stop()
	e.insert(6, 10)
	e.waitRetrying(30 * time.Second)
	st, err := e.waitFailed((failWindow + 60) * time.Second)
	t.Logf("failed %s after the stop, %d consecutive failures: %v", time.Since(began).Round(time.Millisecond),
		st.GetConsecutiveFailures(), err)
	e.checkFailedPastWindow(err, st, "Kafka", e.bootstrap)
	e.checkFailureAlert("Kafka")
}

// rowCollector consumes a topic in the background and counts every row id;
// the consumer reconnects by itself when a private broker restarts.
type rowCollector struct {
	mu    sync.Mutex
	seen  map[int]int
	total int
	bad   []string
}

func collectRows(t *testing.T, bootstrap, topic string) *rowCollector {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": bootstrap, "group.id": uniqueName("e2e"), "auto.offset.reset": "earliest",
		"enable.auto.commit": false, "isolation.level": "read_committed",
		// Connection errors while the private broker is down are expected.
		"log_level": 0,
	})
	if err != nil {
		t.Fatalf("Kafka consumer on %s: %v", bootstrap, err)
	}
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatalf("subscribing to %s: %v", topic, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	col := &rowCollector{seen: map[int]int{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			msg, err := c.ReadMessage(200 * time.Millisecond)
			if err == nil {
				col.add(msg.Value)
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = c.Close()
		col.mu.Lock()
		defer col.mu.Unlock()
		for _, b := range col.bad {
			t.Errorf("undecodable message on %s: %s", topic, b)
		}
	})
	return col
}

func (c *rowCollector) add(value []byte) {
	var m struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var id int
	if err := json.Unmarshal(value, &m); err != nil || len(m.Data) != 1 {
		c.bad = append(c.bad, string(value))
		return
	}
	if _, err := fmt.Sscan(m.Data[0].ID, &id); err != nil {
		c.bad = append(c.bad, string(value))
		return
	}
	c.seen[id]++
	c.total++
}

// missing lists the ids from 1 to n not received yet.
func (c *rowCollector) missing(n int) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i := 1; i <= n; i++ {
		if c.seen[i] == 0 {
			out = append(out, i)
		}
	}
	return out
}

func (c *rowCollector) summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("%d distinct rows in Kafka, %d messages (%d redelivered)", len(c.seen), c.total, c.total-len(c.seen))
}
