package delivery

import (
	"testing"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// A table carries its transforms, which run on its rows; redefined after
// the task dropped them, it carries none and its rows pass unchanged.
func TestPrepareRelationCarriesTransforms(t *testing.T) {
	filter := []*taskv1.Transform{{Kind: &taskv1.Transform_Filter{Filter: "row.id > 5"}}}
	st := &deliveryv1.StartDelivery{SourceDatabase: "shop", Objects: &taskv1.ObjectSelection{
		Tables: []*taskv1.TableSelection{{Schema: "public", Table: "orders", Transforms: filter}},
	}}
	s := &stream{start: st, enc: newEncoder(st), srcRels: map[uint32]*cdcv1.Relation{}}
	tab, err := s.prepareRelation(ordersRelation())
	if err != nil {
		t.Fatal(err)
	}
	if res, err := s.applyTransforms(tab, insert(1, "a", 10)); err != nil || res.Event != nil {
		t.Fatalf("with the filter, row 1 gave %v, %v; want it left out", res.Event, err)
	}
	st.Objects.Tables = nil
	again, err := s.prepareRelation(ordersRelation())
	if err != nil {
		t.Fatal(err)
	}
	if again.Transforms != nil {
		t.Fatalf("redefined without transforms, the table carries %T", again.Transforms)
	}
	ev := insert(1, "a", 11)
	if res, err := s.applyTransforms(again, ev); err != nil || res.Event != ev {
		t.Fatalf("without transforms, row 1 gave %v, %v; want it unchanged", res.Event, err)
	}
}
