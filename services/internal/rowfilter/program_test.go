package rowfilter

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// unitColumns: id int8, i2 int2, t text (default collation), tc text
// COLLATE "C", f8 float8, b bool, nd text under a nondeterministic
// collation.
var unitColumns = []Column{
	{Name: "id", Type: 20}, {Name: "i2", Type: 21}, {Name: "t", Type: 25}, {Name: "tc", Type: 25, CollateC: true},
	{Name: "f8", Type: 701}, {Name: "b", Type: 16}, {Name: "nd", Type: 25, Nondeterministic: true},
}

// row is a unitColumns row; "<null>" and "<toast>" stand for NULL and an
// unchanged TOAST value.
type row []string

func (r row) Field(i int) ([]byte, State) {
	switch r[i] {
	case "<null>":
		return nil, Null
	case "<toast>":
		return nil, Unchanged
	}
	return []byte(r[i]), Present
}

func compileUnit(t *testing.T, filter string) *Program {
	t.Helper()
	p, err := Compile(context.Background(), filter, unitColumns, Canonical{})
	if err != nil {
		t.Fatalf("Compile(%q): %v", filter, err)
	}
	return p
}

func TestRenderingCompilesToItself(t *testing.T) {
	for _, f := range []string{
		"id % 2 = 0 AND NOT b",
		`tc < 'm' OR t COLLATE "C" >= 'x' OR t IN ('a', NULL)`,
		"i2 BETWEEN -3 AND 3 AND f8 IS DISTINCT FROM 1.5 AND t NOT LIKE 'a\\_%'",
		"(b IS NOT TRUE) IS UNKNOWN OR -id > 4 OR id * 2 - 1 = i2",
	} {
		p := compileUnit(t, f)
		again := compileUnit(t, p.SQL())
		if again.SQL() != p.SQL() {
			t.Errorf("%q renders %q, which renders %q", f, p.SQL(), again.SQL())
		}
	}
}

func TestPassFollowsThreeValuedLogic(t *testing.T) {
	p := compileUnit(t, "id % 2 = 0 OR b")
	cases := []struct {
		r    row
		want bool
	}{
		{row{"4", "0", "", "", "0", "f", ""}, true},
		{row{"3", "0", "", "", "0", "t", ""}, true},
		{row{"3", "0", "", "", "0", "f", ""}, false},
		{row{"3", "0", "", "", "0", "<null>", ""}, false}, // false OR NULL is NULL: rejected
		{row{"<null>", "0", "", "", "0", "t", ""}, true},  // NULL OR true is true
	}
	for _, c := range cases {
		got, err := p.Pass(c.r)
		if err != nil || got != c.want {
			t.Errorf("%v: Pass = %v, %v; want %v", c.r, got, err, c.want)
		}
	}
	if got, err := compileUnit(t, "NOT (id > 1)").Pass(row{"<null>", "0", "", "", "0", "t", ""}); got || err != nil {
		t.Errorf("NOT NULL passed: %v, %v", got, err)
	}
}

func TestEvaluationErrorsNameTheColumnNotTheValue(t *testing.T) {
	_, err := compileUnit(t, "i2 + 1::int2 > 0").Pass(row{"1", "32767", "", "", "0", "t", ""})
	if !errors.Is(err, ErrArithmetic) {
		t.Errorf("int2 overflow: %v, want ErrArithmetic", err)
	}
	_, err = compileUnit(t, "id / (i2 - i2) > 0").Pass(row{"1", "5", "", "", "0", "t", ""})
	if !errors.Is(err, ErrArithmetic) || !strings.Contains(err.Error(), "division by zero") {
		t.Errorf("division by zero: %v", err)
	}
	_, err = compileUnit(t, "t = 'secret'").Pass(row{"1", "5", "<toast>", "", "0", "t", ""})
	if !errors.Is(err, ErrUnchanged) || !strings.Contains(err.Error(), "column t") {
		t.Errorf("unchanged TOAST: %v", err)
	}
	_, err = compileUnit(t, "f8 > 0").Pass(row{"1", "5", "", "", "private-value", "t", ""})
	if err == nil || strings.Contains(err.Error(), "private-value") || !strings.Contains(err.Error(), "column f8") {
		t.Errorf("unparsable value: %v; want an error naming the column without the value", err)
	}
}

func TestUnsupportedConstructsAreNamed(t *testing.T) {
	for filter, want := range map[string]string{
		"lower(t) = 'a'":                    "a function call",
		"t < 'm'":                           "collation other than C",
		"t ILIKE 'a%'":                      "ILIKE",
		"f8 + 1 > 2":                        "arithmetic (+) on type float8",
		"id IN (SELECT 1)":                  "subquery",
		"true UNION SELECT WHERE true":      "outside its WHERE clause",
		"nd = 'x'":                          "nondeterministic",
		`t COLLATE "de_DE" = 'x'`:           `COLLATE "de_DE"`,
		"id = 1; DELETE FROM x":             "more than one statement",
		"missing = 1":                       "column missing",
		"id::text = '1'":                    "a cast of a column",
		"t LIKE 'abc\\'":                    "escape character",
		"id BETWEEN SYMMETRIC 1 AND 2":      "BETWEEN SYMMETRIC",
		"id IN (1, id)":                     "IN with a column",
		"t IN ('a'::char(2), 'b'::varchar)": "IN mixing types",
	} {
		_, err := Compile(context.Background(), filter, unitColumns, Canonical{})
		var ce *ConstructError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), want) {
			t.Errorf("Compile(%q) = %v; want a ConstructError naming %q", filter, err, want)
		}
	}
}

// Review findings, kept as regressions: numeric arithmetic meets floats,
// typed NULLs keep their type in the rendering, and a backslash in a
// constant reads the same whatever standard_conforming_strings says.
func TestRenderingKeepsTypesAndQuotesSafely(t *testing.T) {
	p := compileUnit(t, "id * 1.5 > f8")
	if ok, err := p.Pass(row{"10", "0", "", "", "1", "t", ""}); !ok || err != nil {
		t.Errorf("10 * 1.5 > 1: Pass = %v, %v; want true", ok, err)
	}
	for filter, want := range map[string]string{
		"-NULL::int8 < id":                "((- NULL::pg_catalog.int8) < \"id\")",
		"NULL::int4 + NULL::int4 = id":    "((NULL::pg_catalog.int4 + NULL::pg_catalog.int4) = \"id\")",
		`t = 'a\' OR t = ') OR true) --'`: `(("t" = E'a\\'::pg_catalog.text) OR ("t" = ') OR true) --'::pg_catalog.text))`,
	} {
		p := compileUnit(t, filter)
		if p.SQL() != want {
			t.Errorf("%q renders as %s, want %s", filter, p.SQL(), want)
		}
		if again := compileUnit(t, p.SQL()); again.SQL() != p.SQL() {
			t.Errorf("%q: the rendering %s renders as %s", filter, p.SQL(), again.SQL())
		}
	}
	if _, err := Compile(context.Background(), "id = '1'::myschema.int8", unitColumns, Canonical{}); err == nil || !strings.Contains(err.Error(), "outside pg_catalog") {
		t.Errorf("a cast to another schema's type: %v", err)
	}
}
