package capture

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

var (
	nullValue  = &cdcv1.Value{Kind: &cdcv1.Value_Null{Null: true}}
	toastValue = &cdcv1.Value{Kind: &cdcv1.Value_UnchangedToast{UnchangedToast: true}}
)

// decodeTuple turns a pgoutput tuple into values in column order.
func decodeTuple(rel *relation, tuple *pglogrepl.TupleData) ([]*cdcv1.Value, error) {
	if tuple == nil {
		return nil, nil
	}
	if len(tuple.Columns) != len(rel.msg.Columns) {
		return nil, fmt.Errorf("relation %s.%s: tuple has %d columns, relation has %d",
			rel.msg.Namespace, rel.msg.RelationName, len(tuple.Columns), len(rel.msg.Columns))
	}
	values := make([]*cdcv1.Value, len(tuple.Columns))
	for i, col := range tuple.Columns {
		meta := rel.msg.Columns[i]
		v, err := decodeColumn(col, rel.decodeOID(i))
		if err != nil {
			return nil, fmt.Errorf("column %q of %s.%s: %w", meta.Name, rel.msg.Namespace, rel.msg.RelationName, err)
		}
		values[i] = v
	}
	return values, nil
}

func decodeColumn(col *pglogrepl.TupleDataColumn, typeOID uint32) (*cdcv1.Value, error) {
	switch col.DataType {
	case pglogrepl.TupleDataTypeNull:
		return nullValue, nil
	case pglogrepl.TupleDataTypeToast:
		return toastValue, nil
	case pglogrepl.TupleDataTypeText:
		return decodeText(typeOID, string(col.Data))
	default:
		// Only binary = true in the start options makes pgoutput send 'b'.
		return nil, fmt.Errorf("unexpected tuple data kind %q", col.DataType)
	}
}

// decodeText decodes PostgreSQL's text output of one value. The session
// settings pgsource fixes (UTC, ISO dates, extra_float_digits=3) make that
// output deterministic. Errors quote the value so nothing is guessed silently.
func decodeText(typeOID uint32, s string) (*cdcv1.Value, error) {
	v, err := decodeKind(typeOID, s)
	if err != nil {
		return nil, fmt.Errorf("decoding %q (type oid %d): %w", s, typeOID, err)
	}
	return v, nil
}

func decodeKind(typeOID uint32, s string) (*cdcv1.Value, error) {
	switch typeOID {
	case pgtype.BoolOID:
		switch s {
		case "t":
			return &cdcv1.Value{Kind: &cdcv1.Value_Bool{Bool: true}}, nil
		case "f":
			return &cdcv1.Value{Kind: &cdcv1.Value_Bool{Bool: false}}, nil
		}
		return nil, errors.New("not a boolean")
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, err
		}
		return &cdcv1.Value{Kind: &cdcv1.Value_Int{Int: n}}, nil
	case pgtype.Float4OID, pgtype.Float8OID:
		f, err := parseFloat(s, typeOID == pgtype.Float4OID)
		if err != nil {
			return nil, err
		}
		return &cdcv1.Value{Kind: &cdcv1.Value_Float{Float: f}}, nil
	case pgtype.NumericOID:
		return &cdcv1.Value{Kind: &cdcv1.Value_Numeric{Numeric: s}}, nil
	case pgtype.ByteaOID:
		b, err := parseBytea(s)
		if err != nil {
			return nil, err
		}
		return &cdcv1.Value{Kind: &cdcv1.Value_Bytes{Bytes: b}}, nil
	case pgtype.DateOID:
		d, err := parseDate(s)
		if err != nil {
			return nil, err
		}
		return &cdcv1.Value{Kind: &cdcv1.Value_Date{Date: d}}, nil
	case pgtype.TimestampOID:
		ts, err := parseTimestamp(s, false)
		if errors.Is(err, errBeyondMicros) {
			return &cdcv1.Value{Kind: &cdcv1.Value_Text{Text: s}}, nil
		}
		if err != nil {
			return nil, err
		}
		return &cdcv1.Value{Kind: &cdcv1.Value_Timestamp{Timestamp: ts}}, nil
	case pgtype.TimestamptzOID:
		ts, err := parseTimestamp(s, true)
		if errors.Is(err, errBeyondMicros) {
			return &cdcv1.Value{Kind: &cdcv1.Value_Text{Text: s}}, nil
		}
		if err != nil {
			return nil, err
		}
		return &cdcv1.Value{Kind: &cdcv1.Value_Timestamptz{Timestamptz: ts}}, nil
	default:
		// text, varchar, bpchar, name and every type without its own kind.
		return &cdcv1.Value{Kind: &cdcv1.Value_Text{Text: s}}, nil
	}
}

// parseFloat reads float4 at 32 bits so the value is exactly the stored
// binary32 widened, not the nearest binary64 to its shortest decimal text.
func parseFloat(s string, float4 bool) (float64, error) {
	// strconv.ParseFloat accepts PostgreSQL's "NaN", "Infinity" and
	// "-Infinity" spellings as they are.
	bits := 64
	if float4 {
		bits = 32
	}
	return strconv.ParseFloat(s, bits)
}

// parseBytea reads the hex output format (the default) and, in case a
// server is configured with bytea_output = escape, the escape format.
func parseBytea(s string) ([]byte, error) {
	if hexPart, ok := strings.CutPrefix(s, `\x`); ok {
		return hex.DecodeString(hexPart)
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			out = append(out, s[i])
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '\\':
			out = append(out, '\\')
			i++
		case i+3 < len(s):
			n, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
			if err != nil {
				return nil, fmt.Errorf("bad bytea escape at offset %d", i)
			}
			out = append(out, byte(n))
			i += 3
		default:
			return nil, fmt.Errorf("truncated bytea escape at offset %d", i)
		}
	}
	return out, nil
}

func infinity(s string) cdcv1.Infinity {
	switch s {
	case "infinity":
		return cdcv1.Infinity_INFINITY_POSITIVE
	case "-infinity":
		return cdcv1.Infinity_INFINITY_NEGATIVE
	}
	return cdcv1.Infinity_INFINITY_UNSPECIFIED
}

func parseDate(s string) (*cdcv1.Date, error) {
	if inf := infinity(s); inf != cdcv1.Infinity_INFINITY_UNSPECIFIED {
		return &cdcv1.Date{Infinity: inf}, nil
	}
	body, bc := strings.CutSuffix(s, " BC")
	y, m, d, err := parseYMD(body, bc)
	if err != nil {
		return nil, err
	}
	days := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC).Unix() / 86400
	return &cdcv1.Date{Days: int32(days)}, nil
}

// parseYMD reads "YYYY-MM-DD" (four or more year digits, as PostgreSQL
// prints years past 9999) and returns the astronomical year: PostgreSQL's
// 1 BC is year 0, as in the proleptic Gregorian calendar Go uses.
func parseYMD(s string, bc bool) (year, month, day int, err error) {
	parts := strings.Split(s, "-")
	if len(parts) != 3 || len(parts[0]) < 4 || len(parts[1]) != 2 || len(parts[2]) != 2 {
		return 0, 0, 0, errors.New("not an ISO date")
	}
	nums := make([]int, 3)
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || strings.ContainsAny(p, "+-") {
			return 0, 0, 0, errors.New("not an ISO date")
		}
		nums[i] = n
	}
	year, month, day = nums[0], nums[1], nums[2]
	if year == 0 || month < 1 || month > 12 || day < 1 || day > daysIn(month, astronomical(year, bc)) {
		return 0, 0, 0, errors.New("date out of range")
	}
	return astronomical(year, bc), month, day, nil
}

func astronomical(year int, bc bool) int {
	if bc {
		return 1 - year
	}
	return year
}

func daysIn(month, year int) int {
	// Day 0 of the next month is the last day of this one.
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// parseTimestamp reads "YYYY-MM-DD HH:MM:SS[.ffffff][±HH[:MM[:SS]]][ BC]".
// For timestamp (withZone false) there is no offset and the wall time is
// taken as UTC; for timestamptz the offset is subtracted to get the instant.
func parseTimestamp(s string, withZone bool) (*cdcv1.Timestamp, error) {
	if inf := infinity(s); inf != cdcv1.Infinity_INFINITY_UNSPECIFIED {
		return &cdcv1.Timestamp{Infinity: inf}, nil
	}
	body, bc := strings.CutSuffix(s, " BC")
	datePart, timePart, ok := strings.Cut(body, " ")
	if !ok {
		return nil, errors.New("not an ISO timestamp")
	}
	y, mo, d, err := parseYMD(datePart, bc)
	if err != nil {
		return nil, err
	}
	offset := 0
	if withZone {
		if timePart, offset, err = cutOffset(timePart); err != nil {
			return nil, err
		}
	}
	secOfDay, micros, err := parseClock(timePart)
	if err != nil {
		return nil, err
	}
	secs := time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC).Unix() + int64(secOfDay-offset)
	if secs > (math.MaxInt64-micros)/1_000_000 {
		return nil, errBeyondMicros
	}
	return &cdcv1.Timestamp{Micros: secs*1_000_000 + micros}, nil
}

// errBeyondMicros marks a timestamp past 294247-01-10 04:00:54.775807 UTC,
// the last instant int64 microseconds since 1970 can hold. PostgreSQL counts
// from 2000 and so goes on to 294276 AD; such values travel as their text,
// which is exact, instead of wrapping around to a date in the BC era.
var errBeyondMicros = errors.New("timestamp beyond int64 microseconds since 1970")

// cutOffset splits a trailing UTC offset such as "+00", "+05:30" or the
// "+00:19:32" of historical local mean times, returning it in seconds.
func cutOffset(s string) (rest string, seconds int, err error) {
	i := strings.LastIndexAny(s, "+-")
	if i < 0 {
		return "", 0, errors.New("timestamptz without a UTC offset")
	}
	sign := 1
	if s[i] == '-' {
		sign = -1
	}
	fields := strings.Split(s[i+1:], ":")
	if len(fields) > 3 {
		return "", 0, errors.New("bad UTC offset")
	}
	scale := 3600
	for _, f := range fields {
		n, err := strconv.Atoi(f)
		if err != nil || len(f) != 2 || n > 59 && scale != 3600 {
			return "", 0, errors.New("bad UTC offset")
		}
		seconds += n * scale
		scale /= 60
	}
	return s[:i], sign * seconds, nil
}

// parseClock reads "HH:MM:SS[.ffffff]". PostgreSQL prints 24:00:00 for the
// end of a day, which this accepts.
func parseClock(s string) (secOfDay int, micros int64, err error) {
	clock, frac, hasFrac := strings.Cut(s, ".")
	f := strings.Split(clock, ":")
	if len(f) != 3 {
		return 0, 0, errors.New("not a time of day")
	}
	var hms [3]int
	for i, p := range f {
		n, err := strconv.Atoi(p)
		if err != nil || len(p) != 2 {
			return 0, 0, errors.New("not a time of day")
		}
		hms[i] = n
	}
	if hms[0] > 24 || hms[1] > 59 || hms[2] > 59 || hms[0] == 24 && (hms[1] > 0 || hms[2] > 0 || hasFrac) {
		return 0, 0, errors.New("time of day out of range")
	}
	if hasFrac {
		if len(frac) == 0 || len(frac) > 6 {
			return 0, 0, errors.New("bad fractional seconds")
		}
		n, err := strconv.ParseUint(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
		if err != nil {
			return 0, 0, errors.New("bad fractional seconds")
		}
		micros = int64(n)
	}
	return hms[0]*3600 + hms[1]*60 + hms[2], micros, nil
}
