package backfill

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/internal/pgsql"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// Many tables of a schema published FOR TABLES IN SCHEMA are checked in one
// query, each answer in the order asked, and a missing or unpublished table
// among them is named.
func TestCheckBackfillTablesChecksManyTablesInOneQuery(t *testing.T) {
	conn := superPG(t)
	schema := testenv.UniqueName("bf_many")
	pub := testenv.UniqueName("ferry_pub")
	const n = 60
	ddl := fmt.Sprintf(`CREATE SCHEMA %[1]s;
DO $$ BEGIN FOR i IN 1..%[2]d LOOP
  EXECUTE format('CREATE TABLE %[1]s.%%I (a int, b text, v int, PRIMARY KEY (b, a))', 't' || i);
END LOOP; END $$;
INSERT INTO %[1]s.t7 SELECT g, 'k', g FROM generate_series(1, 40) g;
ANALYZE %[1]s.t7;
CREATE TABLE %[4]s (id int PRIMARY KEY);
CREATE PUBLICATION %[3]s FOR TABLES IN SCHEMA %[1]s`, quoteIdent(schema), n, quoteIdent(pub), quoteIdent("public", schema+"_outside"))
	testenv.Exec(t, conn, ddl)
	t.Cleanup(func() {
		c := superPG(t)
		testenv.Exec(t, c, "DROP PUBLICATION IF EXISTS "+quoteIdent(pub))
		testenv.Exec(t, c, "DROP SCHEMA IF EXISTS "+quoteIdent(schema)+" CASCADE")
		testenv.Exec(t, c, "DROP TABLE IF EXISTS "+quoteIdent("public", schema+"_outside"))
	})
	var ps []*cdcv1.BackfillProgress
	for i := n; i >= 1; i-- { // not in catalog order: answers must follow the request
		ps = append(ps, &cdcv1.BackfillProgress{Schema: schema, Table: fmt.Sprintf("t%d", i)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tables, estimates, err := checkBackfillTables(ctx, conn, pub, ps)
	if err != nil {
		t.Fatalf("checkBackfillTables: %v", err)
	}
	if len(tables) != n || len(estimates) != n {
		t.Fatalf("%d tables and %d estimates for %d backfills", len(tables), len(estimates), n)
	}
	for i, tb := range tables {
		if tb.ref.GetTable() != ps[i].GetTable() || !slices.Equal(tb.pk, []string{"b", "a"}) {
			t.Fatalf("answer %d is %s with key %v; want %s with key [b a]", i, pgsql.Qualified(tb.ref), tb.pk, ps[i].GetTable())
		}
	}
	if got := estimates[n-7]; got != 40 {
		t.Fatalf("estimate of t7 is %d; want 40 after ANALYZE", got)
	}

	for _, tc := range []struct {
		table, want string
	}{
		{"t_missing", "does not exist"},
		{"", "a backfill needs a table name"},
	} {
		bad := append(slices.Clone(ps[:3]), &cdcv1.BackfillProgress{Schema: schema, Table: tc.table})
		_, _, err := checkBackfillTables(ctx, conn, pub, append(bad, ps[3:]...))
		if err == nil || !contains(err.Error(), tc.want, tc.table) {
			t.Fatalf("backfill of %q among others: %v; want an error naming it and saying %q", tc.table, err, tc.want)
		}
	}
	outside := &cdcv1.BackfillProgress{Table: schema + "_outside"}
	_, _, err = checkBackfillTables(ctx, conn, pub, append(slices.Clone(ps), outside))
	if status.Code(err) != codes.FailedPrecondition || !contains(err.Error(), "is not in publication", pub, schema+"_outside") {
		t.Fatalf("backfill of a table outside the publication: %v; want FailedPrecondition naming table and publication", err)
	}
}
