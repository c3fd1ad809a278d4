package capture

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

func TestUpdateThrottleNeedsASlot(t *testing.T) {
	s := NewServer(slog.New(slog.DiscardHandler))
	_, err := s.UpdateThrottle(context.Background(), &capturev1.UpdateThrottleRequest{Incremental: &taskv1.IncrementalThrottle{}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("UpdateThrottle without slot_name = %v, want InvalidArgument", err)
	}
	resp, err := s.UpdateThrottle(context.Background(), &capturev1.UpdateThrottleRequest{SlotName: "nobody"})
	if err != nil || resp.GetStreamsUpdated() != 0 {
		t.Fatalf("UpdateThrottle on a slot with no calls = %v, %v; want 0 updated", resp, err)
	}
}

// createThrottled makes a table of (id, note) with rows 1..n.
func createThrottled(t *testing.T, n int) (name, quoted string) {
	t.Helper()
	name = testenv.UniqueName("throttled")
	quoted = quoteIdent("public", name)
	testenv.Exec(t, testenv.PG(t), `CREATE TABLE `+quoted+` (id int8 PRIMARY KEY, note text)`)
	t.Cleanup(func() { testenv.Exec(t, testenv.PG(t), `DROP TABLE IF EXISTS `+quoted) })
	if n > 0 {
		testenv.Exec(t, testenv.PG(t), `INSERT INTO `+quoted+` SELECT g, 'row ' || g FROM generate_series(1, `+strconv.Itoa(n)+`) g`)
	}
	return name, quoted
}

func insertRows(t *testing.T, quoted string, from, to int) {
	t.Helper()
	testenv.Exec(t, testenv.PG(t), `INSERT INTO `+quoted+` SELECT g, 'row ' || g FROM generate_series(`+strconv.Itoa(from)+`, `+strconv.Itoa(to)+`) g`)
}

func TestStreamThrottleBoundsTheRateAndChangesLive(t *testing.T) {
	client := startServer(t)
	name, q := createThrottled(t, 0)
	r := newReplication(t, testenv.UniqueName("ferry_pub"), table("public", name))
	r.ensure(t, client)
	start := r.start()
	start.MaxBatchEvents = 50
	start.Throttle = &taskv1.IncrementalThrottle{RowsPerSecond: 200}
	s := openStream(t, client, start)

	begun := time.Now()
	insertRows(t, q, 1, 2000)
	s.until(t, "500 rows", func(bs []*cdcv1.ChangeBatch) bool { return len(events(bs)) >= 500 })
	// A full bucket (200 rows), then 200 a second: 500 rows take 1.5 s.
	if got := time.Since(begun); got < 1400*time.Millisecond {
		t.Fatalf("500 rows arrived after %s at 200 rows/s; want at least 1.5s", got)
	}

	resp, err := client.UpdateThrottle(context.Background(), &capturev1.UpdateThrottleRequest{
		SlotName: r.slot, Incremental: &taskv1.IncrementalThrottle{},
	})
	if err != nil || resp.GetStreamsUpdated() != 1 {
		t.Fatalf("UpdateThrottle = %v, %v; want the one stream updated", resp, err)
	}
	lifted := time.Now()
	batches := s.untilEvents(t, 2000)
	// Still throttled, the last 1500 rows would need 7.5 s.
	if got := time.Since(lifted); got > 4*time.Second {
		t.Fatalf("the rest took %s after the throttle was lifted; want well under the 7.5s it would take throttled", got)
	}
	checkWatermarks(t, batches)
	for i, ev := range events(batches) {
		if id := colInt(ev.GetNewTuple(), 0); id != int64(i+1) {
			t.Fatalf("event %d has id %d: throttling must not lose or reorder rows", i, id)
		}
	}
}

func TestThrottledStreamKeepsTheWalsenderAnswered(t *testing.T) {
	// Every session of this test gets a 1.5 s wal_sender_timeout, so a
	// stream that held a batch back without answering the walsender would
	// be dropped long before the 3 s the throttle holds it.
	t.Setenv("PGOPTIONS", "-c wal_sender_timeout=1500ms")
	client := startServer(t)
	name, q := createThrottled(t, 0)
	r := newReplication(t, testenv.UniqueName("ferry_pub"), table("public", name))
	confirmed := r.ensure(t, client).GetConfirmedLsn()
	start := r.start()
	start.MaxBatchDelayMs = 1000 // one batch of all 400 rows
	start.Throttle = &taskv1.IncrementalThrottle{RowsPerSecond: 100}
	s := openStream(t, client, start)

	begun := time.Now()
	insertRows(t, q, 1, 400)
	s.untilEvents(t, 400)
	if got := time.Since(begun); got < 2900*time.Millisecond {
		t.Fatalf("400 rows at 100 rows/s arrived after %s; want at least 3s", got)
	}
	insertRows(t, q, 401, 401)
	s.untilEvents(t, 401)
	if err := s.failure(); err != nil {
		t.Fatalf("the throttled stream failed: %v", err)
	}
	// No ack was sent: the status updates sent while throttled confirmed
	// nothing.
	if got := readSlot(t, testenv.PG(t), r.slot).confirmed; uint64(got) != confirmed {
		t.Fatalf("slot confirmed %s without any ack; want it still at %d", got, confirmed)
	}
}

// publicationOnly creates the replication's publication, as full sync does.
func (r replication) publicationOnly(t *testing.T, c capturev1.CaptureServiceClient) {
	t.Helper()
	_, err := c.EnsureReplication(context.Background(), &capturev1.EnsureReplicationRequest{
		Source: testenv.Source(t), SlotName: r.slot, PublicationName: r.pub, Tables: r.tables, PublicationOnly: true,
	})
	if err != nil {
		t.Fatalf("EnsureReplication(publication_only): %v", err)
	}
}

func TestSnapshotThrottleBoundsRowsAndChangesLive(t *testing.T) {
	client := startServer(t)
	name, _ := createThrottled(t, 3000)
	r := newReplication(t, testenv.UniqueName("ferry_pub"), table("public", name))
	r.publicationOnly(t, client)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	begun := time.Now()
	stream, err := client.ReadSnapshot(ctx, &capturev1.ReadSnapshotRequest{
		Source: testenv.Source(t), SlotName: r.slot, PublicationName: r.pub, Tables: r.tables,
		MaxBatchEvents: 100, Parallelism: 1, Throttle: &taskv1.FullSyncThrottle{RowsPerSecond: 200},
	})
	if err != nil {
		t.Fatal(err)
	}
	var rows int
	var lifted time.Time
	var last *capturev1.SnapshotProgress
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("ReadSnapshot: %v", err)
		}
		rows += len(resp.GetBatch().GetEvents())
		if p := resp.GetProgress(); p != nil {
			last = p
		}
		if rows < 500 || !lifted.IsZero() {
			continue
		}
		if got := time.Since(begun); got < 1400*time.Millisecond {
			t.Fatalf("500 snapshot rows arrived after %s at 200 rows/s; want at least 1.5s", got)
		}
		up, err := client.UpdateThrottle(ctx, &capturev1.UpdateThrottleRequest{SlotName: r.slot, Full: &taskv1.FullSyncThrottle{}})
		if err != nil || up.GetStreamsUpdated() != 1 {
			t.Fatalf("UpdateThrottle = %v, %v; want the snapshot updated", up, err)
		}
		lifted = time.Now()
	}
	if rows != 3000 || !last.GetDone() || last.GetTables()[0].GetRows() != 3000 {
		t.Fatalf("snapshot sent %d rows, final progress %v; want 3000 and done", rows, last)
	}
	// Still throttled, the last 2500 rows would need 12.5 s.
	if got := time.Since(lifted); got > 5*time.Second {
		t.Fatalf("the rest took %s after the throttle was lifted; want well under 12.5s", got)
	}
}

func TestSnapshotThrottleLimitsQueries(t *testing.T) {
	client := startServer(t)
	var tables []*taskv1.TableRef
	want := map[string]uint64{}
	for range 3 {
		name, _ := createThrottled(t, 1)
		tables = append(tables, table("public", name))
		want[name] = 1
	}
	r := newReplication(t, testenv.UniqueName("ferry_pub"), tables...)
	r.publicationOnly(t, client)
	begun := time.Now()
	snap := readSnapshot(t, client, &capturev1.ReadSnapshotRequest{
		Source: testenv.Source(t), SlotName: r.slot, PublicationName: r.pub, Tables: r.tables,
		Parallelism: 3, Throttle: &taskv1.FullSyncThrottle{QueriesPerSecond: 1},
	})
	// One COPY per table at one query a second: the third starts 2 s in.
	if got := time.Since(begun); got < 1900*time.Millisecond {
		t.Fatalf("three tables at 1 query/s read in %s; want at least 2s", got)
	}
	checkSnapshotShape(t, snap, want)
}
