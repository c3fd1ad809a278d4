package capture

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// The table is added while it takes updates, deletes, inserts and key
// changes, some just ahead of the chunk being read. Replaying everything
// the stream sent, in order and by key, must give the table exactly.
func TestBackfillBesideLiveChangesRebuildsTheTable(t *testing.T) {
	client := startServer(t)
	conn := testenv.PG(t)
	name := testenv.UniqueName("bf_live")
	q := createTenants(t, name, 1000)
	r := newReplication(t, testenv.UniqueName("ferry_pub"), table("public", name))
	r.ensure(t, client)

	start := r.start()
	start.HeartbeatSeconds = 1
	start.BackfillChunkRows = 500
	start.Backfills = []*cdcv1.BackfillProgress{{Table: name}}
	s := openBackfillStream(t, client, start)
	ch := startChurn(t, q, 1000, func() []string {
		items, _, _ := s.snapshot()
		return lastFrame(items).GetAfterKey()
	})
	s.until(t, "the backfill to finish", func(items []bfItem) bool { return lastFrame(items).GetDone() })
	during := ch.ops.Load()
	// Changes after the backfill too, then let the stream catch up.
	s.until(t, "more changes", func([]bfItem) bool { return ch.ops.Load() >= during+50 })
	ch.halt(t)
	end := currentWAL(t, conn)
	items := s.until(t, "the stream to pass the last change", func(items []bfItem) bool { return itemsWatermark(items) >= end })

	frames := checkFrames(t, items, map[string]uint64{name: 0}, 500)
	if len(frames) < 10 {
		t.Fatalf("%d frames for 5,000 rows in chunks of 500", len(frames))
	}
	if f := frames[0]; f.GetEstimatedRows() != 5000 || f.GetSchema() != "" || f.GetTable() != name {
		t.Fatalf("first frame %v: want estimated_rows 5000 and the table as requested", f)
	}
	checkAfterKeys(t, conn, frames, nil)
	compareRows(t, replay(t, items), tableRows(t, conn, q))
	t.Logf("%d changes made during the backfill, %d in all; %d frames, %d snapshot rows sent",
		during, ch.ops.Load(), len(frames), frames[len(frames)-1].GetRows())
}

// A stream stopped mid-backfill resumes from the last frame whose lsn was
// acknowledged: the new stream reads only the rows after its after_key,
// and everything sent by both streams still replays to the table.
func TestBackfillResumesAfterTheLastAckedChunk(t *testing.T) {
	client := startServer(t)
	conn := testenv.PG(t)
	name := testenv.UniqueName("bf_resume")
	q := createTenants(t, name, 600)
	r := newReplication(t, testenv.UniqueName("ferry_pub"), table("public", name))
	r.ensure(t, client)

	start := r.start()
	start.HeartbeatSeconds = 1
	start.BackfillChunkRows = 300
	start.Backfills = []*cdcv1.BackfillProgress{{Schema: "public", Table: name}}
	first := openBackfillStream(t, client, start)
	var active atomic.Pointer[bfStream]
	active.Store(first)
	ch := startChurn(t, q, 600, func() []string {
		items, _, _ := active.Load().snapshot()
		return lastFrame(items).GetAfterKey()
	})
	first.until(t, "three chunks", func(items []bfItem) bool { return countFrames(items) >= 3 })
	first.close()
	items1, acked, _ := first.snapshot()
	// As the worker does: the newest frame that the acks made durable.
	var resume *cdcv1.BackfillProgress
	for _, it := range items1 {
		if it.frame != nil && it.frame.GetLsn() <= acked {
			resume = it.frame
		}
	}
	if resume == nil || resume.GetDone() {
		t.Fatalf("resuming from %v with %d acked: want an unfinished frame whose lsn was acked", resume, acked)
	}
	after := resume.GetAfterKey()

	start.StartLsn = acked
	start.Backfills = []*cdcv1.BackfillProgress{resume}
	second := openBackfillStream(t, client, start)
	active.Store(second)
	second.until(t, "the backfill to finish", func(items []bfItem) bool { return lastFrame(items).GetDone() })
	ch.halt(t)
	end := currentWAL(t, conn)
	items2 := second.until(t, "the stream to pass the last change", func(items []bfItem) bool { return itemsWatermark(items) >= end })

	frames1 := checkFrames(t, items1, map[string]uint64{name: 0}, 300)
	frames2 := checkFrames(t, items2, map[string]uint64{name: resume.GetRows()}, 300)
	checkAfterKeys(t, conn, frames2, after)
	if f := frames2[0]; f.GetEstimatedRows() != resume.GetEstimatedRows() || f.GetEstimatedRows() != 3000 {
		t.Fatalf("the resumed stream's first frame %v does not pass estimated_rows %d through", f, resume.GetEstimatedRows())
	}
	checkResumedRows(t, conn, items2, after)
	compareRows(t, replay(t, items1, items2), tableRows(t, conn, q))
	t.Logf("first stream: %d frames; resumed after %q at %d rows; second stream: %d frames, %d rows in all",
		len(frames1), after, resume.GetRows(), len(frames2), frames2[len(frames2)-1].GetRows())
}

// checkResumedRows: a resumed backfill reads only keys past after.
func checkResumedRows(t *testing.T, conn *pgx.Conn, items []bfItem, after []string) {
	t.Helper()
	var tenants []string
	var ids []int64
	for _, it := range items {
		for _, ev := range it.batch.GetEvents() {
			if ev.GetSnapshot() {
				tenants = append(tenants, colText(ev.GetNewTuple(), 0))
				ids = append(ids, colInt(ev.GetNewTuple(), 1))
			}
		}
	}
	if len(ids) == 0 {
		t.Fatal("the resumed stream sent no snapshot rows")
	}
	var behind int
	err := conn.QueryRow(context.Background(), `
		SELECT count(*) FROM unnest($1::text[], $2::int8[]) AS k(tenant, id)
		WHERE (k.tenant, k.id) <= ($3::text, $4::int8)`, tenants, ids, after[0], after[1]).Scan(&behind)
	if err != nil || behind != 0 {
		t.Fatalf("%d of %d snapshot rows of the resumed stream are not past %q (%v)", behind, len(ids), after, err)
	}
}

// With one reader (-backfill-readers 1), tables are read one after the
// other in the order given; an empty table takes one empty chunk, and a
// table already done is skipped. Several readers interleave the tables'
// frames (TestChunkedFullSyncReadsTablesAtOnce covers them).
func TestBackfillReadsTablesInTurn(t *testing.T) {
	client := startServerWith(t, func(s *Server) { s.BackfillReaders = 1 })
	conn := testenv.PG(t)
	empty, small, done := testenv.UniqueName("bf_empty"), testenv.UniqueName("bf_small"), testenv.UniqueName("bf_done")
	for _, name := range []string{empty, small, done} {
		q := quoteIdent("public", name)
		testenv.Exec(t, conn, `CREATE TABLE `+q+` (id int8 PRIMARY KEY, v text)`)
		t.Cleanup(func() { testenv.Exec(t, testenv.PG(t), `DROP TABLE IF EXISTS `+q) })
	}
	testenv.Exec(t, conn, `INSERT INTO `+quoteIdent("public", small)+` VALUES (1, 'a'), (2, 'b'), (3, 'c')`,
		`INSERT INTO `+quoteIdent("public", done)+` VALUES (1, 'x')`)
	r := newReplication(t, testenv.UniqueName("ferry_pub"), table("public", empty), table("public", small), table("public", done))
	r.ensure(t, client)
	start := r.start()
	start.BackfillChunkRows = 2
	start.Backfills = []*cdcv1.BackfillProgress{
		{Table: done, Done: true, Rows: 1, AfterKey: []string{"1"}},
		{Table: empty},
		{Table: small},
	}
	s := openBackfillStream(t, client, start)
	items := s.until(t, "both tables", func(items []bfItem) bool { return countFrames(items) >= 3 })
	var got []string
	for _, f := range checkFrames(t, items, map[string]uint64{}, 2) {
		got = append(got, fmt.Sprintf("%s %d %q %v", strings.SplitN(f.GetTable(), "_", 3)[1], f.GetRows(), f.GetAfterKey(), f.GetDone()))
	}
	want := []string{`empty 0 [] true`, `small 2 ["2"] false`, `small 3 ["3"] true`}
	if !slices.Equal(got, want) {
		t.Fatalf("frames %q, want %q", got, want)
	}
}

func TestBackfillRefusesTablesItCannotRead(t *testing.T) {
	client := startServer(t)
	conn := testenv.PG(t)
	nokey, nothing, outside := testenv.UniqueName("bf_nokey"), testenv.UniqueName("bf_nothing"), testenv.UniqueName("bf_outside")
	for _, ddl := range []string{
		`CREATE TABLE ` + quoteIdent("public", nokey) + ` (k text, v int)`,
		`CREATE TABLE ` + quoteIdent("public", nothing) + ` (id int PRIMARY KEY, v int)`,
		`ALTER TABLE ` + quoteIdent("public", nothing) + ` REPLICA IDENTITY NOTHING`,
		`CREATE TABLE ` + quoteIdent("public", outside) + ` (id int PRIMARY KEY)`,
	} {
		testenv.Exec(t, conn, ddl)
	}
	t.Cleanup(func() {
		testenv.Exec(t, testenv.PG(t), `DROP TABLE IF EXISTS `+quoteIdent("public", nokey)+`, `+
			quoteIdent("public", nothing)+`, `+quoteIdent("public", outside))
	})
	r := newReplication(t, testenv.UniqueName("ferry_pub"), table("public", nokey), table("public", nothing))
	r.ensure(t, client)
	for _, tc := range []struct {
		table string
		want  []string
	}{
		{nokey, []string{"has no primary key", "add a primary key", "remove the table from the task"}},
		{nothing, []string{"replica identity", "REPLICA IDENTITY DEFAULT"}},
		{outside, []string{"is not in publication", r.pub}},
	} {
		start := r.start()
		start.Backfills = []*cdcv1.BackfillProgress{{Schema: "public", Table: tc.table}}
		code, msg := streamError(t, client, &capturev1.StreamChangesRequest{Kind: &capturev1.StreamChangesRequest_Start{Start: start}})
		if code != codes.FailedPrecondition || !contains(msg, append(tc.want, tc.table)...) {
			t.Fatalf("backfill of %s: %v %q; want FailedPrecondition naming the table and saying %q", tc.table, code, msg, tc.want)
		}
	}
}
