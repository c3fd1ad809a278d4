package decode

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pglogrepl"
)

// translate leaves a message of a table that is not a partition as it is,
// and names each root once for a TRUNCATE of several of its leaves.
func TestPartitionRootsTranslate(t *testing.T) {
	p := NewPartitionRoots(nil)
	p.byLeaf[11] = &leafRoot{msg: &pglogrepl.RelationMessage{RelationID: 10}, from: []int{1, 0}}
	p.byLeaf[12] = &leafRoot{msg: &pglogrepl.RelationMessage{RelationID: 10}, from: []int{0, 1}}
	ins := &pglogrepl.InsertMessage{RelationID: 99}
	if got, err := p.Translate(context.Background(), ins); err != nil || got != ins {
		t.Fatalf("a non-partition's insert became %v (%v)", got, err)
	}
	a, b := &pglogrepl.TupleDataColumn{Data: []byte("a")}, &pglogrepl.TupleDataColumn{Data: []byte("b")}
	got, err := p.Translate(context.Background(), &pglogrepl.InsertMessage{RelationID: 11, Tuple: &pglogrepl.TupleData{Columns: []*pglogrepl.TupleDataColumn{a, b}}})
	if err != nil {
		t.Fatal(err)
	}
	in := got.(*pglogrepl.InsertMessage)
	if in.RelationID != 10 || in.Tuple.Columns[0] != b || in.Tuple.Columns[1] != a {
		t.Fatalf("leaf 11's insert became relation %d with columns %q, %q; want 10 with b, a", in.RelationID, in.Tuple.Columns[0].Data, in.Tuple.Columns[1].Data)
	}
	tr, err := p.Translate(context.Background(), &pglogrepl.TruncateMessage{RelationNum: 3, RelationIDs: []uint32{11, 12, 7}})
	if err != nil {
		t.Fatal(err)
	}
	if ids := tr.(*pglogrepl.TruncateMessage).RelationIDs; fmt.Sprint(ids) != "[10 7]" {
		t.Fatalf("TRUNCATE of leaves 11, 12 and table 7 names %v, want [10 7]", ids)
	}
}
