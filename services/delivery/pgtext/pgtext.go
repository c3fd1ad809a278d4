// Package pgtext renders cdc Values exactly as PostgreSQL's text output prints
// them in a session with TimeZone=UTC, DateStyle=ISO and extra_float_digits>=1
// (the defaults since PostgreSQL 12 print floats as the shortest text that
// reads back to the same value):
//
//   - bool: "t" / "f"
//   - int2, int4, int8, oid: decimal
//   - float4, float8: shortest round-trip digits; fixed notation when the
//     decimal exponent is in [-4, 15) for float8 or [-4, 6) for float4, else
//     e-notation with a signed two-digit-minimum exponent ("1e+15",
//     "1.5e-05"); "NaN", "Infinity", "-Infinity"; negative zero is "-0"
//   - numeric and every type without a dedicated kind: the text as received
//   - bytea: "\x" followed by lower-case hex
//   - date: "YYYY-MM-DD", years before 1 AD as "YYYY-MM-DD BC", "infinity" and
//     "-infinity"
//   - timestamp: "YYYY-MM-DD HH:MM:SS[.ffffff]" with trailing zeros of the
//     fraction removed; timestamptz adds "+00"; BC years end with " BC"
package pgtext

import (
	"math"
	"math/big"
	"strconv"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

// Type OIDs that change how a value renders.
const (
	OIDFloat4 = 700
	OIDFloat8 = 701
)

// Kind tells what Append found.
type Kind int

const (
	// KindValue: text was appended.
	KindValue Kind = iota
	// KindNull: SQL NULL; nothing was appended.
	KindNull
	// KindUnchangedToast: an unchanged TOASTed value the source did not send;
	// nothing was appended.
	KindUnchangedToast
)

const hexDigits = "0123456789abcdef"

// Append appends v's text to dst. typeOID selects float4 formatting for
// floats; other kinds do not need it.
func Append(dst []byte, typeOID uint32, v *cdcv1.Value) ([]byte, Kind) {
	switch k := v.GetKind().(type) {
	case nil, *cdcv1.Value_Null:
		return dst, KindNull
	case *cdcv1.Value_UnchangedToast:
		return dst, KindUnchangedToast
	case *cdcv1.Value_Bool:
		if k.Bool {
			return append(dst, 't'), KindValue
		}
		return append(dst, 'f'), KindValue
	case *cdcv1.Value_Int:
		return strconv.AppendInt(dst, k.Int, 10), KindValue
	case *cdcv1.Value_Float:
		if typeOID == OIDFloat4 {
			return AppendFloat4(dst, float32(k.Float)), KindValue
		}
		return AppendFloat8(dst, k.Float), KindValue
	case *cdcv1.Value_Numeric:
		return append(dst, k.Numeric...), KindValue
	case *cdcv1.Value_Text:
		return append(dst, k.Text...), KindValue
	case *cdcv1.Value_Bytes:
		dst = append(dst, '\\', 'x')
		for _, b := range k.Bytes {
			dst = append(dst, hexDigits[b>>4], hexDigits[b&15])
		}
		return dst, KindValue
	case *cdcv1.Value_Date:
		return AppendDate(dst, k.Date), KindValue
	case *cdcv1.Value_Timestamp:
		return AppendTimestamp(dst, k.Timestamp, false), KindValue
	case *cdcv1.Value_Timestamptz:
		return AppendTimestamp(dst, k.Timestamptz, true), KindValue
	default:
		// Unreachable with the current contract; a new kind must be added
		// here rather than rendered as something plausible.
		panic("pgtext: unknown value kind")
	}
}

// AppendFloat8 prints f as float8out does.
func AppendFloat8(dst []byte, f float64) []byte { return appendFloat(dst, f, 64, 15) }

// AppendFloat4 prints f as float4out does.
func AppendFloat4(dst []byte, f float32) []byte { return appendFloat(dst, float64(f), 32, 6) }

func appendFloat(dst []byte, f float64, bits, maxExp int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	case f == 0:
		if math.Signbit(f) {
			return append(dst, "-0"...)
		}
		return append(dst, '0')
	}
	var scratch [40]byte
	e := shortest(scratch[:0], f, bits)
	// e is "[-]d[.ddd]e±XX". Split into sign, digits and exponent.
	neg := e[0] == '-'
	if neg {
		e = e[1:]
	}
	var digits [24]byte
	nd := 0
	exp := 0
	for i, c := range e {
		if c == 'e' {
			exp, _ = strconv.Atoi(string(e[i+1:]))
			break
		}
		if c != '.' {
			digits[nd] = c
			nd++
		}
	}
	if neg {
		dst = append(dst, '-')
	}
	// PostgreSQL's rule (that of %g): fixed notation when the decimal
	// exponent is in [-4, maxExp).
	if exp < -4 || exp >= maxExp {
		return append(dst, e...)
	}
	d := digits[:nd]
	if exp < 0 {
		dst = append(dst, '0', '.')
		for i := 0; i < -exp-1; i++ {
			dst = append(dst, '0')
		}
		return append(dst, d...)
	}
	if nd <= exp+1 {
		dst = append(dst, d...)
		for i := nd; i < exp+1; i++ {
			dst = append(dst, '0')
		}
		return dst
	}
	dst = append(dst, d[:exp+1]...)
	dst = append(dst, '.')
	return append(dst, d[exp+1:]...)
}

// shortest appends f in e-notation with the digits PostgreSQL's Ryu prints.
// PostgreSQL builds Ryu without STRICTLY_SHORTEST, so a decimal that lies
// exactly halfway between f and a neighbour is never accepted, even where
// round-half-even parsing would map it back to f. Go's shortest formatting
// accepts such halfway decimals when f's mantissa is even, so for those
// values the result is checked and, when it is a halfway point, the next
// longer correctly rounded form that is not one is used.
func shortest(dst []byte, f float64, bits int) []byte {
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, 'e', -1, bits)
	var mant uint64
	if bits == 32 {
		mant = uint64(math.Float32bits(float32(f)))
	} else {
		mant = math.Float64bits(f)
	}
	if mant&1 == 1 || !isHalfway(dst[start:], f, bits) {
		return dst
	}
	nd := 0
	for _, c := range dst[start:] {
		if c == 'e' {
			break
		}
		if c >= '0' && c <= '9' {
			nd++
		}
	}
	maxDigits := 17
	if bits == 32 {
		maxDigits = 9
	}
	for p := nd; p < maxDigits; p++ {
		dst = strconv.AppendFloat(dst[:start], f, 'e', p, bits)
		back, err := strconv.ParseFloat(string(dst[start:]), bits)
		if err == nil && back == f && !isHalfway(dst[start:], f, bits) {
			return trimZeros(dst, start)
		}
	}
	return strconv.AppendFloat(dst[:start], f, 'e', maxDigits-1, bits)
}

// trimZeros removes trailing zeros of the mantissa in dst[start:].
func trimZeros(dst []byte, start int) []byte {
	s := dst[start:]
	ei := 0
	for i, c := range s {
		if c == 'e' {
			ei = i
			break
		}
	}
	j := ei
	for j > 0 && s[j-1] == '0' {
		j--
	}
	if j > 0 && s[j-1] == '.' {
		j--
	}
	if j == ei {
		return dst
	}
	tail := append([]byte(nil), s[ei:]...)
	return append(dst[:start+j], tail...)
}

// isHalfway reports whether the decimal s is exactly the midpoint between f
// and one of its neighbours of the given width.
func isHalfway(s []byte, f float64, bits int) bool {
	prec := uint(64)
	var lo, hi float64
	if bits == 32 {
		prec = 32
		f32 := float32(f)
		lo = float64(math.Nextafter32(f32, float32(math.Inf(-1))))
		hi = float64(math.Nextafter32(f32, float32(math.Inf(1))))
	} else {
		lo = math.Nextafter(f, math.Inf(-1))
		hi = math.Nextafter(f, math.Inf(1))
	}
	v, _, err := big.ParseFloat(string(s), 10, prec, big.ToNearestEven)
	if err != nil || v.Acc() != big.Exact {
		return false // not even representable in prec bits: not a midpoint
	}
	for _, n := range []float64{lo, hi} {
		if math.IsInf(n, 0) {
			continue
		}
		mid := new(big.Float).SetPrec(prec).SetFloat64(f)
		mid.Add(mid, new(big.Float).SetPrec(prec).SetFloat64(n))
		mid.Quo(mid, big.NewFloat(2))
		if mid.Cmp(v) == 0 {
			return true
		}
	}
	return false
}

// Civil converts days since 1970-01-01 to a proleptic Gregorian date with
// astronomical year numbering (year 0 is 1 BC).
func Civil(days int64) (y int64, m, d int) {
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

func appendPad(dst []byte, v int64, width int) []byte {
	var b [20]byte
	s := strconv.AppendInt(b[:0], v, 10)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// appendYMD appends the date and reports whether it is BC.
func appendYMD(dst []byte, days int64) ([]byte, bool) {
	y, m, d := Civil(days)
	bc := y <= 0
	if bc {
		y = 1 - y
	}
	dst = appendPad(dst, y, 4)
	dst = append(dst, '-')
	dst = appendPad(dst, int64(m), 2)
	dst = append(dst, '-')
	dst = appendPad(dst, int64(d), 2)
	return dst, bc
}

// AppendDate prints a date as date_out does with DateStyle=ISO.
func AppendDate(dst []byte, v *cdcv1.Date) []byte {
	switch v.GetInfinity() {
	case cdcv1.Infinity_INFINITY_POSITIVE:
		return append(dst, "infinity"...)
	case cdcv1.Infinity_INFINITY_NEGATIVE:
		return append(dst, "-infinity"...)
	}
	dst, bc := appendYMD(dst, int64(v.GetDays()))
	if bc {
		dst = append(dst, " BC"...)
	}
	return dst
}

const microsPerDay = 86_400_000_000

// AppendTimestamp prints a timestamp (tz=false) or a timestamptz in UTC
// (tz=true) as PostgreSQL does with DateStyle=ISO, TimeZone=UTC.
func AppendTimestamp(dst []byte, v *cdcv1.Timestamp, tz bool) []byte {
	switch v.GetInfinity() {
	case cdcv1.Infinity_INFINITY_POSITIVE:
		return append(dst, "infinity"...)
	case cdcv1.Infinity_INFINITY_NEGATIVE:
		return append(dst, "-infinity"...)
	}
	us := v.GetMicros()
	days := us / microsPerDay
	rem := us % microsPerDay
	if rem < 0 {
		rem += microsPerDay
		days--
	}
	dst, bc := appendYMD(dst, days)
	secs := rem / 1_000_000
	frac := rem % 1_000_000
	dst = append(dst, ' ')
	dst = appendPad(dst, secs/3600, 2)
	dst = append(dst, ':')
	dst = appendPad(dst, secs/60%60, 2)
	dst = append(dst, ':')
	dst = appendPad(dst, secs%60, 2)
	if frac != 0 {
		digits := 6
		for frac%10 == 0 {
			frac /= 10
			digits--
		}
		dst = append(dst, '.')
		dst = appendPad(dst, frac, digits)
	}
	if tz {
		dst = append(dst, "+00"...)
	}
	if bc {
		dst = append(dst, " BC"...)
	}
	return dst
}
