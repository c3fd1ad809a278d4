package debezium

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"math/big"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/ferry-cdc/ferry/services/delivery/dtsavro"
)

// The parsers read PostgreSQL's text output in the session settings
// capture fixes (TimeZone=UTC, DateStyle=ISO, IntervalStyle=postgres,
// extra_float_digits=3, bytea_output=hex). Errors describe the shape of the
// text, never the text.

// UnavailableValue is what Debezium writes for an unchanged TOASTed value
// the source did not send (unavailable.value.placeholder's default).
const UnavailableValue = "__debezium_unavailable_value"

var unavailableBase64 = base64.StdEncoding.EncodeToString([]byte(UnavailableValue))

// appendValue writes one non-null value of type ct.
func appendValue(dst []byte, ct *columnType, text []byte) ([]byte, error) {
	switch ct.kind {
	case kString:
		return appendBytesString(dst, text), nil
	case kBool, kBit1:
		return strconv.AppendBool(dst, len(text) == 1 && (text[0] == 't' || text[0] == '1')), nil
	case kInt:
		return append(dst, text...), nil
	case kFloat, kDecimalDouble:
		return appendNumber(dst, text), nil
	case kDecimalString:
		return appendBytesString(dst, text), nil
	case kMoneyString, kMoneyDouble:
		return appendMoney(dst, text, ct.kind == kMoneyDouble)
	case kBytes:
		return appendBytea(dst, text)
	case kBits:
		return appendBits(dst, text)
	case kPoint:
		return appendPoint(dst, text)
	case kArray:
		return appendArray(dst, ct.elem, text)
	case kInterval:
		return appendInterval(dst, text)
	}
	return appendTemporal(dst, ct.kind, text)
}

// appendNumber writes a float or numeric as a JSON number; NaN and the
// infinities, which JSON has no number for, as the strings Jackson (and so
// Kafka Connect's JsonConverter) writes for them.
func appendNumber(dst []byte, text []byte) []byte {
	switch string(text) {
	case "NaN", "Infinity", "-Infinity":
		return appendBytesString(dst, text)
	}
	return append(dst, text...)
}

// appendMoney writes money's amount without its currency symbol and digit
// grouping ("-$1,234.56" is -1234.56), assuming lc_monetary uses "." for
// the decimal point, as the C and English locales do.
func appendMoney(dst []byte, text []byte, asNumber bool) ([]byte, error) {
	var amount []byte
	neg := bytes.HasPrefix(text, []byte("-")) || bytes.HasPrefix(text, []byte("(")) && bytes.HasSuffix(text, []byte(")"))
	for _, b := range text {
		if b >= '0' && b <= '9' || b == '.' {
			amount = append(amount, b)
		}
	}
	if len(amount) == 0 {
		return dst, errors.New("money without digits")
	}
	if neg {
		amount = append([]byte{'-'}, amount...)
	}
	if asNumber {
		return append(dst, amount...), nil
	}
	return appendBytesString(dst, amount), nil
}

// appendBytea writes bytea (hex output, or the escape format) as base64,
// which is how JsonConverter writes Connect BYTES.
func appendBytea(dst []byte, text []byte) ([]byte, error) {
	if h, ok := bytes.CutPrefix(text, []byte(`\x`)); ok && len(h)%2 == 0 {
		return appendHexAsBase64(dst, h)
	}
	raw, err := byteaBytes(text)
	if err != nil {
		return dst, err
	}
	return appendBase64(dst, raw), nil
}

// appendHexAsBase64 writes hex digits as base64 three bytes at a time, so
// that no copy of the bytes is allocated: base64 of whole 3-byte groups
// concatenates.
func appendHexAsBase64(dst, h []byte) ([]byte, error) {
	dst = append(dst, '"')
	var group [3]byte
	for len(h) > 0 {
		n := min(len(h), 6)
		if _, err := hex.Decode(group[:n/2], h[:n]); err != nil {
			return dst, errors.New("bad bytea hex digits")
		}
		dst = base64.StdEncoding.AppendEncode(dst, group[:n/2])
		h = h[n:]
	}
	return append(dst, '"'), nil
}

func appendBase64(dst, raw []byte) []byte {
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, raw)
	return append(dst, '"')
}

func byteaBytes(b []byte) ([]byte, error) {
	if h, ok := bytes.CutPrefix(b, []byte(`\x`)); ok {
		out := make([]byte, hex.DecodedLen(len(h)))
		if _, err := hex.Decode(out, h); err != nil {
			return nil, errors.New("bad bytea hex digits")
		}
		return out, nil
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] != '\\':
			out = append(out, b[i])
		case i+1 < len(b) && b[i+1] == '\\':
			out = append(out, '\\')
			i++
		case i+3 < len(b) && isOctal(b[i+1:i+4]):
			out = append(out, (b[i+1]-'0')<<6|(b[i+2]-'0')<<3|(b[i+3]-'0'))
			i += 3
		default:
			return nil, errors.New("bad bytea escape")
		}
	}
	return out, nil
}

func isOctal(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '7' {
			return false
		}
	}
	return true
}

// appendBits writes a bit string as io.debezium.data.Bits: the string read
// as a binary number (first bit most significant), its bytes least
// significant first, as many as the bits need.
func appendBits(dst []byte, text []byte) ([]byte, error) {
	var n big.Int
	if len(text) > 0 {
		if _, ok := n.SetString(string(text), 2); !ok {
			return dst, errors.New("bad bit string")
		}
	}
	be := n.FillBytes(make([]byte, (len(text)+7)/8))
	for i, j := 0, len(be)-1; i < j; i, j = i+1, j-1 {
		be[i], be[j] = be[j], be[i]
	}
	return appendBase64(dst, be), nil
}

// appendPoint writes "(x,y)" as io.debezium.data.geometry.Point, with the
// point's WKB (little-endian) and no SRID.
func appendPoint(dst []byte, text []byte) ([]byte, error) {
	in, ok1 := bytes.CutPrefix(text, []byte("("))
	in, ok2 := bytes.CutSuffix(in, []byte(")"))
	if !ok1 || !ok2 {
		return dst, errors.New("bad point")
	}
	xs, ys, ok := bytes.Cut(in, []byte(","))
	if !ok {
		return dst, errors.New("bad point")
	}
	x, err1 := strconv.ParseFloat(string(xs), 64)
	y, err2 := strconv.ParseFloat(string(ys), 64)
	if err1 != nil || err2 != nil {
		return dst, errors.New("bad point coordinates")
	}
	wkb := make([]byte, 21)
	wkb[0] = 1 // little-endian
	binary.LittleEndian.PutUint32(wkb[1:], 1)
	binary.LittleEndian.PutUint64(wkb[5:], math.Float64bits(x))
	binary.LittleEndian.PutUint64(wkb[13:], math.Float64bits(y))
	dst = append(dst, `{"x":`...)
	dst = appendNumber(dst, xs)
	dst = append(dst, `,"y":`...)
	dst = appendNumber(dst, ys)
	dst = append(dst, `,"wkb":`...)
	dst = appendBase64(dst, wkb)
	return append(dst, `,"srid":null}`...), nil
}

// appendTemporal writes dates, times and timestamps.
func appendTemporal(dst []byte, k kind, text []byte) ([]byte, error) {
	switch k {
	case kDate:
		return appendDate(dst, text)
	case kTimeMillis, kTimeMicros:
		us, err := clockMicros(text)
		if err != nil {
			return dst, err
		}
		if k == kTimeMillis {
			us /= 1000
		}
		return strconv.AppendInt(dst, us, 10), nil
	case kTimestampMilli, kTimestampMicro:
		return appendTimestamp(dst, k, text)
	case kTimestamptz:
		return appendTimestamptz(dst, text)
	case kTimetz:
		return appendTimetz(dst, text)
	}
	return appendBytesString(dst, text), nil
}

// appendDate writes days since 1970; ±infinity as the int32 extremes.
func appendDate(dst []byte, text []byte) ([]byte, error) {
	switch string(text) {
	case "infinity":
		return strconv.AppendInt(dst, math.MaxInt32, 10), nil
	case "-infinity":
		return strconv.AppendInt(dst, math.MinInt32, 10), nil
	}
	d, err := dtsavro.DateDays(text)
	if err != nil {
		return dst, err
	}
	return strconv.AppendInt(dst, d, 10), nil
}

// appendTimestamp writes the wall time as if UTC, in milliseconds (floored)
// or microseconds; ±infinity as the int64 extremes, as Debezium does.
func appendTimestamp(dst []byte, k kind, text []byte) ([]byte, error) {
	switch string(text) {
	case "infinity":
		return strconv.AppendInt(dst, math.MaxInt64, 10), nil
	case "-infinity":
		return strconv.AppendInt(dst, math.MinInt64, 10), nil
	}
	us, err := dtsavro.TimestampMicros(text, false)
	if err != nil && beyondMicros(text) {
		// PostgreSQL goes on to 294276 AD; Debezium's int64 microseconds
		// end in 294247. Such a time is written as infinity is.
		us, err = math.MaxInt64, nil
	}
	if err != nil {
		return dst, err
	}
	if k == kTimestampMilli && us != math.MaxInt64 {
		us = floorDiv(us, 1000)
	}
	return strconv.AppendInt(dst, us, 10), nil
}

// beyondMicros recognizes a timestamp after the year 294246, which int64
// microseconds since 1970 may not hold.
func beyondMicros(text []byte) bool {
	y, _, ok := bytes.Cut(text, []byte("-"))
	n, err := strconv.Atoi(string(y))
	return ok && err == nil && n > 294246 && !bytes.HasSuffix(text, []byte(" BC"))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// appendTimestamptz writes the instant in UTC as ISO 8601 with a Z, the
// fraction as PostgreSQL printed it (trailing zeros dropped); ±infinity
// as "infinity" and "-infinity".
func appendTimestamptz(dst []byte, text []byte) ([]byte, error) {
	if string(text) == "infinity" || string(text) == "-infinity" {
		return appendBytesString(dst, text), nil
	}
	if n := len(text); n >= 22 && text[4] == '-' && text[10] == ' ' && string(text[n-3:]) == "+00" {
		// Capture's sessions print in UTC: only the separators differ
		// from ISO 8601 (a BC or five-digit year fails the test above).
		dst = append(dst, '"')
		dst = append(dst, text[:10]...)
		dst = append(dst, 'T')
		dst = append(dst, text[11:n-3]...)
		return append(dst, 'Z', '"'), nil
	}
	us, err := dtsavro.TimestampMicros(text, true)
	if err != nil && beyondMicros(text) {
		return appendBytesString(dst, text), nil // PostgreSQL's text, exact
	}
	if err != nil {
		return dst, err
	}
	t := time.UnixMicro(us).UTC()
	dst = append(dst, '"')
	if y := t.Year(); y < 0 || y > 9999 {
		// ISO 8601's expanded years, as java.time prints them.
		if y > 0 {
			dst = append(dst, '+')
		}
	}
	dst = t.AppendFormat(dst, "2006-01-02T15:04:05.999999Z")
	return append(dst, '"'), nil
}

// appendTimetz writes the time in UTC ("HH:MM:SS[.ffffff]Z"), wrapping
// around midnight.
func appendTimetz(dst []byte, text []byte) ([]byte, error) {
	i := bytes.LastIndexAny(text, "+-")
	if i < 0 {
		return dst, errors.New("timetz without a UTC offset")
	}
	us, err := clockMicros(text[:i])
	if err != nil {
		return dst, err
	}
	off, err := offsetSeconds(text[i:])
	if err != nil {
		return dst, err
	}
	const day = 86_400_000_000
	us = ((us-int64(off)*1_000_000)%day + day) % day
	t := time.UnixMicro(us).UTC()
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, "15:04:05.999999Z")
	return append(dst, '"'), nil
}

// offsetSeconds reads "+HH[:MM[:SS]]".
func offsetSeconds(b []byte) (int, error) {
	sign := 1
	if b[0] == '-' {
		sign = -1
	}
	secs, scale := 0, 3600
	for _, part := range bytes.Split(b[1:], []byte(":")) {
		n, err := strconv.Atoi(string(part))
		if err != nil || len(part) != 2 || scale == 0 {
			return 0, errors.New("bad UTC offset")
		}
		secs += n * scale
		scale /= 60
	}
	return sign * secs, nil
}

// clockMicros reads "HH:MM:SS[.ffffff]" (24:00:00 included).
func clockMicros(b []byte) (int64, error) {
	clock, frac, hasFrac := bytes.Cut(b, []byte("."))
	if len(clock) != 8 || clock[2] != ':' || clock[5] != ':' {
		return 0, errors.New("not a time of day")
	}
	h, err1 := strconv.Atoi(string(clock[:2]))
	m, err2 := strconv.Atoi(string(clock[3:5]))
	s, err3 := strconv.Atoi(string(clock[6:]))
	if err1 != nil || err2 != nil || err3 != nil || h > 24 || m > 59 || s > 59 {
		return 0, errors.New("not a time of day")
	}
	var us int64
	if hasFrac {
		if len(frac) == 0 || len(frac) > 6 {
			return 0, errors.New("bad fractional seconds")
		}
		n, err := strconv.Atoi(string(frac))
		if err != nil || n < 0 {
			return 0, errors.New("bad fractional seconds")
		}
		us = int64(n)
		for range 6 - len(frac) {
			us *= 10
		}
	}
	return int64(h*3600+m*60+s)*1_000_000 + us, nil
}

// appendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&15])
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// appendBytesString appends b as a JSON string; b is not retained.
func appendBytesString(dst []byte, b []byte) []byte {
	return appendString(dst, unsafe.String(unsafe.SliceData(b), len(b)))
}

const hexDigits = "0123456789abcdef"
