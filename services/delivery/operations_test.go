package delivery

import (
	"testing"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func TestOperationsMostSpecificWins(t *testing.T) {
	ins, upd, del := taskv1.OperationSet_OPERATION_SET_INSERT, taskv1.OperationSet_OPERATION_SET_UPDATE, taskv1.OperationSet_OPERATION_SET_DELETE
	sel := &taskv1.ObjectSelection{
		Operations: []taskv1.OperationSet{ins},
		Schemas:    []*taskv1.SchemaSelection{{Schema: "sales", Operations: []taskv1.OperationSet{ins, upd}}, {Schema: "hr"}},
		Tables: []*taskv1.TableSelection{
			{Schema: "sales", Table: "orders", Operations: []taskv1.OperationSet{del}},
			{Schema: "sales", Table: "items"},
		},
	}
	I, U, D := cdcv1.Operation_OPERATION_INSERT, cdcv1.Operation_OPERATION_UPDATE, cdcv1.Operation_OPERATION_DELETE
	for _, c := range []struct {
		schema, table string
		want          []cdcv1.Operation
	}{
		{"sales", "orders", []cdcv1.Operation{D}},   // the table's own list
		{"sales", "items", []cdcv1.Operation{I, U}}, // empty: the schema's
		{"hr", "people", []cdcv1.Operation{I}},      // empty schema list: the selection's
	} {
		var tsel *taskv1.TableSelection
		for _, ts := range sel.GetTables() {
			if ts.GetSchema() == c.schema && ts.GetTable() == c.table {
				tsel = ts
			}
		}
		m := operationsFor(sel, tsel, c.schema)
		for _, op := range []cdcv1.Operation{I, U, D} {
			want := false
			for _, w := range c.want {
				want = want || w == op
			}
			if m.allows(op) != want {
				t.Errorf("%s.%s allows %v = %v, want %v", c.schema, c.table, op, m.allows(op), want)
			}
		}
	}
	if m := operationsFor(nil, nil, "a"); !m.allows(I) || !m.allows(U) || !m.allows(D) {
		t.Fatal("no lists must ship every operation")
	}
}
