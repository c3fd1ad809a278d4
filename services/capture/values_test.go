package capture

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"
	"google.golang.org/protobuf/proto"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

func intV(n int64) *cdcv1.Value   { return &cdcv1.Value{Kind: &cdcv1.Value_Int{Int: n}} }
func textV(s string) *cdcv1.Value { return &cdcv1.Value{Kind: &cdcv1.Value_Text{Text: s}} }
func numV(s string) *cdcv1.Value  { return &cdcv1.Value{Kind: &cdcv1.Value_Numeric{Numeric: s}} }
func boolV(b bool) *cdcv1.Value   { return &cdcv1.Value{Kind: &cdcv1.Value_Bool{Bool: b}} }
func bytesV(b []byte) *cdcv1.Value {
	return &cdcv1.Value{Kind: &cdcv1.Value_Bytes{Bytes: b}}
}
func floatV(f float64) *cdcv1.Value { return &cdcv1.Value{Kind: &cdcv1.Value_Float{Float: f}} }
func dateV(days int32) *cdcv1.Value {
	return &cdcv1.Value{Kind: &cdcv1.Value_Date{Date: &cdcv1.Date{Days: days}}}
}
func dateInfV(inf cdcv1.Infinity) *cdcv1.Value {
	return &cdcv1.Value{Kind: &cdcv1.Value_Date{Date: &cdcv1.Date{Infinity: inf}}}
}
func tsV(micros int64) *cdcv1.Value {
	return &cdcv1.Value{Kind: &cdcv1.Value_Timestamp{Timestamp: &cdcv1.Timestamp{Micros: micros}}}
}
func tstzV(micros int64) *cdcv1.Value {
	return &cdcv1.Value{Kind: &cdcv1.Value_Timestamptz{Timestamptz: &cdcv1.Timestamp{Micros: micros}}}
}
func tstzInfV(inf cdcv1.Infinity) *cdcv1.Value {
	return &cdcv1.Value{Kind: &cdcv1.Value_Timestamptz{Timestamptz: &cdcv1.Timestamp{Infinity: inf}}}
}

// Expected numbers were computed by PostgreSQL 15 itself, e.g.
// extract(epoch from '0044-03-15 12:00:00+00 BC'::timestamptz).
func TestDecodeText(t *testing.T) {
	pos, neg := cdcv1.Infinity_INFINITY_POSITIVE, cdcv1.Infinity_INFINITY_NEGATIVE
	tests := []struct {
		name string
		oid  uint32
		in   string
		want *cdcv1.Value
	}{
		{"bool true", pgtype.BoolOID, "t", boolV(true)},
		{"bool false", pgtype.BoolOID, "f", boolV(false)},
		{"int2", pgtype.Int2OID, "-32768", intV(-32768)},
		{"int4", pgtype.Int4OID, "2147483647", intV(2147483647)},
		{"int8 min", pgtype.Int8OID, "-9223372036854775808", intV(math.MinInt64)},
		{"oid", pgtype.OIDOID, "4294967295", intV(4294967295)},
		{"float8", pgtype.Float8OID, "0.30000000000000004", floatV(0.30000000000000004)},
		{"float8 max", pgtype.Float8OID, "1.7976931348623157e+308", floatV(math.MaxFloat64)},
		{"float8 inf", pgtype.Float8OID, "Infinity", floatV(math.Inf(1))},
		{"float8 -inf", pgtype.Float8OID, "-Infinity", floatV(math.Inf(-1))},
		{"float4 is the binary32 value", pgtype.Float4OID, "0.1", floatV(float64(float32(0.1)))},
		{"float8 negative zero", pgtype.Float8OID, "-0", floatV(math.Copysign(0, -1))},
		{"numeric exact", pgtype.NumericOID, "12345678901234567890.000000000001", numV("12345678901234567890.000000000001")},
		{"numeric NaN", pgtype.NumericOID, "NaN", numV("NaN")},
		{"numeric -Infinity", pgtype.NumericOID, "-Infinity", numV("-Infinity")},
		{"text", pgtype.TextOID, "héllo\n'\"", textV("héllo\n'\"")},
		{"varchar", pgtype.VarcharOID, "", textV("")},
		{"bpchar keeps padding", pgtype.BPCharOID, "ab  ", textV("ab  ")},
		{"name", pgtype.NameOID, "Order-Items", textV("Order-Items")},
		{"other type as text", 114, `{"a": 1}`, textV(`{"a": 1}`)},
		{"interval as text", 1186, "1 year 2 mons -00:00:01.5", textV("1 year 2 mons -00:00:01.5")},
		{"bytea with zero bytes", pgtype.ByteaOID, `\x00ff00`, bytesV([]byte{0, 0xff, 0})},
		{"bytea empty", pgtype.ByteaOID, `\x`, bytesV([]byte{})},
		{"bytea escape format", pgtype.ByteaOID, `a\000\\b`, bytesV([]byte{'a', 0, '\\', 'b'})},
		{"date epoch", pgtype.DateOID, "1970-01-01", dateV(0)},
		{"date before epoch", pgtype.DateOID, "1969-12-31", dateV(-1)},
		{"date year 1", pgtype.DateOID, "0001-01-01", dateV(-719162)},
		{"date BC", pgtype.DateOID, "0044-03-15 BC", dateV(-735160)},
		{"date year 10000", pgtype.DateOID, "10000-01-01", dateV(2932897)},
		{"date infinity", pgtype.DateOID, "infinity", dateInfV(pos)},
		{"date -infinity", pgtype.DateOID, "-infinity", dateInfV(neg)},
		{"timestamp micros before epoch", pgtype.TimestampOID, "1969-12-31 23:59:59.999999", tsV(-1)},
		{"timestamp epoch", pgtype.TimestampOID, "1970-01-01 00:00:00", tsV(0)},
		{"timestamp year 10000", pgtype.TimestampOID, "10000-01-01 00:00:01.5", tsV(253402300801500000)},
		{"timestamptz utc", pgtype.TimestamptzOID, "2024-02-29 07:04:56.000001+00", tstzV(1709190296000001)},
		{"timestamptz offset", pgtype.TimestamptzOID, "2024-02-29 12:34:56.000001+05:30", tstzV(1709190296000001)},
		{"timestamptz negative offset", pgtype.TimestamptzOID, "2024-02-29 01:04:56.000001-06", tstzV(1709190296000001)},
		{"timestamptz LMT offset with seconds", pgtype.TimestamptzOID, "1850-01-01 00:00:00+00:19:32", tstzV(-3786826772000000)},
		{"timestamptz BC", pgtype.TimestamptzOID, "0044-03-15 12:00:00+00 BC", tstzV(-63517780800000000)},
		{"timestamp last int64 micro", pgtype.TimestampOID, "294247-01-10 04:00:54.775807", tsV(math.MaxInt64)},
		// Past int64 micros since 1970 (PostgreSQL allows up to 294276 AD)
		// the exact text travels instead of a wrapped-around value.
		{"timestamp beyond int64 micros", pgtype.TimestampOID, "294247-01-10 04:00:54.775808", textV("294247-01-10 04:00:54.775808")},
		{"timestamp max", pgtype.TimestampOID, "294276-12-31 23:59:59.999999", textV("294276-12-31 23:59:59.999999")},
		{"timestamptz last int64 micro", pgtype.TimestamptzOID, "294247-01-10 09:30:54.775807+05:30", tstzV(math.MaxInt64)},
		{"timestamptz max", pgtype.TimestamptzOID, "294276-12-31 23:59:59.999999+00", textV("294276-12-31 23:59:59.999999+00")},
		{"timestamptz infinity", pgtype.TimestamptzOID, "infinity", tstzInfV(pos)},
		{"timestamptz -infinity", pgtype.TimestamptzOID, "-infinity", tstzInfV(neg)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeText(tc.oid, tc.in)
			if err != nil {
				t.Fatalf("decodeText(%d, %q): %v", tc.oid, tc.in, err)
			}
			if !proto.Equal(got, tc.want) {
				t.Fatalf("decodeText(%d, %q) = %v, want %v", tc.oid, tc.in, got, tc.want)
			}
		})
	}
}

func TestDecodeFloatNaNAndSignedZero(t *testing.T) {
	for _, oid := range []uint32{pgtype.Float4OID, pgtype.Float8OID} {
		v, err := decodeText(oid, "NaN")
		if err != nil || !math.IsNaN(v.GetFloat()) {
			t.Fatalf("decodeText(%d, NaN) = %v, %v; want NaN", oid, v, err)
		}
	}
	v, _ := decodeText(pgtype.Float8OID, "-0")
	if !math.Signbit(v.GetFloat()) {
		t.Fatalf("-0 lost its sign: %v", v)
	}
}

func TestDecodeTextRejectsWhatItCannotRead(t *testing.T) {
	bad := []struct {
		oid uint32
		in  string
	}{
		{pgtype.BoolOID, "true"},
		{pgtype.Int4OID, "1.5"},
		{pgtype.Float8OID, "abc"},
		{pgtype.ByteaOID, `\xzz`},
		{pgtype.ByteaOID, `\12`},
		{pgtype.DateOID, "2024-02-30"},
		{pgtype.DateOID, "24-01-01"},
		{pgtype.DateOID, "0000-01-01"},
		{pgtype.DateOID, "2024/01/01"},
		{pgtype.TimestampOID, "2024-01-01T00:00:00"},
		{pgtype.TimestampOID, "2024-01-01 25:00:00"},
		{pgtype.TimestampOID, "2024-01-01 00:00:00.1234567"},
		{pgtype.TimestamptzOID, "2024-01-01 00:00:00"},
		{pgtype.TimestamptzOID, "2024-01-01 00:00:00 UTC"},
	}
	for _, tc := range bad {
		_, err := decodeText(tc.oid, tc.in)
		if err == nil {
			t.Errorf("decodeText(%d, %q) succeeded; want an error", tc.oid, tc.in)
			continue
		}
		if !strings.Contains(err.Error(), tc.in) {
			t.Errorf("error %q does not quote the value %q", err, tc.in)
		}
	}
}

func TestDecodeTupleKindsAndColumnNames(t *testing.T) {
	rel := &relation{msg: &pglogrepl.RelationMessage{
		Namespace: "public", RelationName: "t",
		Columns: []*pglogrepl.RelationMessageColumn{
			{Name: "id", DataType: pgtype.Int8OID}, {Name: "big", DataType: pgtype.TextOID}, {Name: "n", DataType: pgtype.Int4OID}, {Name: "b", DataType: pgtype.ByteaOID},
		},
	}}
	tuple := &pglogrepl.TupleData{Columns: []*pglogrepl.TupleDataColumn{
		{DataType: 't', Data: []byte("7")},
		{DataType: 'u'},
		{DataType: 'n'},
		{DataType: 't', Data: []byte(`\x0000`)},
	}}
	got, err := decodeTuple(rel, tuple)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].GetInt() != 7 || !got[1].GetUnchangedToast() || !got[2].GetNull() || !bytes.Equal(got[3].GetBytes(), []byte{0, 0}) {
		t.Fatalf("decodeTuple = %v", got)
	}

	tuple.Columns[0].Data = []byte("x")
	_, err = decodeTuple(rel, tuple)
	if err == nil || !strings.Contains(err.Error(), `column "id"`) || !strings.Contains(err.Error(), `"x"`) {
		t.Fatalf("error %v should name the column and the value", err)
	}
	if _, err := decodeTuple(rel, &pglogrepl.TupleData{Columns: tuple.Columns[:2]}); err == nil {
		t.Fatal("a tuple with too few columns decoded")
	}
}

// TestDecodeTupleDomainsAsBaseType: a domain's text output is its base
// type's, so a column whose relation names a base type decodes as that type
// (float4 at 32 bits, int4 as an int), not as text.
func TestDecodeTupleDomainsAsBaseType(t *testing.T) {
	rel := &relation{
		msg: &pglogrepl.RelationMessage{Namespace: "public", RelationName: "t", Columns: []*pglogrepl.RelationMessageColumn{
			{Name: "posint", DataType: 91236}, {Name: "temp", DataType: 91237}, {Name: "mood", DataType: 91238},
		}},
		proto: &cdcv1.Relation{Columns: []*cdcv1.Column{
			{Name: "posint", TypeOid: 91236, BaseTypeOid: pgtype.Int4OID},
			{Name: "temp", TypeOid: 91237, BaseTypeOid: pgtype.Float4OID},
			{Name: "mood", TypeOid: 91238, BaseTypeOid: 91238, BaseTypeKind: cdcv1.TypeKind_TYPE_KIND_ENUM},
		}},
	}
	got, err := decodeTuple(rel, &pglogrepl.TupleData{Columns: []*pglogrepl.TupleDataColumn{
		{DataType: 't', Data: []byte("42")}, {DataType: 't', Data: []byte("0.1")}, {DataType: 't', Data: []byte("happy")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []*cdcv1.Value{intV(42), floatV(float64(float32(0.1))), textV("happy")}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("column %d = %v, want %v", i, got[i], want[i])
		}
	}
}
