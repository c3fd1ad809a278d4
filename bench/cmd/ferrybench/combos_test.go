package main

import (
	"slices"
	"testing"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/delivery/dtsavro"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// The audit reads ids from records that delivery's own DTS Avro encoder
// writes, for the bench's table, and finds none in its DDL record.
func TestDTSAvroIDs(t *testing.T) {
	rel := &cdcv1.Relation{Oid: 1, Schema: "public", Table: table, Columns: []*cdcv1.Column{
		{Name: "note", TypeOid: 25}, {Name: "id", TypeOid: 20, Key: true}}}
	e := dtsavro.New(dtsavro.Options{SourceDatabase: "ferry"})
	tab := e.SetRelation(rel)
	ev := &cdcv1.ChangeEvent{Op: cdcv1.Operation_OPERATION_INSERT, RelationOid: 1, NewTuple: tuple.Of("order 42", "42")}
	msg, err := e.Encode(nil, tab, ev)
	if err != nil {
		t.Fatal(err)
	}
	if ids, err := dtsAvroIDs(msg); err != nil || !slices.Equal(ids, []int{42}) {
		t.Fatalf("dtsAvroIDs = %v, %v; want [42]", ids, err)
	}
	ddl, err := e.EncodeDDL(nil, tab, relation.DDL{Kind: "CREATE", SQL: "CREATE TABLE public.bench_orders ()"})
	if err != nil {
		t.Fatal(err)
	}
	if ids, err := dtsAvroIDs(ddl); err != nil || len(ids) != 0 {
		t.Fatalf("dtsAvroIDs(DDL) = %v, %v; want no ids", ids, err)
	}
	if _, err := dtsAvroIDs(msg[:len(msg)/2]); err == nil {
		t.Error("dtsAvroIDs accepted a truncated record")
	}
}

func TestParseCombos(t *testing.T) {
	got, err := parseCombos("-x", "canal/lz4, avro/zstd")
	if err != nil || !slices.Equal(got, []combo{{"canal", "lz4"}, {"avro", "zstd"}}) {
		t.Fatalf("parseCombos = %v, %v", got, err)
	}
	for _, bad := range []string{"canal", "json/lz4", "avro/brotli", ""} {
		if _, err := parseCombos("-x", bad); err == nil {
			t.Errorf("parseCombos(%q) accepted", bad)
		}
	}
}
