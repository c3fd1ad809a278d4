package catalog

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// superPG connects as the local cluster's superuser, for setting up objects
// the service's own role may not create.
func superPG(t *testing.T) *pgx.Conn {
	t.Helper()
	testenv.Integration(t)
	dsn := os.Getenv("FERRY_PG_DSN")
	if dsn == "" {
		dsn = "postgres://postgres:postgres@127.0.0.1:55432/ferry?sslmode=disable"
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatalf("connecting as the superuser: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func precheckItems(t *testing.T, s *Server, src *taskv1.SourceEndpoint, sel *taskv1.ObjectSelection) map[string]*taskv1.PrecheckItem {
	t.Helper()
	res, err := s.Precheck(context.Background(), &catalogv1.PrecheckRequest{Source: src, Objects: sel})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*taskv1.PrecheckItem{}
	for _, it := range res.GetItems() {
		out[it.GetId()] = it
	}
	return out
}

// expect checks an item's severity and that its message names every want
// and none of the unwanted.
func expect(t *testing.T, items map[string]*taskv1.PrecheckItem, id string, sev taskv1.Severity, want []string, unwanted ...string) {
	t.Helper()
	it := items[id]
	if it.GetSeverity() != sev {
		t.Errorf("%s = %v, want %v", id, it, sev)
		return
	}
	if sev != taskv1.Severity_SEVERITY_PASS && it.GetFix() == "" {
		t.Errorf("%s has no fix: %v", id, it)
	}
	for _, w := range want {
		if !strings.Contains(it.GetMessage(), w) {
			t.Errorf("%s message %q does not name %q", id, it.GetMessage(), w)
		}
	}
	for _, u := range unwanted {
		if strings.Contains(it.GetMessage(), u) {
			t.Errorf("%s message %q names %q", id, it.GetMessage(), u)
		}
	}
}

const (
	sevPass = taskv1.Severity_SEVERITY_PASS
	sevWarn = taskv1.Severity_SEVERITY_WARN
	sevFail = taskv1.Severity_SEVERITY_FAIL
)

func TestPrecheckTableItemsOnRealPostgres(t *testing.T) {
	conn := testenv.PG(t)
	schema := testenv.UniqueName("cat_items")
	other := schema + "_other"
	q := func(table string) string { return pgx.Identifier{schema, table}.Sanitize() }
	testenv.Exec(t, conn,
		`CREATE SCHEMA `+schema, `CREATE SCHEMA `+other,
		`CREATE TABLE `+q("keyed")+` (id int PRIMARY KEY, body text, n int)`,
		`CREATE TABLE `+q("full_ident")+` (id int PRIMARY KEY, doc jsonb)`,
		`ALTER TABLE `+q("full_ident")+` REPLICA IDENTITY FULL`,
		`CREATE TABLE `+q("no_key")+` (v int)`,
		`CREATE TABLE `+q("nothing")+` (id int PRIMARY KEY)`,
		`ALTER TABLE `+q("nothing")+` REPLICA IDENTITY NOTHING`,
		`CREATE TABLE `+q("unique_only")+` (id int NOT NULL UNIQUE)`,
		`CREATE UNLOGGED TABLE `+q("scratch")+` (id int PRIMARY KEY)`,
		`CREATE TABLE `+q("parent")+` (id int PRIMARY KEY)`,
		`CREATE TABLE `+other+`.child (extra int) INHERITS (`+q("parent")+`)`,
	)
	t.Cleanup(func() { testenv.Exec(t, conn, `DROP SCHEMA `+other+` CASCADE`, `DROP SCHEMA `+schema+` CASCADE`) })

	s := NewServer(slog.Default())
	sel := &taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: schema}}}
	items := precheckItems(t, s, testenv.Source(t), sel)
	expect(t, items, "objects", sevPass, []string{"6 tables selected"}) // the unlogged table is left out
	expect(t, items, "primary_key", sevWarn, []string{"1 tables", "no_key"}, "unique_only", "keyed")
	expect(t, items, "replica_identity", sevWarn,
		[]string{"3 tables", q("no_key") + " (DEFAULT without a primary key)", q("nothing") + " (NOTHING)", q("unique_only") + " (DEFAULT without a primary key)"},
		"keyed", "full_ident")
	if fix := items["replica_identity"].GetFix(); !strings.Contains(fix, "REPLICA IDENTITY FULL") {
		t.Errorf("replica_identity fix %q lacks the ALTER TABLE", fix)
	}
	expect(t, items, "toast", sevWarn, []string{"1 tables", q("keyed") + "(body)"}, "full_ident", "no_key")
	expect(t, items, "unlogged_tables", sevWarn, []string{"scratch"})
	expect(t, items, "inheritance", sevFail, []string{other + ".child inherits " + schema + ".parent"})
	expect(t, items, "row_size", sevPass, []string{"no selected table stores values out of line"})

	// Without the child's schema problem, a plain selection passes it.
	items = precheckItems(t, s, testenv.Source(t), &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: schema, Table: "full_ident"}}})
	for _, id := range []string{"primary_key", "replica_identity", "toast", "inheritance"} {
		expect(t, items, id, sevPass, nil)
	}
	expect(t, items, "unlogged_tables", sevPass, nil) // explicit tables select no schema
}

// A row whose stored size exceeds Kafka's default limit: random bytes do not
// compress, so the stored size is the value's size.
func TestPrecheckRowSizeOnRealPostgres(t *testing.T) {
	conn := testenv.PG(t)
	schema := testenv.UniqueName("cat_rowsize")
	testenv.Exec(t, conn,
		`CREATE SCHEMA `+schema,
		`CREATE TABLE `+schema+`.big (id int PRIMARY KEY, blob bytea, note text)`,
		`CREATE TABLE `+schema+`.small (id int PRIMARY KEY, note text)`,
		`INSERT INTO `+schema+`.big SELECT 1, decode(string_agg(md5(random()::text), ''), 'hex'), 'x' FROM generate_series(1, 80000)`,
		`INSERT INTO `+schema+`.big VALUES (2, '\x00', 'y')`,
		`INSERT INTO `+schema+`.small SELECT g, repeat(md5(g::text), 200) FROM generate_series(1, 50) g`,
		// Statistics reach shared memory when the session goes idle, up to
		// 10 s later unless asked to flush at once.
		`SELECT pg_stat_force_next_flush()`,
	)
	t.Cleanup(func() { testenv.Exec(t, conn, `DROP SCHEMA `+schema+` CASCADE`) })
	s := NewServer(slog.Default())
	sel := &taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: schema}}}
	// The TOAST evidence is the statistics counters, which the inserting
	// session flushes within a second or so; poll for it.
	it := pollItem(t, func() *taskv1.PrecheckItem { return precheckItems(t, s, testenv.Source(t), sel)["row_size"] },
		func(it *taskv1.PrecheckItem) bool { return it.GetSeverity() == sevWarn })
	expect(t, map[string]*taskv1.PrecheckItem{"row_size": it}, "row_size", sevWarn,
		[]string{schema + ".big (about 128", "the largest is in " + schema + ".big", "1048588"}, schema+".small")
}

// pollItem runs check until done accepts its item or 30 s pass, and returns
// the last item either way for the caller's assertions.
func pollItem(t *testing.T, check func() *taskv1.PrecheckItem, done func(*taskv1.PrecheckItem) bool) *taskv1.PrecheckItem {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		it := check()
		if done(it) {
			return it
		}
		select {
		case <-deadline:
			return it
		case <-tick.C:
		}
	}
}

func TestPrecheckSourceItemsOnRealPostgres(t *testing.T) {
	ctx := context.Background()
	// A long transaction and a temporary table, each in its own session of
	// the service's role, held open while the precheck runs.
	txConn, tmpConn := testenv.PG(t), testenv.PG(t)
	tmp := testenv.UniqueName("cat_tmp")
	testenv.Exec(t, tmpConn, `CREATE TEMP TABLE `+tmp+` (id int)`)
	var txPid int
	if err := txConn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&txPid); err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, txConn, `BEGIN`, `SELECT txid_current()`)
	defer testenv.Exec(t, txConn, `ROLLBACK`)

	s := NewServer(slog.Default())
	s.longTransactionAge = time.Millisecond
	sel := &taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: "public"}}}
	var items map[string]*taskv1.PrecheckItem
	pollItem(t, func() *taskv1.PrecheckItem {
		items = precheckItems(t, s, testenv.Source(t), sel)
		return items["long_transactions"]
	}, func(it *taskv1.PrecheckItem) bool {
		return strings.Contains(it.GetMessage(), fmt.Sprintf("pid %d ", txPid))
	})
	expect(t, items, "long_transactions", sevWarn, []string{fmt.Sprintf("pid %d open for", txPid), "oldest first"})
	expect(t, items, "temporary_tables", sevWarn, []string{"." + tmp})
	expect(t, items, "database_name", sevPass, []string{`"ferry"`})

	// The settings as the superuser reads them decide the HA items.
	var version int
	var hotStandby, feedback string
	if err := superPG(t).QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_setting('hot_standby'), current_setting('hot_standby_feedback')`).
		Scan(&version, &hotStandby, &feedback); err != nil {
		t.Fatal(err)
	}
	if hotStandby == "on" {
		expect(t, items, "hot_standby", sevPass, []string{"hot_standby is on"})
	} else {
		expect(t, items, "hot_standby", sevWarn, []string{"hot_standby is " + hotStandby})
	}
	if version < 170000 {
		expect(t, items, "sync_replication_slots", sevWarn, []string{"not available on PostgreSQL " + fmt.Sprint(version/10000)})
		expect(t, items, "hot_standby_feedback", sevPass, []string{"hot_standby_feedback is " + feedback})
	}

	// The default age ignores a transaction this young.
	items = precheckItems(t, NewServer(slog.Default()), testenv.Source(t), sel)
	expect(t, items, "long_transactions", sevPass, nil, fmt.Sprintf("pid %d ", txPid))
}

// The HA items on a private server whose settings the test can change.
func TestPrecheckHighAvailabilitySettings(t *testing.T) {
	pg := testenv.StartPostgres(t)
	pg.Restart("hot_standby=off", "hot_standby_feedback=on")
	sel := &taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: "public"}}}
	items := precheckItems(t, NewServer(slog.Default()), pg.Source(), sel)
	expect(t, items, "hot_standby", sevWarn, []string{"hot_standby is off", "refuses connections"})
	expect(t, items, "hot_standby_feedback", sevPass, []string{"hot_standby_feedback is on"})
	expect(t, items, "sync_replication_slots", sevWarn, []string{"not available on PostgreSQL 15"})
}

func TestPrecheckDatabaseNameOnRealPostgres(t *testing.T) {
	super := superPG(t)
	name := testenv.UniqueName(`cat.db "x"`)
	testenv.Exec(t, super, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize())
	t.Cleanup(func() { testenv.Exec(t, super, `DROP DATABASE `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`) })
	src := testenv.Source(t)
	src.Database = name
	items := precheckItems(t, NewServer(slog.Default()), src, &taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: "public"}}})
	expect(t, items, "connectivity", sevPass, nil)
	expect(t, items, "database_name", sevWarn, []string{`'.'`, "whitespace", `'"'`})
	if got := unsafeNameChars("my-db_1$ 订单"); got != "whitespace" {
		t.Errorf("unsafeNameChars = %q, want only whitespace: hyphens, '$' and letters of any script are safe", got)
	}
}

// TestPrecheckManyTables checks 2,000 tables the way CreateTask selects them
// (by name), logging how long the precheck took; the items must count them
// all.
func TestPrecheckManyTables(t *testing.T) {
	conn := testenv.PG(t)
	schema := testenv.UniqueName("cat_many")
	const n, batch = 2000, 250
	testenv.Exec(t, conn, `CREATE SCHEMA `+schema)
	// Batches keep each transaction's locks well under the lock table.
	for from := 0; from < n; from += batch {
		testenv.Exec(t, conn, fmt.Sprintf(`DO $$ BEGIN FOR i IN %d..%d LOOP
  CASE i %% 4
  WHEN 0 THEN EXECUTE format('CREATE TABLE %s.t%%s (v int)', i);
  WHEN 1 THEN EXECUTE format('CREATE TABLE %s.t%%s (id int PRIMARY KEY, note text)', i);
  WHEN 2 THEN EXECUTE format('CREATE TABLE %s.t%%s (id int PRIMARY KEY, note text)', i);
              EXECUTE format('ALTER TABLE %s.t%%s REPLICA IDENTITY FULL', i);
  ELSE EXECUTE format('CREATE TABLE %s.t%%s (id int PRIMARY KEY)', i);
  END CASE; END LOOP; END $$`, from, from+batch-1, schema, schema, schema, schema, schema))
	}
	t.Cleanup(func() {
		for from := 0; from < n; from += batch {
			testenv.Exec(t, conn, fmt.Sprintf(`DO $$ BEGIN FOR i IN %d..%d LOOP EXECUTE format('DROP TABLE %s.t%%s', i); END LOOP; END $$`,
				from, from+batch-1, schema))
		}
		testenv.Exec(t, conn, `DROP SCHEMA `+schema)
	})
	q := func(table string) string { return pgx.Identifier{schema, table}.Sanitize() }
	sel := &taskv1.ObjectSelection{}
	for i := 0; i < n; i++ {
		sel.Tables = append(sel.Tables, &taskv1.TableSelection{Schema: schema, Table: fmt.Sprintf("t%d", i)})
	}
	start := time.Now()
	items := precheckItems(t, NewServer(slog.Default()), testenv.Source(t), sel)
	t.Logf("precheck of %d tables took %s", n, time.Since(start))
	expect(t, items, "objects", sevPass, []string{"2000 tables selected"})
	expect(t, items, "select_privilege", sevPass, nil)
	expect(t, items, "primary_key", sevWarn, []string{"500 tables", q("t0") + ",", "and 480 more"}, q("t1")+",")
	expect(t, items, "replica_identity", sevWarn, []string{"500 tables", q("t0") + " (DEFAULT without a primary key)"}, q("t3")+" ")
	expect(t, items, "toast", sevWarn, []string{"500 tables", q("t1") + "(note)"}, q("t2")+"(")
	expect(t, items, "inheritance", sevPass, nil)
	expect(t, items, "row_size", sevPass, []string{"no selected table stores values out of line"})
}
