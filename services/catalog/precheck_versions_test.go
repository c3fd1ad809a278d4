package catalog

import (
	"fmt"
	"log/slog"
	"testing"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// On every supported major a plain selection (a keyed table and a
// partitioned one) passes every item but the warnings a fresh server
// gives, so that no catalog query of the precheck depends on one version;
// before 14 the signal_table item says what setup creates, and fails
// without CREATE on the database; before 15 row_filter passes a filter
// Ferry evaluates and names a construct it does not.
func TestPrecheckOnEveryVersion(t *testing.T) {
	for _, major := range testenv.SupportedMajors {
		t.Run(fmt.Sprint(major), func(t *testing.T) {
			pg := testenv.StartPostgresVersion(t, major)
			testenv.Exec(t, pg.Conn(t),
				"CREATE TABLE orders (id int8 PRIMARY KEY, note text)",
				"CREATE TABLE parts (region text, id int8, PRIMARY KEY (region, id)) PARTITION BY LIST (region)",
				"CREATE TABLE parts_eu PARTITION OF parts FOR VALUES IN ('eu')")
			sel := &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: "orders"}, {Schema: "public", Table: "parts"}}}
			s := NewServer(slog.Default())
			items := precheckItems(t, s, pg.Source(), sel)
			for id, it := range items {
				if it.GetSeverity() == sevFail {
					t.Errorf("PostgreSQL %d: %s failed: %s (fix: %s)", major, id, it.GetMessage(), it.GetFix())
				}
			}
			schemas := &taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: "public"}}}
			if major < 15 {
				expect(t, precheckItems(t, s, pg.Source(), schemas), "publication_privilege", sevFail,
					[]string{"objects.schemas", "needs PostgreSQL 15 or later"})
			}
			if major < 15 {
				checkEvaluatedFilters(t, s, pg)
			}
			if major >= 14 {
				expect(t, items, "signal_table", sevPass, []string{"creates no table"})
				return
			}
			expect(t, items, "signal_table", sevPass, []string{"setup will create schema _ferry", `"_ferry"."signals"`})
			testenv.Exec(t, pg.SuperConn(t), "REVOKE CREATE ON DATABASE ferry FROM ferry", "REVOKE CREATE ON DATABASE ferry FROM PUBLIC")
			expect(t, precheckItems(t, s, pg.Source(), sel), "signal_table", sevFail, []string{"lacks CREATE on database"})
		})
	}
}

// checkEvaluatedFilters: before 15 a filter Ferry evaluates passes, one it
// cannot evaluate fails naming the construct and the table, and the table
// the filters are kept in is announced (on 14 too).
func checkEvaluatedFilters(t *testing.T, s *Server, pg *testenv.Postgres) {
	t.Helper()
	filtered := func(f string) *taskv1.ObjectSelection {
		return &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: "orders", Filter: f}}}
	}
	items := precheckItems(t, s, pg.Source(), filtered("id % 2 = 0 AND id BETWEEN 1 AND 1000"))
	expect(t, items, "row_filter", sevPass, []string{"1 filters", "Ferry evaluates itself before PostgreSQL 15"})
	expect(t, items, "signal_table", sevPass, []string{`"_ferry"."signals"`})
	expect(t, precheckItems(t, s, pg.Source(), filtered("abs(id) > 10")), "row_filter", sevFail,
		[]string{`"public"."orders"`, "a function call", "before PostgreSQL 15 Ferry evaluates filters itself"})
}
