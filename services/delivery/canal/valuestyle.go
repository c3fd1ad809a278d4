package canal

import (
	"bytes"
	"time"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
)

// conv is how ValueStyle FLINK rewrites a column's text. Only the types
// whose PostgreSQL text Flink's canal-json misreads are rewritten:
//
//   - boolean: PostgreSQL prints t/f, and Flink's BOOLEAN reads any text but
//     "true" as false, silently; FLINK writes true/false.
//   - timestamptz: PostgreSQL prints an offset (+00), which Flink's
//     TIMESTAMP_LTZ does not parse (an error, or NULL with
//     ignore-parse-errors); FLINK writes the UTC time with a Z, as Flink's
//     SQL timestamp format for TIMESTAMP_LTZ expects. Values Flink cannot
//     represent (infinity, BC years, years past 9999) are left as
//     PostgreSQL prints them, so Flink fails loudly rather than guessing.
//
// date, timestamp and time already parse as Flink's DATE, TIMESTAMP(p) and
// TIME(p), and every other type is left as PostgreSQL's text.
type conv byte

const (
	convNone conv = iota
	convBool
	convTimestamptz
)

// convFor is the rewrite column col needs under the encoder's style.
func (e *Encoder) convFor(col *cdcv1.Column) conv {
	if e.opts.ValueStyle != taskv1.CanalValueStyle_CANAL_VALUE_STYLE_FLINK || col.GetBaseTypeKind() == cdcv1.TypeKind_TYPE_KIND_ARRAY {
		return convNone
	}
	switch relation.ValueOID(col) {
	case 16:
		return convBool
	case 1184:
		return convTimestamptz
	}
	return convNone
}

// appendText writes a non-null value as a JSON string, rewritten by cv.
func appendText(dst []byte, cv conv, text []byte) []byte {
	switch cv {
	case convBool:
		switch string(text) {
		case "t":
			return append(dst, `"true"`...)
		case "f":
			return append(dst, `"false"`...)
		}
	case convTimestamptz:
		if out, ok := appendUTC(dst, text); ok {
			return out
		}
	}
	return appendBytes(dst, text)
}

// appendUTC writes an ISO timestamptz ("2006-01-02 15:04:05.999999+05:30")
// as its UTC time followed by Z, keeping PostgreSQL's fractional digits; ok
// is false for text it does not recognize, which the caller writes as is.
func appendUTC(dst, text []byte) ([]byte, bool) {
	// Capture's session is in UTC, so the offset is nearly always +00.
	if bytes.HasSuffix(text, []byte("+00")) && plainYear(text) {
		dst = append(dst, '"')
		dst = append(dst, text[:len(text)-3]...)
		return append(dst, `Z"`...), true
	}
	i := bytes.LastIndexAny(text, "+-")
	if i < 19 || !plainYear(text) {
		return dst, false
	}
	off, ok := parseOffset(text[i:])
	if !ok {
		return dst, false
	}
	ts, err := time.Parse("2006-01-02 15:04:05.999999999", string(text[:i]))
	if err != nil {
		return dst, false
	}
	ts = ts.Add(-off)
	if ts.Year() < 1 || ts.Year() > 9999 {
		return dst, false
	}
	dst = append(dst, '"')
	dst = ts.AppendFormat(dst, "2006-01-02 15:04:05.999999999")
	return append(dst, `Z"`...), true
}

// plainYear: a four-digit year AD, the only years Flink's formats parse.
func plainYear(text []byte) bool {
	if len(text) < 19 || text[4] != '-' || bytes.HasSuffix(text, []byte(" BC")) {
		return false
	}
	for _, b := range text[:4] {
		if b < '0' || b > '9' {
			return false
		}
	}
	return true
}

// parseOffset reads PostgreSQL's UTC offset: +hh, +hh:mm or +hh:mm:ss.
func parseOffset(s []byte) (time.Duration, bool) {
	if len(s) != 3 && len(s) != 6 && len(s) != 9 {
		return 0, false
	}
	var d time.Duration
	for i, unit := range []time.Duration{time.Hour, time.Minute, time.Second} {
		at := 1 + 3*i
		if at >= len(s) {
			break
		}
		if i > 0 && s[at-1] != ':' {
			return 0, false
		}
		hi, lo := s[at], s[at+1]
		if hi < '0' || hi > '9' || lo < '0' || lo > '9' {
			return 0, false
		}
		d += time.Duration((hi-'0')*10+lo-'0') * unit
	}
	if s[0] == '-' {
		d = -d
	}
	return d, true
}
