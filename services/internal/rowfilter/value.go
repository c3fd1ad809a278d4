package rowfilter

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// kind is how Ferry compares values of a type: the types a filter may use
// before PostgreSQL 15, grouped by the comparison PostgreSQL applies.
type kind uint8

const (
	kindBool kind = iota + 1
	kindInt
	kindNumeric
	kindFloat4
	kindFloat8
	kindText
	kindVarchar
	kindBpchar
	kindDate
	kindTimestamp
	kindTimestamptz
	kindUUID
)

// typeInfo is a supported type: its kind and the name Ferry's rendering
// casts constants to (pg_catalog's own, which the parser reads back).
type typeInfo struct {
	kind kind
	name string
}

// types are the supported types by OID. Domains are looked up by their
// base type.
var types = map[uint32]typeInfo{
	16:   {kindBool, "bool"},
	21:   {kindInt, "int2"},
	23:   {kindInt, "int4"},
	20:   {kindInt, "int8"},
	1700: {kindNumeric, "numeric"},
	700:  {kindFloat4, "float4"},
	701:  {kindFloat8, "float8"},
	25:   {kindText, "text"},
	1043: {kindVarchar, "varchar"},
	1042: {kindBpchar, "bpchar"},
	1082: {kindDate, "date"},
	1114: {kindTimestamp, "timestamp"},
	1184: {kindTimestamptz, "timestamptz"},
	2950: {kindUUID, "uuid"},
}

// typeByName is types by the name a cast spells (the parser turns
// integer, real, timestamp with time zone and the like into these).
var typeByName = func() map[string]uint32 {
	m := map[string]uint32{}
	for oid, t := range types {
		m[t.name] = oid
	}
	return m
}()

func (k kind) isText() bool   { return k == kindText || k == kindVarchar || k == kindBpchar }
func (k kind) isTime() bool   { return k == kindDate || k == kindTimestamp || k == kindTimestamptz }
func (k kind) isNumber() bool { return k == kindInt || k == kindNumeric || k.isFloat() }
func (k kind) isFloat() bool  { return k == kindFloat4 || k == kindFloat8 }

// value is one non-null value, parsed from PostgreSQL's text output (as
// pgoutput and a UTC, ISO-DateStyle session print it) for its kind.
type value struct {
	k   kind
	b   bool
	i   int64
	f   float64
	num numeric
	s   []byte // text (a bpchar without its padding), uuid
	t   instant
}

// numeric is an exact decimal, or one of PostgreSQL's special values,
// which numeric sorts as -Infinity < every number < Infinity < NaN.
type numeric struct {
	special int8 // -1 -Infinity, 1 Infinity, 2 NaN, 0 a number in r
	r       *big.Rat
}

// instant orders dates and timestamps: -infinity and infinity around every
// finite one, then days since 1970-01-01 and microseconds into that day,
// in UTC (the session's time zone: timestamps without one are read in
// it, as PostgreSQL reads them when it compares them with timestamptz).
type instant struct {
	inf    int8
	days   int64
	micros int64
}

var errUnparsable = errors.New("not in PostgreSQL's text output format for its type")

// parseValue parses text of kind k. Errors never quote the text: it may be
// a row's value.
func parseValue(k kind, text []byte) (value, error) {
	v := value{k: k}
	var err error
	switch k {
	case kindBool:
		switch string(text) {
		case "t":
			v.b = true
		case "f":
		default:
			err = errUnparsable
		}
	case kindInt:
		v.i, err = strconv.ParseInt(string(text), 10, 64)
	case kindNumeric:
		v.num, err = parseNumeric(string(text))
	case kindFloat4, kindFloat8:
		v.f, err = parseFloat(k, string(text))
	case kindText, kindVarchar, kindUUID:
		v.s = text
	case kindBpchar:
		v.s = bytes.TrimRight(text, " ")
	case kindDate, kindTimestamp, kindTimestamptz:
		v.t, err = parseInstant(string(text))
	default:
		err = fmt.Errorf("kind %d has no parser", k)
	}
	if err != nil {
		return value{}, errUnparsable
	}
	return v, nil
}

func parseNumeric(s string) (numeric, error) {
	switch s {
	case "NaN":
		return numeric{special: 2}, nil
	case "Infinity":
		return numeric{special: 1}, nil
	case "-Infinity":
		return numeric{special: -1}, nil
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok || strings.ContainsAny(s, "eE/") {
		return numeric{}, errUnparsable
	}
	return numeric{r: r}, nil
}

// parseFloat reads float4 at 32 bits, so a float4 is its stored binary32
// value, widened. strconv reads PostgreSQL's NaN and ±Infinity spellings.
func parseFloat(k kind, s string) (float64, error) {
	if k == kindFloat4 {
		return strconv.ParseFloat(s, 32)
	}
	return strconv.ParseFloat(s, 64)
}

// convert turns v into kind to, as PostgreSQL's implicit casts do before a
// comparison of two types: integers to numeric or float8, numeric and
// float4 to float8, dates to timestamps at midnight, text to char without
// trailing spaces (a char's own are stripped when it is parsed).
func convert(v value, to kind) value {
	switch {
	case v.k == to:
		return v
	case v.k == kindInt && to == kindNumeric:
		v.num = numeric{r: new(big.Rat).SetInt64(v.i)}
	case v.k == kindInt && to.isFloat():
		v.f = float64(v.i)
	case v.k == kindNumeric && to.isFloat():
		v.f = numericFloat(v)
	case v.k.isText() && to == kindBpchar:
		v.s = bytes.TrimRight(v.s, " ")
	case v.k.isFloat() && to.isFloat(), v.k.isText() && to.isText(), v.k.isTime() && to.isTime():
	default:
		panic(fmt.Sprintf("rowfilter: no conversion from kind %d to %d", v.k, to))
	}
	v.k = to
	return v
}

// numericFloat is numeric's float8 cast: the nearest double to the
// decimal, as PostgreSQL's (strtod on its text) rounds it; arithmetic
// results have no text, so it is computed from the exact value.
func numericFloat(v value) float64 {
	switch v.num.special {
	case 2:
		return math.NaN()
	case 1:
		return math.Inf(1)
	case -1:
		return math.Inf(-1)
	}
	f, _ := v.num.r.Float64()
	return f
}

// compare orders a and b, of the same kind, as PostgreSQL's btree
// comparison of that type does: NaN above everything and equal to itself
// for floats and numeric, byte order for text (the callers allow order
// comparisons of text only under the C collation; equality is byte
// equality under every deterministic one).
func compare(a, b value) int {
	switch a.k {
	case kindBool:
		return cmpBool(a.b, b.b)
	case kindInt:
		return cmp.Compare(a.i, b.i)
	case kindNumeric:
		return compareNumeric(a.num, b.num)
	case kindFloat4, kindFloat8:
		return compareFloat(a.f, b.f)
	case kindText, kindVarchar, kindBpchar, kindUUID:
		return bytes.Compare(a.s, b.s)
	default:
		return compareInstant(a.t, b.t)
	}
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case b:
		return -1
	}
	return 1
}

func compareNumeric(a, b numeric) int {
	if a.special != 0 || b.special != 0 {
		rank := func(n numeric) int8 {
			if n.special == 0 {
				return 0
			}
			return n.special
		}
		return cmp.Compare(rank(a), rank(b))
	}
	return a.r.Cmp(b.r)
}

func compareFloat(a, b float64) int {
	an, bn := math.IsNaN(a), math.IsNaN(b)
	switch {
	case an && bn:
		return 0
	case an:
		return 1
	case bn:
		return -1
	}
	return cmp.Compare(a, b)
}

func compareInstant(a, b instant) int {
	if c := cmp.Compare(a.inf, b.inf); c != 0 || a.inf != 0 {
		return c
	}
	if c := cmp.Compare(a.days, b.days); c != 0 {
		return c
	}
	return cmp.Compare(a.micros, b.micros)
}

// parseInstant reads a date, timestamp or timestamptz as PostgreSQL prints
// it with DateStyle ISO: "2024-01-31", "2024-01-31 10:11:12.5",
// "2024-01-31 10:11:12.5+05:30", each with " BC" after it before year 1,
// and the infinities.
func parseInstant(s string) (instant, error) {
	switch s {
	case "infinity":
		return instant{inf: 1}, nil
	case "-infinity":
		return instant{inf: -1}, nil
	}
	body, bc := strings.CutSuffix(s, " BC")
	datePart, timePart, _ := strings.Cut(body, " ")
	days, err := parseISODate(datePart, bc)
	if err != nil {
		return instant{}, err
	}
	if timePart == "" {
		return instant{days: days}, nil
	}
	micros, err := parseClock(timePart)
	if err != nil {
		return instant{}, err
	}
	const day = 86_400_000_000
	days += floorDiv(micros, day)
	return instant{days: days, micros: micros - floorDiv(micros, day)*day}, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// parseISODate is the days since 1970-01-01 of "YYYY-MM-DD" (four or more
// year digits), BC years counted as PostgreSQL does (1 BC is year 0).
func parseISODate(s string, bc bool) (int64, error) {
	parts := strings.Split(s, "-")
	if len(parts) != 3 || len(parts[0]) < 4 || len(parts[1]) != 2 || len(parts[2]) != 2 {
		return 0, errUnparsable
	}
	y, err1 := strconv.ParseInt(parts[0], 10, 64)
	m, err2 := strconv.ParseInt(parts[1], 10, 64)
	d, err3 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || m < 1 || m > 12 || d < 1 || d > 31 {
		return 0, errUnparsable
	}
	if bc {
		y = 1 - y
	}
	return daysFromCivil(y, m, d), nil
}

// daysFromCivil counts days from 1970-01-01 in the proleptic Gregorian
// calendar (Howard Hinnant's algorithm), for any year without overflow.
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := floorDiv(y, 400)
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// parseClock is "HH:MM:SS[.ffffff][±HH[:MM[:SS]]]" as microseconds since
// midnight UTC, which may fall outside the day by the offset.
func parseClock(s string) (int64, error) {
	clock, offset := s, ""
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		clock, offset = s[:i], s[i:]
	}
	hms := strings.Split(clock, ":")
	if len(hms) != 3 {
		return 0, errUnparsable
	}
	secText, frac, _ := strings.Cut(hms[2], ".")
	h, err1 := strconv.ParseInt(hms[0], 10, 64)
	m, err2 := strconv.ParseInt(hms[1], 10, 64)
	sec, err3 := strconv.ParseInt(secText, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || len(frac) > 6 {
		return 0, errUnparsable
	}
	us := int64(0)
	if frac != "" {
		f, err := strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
		if err != nil {
			return 0, errUnparsable
		}
		us = f
	}
	micros := ((h*60+m)*60+sec)*1_000_000 + us
	off, err := parseOffset(offset)
	return micros - off*1_000_000, err
}

// parseOffset is a UTC offset "+05", "-03:30" or "+00:19:32" in seconds.
func parseOffset(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	sign := int64(1)
	if s[0] == '-' {
		sign = -1
	}
	var secs int64
	for i, p := range strings.Split(s[1:], ":") {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || i > 2 || len(p) != 2 {
			return 0, errUnparsable
		}
		secs += n * []int64{3600, 60, 1}[i]
	}
	return sign * secs, nil
}
