package pgtext

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/jackc/pgx/v5"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// session connects to the local PostgreSQL and fixes the settings that
// shape text output.
func session(t *testing.T) *pgx.Conn {
	t.Helper()
	conn := testenv.PG(t)
	testenv.Exec(t, conn, "SET TimeZone = 'UTC'", "SET DateStyle = 'ISO'", "SET extra_float_digits = 1")
	return conn
}

// texts runs query with one array parameter and returns the text column in
// order.
func texts(t *testing.T, conn *pgx.Conn, query string, arg any) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), query, arg)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func floats8() []float64 {
	fs := []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1.5e-05, 1e-4, 1.2345e-4, 1e-5, 1e15, 1e14, 999999999999999, 1e16,
		123456789012345678, 1.7976931348623157e308, 5e-324, 2.2250738585072014e-308, math.Pi, -math.E, 100, 1e21, 1e22,
		math.NaN(), math.Inf(1), math.Inf(-1), 0.30000000000000004, 33.3, 1.0e-300}
	rng := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < 3000; i++ {
		f := math.Float64frombits(rng.Uint64())
		fs = append(fs, f)
		// Values near the notation thresholds.
		fs = append(fs, math.Pow(10, float64(rng.IntN(40)-20))*(1+rng.Float64()))
		// Large integers, where halfway decimals are short (Ryu in
		// PostgreSQL never accepts them).
		fs = append(fs, float64(rng.Int64N(1<<62)))
	}
	fs = append(fs, 1.959607991805324e+17, 1.8046771722519432e+16, 1.542460250253276e+17)
	return fs
}

func TestFloat8MatchesPostgres(t *testing.T) {
	conn := session(t)
	fs := floats8()
	want := texts(t, conn, "SELECT x::text FROM unnest($1::float8[]) WITH ORDINALITY AS u(x, n) ORDER BY n", fs)
	for i, f := range fs {
		if got := string(AppendFloat8(nil, f)); got != want[i] {
			t.Errorf("float8 %v (bits %x): got %q, PostgreSQL %q", f, math.Float64bits(f), got, want[i])
		}
	}
}

func TestFloat4MatchesPostgres(t *testing.T) {
	conn := session(t)
	var fs []float32
	for _, f := range floats8() {
		fs = append(fs, float32(f))
	}
	fs = append(fs, 123456, 1234567, 0.1, 1e-4, 9.999999e-5, 999999, 1e6, 3.4028235e38, 1e-45)
	rng := rand.New(rand.NewPCG(9, 10))
	for i := 0; i < 3000; i++ {
		fs = append(fs, math.Float32frombits(rng.Uint32()), float32(rng.Int64N(1<<40)))
	}
	want := texts(t, conn, "SELECT x::text FROM unnest($1::float4[]) WITH ORDINALITY AS u(x, n) ORDER BY n", fs)
	for i, f := range fs {
		if got := string(AppendFloat4(nil, f)); got != want[i] {
			t.Errorf("float4 %v (bits %x): got %q, PostgreSQL %q", f, math.Float32bits(f), got, want[i])
		}
	}
}

func TestDatesMatchPostgres(t *testing.T) {
	conn := session(t)
	// From 4713 BC (PostgreSQL's lower bound) to far beyond 9999.
	days := []int32{0, -1, 1, -719528, -719162, -719893, 10957, 2932896, 2932897, -2440588, 11016, -678576 - 364}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 3000; i++ {
		days = append(days, int32(rng.IntN(2440588+5000000))-2440588)
	}
	want := texts(t, conn, "SELECT ('1970-01-01'::date + d)::text FROM unnest($1::int4[]) WITH ORDINALITY AS u(d, n) ORDER BY n", days)
	for i, d := range days {
		if got := string(AppendDate(nil, &cdcv1.Date{Days: d})); got != want[i] {
			t.Errorf("date %d days: got %q, PostgreSQL %q", d, got, want[i])
		}
	}
	for inf, w := range map[cdcv1.Infinity]string{cdcv1.Infinity_INFINITY_POSITIVE: "infinity", cdcv1.Infinity_INFINITY_NEGATIVE: "-infinity"} {
		if got := string(AppendDate(nil, &cdcv1.Date{Infinity: inf})); got != w {
			t.Errorf("got %q, want %q", got, w)
		}
	}
}

func TestTimestampsMatchPostgres(t *testing.T) {
	conn := session(t)
	micros := []int64{0, -1, 1, 500000, 120000, 1_700_000_000_123_456, -62135596800000000, -62135596800000001,
		-62167219200000000, 253402300799999999, 253402300800000000, -210866803200000000, 9224318015999999999 / 1000}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 3000; i++ {
		m := rng.Int64N(210866803200000000+9224318015999999999/1000) - 210866803200000000
		if i%3 == 0 {
			m -= m % 1000 // trailing zeros in the fraction
		}
		if i%5 == 0 {
			m -= m % 1_000_000
		}
		micros = append(micros, m)
	}
	for _, tz := range []bool{false, true} {
		q := "SELECT ('epoch'::timestamp + (m || ' microseconds')::interval)::text FROM unnest($1::int8[]) WITH ORDINALITY AS u(m, n) ORDER BY n"
		if tz {
			q = "SELECT ('epoch'::timestamptz + (m || ' microseconds')::interval)::text FROM unnest($1::int8[]) WITH ORDINALITY AS u(m, n) ORDER BY n"
		}
		want := texts(t, conn, q, micros)
		for i, m := range micros {
			if got := string(AppendTimestamp(nil, &cdcv1.Timestamp{Micros: m}, tz)); got != want[i] {
				t.Errorf("timestamp(tz=%v) %d µs: got %q, PostgreSQL %q", tz, m, got, want[i])
			}
		}
	}
}

func TestOtherKinds(t *testing.T) {
	conn := session(t)
	var wantBytea, wantBool string
	if err := conn.QueryRow(context.Background(), `SELECT '\x00ff10ab'::bytea::text, textin(boolout(true)) || textin(boolout(false))`).Scan(&wantBytea, &wantBool); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		v    *cdcv1.Value
		want string
		kind Kind
	}{
		{&cdcv1.Value{Kind: &cdcv1.Value_Bytes{Bytes: []byte{0, 0xff, 0x10, 0xab}}}, wantBytea, KindValue},
		{&cdcv1.Value{Kind: &cdcv1.Value_Bytes{Bytes: nil}}, `\x`, KindValue},
		{&cdcv1.Value{Kind: &cdcv1.Value_Bool{Bool: true}}, wantBool[:1], KindValue},
		{&cdcv1.Value{Kind: &cdcv1.Value_Bool{Bool: false}}, wantBool[1:], KindValue},
		{&cdcv1.Value{Kind: &cdcv1.Value_Int{Int: math.MinInt64}}, "-9223372036854775808", KindValue},
		{&cdcv1.Value{Kind: &cdcv1.Value_Numeric{Numeric: "-0.000100"}}, "-0.000100", KindValue},
		{&cdcv1.Value{Kind: &cdcv1.Value_Numeric{Numeric: "NaN"}}, "NaN", KindValue},
		{&cdcv1.Value{Kind: &cdcv1.Value_Text{Text: "héllo"}}, "héllo", KindValue},
		{&cdcv1.Value{Kind: &cdcv1.Value_Null{Null: true}}, "", KindNull},
		{nil, "", KindNull},
		{&cdcv1.Value{Kind: &cdcv1.Value_UnchangedToast{UnchangedToast: true}}, "", KindUnchangedToast},
		{&cdcv1.Value{Kind: &cdcv1.Value_Timestamptz{Timestamptz: &cdcv1.Timestamp{Infinity: cdcv1.Infinity_INFINITY_NEGATIVE}}}, "-infinity", KindValue},
	}
	for _, c := range cases {
		got, k := Append(nil, 0, c.v)
		if string(got) != c.want || k != c.kind {
			t.Errorf("%v: got %q kind %d, want %q kind %d", c.v, got, k, c.want, c.kind)
		}
	}
	if got, _ := Append(nil, OIDFloat4, &cdcv1.Value{Kind: &cdcv1.Value_Float{Float: float64(float32(0.1))}}); string(got) != "0.1" {
		t.Errorf("float4 0.1 = %q", got)
	}
	if got, _ := Append(nil, OIDFloat8, &cdcv1.Value{Kind: &cdcv1.Value_Float{Float: float64(float32(0.1))}}); string(got) != "0.10000000149011612" {
		t.Errorf("float8 of float32 0.1 = %q", got)
	}
}
