package rowfilter

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/ferry-cdc/ferry/services/internal/pgsql"
)

// tri is SQL's three-valued logic.
type tri int8

const (
	triNull tri = iota
	triFalse
	triTrue
)

func triOf(b bool) tri {
	if b {
		return triTrue
	}
	return triFalse
}

func (t tri) not() tri {
	switch t {
	case triTrue:
		return triFalse
	case triFalse:
		return triTrue
	}
	return triNull
}

// pred is a compiled condition: it tests a row and renders itself as SQL.
type pred interface {
	test(r Row) (tri, error)
	render(b *strings.Builder)
}

// operand is a column, a constant with its canonical text and value, or
// arithmetic on them.
type operand struct {
	col      int    // the column's position, or constOperand, or exprOperand
	name     string // the column's name
	typ      uint32 // type OID; 0 while an untyped literal
	unknown  bool   // an untyped literal (or NULL) not yet given a type
	null     bool
	lit      string // a constant's text: canonical once typed
	val      value
	collateC bool
	arith    *arith
}

const (
	constOperand = -1
	exprOperand  = -2
)

// eval is the operand's value for r; ok is false for NULL.
func (x operand) eval(r Row) (value, bool, error) {
	switch x.col {
	case exprOperand:
		return x.arith.eval(r)
	case constOperand:
		return x.val, !x.null, nil
	}
	data, st := r.Field(x.col)
	switch st {
	case Null:
		return value{}, false, nil
	case Unchanged:
		return value{}, false, fmt.Errorf("column %s: %w", x.name, ErrUnchanged)
	}
	v, err := parseValue(types[x.typ].kind, data)
	if err != nil {
		return value{}, false, fmt.Errorf("column %s (%s): %w", x.name, types[x.typ].name, err)
	}
	return v, true, nil
}

func (x operand) render(b *strings.Builder) {
	switch {
	case x.col >= 0:
		b.WriteString(pgx.Identifier{x.name}.Sanitize())
	case x.arith != nil:
		x.arith.render(b)
	case x.null && x.typ == 0:
		b.WriteString("NULL")
	case x.null:
		b.WriteString("NULL::pg_catalog." + types[x.typ].name)
	default:
		b.WriteString(pgsql.Literal(x.lit) + "::pg_catalog." + types[x.typ].name)
	}
}

// junction is AND or OR: false (AND) or true (OR) decides; otherwise any
// NULL makes the result NULL.
type junction struct {
	and bool
	ps  []pred
}

func (j *junction) test(r Row) (tri, error) {
	decisive := triTrue
	if j.and {
		decisive = triFalse
	}
	out := decisive.not()
	for _, p := range j.ps {
		t, err := p.test(r)
		if err != nil {
			return triNull, err
		}
		if t == decisive {
			return decisive, nil
		}
		if t == triNull {
			out = triNull
		}
	}
	return out, nil
}

func (j *junction) render(b *strings.Builder) {
	sep := " OR "
	if j.and {
		sep = " AND "
	}
	b.WriteString("(")
	for i, p := range j.ps {
		if i > 0 {
			b.WriteString(sep)
		}
		p.render(b)
	}
	b.WriteString(")")
}

type negation struct{ p pred }

func (n *negation) test(r Row) (tri, error) {
	t, err := n.p.test(r)
	return t.not(), err
}

func (n *negation) render(b *strings.Builder) {
	b.WriteString("(NOT ")
	n.p.render(b)
	b.WriteString(")")
}

// comparison is l op r with both sides converted to kind k.
type comparison struct {
	op       string
	l, r     operand
	k        kind
	collateC bool
}

func (c *comparison) values(r Row) (value, value, bool, error) {
	lv, lok, err := c.l.eval(r)
	if err != nil {
		return lv, lv, false, err
	}
	rv, rok, err := c.r.eval(r)
	if err != nil || !lok || !rok {
		return lv, rv, false, err
	}
	return convert(lv, c.k), convert(rv, c.k), true, nil
}

func (c *comparison) test(r Row) (tri, error) {
	lv, rv, ok, err := c.values(r)
	if err != nil || !ok {
		return triNull, err
	}
	n := compare(lv, rv)
	switch c.op {
	case "=":
		return triOf(n == 0), nil
	case "<>":
		return triOf(n != 0), nil
	case "<":
		return triOf(n < 0), nil
	case "<=":
		return triOf(n <= 0), nil
	case ">":
		return triOf(n > 0), nil
	}
	return triOf(n >= 0), nil
}

func (c *comparison) render(b *strings.Builder) {
	b.WriteString("(")
	c.l.render(b)
	if c.collateC {
		b.WriteString(` COLLATE "C"`)
	}
	b.WriteString(" " + c.op + " ")
	c.r.render(b)
	b.WriteString(")")
}

// distinct is IS [NOT] DISTINCT FROM: equality in which NULL equals NULL.
type distinct struct {
	not bool
	c   *comparison
}

func (d *distinct) test(r Row) (tri, error) {
	lv, lok, err := d.c.l.eval(r)
	if err != nil {
		return triNull, err
	}
	rv, rok, err := d.c.r.eval(r)
	if err != nil {
		return triNull, err
	}
	same := lok == rok
	if lok && rok {
		same = compare(convert(lv, d.c.k), convert(rv, d.c.k)) == 0
	}
	return triOf(same == d.not), nil
}

func (d *distinct) render(b *strings.Builder) {
	b.WriteString("(")
	d.c.l.render(b)
	if d.not {
		b.WriteString(" IS NOT DISTINCT FROM ")
	} else {
		b.WriteString(" IS DISTINCT FROM ")
	}
	d.c.r.render(b)
	b.WriteString(")")
}

// inList is x [NOT] IN (constants): true on an equal element, else NULL if
// x or an element is NULL, else false.
type inList struct {
	not  bool
	x    operand
	list []operand
	k    kind
}

func (t *inList) test(r Row) (tri, error) {
	xv, ok, err := t.x.eval(r)
	if err != nil || !ok {
		return triNull, err
	}
	xv = convert(xv, t.k)
	out := triFalse
	for _, e := range t.list {
		if e.null {
			out = triNull
			continue
		}
		if compare(xv, convert(e.val, t.k)) == 0 {
			out = triTrue
			break
		}
	}
	if t.not {
		return out.not(), nil
	}
	return out, nil
}

func (t *inList) render(b *strings.Builder) {
	b.WriteString("(")
	t.x.render(b)
	if t.not {
		b.WriteString(" NOT")
	}
	b.WriteString(" IN (")
	for i, e := range t.list {
		if i > 0 {
			b.WriteString(", ")
		}
		e.render(b)
	}
	b.WriteString("))")
}

type nullTest struct {
	not bool
	x   operand
}

func (n *nullTest) test(r Row) (tri, error) {
	_, ok, err := n.x.eval(r)
	return triOf(ok == n.not), err
}

func (n *nullTest) render(b *strings.Builder) {
	b.WriteString("(")
	n.x.render(b)
	if n.not {
		b.WriteString(" IS NOT NULL)")
	} else {
		b.WriteString(" IS NULL)")
	}
}

type boolTest struct {
	which pg.BoolTestType
	p     pred
}

func (t *boolTest) test(r Row) (tri, error) {
	v, err := t.p.test(r)
	if err != nil {
		return triNull, err
	}
	switch t.which {
	case pg.BoolTestType_IS_TRUE:
		return triOf(v == triTrue), nil
	case pg.BoolTestType_IS_NOT_TRUE:
		return triOf(v != triTrue), nil
	case pg.BoolTestType_IS_FALSE:
		return triOf(v == triFalse), nil
	case pg.BoolTestType_IS_NOT_FALSE:
		return triOf(v != triFalse), nil
	case pg.BoolTestType_IS_UNKNOWN:
		return triOf(v == triNull), nil
	}
	return triOf(v != triNull), nil
}

var boolTestSQL = map[pg.BoolTestType]string{
	pg.BoolTestType_IS_TRUE: "IS TRUE", pg.BoolTestType_IS_NOT_TRUE: "IS NOT TRUE",
	pg.BoolTestType_IS_FALSE: "IS FALSE", pg.BoolTestType_IS_NOT_FALSE: "IS NOT FALSE",
	pg.BoolTestType_IS_UNKNOWN: "IS UNKNOWN", pg.BoolTestType_IS_NOT_UNKNOWN: "IS NOT UNKNOWN",
}

func (t *boolTest) render(b *strings.Builder) {
	b.WriteString("(")
	t.p.render(b)
	b.WriteString(" " + boolTestSQL[t.which] + ")")
}

// boolOperand is a boolean column or constant used as a condition.
type boolOperand struct {
	x operand
}

func (o *boolOperand) test(r Row) (tri, error) {
	v, ok, err := o.x.eval(r)
	if err != nil || !ok {
		return triNull, err
	}
	return triOf(v.b), nil
}

func (o *boolOperand) render(b *strings.Builder) { o.x.render(b) }

// likeTest is x [NOT] LIKE pattern, matched by characters with LIKE's
// default escape, backslash; PostgreSQL matches LIKE by characters (bytes
// of UTF-8 characters) under any deterministic collation.
type likeTest struct {
	not     bool
	x       operand
	pattern operand
	m       []likeToken
}

func (l *likeTest) test(r Row) (tri, error) {
	if l.x.col < 0 {
		return triNull, nil
	}
	data, st := r.Field(l.x.col)
	switch st {
	case Null:
		return triNull, nil
	case Unchanged:
		return triNull, fmt.Errorf("column %s: %w", l.x.name, ErrUnchanged)
	}
	return triOf(likeMatch(l.m, string(data)) != l.not), nil
}

func (l *likeTest) render(b *strings.Builder) {
	b.WriteString("(")
	l.x.render(b)
	if l.not {
		b.WriteString(" NOT")
	}
	b.WriteString(" LIKE ")
	l.pattern.render(b)
	b.WriteString(")")
}

// likeToken is one element of a LIKE pattern: a literal character, _ (any
// one character) or % (any run).
type likeToken struct {
	r       rune
	any     bool // _
	anyRun  bool // %
	literal bool
}

func compileLike(p string) ([]likeToken, error) {
	var out []likeToken
	for i := 0; i < len(p); {
		r, n := utf8.DecodeRuneInString(p[i:])
		i += n
		switch r {
		case '%':
			out = append(out, likeToken{anyRun: true})
		case '_':
			out = append(out, likeToken{any: true})
		case '\\':
			if i >= len(p) {
				return nil, &ConstructError{Construct: "a LIKE pattern", Reason: "it ends with the escape character \\ (PostgreSQL refuses it)"}
			}
			r, n = utf8.DecodeRuneInString(p[i:])
			i += n
			out = append(out, likeToken{r: r, literal: true})
		default:
			out = append(out, likeToken{r: r, literal: true})
		}
	}
	return out, nil
}

// likeMatch matches s against the pattern, backtracking only to the last
// %, which is enough for LIKE's two wildcards.
func likeMatch(p []likeToken, s string) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		r, n := utf8.DecodeRuneInString(s[si:])
		switch {
		case pi < len(p) && p[pi].anyRun:
			starP, starS = pi, si
			pi++
			continue
		case pi < len(p) && (p[pi].any || (p[pi].literal && p[pi].r == r)):
			pi++
			si += n
			continue
		case starP >= 0:
			_, sn := utf8.DecodeRuneInString(s[starS:])
			starS += sn
			pi, si = starP+1, starS
			continue
		}
		return false
	}
	for pi < len(p) && p[pi].anyRun {
		pi++
	}
	return pi == len(p)
}
