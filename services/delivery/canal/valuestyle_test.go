package canal

import (
	"testing"
	"time"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func TestValueStyleFlink(t *testing.T) {
	rel := &cdcv1.Relation{Oid: 16384, Schema: "s", Table: "t", KeyColumns: []string{"id"},
		ReplicaIdentity: cdcv1.ReplicaIdentity_REPLICA_IDENTITY_FULL,
		Columns: []*cdcv1.Column{
			{Name: "id", TypeOid: 20, TypeName: "bigint", Key: true},
			{Name: "ok", TypeOid: 16, TypeName: "boolean"},
			{Name: "at", TypeOid: 1184, TypeName: "timestamp with time zone"},
			{Name: "dom", TypeOid: 90000, BaseTypeOid: 16, TypeName: "flag"},
			{Name: "oks", TypeOid: 1000, TypeName: "boolean[]", BaseTypeKind: cdcv1.TypeKind_TYPE_KIND_ARRAY},
			{Name: "ts", TypeOid: 1114, TypeName: "timestamp without time zone"},
		},
	}
	cases := []struct{ at, want string }{
		{"2026-12-06 19:23:42.879986+00", "2026-12-06 19:23:42.879986Z"},
		{"2024-02-29 23:59:59.999999+05:45", "2024-02-29 18:14:59.999999Z"},
		{"2024-01-01 00:00:00-03:30:15", "2024-01-01 03:30:15Z"},
		{"2024-01-01 06:15:01+00", "2024-01-01 06:15:01Z"},
		// Flink's formats have no form for these: left as they are.
		{"infinity", "infinity"},
		{"0001-01-01 00:00:00+00 BC", "0001-01-01 00:00:00+00 BC"},
		{"10000-01-01 00:00:00+00", "10000-01-01 00:00:00+00"},
		{"0001-01-01 00:30:00+01", "0001-01-01 00:30:00+01"},
	}
	for _, c := range cases {
		e := New(Options{Objects: &taskv1.ObjectSelection{}, IDBase: 1, Now: func() time.Time { return time.UnixMilli(1) },
			ValueStyle: taskv1.CanalValueStyle_CANAL_VALUE_STYLE_FLINK})
		tab := e.SetRelation(rel)
		nv := []any{i64(1), "t", c.at, "f", "{t,f}", "2026-01-02 03:04:05"}
		ov := []any{i64(1), "f", c.at, "t", "{t,f}", "2026-01-02 03:04:05"}
		b, err := e.Encode(nil, tab, event(cdcv1.Operation_OPERATION_UPDATE, nv, ov))
		if err != nil {
			t.Fatal(err)
		}
		m := Decode(t, b)
		d := m.Data[0]
		if *d["ok"] != "true" || *d["dom"] != "false" || *d["oks"] != "{t,f}" || *d["ts"] != "2026-01-02 03:04:05" {
			t.Errorf("data %s: booleans must be true/false, arrays and timestamps as PostgreSQL prints them", b)
		}
		if *d["at"] != c.want {
			t.Errorf("timestamptz %q written as %q, want %q", c.at, *d["at"], c.want)
		}
		if o := m.Old[0]; len(o) != 2 || *o["ok"] != "false" || *o["dom"] != "true" {
			t.Errorf("old %v: want the changed booleans as false/true", m.Old)
		}
	}
}

func TestValueStylePostgresIsDefault(t *testing.T) {
	for _, style := range []taskv1.CanalValueStyle{taskv1.CanalValueStyle_CANAL_VALUE_STYLE_UNSPECIFIED, taskv1.CanalValueStyle_CANAL_VALUE_STYLE_POSTGRES} {
		e := New(Options{Objects: objects(), IDBase: 1, ValueStyle: style})
		tab := e.SetRelation(ordersRelation(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_FULL))
		b, err := e.Encode(nil, tab, event(cdcv1.Operation_OPERATION_INSERT, row(1, "1.00", "x"), nil))
		if err != nil {
			t.Fatal(err)
		}
		if d := Decode(t, b).Data[0]; *d["ok"] != "t" || *d["at"] != "2023-11-14 22:13:20.123+00" {
			t.Errorf("style %v wrote %s, want PostgreSQL's text", style, b)
		}
	}
}
