package capture

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/capture/decode"
	"github.com/ferry-cdc/ferry/services/testenv"
	"github.com/ferry-cdc/ferry/services/tuple"
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

// textTuple is a pgoutput tuple of text values; "" stands for an unchanged
// TOAST value.
func textTuple(values ...string) *pglogrepl.TupleData {
	td := &pglogrepl.TupleData{ColumnNum: uint16(len(values))}
	for _, v := range values {
		col := &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeText, Data: []byte(v), Length: uint32(len(v))}
		if v == "" {
			col = &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeToast}
		}
		td.Columns = append(td.Columns, col)
	}
	return td
}

func testRelation(oid uint32, name string) *decode.Relation {
	return &decode.Relation{Msg: &pglogrepl.RelationMessage{RelationID: oid, Namespace: "public", RelationName: name,
		Columns: []*pglogrepl.RelationMessageColumn{{Name: "note"}, {Name: "id", Flags: 1}}}}
}

// The drop rule, change by change: a chunk row goes only when the stream
// already carries a newer version of it.
func TestBackfillDropsTheRowsTheStreamSupersedes(t *testing.T) {
	rel, other := testRelation(42, "t"), testRelation(43, "u")
	bf := &backfiller{
		tables:   []backfillTable{{ref: &taskv1.TableRef{Schema: "public", Table: "t"}, pk: []string{"id"}}},
		progress: []*cdcv1.BackfillProgress{{Table: "t", Rows: 10}},
		changed:  []map[string]keyChange{{}},
		matches:  map[uint32]relMatch{},
		chunks:   newChunkRegistry(),
		windows:  []int64{0},
		horizon:  90,
	}
	next := make(chan struct{}, 1)
	snap, err := parseXidSnapshot("100:110:105")
	if err != nil {
		t.Fatal(err)
	}
	observe := func(r *decode.Relation, m pglogrepl.Message, xid uint32) {
		t.Helper()
		if err := bf.observe(r, m, xid); err != nil {
			t.Fatal(err)
		}
	}
	// Before the LW: transactions the snapshot sees are in the chunk, the
	// others (committed but not yet visible when it was taken) are not.
	observe(rel, &pglogrepl.UpdateMessage{RelationID: 42, NewTuple: textTuple("a", "1")}, 99)
	observe(rel, &pglogrepl.DeleteMessage{RelationID: 42, OldTuple: textTuple("", "6")}, 89) // older than any chunk
	observe(rel, &pglogrepl.UpdateMessage{RelationID: 42, NewTuple: textTuple("b", "2")}, 105)
	observe(rel, &pglogrepl.DeleteMessage{RelationID: 42, OldTuple: textTuple("", "3")}, 111)
	// Between the watermarks every change counts, a key change under both
	// keys, and other tables not at all.
	bf.windows[0] = 7
	observe(rel, &pglogrepl.UpdateMessage{RelationID: 42, NewTuple: textTuple("", "4")}, 101)
	observe(rel, &pglogrepl.UpdateMessage{RelationID: 42, OldTuple: textTuple("", "5"), NewTuple: textTuple("c", "50")}, 102)
	observe(other, &pglogrepl.InsertMessage{RelationID: 43, Tuple: textTuple("d", "6")}, 103)
	if err := bf.observe(rel, &pglogrepl.UpdateMessage{RelationID: 42, NewTuple: textTuple("e", "")}, 104); err == nil ||
		!strings.Contains(err.Error(), "REPLICA IDENTITY FULL") {
		t.Fatalf("an update without its key: %v; want an error that says how to fix it", err)
	}

	c := &chunk{n: 7, rel: rel, full: true, snap: snap, last: []string{"7"}, sent: next}
	for id := 1; id <= 7; id++ {
		c.events = append(c.events, &cdcv1.ChangeEvent{Snapshot: true, NewTuple: tuple.Of("x", strconv.Itoa(id))})
		c.keys = append(c.keys, encodeKey([]string{strconv.Itoa(id)}))
	}
	kept := bf.keep(c, 5000)
	var ids []int64
	for _, ev := range kept {
		ids = append(ids, colInt(ev.GetNewTuple(), 1))
		if ev.GetLsn() != 5000 || ev.GetCommitLsn() != 5000 {
			t.Fatalf("kept row %v is not at the high watermark", ev)
		}
	}
	if !slices.Equal(ids, []int64{1, 6, 7}) {
		t.Fatalf("kept ids %v, want [1 6 7]", ids)
	}
	p := bf.advance(c, len(kept), 5000)
	if p.GetRows() != 13 || !slices.Equal(p.GetAfterKey(), []string{"7"}) || p.GetDone() || p.GetLsn() != 5000 || bf.windows[0] != 0 {
		t.Fatalf("progress %v, window %d", p, bf.windows[0])
	}
	// Every later snapshot sees what committed before this one's xmin.
	if _, ok := bf.changed[0][encodeKey([]string{"1"})]; ok || len(bf.changed[0]) != 5 || bf.horizon != 100 {
		t.Fatalf("after the chunk the loop remembers %v, horizon %d", bf.changed[0], bf.horizon)
	}
	observe(rel, &pglogrepl.InsertMessage{RelationID: 42, Tuple: textTuple("f", "8")}, 99)
	if len(bf.changed[0]) != 5 {
		t.Fatalf("a change older than the horizon was noted: %v", bf.changed[0])
	}
	select {
	case <-next:
	default:
		t.Fatal("the reader was not let go on")
	}
}

func TestXidSnapshotVisibility(t *testing.T) {
	s, err := parseXidSnapshot("100:110:105,107")
	if err != nil {
		t.Fatal(err)
	}
	for xid, want := range map[uint32]bool{99: true, 100: true, 104: true, 105: false, 107: false, 109: true, 110: false, 200: false} {
		if got := s.visible(xid); got != want {
			t.Errorf("visible(%d) = %v, want %v", xid, got, want)
		}
	}
	// Epoch-qualified xids across the 32-bit wraparound.
	w, err := parseXidSnapshot("4294967290:4294967300:")
	if err != nil {
		t.Fatal(err)
	}
	for xid, want := range map[uint32]bool{4294967280: true, 4294967295: true, 3: true, 4: false, 5: false} {
		if got := w.visible(xid); got != want {
			t.Errorf("across the wraparound: visible(%d) = %v, want %v", xid, got, want)
		}
	}
	for _, bad := range []string{"", "1:2", "a:2:", "1:2:x"} {
		if _, err := parseXidSnapshot(bad); err == nil {
			t.Errorf("parseXidSnapshot(%q) accepted", bad)
		}
	}
}

func TestBackfillWatermarksBelongToOneStream(t *testing.T) {
	bf := &backfiller{tag: "slot_a:0011223344556677:"}
	for content, want := range map[string]string{
		"slot_a:0011223344556677:lw:3":  "lw 3",
		"slot_a:0011223344556677:hw:12": "hw 12",
		"slot_a:8899aabbccddeeff:hw:12": "", // an earlier stream's, replayed
		"slot_b:0011223344556677:hw:12": "",
		"slot_a:0011223344556677:xx:1":  "",
		"slot_a:0011223344556677:hw:0":  "",
		"slot_a:0011223344556677:hw:":   "",
	} {
		kind, n, ok := bf.parseMark([]byte(content))
		got := ""
		if ok {
			got = fmt.Sprintf("%s %d", kind, n)
		}
		if got != want {
			t.Errorf("parseMark(%q) = %q, want %q", content, got, want)
		}
	}
	if got := bf.markContent("hw", 12); got != "slot_a:0011223344556677:hw:12" {
		t.Errorf("markContent = %q", got)
	}
}

func TestChunkQueryQuotesTheKey(t *testing.T) {
	rel := testRelation(42, "t")
	rel.Proto = &cdcv1.Relation{Columns: []*cdcv1.Column{{Name: "note", TypeName: "text"}, {Name: "id", TypeName: "character varying(20)"}}}
	q, err := newChunkQuery(backfillTable{ref: &taskv1.TableRef{Schema: "public", Table: "t"}, pk: []string{"id"}}, rel, "r", 500)
	if err != nil {
		t.Fatal(err)
	}
	want := `COPY (SELECT "note", "id" FROM ONLY "public"."t" ORDER BY "id" LIMIT 500) TO STDOUT`
	if got := q.sql(nil); got != want {
		t.Errorf("first chunk:\n got %s\nwant %s", got, want)
	}
	want = `COPY (SELECT "note", "id" FROM ONLY "public"."t" WHERE ("id") > (E'o''b\\x'::character varying(20)) ORDER BY "id" LIMIT 500) TO STDOUT`
	if got := q.sql([]string{`o'b\x`}); got != want {
		t.Errorf("next chunk:\n got %s\nwant %s", got, want)
	}
	if _, err := newChunkQuery(backfillTable{ref: &taskv1.TableRef{Table: "t"}, pk: []string{"gone"}}, rel, "r", 500); err == nil {
		t.Error("a key column the relation lacks was accepted")
	}
	if encodeKey([]string{"a:1", "b"}) == encodeKey([]string{"a", "1:b"}) {
		t.Error("two keys encode alike")
	}
}
