package transform

// The CEL environment of one step: row and old are objects of a type whose
// fields are the table's columns at that step, typed as the columns are, so
// that the checker refuses an unknown column or a wrong type before anything
// runs, and a field is read (and parsed) only when an expression reads it.

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
)

// rowTypeName is the CEL type of row and old.
const rowTypeName = "ferry.Row"

// rowProvider declares rowTypeName with one field per column of a layout.
type rowProvider struct {
	types.Provider
	fields map[string]*types.FieldType
	names  []string
}

func newRowProvider(base types.Provider, l *layout) *rowProvider {
	p := &rowProvider{Provider: base, fields: map[string]*types.FieldType{}}
	for _, c := range l.cols {
		slot := c.slot
		p.names = append(p.names, c.name)
		p.fields[c.name] = &types.FieldType{
			// Any column may be NULL: a nullable type lets `row.a > 1`
			// check as int while `row.a == null` stays legal.
			Type:    types.NewNullableType(c.typ),
			IsSet:   func(target any) bool { return target.(*rowView).get(slot) != types.NullValue },
			GetFrom: func(target any) (any, error) { return target.(*rowView).value(slot) },
		}
	}
	return p
}

func (p *rowProvider) FindStructType(name string) (*types.Type, bool) {
	if name == rowTypeName {
		return types.NewTypeTypeWithParam(types.NewObjectType(rowTypeName)), true
	}
	return p.Provider.FindStructType(name)
}

func (p *rowProvider) FindStructFieldNames(name string) ([]string, bool) {
	if name == rowTypeName {
		return p.names, true
	}
	return p.Provider.FindStructFieldNames(name)
}

func (p *rowProvider) FindStructFieldType(name, field string) (*types.FieldType, bool) {
	if name == rowTypeName {
		f, ok := p.fields[field]
		return f, ok
	}
	return p.Provider.FindStructFieldType(name, field)
}

// newEnv is the environment of a step that sees the columns of l.
func newEnv(l *layout) (*cel.Env, error) {
	reg, err := types.NewRegistry()
	if err != nil {
		return nil, err
	}
	rowT := types.NewObjectType(rowTypeName)
	return cel.NewEnv(
		cel.CustomTypeProvider(newRowProvider(reg, l)),
		cel.CustomTypeAdapter(reg),
		cel.Variable("row", rowT),
		cel.Variable("old", rowT),
		cel.Variable("op", types.StringType),
		cel.Variable("schema", types.StringType),
		cel.Variable("table", types.StringType),
		cel.Variable("commit_time", types.TimestampType),
		ext.Strings(),
		ext.Encoders(),
		ext.Math(),
		helpers(),
	)
}

// helpers are the masking functions, usable in any expression.
func helpers() cel.EnvOption {
	return cel.Lib(helperLib{})
}

type helperLib struct{}

func (helperLib) LibraryName() string { return "ferry.transform.helpers" }

func (helperLib) ProgramOptions() []cel.ProgramOption { return nil }

func (helperLib) CompileOptions() []cel.EnvOption {
	return []cel.EnvOption{
		cel.Function("hash",
			cel.Overload("hash_string", []*types.Type{types.StringType}, types.StringType,
				cel.UnaryBinding(func(v ref.Val) ref.Val { return types.String(hashText([]byte(v.(types.String)))) })),
			cel.Overload("hash_bytes", []*types.Type{types.BytesType}, types.StringType,
				cel.UnaryBinding(func(v ref.Val) ref.Val { return types.String(hashText(v.(types.Bytes))) }))),
		cel.Function("truncate",
			cel.Overload("truncate_string_int", []*types.Type{types.StringType, types.IntType}, types.StringType,
				cel.BinaryBinding(func(s, n ref.Val) ref.Val {
					return types.String(truncateText(string(s.(types.String)), int(n.(types.Int))))
				}))),
		cel.Function("redact",
			cel.Overload("redact_string", []*types.Type{types.StringType}, types.StringType,
				cel.UnaryBinding(func(ref.Val) ref.Val { return types.String(redacted) })),
			cel.Overload("redact_string_int", []*types.Type{types.StringType, types.IntType}, types.StringType,
				cel.BinaryBinding(func(s, n ref.Val) ref.Val {
					return types.String(redactText(string(s.(types.String)), int(n.(types.Int))))
				}))),
	}
}

// redacted replaces a redacted value's text.
const redacted = "****"

func hashText(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// truncateText keeps the first n characters of s.
func truncateText(s string, n int) string {
	if n <= 0 {
		return ""
	}
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

// redactText is redacted followed by the last n characters of s.
func redactText(s string, n int) string {
	if n <= 0 {
		return redacted
	}
	c := utf8.RuneCountInString(s)
	if n >= c {
		return redacted + s
	}
	var b strings.Builder
	b.WriteString(redacted)
	b.WriteString(s[len(truncateText(s, c-n)):])
	return b.String()
}

// vars binds the variables of one evaluation without a map.
type vars struct {
	row, old      *rowView
	op            types.String
	schema, table types.String
	commit        types.Timestamp
}

func (v *vars) ResolveName(name string) (any, bool) {
	switch name {
	case "row":
		return v.row, true
	case "old":
		return v.old, true
	case "op":
		return v.op, true
	case "schema":
		return v.schema, true
	case "table":
		return v.table, true
	case "commit_time":
		return v.commit, true
	}
	return nil, false
}

func (v *vars) Parent() interpreter.Activation { return nil }
