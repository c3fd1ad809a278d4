package catalog

import (
	"log/slog"
	"strings"
	"testing"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// row_filter on a private server: the check creates and rolls back a
// publication, which locks the table for a moment.
func TestPrecheckRowFilter(t *testing.T) {
	pg := testenv.StartPostgres(t)
	testenv.Exec(t, pg.Conn(t),
		`CREATE TABLE orders (id int8 PRIMARY KEY, region text)`,
		`CREATE TABLE events (id int8 PRIMARY KEY, kind text)`,
		`ALTER TABLE events REPLICA IDENTITY FULL`)
	testenv.Exec(t, pg.SuperConn(t), `CREATE TABLE theirs (id int8 PRIMARY KEY)`, `GRANT SELECT ON theirs TO ferry`)
	s := NewServer(slog.Default())
	sel := func(filters ...string) *taskv1.ObjectSelection {
		out := &taskv1.ObjectSelection{}
		for i, name := range []string{"orders", "events", "theirs"} {
			if i < len(filters) {
				out.Tables = append(out.Tables, &taskv1.TableSelection{Schema: "public", Table: name, Filter: filters[i]})
			}
		}
		return out
	}

	expect(t, precheckItems(t, s, pg.Source(), sel("", "")), "row_filter", sevPass, []string{"no table has a filter"})
	expect(t, precheckItems(t, s, pg.Source(), sel("id > 10", "kind = 'click'")), "row_filter", sevPass, []string{"2 filters"})

	items := precheckItems(t, s, pg.Source(), sel("region = 'eu'", "kindx = 1", "id > 1"))
	expect(t, items, "row_filter", sevFail, []string{
		`objects.tables[0]: filter "region = 'eu'" of "public"."orders"`, "region not in the replica identity",
		`objects.tables[1]: filter "kindx = 1" of "public"."events"`, `column "kindx" does not exist`,
		`objects.tables[2]: could not check the filter of "public"."theirs"`, "must be owner",
	})
	for _, fix := range []string{`ALTER TABLE "public"."orders" REPLICA IDENTITY FULL`, "only a table's owner"} {
		if got := items["row_filter"].GetFix(); !strings.Contains(got, fix) {
			t.Errorf("row_filter fix %q does not name %q", got, fix)
		}
	}
}
