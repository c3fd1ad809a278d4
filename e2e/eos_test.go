package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// TestExactlyOnceSurvivesDeliveryKill runs a task with kafka.exactly_once
// while rows stream in, SIGKILLs the delivery service twice (its open Kafka
// transaction dies with it) and restarts it on the same address, so that
// the workflow's retry reconnects. A read_committed consumer must then see
// every row exactly once.
func TestExactlyOnceSurvivesDeliveryKill(t *testing.T) {
	const txns, rowsPerTxn = 300, 10
	const rows = txns * rowsPerTxn
	conn := pgConnect(t)
	table := uniqueName("e2e_eos")
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, val text NOT NULL)`, table))
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS public."+table) })

	createTopic(t, table, nil)
	f := startFerry(t)
	taskID := strings.ReplaceAll(table, "_", "-")
	// No schema sync: the topic holds rows only, so that it can be counted.
	f.createTaskFromSpec(conn, taskID, &taskv1.TaskSpec{
		Name:        "e2e " + table,
		Source:      sourceEndpoint(),
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: kafkaBootstrap(), Topic: table},
		Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: table}}},
		Kafka:       &taskv1.KafkaOptions{ExactlyOnce: true, ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE},
		Advanced:    &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2},
	})
	col := collectIDs(t, table) // read_committed

	written := writeRows(t, table, txns, rowsPerTxn, 50*time.Millisecond)
	open := watchOpenTransactions(t, table)

	killedAt := 0
	for round := 1; round <= 2; round++ {
		eventually(t, 90*time.Second, fmt.Sprintf("rows before kill %d", round), func() (bool, string) {
			d, _ := col.counts()
			return d >= killedAt+rows/5, fmt.Sprintf("%d distinct rows", d)
		})
		// Killed right after the consumer saw a commit, delivery often sat
		// between two transactions, and the kills proved nothing (a run
		// failed so); so each kill waits until a transaction is open.
		open.wait(t)
		f.kill("delivery")
		killedAt, _ = col.counts()
		f.start("delivery")
		t.Logf("delivery killed after %d committed rows, inside a transaction, and restarted", killedAt)
	}

	for range written {
	}
	// One partition: once the last row is read, every earlier message,
	// duplicates included, has been read too.
	eventually(t, 120*time.Second, "every row in Kafka", func() (bool, string) {
		d, total := col.counts()
		return d == rows, fmt.Sprintf("%d of %d distinct rows (%d messages)", d, rows, total)
	})
	distinct, total := col.counts()
	if total != rows || distinct != rows {
		t.Errorf("read_committed: %d messages, %d distinct rows, want exactly %d of each", total, distinct, rows)
	}
	uncommitted := countUncommitted(t, table, total)
	resumed := resumedCheckpoints(t, f)
	t.Logf("rows written %d, read_committed distinct %d, messages %d; read_uncommitted messages %d (from aborted transactions: %d); resumed from %v",
		rows, distinct, total, uncommitted, uncommitted-total, resumed)
	// Rows arrive every 50 ms and a transaction lasts 100 ms, so a kill
	// finds one open: its records stay in the log, aborted.
	if uncommitted <= total {
		t.Errorf("no aborted records: neither kill landed inside a transaction, so the test proved nothing")
	}
	if len(resumed) < 2 {
		t.Errorf("delivery resumed from a checkpoint %d times, want one per restart (2): %v", len(resumed), resumed)
	}
	f.stopAndRelease(conn, taskID)
}

// TestExactlyOnceFullSyncSurvivesKills runs a task with sync_types.full
// and kafka.exactly_once on a keyed table, so full sync is chunked, and
// SIGKILLs the delivery service and then the worker in the middle of it.
// The worker's heartbeats trail what delivery committed (they are
// throttled), so the retried attempts must resume from the checkpoint and
// backfill progress delivery committed to Kafka: a read_committed consumer
// must see every row exactly once.
func TestExactlyOnceFullSyncSurvivesKills(t *testing.T) {
	const rows = 30_000
	conn := pgConnect(t)
	table := uniqueName("e2e_eos_fs")
	keyedTable(t, conn, table, 1, rows)
	createTopic(t, table, nil)
	col := collectIDs(t, table) // read_committed
	f := startFerry(t)
	taskID := strings.ReplaceAll(table, "_", "-")
	f.createEOSFullSyncTask(conn, taskID, table, table)

	killDuringBackfill(t, f, col, 0, rows)
	if st := f.state(taskID); st.GetFullSyncDone() {
		t.Fatal("full sync finished before the kills; the test proved nothing")
	}
	eventually(t, 180*time.Second, "every row in Kafka and full sync done", func() (bool, string) {
		d, total := col.counts()
		st := f.state(taskID)
		return d == rows && st.GetFullSyncDone(), fmt.Sprintf("%d of %d distinct rows (%d messages); phase %s, error %q",
			d, rows, total, st.GetPhase(), st.GetLastError())
	})
	checkExactlyOnce(t, f, col, rows)
	if st := f.state(taskID); !st.GetFullSyncChunked() || f.activityCount(taskID, "FullSync") != 0 {
		t.Errorf("state %v: want a chunked full sync and no exported snapshot", st)
	}
	f.stopAndRelease(conn, taskID)
}

// TestExactlyOnceAddedTableSurvivesKills adds a table to a running
// exactly-once task with full sync; its snapshot runs beside the stream
// (a backfill) while delivery and then the worker are killed. Every row of
// both tables must reach a read_committed consumer exactly once.
func TestExactlyOnceAddedTableSurvivesKills(t *testing.T) {
	const first, added = 1_000, 20_000
	conn := pgConnect(t)
	a, c := uniqueName("e2e_eos_add_a"), uniqueName("e2e_eos_add_c")
	keyedTable(t, conn, a, 1, first)
	// Ids distinct from a's: the consumer counts rows by id.
	keyedTable(t, conn, c, 1_000_001, added)
	createTopic(t, a, nil)
	col := collectIDs(t, a)
	f := startFerry(t)
	taskID := strings.ReplaceAll(a, "_", "-")
	f.createEOSFullSyncTask(conn, taskID, a, a)
	eventually(t, 120*time.Second, "full sync of "+a, func() (bool, string) {
		d, _ := col.counts()
		st := f.state(taskID)
		return d == first && st.GetFullSyncDone() && st.GetPhase() == taskv1.Phase_PHASE_INCREMENTAL,
			fmt.Sprintf("%d rows; phase %s", d, st.GetPhase())
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.control.ModifyObjects(ctx, &taskv1.ModifyObjectsRequest{TaskId: taskID, Objects: &taskv1.ObjectSelection{
		Tables: []*taskv1.TableSelection{{Schema: "public", Table: a}, {Schema: "public", Table: c}},
	}}); err != nil {
		t.Fatalf("ModifyObjects adding %s: %v", c, err)
	}
	killDuringBackfill(t, f, col, first, added)
	eventually(t, 180*time.Second, "every row of both tables in Kafka and "+c+" backfilled", func() (bool, string) {
		d, total := col.counts()
		done := false
		for _, bf := range f.task(taskID).GetHeartbeat().GetBackfills() {
			done = done || bf.GetTable() == c && bf.GetDone()
		}
		return d == first+added && done, fmt.Sprintf("%d of %d distinct rows (%d messages); backfill done %t; error %q",
			d, first+added, total, done, f.state(taskID).GetLastError())
	})
	checkExactlyOnce(t, f, col, first+added)
	f.stopAndRelease(conn, taskID)
}

// keyedTable creates public.name with n rows whose ids start at from.
func keyedTable(t *testing.T, conn *pgx.Conn, name string, from, n int) {
	t.Helper()
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, val text NOT NULL)`, name))
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS public."+name) })
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s SELECT g, 'v' || g FROM generate_series(%d, %d) g`, name, from, from+n-1))
	exec1(t, conn, "ANALYZE public."+name)
}

// createEOSFullSyncTask creates an exactly-once task with full sync whose
// snapshots (full sync's and added tables') run at 1,500 rows a second, so
// that kills land in their middle. Unlike createTaskFromSpec it does not
// wait for incremental sync.
func (f *ferry) createEOSFullSyncTask(conn *pgx.Conn, taskID, topic string, tables ...string) {
	f.t.Helper()
	var sel []*taskv1.TableSelection
	for _, tab := range tables {
		sel = append(sel, &taskv1.TableSelection{Schema: "public", Table: tab})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := f.control.CreateTask(ctx, &taskv1.CreateTaskRequest{TaskId: taskID, Spec: &taskv1.TaskSpec{
		Name:        "e2e " + topic,
		Source:      sourceEndpoint(),
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: kafkaBootstrap(), Topic: topic},
		Objects:     &taskv1.ObjectSelection{Tables: sel},
		SyncTypes:   &taskv1.SyncTypes{Full: true},
		Kafka:       &taskv1.KafkaOptions{ExactlyOnce: true, ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE},
		Advanced: &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2,
			FullThrottle:        &taskv1.FullSyncThrottle{RowsPerSecond: 1_500},
			IncrementalThrottle: &taskv1.IncrementalThrottle{RowsPerSecond: 1_500}},
	}})
	if err != nil {
		f.t.Fatalf("CreateTask %s: %v", taskID, err)
	}
	f.cleanupTask(conn, taskID)
}

// killDuringBackfill SIGKILLs delivery once a fifth of a snapshot of rows
// rows (after base rows already in Kafka) is committed, then the worker at
// two fifths, restarting each.
func killDuringBackfill(t *testing.T, f *ferry, col *idCollector, base, rows int) {
	t.Helper()
	for i, name := range []string{"delivery", "worker"} {
		eventually(t, 120*time.Second, "rows before killing "+name, func() (bool, string) {
			d, _ := col.counts()
			return d >= base+(i+1)*rows/5, fmt.Sprintf("%d distinct rows", d)
		})
		f.kill(name)
		d, _ := col.counts()
		f.start(name)
		t.Logf("%s killed after %d of %d snapshot rows were committed, and restarted", name, d-base, rows)
	}
}

// checkExactlyOnce asserts that the read_committed consumer read every row
// once, and that delivery resumed from its checkpoint after each kill.
func checkExactlyOnce(t *testing.T, f *ferry, col *idCollector, rows int) {
	t.Helper()
	distinct, total := col.counts()
	if total != rows || distinct != rows {
		t.Errorf("read_committed: %d messages, %d distinct rows, want exactly %d of each", total, distinct, rows)
	}
	resumed := resumedCheckpoints(t, f)
	t.Logf("rows %d, read_committed distinct %d, messages %d; delivery resumed from %v", rows, distinct, total, resumed)
	if len(resumed) < 2 {
		t.Errorf("delivery resumed from a checkpoint %d times, want one per kill (2): %v", len(resumed), resumed)
	}
}

// countUncommitted counts every data record in the topic's one partition as
// a read_uncommitted consumer, aborted ones included.
func countUncommitted(t *testing.T, topic string, atLeast int) int {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": kafkaBootstrap(), "group.id": uniqueName("e2e-uncommitted"),
		"enable.auto.commit": false, "isolation.level": "read_uncommitted", "enable.partition.eof": true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	n := 0
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		switch e := c.Poll(200).(type) {
		case *kafka.Message:
			n++
		case kafka.PartitionEOF:
			if n >= atLeast {
				return n
			}
		case kafka.Error:
			var ke kafka.Error
			if errors.As(e, &ke) && ke.IsFatal() {
				t.Fatalf("read_uncommitted consumer: %v", e)
			}
		}
	}
	t.Fatalf("read_uncommitted consumer read %d messages of at least %d in time", n, atLeast)
	return 0
}

// openTransactions compares a topic's end as read_uncommitted and as
// read_committed consumers see it (the high watermark, and the last stable
// offset, which stops at the first open transaction).
type openTransactions struct {
	topic                  string
	uncommitted, committed *kafka.Consumer
}

func watchOpenTransactions(t *testing.T, topic string) *openTransactions {
	t.Helper()
	o := &openTransactions{topic: topic}
	for _, iso := range []string{"read_uncommitted", "read_committed"} {
		c, err := kafka.NewConsumer(&kafka.ConfigMap{
			"bootstrap.servers": kafkaBootstrap(), "group.id": uniqueName("e2e-watch"), "isolation.level": iso,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if iso == "read_committed" {
			o.committed = c
		} else {
			o.uncommitted = c
		}
	}
	return o
}

// wait polls until a transaction is open on partition 0.
func (o *openTransactions) wait(t *testing.T) {
	t.Helper()
	eventually(t, 30*time.Second, "an open Kafka transaction", func() (bool, string) {
		_, high, err1 := o.uncommitted.QueryWatermarkOffsets(o.topic, 0, 2000)
		_, stable, err2 := o.committed.QueryWatermarkOffsets(o.topic, 0, 2000)
		if err := errors.Join(err1, err2); err != nil {
			return false, err.Error()
		}
		return high > stable, fmt.Sprintf("high watermark %d, last stable offset %d", high, stable)
	})
}

var resumedRE = regexp.MustCompile(`exactly-once delivery resumed.*"resumed_from_lsn":"([0-9A-F]+/[0-9A-F]+)"`)

// resumedCheckpoints lists the nonzero checkpoints delivery resumed from,
// from its log across restarts.
func resumedCheckpoints(t *testing.T, f *ferry) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.logDir, "delivery.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range resumedRE.FindAllStringSubmatch(string(b), -1) {
		if m[1] != "0/0" {
			out = append(out, m[1])
		}
	}
	return out
}
