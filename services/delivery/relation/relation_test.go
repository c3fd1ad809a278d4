package relation

import (
	"reflect"
	"testing"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func orders(oid uint32, ident cdcv1.ReplicaIdentity) *cdcv1.Relation {
	return &cdcv1.Relation{
		Oid: oid, Schema: "Sales", Table: "Orders", ReplicaIdentity: ident,
		KeyColumns: []string{"Region", "id"},
		Columns: []*cdcv1.Column{
			{Name: "id", TypeOid: 20, TypeName: "bigint", Key: true},
			{Name: "Region", TypeOid: 1043, TypeName: "character varying(8)", Key: true},
			{Name: "Note", TypeOid: 25, TypeName: "text"},
			{Name: "secret", TypeOid: 25, TypeName: "text"},
		},
	}
}

func objects(c taskv1.NameCase) *taskv1.ObjectSelection {
	return &taskv1.ObjectSelection{
		NameCase: c,
		Tables: []*taskv1.TableSelection{{
			Schema: "Sales", Table: "Orders",
			Columns: []*taskv1.ColumnMapping{{Name: "secret", Drop: true}, {Name: "Note", Rename: "Remark"}, {Name: "id", Drop: true}},
		}},
	}
}

// The capitalization policy applies to every name but an explicit rename;
// dropped columns are neither written nor named as keys, but still key the
// message by their position.
func TestSetNames(t *testing.T) {
	for _, c := range []struct {
		nameCase          taskv1.NameCase
		db, schema, table string
		region            string
	}{
		{taskv1.NameCase_NAME_CASE_UNSPECIFIED, "Shop", "Sales", "Orders", "Region"},
		{taskv1.NameCase_NAME_CASE_LOWER, "shop", "sales", "orders", "region"},
		{taskv1.NameCase_NAME_CASE_UPPER, "SHOP", "SALES", "ORDERS", "REGION"},
	} {
		g := NewRegistry("Shop", objects(c.nameCase))
		rel := orders(16384, cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT)
		tab := g.Set(rel)
		want := Names{
			Database: c.db, Schema: c.schema, Table: c.table,
			Columns: []Column{
				{Src: 1, Name: c.region, Reveals: true, Def: rel.GetColumns()[1]},
				{Src: 2, Name: "Remark", Reveals: false, Def: rel.GetColumns()[2]},
			},
			Key: []string{c.region},
		}
		if !reflect.DeepEqual(tab.Names, want) {
			t.Errorf("%v: names %+v, want %+v", c.nameCase, tab.Names, want)
		}
		if !reflect.DeepEqual(tab.KeyIdx, []int{1, 0}) {
			t.Errorf("%v: KeyIdx %v, want [1 0]", c.nameCase, tab.KeyIdx)
		}
	}
}

// Under REPLICA IDENTITY FULL the before-image reveals every column.
func TestSetRevealsFull(t *testing.T) {
	tab := NewRegistry("shop", nil).Set(orders(1, cdcv1.ReplicaIdentity_REPLICA_IDENTITY_FULL))
	if len(tab.Names.Columns) != 4 {
		t.Fatalf("%d columns written, want 4", len(tab.Names.Columns))
	}
	for _, c := range tab.Names.Columns {
		if !c.Reveals {
			t.Errorf("column %s does not reveal", c.Name)
		}
	}
}

// Table finds the latest definition of an OID, and nothing for an OID
// never set.
func TestLookup(t *testing.T) {
	g := NewRegistry("shop", nil)
	g.Set(orders(500, cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT))
	b := g.Set(orders(7, cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT))
	a2 := g.Set(orders(500, cdcv1.ReplicaIdentity_REPLICA_IDENTITY_FULL))
	if got, ok := g.Table(500); !ok || got != a2 {
		t.Errorf("Table(500) = %p, %v; want the redefinition %p", got, ok, a2)
	}
	if got, ok := g.Table(7); !ok || got != b {
		t.Errorf("Table(7) = %p, %v; want %p", got, ok, b)
	}
	if _, ok := g.Table(8); ok {
		t.Error("Table(8) found a relation never set")
	}
}

func TestColumnFacts(t *testing.T) {
	domain := &cdcv1.Column{TypeOid: 90000, BaseTypeOid: 23, TypeName: "posint"}
	if got := ValueOID(domain); got != 23 {
		t.Errorf("ValueOID(domain over integer) = %d, want 23", got)
	}
	if got := ValueOID(&cdcv1.Column{TypeOid: 25}); got != 25 {
		t.Errorf("ValueOID(text) = %d, want 25", got)
	}
	for name, want := range map[string]bool{"citext": true, "ext.citext": true, "text": false, "citextual": false} {
		if IsCitext(name) != want {
			t.Errorf("IsCitext(%q) = %v", name, !want)
		}
	}
	if !IsEnum(&cdcv1.Column{BaseTypeKind: cdcv1.TypeKind_TYPE_KIND_ENUM}) || IsEnum(&cdcv1.Column{TypeOid: 25}) {
		t.Error("IsEnum misreads the base type's kind")
	}
}
