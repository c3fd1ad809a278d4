package debezium

import (
	"bytes"
	"errors"
	"math"
	"strconv"
)

// appendInterval writes an interval as io.debezium.time.MicroDuration: its
// approximate length in microseconds, a month counted as 365.25/12 days
// and a year as 12 months, as Debezium's documentation gives it.
func appendInterval(dst []byte, text []byte) ([]byte, error) {
	months, days, us, err := parseInterval(text)
	if err != nil {
		return dst, err
	}
	const dayMicros = 86_400_000_000
	// Java's (long) cast saturates; Go's conversion of an out-of-range
	// float is undefined, so saturate by hand.
	f := (float64(months)*(365.25/12)+float64(days))*dayMicros + float64(us)
	switch {
	case f >= math.MaxInt64:
		return strconv.AppendInt(dst, math.MaxInt64, 10), nil
	case f <= math.MinInt64:
		return strconv.AppendInt(dst, math.MinInt64, 10), nil
	}
	days64 := int64((float64(months)*(365.25/12) + float64(days)) * dayMicros)
	return strconv.AppendInt(dst, days64+us, 10), nil
}

// parseInterval reads IntervalStyle postgres output: "1 year 2 mons
// -3 days +04:05:06.5", any part left out, "00:00:00" for zero.
func parseInterval(b []byte) (months, days int64, us int64, err error) {
	fields := bytes.Fields(b)
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		if bytes.IndexByte(f, ':') >= 0 {
			us, err = intervalClock(f)
			if err != nil {
				return 0, 0, 0, err
			}
			continue
		}
		if i+1 >= len(fields) {
			return 0, 0, 0, errors.New("interval number without a unit")
		}
		n, perr := strconv.ParseInt(string(f), 10, 64)
		if perr != nil {
			return 0, 0, 0, errors.New("bad interval number")
		}
		switch unit := string(fields[i+1]); unit {
		case "year", "years":
			months += 12 * n
		case "mon", "mons":
			months += n
		case "day", "days":
			days += n
		default:
			return 0, 0, 0, errors.New("unknown interval unit")
		}
		i++
	}
	return months, days, us, nil
}

// intervalClock reads "[+-]H+:MM:SS[.ffffff]", whose hours have no limit.
func intervalClock(b []byte) (int64, error) {
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg = b[0] == '-'
		b = b[1:]
	}
	parts := bytes.Split(b, []byte(":"))
	if len(parts) != 3 {
		return 0, errors.New("bad interval time")
	}
	h, err1 := strconv.ParseInt(string(parts[0]), 10, 64)
	m, err2 := strconv.ParseInt(string(parts[1]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad interval time")
	}
	secs, frac, hasFrac := bytes.Cut(parts[2], []byte("."))
	s, err := strconv.ParseInt(string(secs), 10, 64)
	if err != nil {
		return 0, errors.New("bad interval time")
	}
	var f int64
	if hasFrac {
		if len(frac) == 0 || len(frac) > 6 {
			return 0, errors.New("bad interval fraction")
		}
		if f, err = strconv.ParseInt(string(frac), 10, 64); err != nil || f < 0 {
			return 0, errors.New("bad interval fraction")
		}
		for range 6 - len(frac) {
			f *= 10
		}
	}
	us := ((h*60+m)*60+s)*1_000_000 + f
	if neg {
		us = -us
	}
	return us, nil
}
