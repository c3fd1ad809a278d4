package rowfilter

import (
	"context"
	"errors"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Before PostgreSQL 15 there are no publication row filters, so Ferry
// evaluates a table's filter itself: on each decoded change, with
// PostgreSQL's semantics, and in its snapshots as the same SQL in a WHERE
// clause. The filter is parsed by PostgreSQL's own parser (libpg_query),
// typed against the table's columns the way PostgreSQL resolves operators,
// and compiled into a Program. Only constructs whose result Ferry computes
// exactly are accepted; any other is refused by name before the task runs.
//
// A Program renders itself as SQL (Program.SQL) in which every constant is
// its type's canonical output with an explicit cast, and every order
// comparison of text carries COLLATE "C". That rendering is what Ferry
// stores, pushes into snapshots and compiles again in the stream, where the
// only catalog at hand is the relation pgoutput describes: it needs no
// session settings, search path or collation to mean the same thing.

// Column is one column of the filtered table.
type Column struct {
	Name string
	// Type is the column's type OID, a domain's base type.
	Type uint32
	// CollateC: the column's collation orders text by bytes ("C", "POSIX").
	CollateC bool
	// Nondeterministic: the column's collation may call different bytes
	// equal, which Ferry cannot reproduce.
	Nondeterministic bool
}

// Constants turns a constant's text into its type's canonical text output,
// the way PostgreSQL reads a literal of that type (CAST(text AS typ)). typ
// is a pg_catalog type name, with a type modifier when the filter gave one.
type Constants interface {
	Canonical(ctx context.Context, text, typ string) (string, error)
}

// Canonical is the Constants of Ferry's own rendering, whose constants are
// canonical already.
type Canonical struct{}

// Canonical returns text unchanged.
func (Canonical) Canonical(_ context.Context, text, _ string) (string, error) { return text, nil }

// State is what a change carries for one column.
type State uint8

const (
	// Present: the column's text output.
	Present State = iota
	// Null: SQL NULL.
	Null
	// Unchanged: an unchanged TOAST value pgoutput did not send.
	Unchanged
)

// Row is one row as pgoutput or COPY delivers it: per column, in the
// table's order, its text output or a state.
type Row interface {
	Field(i int) ([]byte, State)
}

// Program is a compiled filter.
type Program struct {
	pred pred
	cols []Column
	used []string
	sql  string
}

// SQL is the filter as Ferry evaluates it, for a WHERE clause.
func (p *Program) SQL() string { return p.sql }

// Columns are the names of the columns the filter reads, in the table's
// order.
func (p *Program) Columns() []string { return p.used }

// Pass reports whether the row passes: whether the filter is true for it
// (false and NULL reject it, as a WHERE clause does).
func (p *Program) Pass(r Row) (bool, error) {
	t, err := p.pred.test(r)
	return t == triTrue, err
}

// ConstructError is a filter Ferry cannot evaluate exactly, or cannot read
// as one condition; Construct names the part.
type ConstructError struct {
	Construct string
	Reason    string
}

func (e *ConstructError) Error() string { return e.Construct + ": " + e.Reason }

// ErrUnchanged is a filter column that the change does not carry (an
// unchanged TOAST value without an old row to take it from).
var ErrUnchanged = errors.New("the change does not carry the value of a column the filter reads")

// Compile parses filter and types it against the table's columns cols, in
// their order. A filter Ferry cannot evaluate exactly is a
// *ConstructError.
func Compile(ctx context.Context, filter string, cols []Column, consts Constants) (*Program, error) {
	where, err := parseWhere(filter)
	if err != nil {
		return nil, err
	}
	c := &compiler{ctx: ctx, cols: cols, consts: consts, used: map[int]bool{}}
	p, err := c.pred(where)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	p.render(&b)
	prog := &Program{pred: p, cols: cols, sql: b.String()}
	for i, col := range cols {
		if c.used[i] {
			prog.used = append(prog.used, col.Name)
		}
	}
	return prog, nil
}

// OneCondition reports whether expr is one condition and nothing more, as
// a WHERE clause must be that Ferry pushes into a snapshot's query.
func OneCondition(expr string) error {
	_, err := parseWhere(expr)
	return err
}

// parseWhere parses filter as the WHERE clause of a bare SELECT, and
// refuses anything that would make the text more than that clause (a
// filter closing the clause and starting a UNION, say). The newline lets a
// filter end in a -- comment.
func parseWhere(filter string) (*pg.Node, error) {
	res, err := pg.Parse("SELECT WHERE " + filter + "\n")
	if err != nil {
		return nil, &ConstructError{Construct: "the filter", Reason: "PostgreSQL's parser does not read it as a condition: " + err.Error()}
	}
	if len(res.GetStmts()) != 1 {
		return nil, &ConstructError{Construct: "the filter", Reason: "it holds more than one statement"}
	}
	sel := res.GetStmts()[0].GetStmt().GetSelectStmt()
	if sel == nil || sel.GetWhereClause() == nil || !onlyWhere(sel) {
		return nil, &ConstructError{Construct: "the filter", Reason: "it reaches outside its WHERE clause"}
	}
	return sel.GetWhereClause(), nil
}

func onlyWhere(s *pg.SelectStmt) bool {
	return s.GetOp() == pg.SetOperation_SETOP_NONE && len(s.GetTargetList()) == 0 && len(s.GetFromClause()) == 0 &&
		len(s.GetDistinctClause()) == 0 && s.GetIntoClause() == nil && len(s.GetGroupClause()) == 0 &&
		s.GetHavingClause() == nil && len(s.GetWindowClause()) == 0 && len(s.GetValuesLists()) == 0 &&
		len(s.GetSortClause()) == 0 && s.GetLimitCount() == nil && s.GetLimitOffset() == nil &&
		len(s.GetLockingClause()) == 0 && s.GetWithClause() == nil
}

// unsupported is the error for a construct outside what Ferry evaluates.
func unsupported(construct string) error {
	return &ConstructError{Construct: construct, Reason: "Ferry evaluates filters itself before PostgreSQL 15 and does not evaluate this exactly; " + supportedList}
}

const supportedList = "it evaluates AND, OR, NOT, the comparisons = <> < <= > >=, IS [NOT] DISTINCT FROM, [NOT] IN (constants), [NOT] BETWEEN, [NOT] LIKE, IS [NOT] NULL and IS [NOT] TRUE/FALSE/UNKNOWN, " +
	"over columns and constants (with casts to these types) of types boolean, smallint, integer, bigint, numeric, real, double precision, text, varchar, char, date, timestamp, timestamptz and uuid; " +
	`text is ordered only under the C collation (write col COLLATE "C" < 'm')`
