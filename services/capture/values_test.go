package capture

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
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
		{"bool true", oidBool, "t", boolV(true)},
		{"bool false", oidBool, "f", boolV(false)},
		{"int2", oidInt2, "-32768", intV(-32768)},
		{"int4", oidInt4, "2147483647", intV(2147483647)},
		{"int8 min", oidInt8, "-9223372036854775808", intV(math.MinInt64)},
		{"oid", oidOID, "4294967295", intV(4294967295)},
		{"float8", oidFloat8, "0.30000000000000004", floatV(0.30000000000000004)},
		{"float8 max", oidFloat8, "1.7976931348623157e+308", floatV(math.MaxFloat64)},
		{"float8 inf", oidFloat8, "Infinity", floatV(math.Inf(1))},
		{"float8 -inf", oidFloat8, "-Infinity", floatV(math.Inf(-1))},
		{"float4 is the binary32 value", oidFloat4, "0.1", floatV(float64(float32(0.1)))},
		{"float8 negative zero", oidFloat8, "-0", floatV(math.Copysign(0, -1))},
		{"numeric exact", oidNumeric, "12345678901234567890.000000000001", numV("12345678901234567890.000000000001")},
		{"numeric NaN", oidNumeric, "NaN", numV("NaN")},
		{"numeric -Infinity", oidNumeric, "-Infinity", numV("-Infinity")},
		{"text", oidText, "héllo\n'\"", textV("héllo\n'\"")},
		{"varchar", oidVarchar, "", textV("")},
		{"bpchar keeps padding", oidBpchar, "ab  ", textV("ab  ")},
		{"name", oidName, "Order-Items", textV("Order-Items")},
		{"other type as text", 114, `{"a": 1}`, textV(`{"a": 1}`)},
		{"interval as text", 1186, "1 year 2 mons -00:00:01.5", textV("1 year 2 mons -00:00:01.5")},
		{"bytea with zero bytes", oidBytea, `\x00ff00`, bytesV([]byte{0, 0xff, 0})},
		{"bytea empty", oidBytea, `\x`, bytesV([]byte{})},
		{"bytea escape format", oidBytea, `a\000\\b`, bytesV([]byte{'a', 0, '\\', 'b'})},
		{"date epoch", oidDate, "1970-01-01", dateV(0)},
		{"date before epoch", oidDate, "1969-12-31", dateV(-1)},
		{"date year 1", oidDate, "0001-01-01", dateV(-719162)},
		{"date BC", oidDate, "0044-03-15 BC", dateV(-735160)},
		{"date year 10000", oidDate, "10000-01-01", dateV(2932897)},
		{"date infinity", oidDate, "infinity", dateInfV(pos)},
		{"date -infinity", oidDate, "-infinity", dateInfV(neg)},
		{"timestamp micros before epoch", oidTimestamp, "1969-12-31 23:59:59.999999", tsV(-1)},
		{"timestamp epoch", oidTimestamp, "1970-01-01 00:00:00", tsV(0)},
		{"timestamp year 10000", oidTimestamp, "10000-01-01 00:00:01.5", tsV(253402300801500000)},
		{"timestamptz utc", oidTimestamptz, "2024-02-29 07:04:56.000001+00", tstzV(1709190296000001)},
		{"timestamptz offset", oidTimestamptz, "2024-02-29 12:34:56.000001+05:30", tstzV(1709190296000001)},
		{"timestamptz negative offset", oidTimestamptz, "2024-02-29 01:04:56.000001-06", tstzV(1709190296000001)},
		{"timestamptz LMT offset with seconds", oidTimestamptz, "1850-01-01 00:00:00+00:19:32", tstzV(-3786826772000000)},
		{"timestamptz BC", oidTimestamptz, "0044-03-15 12:00:00+00 BC", tstzV(-63517780800000000)},
		{"timestamptz infinity", oidTimestamptz, "infinity", tstzInfV(pos)},
		{"timestamptz -infinity", oidTimestamptz, "-infinity", tstzInfV(neg)},
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
	for _, oid := range []uint32{oidFloat4, oidFloat8} {
		v, err := decodeText(oid, "NaN")
		if err != nil || !math.IsNaN(v.GetFloat()) {
			t.Fatalf("decodeText(%d, NaN) = %v, %v; want NaN", oid, v, err)
		}
	}
	v, _ := decodeText(oidFloat8, "-0")
	if !math.Signbit(v.GetFloat()) {
		t.Fatalf("-0 lost its sign: %v", v)
	}
}

func TestDecodeTextRejectsWhatItCannotRead(t *testing.T) {
	bad := []struct {
		oid uint32
		in  string
	}{
		{oidBool, "true"},
		{oidInt4, "1.5"},
		{oidFloat8, "abc"},
		{oidBytea, `\xzz`},
		{oidBytea, `\12`},
		{oidDate, "2024-02-30"},
		{oidDate, "24-01-01"},
		{oidDate, "0000-01-01"},
		{oidDate, "2024/01/01"},
		{oidTimestamp, "2024-01-01T00:00:00"},
		{oidTimestamp, "2024-01-01 25:00:00"},
		{oidTimestamp, "2024-01-01 00:00:00.1234567"},
		{oidTimestamptz, "2024-01-01 00:00:00"},
		{oidTimestamptz, "2024-01-01 00:00:00 UTC"},
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
			{Name: "id", DataType: oidInt8}, {Name: "big", DataType: oidText}, {Name: "n", DataType: oidInt4}, {Name: "b", DataType: oidBytea},
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
