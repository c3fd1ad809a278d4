package capture

import (
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/capture/decode"
	"github.com/ferry-cdc/ferry/services/capture/internal/pgoutputtest"
	"github.com/ferry-cdc/ferry/services/capture/signal"
)

// A filter row's change switches the filter from its commit on; a deleted
// row removes it; another publication's row is not this stream's.
func TestFilterRowChangesSwitchTheFilter(t *testing.T) {
	st := &stream{filters: decode.NewFilters("pub", nil)}
	rel := filterRelation()
	odd := &pglogrepl.InsertMessage{RelationID: 7, Tuple: pgoutputtest.Tuple("3", "a")}
	passes := func() bool {
		m, err := st.filters.Filter(rel, odd)
		if err != nil {
			t.Fatal(err)
		}
		return m != nil
	}
	if !passes() {
		t.Fatal("an unfiltered table dropped a row")
	}
	even := []byte(`{"\"public\".\"t\"":"((\"id\" % '2'::pg_catalog.int4) = '0'::pg_catalog.int4)"}`)
	if err := st.commitSignals(time.Now(), []txnSignal{{slot: "other", prefix: signal.FilterPrefix, content: []byte(`{}`)}, {slot: "pub", prefix: signal.FilterPrefix, content: even}}, 100); err != nil {
		t.Fatal(err)
	}
	if passes() {
		t.Fatal("row 3 passed the filter id % 2 = 0")
	}
	if err := st.commitSignals(time.Now(), []txnSignal{{slot: "pub", prefix: signal.FilterPrefix}}, 200); err != nil {
		t.Fatal(err)
	}
	if !passes() {
		t.Fatal("a removed filter still dropped a row")
	}
}

// filterRelation is public.t (id int8 key, note text) as pgoutput
// describes it (decode's filter tests have the same).
func filterRelation() *decode.Relation {
	return &decode.Relation{
		Msg: &pglogrepl.RelationMessage{RelationID: 7, Namespace: "public", RelationName: "t",
			Columns: []*pglogrepl.RelationMessageColumn{{Name: "id", DataType: 20, Flags: 1}, {Name: "note", DataType: 25}}},
		Proto: &cdcv1.Relation{},
	}
}
