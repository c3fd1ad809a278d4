package dtsavro

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"
)

// Expected numbers were computed by PostgreSQL 15 itself, e.g.
// extract(epoch from '0044-03-15 12:00:00+00 BC'::timestamptz).
func TestParseTimestamp(t *testing.T) {
	tests := []struct {
		in       string
		withZone bool
		want     int64
	}{
		{"1969-12-31 23:59:59.999999", false, -1},
		{"1970-01-01 00:00:00", false, 0},
		{"10000-01-01 00:00:01.5", false, 253402300801500000},
		{"2024-02-29 07:04:56.000001+00", true, 1709190296000001},
		{"2024-02-29 12:34:56.000001+05:30", true, 1709190296000001},
		{"2024-02-29 01:04:56.000001-06", true, 1709190296000001},
		{"1850-01-01 00:00:00+00:19:32", true, -3786826772000000},
		{"0044-03-15 12:00:00+00 BC", true, -63517780800000000},
		{"294247-01-10 04:00:54.775807", false, math.MaxInt64},
		{"294247-01-10 09:30:54.775807+05:30", true, math.MaxInt64},
	}
	for _, tc := range tests {
		got, err := parseTimestamp([]byte(tc.in), tc.withZone)
		if err != nil || got != tc.want {
			t.Errorf("parseTimestamp(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	// Past int64 micros since 1970 (PostgreSQL allows up to 294276 AD) the
	// text is written instead of a wrapped-around value.
	for _, in := range []string{"294247-01-10 04:00:54.775808", "294276-12-31 23:59:59.999999"} {
		if _, err := parseTimestamp([]byte(in), false); !errors.Is(err, errBeyondMicros) {
			t.Errorf("parseTimestamp(%q): %v, want errBeyondMicros", in, err)
		}
	}
}

func TestParseDate(t *testing.T) {
	for in, want := range map[string][3]int{
		"1970-01-01": {1970, 1, 1}, "0001-01-01": {1, 1, 1}, "0044-03-15 BC": {-43, 3, 15}, "10000-01-01": {10000, 1, 1},
	} {
		y, m, d, err := parseDate([]byte(in))
		if err != nil || [3]int{y, m, d} != want {
			t.Errorf("parseDate(%q) = %d-%d-%d, %v; want %v", in, y, m, d, err, want)
		}
	}
}

func TestParseFloatAndBytea(t *testing.T) {
	if f, err := parseFloat([]byte("0.1"), true); err != nil || f != float64(float32(0.1)) {
		t.Errorf("float4 0.1 = %v, %v; want the binary32 value", f, err)
	}
	if f, err := parseFloat([]byte("-0"), false); err != nil || !math.Signbit(f) {
		t.Errorf("-0 = %v, %v; want negative zero", f, err)
	}
	if f, err := parseFloat([]byte("NaN"), false); err != nil || !math.IsNaN(f) {
		t.Errorf("NaN = %v, %v", f, err)
	}
	for in, want := range map[string][]byte{`\x00ff00`: {0, 0xff, 0}, `\x`: {}, `a\000\\b`: {'a', 0, '\\', 'b'}} {
		got, err := appendBytea(nil, []byte(in))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("bytea %q = %x, %v; want %x", in, got, err, want)
		}
	}
}

// TestParseRejectsWhatItCannotRead: malformed text is an error that does
// not quote the text.
func TestParseRejectsWhatItCannotRead(t *testing.T) {
	bad := map[string]func(string) error{
		"2024-02-30":                  func(s string) error { _, _, _, err := parseDate([]byte(s)); return err },
		"24-01-01":                    func(s string) error { _, _, _, err := parseDate([]byte(s)); return err },
		"0000-01-01":                  func(s string) error { _, _, _, err := parseDate([]byte(s)); return err },
		"2024/01/01":                  func(s string) error { _, _, _, err := parseDate([]byte(s)); return err },
		"2024-01-01T00:00:00":         func(s string) error { _, err := parseTimestamp([]byte(s), false); return err },
		"2024-01-01 25:00:00":         func(s string) error { _, err := parseTimestamp([]byte(s), false); return err },
		"2024-01-01 00:00:00.1234567": func(s string) error { _, err := parseTimestamp([]byte(s), false); return err },
		"2024-01-01 00:00:00":         func(s string) error { _, err := parseTimestamp([]byte(s), true); return err },
		"2024-01-01 00:00:00 UTC":     func(s string) error { _, err := parseTimestamp([]byte(s), true); return err },
		"abc":                         func(s string) error { _, err := parseFloat([]byte(s), false); return err },
		`\xzz`:                        func(s string) error { _, err := appendBytea(nil, []byte(s)); return err },
		`\12`:                         func(s string) error { _, err := appendBytea(nil, []byte(s)); return err },
	}
	for in, parse := range bad {
		err := parse(in)
		if err == nil {
			t.Errorf("%q parsed; want an error", in)
			continue
		}
		if bytes.Contains([]byte(err.Error()), []byte(in)) {
			t.Errorf("error %q quotes the value", err)
		}
	}
}

// FuzzParse: no text makes a parser panic, and what one reads prints back
// (as PostgreSQL would) to text that reads the same.
func FuzzParse(f *testing.F) {
	f.Add("2024-02-29 23:59:59.999999+05:30")
	f.Add("0044-03-15 BC")
	f.Add(`\x00ff`)
	f.Fuzz(func(t *testing.T, s string) {
		in := []byte(s)
		for _, zone := range []bool{false, true} {
			if us, err := parseTimestamp(in, zone); err == nil {
				again, err := parseTimestamp([]byte(printTimestamp(us, zone)), zone)
				if err != nil || again != us {
					t.Fatalf("%q read as %d, printed as %q, read as %d, %v", s, us, printTimestamp(us, zone), again, err)
				}
			}
		}
		if y, m, d, err := parseDate(in); err == nil {
			text := printYMD(y, m, d, "")
			if y2, m2, d2, err := parseDate([]byte(text)); err != nil || y2 != y || m2 != m || d2 != d {
				t.Fatalf("%q read as %d-%d-%d, printed as %q, read as %d-%d-%d, %v", s, y, m, d, text, y2, m2, d2, err)
			}
		}
		if b, err := appendBytea(nil, in); err == nil {
			if again, err := appendBytea(nil, []byte(`\x`+hex.EncodeToString(b))); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("%q read as %x, which does not read back from hex: %x, %v", s, b, again, err)
			}
		}
		for _, float4 := range []bool{false, true} {
			if v, err := parseFloat(in, float4); err == nil && !math.IsNaN(v) {
				bits := 64
				if float4 {
					bits = 32
				}
				if again, err := parseFloat([]byte(strconv.FormatFloat(v, 'g', -1, bits)), float4); err != nil || again != v {
					t.Fatalf("%q read as %v, which does not read back: %v, %v", s, v, again, err)
				}
			}
		}
	})
}

// printYMD prints "YYYY-MM-DD", then clock, then " BC" for years before 1.
func printYMD(y, m, d int, clock string) string {
	bc := ""
	if y <= 0 {
		y, bc = 1-y, " BC"
	}
	return fmt.Sprintf("%04d-%02d-%02d%s%s", y, m, d, clock, bc)
}

func printTimestamp(us int64, withZone bool) string {
	secs, micros := us/1_000_000, us%1_000_000
	if micros < 0 {
		secs, micros = secs-1, micros+1_000_000
	}
	t := time.Unix(secs, 0).UTC()
	clock := fmt.Sprintf(" %02d:%02d:%02d", t.Hour(), t.Minute(), t.Second())
	if micros != 0 {
		clock += fmt.Sprintf(".%06d", micros)
	}
	if withZone {
		clock += "+00"
	}
	return printYMD(t.Year(), int(t.Month()), t.Day(), clock)
}
