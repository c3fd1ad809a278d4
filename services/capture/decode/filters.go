package decode

import (
	"context"
	"maps"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferry-cdc/ferry/services/capture/signal"
	"github.com/ferry-cdc/ferry/services/internal/rowfilter"
)

// Before PostgreSQL 15 the stream evaluates row filters itself, as
// PostgreSQL 15's pgoutput would, from the row of the signal table that
// holds them (signal.FilterPrefix says how they get there).

// Filters are the filters a stream applies itself.
type Filters struct {
	pub   string
	exprs map[string]string // by quoted table name
	progs map[uint32]*rowfilter.Program
}

func NewFilters(pub string, exprs map[string]string) *Filters {
	return &Filters{pub: pub, exprs: exprs, progs: map[uint32]*rowfilter.Program{}}
}

// Set takes the filters of a committed change of the publication's row
// (nil content: the row was deleted).
func (f *Filters) Set(content []byte) error {
	exprs := map[string]string{}
	if content != nil {
		var err error
		if exprs, err = signal.ParseFilters(f.pub, content); err != nil {
			return err
		}
	}
	if !maps.Equal(exprs, f.exprs) {
		f.exprs = exprs
		clear(f.progs)
	}
	return nil
}

// Publication is the publication whose filters these are.
func (f *Filters) Publication() string { return f.pub }

// Forget drops a relation's compiled filter when pgoutput describes it
// anew: its columns may have moved.
func (f *Filters) Forget(oid uint32) { delete(f.progs, oid) }

// program is rel's compiled filter, or nil when it has none.
func (f *Filters) program(rel *Relation) (*rowfilter.Program, error) {
	if p, ok := f.progs[rel.Msg.RelationID]; ok {
		return p, nil
	}
	name := pgx.Identifier{rel.Msg.Namespace, rel.Msg.RelationName}.Sanitize()
	expr := f.exprs[name]
	var p *rowfilter.Program
	if expr != "" {
		cols := make([]rowfilter.Column, len(rel.Msg.Columns))
		for i, c := range rel.Msg.Columns {
			cols[i] = rowfilter.Column{Name: c.Name, Type: rel.DecodeOID(i)}
		}
		var err error
		if p, err = rowfilter.Compile(context.Background(), expr, cols, rowfilter.Canonical{}); err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "the filter of table %s no longer fits the table (%v); Ferry evaluates filters itself before PostgreSQL 15 and checked it against the table when it was set: set the filter again with modify-objects, or remove it", name, err)
		}
	}
	f.progs[rel.Msg.RelationID] = p
	return p, nil
}

// Filter applies rel's filter to a row change as PostgreSQL 15's pgoutput
// applies a publication row filter: an INSERT or a DELETE passes if its
// row does; an UPDATE without an old row if its new row does; an UPDATE
// with one becomes an INSERT when only the new row passes, a DELETE when
// only the old one does, and is dropped when neither does. It returns nil
// for a dropped change.
func (f *Filters) Filter(rel *Relation, m pglogrepl.Message) (pglogrepl.Message, error) {
	p, err := f.program(rel)
	if err != nil || p == nil {
		return m, err
	}
	pass := func(t, old *pglogrepl.TupleData) (bool, error) {
		ok, err := p.Pass(tupleRow{t: t, old: old})
		if err != nil {
			return false, status.Errorf(codes.FailedPrecondition, "evaluating the filter of table %s: %v; Ferry evaluates filters itself before PostgreSQL 15, and PostgreSQL 15 would stop decoding here too", pgx.Identifier{rel.Msg.Namespace, rel.Msg.RelationName}.Sanitize(), err)
		}
		return ok, nil
	}
	switch m := m.(type) {
	case *pglogrepl.InsertMessage:
		return keepIf(pass(m.Tuple, nil))(m)
	case *pglogrepl.DeleteMessage:
		if m.OldTuple == nil {
			return m, nil
		}
		return keepIf(pass(m.OldTuple, nil))(m)
	case *pglogrepl.UpdateMessage:
		return filterUpdate(m, pass)
	}
	return m, nil
}

func keepIf(ok bool, err error) func(pglogrepl.Message) (pglogrepl.Message, error) {
	return func(m pglogrepl.Message) (pglogrepl.Message, error) {
		if err != nil || !ok {
			return nil, err
		}
		return m, nil
	}
}

func filterUpdate(m *pglogrepl.UpdateMessage, pass func(t, old *pglogrepl.TupleData) (bool, error)) (pglogrepl.Message, error) {
	newPass, err := pass(m.NewTuple, m.OldTuple)
	if err != nil {
		return nil, err
	}
	if m.OldTuple == nil {
		return keepIf(newPass, nil)(m)
	}
	oldPass, err := pass(m.OldTuple, nil)
	switch {
	case err != nil:
		return nil, err
	case oldPass && newPass:
		return m, nil
	case oldPass:
		return &pglogrepl.DeleteMessage{RelationID: m.RelationID, OldTupleType: m.OldTupleType, OldTuple: m.OldTuple}, nil
	case newPass:
		return &pglogrepl.InsertMessage{RelationID: m.RelationID, Tuple: filledTuple(m.NewTuple, m.OldTuple)}, nil
	}
	return nil, nil
}

// filledTuple is the new row with each unchanged TOAST value the old row
// carries filled in, as pgoutput sends an UPDATE turned INSERT.
func filledTuple(t, old *pglogrepl.TupleData) *pglogrepl.TupleData {
	out := &pglogrepl.TupleData{ColumnNum: t.ColumnNum, Columns: make([]*pglogrepl.TupleDataColumn, len(t.Columns))}
	for i, c := range t.Columns {
		out.Columns[i] = c
		if c.DataType == pglogrepl.TupleDataTypeToast && i < len(old.Columns) && old.Columns[i].DataType == pglogrepl.TupleDataTypeText {
			out.Columns[i] = old.Columns[i]
		}
	}
	return out
}

// tupleRow reads a pgoutput tuple for a filter: an unchanged TOAST value
// is taken from the old row when that carries it, as pgoutput does.
type tupleRow struct{ t, old *pglogrepl.TupleData }

func (r tupleRow) Field(i int) ([]byte, rowfilter.State) {
	c := r.t.Columns[i]
	switch c.DataType {
	case pglogrepl.TupleDataTypeNull:
		return nil, rowfilter.Null
	case pglogrepl.TupleDataTypeToast:
		if r.old != nil && i < len(r.old.Columns) && r.old.Columns[i].DataType == pglogrepl.TupleDataTypeText {
			return r.old.Columns[i].Data, rowfilter.Present
		}
		return nil, rowfilter.Unchanged
	}
	return c.Data, rowfilter.Present
}
