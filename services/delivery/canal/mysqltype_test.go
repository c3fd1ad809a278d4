package canal

import (
	"testing"
	"time"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

func TestMySQLType(t *testing.T) {
	const none = -1
	vc := func(n int32) int32 { return n + 4 }
	num := func(p, s int32) int32 { return p<<16 | s + 4 }
	cases := []struct {
		col  *cdcv1.Column
		want string
	}{
		{&cdcv1.Column{TypeOid: 16, TypeModifier: none}, "boolean"},
		{&cdcv1.Column{TypeOid: 21, TypeModifier: none}, "smallint"},
		{&cdcv1.Column{TypeOid: 23, TypeModifier: none}, "int"},
		{&cdcv1.Column{TypeOid: 20, TypeModifier: none}, "bigint"},
		{&cdcv1.Column{TypeOid: 700, TypeModifier: none}, "float"},
		{&cdcv1.Column{TypeOid: 701, TypeModifier: none}, "double"},
		{&cdcv1.Column{TypeOid: 1700, TypeModifier: num(12, 2)}, "decimal(12,2)"},
		{&cdcv1.Column{TypeOid: 1700, TypeModifier: none}, "decimal(65,30)"},
		{&cdcv1.Column{TypeOid: 1043, TypeModifier: vc(64)}, "varchar(64)"},
		{&cdcv1.Column{TypeOid: 1043, TypeModifier: none}, "longtext"},
		{&cdcv1.Column{TypeOid: 1042, TypeModifier: vc(5)}, "char(5)"},
		{&cdcv1.Column{TypeOid: 1042, TypeModifier: vc(1000)}, "longtext"},
		{&cdcv1.Column{TypeOid: 25, TypeModifier: none}, "longtext"},
		{&cdcv1.Column{TypeOid: 1082, TypeModifier: none}, "date"},
		{&cdcv1.Column{TypeOid: 1083, TypeModifier: 0}, "time(0)"},
		{&cdcv1.Column{TypeOid: 1114, TypeModifier: none}, "datetime(6)"},
		{&cdcv1.Column{TypeOid: 1114, TypeModifier: 3}, "datetime(3)"},
		{&cdcv1.Column{TypeOid: 1184, TypeModifier: none}, "timestamp(6)"},
		{&cdcv1.Column{TypeOid: 17, TypeModifier: none}, "longblob"},
		{&cdcv1.Column{TypeOid: 3802, TypeModifier: none}, "json"},
		{&cdcv1.Column{TypeOid: 114, TypeModifier: none}, "json"},
		{&cdcv1.Column{TypeOid: 2950, TypeModifier: none}, "char(36)"},
		{&cdcv1.Column{TypeOid: 1186, TypeModifier: none}, "longtext"},
		{&cdcv1.Column{TypeOid: 1007, TypeModifier: none, BaseTypeOid: 1007, BaseTypeKind: cdcv1.TypeKind_TYPE_KIND_ARRAY}, "longtext"},
		{&cdcv1.Column{TypeOid: 90001, TypeModifier: none, BaseTypeOid: 90001, BaseTypeKind: cdcv1.TypeKind_TYPE_KIND_ENUM}, "longtext"},
		// A domain over int4 maps as int4; over varchar, without the
		// base's length, which the column does not carry.
		{&cdcv1.Column{TypeOid: 90002, TypeModifier: none, BaseTypeOid: 23, BaseTypeKind: cdcv1.TypeKind_TYPE_KIND_BASE}, "int"},
		{&cdcv1.Column{TypeOid: 90003, TypeModifier: vc(9), BaseTypeOid: 1043, BaseTypeKind: cdcv1.TypeKind_TYPE_KIND_BASE}, "longtext"},
	}
	for _, c := range cases {
		if got := MySQLType(c.col); got != c.want {
			t.Errorf("type %d (modifier %d, base %d): %q, want %q", c.col.GetTypeOid(), c.col.GetTypeModifier(), c.col.GetBaseTypeOid(), got, c.want)
		}
	}
}

func TestMySQLTypeNamesOption(t *testing.T) {
	for _, on := range []bool{false, true} {
		e := New(Options{Objects: objects(), IDBase: 1, Now: func() time.Time { return time.UnixMilli(1) }, MySQLTypeNames: on})
		rel := ordersRelation(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_FULL)
		rel.Columns[1].TypeModifier = 8 + 4
		rel.Columns[2].TypeModifier = 5<<16 | 2 + 4
		tab := e.SetRelation(rel)
		b, err := e.Encode(nil, tab, event(cdcv1.Operation_OPERATION_INSERT, row(1, "1.00", "x"), nil))
		if err != nil {
			t.Fatal(err)
		}
		m := Decode(t, b).MysqlType
		want := map[string]string{"id": "bigint", "region": "character varying(8)", "amount": "numeric(5,2)", "Remark": "text"}
		if on {
			want = map[string]string{"id": "bigint", "region": "varchar(8)", "amount": "decimal(5,2)", "Remark": "longtext"}
		}
		for k, v := range want {
			if m[k] != v {
				t.Errorf("MySQLTypeNames %v: mysqlType[%s] = %q, want %q", on, k, m[k], v)
			}
		}
	}
}
