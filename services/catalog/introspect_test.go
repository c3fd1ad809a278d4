package catalog

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// describeSchema creates a schema with every kind of column and table
// DescribeTable reports on, and returns its name.
func describeSchema(t *testing.T) string {
	conn := testenv.PG(t)
	s := testenv.UniqueName("describe")
	testenv.Exec(t, conn,
		`CREATE EXTENSION IF NOT EXISTS citext`,
		`CREATE SCHEMA `+s,
		`CREATE TYPE `+s+`.mood AS ENUM ('sad', 'ok', 'happy')`,
		`CREATE DOMAIN `+s+`.posint AS int CHECK (VALUE > 0)`,
		`CREATE TYPE `+s+`.pair AS (a int, b text)`,
		`CREATE TABLE `+s+`.main (
		   id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		   code text NOT NULL,
		   feeling `+s+`.mood DEFAULT 'ok',
		   qty `+s+`.posint,
		   body text,
		   nick citext,
		   p `+s+`.pair,
		   price numeric(12,2) NOT NULL DEFAULT 0,
		   doubled numeric GENERATED ALWAYS AS (price * 2) STORED,
		   CONSTRAINT main_code_key UNIQUE (code))`,
		`CREATE UNIQUE INDEX main_nick_partial ON `+s+`.main (nick) WHERE nick IS NOT NULL`,
		`ALTER TABLE `+s+`.main REPLICA IDENTITY USING INDEX main_code_key`,
		// One large body, of hex digits that pglz barely compresses, so it
		// is stored out of line.
		`INSERT INTO `+s+`.main (code, qty, body, nick, p, price)
		 SELECT 'c' || g, g, CASE WHEN g = 7 THEN (SELECT string_agg(md5(h::text), '') FROM generate_series(1, 3000) h) ELSE 'short' END,
		        'Nick' || g, ROW(g, 'b')::`+s+`.pair, g
		 FROM generate_series(1, 50) g`,
		`CREATE TABLE `+s+`.events (id int, at date NOT NULL) PARTITION BY RANGE (at)`,
		`CREATE TABLE `+s+`.events_2025 PARTITION OF `+s+`.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`,
		`CREATE TABLE `+s+`.events_2026 PARTITION OF `+s+`.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')`,
		`INSERT INTO `+s+`.events SELECT g, CASE WHEN g % 2 = 0 THEN date '2025-06-01' ELSE date '2026-06-01' END FROM generate_series(1, 100) g`,
		`CREATE TABLE `+s+`.parent (id int)`,
		`CREATE TABLE `+s+`.child (extra text) INHERITS (`+s+`.parent)`,
		`ANALYZE `+s+`.main, `+s+`.events`)
	t.Cleanup(func() { testenv.Exec(t, conn, `DROP SCHEMA `+s+` CASCADE`) })
	return s
}

func describe(t *testing.T, srv *Server, schema, table string) *catalogv1.DescribeTableResponse {
	t.Helper()
	res, err := srv.DescribeTable(context.Background(), &catalogv1.DescribeTableRequest{
		Source: testenv.Source(t), Table: &taskv1.TableRef{Schema: schema, Table: table},
	})
	if err != nil {
		t.Fatalf("describing %s.%s: %v", schema, table, err)
	}
	return res
}

func refNames(refs []*taskv1.TableRef) string {
	var out []string
	for _, r := range refs {
		out = append(out, r.GetSchema()+"."+r.GetTable())
	}
	return strings.Join(out, ",")
}

func TestDescribeTable(t *testing.T) {
	s := describeSchema(t)
	srv := NewServer(slog.Default())
	res := describe(t, srv, s, "main")
	checkMainColumns(t, s, res.GetColumns())
	if got := strings.Join(res.GetPrimaryKey(), ","); got != "id" {
		t.Errorf("primary key %q, want id", got)
	}
	// The partial unique index does not identify rows; the constraint does.
	if uk := res.GetUniqueKeys(); len(uk) != 1 || uk[0].GetName() != "main_code_key" || strings.Join(uk[0].GetColumns(), ",") != "code" {
		t.Errorf("unique keys %v, want only main_code_key(code)", uk)
	}
	if res.GetReplicaIdentity() != "index" || res.GetReplicaIdentityIndex() != "main_code_key" {
		t.Errorf("replica identity %q index %q, want index main_code_key", res.GetReplicaIdentity(), res.GetReplicaIdentityIndex())
	}
	if res.GetPartitioned() || len(res.GetPartitions())+len(res.GetInheritsFrom())+len(res.GetInheritedBy()) != 0 {
		t.Errorf("main is a plain table, got %v", res)
	}
	if info := res.GetInfo(); info.GetTable().GetTable() != "main" || info.GetEstimatedRows() != 50 || info.GetSizeBytes() <= 0 {
		t.Errorf("info %v, want main, 50 rows (analyzed) and a size", info)
	}
	// 50 rows fit one sample, so the sample sees every row and must find the
	// largest one exactly as stored.
	want := int64(0)
	q := `SELECT max(COALESCE(pg_column_size(id), 0) + COALESCE(pg_column_size(code), 0) + COALESCE(pg_column_size(feeling), 0)
	  + COALESCE(pg_column_size(qty), 0) + COALESCE(pg_column_size(body), 0) + COALESCE(pg_column_size(nick), 0)
	  + COALESCE(pg_column_size(p), 0) + COALESCE(pg_column_size(price), 0) + COALESCE(pg_column_size(doubled), 0)) FROM ` + s + `.main`
	if err := testenv.PG(t).QueryRow(context.Background(), q).Scan(&want); err != nil {
		t.Fatal(err)
	}
	if res.GetLargestRowBytes() != want || want < 40000 {
		t.Errorf("largest row %d bytes, want %d (the out-of-line body, over 40000 bytes stored)", res.GetLargestRowBytes(), want)
	}
	if avg := res.GetAverageRowBytes(); avg <= 0 || avg >= want {
		t.Errorf("average row %d bytes, want above 0 and below the largest row (%d)", avg, want)
	}
}

func checkMainColumns(t *testing.T, s string, cols []*catalogv1.ColumnInfo) {
	t.Helper()
	type col struct {
		typ                    string
		notNull, custom, toast bool
		def, kind              string
	}
	want := []struct {
		name string
		col
	}{
		{"id", col{"bigint", true, false, false, "", "identity"}},
		{"code", col{"text", true, false, true, "", ""}},
		{"feeling", col{s + ".mood", false, true, false, "'ok'::" + s + ".mood", ""}},
		{"qty", col{s + ".posint", false, true, false, "", ""}},
		{"body", col{"text", false, false, true, "", ""}},
		{"nick", col{"citext", false, true, true, "", ""}},
		{"p", col{s + ".pair", false, true, true, "", ""}},
		{"price", col{"numeric(12,2)", true, false, true, "0", ""}},
		{"doubled", col{"numeric", false, false, true, "(price * (2)::numeric)", "generated"}},
	}
	if len(cols) != len(want) {
		t.Fatalf("columns %v, want %d", cols, len(want))
	}
	for i, w := range want {
		c := cols[i]
		got := col{c.GetType(), c.GetNotNull(), c.GetCustomType(), c.GetToastable(), c.GetDefault(), c.GetKind()}
		if c.GetName() != w.name || got != w.col {
			t.Errorf("column %d = %v, want %s %+v", i, c, w.name, w.col)
		}
	}
}

func TestDescribePartitionsAndInheritance(t *testing.T) {
	s := describeSchema(t)
	srv := NewServer(slog.Default())

	events := describe(t, srv, s, "events")
	if !events.GetPartitioned() || refNames(events.GetPartitions()) != s+".events_2025,"+s+".events_2026" {
		t.Errorf("events: partitioned %v, partitions %q, want both leaves", events.GetPartitioned(), refNames(events.GetPartitions()))
	}
	if info := events.GetInfo(); info.GetEstimatedRows() != 100 || info.GetSizeBytes() <= 0 {
		t.Errorf("events info %v, want the leaves' 100 rows and their size", info)
	}
	if len(events.GetInheritsFrom())+len(events.GetInheritedBy()) != 0 {
		t.Errorf("partitioning is not inheritance: %v", events)
	}
	if events.GetLargestRowBytes() <= 0 || events.GetAverageRowBytes() <= 0 {
		t.Errorf("events: largest %d, average %d, want both sampled through the partitions", events.GetLargestRowBytes(), events.GetAverageRowBytes())
	}
	leaf := describe(t, srv, s, "events_2025")
	if leaf.GetPartitioned() || len(leaf.GetPartitions())+len(leaf.GetInheritsFrom()) != 0 {
		t.Errorf("a leaf partition has no partitions nor inheritance parents: %v", leaf)
	}

	parent := describe(t, srv, s, "parent")
	if refNames(parent.GetInheritedBy()) != s+".child" || len(parent.GetInheritsFrom()) != 0 {
		t.Errorf("parent: inherited by %q, inherits from %q, want child and nothing", refNames(parent.GetInheritedBy()), refNames(parent.GetInheritsFrom()))
	}
	// Never analyzed: the average is unknown rather than made up.
	child := describe(t, srv, s, "child")
	if refNames(child.GetInheritsFrom()) != s+".parent" || len(child.GetInheritedBy()) != 0 || child.GetAverageRowBytes() != 0 {
		t.Errorf("child: inherits from %q, inherited by %q, average %d; want parent, nothing, 0",
			refNames(child.GetInheritsFrom()), refNames(child.GetInheritedBy()), child.GetAverageRowBytes())
	}
	if child.GetReplicaIdentity() != "default" || len(child.GetPrimaryKey()) != 0 {
		t.Errorf("child: replica identity %q, key %v, want default and none", child.GetReplicaIdentity(), child.GetPrimaryKey())
	}
}

func TestDescribeTableErrors(t *testing.T) {
	srv := NewServer(slog.Default())
	ctx := context.Background()
	_, err := srv.DescribeTable(ctx, &catalogv1.DescribeTableRequest{Source: testenv.Source(t), Table: &taskv1.TableRef{Schema: "public", Table: "No-Such-Table"}})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `"public"."No-Such-Table"`) {
		t.Errorf("missing table: %v, want NotFound naming it", err)
	}
	_, err = srv.DescribeTable(ctx, &catalogv1.DescribeTableRequest{Source: testenv.Source(t), Table: &taskv1.TableRef{Table: "orders"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "schema") {
		t.Errorf("no schema: %v, want InvalidArgument", err)
	}
	down := testenv.Source(t)
	down.Port = 1
	_, err = srv.DescribeTable(ctx, &catalogv1.DescribeTableRequest{Source: down, Table: &taskv1.TableRef{Schema: "public", Table: "t"}})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("unreachable source: %v, want Unavailable", err)
	}
}

func TestListTables(t *testing.T) {
	s := describeSchema(t)
	srv := NewServer(slog.Default())
	res, err := srv.ListTables(context.Background(), &catalogv1.ListTablesRequest{Source: testenv.Source(t), Schema: s})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	sizes := map[string]*catalogv1.TableInfo{}
	for _, info := range res.GetTables() {
		names = append(names, info.GetTable().GetTable())
		sizes[info.GetTable().GetTable()] = info
	}
	// Partitions are published through their root, so only the root is listed.
	if strings.Join(names, ",") != "child,events,main,parent" {
		t.Fatalf("listed %v, want child, events, main, parent", names)
	}
	if m, e := sizes["main"], sizes["events"]; m.GetEstimatedRows() != 50 || m.GetSizeBytes() <= 0 || e.GetEstimatedRows() != 100 || e.GetSizeBytes() <= 0 {
		t.Errorf("main %v, events %v: want 50 and 100 rows, and sizes", m, e)
	}
	_, err = srv.ListTables(context.Background(), &catalogv1.ListTablesRequest{Source: testenv.Source(t), Schema: s + "_missing"})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), s+"_missing") {
		t.Errorf("missing schema: %v, want NotFound naming it", err)
	}
}
