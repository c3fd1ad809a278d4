package transform

// Between a column's text as PostgreSQL prints it and a CEL value: each
// column is parsed only when an expression reads it, and a computed value
// is written back as the text PostgreSQL would print for its type.

import (
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"time"
	"unsafe"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/delivery/dtsavro"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
)

// PostgreSQL type OIDs that map to CEL types other than string.
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOID         = 26
	oidFloat4      = 700
	oidFloat8      = 701
	oidDate        = 1082
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidNumeric     = 1700
)

// celType is the CEL type a column's values take; every type without a
// closer CEL type is a string holding PostgreSQL's text.
func celType(col *cdcv1.Column) *types.Type {
	switch relation.ValueOID(col) {
	case oidBool:
		return types.BoolType
	case oidInt2, oidInt4, oidInt8, oidOID:
		return types.IntType
	case oidFloat4, oidFloat8, oidNumeric:
		return types.DoubleType
	case oidBytea:
		return types.BytesType
	case oidDate, oidTimestamp, oidTimestamptz:
		return types.TimestampType
	}
	return types.StringType
}

// parse turns a column's text into its CEL value. Strings share the text's
// memory: the event outlives the evaluation and its buffers are never
// written again.
func parse(oid uint32, t *types.Type, text []byte) (ref.Val, error) {
	s := unsafe.String(unsafe.SliceData(text), len(text))
	switch t {
	case types.BoolType:
		return types.Bool(len(text) > 0 && text[0] == 't'), nil
	case types.IntType:
		n, err := strconv.ParseInt(s, 10, 64)
		return types.Int(n), err
	case types.DoubleType:
		f, err := strconv.ParseFloat(s, 64)
		return types.Double(f), err
	case types.BytesType:
		return parseBytea(text)
	case types.TimestampType:
		return parseTime(oid, text)
	}
	return types.String(s), nil
}

func parseBytea(text []byte) (ref.Val, error) {
	if len(text) < 2 || text[0] != '\\' || text[1] != 'x' {
		return nil, fmt.Errorf("bytea not in hex output format")
	}
	b := make([]byte, hex.DecodedLen(len(text)-2))
	if _, err := hex.Decode(b, text[2:]); err != nil {
		return nil, err
	}
	return types.Bytes(b), nil
}

// PostgreSQL's infinities are CEL's last and first instants, so that they
// compare as they do in SQL, and print back as infinities.
var (
	infinity    = time.Unix(253402300799, 999999999).UTC() // 9999-12-31T23:59:59.999999999Z
	negInfinity = time.Unix(-62135596800, 0).UTC()         // 0001-01-01T00:00:00Z
)

func parseTime(oid uint32, text []byte) (ref.Val, error) {
	switch string(text) {
	case "infinity":
		return types.Timestamp{Time: infinity}, nil
	case "-infinity":
		return types.Timestamp{Time: negInfinity}, nil
	}
	if oid == oidDate {
		days, err := dtsavro.DateDays(text)
		if err != nil {
			return nil, err
		}
		return types.Timestamp{Time: time.Unix(days*86400, 0).UTC()}, nil
	}
	us, err := dtsavro.TimestampMicros(text, oid == oidTimestamptz)
	if err != nil {
		return nil, err
	}
	return types.Timestamp{Time: time.UnixMicro(us).UTC()}, nil
}

// outColumn describes a computed column of CEL type t, or false when CEL's
// type has no column type.
func outColumn(name string, t *types.Type) (*cdcv1.Column, bool) {
	col := &cdcv1.Column{Name: name, TypeModifier: -1, BaseTypeKind: cdcv1.TypeKind_TYPE_KIND_BASE}
	switch t.Kind() {
	case types.BoolKind:
		col.TypeOid, col.TypeName = oidBool, "boolean"
	case types.IntKind, types.UintKind:
		col.TypeOid, col.TypeName = oidInt8, "bigint"
	case types.DoubleKind:
		col.TypeOid, col.TypeName = oidFloat8, "double precision"
	case types.StringKind:
		col.TypeOid, col.TypeName = oidText, "text"
	case types.BytesKind:
		col.TypeOid, col.TypeName = oidBytea, "bytea"
	case types.TimestampKind:
		col.TypeOid, col.TypeName = oidTimestamptz, "timestamp with time zone"
	default:
		return nil, false
	}
	col.BaseTypeOid = col.TypeOid
	return col, true
}

// appendText appends v as PostgreSQL prints a value of v's column type.
func appendText(dst []byte, v ref.Val) ([]byte, error) {
	switch v := v.(type) {
	case types.Bool:
		if v {
			return append(dst, 't'), nil
		}
		return append(dst, 'f'), nil
	case types.Int:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case types.Uint:
		return strconv.AppendUint(dst, uint64(v), 10), nil
	case types.Double:
		return appendFloat(dst, float64(v)), nil
	case types.String:
		return append(dst, v...), nil
	case types.Bytes:
		dst = append(dst, `\x`...)
		return hex.AppendEncode(dst, v), nil
	case types.Timestamp:
		switch {
		case v.Time.Equal(infinity):
			return append(dst, "infinity"...), nil
		case v.Time.Equal(negInfinity):
			return append(dst, "-infinity"...), nil
		}
		return v.UTC().AppendFormat(dst, "2006-01-02 15:04:05.999999+00"), nil
	}
	return dst, fmt.Errorf("a value of type %s has no column text", v.Type())
}

// appendFloat writes float8's output: the shortest exact digits, in
// exponent form outside 1e-4 to 1e15 as PostgreSQL does.
func appendFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	}
	if a := math.Abs(f); a != 0 && (a < 1e-4 || a >= 1e15) {
		return strconv.AppendFloat(dst, f, 'e', -1, 64)
	}
	return strconv.AppendFloat(dst, f, 'f', -1, 64)
}
