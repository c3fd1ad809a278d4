package dtsavro_test

import (
	"testing"

	"github.com/ferry-cdc/ferry/services/delivery/relation"
)

func TestEncodeDDL(t *testing.T) {
	e := newEncoder(allTypes())
	tab, _ := e.Table(16384)
	sql := `ALTER TABLE "sales"."orders" DROP COLUMN "x"`
	b, err := e.EncodeDDL(nil, tab, relation.DDL{Kind: "ALTER", SQL: sql, LSN: 0x16_B374D848, Commit: commitTime})
	if err != nil {
		t.Fatal(err)
	}
	r := decode(t, b)
	if r["operation"] != "DDL" || r["sourcePosition"] != "16/B374D848" || r["safeSourcePosition"] != "16/B374D848" ||
		r["sourceTxid"] != "" || r["sourceTimestamp"] != commitTime.Unix() || r["bornTimestamp"] != commitTime.UnixMilli() {
		t.Fatalf("header: %v", r)
	}
	if r["fields"] != nil || r["beforeImages"] != nil {
		t.Fatalf("fields %v, beforeImages %v; want both null", r["fields"], r["beforeImages"])
	}
	if got, ok := r["afterImages"].(map[string]any)["string"]; !ok || got != sql {
		t.Fatalf("afterImages = %v, want the string branch %q", r["afterImages"], sql)
	}
	if name, _ := union(t, r["objectName"]); name != "string" {
		t.Fatalf("objectName %v", r["objectName"])
	}
	if len(r["tags"].(map[string]any)) != 0 {
		t.Fatalf("tags %v, want none", r["tags"])
	}
}
