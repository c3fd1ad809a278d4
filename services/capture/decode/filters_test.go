package decode

import (
	"testing"

	"github.com/jackc/pglogrepl"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/capture/internal/pgoutputtest"
)

// filterRelation is public.t (id int8 key, note text) as pgoutput
// describes it.
func filterRelation() *Relation {
	return &Relation{
		Msg: &pglogrepl.RelationMessage{RelationID: 7, Namespace: "public", RelationName: "t",
			Columns: []*pglogrepl.RelationMessageColumn{{Name: "id", DataType: 20, Flags: 1}, {Name: "note", DataType: 25}}},
		Proto: &cdcv1.Relation{},
	}
}

// What PostgreSQL 15's pgoutput does with a filtered UPDATE, reproduced:
// old and new pass, an UPDATE; only the old, a DELETE of the old row; only
// the new, an INSERT of the new row with the old row's unchanged TOAST
// values filled in; neither, nothing; no old row, the new row decides.
func TestFilterTurnsUpdatesAsPostgreSQL15(t *testing.T) {
	f := NewFilters("pub", map[string]string{`"public"."t"`: `(("id" % '2'::pg_catalog.int4) = '0'::pg_catalog.int4)`})
	rel := filterRelation()
	update := func(old, nw *pglogrepl.TupleData) *pglogrepl.UpdateMessage {
		return &pglogrepl.UpdateMessage{RelationID: 7, OldTupleType: pglogrepl.UpdateMessageTupleTypeOld, OldTuple: old, NewTuple: nw}
	}
	cases := []struct {
		name string
		m    pglogrepl.Message
		want string // the message type that passes, or "" for none
	}{
		{"insert passing", &pglogrepl.InsertMessage{RelationID: 7, Tuple: pgoutputtest.Tuple("2", "a")}, "insert"},
		{"insert failing", &pglogrepl.InsertMessage{RelationID: 7, Tuple: pgoutputtest.Tuple("3", "a")}, ""},
		{"delete passing", &pglogrepl.DeleteMessage{RelationID: 7, OldTuple: pgoutputtest.Tuple("4", "<null>")}, "delete"},
		{"update staying in", update(pgoutputtest.Tuple("2", "a"), pgoutputtest.Tuple("4", "b")), "update"},
		{"update leaving", update(pgoutputtest.Tuple("2", "a"), pgoutputtest.Tuple("3", "b")), "delete"},
		{"update entering", update(pgoutputtest.Tuple("3", "long"), pgoutputtest.Tuple("4", "<toast>")), "insert"},
		{"update staying out", update(pgoutputtest.Tuple("3", "a"), pgoutputtest.Tuple("5", "b")), ""},
		{"update without old row", &pglogrepl.UpdateMessage{RelationID: 7, NewTuple: pgoutputtest.Tuple("6", "b")}, "update"},
	}
	for _, c := range cases {
		got, err := f.Filter(rel, c.m)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		kind := ""
		switch m := got.(type) {
		case *pglogrepl.InsertMessage:
			kind = "insert"
			if c.name == "update entering" && string(m.Tuple.Columns[1].Data) != "long" {
				t.Errorf("%s: the INSERT carries %q, want the old row's unchanged TOAST value", c.name, m.Tuple.Columns[1].Data)
			}
		case *pglogrepl.UpdateMessage:
			kind = "update"
		case *pglogrepl.DeleteMessage:
			kind = "delete"
			if c.name == "update leaving" && string(m.OldTuple.Columns[0].Data) != "2" {
				t.Errorf("%s: the DELETE carries key %q, want the old row's", c.name, m.OldTuple.Columns[0].Data)
			}
		}
		if kind != c.want {
			t.Errorf("%s: became %q, want %q", c.name, kind, c.want)
		}
	}
}
