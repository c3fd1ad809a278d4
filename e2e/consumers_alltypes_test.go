package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// textCases are columns of the all-types table that Flink has no type for,
// or whose edge values (infinities, NaN, BC dates, 24:00) no Flink type
// holds: Flink reads them as STRING and must hand over PostgreSQL's own
// text, unchanged. a is row 1's value (a snapshot row), b row 2's (a
// streamed INSERT). The literals follow services/delivery's all-types
// table; "S." is the test's type prefix.
var textCases = []struct{ col, typ, a, b string }{
	{"c_numeric", "numeric", "'12345678901234567890.123456789012345'", "'NaN'"},
	{"c_numeric_inf", "numeric", "'Infinity'", "'-0.000000000000000000001'"},
	{"c_float4", "float4", "'3.4028235e+38'", "'NaN'"},
	{"c_float8", "float8", "'1.7976931348623157e+308'", "'-Infinity'"},
	{"c_money", "money", "'12345678.91'", "'-92233720368547758.08'"},
	{"c_char", "char(5)", "'ab'", "'ü€𝄞x'"},
	{"c_text", "text", `E'line1\nline2 \u2028 ☃ \u0001 \r'`, "''"},
	{"c_name", "name", "'pg_catalog'", "'ñame'"},
	{"c_qchar", `"char"`, "'a'", "'Z'"},
	{"c_bytea", "bytea", `'\x00ff0001'`, `'\x'`},
	{"c_date", "date", "'5874897-12-31'", "'-infinity'"},
	{"c_date_bc", "date", "'0044-03-15 BC'", "'infinity'"},
	{"c_time", "time", "'24:00:00'", "'23:59:59.999999'"},
	{"c_timetz", "timetz", "'12:34:56.789012-05:30'", "'00:00:00+15:59'"},
	{"c_timestamp", "timestamp", "'294276-12-31 23:59:59.999999'", "'4713-01-01 00:00:00 BC'"},
	{"c_timestamptz", "timestamptz", "'2024-02-29 23:59:59.999999+05:45'", "'infinity'"},
	{"c_timestamptz_c", "timestamp(0) with time zone", "'2024-01-01 12:00:00.7 Asia/Kathmandu'", "'0001-01-01 00:00:00+00 BC'"},
	{"c_interval", "interval", "'1 year 2 mons 3 days 04:05:06.789012'", "'-178000000 years'"},
	{"c_json", "json", `'{"b": 1,  "a" : [1, 2.50, "\u00fc"]}'`, "'null'"},
	{"c_jsonb", "jsonb", `'{"b": 1, "a": [1, 2.50, "ü", 1e400]}'`, "'[]'"},
	{"c_xml", "xml", `'<a x="1">ü &amp; <b/></a>'`, "'plain text'"},
	{"c_inet", "inet", "'192.168.0.1/24'", "'::ffff:1.2.3.4'"},
	{"c_cidr", "cidr", "'10.0.0.0/8'", "'2001:db8::/32'"},
	{"c_macaddr", "macaddr", "'08:00:2b:01:02:03'", "'08-00-2B-FF-FF-FF'"},
	{"c_bit", "bit(4)", "B'1010'", "B'0000'"},
	{"c_varbit", "varbit(16)", "B'1'", "B''"},
	{"c_tsvector", "tsvector", "'a fat cat:1A sat:2,3 ü'", `$$'it''s' 'x\y'$$`},
	{"c_tsquery", "tsquery", "'fat & (rat | cat) & !dog'", "'ü:* <-> x'"},
	{"c_point", "point", "'(1.5,-2)'", "'(NaN,-0)'"},
	{"c_box", "box", "'(1,1),(0,0)'", "'(0.1,0.2),(0.3,0.4)'"},
	{"c_circle", "circle", "'<(0,0),1.5>'", "'<(0.1,0.2),0>'"},
	{"r_num", "numrange", "'(-1.5,12345678901234567890.5]'", "'(,0)'"},
	{"r_tstz", "tstzrange", "'[2024-01-01 05:30:00+05:30,)'", "'empty'"},
	{"m_int4", "int4multirange", "'{[1,3),[5,7)}'", "'{}'"},
	{"c_composite", "S.pair", `'(1,"a ""b"" ,c")'`, "'(,)'"},
	{"c_domain", "S.posint", "42", "2147483647"},
	{"a2_text", "text[]", `'{{"a,b",NULL},{"NULL","q\"\\"}}'`, `'{{"ü"}}'`},
	{"a_float8", "float8[]", "'{{NaN,-Infinity},{0.1,NULL}}'", "'{}'"},
	{"a_timestamptz", "timestamptz[]", "ARRAY['2024-02-29 23:59:59.999999+05:45'::timestamptz, NULL]", "ARRAY['-infinity'::timestamptz]"},
}

// allTextColumns are the table's columns as Flink reads them.
func allTextColumns() []flinkColumn {
	cols := []flinkColumn{{"id", "BIGINT"}}
	for _, c := range textCases {
		cols = append(cols, flinkColumn{c.col, "STRING"})
	}
	return cols
}

// createAllTextTable creates the table, its composite and domain types
// (named after it) and row 1, which the task's full sync reads.
func createAllTextTable(t *testing.T, conn *pgx.Conn, table string) {
	t.Helper()
	exec1(t, conn, fmt.Sprintf(`CREATE TYPE public.%s_pair AS (n int, s text)`, table))
	exec1(t, conn, fmt.Sprintf(`CREATE DOMAIN public.%s_posint AS int CHECK (VALUE > 0)`, table))
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), fmt.Sprintf(`DROP TABLE IF EXISTS public.%[1]s;
			DROP TYPE IF EXISTS public.%[1]s_pair; DROP DOMAIN IF EXISTS public.%[1]s_posint`, table))
	})
	defs := []string{"id bigint PRIMARY KEY"}
	for _, c := range textCases {
		defs = append(defs, c.col+" "+strings.ReplaceAll(c.typ, "S.", "public."+table+"_"))
	}
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (%s)`, table, strings.Join(defs, ", ")))
	insertAllText(t, conn, table, 1)
}

// insertAllText writes row id with the a (1) or b (2) literals.
func insertAllText(t *testing.T, conn *pgx.Conn, table string, id int) {
	t.Helper()
	vals := []string{fmt.Sprint(id)}
	for _, c := range textCases {
		v := c.a
		if id != 1 {
			v = c.b
		}
		vals = append(vals, v)
	}
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (%s)`, table, strings.Join(vals, ", ")))
}

// pgTexts reads each row's values as PostgreSQL prints them under the
// session settings Ferry fixes on its own sessions (README, "Canal JSON as
// Ferry writes it"), keyed by id.
func pgTexts(t *testing.T, table string) map[string][]*string {
	t.Helper()
	conn := pgConnect(t)
	exec1(t, conn, `SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET extra_float_digits = 3; SET IntervalStyle = 'postgres'`)
	// concat prints through the type's output function, as Ferry's text is;
	// a ::text cast may differ (it trims char(n), and adds inet's /128).
	// num_nulls tells SQL NULL from a composite of NULLs, which IS NULL
	// does not.
	sel := []string{"id::text"}
	for _, c := range textCases {
		sel = append(sel, fmt.Sprintf("CASE WHEN num_nulls(%[1]s) = 1 THEN NULL ELSE concat(%[1]s) END", c.col))
	}
	rows, err := conn.Query(context.Background(), fmt.Sprintf(`SELECT %s FROM public.%s ORDER BY id`, strings.Join(sel, ", "), table))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]*string{}
	for rows.Next() {
		vals := make([]*string, len(sel))
		dest := make([]any, len(sel))
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		out[*vals[0]] = vals
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
