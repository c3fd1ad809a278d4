package debezium

import (
	"encoding/json"
	"testing"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// Each case is PostgreSQL's text of a value and the JSON Debezium's
// mapping gives it, worked out by hand from its documentation.
func TestValuesFollowDebeziumsMapping(t *testing.T) {
	str := taskv1.DebeziumDecimalHandling_DEBEZIUM_DECIMAL_HANDLING_STRING
	dbl := taskv1.DebeziumDecimalHandling_DEBEZIUM_DECIMAL_HANDLING_DOUBLE
	col := func(oid uint32, typmod int32) *cdcv1.Column {
		return &cdcv1.Column{TypeOid: oid, TypeModifier: typmod}
	}
	arr := func(oid uint32) *cdcv1.Column {
		return &cdcv1.Column{TypeOid: oid, BaseTypeKind: cdcv1.TypeKind_TYPE_KIND_ARRAY}
	}
	for _, c := range []struct {
		col  *cdcv1.Column
		dec  taskv1.DebeziumDecimalHandling
		text string
		want string
	}{
		{col(oidBool, -1), str, "t", `true`},
		{col(oidBool, -1), str, "f", `false`},
		{col(oidInt2, -1), str, "-32768", `-32768`},
		{col(oidInt8, -1), str, "9223372036854775807", `9223372036854775807`},
		{col(oidOid, -1), str, "4294967295", `4294967295`},
		{col(oidFloat4, -1), str, "3.4028235e+38", `3.4028235e+38`},
		{col(oidFloat8, -1), str, "NaN", `"NaN"`},
		{col(oidFloat8, -1), str, "-Infinity", `"-Infinity"`},
		{col(oidNumeric, -1), str, "-12345678901234567890.123456789012345", `"-12345678901234567890.123456789012345"`},
		{col(oidNumeric, -1), str, "NaN", `"NaN"`},
		{col(oidNumeric, -1), dbl, "12.50", `12.50`},
		{col(oidNumeric, -1), dbl, "Infinity", `"Infinity"`},
		{col(oidMoney, -1), str, "-$92,233,720,368,547,758.08", `"-92233720368547758.08"`},
		{col(oidMoney, -1), dbl, "$12,345,678.91", `12345678.91`},
		{col(oidText, -1), str, "a\"b\\c\n\u2028", `"a\"b\\c\n\u2028"`},
		{col(oidJSONB, -1), str, `{"a": [1, 2.50]}`, `"{\"a\": [1, 2.50]}"`},
		{col(oidBytea, -1), str, `\x00ff0001`, `"AP8AAQ=="`},
		{col(oidBytea, -1), str, `\x`, `""`},
		{col(oidBytea, -1), str, `\x00010203040506`, `"AAECAwQFBg=="`},
		{col(oidBytea, -1), str, `a\\b\001`, `"YVxiAQ=="`},
		{col(oidBit, 1), str, "1", `true`},
		{col(oidBit, 4), str, "1010", `"Cg=="`},
		{col(oidVarbit, 16), str, "1000000000000001", `"AYA="`},
		{col(oidVarbit, 16), str, "", `""`},
		{col(oidDate, -1), str, "1970-01-02", `1`},
		{col(oidDate, -1), str, "0044-03-15 BC", `-735160`},
		{col(oidDate, -1), str, "infinity", `2147483647`},
		{col(oidTime, -1), str, "23:59:59.999999", `86399999999`},
		{col(oidTime, -1), str, "24:00:00", `86400000000`},
		{col(oidTime, 3), str, "12:34:56.789", `45296789`},
		{col(oidTimestamp, -1), str, "2000-01-01 00:00:00.0015", `946684800001500`},
		{col(oidTimestamp, 3), str, "1969-12-31 23:59:59.9995", `-1`},
		{col(oidTimestamp, 3), str, "-infinity", `-9223372036854775808`},
		{col(oidTimestamptz, -1), str, "2024-02-29 23:59:59.999999+05:45", `"2024-02-29T18:14:59.999999Z"`},
		{col(oidTimestamptz, -1), str, "1970-01-01 00:00:00+00", `"1970-01-01T00:00:00Z"`},
		{col(oidTimestamptz, -1), str, "infinity", `"infinity"`},
		{col(oidTimestamptz, -1), str, "2026-01-02 03:04:05.12+00", `"2026-01-02T03:04:05.12Z"`},
		{col(oidTimestamptz, -1), str, "0044-03-15 12:00:00+00 BC", `"-0043-03-15T12:00:00Z"`},
		{col(oidTimestamptz, -1), str, "12345-06-07 08:09:10.5+00", `"+12345-06-07T08:09:10.5Z"`},
		{col(oidTimetz, -1), str, "12:34:56.789012-05:30", `"18:04:56.789012Z"`},
		{col(oidTimetz, -1), str, "00:00:00+15:59", `"08:01:00Z"`},
		{col(oidInterval, -1), str, "1 year 2 mons 3 days 04:05:06.789012", `37091106789012`},
		{col(oidInterval, -1), str, "-1 days +00:00:00.000001", `-86399999999`},
		{col(oidInterval, -1), str, "00:00:00", `0`},
		{col(oidPoint, -1), str, "(1.5,-2)", `{"x":1.5,"y":-2,"wkb":"AQEAAAAAAAAAAAD4PwAAAAAAAADA","srid":null}`},
		{col(oidUUID, -1), str, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`},
		{arr(1007), str, "{1,NULL,-3}", `[1,null,-3]`},
		{arr(1009), str, `{"a,b",NULL,"NULL","q\"\\"}`, `["a,b",null,"NULL","q\"\\"]`},
		{arr(1007), str, "{{1,NULL},{NULL,4}}", `[[1,null],[null,4]]`},
		{arr(1007), str, "[0:1]={7,8}", `[7,8]`},
		{arr(1007), str, "{}", `[]`},
		{arr(1182), str, "{2024-02-29,infinity}", `[19782,2147483647]`},
		{&cdcv1.Column{TypeOid: 99999, BaseTypeKind: cdcv1.TypeKind_TYPE_KIND_ARRAY}, str, "{(1,2)}", `"{(1,2)}"`},
		{&cdcv1.Column{TypeOid: 99998, BaseTypeKind: cdcv1.TypeKind_TYPE_KIND_ENUM}, str, "happy ☺", `"happy ☺"`},
		{&cdcv1.Column{TypeOid: 99997, BaseTypeOid: oidInt4}, str, "42", `42`},
	} {
		ct := typeOf(c.col, c.dec)
		got, err := appendValue(nil, &ct, []byte(c.text))
		if err != nil {
			t.Errorf("%d %q: %v", c.col.GetTypeOid(), c.text, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("%d %q = %s, want %s", c.col.GetTypeOid(), c.text, got, c.want)
		}
		if !json.Valid(got) {
			t.Errorf("%d %q: %s is not JSON", c.col.GetTypeOid(), c.text, got)
		}
	}
}

func TestMalformedValuesAreErrorsWithoutTheValue(t *testing.T) {
	for _, c := range []struct {
		oid  uint32
		text string
	}{{oidDate, "secret-date"}, {oidTimestamptz, "secret"}, {oidInterval, "3 secrets"}, {oidBytea, `\xsecret`}, {oidPoint, "(secret)"}, {oidBit, "2secret"}} {
		ct := scalarType(c.oid, -1, 0)
		_, err := appendValue(nil, &ct, []byte(c.text))
		if err == nil {
			t.Errorf("%d %q: no error", c.oid, c.text)
		} else if containsSecret(err.Error()) {
			t.Errorf("%d: error %q holds the value", c.oid, err)
		}
	}
}

func containsSecret(s string) bool {
	for i := 0; i+6 <= len(s); i++ {
		if s[i:i+6] == "secret" {
			return true
		}
	}
	return false
}
