package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// truncateTask creates tables a and b (id bigint PRIMARY KEY) and a task on
// both, writing rows to topic a and DDL records to a+"_ddl". The heartbeat
// is an hour apart, so that only the test's own statements move the slot.
func truncateTask(t *testing.T, f *ferry, conn *pgx.Conn, prefix string, mode taskv1.TruncateMode) (taskID, a, b string) {
	t.Helper()
	a = uniqueName(prefix)
	b = a + "_b"
	for _, tab := range []string{a, b} {
		exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY)`, tab))
		t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS public."+tab) })
	}
	taskID = strings.ReplaceAll(a, "_", "-")
	f.createTaskFromSpec(conn, taskID, &taskv1.TaskSpec{
		Name:        "e2e " + a,
		Source:      sourceEndpoint(),
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: kafkaBootstrap(), Topic: a},
		Objects: &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{
			{Schema: "public", Table: a}, {Schema: "public", Table: b},
		}},
		Kafka:     &taskv1.KafkaOptions{ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE, DdlTopic: a + "_ddl", TruncateMode: mode},
		SyncTypes: &taskv1.SyncTypes{Schema: true},
		Advanced:  &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2, HeartbeatSeconds: 3600},
	})
	return taskID, a, b
}

// readTruncates reads the DDL topic until n TRUNCATE records arrived,
// skipping the CREATE records schema sync writes.
func readTruncates(t *testing.T, ddl string, n int) []canalMessage {
	t.Helper()
	c := newConsumer(t, ddl)
	var out []canalMessage
	eventually(t, 60*time.Second, fmt.Sprintf("%d TRUNCATE records on %s", n, ddl), func() (bool, string) {
		msg, err := c.ReadMessage(200 * time.Millisecond)
		if err != nil {
			return false, fmt.Sprintf("%d so far (%v)", len(out), err)
		}
		if msg.TopicPartition.Partition != 0 {
			t.Fatalf("DDL record on partition %d: %s", msg.TopicPartition.Partition, msg.Value)
		}
		if m := decodeCanal(t, msg.Value); m.Type == "TRUNCATE" {
			out = append(out, m)
		}
		return len(out) >= n, fmt.Sprintf("%d so far", len(out))
	})
	return out
}

// TestTruncateReachesTheDDLTopicInOrder: rows, a TRUNCATE of one table,
// rows, a TRUNCATE of two tables in one statement, rows. The DDL topic gets
// each TRUNCATE as a Canal JSON DDL record at partition 0, placed between
// the rows around it (by id and commit time), and the slot is confirmed
// past them once Kafka has them.
func TestTruncateReachesTheDDLTopicInOrder(t *testing.T) {
	conn := pgConnect(t)
	f := startFerry(t)
	taskID, a, b := truncateTask(t, f, conn, "e2e_trunc", taskv1.TruncateMode_TRUNCATE_MODE_UNSPECIFIED)
	data := newConsumer(t, a)

	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (1), (2)`, a))
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (10)`, b))
	exec1(t, conn, fmt.Sprintf(`TRUNCATE public.%s`, a))
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (3)`, a))
	exec1(t, conn, fmt.Sprintf(`TRUNCATE public.%s, public.%s RESTART IDENTITY`, a, b))
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (4)`, a))
	last := currentLSN(t, conn)

	rows := map[string]canalMessage{}
	for _, msg := range readMessages(t, data, 5, 60*time.Second) {
		m := decodeCanal(t, msg.Value)
		if m.IsDdl || len(m.Data) != 1 {
			t.Fatalf("data topic has %s", msg.Value)
		}
		rows[*m.Data[0]["id"]] = m
	}
	trs := readTruncates(t, a+"_ddl", 2)
	want := []string{
		fmt.Sprintf(`TRUNCATE TABLE "public".%q`, a),
		fmt.Sprintf(`TRUNCATE TABLE "public".%q, "public".%q RESTART IDENTITY`, a, b),
	}
	for i, m := range trs {
		if !m.IsDdl || m.Database != "public" || m.Table != a || m.SQL != want[i] ||
			m.Data != nil || m.Old != nil || m.PkNames != nil || m.SQLType != nil || m.MysqlType != nil {
			t.Fatalf("TRUNCATE record %d: %+v, want sql %s", i, m, want[i])
		}
	}
	// Each TRUNCATE comes after the rows before it and before those after.
	for i, between := range [][2][]string{{{"1", "2", "10"}, {"3"}}, {{"3"}, {"4"}}} {
		tr := trs[i]
		for _, id := range between[0] {
			if r := rows[id]; r.ID >= tr.ID || r.Es > tr.Es {
				t.Fatalf("row %s (id %d, es %d) is not before TRUNCATE %d (id %d, es %d)", id, r.ID, r.Es, i, tr.ID, tr.Es)
			}
		}
		for _, id := range between[1] {
			if r := rows[id]; r.ID <= tr.ID || r.Es < tr.Es {
				t.Fatalf("row %s (id %d, es %d) is not after TRUNCATE %d (id %d, es %d)", id, r.ID, r.Es, i, tr.ID, tr.Es)
			}
		}
	}
	slot := slotName(taskID)
	eventually(t, 30*time.Second, "the slot to confirm past the TRUNCATEs", func() (bool, string) {
		got := confirmedFlushLSN(t, conn, slot)
		return got >= last, fmt.Sprintf("confirmed_flush_lsn %d, the last insert ends at %d", got, last)
	})
	f.stopAndRelease(conn, taskID)
}

// TestTruncateFailModeStopsTheTask: with kafka.truncate_mode FAIL the task
// fails at the TRUNCATE with an error naming the table, the slot is never
// confirmed past it, and no row after it reaches Kafka.
func TestTruncateFailModeStopsTheTask(t *testing.T) {
	conn := pgConnect(t)
	f := startFerry(t)
	taskID, a, _ := truncateTask(t, f, conn, "e2e_truncfail", taskv1.TruncateMode_TRUNCATE_MODE_FAIL)
	data := newConsumer(t, a)
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (1)`, a))
	readMessages(t, data, 1, 60*time.Second)

	// A position inside the TRUNCATE's transaction, after the TRUNCATE:
	// confirming the transaction would confirm its commit, beyond it.
	tx, err := conn.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var inside uint64
	if _, err := tx.Exec(context.Background(), fmt.Sprintf(`TRUNCATE public.%s`, a)); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(context.Background(), `SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint`).Scan(&inside); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (2)`, a))

	eventually(t, 60*time.Second, "the task to fail on the TRUNCATE", func() (bool, string) {
		st := f.state(taskID)
		e := st.GetLastError()
		return st.GetStatus() == taskv1.Status_STATUS_FAILED && strings.Contains(e, "TRUNCATE of table public."+a) &&
				strings.Contains(e, "TRUNCATE_MODE_DDL_RECORD"),
			st.GetStatus().String() + ", last error: " + e
	})
	t.Logf("the task failed with: %s", f.state(taskID).GetLastError())
	if got := confirmedFlushLSN(t, conn, slotName(taskID)); got >= inside {
		t.Fatalf("confirmed_flush_lsn %d passed the TRUNCATE's transaction (still open at %d)", got, inside)
	}
	if msg, err := data.ReadMessage(2 * time.Second); err == nil {
		t.Fatalf("Kafka has a row after the TRUNCATE: %s", msg.Value)
	}
}
