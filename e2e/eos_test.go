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

	killedAt := 0
	for round := 1; round <= 2; round++ {
		eventually(t, 90*time.Second, fmt.Sprintf("rows before kill %d", round), func() (bool, string) {
			d, _ := col.counts()
			return d >= killedAt+rows/5, fmt.Sprintf("%d distinct rows", d)
		})
		f.kill("delivery")
		killedAt, _ = col.counts()
		f.start("delivery")
		t.Logf("delivery killed after %d committed rows and restarted", killedAt)
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
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, val text NOT NULL)`, table))
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS public."+table) })
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s SELECT g, 'v' || g FROM generate_series(1, %d) g`, table, rows))
	exec1(t, conn, "ANALYZE public."+table)

	createTopic(t, table, nil)
	col := collectIDs(t, table) // read_committed
	f := startFerry(t)
	taskID := strings.ReplaceAll(table, "_", "-")
	// Not createTaskFromSpec: it waits for incremental sync, after full sync.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := f.control.CreateTask(ctx, &taskv1.CreateTaskRequest{TaskId: taskID, Spec: &taskv1.TaskSpec{
		Name:        "e2e " + table,
		Source:      sourceEndpoint(),
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: kafkaBootstrap(), Topic: table},
		Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: table}}},
		SyncTypes:   &taskv1.SyncTypes{Full: true},
		Kafka:       &taskv1.KafkaOptions{ExactlyOnce: true, ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE},
		Advanced: &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2,
			// Slow enough that both kills land in the middle of full sync.
			FullThrottle: &taskv1.FullSyncThrottle{RowsPerSecond: 1_500}},
	}})
	if err != nil {
		t.Fatalf("CreateTask %s: %v", taskID, err)
	}
	f.cleanupTask(conn, taskID)

	for i, name := range []string{"delivery", "worker"} {
		eventually(t, 120*time.Second, "rows before killing "+name, func() (bool, string) {
			d, _ := col.counts()
			return d >= (i+1)*rows/5, fmt.Sprintf("%d distinct rows", d)
		})
		f.kill(name)
		d, _ := col.counts()
		f.start(name)
		t.Logf("%s killed after %d committed rows and restarted", name, d)
	}
	if st := f.state(taskID); st.GetFullSyncDone() {
		t.Fatal("full sync finished before the kills; the test proved nothing")
	}

	// One partition: once the last row is read, every earlier message,
	// duplicates included, has been read too.
	eventually(t, 180*time.Second, "every row in Kafka and full sync done", func() (bool, string) {
		d, total := col.counts()
		st := f.state(taskID)
		return d == rows && st.GetFullSyncDone(), fmt.Sprintf("%d of %d distinct rows (%d messages); phase %s, error %q",
			d, rows, total, st.GetPhase(), st.GetLastError())
	})
	distinct, total := col.counts()
	if total != rows || distinct != rows {
		t.Errorf("read_committed: %d messages, %d distinct rows, want exactly %d of each", total, distinct, rows)
	}
	st := f.state(taskID)
	if !st.GetFullSyncChunked() || f.activityCount(taskID, "FullSync") != 0 {
		t.Errorf("state %v: want a chunked full sync and no exported snapshot", st)
	}
	resumed := resumedCheckpoints(t, f)
	t.Logf("rows %d, read_committed distinct %d, messages %d; delivery resumed from %v", rows, distinct, total, resumed)
	if len(resumed) < 2 {
		t.Errorf("delivery resumed from a checkpoint %d times, want one per kill (2): %v", len(resumed), resumed)
	}
	f.stopAndRelease(conn, taskID)
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
