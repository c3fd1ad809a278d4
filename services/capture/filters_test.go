package capture

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/capture/signal"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// filterEnv is a private server (filters lock tables while they are
// checked, and a publication's filter changes what other tests' UPDATEs
// may do) with a capture server.
type filterEnv struct {
	pg        *testenv.Postgres
	client    capturev1.CaptureServiceClient
	slot, pub string
}

func newFilterEnv(t *testing.T, stmts ...string) *filterEnv {
	t.Helper()
	e := &filterEnv{pg: testenv.StartPostgres(t), client: startServer(t), slot: "ferry_filter_slot", pub: "ferry_filter_pub"}
	testenv.Exec(t, e.pg.Conn(t), stmts...)
	return e
}

func filtered(tbl, filter string) *capturev1.TableFilter {
	return &capturev1.TableFilter{Table: table("public", tbl), Filter: filter}
}

// ensure runs EnsureReplication on tables with filters; slotless asks for
// the publication only.
func (e *filterEnv) ensure(slotless bool, tables []string, filters ...*capturev1.TableFilter) (*capturev1.EnsureReplicationResponse, error) {
	req := &capturev1.EnsureReplicationRequest{Source: e.pg.Source(), PublicationName: e.pub, Filters: filters, PublicationOnly: slotless}
	if !slotless {
		req.SlotName = e.slot
	}
	for _, name := range tables {
		req.Tables = append(req.Tables, table("public", name))
	}
	return e.client.EnsureReplication(context.Background(), req)
}

// rowFilters reads the publication's filters as PostgreSQL reports them,
// or before 15, the filters Ferry evaluates as their row holds them.
func (e *filterEnv) rowFilters(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	conn := e.pg.SuperConn(t)
	if e.pg.Major >= 15 {
		rows, err := conn.Query(ctx, `SELECT tablename, coalesce(rowfilter, '') FROM pg_publication_tables WHERE pubname = $1`, e.pub)
		if err != nil {
			t.Fatal(err)
		}
		return collectFilters(t, rows)
	}
	exprs, err := signal.ReadFilters(ctx, conn, e.pub)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `SELECT tablename, coalesce($2::jsonb ->> format('"%s"."%s"', schemaname, tablename), '')
		FROM pg_publication_tables WHERE pubname = $1 AND schemaname <> '_ferry'`, e.pub, mustJSON(t, exprs))
	if err != nil {
		t.Fatal(err)
	}
	return collectFilters(t, rows)
}

func collectFilters(t *testing.T, rows pgx.Rows) map[string]string {
	t.Helper()
	out := map[string]string{}
	var name, filter string
	if _, err := pgx.ForEachRow(rows, []any{&name, &filter}, func() error { out[name] = filter; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ferryRendering is Ferry's rendering of the filters these tests set, as
// their row holds them before PostgreSQL 15, by PostgreSQL's rendering.
var ferryRendering = map[string]string{
	"(region = 'eu'::text)": `("region" = 'eu'::pg_catalog.text)`,
	"(region = 'us'::text)": `("region" = 'us'::pg_catalog.text)`,
	"(id > 100)":            `("id" > '100'::pg_catalog.int4)`,
	"(id > 10)":             `("id" > '10'::pg_catalog.int4)`,
}

func (e *filterEnv) expectFilters(t *testing.T, want map[string]string) {
	t.Helper()
	if e.pg.Major < 15 {
		ferry := map[string]string{}
		for k, v := range want {
			ferry[k] = v
			if v != "" {
				ferry[k] = ferryRendering[v]
			}
		}
		want = ferry
	}
	if got := e.rowFilters(t); !mapsEqual(got, want) {
		t.Fatalf("filters = %v, want %v (PostgreSQL %d)", got, want, e.pg.Major)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// opsOf renders each event as "op table id", the id from the new row, or
// from the old one for a DELETE.
func opsOf(batches []*cdcv1.ChangeBatch) []string {
	names := map[uint32]string{}
	for _, b := range batches {
		for _, r := range b.GetRelations() {
			names[r.GetOid()] = r.GetTable()
		}
	}
	var out []string
	for _, ev := range events(batches) {
		values := ev.GetNewTuple()
		if ev.GetOp() == cdcv1.Operation_OPERATION_DELETE {
			values = ev.GetOldTuple()
		}
		op := strings.TrimPrefix(ev.GetOp().String(), "OPERATION_")
		out = append(out, fmt.Sprintf("%s %s %d", op, names[ev.GetRelationOid()], colInt(values, 0)))
	}
	return out
}

// The server filters the stream. An UPDATE that crosses the filter arrives
// as what it did to the filtered table: an INSERT when the row enters it,
// a DELETE when it leaves; under REPLICA IDENTITY FULL the filter may use
// any column, otherwise only the key's, where only a key change crosses it.
// A changed filter is applied, and a removed one removed.
func TestRowFilterStreamsMatchingRows(t *testing.T) {
	e := newFilterEnv(t,
		"CREATE TABLE orders (id int8 PRIMARY KEY, region text, amount int)",
		"ALTER TABLE orders REPLICA IDENTITY FULL",
		"CREATE TABLE keyed (id int8 PRIMARY KEY, note text)")
	tables := []string{"orders", "keyed"}
	res, err := e.ensure(false, tables, filtered("orders", "region = 'eu'"), filtered("keyed", "id > 100"))
	if err != nil || !res.GetSlotCreated() || !res.GetPublicationCreated() {
		t.Fatalf("EnsureReplication with filters: %v, %v", res, err)
	}
	e.expectFilters(t, map[string]string{"orders": "(region = 'eu'::text)", "keyed": "(id > 100)"})

	s := openStream(t, e.client, &capturev1.StartStream{Source: e.pg.Source(), SlotName: e.slot, PublicationName: e.pub, StartLsn: res.GetConfirmedLsn()})
	conn := e.pg.Conn(t)
	testenv.Exec(t, conn,
		"INSERT INTO orders VALUES (1, 'eu', 10), (2, 'us', 20)",
		"UPDATE orders SET region = 'eu' WHERE id = 2", // enters
		"UPDATE orders SET region = 'us' WHERE id = 1", // leaves
		"UPDATE orders SET amount = 21 WHERE id = 2",   // stays in
		"UPDATE orders SET amount = 11 WHERE id = 1",   // stays out
		"DELETE FROM orders WHERE id IN (1, 2)",
		"INSERT INTO keyed VALUES (1, 'a'), (101, 'b')",
		"UPDATE keyed SET note = 'c' WHERE id = 1",
		"UPDATE keyed SET id = 102 WHERE id = 1", // the key enters
		"UPDATE keyed SET id = 5 WHERE id = 101", // the key leaves
	)
	want := []string{
		"INSERT orders 1", "INSERT orders 2", "DELETE orders 1", "UPDATE orders 2", "DELETE orders 2",
		"INSERT keyed 101", "INSERT keyed 102", "DELETE keyed 101",
	}
	if got := opsOf(s.untilEvents(t, len(want))); !slices.Equal(got, want) {
		t.Fatalf("stream carried %q, want %q", got, want)
	}

	// A changed filter: the publication is altered, the stream follows.
	if _, err := e.ensure(false, tables, filtered("orders", "region = 'us'")); err != nil {
		t.Fatalf("changing the filter: %v", err)
	}
	e.expectFilters(t, map[string]string{"orders": "(region = 'us'::text)", "keyed": ""})
	testenv.Exec(t, conn, "INSERT INTO orders VALUES (3, 'us', 1), (4, 'eu', 1)", "INSERT INTO keyed VALUES (6, 'd')")
	want = append(want, "INSERT orders 3", "INSERT keyed 6")
	if got := opsOf(s.untilEvents(t, len(want))); !slices.Equal(got, want) {
		t.Fatalf("after the change the stream carried %q, want %q", got, want)
	}
	// The same request again changes nothing.
	if _, err := e.ensure(false, tables, filtered("orders", "region = 'us'")); err != nil {
		t.Fatalf("the same filter again: %v", err)
	}
	e.expectFilters(t, map[string]string{"orders": "(region = 'us'::text)", "keyed": ""})
}

// A filter PostgreSQL would let the application's UPDATEs fail on, or does
// not accept at all, is refused with a message naming the table, the
// filter and the fix, and the publication stays as it was.
func TestRowFilterRefusalsLeaveThePublication(t *testing.T) {
	e := newFilterEnv(t,
		"CREATE TABLE plain (id int8 PRIMARY KEY, region text)",
		"CREATE TABLE other (id int8 PRIMARY KEY)")
	tables := []string{"plain", "other"}
	if _, err := e.ensure(true, tables, filtered("plain", "id > 10")); err != nil {
		t.Fatalf("EnsureReplication: %v", err)
	}
	before := map[string]string{"plain": "(id > 10)", "other": ""}
	e.expectFilters(t, before)

	cases := []struct {
		what    string
		tables  []string
		filters []*capturev1.TableFilter
		code    codes.Code
		parts   []string
	}{
		{"a column outside the replica identity", tables, []*capturev1.TableFilter{filtered("plain", "region = 'eu'")}, codes.FailedPrecondition,
			[]string{`"public"."plain"`, `"region = 'eu'"`, "region", "replica identity", `ALTER TABLE "public"."plain" REPLICA IDENTITY FULL`, `"ferry_filter_pub" left unchanged`}},
		{"an unknown column", tables, []*capturev1.TableFilter{filtered("plain", "regionx = 'eu'")}, codes.InvalidArgument,
			[]string{`"public"."plain"`, `"regionx = 'eu'"`, `column "regionx" does not exist`}},
		{"a syntax error", tables, []*capturev1.TableFilter{filtered("plain", "id >")}, codes.InvalidArgument,
			[]string{`"public"."plain"`, "syntax error"}},
		{"a second statement", tables, []*capturev1.TableFilter{filtered("plain", "true); DROP TABLE other; CREATE PUBLICATION x FOR TABLE other WHERE (true")}, codes.InvalidArgument,
			[]string{"cannot insert multiple commands"}},
		{"a second table", tables, []*capturev1.TableFilter{filtered("plain", "true), TABLE other WHERE (true")}, codes.InvalidArgument,
			[]string{"outside its own WHERE clause"}},
		{"a table not published", []string{"other"}, []*capturev1.TableFilter{filtered("plain", "id > 1")}, codes.InvalidArgument,
			[]string{"filters[0]", `"public"."plain"`, "not among the tables"}},
		{"a table filtered twice", tables, []*capturev1.TableFilter{filtered("plain", "id > 1"), filtered("plain", "id > 2")}, codes.InvalidArgument,
			[]string{"filters[1]", "second time"}},
	}
	if e.pg.Major < 15 {
		// Ferry's check prepares SELECT ... WHERE (filter), where the
		// second statement and the second table are syntax errors.
		cases[3].parts = []string{"syntax error"}
		cases[4].parts = []string{"syntax error"}
	}
	for _, c := range cases {
		_, err := e.ensure(true, c.tables, c.filters...)
		checkStatus(t, c.what, status.Convert(err), c.code, c.parts...)
		e.expectFilters(t, before)
	}
	_, err := e.client.EnsureReplication(context.Background(), &capturev1.EnsureReplicationRequest{
		Source: e.pg.Source(), PublicationName: e.pub, PublicationOnly: true, Schemas: []string{"public"},
		Tables: []*taskv1.TableRef{table("public", "plain")}, Filters: []*capturev1.TableFilter{filtered("plain", "id > 1")},
	})
	checkStatus(t, "a table in a whole schema", status.Convert(err), codes.InvalidArgument, `schema "public" is published whole`)
	e.expectFilters(t, before)
	// The application's writes still work, and no scratch publication stays.
	testenv.Exec(t, e.pg.Conn(t), "INSERT INTO plain VALUES (1, 'eu'), (11, 'us')", "UPDATE plain SET region = 'x'", "DELETE FROM plain",
		"SELECT 1 FROM other")
	var pubs int
	if err := e.pg.SuperConn(t).QueryRow(context.Background(), "SELECT count(*) FROM pg_publication").Scan(&pubs); err != nil || pubs != 1 {
		t.Fatalf("%d publications (%v), want only the task's", pubs, err)
	}
}

// Full sync reads a filtered table through the publication's filter, and
// so does a backfill, chunk by chunk: both hold exactly the rows the
// stream would.
func TestRowFilterSnapshotAndBackfill(t *testing.T) {
	e := newFilterEnv(t,
		"CREATE TABLE items (id int8 PRIMARY KEY, region text)",
		"ALTER TABLE items REPLICA IDENTITY FULL",
		"INSERT INTO items SELECT g, CASE WHEN g % 3 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(1, 20) g",
		"CREATE TABLE whole (id int8 PRIMARY KEY)",
		"INSERT INTO whole SELECT generate_series(1, 4)")
	tables := []string{"items", "whole"}
	if _, err := e.ensure(true, tables, filtered("items", "region = 'eu' AND id <> 9")); err != nil {
		t.Fatalf("EnsureReplication: %v", err)
	}
	snap := readSnapshot(t, e.client, &capturev1.ReadSnapshotRequest{
		Source: e.pg.Source(), SlotName: e.slot, PublicationName: e.pub, MaxBatchEvents: 2,
		Tables: []*taskv1.TableRef{table("public", "items"), table("public", "whole")},
	})
	if got, want := rowsOf(snap.batches, "public", "items"), []int64{3, 6, 12, 15, 18}; !slices.Equal(got, want) {
		t.Errorf("snapshot of items = %v, want %v", got, want)
	}
	if got, want := rowsOf(snap.batches, "public", "whole"), []int64{1, 2, 3, 4}; !slices.Equal(got, want) {
		t.Errorf("snapshot of whole = %v, want %v", got, want)
	}
	final := snap.progress[len(snap.progress)-1]
	if !final.GetDone() || final.GetTables()[0].GetRows() != 5 {
		t.Errorf("final progress %v, want done with 5 rows of items", final)
	}

	// The slot the snapshot created streams on; a backfill of the same
	// table, two rows a chunk, takes the filter as the publication has it.
	start := &capturev1.StartStream{Source: e.pg.Source(), SlotName: e.slot, PublicationName: e.pub,
		StartLsn: snap.started.GetConsistentLsn(), BackfillChunkRows: 2,
		Backfills: []*cdcv1.BackfillProgress{{Schema: "public", Table: "items"}}}
	s := openBackfillStream(t, e.client, start)
	items := s.until(t, "the backfill to finish", func(items []bfItem) bool { return lastFrame(items).GetDone() })
	var batches []*cdcv1.ChangeBatch
	for _, it := range items {
		if it.batch != nil {
			batches = append(batches, it.batch)
		}
	}
	if got, want := rowsOf(batches, "public", "items"), []int64{3, 6, 12, 15, 18}; !slices.Equal(got, want) {
		t.Errorf("backfill of items = %v, want %v", got, want)
	}
	if f := lastFrame(items); f.GetRows() != 5 {
		t.Errorf("last frame %v, want 5 rows", f)
	}
}
