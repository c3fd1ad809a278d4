package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// TestChunkedFullSyncResumesAfterCaptureKill snapshots a keyed table in
// primary-key chunks beside the stream while a writer changes it, kills
// capture (SIGKILL) partway, and checks that full sync resumes at its next
// chunk rather than reading the table again, and that Kafka, rebuilt, equals
// the table.
func TestChunkedFullSyncResumesAfterCaptureKill(t *testing.T) {
	const rows = 100_000
	conn := pgConnect(t)
	big, small := uniqueName("e2e_cfs_big"), uniqueName("e2e_cfs_small")
	createVersionedTables(t, conn, map[string]int{big: rows, small: 1_000})
	createTopic(t, big, nil)
	col := collectChanges(t, big)
	col.expectBackfill(big)
	col.expectBackfill(small)
	f := startFerry(t)
	taskID := strings.ReplaceAll(big, "_", "-")
	w := startWriterSized(t, big, rows, small, 1_000)
	f.createFullSyncTask(conn, taskID, big, big, small)
	// Slow the snapshot enough to kill capture in the middle of it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.control.UpdateThrottle(ctx, &taskv1.UpdateThrottleRequest{TaskId: taskID,
		Full: &taskv1.FullSyncThrottle{RowsPerSecond: 20_000}}); err != nil {
		t.Fatalf("UpdateThrottle: %v", err)
	}

	var before uint64
	eventually(t, 120*time.Second, "a third of the big table to be confirmed", func() (bool, string) {
		for _, b := range f.task(taskID).GetHeartbeat().GetBackfills() {
			if b.GetTable() == big {
				before = b.GetRows()
				return before >= rows/3, fmt.Sprintf("%d rows confirmed", before)
			}
		}
		return false, "no backfill progress yet"
	})
	f.kill("capture")
	f.start("capture")
	t.Logf("capture killed with %d of %d rows of %s confirmed", before, rows, big)
	f.waitFullSyncDone(conn, taskID, w)
	w.finish(t)

	want := map[string]map[string]string{big: tableRows(t, big), small: tableRows(t, small)}
	eventually(t, 120*time.Second, "Kafka to hold both tables' final contents", func() (bool, string) {
		return col.matches(want)
	})
	// Resumed, not restarted: the rows read twice are at most the chunks in
	// flight when capture died (full sync reads 10,000-row chunks; one may
	// be in Kafka without its progress confirmed yet, and two more read
	// ahead of it, capture's backfillChunksInFlight), plus the rows the
	// writer inserts meanwhile, which the chunks read too.
	n := col.snapshotCount(big)
	if n < rows-rows/5 || n > rows+3*10_000+2_000 {
		t.Errorf("%s: %d snapshot messages for %d rows; a restart from scratch would be about %d", big, n, rows, rows+int(before))
	}
	st := f.state(taskID)
	if !st.GetFullSyncChunked() || !st.GetFullSyncDone() || f.activityCount(taskID, "FullSync") != 0 {
		t.Fatalf("state %v: want a chunked full sync, done, and no exported snapshot", st)
	}
	t.Logf("%s: %d snapshot messages for %d rows (%d read again after the kill)", big, n, rows, n-rows)
	f.stopAndRelease(conn, taskID)
}
