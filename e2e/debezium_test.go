package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// TestDebeziumInsertUpdateDeleteRoundTrip: an INSERT, UPDATE and DELETE
// through real services in Debezium JSON, read back as Debezium's
// JsonConverter (schemas off) writes them: JSON keys, the after-image in
// Debezium's types, a null before-image for the UPDATE under DEFAULT
// identity, the key alone before the DELETE, then its tombstone; source
// positions increase and the slot confirms past the DELETE.
func TestDebeziumInsertUpdateDeleteRoundTrip(t *testing.T) {
	conn := pgConnect(t)
	table := uniqueName("e2e_dbz")
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (
		id bigint PRIMARY KEY, sku text NOT NULL, qty integer, price numeric(10,2),
		note text, created timestamptz, payload bytea, day date)`, table))
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS public."+table) })

	f := startFerry(t)
	taskID := strings.ReplaceAll(table, "_", "-")
	f.createTaskWithOptions(conn, taskID, table, table, &taskv1.KafkaOptions{Format: taskv1.DataFormat_DATA_FORMAT_DEBEZIUM_JSON})
	consumer := newConsumer(t, table)

	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES
		(1, 'SKU-1', 3, 12345678.90, NULL, '2026-01-02 03:04:05.123456+00', '\x00ff10', '2024-02-29')`, table))
	exec1(t, conn, fmt.Sprintf(`UPDATE public.%s SET qty = 4, note = 'gift' WHERE id = 1`, table))
	beforeDelete := currentLSN(t, conn)
	exec1(t, conn, fmt.Sprintf(`DELETE FROM public.%s WHERE id = 1`, table))
	msgs := readMessages(t, consumer, 4, 60*time.Second)

	day := time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC).Unix() / 86400
	inserted := fmt.Sprintf(`{"id":1,"sku":"SKU-1","qty":3,"price":"12345678.90","note":null,"created":"2026-01-02T03:04:05.123456Z","payload":"AP8Q","day":%d}`, day)
	updated := strings.Replace(strings.Replace(inserted, `"qty":3`, `"qty":4`, 1), `"note":null`, `"note":"gift"`, 1)
	want := []struct{ op, before, after string }{
		{"c", "null", inserted},
		{"u", "null", updated}, // DEFAULT identity: PostgreSQL sends no before-image
		{"d", `{"id":1,"sku":null,"qty":null,"price":null,"note":null,"created":null,"payload":null,"day":null}`, "null"},
	}
	var lastLSN int64
	for i, w := range want {
		msg := msgs[i]
		var v struct {
			Before, After json.RawMessage
			Op            string
			Source        struct {
				Connector, DB, Schema, Table string
				TxID                         int64 `json:"txId"`
				LSN                          int64 `json:"lsn"`
			}
		}
		if err := json.Unmarshal(msg.Value, &v); err != nil {
			t.Fatalf("message %d %s: %v", i, msg.Value, err)
		}
		if v.Op != w.op || string(v.Before) != w.before || string(v.After) != w.after {
			t.Errorf("message %d: op %s before %s after %s\nwant op %s before %s after %s", i, v.Op, v.Before, v.After, w.op, w.before, w.after)
		}
		s := v.Source
		if s.Connector != "postgresql" || s.DB != sourceEndpoint().GetDatabase() || s.Schema != "public" || s.Table != table || s.TxID == 0 || s.LSN <= lastLSN {
			t.Errorf("message %d: source %+v after LSN %d", i, s, lastLSN)
		}
		lastLSN = s.LSN
		if string(msg.Key) != `{"id":1}` {
			t.Errorf("message %d: key %s, want {\"id\":1}", i, msg.Key)
		}
	}
	if tomb := msgs[3]; tomb.Value != nil || !bytes.Equal(tomb.Key, []byte(`{"id":1}`)) {
		t.Errorf("after the DELETE: key %s value %q, want the tombstone of {\"id\":1}", tomb.Key, tomb.Value)
	}

	slot := slotName(taskID)
	eventually(t, 30*time.Second, "the slot to confirm the delete", func() (bool, string) {
		got := confirmedFlushLSN(t, conn, slot)
		return got > beforeDelete, fmt.Sprintf("confirmed_flush_lsn %d, delete started after %d", got, beforeDelete)
	})
	f.stopAndRelease(conn, taskID)
}
