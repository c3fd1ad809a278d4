package delivery

import (
	"testing"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// A table outside the selection ships nothing: after modify-objects removes
// it, its backlog in the slot must not reach Kafka.
func TestOperationsOfAnUnselectedTableAreNone(t *testing.T) {
	tables := &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: "orders"}}}
	if m := operationsFor(tables, nil, "public"); m != 0 {
		t.Errorf("unselected public.items ships %b, want nothing", m)
	}
	schemas := &taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: "sales"}}}
	if m := operationsFor(schemas, nil, "sales"); m != allOps {
		t.Errorf("a table of a selected schema ships %b, want all", m)
	}
	if m := operationsFor(schemas, nil, "hr"); m != 0 {
		t.Errorf("a table of another schema ships %b, want nothing", m)
	}
	if m := operationsFor(&taskv1.ObjectSelection{WholeDatabase: true}, nil, "hr"); m != allOps {
		t.Errorf("whole database ships %b, want all", m)
	}
}

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
