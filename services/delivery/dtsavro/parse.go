package dtsavro

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// The parsers below read PostgreSQL's text output of the few types DTS Avro
// writes as numbers, in the session settings capture's connections fix
// (TimeZone=UTC, DateStyle=ISO, extra_float_digits=3, bytea_output=hex).
// Their errors describe the text's shape, never the text itself.

// parseFloat reads float4 at 32 bits so the value is exactly the stored
// binary32 widened, not the nearest binary64 to its shortest decimal text.
// strconv.ParseFloat accepts PostgreSQL's "NaN", "Infinity" and
// "-Infinity" spellings as they are.
func parseFloat(s string, float4 bool) (float64, error) {
	bits := 64
	if float4 {
		bits = 32
	}
	f, err := strconv.ParseFloat(s, bits)
	if err != nil {
		return 0, errors.New("not a floating-point number")
	}
	return f, nil
}

// appendBytea appends the bytes of bytea's hex output format (the one
// capture asks for) and, should a server send it anyway, the escape format.
func appendBytea(dst []byte, s string) ([]byte, error) {
	if hexPart, ok := strings.CutPrefix(s, `\x`); ok {
		n := len(dst)
		dst = append(dst, make([]byte, hex.DecodedLen(len(hexPart)))...)
		if _, err := hex.Decode(dst[n:], []byte(hexPart)); err != nil {
			return dst[:n], errors.New("bad bytea hex digits")
		}
		return dst, nil
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			dst = append(dst, s[i])
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '\\':
			dst = append(dst, '\\')
			i++
		case i+3 < len(s):
			n, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
			if err != nil {
				return dst, fmt.Errorf("bad bytea escape at offset %d", i)
			}
			dst = append(dst, byte(n))
			i += 3
		default:
			return dst, fmt.Errorf("truncated bytea escape at offset %d", i)
		}
	}
	return dst, nil
}

// isInfinity tells PostgreSQL's infinite dates and timestamps.
func isInfinity(s string) bool { return s == "infinity" || s == "-infinity" }

// parseDate reads "YYYY-MM-DD[ BC]" as the astronomical year, month and day.
func parseDate(s string) (year, month, day int, err error) {
	body, bc := strings.CutSuffix(s, " BC")
	return parseYMD(body, bc)
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

// parseTimestamp reads "YYYY-MM-DD HH:MM:SS[.ffffff][±HH[:MM[:SS]]][ BC]"
// into microseconds since 1970. For timestamp (withZone false) there is no
// offset and the wall time is taken as UTC; for timestamptz the offset is
// subtracted to get the instant.
func parseTimestamp(s string, withZone bool) (int64, error) {
	body, bc := strings.CutSuffix(s, " BC")
	datePart, timePart, ok := strings.Cut(body, " ")
	if !ok {
		return 0, errors.New("not an ISO timestamp")
	}
	y, mo, d, err := parseYMD(datePart, bc)
	if err != nil {
		return 0, err
	}
	offset := 0
	if withZone {
		if timePart, offset, err = cutOffset(timePart); err != nil {
			return 0, err
		}
	}
	secOfDay, micros, err := parseClock(timePart)
	if err != nil {
		return 0, err
	}
	secs := time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC).Unix() + int64(secOfDay-offset)
	if secs > (math.MaxInt64-micros)/1_000_000 {
		return 0, errBeyondMicros
	}
	return secs*1_000_000 + micros, nil
}

// errBeyondMicros marks a timestamp past 294247-01-10 04:00:54.775807 UTC,
// the last instant int64 microseconds since 1970 can hold. PostgreSQL counts
// from 2000 and so goes on to 294276 AD; such values are written as their
// text, which is exact, instead of wrapping around to a date in the BC era.
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

// civil converts days since 1970-01-01 to a proleptic Gregorian date with
// astronomical year numbering (year 0 is 1 BC).
func civil(days int64) (y int64, m, d int) {
	z := days + 719468
	era := z / 146097
	if z < 0 {
		era = (z - 146096) / 146097
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	if mp < 10 {
		m = int(mp + 3)
	} else {
		m = int(mp - 9)
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}
