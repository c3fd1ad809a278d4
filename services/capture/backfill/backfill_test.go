package backfill

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/capture/decode"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
	"github.com/ferry-cdc/ferry/services/testenv"
	"github.com/ferry-cdc/ferry/services/tuple"
)

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
	bf := &Backfills{
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
		if err := bf.Observe(r, m, xid); err != nil {
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
	if err := bf.Observe(rel, &pglogrepl.UpdateMessage{RelationID: 42, NewTuple: textTuple("e", "")}, 104); err == nil ||
		!strings.Contains(err.Error(), "REPLICA IDENTITY FULL") {
		t.Fatalf("an update without its key: %v; want an error that says how to fix it", err)
	}

	c := &Chunk{n: 7, rel: rel, full: true, snap: snap, last: []string{"7"}, sent: next}
	for id := 1; id <= 7; id++ {
		c.events = append(c.events, &cdcv1.ChangeEvent{Snapshot: true, NewTuple: tuple.Of("x", strconv.Itoa(id))})
		c.keys = append(c.keys, encodeKey([]string{strconv.Itoa(id)}))
	}
	kept := bf.Keep(c, 5000)
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
	p := bf.Advance(c, len(kept), 5000)
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
	bf := &Backfills{tag: "slot_a:0011223344556677:"}
	for content, want := range map[string]string{
		"slot_a:0011223344556677:lw:3":  "lw 3",
		"slot_a:0011223344556677:hw:12": "hw 12",
		"slot_a:8899aabbccddeeff:hw:12": "", // an earlier stream's, replayed
		"slot_b:0011223344556677:hw:12": "",
		"slot_a:0011223344556677:xx:1":  "",
		"slot_a:0011223344556677:hw:0":  "",
		"slot_a:0011223344556677:hw:":   "",
	} {
		kind, n, ok := bf.ParseMark([]byte(content))
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

// A TRUNCATE of a table being backfilled counts as a change of every key:
// a chunk read before it, between its watermarks or in a snapshot that
// does not see it, would bring the emptied rows back, so none is kept; a
// chunk whose snapshot sees it is kept whole.
func TestBackfillDropsChunksATruncateEmptied(t *testing.T) {
	rel, other := testRelation(42, "t"), testRelation(43, "u")
	bf := &Backfills{
		tables:   []backfillTable{{ref: &taskv1.TableRef{Schema: "public", Table: "t"}, pk: []string{"id"}}},
		progress: []*cdcv1.BackfillProgress{{Table: "t"}},
		changed:  []map[string]keyChange{{}},
		matches:  map[uint32]relMatch{},
		chunks:   newChunkRegistry(),
		windows:  []int64{0},
		horizon:  90,
	}
	next := make(chan struct{}, 3)
	chunk := func(n int64, snapshot string) *Chunk {
		snap, err := parseXidSnapshot(snapshot)
		if err != nil {
			t.Fatal(err)
		}
		c := &Chunk{n: n, rel: rel, full: true, snap: snap, last: []string{"3"}, sent: next}
		for id := 1; id <= 3; id++ {
			c.events = append(c.events, &cdcv1.ChangeEvent{Snapshot: true, NewTuple: tuple.Of("x", strconv.Itoa(id))})
			c.keys = append(c.keys, encodeKey([]string{strconv.Itoa(id)}))
		}
		return c
	}
	// Between the watermarks of chunk 7.
	bf.windows[0] = 7
	bf.ObserveTruncate(other, 101)
	bf.ObserveTruncate(rel, 101)
	if kept := bf.Keep(chunk(7, "100:110:"), 5000); len(kept) != 0 {
		t.Fatalf("chunk 7 kept %d rows a TRUNCATE between its watermarks emptied", len(kept))
	}
	bf.Advance(chunk(7, "100:110:"), 0, 5000)
	// Before chunk 8's LW, by a transaction its snapshot does not see.
	bf.ObserveTruncate(rel, 112)
	bf.windows[0] = 8
	if kept := bf.Keep(chunk(8, "110:113:112"), 6000); len(kept) != 0 {
		t.Fatalf("chunk 8 kept %d rows its snapshot read before the TRUNCATE", len(kept))
	}
	bf.Advance(chunk(8, "110:113:112"), 0, 6000)
	bf.windows[0] = 9
	if kept := bf.Keep(chunk(9, "113:113:"), 7000); len(kept) != 3 {
		t.Fatalf("chunk 9, read after the TRUNCATE, kept %d of 3 rows", len(kept))
	}
	if bf.Advance(chunk(9, "113:113:"), 3, 7000); len(bf.truncated) != 0 {
		t.Fatalf("a TRUNCATE every later snapshot sees is still noted: %v", bf.truncated)
	}
}

func TestChunkQueryAppliesTheFilter(t *testing.T) {
	rel := testRelation(42, "t") // columns note, id
	rel.Proto = &cdcv1.Relation{Columns: []*cdcv1.Column{{Name: "note", TypeName: "text"}, {Name: "id", TypeName: "bigint"}}}
	q, err := newChunkQuery(backfillTable{ref: &taskv1.TableRef{Schema: "public", Table: "t"}, pk: []string{"id"}}, rel, "r", 10)
	if err != nil {
		t.Fatal(err)
	}
	q.filter = "(note = 'eu'::text)"
	want := `COPY (SELECT "note", "id" FROM ONLY "public"."t" WHERE ((note = 'eu'::text)) ORDER BY "id" LIMIT 10) TO STDOUT`
	if got := q.sql(nil); got != want {
		t.Errorf("first chunk:\n got %s\nwant %s", got, want)
	}
	want = `COPY (SELECT "note", "id" FROM ONLY "public"."t" WHERE ("id") > ('7'::bigint) AND ((note = 'eu'::text)) ORDER BY "id" LIMIT 10) TO STDOUT`
	if got := q.sql([]string{"7"}); got != want {
		t.Errorf("next chunk:\n got %s\nwant %s", got, want)
	}
}

// Helpers as capture's tests have them.

// colText is column i's text in tu ("" for NULL or unchanged TOAST).
func colText(tu *cdcv1.Tuple, i int) string {
	text, _ := tuple.Field(tu, i)
	return string(text)
}

// colInt is column i of tu read as an integer; a column that is not one
// panics, failing the test that asked.
func colInt(tu *cdcv1.Tuple, i int) int64 {
	n, err := strconv.ParseInt(colText(tu, i), 10, 64)
	if err != nil {
		panic(fmt.Sprintf("column %d is not an integer: %v", i, err))
	}
	return n
}

func quoteIdent(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

func contains(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// superSource is the local stack's superuser.
func superSource(t *testing.T) *taskv1.SourceEndpoint {
	t.Helper()
	src := testenv.Source(t)
	src.User = "postgres"
	if v := os.Getenv("FERRY_PG_SUPERUSER"); v != "" {
		src.User = v
	}
	if os.Getenv("FERRY_PG_SUPERUSER_PASSWORD") == "" {
		t.Setenv("FERRY_PG_SUPERUSER_PASSWORD", "postgres") // deploy/local/stack.sh's default
	}
	src.Password = &taskv1.SecretRef{Source: &taskv1.SecretRef_Env{Env: "FERRY_PG_SUPERUSER_PASSWORD"}}
	return src
}

// superPG connects as the local stack's superuser.
func superPG(t *testing.T) *pgx.Conn {
	t.Helper()
	src := superSource(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgsource.Connect(ctx, src)
	if err != nil {
		t.Fatalf("connecting as the PostgreSQL superuser: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}
