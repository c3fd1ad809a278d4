// Package transform runs a table's row transforms (taskv1.Transform) between
// receiving a change event and encoding it, the same way for snapshot rows
// and streamed changes.
//
// Compile prepares a table's steps once per relation definition: every CEL
// expression is compiled and type-checked against the table's real columns
// and types, and the result is a Pipeline with the relation as the messages
// describe it (columns dropped, renamed, cast, masked and added). Apply runs
// it per event: a column's text is parsed into a CEL value only when an
// expression reads it, columns no step touched are copied as text, and the
// event comes out with tuples in the output relation's column order.
package transform

import (
	"fmt"
	"slices"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// column is a column of a layout: a name over a slot of the row state.
type column struct {
	name   string
	origin string // the source column it stands for, or "" for a new one
	slot   int
	typ    *types.Type
	def    *cdcv1.Column // the column as messages describe it
}

// layout is the table's columns as one step sees them.
type layout struct{ cols []column }

func (l *layout) find(name string) int {
	return slices.IndexFunc(l.cols, func(c column) bool { return c.name == name })
}

type stepKind int

const (
	stepFilter stepKind = iota
	stepCompute
	stepMask
	stepCast
	stepRoute
	stepKey
)

// step is one compiled transform.
type step struct {
	kind stepKind
	pos  int // the transform's position, for errors
	prg  cel.Program
	// from and slot: the slot a compute, mask or cast reads (mask, cast)
	// and the new slot it fills.
	from, slot int
	mask       *taskv1.MaskColumn
	cast       *types.Type
}

// Pipeline is a table's compiled transforms.
type Pipeline struct {
	src      *cdcv1.Relation
	out      *cdcv1.Relation
	steps    []step
	slots    int // source columns first, then one per compute, mask or cast
	srcTypes []*types.Type
	keyIdx   []int // the source's key columns, in key order
	outSlots []int // per output column, its slot
	reveals  []bool
	hasKey   bool
	hasRoute bool
	hasOld   bool // some filter decides whether an UPDATE moves in or out
	readsOld bool // some filter reads old, and so judges changes, not rows
	identity bool // the output tuple is the source's: no column added, dropped or changed

	schema, table types.String
	st            state
}

// Error is a transform that does not compile, naming its table and position.
type Error struct {
	Schema, Table string
	// Position is the transform's index in the table's combined list: the
	// task's transforms first, then the schema's, then the table's.
	Position int
	Msg      string
}

func (e *Error) Error() string {
	return fmt.Sprintf("transform %d of table %s.%s: %s", e.Position, e.Schema, e.Table, e.Msg)
}

// For lists the transforms that apply to a table, in order: the task's,
// the schema's, the table's.
func For(objs *taskv1.ObjectSelection, schema, table string) []*taskv1.Transform {
	out := slices.Clone(objs.GetTransforms())
	for _, s := range objs.GetSchemas() {
		if s.GetSchema() == schema {
			out = append(out, s.GetTransforms()...)
		}
	}
	for _, t := range objs.GetTables() {
		if t.GetSchema() == schema && t.GetTable() == table {
			out = append(out, t.GetTransforms()...)
		}
	}
	return out
}

// Compile prepares ts for relation rel; nil, nil when ts is empty. Errors
// are *Error.
func Compile(rel *cdcv1.Relation, ts []*taskv1.Transform) (*Pipeline, error) {
	if len(ts) == 0 {
		return nil, nil
	}
	p := &Pipeline{src: rel, schema: types.String(rel.GetSchema()), table: types.String(rel.GetTable())}
	l := &layout{}
	for i, c := range rel.GetColumns() {
		t := celType(c)
		l.cols = append(l.cols, column{name: c.GetName(), origin: c.GetName(), slot: i, typ: t, def: c})
		p.srcTypes = append(p.srcTypes, t)
		p.reveals = append(p.reveals, rel.GetReplicaIdentity() == cdcv1.ReplicaIdentity_REPLICA_IDENTITY_FULL || c.GetKey())
	}
	p.slots = len(l.cols)
	for _, k := range rel.GetKeyColumns() {
		if i := l.find(k); i >= 0 {
			p.keyIdx = append(p.keyIdx, i)
		}
	}
	for i, t := range ts {
		if err := p.add(l, t); err != "" {
			return nil, &Error{Schema: rel.GetSchema(), Table: rel.GetTable(), Position: i, Msg: err}
		}
		if n := len(p.steps); n > 0 && p.steps[n-1].pos < 0 {
			p.steps[n-1].pos = i
		}
	}
	p.finish(l)
	return p, nil
}

// finish derives the output relation from the last layout.
func (p *Pipeline) finish(l *layout) {
	out := &cdcv1.Relation{Oid: p.src.GetOid(), Schema: p.src.GetSchema(), Table: p.src.GetTable(), ReplicaIdentity: p.src.GetReplicaIdentity()}
	for _, c := range l.cols {
		out.Columns = append(out.Columns, c.def)
		p.outSlots = append(p.outSlots, c.slot)
	}
	for _, k := range p.src.GetKeyColumns() {
		// A key column keeps its key role under a new name, and leaves the
		// key when it is dropped.
		if i := slices.IndexFunc(l.cols, func(c column) bool { return c.origin == k }); i >= 0 {
			out.KeyColumns = append(out.KeyColumns, l.cols[i].name)
		}
	}
	p.out = out
	p.identity = len(p.outSlots) == len(p.srcTypes)
	for i, s := range p.outSlots {
		p.identity = p.identity && s == i
	}
	p.st.init(p)
}

// SourceKey appends the text of ev's key columns as the source sent them,
// before any transform: what errors and dead letters name the row by.
func (p *Pipeline) SourceKey(dst []byte, ev *cdcv1.ChangeEvent) []byte {
	row := ev.GetNewTuple()
	if tuple.Len(row) == 0 {
		row = ev.GetOldTuple()
	}
	for _, i := range p.keyIdx {
		if i < tuple.Len(row) {
			text, _ := tuple.Field(row, i)
			dst = append(dst, text...)
		}
	}
	return dst
}

// Relation is the relation as messages describe it after the transforms.
func (p *Pipeline) Relation() *cdcv1.Relation { return p.out }

// add compiles one transform into l and p's steps; it returns CEL's or
// Ferry's message when the transform is wrong.
func (p *Pipeline) add(l *layout, t *taskv1.Transform) string {
	switch k := t.GetKind().(type) {
	case *taskv1.Transform_Filter:
		return p.addExpr(l, stepFilter, k.Filter, types.BoolType)
	case *taskv1.Transform_Route:
		p.hasRoute = true
		return p.addExpr(l, stepRoute, k.Route, types.StringType)
	case *taskv1.Transform_Key:
		p.hasKey = true
		return p.addExpr(l, stepKey, k.Key, nil)
	case *taskv1.Transform_Compute:
		return p.addCompute(l, k.Compute)
	case *taskv1.Transform_Drop:
		i := l.find(k.Drop)
		if i < 0 {
			return fmt.Sprintf("drop: no column %q", k.Drop)
		}
		l.cols = slices.Delete(l.cols, i, i+1)
	case *taskv1.Transform_Rename:
		return rename(l, k.Rename)
	case *taskv1.Transform_Cast:
		return p.addCast(l, k.Cast)
	case *taskv1.Transform_Mask:
		return p.addMask(l, k.Mask)
	default:
		return "an empty transform: set one of its kinds"
	}
	return ""
}

func rename(l *layout, r *taskv1.RenameColumn) string {
	i := l.find(r.GetFrom())
	switch {
	case i < 0:
		return fmt.Sprintf("rename: no column %q", r.GetFrom())
	case r.GetTo() == "":
		return fmt.Sprintf("rename of %q: the new name is empty", r.GetFrom())
	case l.find(r.GetTo()) >= 0:
		return fmt.Sprintf("rename of %q: a column %q exists", r.GetFrom(), r.GetTo())
	}
	def := cloneColumn(l.cols[i].def)
	def.Name = r.GetTo()
	l.cols[i].name, l.cols[i].def = r.GetTo(), def
	return ""
}

func cloneColumn(c *cdcv1.Column) *cdcv1.Column {
	return &cdcv1.Column{Name: c.GetName(), TypeOid: c.GetTypeOid(), TypeName: c.GetTypeName(), TypeModifier: c.GetTypeModifier(),
		Key: c.GetKey(), BaseTypeOid: c.GetBaseTypeOid(), BaseTypeKind: c.GetBaseTypeKind()}
}

// program compiles expr in l's environment and checks its type: want, or
// for want nil a string or bytes (keys), or any column type (computed).
func program(l *layout, expr string) (cel.Program, *cel.Ast, string) {
	if expr == "" {
		return nil, nil, "the expression is empty"
	}
	env, err := newEnv(l)
	if err != nil {
		return nil, nil, err.Error()
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, nil, iss.Err().Error()
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, nil, err.Error()
	}
	return prg, ast, ""
}

// readsOld reports whether a checked expression refers to the variable old.
func readsOld(ast *cel.Ast) bool {
	for _, r := range ast.NativeRep().ReferenceMap() {
		if r.Name == "old" {
			return true
		}
	}
	return false
}

// baseOf is t without its nullability.
func baseOf(t *types.Type) *types.Type {
	for _, b := range []*types.Type{types.BoolType, types.IntType, types.UintType, types.DoubleType, types.StringType, types.BytesType, types.TimestampType} {
		if t.IsExactType(b) || t.IsExactType(types.NewNullableType(b)) {
			return b
		}
	}
	return t
}

func (p *Pipeline) addExpr(l *layout, kind stepKind, expr string, want *types.Type) string {
	prg, ast, msg := program(l, expr)
	if msg != "" {
		return msg
	}
	t := ast.OutputType()
	b := baseOf(t)
	switch {
	case want == nil && b != types.StringType && b != types.BytesType:
		return fmt.Sprintf("key: the expression is of type %s, not string or bytes", t)
	case want != nil && b != want:
		return fmt.Sprintf("the expression is of type %s, not %s", t, want)
	}
	if kind == stepFilter {
		p.hasOld = true
		p.readsOld = p.readsOld || readsOld(ast)
	}
	p.steps = append(p.steps, step{kind: kind, pos: -1, prg: prg})
	return ""
}

func (p *Pipeline) addCompute(l *layout, c *taskv1.ComputedColumn) string {
	if c.GetName() == "" {
		return "compute: the column name is empty"
	}
	prg, ast, msg := program(l, c.GetExpression())
	if msg != "" {
		return fmt.Sprintf("compute %q: %s", c.GetName(), msg)
	}
	t := ast.OutputType()
	b := baseOf(t)
	def, ok := outColumn(c.GetName(), b)
	if !ok {
		return fmt.Sprintf("compute %q: the expression is of type %s, which no column type holds (use bool, int, double, string, bytes or timestamp)", c.GetName(), t)
	}
	p.steps = append(p.steps, step{kind: stepCompute, pos: -1, prg: prg, slot: p.slots})
	col := column{name: c.GetName(), slot: p.slots, typ: b, def: def}
	p.slots++
	if i := l.find(c.GetName()); i >= 0 {
		// A key column replaced by a computed value stays the key.
		def.Key, col.origin = l.cols[i].def.GetKey(), l.cols[i].origin
		l.cols[i] = col
	} else {
		l.cols = append(l.cols, col)
	}
	return ""
}

func (p *Pipeline) addMask(l *layout, m *taskv1.MaskColumn) string {
	i := l.find(m.GetColumn())
	if i < 0 {
		return fmt.Sprintf("mask: no column %q", m.GetColumn())
	}
	if m.GetMask() == nil {
		return fmt.Sprintf("mask of %q: choose hash, truncate or redact", m.GetColumn())
	}
	def, _ := outColumn(l.cols[i].name, types.StringType)
	def.Key = l.cols[i].def.GetKey()
	p.steps = append(p.steps, step{kind: stepMask, pos: -1, from: l.cols[i].slot, slot: p.slots, mask: m})
	l.cols[i] = column{name: l.cols[i].name, origin: l.cols[i].origin, slot: p.slots, typ: types.StringType, def: def}
	p.slots++
	return ""
}

func (p *Pipeline) addCast(l *layout, c *taskv1.CastColumn) string {
	i := l.find(c.GetColumn())
	if i < 0 {
		return fmt.Sprintf("cast: no column %q", c.GetColumn())
	}
	var t *types.Type
	switch c.GetType() {
	case taskv1.CastType_CAST_TYPE_TEXT:
		t = types.StringType
	case taskv1.CastType_CAST_TYPE_BIGINT:
		t = types.IntType
	case taskv1.CastType_CAST_TYPE_DOUBLE:
		t = types.DoubleType
	case taskv1.CastType_CAST_TYPE_BOOLEAN:
		t = types.BoolType
	default:
		return fmt.Sprintf("cast of %q: choose a type", c.GetColumn())
	}
	def, _ := outColumn(l.cols[i].name, t)
	def.Key = l.cols[i].def.GetKey()
	p.steps = append(p.steps, step{kind: stepCast, pos: -1, from: l.cols[i].slot, slot: p.slots, cast: t})
	l.cols[i] = column{name: l.cols[i].name, origin: l.cols[i].origin, slot: p.slots, typ: t, def: def}
	p.slots++
	return ""
}
