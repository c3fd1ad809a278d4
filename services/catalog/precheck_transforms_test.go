package catalog

import (
	"log/slog"
	"testing"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// The transforms item compiles against the table's real columns: a
// numeric is a double, a domain over int a number, an unknown column or a
// wrong type fails naming the table and position.
func TestPrecheckTransforms(t *testing.T) {
	conn := testenv.PG(t)
	table := testenv.UniqueName("cat_etl")
	dom := table + "_qty"
	testenv.Exec(t, conn, `CREATE DOMAIN `+dom+` AS int4`,
		`CREATE TABLE `+table+` (id int8 PRIMARY KEY, amount numeric(10,2), qty `+dom+`, email text)`)
	t.Cleanup(func() { testenv.Exec(t, conn, `DROP TABLE `+table, `DROP DOMAIN `+dom) })
	s := NewServer(slog.Default())
	sel := func(ts ...*taskv1.Transform) *taskv1.ObjectSelection {
		return &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: table, Transforms: ts}}}
	}
	good := sel(
		&taskv1.Transform{Kind: &taskv1.Transform_Filter{Filter: "row.amount > 100.0 && row.qty > 1"}},
		&taskv1.Transform{Kind: &taskv1.Transform_Compute{Compute: &taskv1.ComputedColumn{Name: "total", Expression: "row.amount * double(row.qty)"}}},
	)
	expect(t, precheckItems(t, s, testenv.Source(t), good), "transforms", sevPass, []string{"1 tables"})
	bad := sel(
		&taskv1.Transform{Kind: &taskv1.Transform_Filter{Filter: "true"}},
		&taskv1.Transform{Kind: &taskv1.Transform_Filter{Filter: `row.email > 3`}},
	)
	expect(t, precheckItems(t, s, testenv.Source(t), bad), "transforms", sevFail,
		[]string{"transform 1 of table public." + table, "no matching overload"})
	unknown := sel(&taskv1.Transform{Kind: &taskv1.Transform_Filter{Filter: "row.nope == 1"}})
	expect(t, precheckItems(t, s, testenv.Source(t), unknown), "transforms", sevFail, []string{"transform 0", "undefined field 'nope'"})
}
