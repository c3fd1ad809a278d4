package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// readMessages polls the consumer until n messages arrived.
func readMessages(t *testing.T, c *kafka.Consumer, n int, timeout time.Duration) []*kafka.Message {
	t.Helper()
	var out []*kafka.Message
	deadline := time.Now().Add(timeout)
	for len(out) < n {
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d messages within %s", len(out), n, timeout)
		}
		msg, err := c.ReadMessage(200 * time.Millisecond)
		if err != nil {
			var kerr kafka.Error
			if errors.As(err, &kerr) && kerr.IsTimeout() {
				continue
			}
			t.Fatalf("consuming: %v", err)
		}
		out = append(out, msg)
	}
	return out
}

func TestInsertUpdateDeleteRoundTrip(t *testing.T) {
	conn := pgConnect(t)
	table := uniqueName("e2e_orders")
	topic := table
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (
		id bigint PRIMARY KEY, sku text NOT NULL, qty integer, price numeric(10,2),
		note text, created timestamptz, payload bytea)`, table))
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS public."+table) })

	f := startFerry(t)
	taskID := strings.ReplaceAll(table, "_", "-")
	f.createTask(conn, taskID, table, topic)
	consumer := newConsumer(t, topic)

	start := time.Now()
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES
		(1, 'SKU-1', 3, 12345678.90, NULL, '2026-01-02 03:04:05.123456+00', '\x00ff10')`, table))
	first := readMessages(t, consumer, 1, 30*time.Second)
	firstLatency := time.Since(start)
	exec1(t, conn, fmt.Sprintf(`UPDATE public.%s SET qty = 4, note = 'gift "wrap"' WHERE id = 1`, table))
	beforeDelete := currentLSN(t, conn)
	exec1(t, conn, fmt.Sprintf(`DELETE FROM public.%s WHERE id = 1`, table))
	msgs := append(first, readMessages(t, consumer, 2, 30*time.Second)...)
	ins := decodeCanal(t, first[0].Value)
	t.Logf("time to first message: %s seen by a new consumer; %d ms from source commit to Kafka append",
		firstLatency, first[0].Timestamp.UnixMilli()-ins.Es)

	row := map[string]*string{
		"id": ptr("1"), "sku": ptr("SKU-1"), "qty": ptr("3"), "price": ptr("12345678.90"), "note": nil,
		"created": ptr("2026-01-02 03:04:05.123456+00"), "payload": ptr(`\x00ff10`),
	}
	updated := map[string]*string{}
	for k, v := range row {
		updated[k] = v
	}
	updated["qty"], updated["note"] = ptr("4"), ptr(`gift "wrap"`)

	want := []struct {
		typ  string
		data map[string]*string
	}{{"INSERT", row}, {"UPDATE", updated}, {"DELETE", updated}}
	var lastID, lastEs int64
	for i, msg := range msgs {
		m := decodeCanal(t, msg.Value)
		if m.Type != want[i].typ {
			t.Fatalf("message %d type %q, want %q", i, m.Type, want[i].typ)
		}
		if m.Database != "public" || m.Table != table || m.IsDdl || m.SQL != "" {
			t.Errorf("%s: database/table/isDdl/sql = %q/%q/%v/%q", m.Type, m.Database, m.Table, m.IsDdl, m.SQL)
		}
		if !reflect.DeepEqual(m.PkNames, []string{"id"}) {
			t.Errorf("%s: pkNames = %v, want [id]", m.Type, m.PkNames)
		}
		if m.ID <= lastID || m.Es < lastEs || m.Es <= 0 || m.Ts < m.Es {
			t.Errorf("%s: id %d (previous %d), es %d (previous %d), ts %d: want increasing ids, ordered commit times, ts >= es",
				m.Type, m.ID, lastID, m.Es, lastEs, m.Ts)
		}
		lastID, lastEs = m.ID, m.Es
		wantSQLType := map[string]int{"id": -5, "sku": -1, "qty": 4, "price": 2, "note": -1, "created": 2014, "payload": -2}
		if !reflect.DeepEqual(m.SQLType, wantSQLType) {
			t.Errorf("%s: sqlType = %v, want %v", m.Type, m.SQLType, wantSQLType)
		}
		wantMysql := map[string]string{"id": "bigint", "sku": "text", "qty": "integer", "price": "numeric(10,2)",
			"note": "text", "created": "timestamp with time zone", "payload": "bytea"}
		if !reflect.DeepEqual(m.MysqlType, wantMysql) {
			t.Errorf("%s: mysqlType = %v, want %v", m.Type, m.MysqlType, wantMysql)
		}
		if len(m.Data) != 1 {
			t.Fatalf("%s: data has %d rows, want 1", m.Type, len(m.Data))
		}
		if m.Type != "DELETE" && !reflect.DeepEqual(m.Data[0], want[i].data) {
			t.Errorf("%s: data = %s, want %s", m.Type, show(m.Data[0]), show(want[i].data))
		}
	}
	// Under REPLICA IDENTITY DEFAULT the source reveals only the key of a
	// deleted row and nothing of an updated row's old values.
	if del := decodeCanal(t, msgs[2].Value); *del.Data[0]["id"] != "1" {
		t.Errorf("DELETE data = %s, want the key id=1", show(del.Data[0]))
	}
	// formats.md: old is null for an INSERT, and for an UPDATE always one
	// object, empty when (as here) nothing of the old values is known.
	if ins, upd := decodeCanal(t, msgs[0].Value), decodeCanal(t, msgs[1].Value); ins.Old != nil || len(upd.Old) != 1 || len(upd.Old[0]) != 0 {
		t.Errorf("old = %v / %v, want null for INSERT and [{}] for an UPDATE that did not change the key", ins.Old, upd.Old)
	}

	// The slot is confirmed past the delete only once Kafka acknowledged it.
	slot := slotName(taskID)
	eventually(t, 30*time.Second, "the slot to confirm the delete", func() (bool, string) {
		got := confirmedFlushLSN(t, conn, slot)
		return got > beforeDelete, fmt.Sprintf("confirmed_flush_lsn %d, delete started after %d", got, beforeDelete)
	})
	f.stopAndRelease(conn, taskID)
	f.assertNoSecretInHistory(taskID)
}

func show(m map[string]*string) string {
	parts := []string{}
	for k, v := range m {
		if v == nil {
			parts = append(parts, k+"=null")
		} else {
			parts = append(parts, k+"="+*v)
		}
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// idCollector consumes a topic in the background and records every row id.
type idCollector struct {
	mu     sync.Mutex
	seen   map[string]int
	total  int
	cancel context.CancelFunc
	done   chan struct{}
}

func collectIDs(t *testing.T, topic string) *idCollector {
	c := newConsumer(t, topic)
	ctx, cancel := context.WithCancel(context.Background())
	col := &idCollector{seen: map[string]int{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(col.done)
		for ctx.Err() == nil {
			msg, err := c.ReadMessage(200 * time.Millisecond)
			if err != nil {
				continue
			}
			m := decodeCanal(t, msg.Value)
			col.mu.Lock()
			col.seen[*m.Data[0]["id"]]++
			col.total++
			col.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-col.done })
	return col
}

func (c *idCollector) counts() (distinct, total int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen), c.total
}

// TestKillWorkerAndCaptureLosesNothing SIGKILLs the worker and then the
// capture service while rows stream in, and counts every row.
func TestKillWorkerAndCaptureLosesNothing(t *testing.T) {
	const txns, rowsPerTxn = 300, 10
	const rows = txns * rowsPerTxn
	conn := pgConnect(t)
	table := uniqueName("e2e_kill")
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, val text NOT NULL)`, table))
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS public."+table) })

	f := startFerry(t)
	taskID := strings.ReplaceAll(table, "_", "-")
	f.createTask(conn, taskID, table, table)
	col := collectIDs(t, table)

	// Paced like an application writing, so the kills land mid-stream.
	written := writeRows(t, table, txns, rowsPerTxn, 100*time.Millisecond)

	// Capture first: the task notices at once and retries after a second.
	eventually(t, 60*time.Second, "rows before killing capture", func() (bool, string) {
		d, _ := col.counts()
		return d >= rows/10, fmt.Sprintf("%d distinct rows", d)
	})
	f.kill("capture")
	capKilledAt, _ := col.counts()
	f.start("capture")
	t.Logf("capture killed after %d rows and restarted", capKilledAt)

	// Then the worker: its activity is lost with it, and the task resumes
	// once the heartbeat times out, while the writer keeps writing.
	eventually(t, 60*time.Second, "rows after capture came back", func() (bool, string) {
		d, _ := col.counts()
		return d >= capKilledAt+rows/10, fmt.Sprintf("%d distinct rows", d)
	})
	f.kill("worker")
	killedAt, _ := col.counts()
	f.start("worker")
	t.Logf("worker killed after %d rows and restarted", killedAt)

	for range written {
	}
	eventually(t, 120*time.Second, "every row in Kafka", func() (bool, string) {
		d, total := col.counts()
		return d == rows, fmt.Sprintf("%d of %d distinct rows (%d messages)", d, rows, total)
	})
	distinct, total := col.counts()
	col.mu.Lock()
	for i := 1; i <= rows; i++ {
		if col.seen[fmt.Sprint(i)] == 0 {
			t.Errorf("row %d never reached Kafka", i)
		}
	}
	col.mu.Unlock()
	t.Logf("rows written %d, distinct received %d, messages %d (redelivered after kills: %d)", rows, distinct, total, total-distinct)
	f.stopAndRelease(conn, taskID)
}

// TestRowKafkaRefusesIsNeverConfirmed makes Kafka refuse one transaction (a
// row over the topic's size limit) between two it accepts, and checks that
// PostgreSQL is never told the refused transaction was flushed.
func TestRowKafkaRefusesIsNeverConfirmed(t *testing.T) {
	conn := pgConnect(t)
	table := uniqueName("e2e_big")
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, body text)`, table))
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS public."+table) })
	createTopic(t, table, map[string]string{"max.message.bytes": "4096"})

	f := startFerry(t)
	taskID := strings.ReplaceAll(table, "_", "-")
	f.createTask(conn, taskID, table, table)
	consumer := newConsumer(t, table)

	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (1, 'small')`, table))
	readMessages(t, consumer, 1, 30*time.Second)
	beforeBig := currentLSN(t, conn)
	noise := make([]byte, 32<<10)
	_, _ = rand.Read(noise)
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (2, $1)`, table), hex.EncodeToString(noise))
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (3, 'after')`, table))

	slot := slotName(taskID)
	eventually(t, 60*time.Second, "the task to fail on the oversized row", func() (bool, string) {
		st := f.state(taskID)
		return st.GetStatus() == taskv1.Status_STATUS_FAILED && strings.Contains(st.GetLastError(), table),
			st.GetStatus().String() + ", last error: " + st.GetLastError()
	})
	t.Logf("the task failed with: %s", f.state(taskID).GetLastError())
	if got := confirmedFlushLSN(t, conn, slot); got > beforeBig {
		t.Fatalf("confirmed_flush_lsn %d passed the refused transaction (which starts after %d)", got, beforeBig)
	}
	if msg, err := consumer.ReadMessage(2 * time.Second); err == nil {
		t.Fatalf("Kafka has a message after the refused row: %s", msg.Value)
	}
}

// writeRows inserts txns transactions of rowsPerTxn rows with ids from 1, one
// every pace, on a connection of its own, and reports the rows written so far
// after each; the channel closes when it is done or fails.
func writeRows(t *testing.T, table string, txns, rowsPerTxn int, pace time.Duration) <-chan int {
	writer := pgConnect(t)
	written := make(chan int, txns)
	go func() {
		defer close(written)
		tick := time.NewTicker(pace)
		defer tick.Stop()
		for i := 0; i < txns; i++ {
			<-tick.C
			_, err := writer.Exec(context.Background(), fmt.Sprintf(
				`INSERT INTO public.%s SELECT g, 'row ' || g FROM generate_series($1::bigint, $2::bigint) g`, table),
				i*rowsPerTxn+1, (i+1)*rowsPerTxn)
			if err != nil {
				t.Errorf("writer: %v", err)
				return
			}
			written <- (i + 1) * rowsPerTxn
		}
	}()
	return written
}
