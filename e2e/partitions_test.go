package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// serverVersion is the source's server_version_num.
func serverVersion(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var v int
	if err := conn.QueryRow(context.Background(), "SELECT current_setting('server_version_num')::int").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// canalRows reads Canal JSON messages of topic until want holds or the
// deadline passes, and returns them with whether each was a snapshot row.
type canalRow struct {
	canalMessage
	snapshot bool
}

func readCanalUntil(t *testing.T, c *kafka.Consumer, got *[]canalRow, what string, want func([]canalRow) bool) {
	t.Helper()
	eventually(t, 90*time.Second, what, func() (bool, string) {
		for {
			msg, err := c.ReadMessage(100 * time.Millisecond)
			if err != nil {
				break
			}
			*got = append(*got, canalRow{decodeCanal(t, msg.Value), isSnapshot(msg)})
		}
		return want(*got), fmt.Sprintf("%d messages", len(*got))
	})
}

// A partitioned table streams under its root's name and topic on every
// version (on 12, which cannot publish a partitioned table, through its
// leaves), including an UPDATE that moves a row to another partition; a
// table added to the running task is read beside the stream, through its
// row filter: the publication's from 15, Ferry's own before.
func TestPartitionedAndAddedTables(t *testing.T) {
	conn := pgConnect(t)
	version := serverVersion(t, conn)
	parts, added := uniqueName("e2e_parts"), uniqueName("e2e_added")
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%[1]s (region text NOT NULL, id bigint NOT NULL, val text,
		PRIMARY KEY (region, id)) PARTITION BY LIST (region)`, parts))
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%[1]s_eu PARTITION OF public.%[1]s FOR VALUES IN ('eu')`, parts))
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%[1]s_us PARTITION OF public.%[1]s FOR VALUES IN ('us')`, parts))
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES ('eu', 1, 'one'), ('us', 2, 'two')`, parts))
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, val text)`, added))
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s SELECT g, 'v' || g FROM generate_series(1, 500) g`, added))
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), fmt.Sprintf("DROP TABLE IF EXISTS public.%s, public.%s", parts, added))
	})

	f := startFerry(t)
	taskID := strings.ReplaceAll(parts, "_", "-")
	f.createTaskFromSpec(conn, taskID, &taskv1.TaskSpec{
		Name:        "e2e partitions",
		Source:      sourceEndpoint(),
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: kafkaBootstrap(), Topic: parts},
		Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: parts}}},
		Kafka:       &taskv1.KafkaOptions{ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE, DdlTopic: parts + "_ddl"},
		SyncTypes:   &taskv1.SyncTypes{Schema: true, Full: true},
		Advanced:    &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2},
	})
	c := newConsumer(t, parts)
	var got []canalRow
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES ('eu', 3, 'three')`, parts))
	exec1(t, conn, fmt.Sprintf(`UPDATE public.%s SET region = 'us' WHERE id = 1`, parts))
	exec1(t, conn, fmt.Sprintf(`DELETE FROM public.%s WHERE id = 2`, parts))
	readCanalUntil(t, c, &got, "the partitioned table's snapshot and changes", func(rs []canalRow) bool { return len(rs) >= 6 })
	checkPartitionRows(t, got, parts)

	filter := "id % 2 = 0"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.control.ModifyObjects(ctx, &taskv1.ModifyObjectsRequest{TaskId: taskID, Objects: &taskv1.ObjectSelection{
		Tables: []*taskv1.TableSelection{{Schema: "public", Table: parts}, {Schema: "public", Table: added, Filter: filter}},
	}}); err != nil {
		t.Fatalf("ModifyObjects adding %s: %v", added, err)
	}
	wantSnap := 250
	readCanalUntil(t, c, &got, "the added table's snapshot", func(rs []canalRow) bool { return countSnapshot(rs, added) >= wantSnap })
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (1001, 'odd'), (1002, 'even')`, added))
	readCanalUntil(t, c, &got, "the added table's new rows", func(rs []canalRow) bool { return hasRow(rs, added, "1002") })
	if n := countSnapshot(got, added); n != wantSnap {
		t.Errorf("%s: %d snapshot rows, want %d (filter %q)", added, n, wantSnap, filter)
	}
	if hasRow(got, added, "1001") {
		t.Errorf("%s: row 1001 arrived through filter %q", added, filter)
	}
	t.Logf("PostgreSQL %d: %d messages; partitions under their root, %d snapshot rows of the added table", version, len(got), wantSnap)
	f.stopAndRelease(conn, taskID)
}

// checkPartitionRows expects the two snapshot rows, then the insert, the
// move (a DELETE and an INSERT) and the delete, all named for the root.
func checkPartitionRows(t *testing.T, got []canalRow, parts string) {
	t.Helper()
	want := []struct {
		snapshot   bool
		typ, ident string // region/id
	}{
		{true, "INSERT", "eu/1"}, {true, "INSERT", "us/2"},
		{false, "INSERT", "eu/3"}, {false, "DELETE", "eu/1"}, {false, "INSERT", "us/1"}, {false, "DELETE", "us/2"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d messages for the partitioned table, want %d", len(got), len(want))
	}
	for i, w := range want {
		m := got[i]
		if m.Table != parts || m.snapshot != w.snapshot || m.Type != w.typ || len(m.Data) != 1 {
			t.Fatalf("message %d: %s %s snapshot=%v with %d rows; want %s of %s snapshot=%v", i, m.Type, m.Table, m.snapshot, len(m.Data), w.typ, parts, w.snapshot)
		}
		row := m.Data[0]
		if ident := deref(row["region"]) + "/" + deref(row["id"]); ident != w.ident {
			t.Fatalf("message %d (%s): row %s, want %s", i, m.Type, ident, w.ident)
		}
	}
}

func countSnapshot(rs []canalRow, table string) int {
	n := 0
	for _, r := range rs {
		if r.Table == table && r.snapshot {
			n += len(r.Data)
		}
	}
	return n
}

func hasRow(rs []canalRow, table, id string) bool {
	for _, r := range rs {
		for _, d := range r.Data {
			if r.Table == table && deref(d["id"]) == id {
				return true
			}
		}
	}
	return false
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
