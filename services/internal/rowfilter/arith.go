package rowfilter

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// arith is integer or numeric arithmetic: + - * on both, / and % on
// integers, and unary minus. PostgreSQL fails a row whose arithmetic
// overflows its type or divides by zero, and so does Ferry: the stream
// stops with the error, as a publication row filter stops decoding.
type arith struct {
	op   string
	l, r *operand // l is nil for unary minus
	typ  uint32
}

var arithOps = map[string]bool{"+": true, "-": true, "*": true, "/": true, "%": true}

// ErrArithmetic is arithmetic PostgreSQL refuses on a row: an integer out
// of its type's range, or a division by zero.
var ErrArithmetic = errors.New("arithmetic error")

// arithmetic types l op r: integers meet as the wider of their types (a
// literal is int4), anything with numeric as numeric. Floats, whose
// overflow rules and printing Ferry does not reproduce, and numeric
// division, whose result scale it does not, are refused.
func (c *compiler) arithmetic(e *pg.A_Expr, op string) (operand, error) {
	var l *operand
	if e.GetLexpr() != nil {
		x, err := c.operand(e.GetLexpr())
		if err != nil {
			return x, err
		}
		l = &x
	}
	r, err := c.operand(e.GetRexpr())
	if err != nil {
		return r, err
	}
	if l != nil {
		if *l, r, err = c.resolvePair(*l, r); err != nil {
			return r, err
		}
	} else if r.unknown {
		return r, unsupported("unary minus on an untyped literal")
	}
	typ, err := arithType(op, l, r)
	if err != nil {
		return r, err
	}
	return operand{col: exprOperand, typ: typ, arith: &arith{op: op, l: l, r: &r, typ: typ}}, nil
}

func arithType(op string, l *operand, r operand) (uint32, error) {
	typ := r.typ
	for _, x := range []*operand{l, &r} {
		if x == nil {
			continue
		}
		k := types[x.typ].kind
		if k != kindInt && k != kindNumeric {
			return 0, unsupported(fmt.Sprintf("arithmetic (%s) on type %s", op, types[x.typ].name))
		}
		if k == kindNumeric || intWidth(x.typ) > intWidth(typ) {
			typ = x.typ
		}
	}
	if types[typ].kind == kindNumeric && (op == "/" || op == "%") {
		return 0, unsupported("numeric " + op + " (its result's scale is PostgreSQL's choice)")
	}
	return typ, nil
}

func intWidth(t uint32) int {
	switch t {
	case 21:
		return 2
	case 23:
		return 4
	case 20:
		return 8
	}
	return 16 // numeric, wider than any
}

func (a *arith) eval(r Row) (value, bool, error) {
	var lv value
	if a.l != nil {
		v, ok, err := a.l.eval(r)
		if err != nil || !ok {
			return value{}, false, err
		}
		lv = v
	}
	rv, ok, err := a.r.eval(r)
	if err != nil || !ok {
		return value{}, false, err
	}
	if types[a.typ].kind == kindNumeric {
		if a.l == nil {
			return value{k: kindNumeric, num: negNumeric(convert(rv, kindNumeric).num)}, true, nil
		}
		return value{k: kindNumeric, num: numericArith(a.op, convert(lv, kindNumeric).num, convert(rv, kindNumeric).num)}, true, nil
	}
	if a.l == nil {
		lv = value{k: kindInt}
	}
	n, err := intArith(a.op, lv.i, rv.i, intWidth(a.typ))
	if err != nil {
		return value{}, false, fmt.Errorf("%s %s: %w", types[a.typ].name, a.op, err)
	}
	return value{k: kindInt, i: n}, true, nil
}

// intArith computes x op y in an integer type of width bytes, failing as
// PostgreSQL does when the result leaves the type.
func intArith(op string, x, y int64, width int) (int64, error) {
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if width < 8 {
		hi = int64(1)<<(8*width-1) - 1
		lo = -hi - 1
	}
	var z big.Int
	bx, by := big.NewInt(x), big.NewInt(y)
	switch op {
	case "+":
		z.Add(bx, by)
	case "-":
		z.Sub(bx, by)
	case "*":
		z.Mul(bx, by)
	case "/", "%":
		if y == 0 {
			return 0, fmt.Errorf("%w: division by zero", ErrArithmetic)
		}
		if op == "/" {
			z.Quo(bx, by) // truncates toward zero, as C and PostgreSQL do
		} else {
			z.Rem(bx, by) // the sign of the dividend
		}
	}
	if !z.IsInt64() || z.Int64() < lo || z.Int64() > hi {
		return 0, fmt.Errorf("%w: out of range", ErrArithmetic)
	}
	return z.Int64(), nil
}

func negNumeric(n numeric) numeric {
	switch n.special {
	case 1, -1:
		return numeric{special: -n.special}
	case 2:
		return n
	}
	return numeric{r: new(big.Rat).Neg(n.r)}
}

// numericArith is numeric + - *, which PostgreSQL computes exactly, with
// its rules for NaN and the infinities.
func numericArith(op string, x, y numeric) numeric {
	if x.special == 2 || y.special == 2 {
		return numeric{special: 2}
	}
	if x.special != 0 || y.special != 0 {
		return specialArith(op, x, y)
	}
	z := new(big.Rat)
	switch op {
	case "+":
		z.Add(x.r, y.r)
	case "-":
		z.Sub(x.r, y.r)
	default:
		z.Mul(x.r, y.r)
	}
	return numeric{r: z}
}

// specialArith is + - * with an infinity on one side or both.
func specialArith(op string, x, y numeric) numeric {
	sign := func(n numeric) int {
		if n.special != 0 {
			return int(n.special)
		}
		return n.r.Sign()
	}
	if op == "-" {
		y = negNumeric(y)
		op = "+"
	}
	if op == "+" {
		if x.special != 0 && y.special != 0 && x.special != y.special {
			return numeric{special: 2} // Infinity + -Infinity
		}
		return numeric{special: max(x.special, y.special, 0) + min(x.special, y.special, 0)}
	}
	s := sign(x) * sign(y)
	if s == 0 {
		return numeric{special: 2} // Infinity * 0
	}
	return numeric{special: int8(s)}
}

func (a *arith) render(b *strings.Builder) {
	b.WriteString("(")
	if a.l != nil {
		a.l.render(b)
		b.WriteString(" ")
	}
	b.WriteString(a.op + " ")
	a.r.render(b)
	b.WriteString(")")
}
