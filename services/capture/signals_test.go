package capture

import (
	"context"
	"fmt"
	"testing"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	"github.com/ferry-cdc/ferry/services/capture/signal"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// Before PostgreSQL 14 setup creates Ferry's signal table and publishes it
// with the task's tables; the heartbeat writes its row; the stream never
// ships the table's changes; release drops it once no slot is left.
// (The backfill tests in versionSuite prove that its watermarks arrive.)
func TestSignalTableBefore14(t *testing.T) {
	for _, major := range []int{12, 13} {
		t.Run(fmt.Sprint(major), func(t *testing.T) {
			testenv.StartPostgresVersion(t, major).AsShared(t)
			checkSignalTable(t)
		})
	}
}

func checkSignalTable(t *testing.T) {
	client := startServer(t)
	conn := testenv.PG(t)
	name := testenv.UniqueName("sig_items")
	createItems(t, name)
	r := newReplication(t, testenv.UniqueName("ferry_pub"), table("public", name))
	r.ensure(t, client)
	var published int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_publication_tables
		WHERE pubname = $1 AND schemaname = $2 AND tablename = $3`, r.pub, signal.Schema, signal.Table).Scan(&published); err != nil || published != 1 {
		t.Fatalf("publication %s lists %s %d times (%v); want once", r.pub, signal.TableName, published, err)
	}

	start := r.start()
	start.HeartbeatSeconds = 1
	s := openStream(t, client, start)
	stop := make(chan struct{})
	defer close(stop)
	go s.autoAck(stop)
	pollUntil(t, "the heartbeat's row in "+signal.TableName, func() int {
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+signal.TableName+
			" WHERE slot_name = $1 AND prefix = $2 AND content = $1", r.slot, heartbeatPrefix).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}, func(n int) bool { return n == 1 })
	testenv.Exec(t, conn, "INSERT INTO "+quoteIdent("public", name)+" (id, amount, note) VALUES (1, 1, 'one')")
	s.untilEvents(t, 1)
	// Heartbeats after the row, whose transactions the stream then decodes.
	end := currentWAL(t, conn)
	pollUntil(t, "a watermark past the row", func() uint64 { return lastWatermark(s.snapshot()) },
		func(w uint64) bool { return w > end })
	batches := s.snapshot()
	for _, b := range batches {
		for _, rel := range b.GetRelations() {
			if rel.GetSchema() == signal.Schema {
				t.Fatalf("the stream shipped the definition of %s: %v", signal.TableName, rel)
			}
		}
	}
	if n := len(events(batches)); n != 1 {
		t.Fatalf("the stream shipped %d events; want only the one row", n)
	}
	checkWatermarks(t, batches)
	s.close()

	if _, err := client.ReleaseReplication(context.Background(), &capturev1.ReleaseReplicationRequest{
		Source: testenv.Source(t), SlotName: r.slot, PublicationName: r.pub,
	}); err != nil {
		t.Fatal(err)
	}
	var left bool
	if err := conn.QueryRow(context.Background(), "SELECT to_regclass($1) IS NOT NULL", signal.TableName).Scan(&left); err != nil || left {
		t.Fatalf("after release, %s still exists: %v (%v)", signal.TableName, left, err)
	}
}
