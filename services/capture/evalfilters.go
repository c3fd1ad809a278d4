package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/ferry-cdc/ferry/services/capture/decode"
	"github.com/ferry-cdc/ferry/services/internal/rowfilter"
)

// Before PostgreSQL 15 there are no publication row filters: Ferry
// evaluates each filter itself (rowfilter.Program), with PostgreSQL's
// semantics, and keeps the filters where the stream and the snapshots both
// read them in WAL order, as they read a publication: in a row of its
// signal table, (publication, filterPrefix), holding a JSON object of
// Ferry's rendering of each filter by quoted table name. Setup writes the
// row when the filters change. A snapshot reads it in its own transaction
// and pushes the rendering into its WHERE clause; the stream takes it from
// the row's change at that change's commit, so the changes after it are
// filtered with it, as PostgreSQL 15 filters the changes after an ALTER
// PUBLICATION. A stream starts with the row as it stands then: when a
// filter changed after the slot's confirmed position, the changes in
// between, replayed, are filtered with the new filter, where PostgreSQL 15
// would use the old one.
const filterPrefix = "ferry.filters"

// evaluatedFilters reports whether a server of this server_version_num
// leaves filters to Ferry.
func evaluatedFilters(version int) bool { return version < rowfilter.MinServerVersion }

// readFilterRow is the publication's filters as its row holds them, or
// none when there is no row (or no signal table).
func readFilterRow(ctx context.Context, q rowFilterQuerier, pub string) (map[string]string, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", signalTableName).Scan(&exists); err != nil || !exists {
		return nil, wrapSignal("looking up", err)
	}
	var content string
	err := q.QueryRow(ctx, "SELECT content FROM "+signalTableName+" WHERE slot_name = $1 AND prefix = $2", pub, filterPrefix).Scan(&content)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the filters of publication %s from %s: %w", pgx.Identifier{pub}.Sanitize(), signalTableName, err)
	}
	return parseFilterRow(pub, []byte(content))
}

func parseFilterRow(pub string, content []byte) (map[string]string, error) {
	var out map[string]string
	if err := json.Unmarshal(content, &out); err != nil {
		return nil, fmt.Errorf("the filters of publication %s in %s are not a JSON object of filters by table: %w", pgx.Identifier{pub}.Sanitize(), signalTableName, err)
	}
	return out, nil
}

// writeFilterRow replaces the publication's filters, or deletes its row
// when there are none.
func writeFilterRow(ctx context.Context, conn *pgx.Conn, pub string, filters map[string]string) error {
	var err error
	if len(filters) == 0 {
		_, err = conn.Exec(ctx, "DELETE FROM "+signalTableName+" WHERE slot_name = $1 AND prefix = $2", pub, filterPrefix)
	} else {
		content, _ := json.Marshal(filters) // a map of strings always marshals
		err = upsertSignal(ctx, conn, pub, filterPrefix, string(content))
	}
	if err != nil {
		return fmt.Errorf("writing the filters of publication %s to %s: %w", pgx.Identifier{pub}.Sanitize(), signalTableName, err)
	}
	return nil
}

// streamFilters are the filters a stream applies itself.
type streamFilters struct {
	pub   string
	exprs map[string]string // by quoted table name
	progs map[uint32]*rowfilter.Program
}

func newStreamFilters(pub string, exprs map[string]string) *streamFilters {
	return &streamFilters{pub: pub, exprs: exprs, progs: map[uint32]*rowfilter.Program{}}
}

// set takes the filters of a committed change of the publication's row
// (nil content: the row was deleted).
func (f *streamFilters) set(content []byte) error {
	exprs := map[string]string{}
	if content != nil {
		var err error
		if exprs, err = parseFilterRow(f.pub, content); err != nil {
			return err
		}
	}
	if !maps.Equal(exprs, f.exprs) {
		f.exprs = exprs
		clear(f.progs)
	}
	return nil
}

// forget drops a relation's compiled filter when pgoutput describes it
// anew: its columns may have moved.
func (f *streamFilters) forget(oid uint32) { delete(f.progs, oid) }

// program is rel's compiled filter, or nil when it has none.
func (f *streamFilters) program(rel *decode.Relation) (*rowfilter.Program, error) {
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
			return nil, failedPrecondition("the filter of table %s no longer fits the table (%v); Ferry evaluates filters itself before PostgreSQL 15 and checked it against the table when it was set: set the filter again with modify-objects, or remove it", name, err)
		}
	}
	f.progs[rel.Msg.RelationID] = p
	return p, nil
}

// filter applies rel's filter to a row change as PostgreSQL 15's pgoutput
// applies a publication row filter: an INSERT or a DELETE passes if its
// row does; an UPDATE without an old row if its new row does; an UPDATE
// with one becomes an INSERT when only the new row passes, a DELETE when
// only the old one does, and is dropped when neither does. It returns nil
// for a dropped change.
func (f *streamFilters) filter(rel *decode.Relation, m pglogrepl.Message) (pglogrepl.Message, error) {
	p, err := f.program(rel)
	if err != nil || p == nil {
		return m, err
	}
	pass := func(t, old *pglogrepl.TupleData) (bool, error) {
		ok, err := p.Pass(tupleRow{t: t, old: old})
		if err != nil {
			return false, failedPrecondition("evaluating the filter of table %s: %v; Ferry evaluates filters itself before PostgreSQL 15, and PostgreSQL 15 would stop decoding here too", pgx.Identifier{rel.Msg.Namespace, rel.Msg.RelationName}.Sanitize(), err)
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

// forgetFilterRow deletes a released publication's filters, if Ferry's
// signal table holds any.
func forgetFilterRow(ctx context.Context, conn *pgx.Conn, pub string) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", signalTableName).Scan(&exists); err != nil || !exists {
		return wrapSignal("looking up", err)
	}
	return writeFilterRow(ctx, conn, pub, nil)
}
