package canal

import (
	"encoding/json"
	"reflect"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/canal/canaltest"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
	"github.com/ferry-cdc/ferry/services/tuple"
)

type Message = canaltest.Message

func Decode(t testing.TB, b []byte) Message { t.Helper(); return canaltest.Decode(t, b) }

func str(s string) *string { return &s }

// Values are PostgreSQL's text output, as capture sends them; nil is NULL.
func i64(v int64) any { return strconv.FormatInt(v, 10) }
func toast() any      { return tuple.UnchangedToast }

func ordersRelation(ident cdcv1.ReplicaIdentity) *cdcv1.Relation {
	return &cdcv1.Relation{
		Oid: 16384, Schema: "Sales", Table: "Orders", ReplicaIdentity: ident,
		KeyColumns: []string{"id", "region"},
		Columns: []*cdcv1.Column{
			{Name: "id", TypeOid: 20, TypeName: "bigint", Key: true},
			{Name: "region", TypeOid: 1043, TypeName: "character varying(8)", Key: true},
			{Name: "amount", TypeOid: 1700, TypeName: "numeric(5,2)"},
			{Name: "note", TypeOid: 25, TypeName: "text"},
			{Name: "ok", TypeOid: 16, TypeName: "boolean"},
			{Name: "at", TypeOid: 1184, TypeName: "timestamp with time zone"},
			{Name: "tags", TypeOid: 1009, TypeName: "text[]"},
			{Name: "secret", TypeOid: 25, TypeName: "text"},
			{Name: "ratio", TypeOid: 700, TypeName: "real"},
			{Name: "raw", TypeOid: 17, TypeName: "bytea"},
		},
	}
}

func objects() *taskv1.ObjectSelection {
	return &taskv1.ObjectSelection{
		NameCase: taskv1.NameCase_NAME_CASE_LOWER,
		Tables: []*taskv1.TableSelection{{
			Schema: "Sales", Table: "Orders",
			Columns: []*taskv1.ColumnMapping{{Name: "secret", Drop: true}, {Name: "note", Rename: "Remark"}},
		}},
	}
}

func row(id int64, amount, note string) []any {
	return []any{
		i64(id), "eu", amount, note, "t", "2023-11-14 22:13:20.123+00",
		`{a,"b c"}`, "hidden", "0.1", `\xdead01`,
	}
}

func newEncoder(rel *cdcv1.Relation) (*Encoder, *relation.Table) {
	e := New(Options{
		Objects: objects(),
		IDBase:  1000,
		Now:     func() time.Time { return time.UnixMilli(1_700_000_001_000) },
	})
	return e, e.SetRelation(rel)
}

const commitMs = 1_700_000_000_500

func event(op cdcv1.Operation, nv, ov []any) *cdcv1.ChangeEvent {
	ev := &cdcv1.ChangeEvent{Op: op, RelationOid: 16384, Lsn: 77, CommitLsn: 80,
		CommitTime: timestamppb.New(time.UnixMilli(commitMs))}
	if nv != nil {
		ev.NewTuple = tuple.Of(nv...)
	}
	if ov != nil {
		ev.OldTuple = tuple.Of(ov...)
	}
	return ev
}

const goldenPrefix = `"database":"sales","table":"orders","pkNames":["id","region"],"isDdl":false,"type":`
const goldenTypes = `"sql":"","sqlType":{"id":-5,"region":12,"amount":2,"Remark":-1,"ok":16,"at":2014,"tags":2003,"ratio":7,"raw":-2},"mysqlType":{"id":"bigint","region":"character varying(8)","amount":"numeric(5,2)","Remark":"text","ok":"boolean","at":"timestamp with time zone","tags":"text[]","ratio":"real","raw":"bytea"}`

func TestGolden(t *testing.T) {
	e, tab := newEncoder(ordersRelation(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_FULL))
	cases := []struct {
		name string
		ev   *cdcv1.ChangeEvent
		want string
	}{
		{"insert", event(cdcv1.Operation_OPERATION_INSERT, row(1, "9.50", "line1\n\"q\"\\ \x01 ü 🚀"), nil),
			`{"id":1000,` + goldenPrefix + `"INSERT","es":1700000000500,"ts":1700000001000,` + goldenTypes +
				`,"data":[{"id":"1","region":"eu","amount":"9.50","Remark":"line1\n\"q\"\\ \u0001 ü 🚀","ok":"t","at":"2023-11-14 22:13:20.123+00","tags":"{a,\"b c\"}","ratio":"0.1","raw":"\\xdead01"}],"old":null}`},
		{"update full with unchanged toast", event(cdcv1.Operation_OPERATION_UPDATE,
			func() []any { r := row(1, "10.00", ""); r[3] = toast(); return r }(),
			row(1, "9.50", "long text")),
			`{"id":1001,` + goldenPrefix + `"UPDATE","es":1700000000500,"ts":1700000001000,` + goldenTypes +
				`,"data":[{"id":"1","region":"eu","amount":"10.00","Remark":"long text","ok":"t","at":"2023-11-14 22:13:20.123+00","tags":"{a,\"b c\"}","ratio":"0.1","raw":"\\xdead01"}],"old":[{"amount":"9.50"}]}`},
		{"update without before-image: nothing known, old is [{}] (formats.md)", event(cdcv1.Operation_OPERATION_UPDATE, row(1, "11.00", "n"), nil),
			`{"id":1002,` + goldenPrefix + `"UPDATE","es":1700000000500,"ts":1700000001000,` + goldenTypes +
				`,"data":[{"id":"1","region":"eu","amount":"11.00","Remark":"n","ok":"t","at":"2023-11-14 22:13:20.123+00","tags":"{a,\"b c\"}","ratio":"0.1","raw":"\\xdead01"}],"old":[{}]}`},
		{"update that changes nothing", event(cdcv1.Operation_OPERATION_UPDATE, row(1, "11.00", "n"), row(1, "11.00", "n")),
			`{"id":1003,` + goldenPrefix + `"UPDATE","es":1700000000500,"ts":1700000001000,` + goldenTypes +
				`,"data":[{"id":"1","region":"eu","amount":"11.00","Remark":"n","ok":"t","at":"2023-11-14 22:13:20.123+00","tags":"{a,\"b c\"}","ratio":"0.1","raw":"\\xdead01"}],"old":[{}]}`},
		{"delete", event(cdcv1.Operation_OPERATION_DELETE, nil, row(1, "11.00", "n")),
			`{"id":1004,` + goldenPrefix + `"DELETE","es":1700000000500,"ts":1700000001000,` + goldenTypes +
				`,"data":[{"id":"1","region":"eu","amount":"11.00","Remark":"n","ok":"t","at":"2023-11-14 22:13:20.123+00","tags":"{a,\"b c\"}","ratio":"0.1","raw":"\\xdead01"}],"old":null}`},
	}
	for _, c := range cases {
		got, err := e.Encode(nil, tab, c.ev)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if string(got) != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
		Decode(t, got)
	}
	if n := e.UnchangedToastNulls(); n != 0 {
		t.Fatalf("toast nulls = %d, want 0 (FULL reveals the value)", n)
	}
}

func TestStrictFields(t *testing.T) {
	e, tab := newEncoder(ordersRelation(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT))
	nv := row(2, "1.00", "x")
	nv[3] = toast()
	nv[1] = "us"
	ov := []any{i64(2), "eu", nil, nil, nil, nil, nil, nil, nil, nil}
	b, err := e.Encode(nil, tab, event(cdcv1.Operation_OPERATION_UPDATE, nv, ov))
	if err != nil {
		t.Fatal(err)
	}
	m := Decode(t, b)
	want := Message{
		ID: new(int64(1000)), Database: str("sales"), Table: str("orders"), PkNames: []string{"id", "region"},
		IsDdl: new(false), Type: str("UPDATE"), Es: new(int64(commitMs)), Ts: new(int64(1_700_000_001_000)), SQL: str(""),
		SQLType: map[string]int{"id": -5, "region": 12, "amount": 2, "Remark": -1, "ok": 16, "at": 2014, "tags": 2003, "ratio": 7, "raw": -2},
		MysqlType: map[string]string{"id": "bigint", "region": "character varying(8)", "amount": "numeric(5,2)", "Remark": "text",
			"ok": "boolean", "at": "timestamp with time zone", "tags": "text[]", "ratio": "real", "raw": "bytea"},
		// Remark is an unchanged TOAST value DEFAULT does not reveal: left
		// out, never null, and named in the header.
		Data: []map[string]*string{{"id": str("2"), "region": str("us"), "amount": str("1.00"), "ok": str("t"),
			"at": str("2023-11-14 22:13:20.123+00"), "tags": str(`{a,"b c"}`), "ratio": str("0.1"), "raw": str(`\xdead01`)}},
		// DEFAULT identity reveals only the key: region changed.
		Old: []map[string]*string{{"region": str("eu")}},
	}
	if !reflect.DeepEqual(m, want) {
		gb, _ := json.Marshal(m)
		wb, _ := json.Marshal(want)
		t.Fatalf("decoded\n %s\nwant\n %s", gb, wb)
	}
	if n := e.UnchangedToastNulls(); n != 1 {
		t.Fatalf("toast nulls = %d, want 1", n)
	}
	if got := string(e.UnchangedToast()); got != `["Remark"]` {
		t.Fatalf("unchanged TOAST columns %q, want [\"Remark\"]", got)
	}
	if _, err := e.Encode(nil, tab, event(cdcv1.Operation_OPERATION_INSERT, row(3, "1.00", "x"), nil)); err != nil {
		t.Fatal(err)
	}
	if got := e.UnchangedToast(); got != nil {
		t.Fatalf("unchanged TOAST columns after an INSERT %q, want none", got)
	}
}

func TestDatabaseNameAndNoKey(t *testing.T) {
	rel := &cdcv1.Relation{Oid: 1, Schema: "public", Table: "Log", Columns: []*cdcv1.Column{{Name: "Msg", TypeOid: 3802, TypeName: "jsonb"}}}
	e := New(Options{SourceDatabase: "shop-db", DatabaseIsDBName: true,
		Objects: &taskv1.ObjectSelection{NameCase: taskv1.NameCase_NAME_CASE_UPPER}})
	tab := e.SetRelation(rel)
	b, err := e.Encode(nil, tab, &cdcv1.ChangeEvent{Op: cdcv1.Operation_OPERATION_INSERT, RelationOid: 1, NewTuple: tuple.Of(`{"a": 1}`)})
	if err != nil {
		t.Fatal(err)
	}
	m := Decode(t, b)
	if *m.Database != "SHOP-DB" || *m.Table != "LOG" || m.PkNames != nil || m.SQLType["MSG"] != 1111 || *m.Data[0]["MSG"] != `{"a": 1}` || m.Old != nil {
		t.Fatalf("unexpected %s", b)
	}
	if *m.Es != *m.Ts {
		t.Fatalf("es %d without a commit time, want ts %d", *m.Es, *m.Ts)
	}
	// ids start at the stream's start time in microseconds.
	if now := time.Now().UnixMicro(); *m.ID > now || *m.ID < now-int64(time.Minute/time.Microsecond) {
		t.Fatalf("id %d is not near now (%d µs)", *m.ID, now)
	}
}

func TestSQLTypes(t *testing.T) {
	for _, c := range []struct {
		oid  uint32
		name string
		want int
	}{
		{16, "boolean", 16}, {1560, "bit(3)", -7}, {21, "smallint", 5}, {23, "integer", 4}, {20, "bigint", -5},
		{700, "real", 7}, {701, "double precision", 8}, {1700, "numeric", 2}, {1042, "character(2)", 1},
		{1043, "character varying", 12}, {25, "text", -1}, {1082, "date", 91}, {1083, "time without time zone", 92},
		{1266, "time with time zone", 2013}, {1114, "timestamp without time zone", 93},
		{1184, "timestamp with time zone", 2014}, {17, "bytea", -2}, {1007, "integer[]", 2003},
		{99999, "my_enum[]", 2003}, {2950, "uuid", 1111}, {99999, "my_enum", 1111},
		{26, "oid", -5}, {19, "name", 12}, {18, `"char"`, 1}, {99998, "citext", -1}, {99998, "ext.citext", -1},
		{790, "money", 1111}, {1562, "bit varying(8)", 1111},
	} {
		if got := SQLType(&cdcv1.Column{TypeOid: c.oid, TypeName: c.name}); got != c.want {
			t.Errorf("SQLType(%d, %q) = %d, want %d", c.oid, c.name, got, c.want)
		}
	}
}

// TestSQLTypesByBaseType: capture resolves domains and names each type's
// kind, and sqlType follows the base type and kind.
func TestSQLTypesByBaseType(t *testing.T) {
	for _, c := range []struct {
		col  *cdcv1.Column
		want int
	}{
		{&cdcv1.Column{TypeOid: 99999, TypeName: "posint", BaseTypeOid: 23, BaseTypeKind: cdcv1.TypeKind_TYPE_KIND_BASE}, 4},
		{&cdcv1.Column{TypeOid: 99999, TypeName: "label", BaseTypeOid: 1043, BaseTypeKind: cdcv1.TypeKind_TYPE_KIND_BASE}, 12},
		{&cdcv1.Column{TypeOid: 99999, TypeName: "ints", BaseTypeOid: 1007, BaseTypeKind: cdcv1.TypeKind_TYPE_KIND_ARRAY}, 2003},
		{&cdcv1.Column{TypeOid: 99999, TypeName: "mood", BaseTypeOid: 99999, BaseTypeKind: cdcv1.TypeKind_TYPE_KIND_ENUM}, 12},
		{&cdcv1.Column{TypeOid: 99999, TypeName: "pair", BaseTypeOid: 99999, BaseTypeKind: cdcv1.TypeKind_TYPE_KIND_COMPOSITE}, 2002},
		{&cdcv1.Column{TypeOid: 3904, TypeName: "int4range", BaseTypeOid: 3904, BaseTypeKind: cdcv1.TypeKind_TYPE_KIND_RANGE}, 1111},
	} {
		if got := SQLType(c.col); got != c.want {
			t.Errorf("SQLType(%v) = %d, want %d", c.col, got, c.want)
		}
	}
}

func TestInvalidUTF8AndSeparators(t *testing.T) {
	got := string(appendString(nil, "a\xffb\u2028c"))
	if got != `"a\ufffdb\u2028c"` {
		t.Fatalf("got %s", got)
	}
	var s string
	if err := json.Unmarshal([]byte(got), &s); err != nil || s != "a\ufffdb\u2028c" {
		t.Fatalf("round trip %q %v", s, err)
	}
}

func BenchmarkEncode(b *testing.B) {
	e, tab := newEncoder(ordersRelation(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT))
	ev := event(cdcv1.Operation_OPERATION_INSERT, row(1, "9.50", "some note text"), nil)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = e.Encode(buf[:0], tab, ev)
	}
}
