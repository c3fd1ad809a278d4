package dtsavro

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// The parsers below read PostgreSQL's text output of the few types DTS Avro
// writes as numbers, in the session settings capture's connections fix
// (TimeZone=UTC, DateStyle=ISO, extra_float_digits=3, bytea_output=hex).
// Their errors describe the text's shape, never the text itself.

// parseFloat reads float4 at 32 bits so the value is exactly the stored
// binary32 widened, not the nearest binary64 to its shortest decimal text.
// strconv.ParseFloat accepts PostgreSQL's "NaN", "Infinity" and
// "-Infinity" spellings as they are.
func parseFloat(b []byte, float4 bool) (float64, error) {
	bits := 64
	if float4 {
		bits = 32
	}
	f, err := strconv.ParseFloat(string(b), bits)
	if err != nil {
		return 0, errors.New("not a floating-point number")
	}
	return f, nil
}

// appendBytea appends the bytes of bytea's hex output format (the one
// capture asks for) and, should a server send it anyway, the escape format.
func appendBytea(dst, b []byte) ([]byte, error) {
	if hexPart, ok := bytes.CutPrefix(b, []byte(`\x`)); ok {
		n := len(dst)
		dst = slices.Grow(dst, hex.DecodedLen(len(hexPart)))[:n+hex.DecodedLen(len(hexPart))]
		if _, err := hex.Decode(dst[n:], hexPart); err != nil {
			return dst[:n], errors.New("bad bytea hex digits")
		}
		return dst, nil
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			dst = append(dst, b[i])
			continue
		}
		switch {
		case i+1 < len(b) && b[i+1] == '\\':
			dst = append(dst, '\\')
			i++
		case i+3 < len(b) && isOctal(b[i+1:i+4]):
			dst = append(dst, (b[i+1]-'0')<<6|(b[i+2]-'0')<<3|(b[i+3]-'0'))
			i += 3
		default:
			return dst, fmt.Errorf("bad bytea escape at offset %d", i)
		}
	}
	return dst, nil
}

// isOctal reports three octal digits of at most 377, one byte.
func isOctal(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '7' {
			return false
		}
	}
	return b[0] <= '3'
}

// isInfinity tells PostgreSQL's infinite dates and timestamps.
func isInfinity(b []byte) bool { return string(b) == "infinity" || string(b) == "-infinity" }

// parseDate reads "YYYY-MM-DD[ BC]" as the astronomical year, month and day.
func parseDate(b []byte) (year, month, day int, err error) {
	body, bc := bytes.CutSuffix(b, []byte(" BC"))
	return parseYMD(body, bc)
}

// digits reads an unsigned decimal of only digits, below a billion (far
// past any year PostgreSQL prints), so that date arithmetic cannot overflow.
func digits(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' || n >= 100_000_000 {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// parseYMD reads "YYYY-MM-DD" (four or more year digits, as PostgreSQL
// prints years past 9999) and returns the astronomical year: PostgreSQL's
// 1 BC is year 0, as in the proleptic Gregorian calendar.
func parseYMD(b []byte, bc bool) (year, month, day int, err error) {
	n := len(b)
	if n < 10 || b[n-6] != '-' || b[n-3] != '-' {
		return 0, 0, 0, errors.New("not an ISO date")
	}
	y, ok1 := digits(b[:n-6])
	m, ok2 := digits(b[n-5 : n-3])
	d, ok3 := digits(b[n-2:])
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, 0, errors.New("not an ISO date")
	}
	year = astronomical(y, bc)
	if y == 0 || m < 1 || m > 12 || d < 1 || d > daysIn(m, year) {
		return 0, 0, 0, errors.New("date out of range")
	}
	return year, m, d, nil
}

func astronomical(year int, bc bool) int {
	if bc {
		return 1 - year
	}
	return year
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil counts days from 1970-01-01 to a proleptic Gregorian date
// with astronomical year numbering (Howard Hinnant's days_from_civil).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// parseTimestamp reads "YYYY-MM-DD HH:MM:SS[.ffffff][±HH[:MM[:SS]]][ BC]"
// into microseconds since 1970. For timestamp (withZone false) there is no
// offset and the wall time is taken as UTC; for timestamptz the offset is
// subtracted to get the instant.
func parseTimestamp(b []byte, withZone bool) (int64, error) {
	body, bc := bytes.CutSuffix(b, []byte(" BC"))
	datePart, timePart, ok := bytes.Cut(body, []byte(" "))
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
	secs := daysFromCivil(int64(y), int64(mo), int64(d))*86400 + int64(secOfDay-offset)
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
func cutOffset(b []byte) (rest []byte, seconds int, err error) {
	i := bytes.LastIndexAny(b, "+-")
	if i < 0 {
		return nil, 0, errors.New("timestamptz without a UTC offset")
	}
	sign := 1
	if b[i] == '-' {
		sign = -1
	}
	f := b[i+1:]
	scale := 3600
	for k := 0; ; k++ {
		if k == 3 || len(f) < 2 || len(f) > 2 && f[2] != ':' {
			return nil, 0, errors.New("bad UTC offset")
		}
		n, ok := digits(f[:2])
		if !ok || n > 59 && scale != 3600 {
			return nil, 0, errors.New("bad UTC offset")
		}
		seconds += n * scale
		scale /= 60
		if len(f) == 2 {
			break
		}
		f = f[3:]
	}
	return b[:i], sign * seconds, nil
}

// parseClock reads "HH:MM:SS[.ffffff]". PostgreSQL prints 24:00:00 for the
// end of a day, which this accepts.
func parseClock(b []byte) (secOfDay int, micros int64, err error) {
	clock, frac, hasFrac := bytes.Cut(b, []byte("."))
	if len(clock) != 8 || clock[2] != ':' || clock[5] != ':' {
		return 0, 0, errors.New("not a time of day")
	}
	h, ok1 := digits(clock[:2])
	m, ok2 := digits(clock[3:5])
	s, ok3 := digits(clock[6:])
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, errors.New("not a time of day")
	}
	if h > 24 || m > 59 || s > 59 || h == 24 && (m > 0 || s > 0 || hasFrac) {
		return 0, 0, errors.New("time of day out of range")
	}
	if hasFrac {
		n, ok := digits(frac)
		if !ok || len(frac) > 6 {
			return 0, 0, errors.New("bad fractional seconds")
		}
		for range 6 - len(frac) {
			n *= 10
		}
		micros = int64(n)
	}
	return h*3600 + m*60 + s, micros, nil
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

// TimestampMicros reads PostgreSQL's text of a timestamp (withZone false,
// taken as UTC) or a timestamptz into microseconds since 1970 UTC, for
// other packages that need the instant (row transforms).
func TimestampMicros(b []byte, withZone bool) (int64, error) { return parseTimestamp(b, withZone) }

// DateDays reads PostgreSQL's text of a date into days since 1970-01-01.
func DateDays(b []byte) (int64, error) {
	y, m, d, err := parseDate(b)
	if err != nil {
		return 0, err
	}
	return daysFromCivil(int64(y), int64(m), int64(d)), nil
}
