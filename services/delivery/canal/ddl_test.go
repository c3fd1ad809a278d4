package canal

import (
	"testing"
	"time"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
)

func TestEncodeDDL(t *testing.T) {
	e := New(Options{SourceDatabase: "shop", Objects: objects(), IDBase: 7,
		Now: func() time.Time { return time.UnixMilli(2_000) }})
	tab := e.SetRelation(ordersRelation(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT))
	b, err := e.EncodeDDL(nil, tab, relation.DDL{Kind: "ALTER", SQL: `ALTER TABLE "sales"."orders" ADD COLUMN "x" integer`, Commit: time.UnixMilli(1_000)})
	if err != nil {
		t.Fatal(err)
	}
	m := Decode(t, b)
	if *m.ID != 7 || *m.Database != "sales" || *m.Table != "orders" || !*m.IsDdl || *m.Type != "ALTER" ||
		*m.Es != 1_000 || *m.Ts != 2_000 || *m.SQL != `ALTER TABLE "sales"."orders" ADD COLUMN "x" integer` {
		t.Fatalf("header: %s", b)
	}
	// formats.md: a DDL record has data, old, pkNames, sqlType and
	// mysqlType null, not empty.
	if m.Data != nil || m.Old != nil || m.PkNames != nil || m.SQLType != nil || m.MysqlType != nil {
		t.Fatalf("DDL record with row fields set: %s", b)
	}
	want := `{"id":7,"database":"sales","table":"orders","pkNames":null,"isDdl":true,"type":"ALTER","es":1000,"ts":2000,` +
		`"sql":"ALTER TABLE \"sales\".\"orders\" ADD COLUMN \"x\" integer","sqlType":null,"mysqlType":null,"data":null,"old":null}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	if e.NextID() != 8 {
		t.Fatalf("next id %d, want 8", e.NextID())
	}
}
