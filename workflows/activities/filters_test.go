package activities

import (
	"testing"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func TestTableFiltersListsFilteredTablesOnly(t *testing.T) {
	spec := &taskv1.TaskSpec{Objects: &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{
		{Schema: "public", Table: "orders", Filter: " region = 'eu' "},
		{Schema: "public", Table: "all_rows"},
		{Schema: "sales", Table: "big", Filter: "id > 1000"},
	}}}
	got := tableFilters(spec)
	if len(got) != 2 ||
		got[0].GetTable().GetSchema() != "public" || got[0].GetTable().GetTable() != "orders" || got[0].GetFilter() != "region = 'eu'" ||
		got[1].GetTable().GetSchema() != "sales" || got[1].GetTable().GetTable() != "big" || got[1].GetFilter() != "id > 1000" {
		t.Fatalf("tableFilters = %v", got)
	}
	if tableFilters(&taskv1.TaskSpec{}) != nil {
		t.Error("a spec without tables has filters")
	}
}
