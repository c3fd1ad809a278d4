package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestChunkedFullSyncReadsTablesAtOnce runs a keyed full sync of six
// tables, two of them changed by a writer, and checks that capture reads
// several of them at once, each on a session of its own (seen as COPYs of
// two or more of the tables running together in pg_stat_activity, which
// one reader never shows), and that Kafka, rebuilt, equals every table.
func TestChunkedFullSyncReadsTablesAtOnce(t *testing.T) {
	// Rows of about 450 bytes make each 10,000-row chunk's COPY last long
	// enough (tens of milliseconds) for samples to catch two at once: with
	// narrow rows and the stream over TLS, the readers spent most of their
	// time waiting for their chunk's watermark, and one run in three saw
	// no overlap although the readers ran in parallel.
	const tables, rows, pad = 6, 20_000, 400
	conn := pgConnect(t)
	base := uniqueName("e2e_par")
	sizes := map[string]int{}
	var names []string
	for i := range tables {
		names = append(names, fmt.Sprintf("%s_%d", base, i))
		sizes[names[i]] = rows
	}
	createVersionedTablesPadded(t, conn, sizes, pad)
	createTopic(t, names[0], nil)
	col := collectChanges(t, names[0])
	for _, n := range names {
		col.expectBackfill(n)
	}
	f := startFerry(t)
	taskID := strings.ReplaceAll(base, "_", "-")
	w := startWriterSized(t, names[0], rows, names[1], rows)
	f.createFullSyncTask(conn, taskID, names[0], names...)

	most, at := concurrentChunkReads(t, f, conn, taskID, base)
	if most < 2 {
		t.Fatalf("full sync ended without two of its tables ever read at once (at most %d)", most)
	}
	t.Logf("COPYs of %d tables seen running at once: %s", most, at)
	f.waitFullSyncDone(conn, taskID, w)
	w.finish(t)

	want := map[string]map[string]string{}
	for _, n := range names {
		want[n] = tableRows(t, n)
	}
	eventually(t, 120*time.Second, "Kafka to hold every table's final contents", func() (bool, string) {
		return col.matches(want)
	})
	col.checkNoViolations(t)
	st := f.state(taskID)
	if !st.GetFullSyncChunked() || !st.GetFullSyncDone() || f.activityCount(taskID, "FullSync") != 0 {
		t.Fatalf("state %v: want a chunked full sync, done, and no exported snapshot", st)
	}
	for _, r := range st.GetFullSyncRows() {
		if !r.GetDone() || r.GetRows() < rows-rows/5 {
			t.Errorf("full sync of %s: %d rows, done %v; want about %d, done", r.GetTable().GetTable(), r.GetRows(), r.GetDone(), rows)
		}
	}
	f.stopAndRelease(conn, taskID)
}

// concurrentChunkReads samples pg_stat_activity until full sync is done
// (or two tables were seen read at once) and returns the most tables whose
// chunk COPYs ran together, and which they were.
func concurrentChunkReads(t *testing.T, f *ferry, conn *pgx.Conn, taskID, base string) (int, string) {
	t.Helper()
	deadline := time.Now().Add(180 * time.Second)
	most, at := 0, ""
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for i := 0; time.Now().Before(deadline); i++ {
		var n int
		var which string
		err := conn.QueryRow(context.Background(), `
			SELECT count(DISTINCT substring(query from $1)), coalesce(string_agg(DISTINCT substring(query from $1), ' '), '')
			FROM pg_stat_activity
			WHERE state = 'active' AND query LIKE 'COPY (SELECT%' AND query LIKE '%' || $2 || '%'`,
			base+`_[0-9]+`, base).Scan(&n, &which)
		if err != nil {
			t.Fatalf("reading pg_stat_activity: %v", err)
		}
		if n > most {
			most, at = n, which
		}
		if most >= 2 {
			return most, at
		}
		if i%50 == 0 && f.state(taskID).GetFullSyncDone() {
			return most, at
		}
		<-tick.C
	}
	return most, at
}
