package decode

import (
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ferry-cdc/ferry/services/tuple"
)

// TestDecodeTupleKeepsTheText: each value is pgoutput's text byte for
// byte, whatever its type, and null and unchanged TOAST keep their kinds.
func TestDecodeTupleKeepsTheText(t *testing.T) {
	rel := &Relation{Msg: &pglogrepl.RelationMessage{
		Namespace: "public", RelationName: "t",
		Columns: []*pglogrepl.RelationMessageColumn{
			{Name: "id", DataType: pgtype.Int8OID}, {Name: "big", DataType: pgtype.TextOID}, {Name: "n", DataType: pgtype.Int4OID},
			{Name: "b", DataType: pgtype.ByteaOID}, {Name: "at", DataType: pgtype.TimestamptzOID}, {Name: "e", DataType: pgtype.TextOID},
		},
	}}
	in := &pglogrepl.TupleData{Columns: []*pglogrepl.TupleDataColumn{
		{DataType: 't', Data: []byte("7")},
		{DataType: 'u'},
		{DataType: 'n'},
		{DataType: 't', Data: []byte(`\x0000`)},
		{DataType: 't', Data: []byte("294276-12-31 23:59:59.999999+00")},
		{DataType: 't', Data: []byte{}},
	}}
	got, err := decodeTuple(rel, in)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		text string
		kind tuple.Kind
	}{{"7", tuple.Text}, {"", tuple.UnchangedToast}, {"", tuple.Null}, {`\x0000`, tuple.Text}, {"294276-12-31 23:59:59.999999+00", tuple.Text}, {"", tuple.Text}}
	if err := tuple.Check(got, len(want)); err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		if text, k := tuple.Field(got, i); string(text) != w.text || k != w.kind {
			t.Errorf("column %d = %q (%c), want %q (%c)", i, text, k, w.text, w.kind)
		}
	}
	// The tuple owns its text: pglogrepl may reuse its buffers.
	in.Columns[0].Data[0] = '8'
	if text, _ := tuple.Field(got, 0); string(text) != "7" {
		t.Fatalf("the tuple shares pgoutput's buffer: column 0 became %q", text)
	}
}

func TestDecodeTupleRejectsWhatItCannotCarry(t *testing.T) {
	rel := &Relation{Msg: &pglogrepl.RelationMessage{
		Namespace: "public", RelationName: "t",
		Columns: []*pglogrepl.RelationMessageColumn{{Name: "id", DataType: pgtype.Int8OID}, {Name: "b", DataType: pgtype.ByteaOID}},
	}}
	secret := []byte("s3cret")
	_, err := decodeTuple(rel, &pglogrepl.TupleData{Columns: []*pglogrepl.TupleDataColumn{
		{DataType: 't', Data: []byte("1")}, {DataType: 'b', Data: secret},
	}})
	if err == nil || !strings.Contains(err.Error(), `column "b"`) || strings.Contains(err.Error(), string(secret)) {
		t.Fatalf("a binary value: error %v, want one naming the column and not the value", err)
	}
	if _, err := decodeTuple(rel, &pglogrepl.TupleData{Columns: []*pglogrepl.TupleDataColumn{{DataType: 'n'}}}); err == nil {
		t.Fatal("a tuple with too few columns decoded")
	}
}
