package debezium

import (
	"strconv"
	"strings"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// kind is how a column's values are written: Debezium's PostgreSQL type
// mapping with time.precision.mode=adaptive, interval.handling.mode=numeric,
// binary.handling.mode=bytes (base64 in JSON), hstore and unknown types as
// strings, and decimal.handling.mode as Options.Decimal says.
type kind uint8

const (
	kString kind = iota // the text as a JSON string
	kBool
	kInt            // int2, int4, int8, oid: the text is a JSON number
	kFloat          // float4, float8: a number, or "NaN"/"Infinity"/"-Infinity"
	kDecimalString  // numeric: the decimal text as a string
	kDecimalDouble  // numeric: a JSON number
	kMoneyString    // money: the amount without currency symbol or grouping
	kMoneyDouble    //
	kDate           // days since 1970-01-01
	kTimeMillis     // time(0..3): milliseconds of the day
	kTimeMicros     // time(4..6): microseconds of the day
	kTimestampMilli // timestamp(0..3): milliseconds since 1970, the wall time as UTC
	kTimestampMicro // timestamp(4..6): microseconds since 1970
	kTimestamptz    // ISO 8601 in UTC with Z
	kTimetz         // ISO 8601 time in UTC with Z
	kInterval       // approximate microseconds, months of 365.25/12 days
	kBytes          // bytea: base64
	kBit1           // bit(1): boolean
	kBits           // bit(n), varbit: base64 of the bits, little-endian
	kPoint          // point: {x, y, wkb, srid}
	kArray          // one-dimensional array of elem
)

// columnType is a column's kind and its Kafka Connect schema as JSON
// without the "field" and "optional" members.
type columnType struct {
	kind   kind
	elem   *columnType // for kArray
	schema string
}

// Type OIDs of the built-in types the mapping names.
const (
	oidBool        = 16
	oidBytea       = 17
	oidChar        = 18
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOid         = 26
	oidJSON        = 114
	oidXML         = 142
	oidPoint       = 600
	oidFloat4      = 700
	oidFloat8      = 701
	oidMoney       = 790
	oidBpchar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTime        = 1083
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidInterval    = 1186
	oidTimetz      = 1266
	oidBit         = 1560
	oidVarbit      = 1562
	oidNumeric     = 1700
	oidUUID        = 2950
	oidJSONB       = 3802
)

// arrayElem maps the built-in array types to their element types. An
// array of any other type is written as its text.
var arrayElem = map[uint32]uint32{
	1000: oidBool, 1001: oidBytea, 1002: oidChar, 1003: oidName, 1005: oidInt2, 1007: oidInt4,
	1009: oidText, 1014: oidBpchar, 1015: oidVarchar, 1016: oidInt8, 1021: oidFloat4,
	1022: oidFloat8, 1028: oidOid, 1115: oidTimestamp, 1182: oidDate, 1183: oidTime,
	1185: oidTimestamptz, 1187: oidInterval, 1231: oidNumeric, 1270: oidTimetz, 199: oidJSON,
	3807: oidJSONB, 2951: oidUUID, 143: oidXML, 791: oidMoney, 1561: oidBit, 1563: oidVarbit,
	1017: oidPoint, 1041: 869, 651: 650, 1040: 829, 775: 774, // inet, cidr, macaddr, macaddr8
}

func named(typ, name string) string {
	return `"type":"` + typ + `","name":"` + name + `","version":1`
}

// typeOf maps a column. A domain maps as its base type; enums, ranges,
// composites and the types Debezium does not know are strings.
func typeOf(col *cdcv1.Column, dec taskv1.DebeziumDecimalHandling) columnType {
	oid := col.GetBaseTypeOid()
	if oid == 0 {
		oid = col.GetTypeOid()
	}
	switch col.GetBaseTypeKind() {
	case cdcv1.TypeKind_TYPE_KIND_ENUM:
		return columnType{kind: kString, schema: named("string", "io.debezium.data.Enum")}
	case cdcv1.TypeKind_TYPE_KIND_ARRAY:
		if el, ok := arrayElem[oid]; ok {
			// An array column's typmod is its elements' (time(3)[]).
			et := scalarType(el, col.GetTypeModifier(), dec)
			return columnType{kind: kArray, elem: &et, schema: `"type":"array","items":{` + et.schema + `,"optional":true}`}
		}
		return columnType{kind: kString, schema: `"type":"string"`}
	}
	return scalarType(oid, col.GetTypeModifier(), dec)
}

// scalarType maps a type by OID; typmod gives the precision of times and
// the length of bit strings (-1: none).
func scalarType(oid uint32, typmod int32, dec taskv1.DebeziumDecimalHandling) columnType {
	double := dec == taskv1.DebeziumDecimalHandling_DEBEZIUM_DECIMAL_HANDLING_DOUBLE
	switch oid {
	case oidBool:
		return columnType{kind: kBool, schema: `"type":"boolean"`}
	case oidInt2:
		return columnType{kind: kInt, schema: `"type":"int16"`}
	case oidInt4:
		return columnType{kind: kInt, schema: `"type":"int32"`}
	case oidInt8, oidOid:
		return columnType{kind: kInt, schema: `"type":"int64"`}
	case oidFloat4:
		return columnType{kind: kFloat, schema: `"type":"float"`}
	case oidFloat8:
		return columnType{kind: kFloat, schema: `"type":"double"`}
	case oidNumeric:
		if double {
			return columnType{kind: kDecimalDouble, schema: `"type":"double"`}
		}
		return columnType{kind: kDecimalString, schema: `"type":"string"`}
	case oidMoney:
		if double {
			return columnType{kind: kMoneyDouble, schema: `"type":"double"`}
		}
		return columnType{kind: kMoneyString, schema: `"type":"string"`}
	case oidJSON, oidJSONB:
		return columnType{kind: kString, schema: named("string", "io.debezium.data.Json")}
	case oidXML:
		return columnType{kind: kString, schema: named("string", "io.debezium.data.Xml")}
	case oidUUID:
		return columnType{kind: kString, schema: named("string", "io.debezium.data.Uuid")}
	case oidBytea:
		return columnType{kind: kBytes, schema: `"type":"bytes"`}
	case oidPoint:
		return columnType{kind: kPoint, schema: pointSchema}
	case oidBit, oidVarbit:
		return bitType(oid, typmod)
	}
	return timeType(oid, typmod)
}

const pointSchema = `"type":"struct","fields":[{"type":"double","optional":false,"field":"x"},{"type":"double","optional":false,"field":"y"},` +
	`{"type":"bytes","optional":true,"field":"wkb"},{"type":"int32","optional":true,"field":"srid"}],"name":"io.debezium.data.geometry.Point","version":1`

func bitType(oid uint32, typmod int32) columnType {
	if oid == oidBit && typmod == 1 {
		return columnType{kind: kBit1, schema: `"type":"boolean"`}
	}
	n := int64(typmod)
	if n < 0 {
		n = 1<<31 - 1
	}
	return columnType{kind: kBits, schema: named("bytes", "io.debezium.data.Bits") + `,"parameters":{"length":"` + strconv.FormatInt(n, 10) + `"}`}
}

// timeType maps the temporal types as time.precision.mode=adaptive does:
// precision up to 3 in milliseconds, above in microseconds. Any other type
// is a string.
func timeType(oid uint32, typmod int32) columnType {
	micro := typmod < 0 || typmod > 3
	switch oid {
	case oidDate:
		return columnType{kind: kDate, schema: named("int32", "io.debezium.time.Date")}
	case oidTime:
		if micro {
			return columnType{kind: kTimeMicros, schema: named("int64", "io.debezium.time.MicroTime")}
		}
		return columnType{kind: kTimeMillis, schema: named("int32", "io.debezium.time.Time")}
	case oidTimestamp:
		if micro {
			return columnType{kind: kTimestampMicro, schema: named("int64", "io.debezium.time.MicroTimestamp")}
		}
		return columnType{kind: kTimestampMilli, schema: named("int64", "io.debezium.time.Timestamp")}
	case oidTimestamptz:
		return columnType{kind: kTimestamptz, schema: named("string", "io.debezium.time.ZonedTimestamp")}
	case oidTimetz:
		return columnType{kind: kTimetz, schema: named("string", "io.debezium.time.ZonedTime")}
	case oidInterval:
		return columnType{kind: kInterval, schema: named("int64", "io.debezium.time.MicroDuration")}
	}
	return columnType{kind: kString, schema: `"type":"string"`}
}

// isStringy: the unavailable-value placeholder fits the kind's schema.
func (c *columnType) placeholder() string {
	switch c.kind {
	case kString, kDecimalString, kTimestamptz, kTimetz:
		return `"` + UnavailableValue + `"`
	case kBytes:
		return `"` + unavailableBase64 + `"`
	case kArray:
		if p := c.elem.placeholder(); p != "" {
			return "[" + p + "]"
		}
	}
	return ""
}

// fieldSchema is a column's schema as a member of a struct's fields.
func fieldSchema(ct columnType, name string, optional bool) string {
	return "{" + ct.schema + `,"optional":` + strconv.FormatBool(optional) + `,"field":` + jsonString(name) + "}"
}

func jsonString(s string) string { return string(appendString(nil, s)) }

// structSchema is a Connect struct schema over fields.
func structSchema(fields []string, optional bool, name, field string) string {
	var b strings.Builder
	b.WriteString(`{"type":"struct","fields":[`)
	b.WriteString(strings.Join(fields, ","))
	b.WriteString(`],"optional":`)
	b.WriteString(strconv.FormatBool(optional))
	b.WriteString(`,"name":`)
	b.WriteString(jsonString(name))
	if field != "" {
		b.WriteString(`,"field":`)
		b.WriteString(jsonString(field))
	}
	b.WriteString("}")
	return b.String()
}
