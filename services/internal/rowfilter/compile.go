package rowfilter

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// compiler types a parsed filter against the table's columns.
type compiler struct {
	ctx    context.Context
	cols   []Column
	consts Constants
	used   map[int]bool
}

// pred compiles a node that must be a condition.
func (c *compiler) pred(n *pg.Node) (pred, error) {
	switch {
	case n.GetBoolExpr() != nil:
		return c.boolExpr(n.GetBoolExpr())
	case n.GetAExpr() != nil:
		return c.aExpr(n.GetAExpr())
	case n.GetNullTest() != nil:
		t := n.GetNullTest()
		x, err := c.operand(t.GetArg())
		if err != nil {
			return nil, err
		}
		return &nullTest{not: t.GetNulltesttype() == pg.NullTestType_IS_NOT_NULL, x: x}, nil
	case n.GetBooleanTest() != nil:
		t := n.GetBooleanTest()
		p, err := c.pred(t.GetArg())
		if err != nil {
			return nil, err
		}
		return &boolTest{which: t.GetBooltesttype(), p: p}, nil
	}
	// A boolean column or constant standing alone.
	x, err := c.operand(n)
	if err != nil {
		return nil, err
	}
	if x.unknown {
		if x, err = c.resolve(x, 16); err != nil {
			return nil, err
		}
	}
	if types[x.typ].kind != kindBool {
		return nil, unsupported(fmt.Sprintf("%s, which is not a condition", describeOperand(x, c.cols)))
	}
	return &boolOperand{x: x}, nil
}

func (c *compiler) boolExpr(e *pg.BoolExpr) (pred, error) {
	var args []pred
	for _, a := range e.GetArgs() {
		p, err := c.pred(a)
		if err != nil {
			return nil, err
		}
		args = append(args, p)
	}
	switch e.GetBoolop() {
	case pg.BoolExprType_AND_EXPR:
		return join(true, args...), nil
	case pg.BoolExprType_OR_EXPR:
		return join(false, args...), nil
	}
	return &negation{p: args[0]}, nil
}

// join makes an AND or an OR of ps, flattened as PostgreSQL's parser
// flattens a chain, so that a rendering reads back as itself.
func join(and bool, ps ...pred) *junction {
	j := &junction{and: and}
	for _, p := range ps {
		if inner, ok := p.(*junction); ok && inner.and == and {
			j.ps = append(j.ps, inner.ps...)
			continue
		}
		j.ps = append(j.ps, p)
	}
	return j
}

var comparisons = map[string]bool{"=": true, "<>": true, "!=": true, "<": true, "<=": true, ">": true, ">=": true}

func (c *compiler) aExpr(e *pg.A_Expr) (pred, error) {
	op := opName(e)
	switch e.GetKind() {
	case pg.A_Expr_Kind_AEXPR_OP:
		if !comparisons[op] {
			return nil, unsupported("operator " + op)
		}
		if op == "!=" {
			op = "<>"
		}
		return c.comparison(op, e.GetLexpr(), e.GetRexpr())
	case pg.A_Expr_Kind_AEXPR_DISTINCT, pg.A_Expr_Kind_AEXPR_NOT_DISTINCT:
		cp, err := c.comparison("=", e.GetLexpr(), e.GetRexpr())
		if err != nil {
			return nil, err
		}
		return &distinct{not: e.GetKind() == pg.A_Expr_Kind_AEXPR_NOT_DISTINCT, c: cp}, nil
	case pg.A_Expr_Kind_AEXPR_IN:
		return c.in(op == "<>", e.GetLexpr(), e.GetRexpr().GetList().GetItems())
	case pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN:
		return c.between(e)
	case pg.A_Expr_Kind_AEXPR_LIKE:
		return c.like(op == "!~~", e.GetLexpr(), e.GetRexpr())
	}
	return nil, unsupported(aExprName(e))
}

func opName(e *pg.A_Expr) string {
	var parts []string
	for _, n := range e.GetName() {
		parts = append(parts, n.GetString_().GetSval())
	}
	return strings.Join(parts, ".")
}

func aExprName(e *pg.A_Expr) string {
	switch e.GetKind() {
	case pg.A_Expr_Kind_AEXPR_ILIKE:
		return "ILIKE (case folding depends on the locale)"
	case pg.A_Expr_Kind_AEXPR_SIMILAR:
		return "SIMILAR TO"
	case pg.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
		return "BETWEEN SYMMETRIC"
	case pg.A_Expr_Kind_AEXPR_OP_ANY, pg.A_Expr_Kind_AEXPR_OP_ALL:
		return "ANY/ALL"
	case pg.A_Expr_Kind_AEXPR_NULLIF:
		return "NULLIF"
	}
	return "operator " + opName(e)
}

func (c *compiler) between(e *pg.A_Expr) (pred, error) {
	bounds := e.GetRexpr().GetList().GetItems()
	if len(bounds) != 2 {
		return nil, unsupported("BETWEEN without two bounds")
	}
	lo, err := c.comparison(">=", e.GetLexpr(), bounds[0])
	if err != nil {
		return nil, err
	}
	hi, err := c.comparison("<=", e.GetLexpr(), bounds[1])
	if err != nil {
		return nil, err
	}
	// PostgreSQL rewrites x BETWEEN a AND b into exactly this.
	var p pred = join(true, lo, hi)
	if e.GetKind() == pg.A_Expr_Kind_AEXPR_NOT_BETWEEN {
		p = &negation{p: p}
	}
	return p, nil
}

// comparison types l op r as PostgreSQL resolves the operator: an untyped
// literal takes the other side's type; otherwise numbers meet as float8 if
// either is a float, else as numeric; text as text; dates and timestamps
// as the wider of the two.
func (c *compiler) comparison(op string, ln, rn *pg.Node) (*comparison, error) {
	l, err := c.operand(ln)
	if err != nil {
		return nil, err
	}
	r, err := c.operand(rn)
	if err != nil {
		return nil, err
	}
	if l, r, err = c.resolvePair(l, r); err != nil {
		return nil, err
	}
	k, ok := commonKind(types[l.typ].kind, types[r.typ].kind)
	if !ok {
		return nil, unsupported(fmt.Sprintf("comparing %s with %s", describeOperand(l, c.cols), describeOperand(r, c.cols)))
	}
	cp := &comparison{op: op, l: l, r: r, k: k}
	if k.isText() {
		if err := c.checkCollation(cp); err != nil {
			return nil, err
		}
	}
	return cp, nil
}

// resolvePair gives untyped literals their type: the other side's, or
// text when both are untyped.
func (c *compiler) resolvePair(l, r operand) (operand, operand, error) {
	var err error
	switch {
	case l.unknown && r.unknown:
		if l, err = c.resolve(l, 25); err == nil {
			r, err = c.resolve(r, 25)
		}
	case l.unknown:
		l, err = c.resolve(l, r.typ)
	case r.unknown:
		r, err = c.resolve(r, l.typ)
	}
	return l, r, err
}

func commonKind(a, b kind) (kind, bool) {
	switch {
	case a == b:
		return a, true
	case a.isNumber() && b.isNumber():
		if a.isFloat() || b.isFloat() {
			return kindFloat8, true
		}
		return kindNumeric, true
	case a.isText() && b.isText():
		// The operator with an exact match wins, then the preferred type
		// (text): varchar meets char as char (both without trailing
		// spaces), anything else meets as text (char without its own).
		if min(a, b) == kindVarchar && max(a, b) == kindBpchar {
			return kindBpchar, true
		}
		return kindText, true
	case a.isTime() && b.isTime():
		return max(a, b), true // date < timestamp < timestamptz
	}
	return 0, false
}

// checkCollation allows equality of text under any deterministic collation
// (it is byte equality then) and order only under C, which the rendering
// spells out.
func (c *compiler) checkCollation(cp *comparison) error {
	for _, x := range []operand{cp.l, cp.r} {
		if x.col >= 0 && c.cols[x.col].Nondeterministic {
			return unsupported(fmt.Sprintf("column %s, whose collation is nondeterministic", c.cols[x.col].Name))
		}
	}
	if cp.op == "=" || cp.op == "<>" {
		return nil
	}
	cp.collateC = cp.l.collateC || cp.r.collateC ||
		(cp.l.col >= 0 && c.cols[cp.l.col].CollateC && (cp.r.col < 0 || c.cols[cp.r.col].CollateC)) ||
		(cp.r.col >= 0 && c.cols[cp.r.col].CollateC && cp.l.col < 0)
	if !cp.collateC {
		return unsupported(fmt.Sprintf("ordering %s with %s by a collation other than C", describeOperand(cp.l, c.cols), describeOperand(cp.r, c.cols)))
	}
	return nil
}

func (c *compiler) like(not bool, xn, pn *pg.Node) (pred, error) {
	x, err := c.operand(xn)
	if err != nil {
		return nil, err
	}
	p, err := c.operand(pn)
	if err != nil {
		return nil, err
	}
	if x.col < 0 || !types[x.typ].kind.isText() || p.col != constOperand || p.null {
		return nil, unsupported("LIKE other than a text column LIKE a constant pattern")
	}
	if x.col >= 0 && c.cols[x.col].Nondeterministic {
		return nil, unsupported(fmt.Sprintf("LIKE on column %s, whose collation is nondeterministic", c.cols[x.col].Name))
	}
	if p.unknown || p.typ != 25 {
		if p, err = c.resolve(retype(p), 25); err != nil {
			return nil, err
		}
	}
	m, err := compileLike(p.lit)
	if err != nil {
		return nil, err
	}
	return &likeTest{not: not, x: x, pattern: p, m: m}, nil
}

// retype makes a typed string constant untyped again, for a pattern whose
// cast PostgreSQL applies before LIKE's own cast to text.
func retype(p operand) operand {
	p.unknown = true
	return p
}

// in types x IN (list) with the list's common type, chosen as PostgreSQL's
// select_common_type does over x and every element.
func (c *compiler) in(not bool, xn *pg.Node, items []*pg.Node) (pred, error) {
	x, err := c.operand(xn)
	if err != nil {
		return nil, err
	}
	list := make([]operand, len(items))
	for i, it := range items {
		if list[i], err = c.operand(it); err != nil {
			return nil, err
		}
		if list[i].col != constOperand {
			return nil, unsupported("IN with a column or an expression in its list")
		}
	}
	common, err := c.commonType(append([]operand{x}, list...))
	if err != nil {
		return nil, err
	}
	t := &inList{not: not, k: types[common].kind}
	if x.unknown {
		x, err = c.resolve(x, common)
	}
	t.x = x
	for _, e := range list {
		if err != nil {
			return nil, err
		}
		e, err = c.resolve(retypeTo(e, common), common)
		t.list = append(t.list, e)
	}
	if err != nil {
		return nil, err
	}
	cp := &comparison{op: "=", l: t.x, r: operand{col: constOperand, typ: common}, k: t.k}
	if t.k.isText() {
		return t, c.checkCollation(cp)
	}
	return t, nil
}

// retypeTo makes a constant of another type than typ untyped, so that it
// is read again as typ; that is PostgreSQL's cast of the constant to the
// common type, for the types Ferry supports.
func retypeTo(e operand, typ uint32) operand {
	if e.typ == typ || e.null {
		return e
	}
	// char's cast to text drops its padding.
	if types[e.typ].kind == kindBpchar {
		e.lit = strings.TrimRight(e.lit, " ")
	}
	e.unknown = true
	return e
}

// ranks order each category's types by implicit casts (each casts
// implicitly to those after it); the last is the category's preferred.
var ranks = [][]uint32{
	{21, 23, 20, 1700, 700, 701},
	{1042, 1043, 25},
	{1082, 1114, 1184},
	{16},
	{2950},
}

func category(t uint32) (int, int) {
	for c, r := range ranks {
		for i, x := range r {
			if x == t {
				return c, i
			}
		}
	}
	return -1, -1
}

// commonType is select_common_type: the first typed element's type, moved
// to a later element's while the current one is not preferred and casts
// implicitly to it (but not back).
func (c *compiler) commonType(xs []operand) (uint32, error) {
	var p uint32
	for _, x := range xs {
		if x.unknown || x.null {
			continue
		}
		if p == 0 {
			p = x.typ
			continue
		}
		pc, pi := category(p)
		nc, ni := category(x.typ)
		if pc != nc || (p != x.typ && types[p].kind.isText()) {
			return 0, unsupported(fmt.Sprintf("IN mixing types %s and %s", types[p].name, types[x.typ].name))
		}
		if pi != len(ranks[pc])-1 && ni > pi {
			p = x.typ
		}
	}
	if p == 0 {
		return 25, nil
	}
	return p, nil
}

// operand compiles a column, a constant or a constant's cast.
func (c *compiler) operand(n *pg.Node) (operand, error) {
	switch {
	case n.GetColumnRef() != nil:
		return c.column(n.GetColumnRef())
	case n.GetAConst() != nil:
		return c.constant(n.GetAConst())
	case n.GetTypeCast() != nil:
		return c.cast(n.GetTypeCast())
	case n.GetAExpr() != nil && n.GetAExpr().GetKind() == pg.A_Expr_Kind_AEXPR_OP && arithOps[opName(n.GetAExpr())]:
		return c.arithmetic(n.GetAExpr(), opName(n.GetAExpr()))
	case n.GetCollateClause() != nil:
		cc := n.GetCollateClause()
		x, err := c.operand(cc.GetArg())
		if err != nil {
			return x, err
		}
		name := lastName(cc.GetCollname())
		if name != "C" && name != "POSIX" {
			return x, unsupported(fmt.Sprintf("COLLATE %q (only C and POSIX order text by bytes)", name))
		}
		x.collateC = true
		return x, nil
	}
	return operand{}, unsupported(nodeName(n))
}

func (c *compiler) column(ref *pg.ColumnRef) (operand, error) {
	fields := ref.GetFields()
	if len(fields) != 1 || fields[0].GetString_() == nil {
		return operand{}, unsupported("a qualified column reference or *: name the column alone")
	}
	name := fields[0].GetString_().GetSval()
	for i, col := range c.cols {
		if col.Name != name {
			continue
		}
		if _, ok := types[col.Type]; !ok {
			return operand{}, unsupported(fmt.Sprintf("column %s of type oid %d", name, col.Type))
		}
		c.used[i] = true
		return operand{col: i, name: col.Name, typ: col.Type}, nil
	}
	return operand{}, &ConstructError{Construct: "column " + name, Reason: "the table has no such column"}
}

// constant compiles a literal: an integer is int4 or, beyond it, int8 or
// numeric; a decimal numeric; a boolean bool; a string untyped until
// something gives it a type.
func (c *compiler) constant(k *pg.A_Const) (operand, error) {
	o := operand{col: constOperand}
	switch {
	case k.GetIsnull():
		o.null, o.unknown = true, true
		return o, nil
	case k.GetIval() != nil:
		return c.typedConst(strconv.Itoa(int(k.GetIval().GetIval())), 23, "int4")
	case k.GetFval() != nil:
		text := k.GetFval().GetFval()
		if _, err := strconv.ParseInt(text, 10, 64); err == nil {
			return c.typedConst(text, 20, "int8")
		}
		return c.typedConst(text, 1700, "numeric")
	case k.GetBoolval() != nil:
		return c.typedConst(strconv.FormatBool(k.GetBoolval().GetBoolval()), 16, "bool")
	case k.GetSval() != nil:
		o.unknown, o.lit = true, k.GetSval().GetSval()
		return o, nil
	}
	return o, unsupported("a bit-string constant")
}

func (c *compiler) typedConst(text string, typ uint32, typName string) (operand, error) {
	return c.resolve(operand{col: constOperand, unknown: true, lit: text}, typ, typName)
}

// cast compiles a constant cast to a supported type, type modifiers
// included (they are applied when the constant is read).
func (c *compiler) cast(tc *pg.TypeCast) (operand, error) {
	tn := tc.GetTypeName()
	name := lastName(tn.GetNames())
	if len(tn.GetNames()) > 1 && tn.GetNames()[0].GetString_().GetSval() != "pg_catalog" {
		return operand{}, unsupported("a cast to a type outside pg_catalog")
	}
	typ, ok := typeByName[name]
	if !ok || len(tn.GetArrayBounds()) > 0 || tn.GetSetof() || tn.GetPctType() {
		return operand{}, unsupported("a cast to type " + name)
	}
	x, err := c.operand(tc.GetArg())
	if err != nil {
		return x, err
	}
	if x.col != constOperand {
		if x.typ == typ && len(tn.GetTypmods()) == 0 {
			return x, nil
		}
		return operand{}, unsupported("a cast of a column or an expression to another type")
	}
	if x.null {
		x.typ, x.unknown = typ, false
		return x, nil
	}
	mods, err := typmods(tn.GetTypmods())
	if err != nil {
		return x, err
	}
	x.unknown = true
	return c.resolve(x, typ, "pg_catalog."+name+mods)
}

func typmods(ns []*pg.Node) (string, error) {
	if len(ns) == 0 {
		return "", nil
	}
	var parts []string
	for _, n := range ns {
		iv := n.GetAConst().GetIval()
		if iv == nil {
			return "", unsupported("a type modifier other than a number")
		}
		parts = append(parts, strconv.Itoa(int(iv.GetIval())))
	}
	return "(" + strings.Join(parts, ",") + ")", nil
}

// resolve types an untyped constant as typ, reading its text as
// PostgreSQL would (through c.consts) into the canonical text it then
// renders and compares. typName overrides the type's plain name.
func (c *compiler) resolve(x operand, typ uint32, typName ...string) (operand, error) {
	info, ok := types[typ]
	if !ok {
		return x, unsupported(fmt.Sprintf("a constant of type oid %d", typ))
	}
	x.typ, x.unknown = typ, false
	if x.null {
		return x, nil
	}
	name := "pg_catalog." + info.name
	if len(typName) > 0 {
		name = typName[0]
	}
	text, err := c.consts.Canonical(c.ctx, x.lit, name)
	if err != nil {
		return x, err
	}
	v, err := parseValue(info.kind, []byte(text))
	if err != nil {
		return x, &ConstructError{Construct: "a constant of type " + info.name, Reason: "its canonical text does not parse"}
	}
	x.lit, x.val = text, v
	return x, nil
}

func lastName(ns []*pg.Node) string {
	if len(ns) == 0 {
		return ""
	}
	return ns[len(ns)-1].GetString_().GetSval()
}

// nodeName names a parse node for an error: its protobuf field name, such
// as func_call or sub_link.
func nodeName(n *pg.Node) string {
	if n == nil || n.GetNode() == nil {
		return "an empty expression"
	}
	name := fmt.Sprintf("%T", n.GetNode())
	name = strings.TrimPrefix(name, "*pg_query.Node_")
	switch name {
	case "FuncCall":
		return "a function call"
	case "SubLink":
		return "a subquery"
	case "ParamRef":
		return "a parameter"
	}
	return "expression " + name
}

func describeOperand(x operand, cols []Column) string {
	if x.col >= 0 {
		return fmt.Sprintf("column %s (%s)", cols[x.col].Name, types[x.typ].name)
	}
	if x.null {
		return "NULL"
	}
	if x.arith != nil {
		return "an expression of type " + types[x.typ].name
	}
	return "a constant of type " + types[x.typ].name
}
