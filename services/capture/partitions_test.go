package capture

import (
	"context"
	"fmt"
	"testing"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// A partitioned table streams under its root's name, OID and column order
// on PostgreSQL 12 (which publishes the leaves), 13 and 15 alike: a row in
// a partition attached from a table with its own column order, and an
// UPDATE that moves a row to another partition (a DELETE then an INSERT).
func TestPartitionedTableStreamsUnderItsRoot(t *testing.T) {
	for _, major := range []int{12, 13, 15} {
		t.Run(fmt.Sprint(major), func(t *testing.T) { checkPartitionedStream(t, major) })
	}
}

func checkPartitionedStream(t *testing.T, major int) {
	pg := testenv.StartPostgresVersion(t, major)
	conn := pg.Conn(t)
	testenv.Exec(t, conn,
		"CREATE TABLE parts (region text NOT NULL, id int8 NOT NULL, note text, PRIMARY KEY (region, id)) PARTITION BY LIST (region)",
		"CREATE TABLE parts_eu PARTITION OF parts FOR VALUES IN ('eu')",
		// Its own column order, and a dropped column: the leaf's tuples
		// must still come out in the root's order.
		"CREATE TABLE parts_us (gone int, note text, id int8 NOT NULL, region text NOT NULL)",
		"ALTER TABLE parts_us DROP COLUMN gone",
		"ALTER TABLE parts ATTACH PARTITION parts_us FOR VALUES IN ('us')")
	client := startServer(t)
	slot, pub := "parts_slot", "parts_pub"
	resp, err := client.EnsureReplication(context.Background(), &capturev1.EnsureReplicationRequest{
		Source: pg.Source(), SlotName: slot, PublicationName: pub, Tables: []*taskv1.TableRef{table("public", "parts")},
	})
	if err != nil {
		t.Fatalf("EnsureReplication on PostgreSQL %d: %v", major, err)
	}
	var rootOID uint32
	if err := conn.QueryRow(context.Background(), "SELECT 'parts'::regclass::oid").Scan(&rootOID); err != nil {
		t.Fatal(err)
	}
	s := openStream(t, client, &capturev1.StartStream{Source: pg.Source(), SlotName: slot, PublicationName: pub, StartLsn: resp.GetConfirmedLsn()})
	testenv.Exec(t, conn,
		"INSERT INTO parts VALUES ('eu', 1, 'a'), ('us', 2, 'b')",
		"UPDATE parts SET region = 'us' WHERE id = 1",
		"DELETE FROM parts WHERE id = 2")
	got := events(s.untilEvents(t, 5))
	want := []struct {
		op     cdcv1.Operation
		values []string // region, id, note of the new row, else of the old key
	}{
		{cdcv1.Operation_OPERATION_INSERT, []string{"eu", "1", "a"}},
		{cdcv1.Operation_OPERATION_INSERT, []string{"us", "2", "b"}},
		{cdcv1.Operation_OPERATION_DELETE, []string{"eu", "1", ""}},
		{cdcv1.Operation_OPERATION_INSERT, []string{"us", "1", "a"}},
		{cdcv1.Operation_OPERATION_DELETE, []string{"us", "2", ""}},
	}
	if len(got) != len(want) {
		t.Fatalf("PostgreSQL %d: %d events, want %d", major, len(got), len(want))
	}
	for i, w := range want {
		ev := got[i]
		values := ev.GetNewTuple()
		if w.op == cdcv1.Operation_OPERATION_DELETE {
			values = ev.GetOldTuple()
		}
		if ev.GetOp() != w.op || ev.GetRelationOid() != rootOID || tuple.Len(values) != 3 {
			t.Fatalf("PostgreSQL %d: event %d is %v of relation %d with %d values; want %v of the root %d with 3",
				major, i, ev.GetOp(), ev.GetRelationOid(), tuple.Len(values), w.op, rootOID)
		}
		for j, v := range w.values {
			if v != "" && colText(values, j) != v {
				t.Errorf("PostgreSQL %d: event %d column %d = %q, want %q", major, i, j, colText(values, j), v)
			}
		}
	}
	for _, b := range s.snapshot() {
		for _, r := range b.GetRelations() {
			var cols []string
			for _, c := range r.GetColumns() {
				cols = append(cols, c.GetName())
			}
			if r.GetOid() != rootOID || r.GetTable() != "parts" || fmt.Sprint(cols) != "[region id note]" ||
				fmt.Sprint(r.GetKeyColumns()) != "[region id]" {
				t.Errorf("PostgreSQL %d: relation %d %s.%s with columns %v and key %v; want the root %d parts [region id note] keyed by [region id]",
					major, r.GetOid(), r.GetSchema(), r.GetTable(), cols, r.GetKeyColumns(), rootOID)
			}
		}
	}
}
