package dtsavro_test

import (
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"google.golang.org/protobuf/types/known/timestamppb"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/dtsavro"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// Messages are decoded with goavro, an Avro implementation independent of
// the hamba/avro the encoder uses, reading the embedded record.avsc.

func codec(t testing.TB) *goavro.Codec {
	t.Helper()
	c, err := goavro.NewCodec(dtsavro.SchemaJSON)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func decode(t testing.TB, b []byte) map[string]any {
	t.Helper()
	native, rest, err := codec(t).NativeFromBinary(b)
	if err != nil {
		t.Fatalf("goavro cannot decode the message: %v", err)
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes left after the Record", len(rest))
	}
	return native.(map[string]any)
}

// union unwraps goavro's {member: value} form; null is ("null", nil).
func union(t testing.TB, v any) (string, any) {
	t.Helper()
	if v == nil {
		return "null", nil
	}
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		t.Fatalf("not a union value: %#v", v)
	}
	for k, x := range m {
		return k, x
	}
	return "", nil
}

// Values are PostgreSQL's text output, as capture sends them; nil is NULL.
func i64(v int64) any { return strconv.FormatInt(v, 10) }
func toast() any      { return tuple.UnchangedToast }

func numericMod(p, s int32) int32 { return (p<<16 | s&0x7ff) + 4 }

// allTypes has a column for every mapping.
func allTypes() *cdcv1.Relation {
	return &cdcv1.Relation{
		Oid: 16384, Schema: "Sales", Table: "Orders", ReplicaIdentity: cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT,
		KeyColumns: []string{"id"},
		Columns: []*cdcv1.Column{
			{Name: "id", TypeOid: 20, TypeName: "bigint", Key: true},
			{Name: "small", TypeOid: 21, TypeName: "smallint"},
			{Name: "int", TypeOid: 23, TypeName: "integer"},
			{Name: "o", TypeOid: 26, TypeName: "oid"},
			{Name: "f4", TypeOid: 700, TypeName: "real"},
			{Name: "f8", TypeOid: 701, TypeName: "double precision"},
			{Name: "price", TypeOid: 1700, TypeName: "numeric(10,2)", TypeModifier: numericMod(10, 2)},
			{Name: "anynum", TypeOid: 1700, TypeName: "numeric", TypeModifier: -1},
			{Name: "note", TypeOid: 25, TypeName: "text"},
			{Name: "vc", TypeOid: 1043, TypeName: "character varying(64)", TypeModifier: 68},
			{Name: "bp", TypeOid: 1042, TypeName: "character(3)", TypeModifier: 7},
			{Name: "nm", TypeOid: 19, TypeName: "name"},
			{Name: "ci", TypeOid: 91234, TypeName: "citext"},
			{Name: "mood", TypeOid: 91235, TypeName: "mood"},
			{Name: "ok", TypeOid: 16, TypeName: "boolean"},
			{Name: "raw", TypeOid: 17, TypeName: "bytea"},
			{Name: "day", TypeOid: 1082, TypeName: "date"},
			{Name: "wall", TypeOid: 1114, TypeName: "timestamp without time zone"},
			{Name: "at", TypeOid: 1184, TypeName: "timestamp with time zone"},
			{Name: "doc", TypeOid: 3802, TypeName: "jsonb"},
			{Name: "ints", TypeOid: 1007, TypeName: "integer[]"},
			{Name: "span", TypeOid: 1186, TypeName: "interval"},
			{Name: "secret", TypeOid: 25, TypeName: "text"},
			{Name: "nothing", TypeOid: 25, TypeName: "text"},
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

func allValues() []any {
	return []any{
		i64(1), i64(-32768), i64(2147483647), i64(4294967295),
		"0.1", "-Infinity",
		"12345678.90", "NaN",
		"héllo", "v", "ab ", "pg_class", "CaseLess", "happy",
		"t", `\x00ff10`,
		"2024-05-06", "2024-05-06 07:08:09.123456", "2024-05-06 07:08:09.123456+00",
		`{"a": [1, 2]}`, "{1,2,NULL}", "1 day 02:03:04.000005",
		"dropped", nil,
	}
}

var commitTime = time.Date(2024, 5, 6, 7, 8, 9, 987_000_000, time.UTC)

func newEncoder(rel *cdcv1.Relation) *dtsavro.Encoder {
	e := dtsavro.New(dtsavro.Options{SourceDatabase: "Shop", Objects: objects(), IDBase: 1000})
	e.SetRelation(rel)
	return e
}

func event(op cdcv1.Operation, nv, ov []any) *cdcv1.ChangeEvent {
	ev := &cdcv1.ChangeEvent{Op: op, RelationOid: 16384,
		Lsn: 0x16_B374D848, CommitLsn: 0x16_B374D9A0, Xid: 4_000_000_123, CommitTime: timestamppb.New(commitTime)}
	if nv != nil {
		ev.NewTuple = tuple.Of(nv...)
	}
	if ov != nil {
		ev.OldTuple = tuple.Of(ov...)
	}
	return ev
}

func encode(t testing.TB, e *dtsavro.Encoder, ev *cdcv1.ChangeEvent) map[string]any {
	t.Helper()
	tab, ok := e.Table(ev.GetRelationOid())
	if !ok {
		t.Fatal("relation not set")
	}
	b, err := e.Encode([]byte("prefix"), tab, ev)
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:6]) != "prefix" {
		t.Fatal("Encode did not append to dst")
	}
	return decode(t, b[6:])
}

// rec is a record member of the image union: its full name and fields.
type rec struct {
	name   string
	fields map[string]any
}

func some(v int32) any { return map[string]any{"int": v} }

func integer(prec int32, v string) rec {
	return rec{"Integer", map[string]any{"precision": prec, "value": v}}
}
func character(v string) rec {
	return rec{"Character", map[string]any{"charset": "utf8", "value": []byte(v)}}
}
func textObject(typ, v string) rec { return rec{"TextObject", map[string]any{"type": typ, "value": v}} }
func decimal(v string, p, s int32) rec {
	return rec{"Decimal", map[string]any{"value": v, "precision": p, "scale": s}}
}
func float(v float64, p int32) rec {
	return rec{"Float", map[string]any{"value": v, "precision": p, "scale": int32(0)}}
}
func dateTime(y, mo, d int32, hms ...int32) rec {
	f := map[string]any{"year": some(y), "month": some(mo), "day": some(d), "hour": nil, "minute": nil, "second": nil, "millis": nil}
	if len(hms) == 4 {
		f["hour"], f["minute"], f["second"], f["millis"] = some(hms[0]), some(hms[1]), some(hms[2]), some(hms[3])
	}
	return rec{"DateTime", f}
}
func timestamp(sec int64, micros int32) rec {
	return rec{"Timestamp", map[string]any{"timestamp": sec, "millis": micros}}
}

// none is EmptyObject NONE; nil is SQL NULL.
const none = "NONE"

var wantFields = []map[string]any{
	{"name": "id", "dataTypeNumber": int32(20)}, {"name": "small", "dataTypeNumber": int32(21)},
	{"name": "int", "dataTypeNumber": int32(23)}, {"name": "o", "dataTypeNumber": int32(26)},
	{"name": "f4", "dataTypeNumber": int32(700)}, {"name": "f8", "dataTypeNumber": int32(701)},
	{"name": "price", "dataTypeNumber": int32(1700)}, {"name": "anynum", "dataTypeNumber": int32(1700)},
	{"name": "Remark", "dataTypeNumber": int32(25)}, {"name": "vc", "dataTypeNumber": int32(1043)},
	{"name": "bp", "dataTypeNumber": int32(1042)}, {"name": "nm", "dataTypeNumber": int32(19)},
	{"name": "ci", "dataTypeNumber": int32(91234)}, {"name": "mood", "dataTypeNumber": int32(91235)},
	{"name": "ok", "dataTypeNumber": int32(16)}, {"name": "raw", "dataTypeNumber": int32(17)},
	{"name": "day", "dataTypeNumber": int32(1082)}, {"name": "wall", "dataTypeNumber": int32(1114)},
	{"name": "at", "dataTypeNumber": int32(1184)}, {"name": "doc", "dataTypeNumber": int32(3802)},
	{"name": "ints", "dataTypeNumber": int32(1007)}, {"name": "span", "dataTypeNumber": int32(1186)},
	{"name": "nothing", "dataTypeNumber": int32(25)},
}

// wantAll is allValues() as images, in written-column order (secret dropped).
func wantAll() []any {
	return []any{
		integer(19, "1"), integer(5, "-32768"), integer(10, "2147483647"), integer(10, "4294967295"),
		float(float64(float32(0.1)), 24), float(math.Inf(-1), 53),
		decimal("12345678.90", 10, 2), decimal("NaN", 0, 0),
		character("héllo"), character("v"), character("ab "), character("pg_class"), character("CaseLess"),
		textObject("mood", "happy"), textObject("boolean", "t"),
		rec{"BinaryObject", map[string]any{"type": "bytea", "value": []byte{0x00, 0xff, 0x10}}},
		dateTime(2024, 5, 6), dateTime(2024, 5, 6, 7, 8, 9, 123456), timestamp(1_714_979_289, 123456),
		textObject("jsonb", `{"a": [1, 2]}`), textObject("integer[]", "{1,2,NULL}"), textObject("interval", "1 day 02:03:04.000005"),
		nil,
	}
}

// checkImage compares an image field, element by element.
func checkImage(t *testing.T, what string, got any, want []any) {
	t.Helper()
	m, v := union(t, got)
	if want == nil {
		if m != "null" {
			t.Errorf("%s is %s %v, want null", what, m, v)
		}
		return
	}
	if m != "array" {
		t.Fatalf("%s is union member %s, want array", what, m)
	}
	arr := v.([]any)
	if len(arr) != len(want) {
		t.Fatalf("%s has %d elements, want %d", what, len(arr), len(want))
	}
	for i, w := range want {
		checkElement(t, what, i, arr[i], w)
	}
}

func checkElement(t *testing.T, what string, i int, got, want any) {
	t.Helper()
	m, v := union(t, got)
	switch w := want.(type) {
	case nil:
		if m != "null" {
			t.Errorf("%s[%d] = %s %v, want null", what, i, m, v)
		}
	case string: // EmptyObject
		if m != ns+".EmptyObject" || v != w {
			t.Errorf("%s[%d] = %s %v, want EmptyObject %s", what, i, m, v, w)
		}
	case rec:
		if m != ns+"."+w.name || !reflect.DeepEqual(v, w.fields) {
			t.Errorf("%s[%d] = %s %#v,\n want %s %#v", what, i, m, v, w.name, w.fields)
		}
	}
}

func checkHeader(t *testing.T, r map[string]any, op string, id int64) {
	t.Helper()
	want := map[string]any{
		"version": int32(1), "id": id, "sourceTimestamp": int64(1_714_979_289),
		"sourcePosition": "16/B374D848", "safeSourcePosition": "16/B374D9A0", "sourceTxid": "4000000123",
		"source":    map[string]any{"sourceType": "PostgreSQL", "version": ""},
		"operation": op, "objectName": map[string]any{"string": "shop.sales.orders"},
		"processTimestamps": nil, "tags": map[string]any{}, "bornTimestamp": commitTime.UnixMilli(),
	}
	for k, w := range want {
		if !reflect.DeepEqual(r[k], w) {
			t.Errorf("%s: %s = %#v, want %#v", op, k, r[k], w)
		}
	}
	m, fields := union(t, r["fields"])
	if m != "array" {
		t.Fatalf("fields is %s, want array", m)
	}
	got := fields.([]any)
	if len(got) != len(wantFields) {
		t.Fatalf("%d fields, want %d", len(got), len(wantFields))
	}
	for i, f := range wantFields {
		if !reflect.DeepEqual(got[i], f) {
			t.Errorf("fields[%d] = %v, want %v", i, got[i], f)
		}
	}
}

func TestInsertEveryType(t *testing.T) {
	e := newEncoder(allTypes())
	r := encode(t, e, event(cdcv1.Operation_OPERATION_INSERT, allValues(), nil))
	checkHeader(t, r, "INSERT", 1000)
	checkImage(t, "beforeImages", r["beforeImages"], nil)
	checkImage(t, "afterImages", r["afterImages"], wantAll())
	if e.NextID() != 1001 {
		t.Errorf("next id %d, want 1001", e.NextID())
	}
}

// TestUpdateDefaultIdentity: under REPLICA IDENTITY DEFAULT the before-image
// reveals only the key; other columns are "not present", not NULL. An
// unchanged TOAST value the before-image does not reveal is NONE too.
func TestUpdateDefaultIdentity(t *testing.T) {
	e := newEncoder(allTypes())
	old := make([]any, len(allValues()))
	old[0] = i64(7)
	nv := allValues()
	nv[8] = toast()
	r := encode(t, e, event(cdcv1.Operation_OPERATION_UPDATE, nv, old))
	checkHeader(t, r, "UPDATE", 1000)
	before := []any{integer(19, "7")}
	for range len(wantFields) - 1 {
		before = append(before, none)
	}
	checkImage(t, "beforeImages", r["beforeImages"], before)
	after := wantAll()
	after[8] = none
	checkImage(t, "afterImages", r["afterImages"], after)
	if e.UnchangedToastNulls() != 1 {
		t.Errorf("unchanged TOAST count %d, want 1", e.UnchangedToastNulls())
	}

	// Without a before-image (the key did not change) beforeImages is null.
	r = encode(t, e, event(cdcv1.Operation_OPERATION_UPDATE, allValues(), nil))
	checkImage(t, "beforeImages", r["beforeImages"], nil)
	checkImage(t, "afterImages", r["afterImages"], wantAll())
}

// TestFullIdentity: with REPLICA IDENTITY FULL the before-image is complete,
// NULL stays NULL, and an unchanged TOAST value takes the before-image's.
func TestFullIdentity(t *testing.T) {
	rel := allTypes()
	rel.ReplicaIdentity = cdcv1.ReplicaIdentity_REPLICA_IDENTITY_FULL
	e := newEncoder(rel)
	old := allValues()
	old[8] = "old remark"
	nv := allValues()
	nv[8] = toast()
	r := encode(t, e, event(cdcv1.Operation_OPERATION_UPDATE, nv, old))
	before := wantAll()
	before[8] = character("old remark")
	checkImage(t, "beforeImages", r["beforeImages"], before)
	checkImage(t, "afterImages", r["afterImages"], before)
	if e.UnchangedToastNulls() != 0 {
		t.Errorf("unchanged TOAST count %d, want 0", e.UnchangedToastNulls())
	}

	r = encode(t, e, event(cdcv1.Operation_OPERATION_DELETE, nil, allValues()))
	checkHeader(t, r, "DELETE", 1001)
	checkImage(t, "beforeImages", r["beforeImages"], wantAll())
	checkImage(t, "afterImages", r["afterImages"], nil)
}

// TestSpecialValues covers values DateTime cannot state and the edges of
// the numeric mappings.
func TestSpecialValues(t *testing.T) {
	rel := &cdcv1.Relation{Oid: 16384, Schema: "s", Table: "t", ReplicaIdentity: cdcv1.ReplicaIdentity_REPLICA_IDENTITY_FULL,
		Columns: []*cdcv1.Column{
			{Name: "d1", TypeOid: 1082, TypeName: "date"},
			{Name: "d2", TypeOid: 1082, TypeName: "date"},
			{Name: "d3", TypeOid: 1082, TypeName: "date"},
			{Name: "t1", TypeOid: 1114, TypeName: "timestamp(3) without time zone"},
			{Name: "t2", TypeOid: 1114, TypeName: "timestamp without time zone"},
			{Name: "t3", TypeOid: 1114, TypeName: "timestamp without time zone"},
			{Name: "z1", TypeOid: 1184, TypeName: "timestamp with time zone"},
			{Name: "z2", TypeOid: 1184, TypeName: "timestamp with time zone"},
			{Name: "n1", TypeOid: 1700, TypeName: "numeric(5,-2)", TypeModifier: numericMod(5, -2)},
			{Name: "n2", TypeOid: 1700, TypeName: "numeric(1000,1000)", TypeModifier: numericMod(1000, 1000)},
			{Name: "f", TypeOid: 701, TypeName: "double precision"},
			{Name: "big", TypeOid: 4294967295, TypeName: "odd"},
			{Name: "b", TypeOid: 16, TypeName: "boolean"},
		}}
	e := dtsavro.New(dtsavro.Options{SourceDatabase: "my.db", IDBase: 5})
	e.SetRelation(rel)
	ev := event(cdcv1.Operation_OPERATION_INSERT, []any{
		"infinity", "0001-01-01 BC", "0001-01-01",
		"0001-12-31 23:59:59.999999 BC", "-infinity", "1969-12-31 23:59:59.999999",
		"1969-12-31 23:59:58.499999+00", "infinity",
		"12300", "0.5", "NaN", "x", "f",
	}, nil)
	ev.Snapshot = true
	ev.CommitTime = nil
	ev.Lsn, ev.CommitLsn = 0, 0xFFFFFFFF_0000000A
	r := encode(t, e, ev)
	if r["objectName"].(map[string]any)["string"] != `my\u002Edb.s.t` {
		t.Errorf("objectName %v, want the dot escaped as DTS does", r["objectName"])
	}
	if !reflect.DeepEqual(r["tags"], map[string]any{"snapshot": "true"}) {
		t.Errorf("tags %v, want snapshot=true", r["tags"])
	}
	if r["sourcePosition"] != "0/00000000" || r["safeSourcePosition"] != "FFFFFFFF/0000000A" {
		t.Errorf("positions %v %v", r["sourcePosition"], r["safeSourcePosition"])
	}
	if r["sourceTimestamp"].(int64) <= 0 || r["bornTimestamp"].(int64)/1000 != r["sourceTimestamp"].(int64) {
		t.Errorf("without a commit time: sourceTimestamp %v bornTimestamp %v", r["sourceTimestamp"], r["bornTimestamp"])
	}
	_, fields := union(t, r["fields"])
	if got := fields.([]any)[11].(map[string]any)["dataTypeNumber"]; got != int32(-1) {
		t.Errorf("OID 4294967295 as dataTypeNumber %v, want -1 (oid::int4)", got)
	}
	want := []any{
		textObject("date", "infinity"), textObject("date", "0001-01-01 BC"), dateTime(1, 1, 1),
		textObject("timestamp(3) without time zone", "0001-12-31 23:59:59.999999 BC"),
		textObject("timestamp without time zone", "-infinity"), dateTime(1969, 12, 31, 23, 59, 59, 999999),
		timestamp(-2, 499_999), textObject("timestamp with time zone", "infinity"),
		decimal("12300", 5, -2), decimal("0.5", 1000, 1000),
		nil, // NaN: compared below, NaN != NaN
		textObject("odd", "x"), textObject("boolean", "f"),
	}
	_, after := union(t, r["afterImages"])
	arr := after.([]any)
	m, v := union(t, arr[10])
	if m != ns+".Float" || !math.IsNaN(v.(map[string]any)["value"].(float64)) {
		t.Errorf("NaN float is %s %v", m, v)
	}
	arr[10] = nil
	checkImage(t, "afterImages", map[string]any{"array": arr}, want)
}

func TestErrors(t *testing.T) {
	e := newEncoder(allTypes())
	tab, _ := e.Table(16384)
	for name, ev := range map[string]*cdcv1.ChangeEvent{
		"short row":        event(cdcv1.Operation_OPERATION_INSERT, allValues()[:3], nil),
		"short old row":    event(cdcv1.Operation_OPERATION_UPDATE, allValues(), allValues()[:3]),
		"no operation":     event(cdcv1.Operation_OPERATION_UNSPECIFIED, allValues(), nil),
		"insert, no value": event(cdcv1.Operation_OPERATION_INSERT, nil, nil),
		"unreadable float": event(cdcv1.Operation_OPERATION_INSERT, withValue(4, "s3cret"), nil),
		"unreadable date":  event(cdcv1.Operation_OPERATION_INSERT, withValue(16, "s3cret"), nil),
		"malformed tuple": func() *cdcv1.ChangeEvent {
			ev := event(cdcv1.Operation_OPERATION_INSERT, allValues(), nil)
			ev.NewTuple.Ends[2] = 1 << 30
			return ev
		}(),
	} {
		_, err := e.Encode(nil, tab, ev)
		if err == nil {
			t.Errorf("%s: no error", name)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: error %q quotes the value", name, err)
		}
	}
	if e.NextID() != 1000 {
		t.Errorf("failed encodes consumed ids: next %d", e.NextID())
	}
}

// withValue is allValues with column i's text replaced.
func withValue(i int, text string) []any {
	v := allValues()
	v[i] = text
	return v
}

func TestAppendLSN(t *testing.T) {
	for lsn, want := range map[uint64]string{0: "0/00000000", 0x16B3748: "0/016B3748", 0x1A_0000000F: "1A/0000000F", math.MaxUint64: "FFFFFFFF/FFFFFFFF"} {
		if got := string(dtsavro.AppendLSN(nil, lsn)); got != want {
			t.Errorf("AppendLSN(%#x) = %s, want %s", lsn, got, want)
		}
	}
}

// TestDeleteWithoutBeforeImage: a DELETE whose before-image is missing names
// every column NONE rather than NULL.
func TestDeleteWithoutBeforeImage(t *testing.T) {
	e := newEncoder(allTypes())
	r := encode(t, e, event(cdcv1.Operation_OPERATION_DELETE, nil, nil))
	before := make([]any, len(wantFields))
	for i := range before {
		before[i] = none
	}
	checkImage(t, "beforeImages", r["beforeImages"], before)
	checkImage(t, "afterImages", r["afterImages"], nil)
}

// TestKindsFromCapture: with the base type and kind capture resolves, an
// enum is Character (formats.md), and a domain maps as its base type, down
// to float4's precision, while TextObject.type keeps the domain's name.
func TestKindsFromCapture(t *testing.T) {
	base, enum, comp := cdcv1.TypeKind_TYPE_KIND_BASE, cdcv1.TypeKind_TYPE_KIND_ENUM, cdcv1.TypeKind_TYPE_KIND_COMPOSITE
	rel := &cdcv1.Relation{Oid: 16384, Schema: "Sales", Table: "Kinds", KeyColumns: []string{"id"},
		ReplicaIdentity: cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT,
		Columns: []*cdcv1.Column{
			{Name: "id", TypeOid: 20, TypeName: "bigint", Key: true, BaseTypeOid: 20, BaseTypeKind: base},
			{Name: "mood", TypeOid: 91235, TypeName: "mood", BaseTypeOid: 91235, BaseTypeKind: enum},
			{Name: "posint", TypeOid: 91236, TypeName: "posint", BaseTypeOid: 23, BaseTypeKind: base},
			{Name: "temp", TypeOid: 91237, TypeName: "temp", BaseTypeOid: 700, BaseTypeKind: base},
			{Name: "label", TypeOid: 91238, TypeName: "label", BaseTypeOid: 1043, BaseTypeKind: base},
			{Name: "doc", TypeOid: 91239, TypeName: "doc", BaseTypeOid: 3802, BaseTypeKind: base},
			{Name: "pair", TypeOid: 91240, TypeName: "pair", BaseTypeOid: 91240, BaseTypeKind: comp},
		}}
	e := dtsavro.New(dtsavro.Options{SourceDatabase: "Shop", IDBase: 1})
	e.SetRelation(rel)
	r := encode(t, e, event(cdcv1.Operation_OPERATION_INSERT, []any{
		i64(1), "happy", i64(42), "0.1", "x", `{"a": 1}`, "(1,)",
	}, nil))
	checkImage(t, "afterImages", r["afterImages"], []any{
		integer(19, "1"), character("happy"), integer(10, "42"), float(float64(float32(0.1)), 24),
		character("x"), textObject("doc", `{"a": 1}`), textObject("pair", "(1,)"),
	})
}
