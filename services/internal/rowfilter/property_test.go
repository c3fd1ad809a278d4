package rowfilter

import (
	"context"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-cdc/ferry/services/testenv"
)

// propColumn is a column of the property test's table with the values its
// rows and constants are drawn from (SQL literals, without quotes).
type propColumn struct {
	name, decl string
	pool       []string
}

var propColumns = []propColumn{
	{"b", "bool", []string{"true", "false"}},
	{"i2", "int2", []string{"-32768", "-2", "0", "1", "2", "7", "100", "32767"}},
	{"i4", "int4", []string{"-2147483648", "-1", "0", "1", "2", "7", "100", "16777217", "2147483647"}},
	{"i8", "int8", []string{"-9223372036854775808", "-1", "0", "2", "7", "100", "9007199254740993", "9223372036854775807"}},
	{"n", "numeric", []string{"0", "1", "1.5", "-1.5", "2.50", "0.1", "7", "0.00000000000000000001", "123456789012345678901234567890.5", "NaN", "Infinity", "-Infinity", "9007199254740993"}},
	{"f4", "float4", []string{"0", "-0", "0.1", "1.5", "7", "16777217", "3.4e38", "NaN", "Infinity", "-Infinity"}},
	{"f8", "float8", []string{"0", "-0", "0.1", "1.5", "7", "1e300", "-1e-300", "9007199254740993", "NaN", "Infinity", "-Infinity"}},
	{"t", "text", []string{"", "a", "A", "ab", "ab ", " a", "b", "a%b", "a_b", "é", "ñandú", "日本", "z"}},
	{"tc", `text COLLATE "C"`, []string{"", "a", "A", "ab", "ab ", "b", "é", "Z", "z"}},
	{"v", "varchar(10)", []string{"", "a", "ab", "ab ", "b", "é"}},
	{"c", "char(4)", []string{"", "a", "ab", "ab  ", " a", "é"}},
	{"d", "date", []string{"2024-01-01", "2024-02-29", "1999-12-31", "0044-03-15 BC", "10000-01-01", "infinity", "-infinity"}},
	{"ts", "timestamp", []string{"2024-01-01 00:00:00", "2024-01-01 12:30:00.5", "2024-01-01 00:00:00.000001", "1999-12-31 23:59:59.999999", "0044-03-15 10:00:00 BC", "infinity", "-infinity"}},
	{"tz", "timestamptz", []string{"2024-01-01 00:00:00+00", "2024-01-01 05:30:00+05:30", "2023-12-31 23:00:00-01", "2024-01-01 12:30:00.5+00", "1999-12-31 23:59:59.999999+00", "infinity", "-infinity"}},
	{"u", "uuid", []string{"00000000-0000-0000-0000-000000000000", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12", "ffffffff-ffff-ffff-ffff-ffffffffffff"}},
}

// TestEvaluatorMatchesPostgres is the property the issue asks for: on
// random rows, for random filters made of every supported construct,
// Ferry's verdict on each row equals PostgreSQL's own SELECT ... WHERE on
// the same rows, for the filter as written and for Ferry's rendering of it.
func TestEvaluatorMatchesPostgres(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FERRY_PROPERTY_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (FERRY_PROPERTY_SEED=%d reproduces it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pg := testenv.StartPostgres(t)
	conn := pg.Conn(t)
	for _, s := range evaluatedSettings {
		testenv.Exec(t, conn, strings.Replace(s, "SET LOCAL", "SET", 1))
	}
	rows := propTable(ctx, t, conn, rng, 300)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	cols, err := readColumns(ctx, tx, propOID(ctx, t, tx))
	if err != nil {
		t.Fatal(err)
	}
	g := &propGen{rng: rng, seen: map[string]int{}}
	const filters = 1500
	for n := range filters {
		filter := g.pred(3)
		want := pgSelect(ctx, t, tx, filter)
		prog, err := Compile(ctx, filter, cols, sourceConstants{tx})
		if err != nil {
			t.Fatalf("filter %d %q: Ferry refused a supported construct: %v", n, filter, err)
		}
		if got := ferrySelect(t, prog, rows); !slices.Equal(got, want) {
			t.Fatalf("filter %d %q (rendered %q): Ferry passes rows %v, PostgreSQL %v", n, filter, prog.SQL(), got, want)
		}
		if rendered := pgSelect(ctx, t, tx, prog.SQL()); !slices.Equal(rendered, want) {
			t.Fatalf("filter %d %q: PostgreSQL passes %v for Ferry's rendering %q, and %v for the filter", n, filter, rendered, prog.SQL(), want)
		}
	}
	for _, c := range constructs {
		if g.seen[c] == 0 {
			t.Errorf("no filter used construct %s", c)
		}
	}
	t.Logf("%d filters over %d rows agree; constructs used: %v", filters, len(rows), g.seen)
}

// propTable creates and fills the table and returns its rows as pgoutput
// would send them: each value's text output, nil for NULL.
func propTable(ctx context.Context, t *testing.T, conn *pgx.Conn, rng *rand.Rand, n int) []textRow {
	var decls []string
	for _, c := range propColumns {
		decls = append(decls, c.name+" "+c.decl)
	}
	testenv.Exec(t, conn, "CREATE TABLE prop (id int PRIMARY KEY, "+strings.Join(decls, ", ")+")")
	for id := range n {
		vals := []string{strconv.Itoa(id)}
		for _, c := range propColumns {
			if rng.IntN(7) == 0 {
				vals = append(vals, "NULL")
				continue
			}
			vals = append(vals, quote(c.pool[rng.IntN(len(c.pool))]))
		}
		testenv.Exec(t, conn, "INSERT INTO prop VALUES ("+strings.Join(vals, ", ")+")")
	}
	res := conn.PgConn().ExecParams(ctx, "SELECT * FROM prop ORDER BY id", nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	out := make([]textRow, len(res.Rows))
	for i, r := range res.Rows {
		out[i] = textRow(r)
	}
	return out
}

// textRow is a row in text format, in the table's column order.
type textRow [][]byte

func (r textRow) Field(i int) ([]byte, State) {
	if r[i] == nil {
		return nil, Null
	}
	return r[i], Present
}

func propOID(ctx context.Context, t *testing.T, tx pgx.Tx) uint32 {
	var oid uint32
	if err := tx.QueryRow(ctx, "SELECT 'prop'::regclass::oid").Scan(&oid); err != nil {
		t.Fatal(err)
	}
	return oid
}

// pgSelect is PostgreSQL's verdict: the ids of the rows the filter passes.
// A savepoint keeps a refused filter from ending the transaction.
func pgSelect(ctx context.Context, t *testing.T, tx pgx.Tx, filter string) []int {
	rows, err := tx.Query(ctx, "SELECT id FROM prop WHERE ("+filter+"\n) ORDER BY id")
	if err != nil {
		t.Fatalf("PostgreSQL refused %q: %v", filter, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatalf("PostgreSQL refused %q: %v", filter, err)
	}
	return ids
}

func ferrySelect(t *testing.T, prog *Program, rows []textRow) []int {
	var ids []int
	for _, r := range rows {
		ok, err := prog.Pass(r)
		if err != nil {
			t.Fatalf("evaluating %q: %v", prog.SQL(), err)
		}
		if ok {
			id, _ := strconv.Atoi(string(r[0]))
			ids = append(ids, id)
		}
	}
	return ids
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// constructs the generator must each use at least once.
var constructs = []string{"and", "or", "not", "=", "<>", "<", "<=", ">", ">=", "distinct", "not distinct",
	"in", "not in", "between", "not between", "like", "not like", "is null", "is not null", "booltest",
	"bool column", "cast", "number literal", "cross-type", "column vs column", "collate", "arithmetic"}

type propGen struct {
	rng  *rand.Rand
	seen map[string]int
}

func (g *propGen) pick(xs ...string) string { return xs[g.rng.IntN(len(xs))] }

func (g *propGen) col() propColumn { return propColumns[g.rng.IntN(len(propColumns))] }

// pred is a random condition at most depth levels deep.
func (g *propGen) pred(depth int) string {
	if depth == 0 || g.rng.IntN(3) == 0 {
		return g.leaf()
	}
	switch g.rng.IntN(4) {
	case 0:
		g.seen["and"]++
		return "(" + g.pred(depth-1) + " AND " + g.pred(depth-1) + ")"
	case 1:
		g.seen["or"]++
		return "(" + g.pred(depth-1) + " OR " + g.pred(depth-1) + ")"
	case 2:
		g.seen["not"]++
		return "NOT (" + g.pred(depth-1) + ")"
	}
	g.seen["booltest"]++
	return "(" + g.pred(depth-1) + ") " + g.pick("IS TRUE", "IS NOT TRUE", "IS FALSE", "IS NOT FALSE", "IS UNKNOWN", "IS NOT UNKNOWN")
}

func (g *propGen) leaf() string {
	c := g.col()
	switch g.rng.IntN(10) {
	case 0:
		op := g.pick("IS NULL", "IS NOT NULL")
		g.seen[strings.ToLower(op)]++
		return c.name + " " + op
	case 1:
		return g.in(c)
	case 2:
		return g.between(c)
	case 3:
		return g.like()
	case 4:
		g.seen["bool column"]++
		return g.pick("b", "NOT b", "b = true", "b <> 'f'")
	case 5:
		return g.crossType()
	case 6:
		return g.columns()
	case 7:
		return g.arithmetic()
	}
	return g.compare(c)
}

// lit is a constant for column c: its own pool as an untyped literal, at
// times with an explicit cast, or a NULL.
func (g *propGen) lit(c propColumn) string {
	if g.rng.IntN(15) == 0 {
		return "NULL"
	}
	v := quote(c.pool[g.rng.IntN(len(c.pool))])
	if g.rng.IntN(4) == 0 {
		g.seen["cast"]++
		return v + "::" + strings.Fields(strings.ReplaceAll(c.decl, `text COLLATE "C"`, "text"))[0]
	}
	return v
}

// ordered is column c for an order comparison: text under C.
func (g *propGen) ordered(c propColumn) string {
	if c.name == "t" || c.name == "v" || c.name == "c" {
		g.seen["collate"]++
		return c.name + ` COLLATE "C"`
	}
	return c.name
}

func (g *propGen) compare(c propColumn) string {
	op := g.pick("=", "<>", "<", "<=", ">", ">=", "IS DISTINCT FROM", "IS NOT DISTINCT FROM", "!=")
	switch op {
	case "IS DISTINCT FROM":
		g.seen["distinct"]++
	case "IS NOT DISTINCT FROM":
		g.seen["not distinct"]++
	case "!=":
		g.seen["<>"]++
	default:
		g.seen[op]++
	}
	x := c.name
	if op != "=" && op != "<>" && op != "!=" && !strings.Contains(op, "DISTINCT") {
		x = g.ordered(c)
	}
	if g.rng.IntN(2) == 0 {
		return g.lit(c) + " " + op + " " + x
	}
	return x + " " + op + " " + g.lit(c)
}

func (g *propGen) in(c propColumn) string {
	not := g.rng.IntN(2) == 0
	var items []string
	for range 1 + g.rng.IntN(4) {
		items = append(items, g.lit(c))
	}
	if not {
		g.seen["not in"]++
		return c.name + " NOT IN (" + strings.Join(items, ", ") + ")"
	}
	g.seen["in"]++
	return c.name + " IN (" + strings.Join(items, ", ") + ")"
}

func (g *propGen) between(c propColumn) string {
	kw := g.pick("BETWEEN", "NOT BETWEEN")
	g.seen[strings.ToLower(kw)]++
	return g.ordered(c) + " " + kw + " " + g.lit(c) + " AND " + g.lit(c)
}

func (g *propGen) like() string {
	kw := g.pick("LIKE", "NOT LIKE")
	g.seen[strings.ToLower(kw)]++
	pat := g.pick("a%", "%b", "_", "%", "a\\_b", "a\\%b", "%é%", "_b%", "", "ab ", "a_", "%_", "日%")
	return g.pick("t", "tc", "v", "c") + " " + kw + " " + quote(pat)
}

// crossType compares columns of one category with constants of another
// type of it, where PostgreSQL's operator resolution decides the
// comparison's type.
func (g *propGen) crossType() string {
	g.seen["cross-type"]++
	g.seen["number literal"]++
	return g.pick(
		"i4 > 1.5", "i2 = 7.0", "i8 = 9007199254740993.0", "f4 = 0.1", "f4 = '0.1'", "f4 < 0.1", "f8 = 0.1",
		"f8 = 9007199254740993", "n < 1.5e0", "n = 2.5", "i4 IN (1, 2.5, 7)", "f4 IN (0.1, 7)", "f8 IN (1, 0.1)",
		"n IN (1, 1.5::float8)", "i2 BETWEEN -2 AND 2.5", "d < '2024-01-01 12:00'::timestamp",
		"d = '2024-01-01 00:00+00'::timestamptz", "ts > '2024-01-01'::date", "tz >= '2024-01-01 05:30'",
		"tz = '2024-01-01'::date", "ts IN ('2024-01-01'::date, '2024-01-01 12:30:00.5')", "u = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'",
		"c = 'ab'::text", "c = 'ab   '", "v = 'ab'::char(4)", "c IN ('ab', 'a ')", "t = 'ab'::char(3)",
		"n = 1.50::numeric(3,1)", "n > '1.45'::numeric(3,1)", "'t' = b", "b IS NOT DISTINCT FROM NULL",
		"i4 = NULL", "NULL::int4 IS NULL", "f8 > n", "i8 <= f4",
	)
}

// columns compares two columns of one category.
func (g *propGen) columns() string {
	g.seen["column vs column"]++
	return g.pick("i2 < i4", "i4 = i8", "i8 >= n", "n = f8", "f4 < f8", "i4 <> f4", `t = tc`, `tc < t COLLATE "C"`,
		"v = t", "c = v", "d < ts", "ts = tz", "d >= tz")
}

// arithmetic is integer and numeric arithmetic that no row of the pools
// takes out of its type's range (TestArithmeticErrorsMatchPostgres covers
// the errors).
func (g *propGen) arithmetic() string {
	g.seen["arithmetic"]++
	return g.pick("i4 % 7 = 1", "i2 % 3 <> 0", "i8 % 2 = 0", "i2 / 2 > 3", "i2 + 1 > 7", "i2 * 2 <= 14", "i2 - i2 = 0",
		"n + 1.5 > 2", "n * 2 = 5", "n - i4 < 0", "-n > 0", "i4 % -3 = -1", "(i2 + 1) * 2 > 10", "(i2 % 100) * (i2 % 100) > 49",
		"n * n >= 2.25", "n + '1' < 3", "-(i2 % 5) < -1", "i8 / 3 = 2", "(i2 - 7) * (n + 1) = 0", "i2 + NULL > 0")
}
