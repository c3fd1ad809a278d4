package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// standbySlot is the physical slot the standby streams through; it is also
// the standby's application_name on the primary.
const standbySlot = "ferry_standby"

// TestFailoverToPromotedStandby runs a task on a PostgreSQL 17 primary with
// a standby that synchronizes failover slots, while a writer inserts
// numbered rows. Mid-stream the primary crashes and the standby is promoted:
// the task, whose source lists both servers, reconnects to the new primary
// by itself and resumes from its synchronized slot. Every row the writer
// committed reaches Kafka, and no table is read again.
func TestFailoverToPromotedStandby(t *testing.T) {
	begun := time.Now()
	primary := testenv.StartPostgresVersion(t, 17)
	standby := primary.NewStandby(t, standbySlot)
	// Commits wait for the standby, so a crash loses no committed row;
	// Ferry's failover slot waits for it too, so Ferry never gets ahead.
	psuper, ssuper := primary.SuperConn(t), standby.SuperConn(t)
	testenv.Exec(t, psuper,
		"ALTER SYSTEM SET synchronized_standby_slots = '"+standbySlot+"'",
		"ALTER SYSTEM SET synchronous_standby_names = '"+standbySlot+"'",
		"SELECT pg_reload_conf()")
	src := primary.Source()
	src.Hosts = []*taskv1.HostPort{{Host: "127.0.0.1", Port: uint32(primary.Port())}, {Host: "127.0.0.1", Port: uint32(standby.Port())}}
	src.Host, src.Port, src.FailoverSlot = "", 0, true

	table := uniqueName("e2e_failover")
	taskID := strings.ReplaceAll(table, "_", "-")
	conn := primary.Conn(t)
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, val text NOT NULL)`, table))
	const snapshotRows = 100
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s SELECT g, 'row ' || g FROM generate_series(1, %d) g`, table, snapshotRows))
	t.Logf("primary and standby ready in %s", time.Since(begun).Round(time.Millisecond))

	f := startFerry(t)
	rows := collectFailoverRows(t, table)
	createFailoverTask(t, f, taskID, table, src)
	eventually(t, 60*time.Second, "the task to stream from the primary", func() (bool, string) {
		st := f.state(taskID)
		if st.GetStatus() == taskv1.Status_STATUS_FAILED {
			t.Fatalf("task failed: %s", st.GetLastError())
		}
		return st.GetPhase() == taskv1.Phase_PHASE_INCREMENTAL && slotReading(psuper, slotName(taskID)),
			"phase " + st.GetPhase().String() + " status " + st.GetStatus().String() + " error " + st.GetLastError()
	})
	t.Logf("streaming %s after the start", time.Since(begun).Round(time.Millisecond))
	checkFailoverPrechecks(t, f.state(taskID))

	w := startIDWriter(t, src, table, snapshotRows+1)
	waitSyncedSlot(t, psuper, ssuper, slotName(taskID), w)
	eventually(t, 30*time.Second, "the writer's first rows in Kafka", func() (bool, string) {
		n := w.committedCount()
		return n >= 200 && len(rows.missing(w.committed())) < n/2, fmt.Sprintf("%d rows committed; %s", n, rows.summary())
	})

	beforeCrash := w.committedCount()
	crashedAt := time.Now()
	primary.Crash()
	standby.Promote()
	promotedAt := time.Now()
	rows.markPromotion(promotedAt)
	t.Logf("primary crashed with %d rows committed; standby promoted in %s", beforeCrash, promotedAt.Sub(crashedAt).Round(time.Millisecond))

	eventually(t, 30*time.Second, "the writer to commit on the promoted standby", func() (bool, string) {
		n := w.committedCount()
		return n >= beforeCrash+200, fmt.Sprintf("%d rows committed, last error %v", n, w.lastErr())
	})
	committed := w.finish()
	eventually(t, 40*time.Second, "every committed row in Kafka", func() (bool, string) {
		missing := rows.missing(committed)
		st := f.state(taskID)
		return len(missing) == 0, fmt.Sprintf("%d of %d committed rows missing (first %v); task %s %s", len(missing), len(committed),
			first(missing), st.GetStatus(), st.GetLastError())
	})

	st := f.state(taskID)
	snapBefore, snapAfter, firstAfter := rows.figures(w.firstAfter(promotedAt))
	if snapAfter != 0 {
		t.Errorf("%d snapshot rows reached Kafka after the promotion: the task read the table again", snapAfter)
	}
	if snapBefore != snapshotRows {
		t.Errorf("%d snapshot rows before the failover, want the table's %d", snapBefore, snapshotRows)
	}
	if st.GetStatus() != taskv1.Status_STATUS_RUNNING || st.GetPhase() != taskv1.Phase_PHASE_INCREMENTAL {
		t.Errorf("task %s %s after the failover, want RUNNING in incremental sync; last error %s", st.GetPhase(), st.GetStatus(), st.GetLastError())
	}
	if !slotReading(ssuper, slotName(taskID)) {
		t.Errorf("the promoted standby's slot %s is not being read", slotName(taskID))
	}
	t.Logf("rows written %d (%d before the crash; %d commits of unknown outcome at the crash, not counted), received %s; first row written after the promotion reached Kafka %s after it; whole test %s",
		len(committed), beforeCrash, w.uncertainCount(), rows.summary(), firstAfter.Sub(promotedAt).Round(time.Millisecond), time.Since(begun).Round(time.Millisecond))
}

// checkFailoverPrechecks wants the failover items passed: the primary
// shows its standby's physical slot in synchronized_standby_slots.
func checkFailoverPrechecks(t *testing.T, st *taskv1.TaskState) {
	t.Helper()
	got := map[string]*taskv1.PrecheckItem{}
	for _, it := range st.GetPrechecks() {
		got[it.GetId()] = it
	}
	for _, id := range []string{"failover_slot", "synchronized_standby_slots", "sync_replication_slots", "hot_standby_feedback"} {
		if it := got[id]; it.GetSeverity() != taskv1.Severity_SEVERITY_PASS {
			t.Errorf("precheck %s = %v, want a pass", id, it)
		}
	}
	t.Logf("precheck failover_slot: %s", got["failover_slot"].GetMessage())
}

func createFailoverTask(t *testing.T, f *ferry, taskID, table string, src *taskv1.SourceEndpoint) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := f.control.CreateTask(ctx, &taskv1.CreateTaskRequest{TaskId: taskID, Spec: &taskv1.TaskSpec{
		Name:        "e2e failover " + table,
		Source:      src,
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: kafkaBootstrap(), Topic: table},
		Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: table}}},
		Kafka:       &taskv1.KafkaOptions{ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE, DdlTopic: table + "_ddl"},
		SyncTypes:   &taskv1.SyncTypes{Schema: true, Full: true},
		Advanced:    &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2},
	}})
	if err != nil {
		t.Fatalf("CreateTask %s: %v", taskID, err)
	}
	// The private servers go with the test; only the workflow outlives it.
	t.Cleanup(func() { f.releaseIfRunning(taskID) })
}

// slotReading says whether a session reads the slot; a missing slot is not.
func slotReading(conn *pgx.Conn, slot string) bool {
	var active bool
	err := conn.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active)
	return err == nil && active
}

// waitSyncedSlot waits until the standby holds a sync-ready copy of the
// task's slot that has caught up with rows the writer committed since.
// PostgreSQL's slot sync worker backs off up to 30 s while nothing changes,
// and a new slot only becomes sync-ready once the primary's copy moves past
// the standby's horizon, which waits for the next running-transactions
// record (every 15 s). The test hurries both: a reload wakes the worker,
// and pg_log_standby_snapshot() writes that record now.
func waitSyncedSlot(t *testing.T, psuper, ssuper *pgx.Conn, slot string, w *idWriter) {
	t.Helper()
	began := time.Now()
	var target string
	eventually(t, 10*time.Second, "rows written to catch up with", func() (bool, string) {
		return w.committedCount() > 0, fmt.Sprintf("none yet; last error %v", w.lastErr())
	})
	if err := psuper.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&target); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the standby's synchronized copy of "+slot, func() (bool, string) {
		ctx := context.Background()
		var synced, temporary, caughtUp bool
		err := ssuper.QueryRow(ctx, `SELECT synced, temporary, confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`,
			slot, target).Scan(&synced, &temporary, &caughtUp)
		if err == nil && synced && !temporary && caughtUp {
			return true, ""
		}
		_, _ = psuper.Exec(ctx, `SELECT pg_log_standby_snapshot()`)
		_, _ = ssuper.Exec(ctx, `SELECT pg_reload_conf()`)
		return false, fmt.Sprintf("synced %v temporary %v caught up with %s %v (%v)", synced, temporary, target, caughtUp, err)
	})
	t.Logf("standby's copy of %s synchronized and past %s in %s", slot, target, time.Since(began).Round(time.Millisecond))
}

// idWriter inserts rows with increasing ids, one transaction each, through
// a session that follows the primary (the task's hosts). A commit whose
// outcome is unknown (the server died under it) counts as not committed:
// its row may or may not exist.
type idWriter struct {
	mu        sync.Mutex
	ids       []int
	at        []time.Time
	uncertain int
	err       error
	stop      chan struct{}
	done      chan struct{}
}

func startIDWriter(t *testing.T, src *taskv1.SourceEndpoint, table string, from int) *idWriter {
	t.Helper()
	pw, err := os.ReadFile(src.GetPassword().GetFile())
	if err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for _, h := range src.GetHosts() {
		hosts = append(hosts, fmt.Sprintf("%s:%d", h.GetHost(), h.GetPort()))
	}
	dsn := fmt.Sprintf("postgres://ferry:%s@%s/%s?sslmode=disable&target_session_attrs=read-write&connect_timeout=5",
		url.QueryEscape(string(trimNL(pw))), strings.Join(hosts, ","), src.GetDatabase())
	w := &idWriter{stop: make(chan struct{}), done: make(chan struct{})}
	go w.run(dsn, table, from)
	t.Cleanup(func() { w.finish() })
	return w
}

func (w *idWriter) run(dsn, table string, id int) {
	defer close(w.done)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	sql := fmt.Sprintf(`INSERT INTO public.%s VALUES ($1::bigint, 'row ' || $1::bigint)`, table)
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var err error
		if conn == nil || conn.IsClosed() {
			conn, err = pgx.Connect(ctx, dsn)
		}
		if err == nil {
			_, err = conn.Exec(ctx, sql, id)
			w.record(id, err)
			id++
		}
		cancel()
		if err != nil {
			w.setErr(err)
			if conn != nil {
				_ = conn.Close(context.Background())
				conn = nil
			}
		}
	}
}

func (w *idWriter) record(id int, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.ids = append(w.ids, id)
		w.at = append(w.at, time.Now())
		return
	}
	w.uncertain++
}

func (w *idWriter) setErr(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = err
}

func (w *idWriter) lastErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *idWriter) committedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ids)
}

func (w *idWriter) uncertainCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.uncertain
}

func (w *idWriter) committed() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int(nil), w.ids...)
}

// firstAfter is the first id committed after t, or 0.
func (w *idWriter) firstAfter(t time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, at := range w.at {
		if at.After(t) {
			return w.ids[i]
		}
	}
	return 0
}

// finish stops the writer and returns the ids it committed.
func (w *idWriter) finish() []int {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	return w.committed()
}

// failoverRows counts every row id in the topic, when each first arrived,
// and the snapshot rows before and after the promotion.
type failoverRows struct {
	mu         sync.Mutex
	seen       map[int]int
	arrived    map[int]time.Time
	total      int
	promotedAt time.Time
	snapBefore int
	snapAfter  int
	bad        []string
}

func collectFailoverRows(t *testing.T, topic string) *failoverRows {
	t.Helper()
	c := newConsumer(t, topic)
	r := &failoverRows{seen: map[int]int{}, arrived: map[int]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if msg, err := c.ReadMessage(200 * time.Millisecond); err == nil {
				r.add(msg.Value, isSnapshot(msg))
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, b := range r.bad {
			t.Errorf("undecodable message on %s: %s", topic, b)
		}
	})
	return r
}

func (r *failoverRows) add(value []byte, snapshot bool) {
	var m struct {
		Data []map[string]*string `json:"data"`
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	err := json.Unmarshal(value, &m)
	if err == nil && (len(m.Data) != 1 || m.Data[0]["id"] == nil) {
		err = errors.New("not one row with an id")
	}
	var id int
	if err == nil {
		id, err = strconv.Atoi(*m.Data[0]["id"])
	}
	if err != nil {
		r.bad = append(r.bad, string(value))
		return
	}
	if r.seen[id] == 0 {
		r.arrived[id] = time.Now()
	}
	r.seen[id]++
	r.total++
	switch {
	case !snapshot:
	case r.promotedAt.IsZero():
		r.snapBefore++
	default:
		r.snapAfter++
	}
}

func (r *failoverRows) markPromotion(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.promotedAt = at
}

// missing lists the ids not received yet.
func (r *failoverRows) missing(ids []int) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for _, id := range ids {
		if r.seen[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// figures are the snapshot rows before and after the promotion, and when
// the row id first arrived.
func (r *failoverRows) figures(id int) (before, after int, arrived time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapBefore, r.snapAfter, r.arrived[id]
}

func (r *failoverRows) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("%d distinct rows in Kafka, %d messages (%d redelivered)", len(r.seen), r.total, r.total-len(r.seen))
}
