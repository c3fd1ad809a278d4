package rowfilter

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// evaluatedSettings fix what shapes a constant's canonical text and the
// meaning of a timestamp without a time zone: the settings every Ferry
// session runs with (pgsource), so that the stream, the snapshots and this
// check read the same values.
var evaluatedSettings = []string{
	"SET LOCAL TimeZone = 'UTC'", "SET LOCAL DateStyle = 'ISO, MDY'",
	"SET LOCAL IntervalStyle = 'postgres'", "SET LOCAL extra_float_digits = 3",
	"SET LOCAL standard_conforming_strings = on",
}

// checkEvaluated checks a filter Ferry evaluates itself (before PostgreSQL
// 15): PostgreSQL parses and types it as the WHERE clause of a query on the
// table, which it only prepares; Ferry compiles it against the table's
// columns, reading its constants through the source; and its columns must
// be in the replica identity, as PostgreSQL 15 requires, so that every
// UPDATE and DELETE carries what the filter reads.
func checkEvaluated(ctx context.Context, conn *pgx.Conn, oid uint32, quoted, filter string, refuse func(Kind, string, string) error) (Checked, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return Checked{}, fmt.Errorf("checking the filter of table %s: %w", quoted, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for _, stmt := range evaluatedSettings {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return Checked{}, fmt.Errorf("checking the filter of table %s: %w", quoted, err)
		}
	}
	// Prepared over the extended protocol, which carries one statement
	// and runs nothing.
	sql := fmt.Sprintf("SELECT FROM ONLY %s WHERE (%s\n)", quoted, filter)
	if _, err := tx.Conn().PgConn().Prepare(ctx, "", sql, nil); err != nil {
		return Checked{}, refusal(err, quoted, refuse)
	}
	cols, err := readColumns(ctx, tx, oid)
	if err != nil {
		return Checked{}, fmt.Errorf("reading the columns of %s: %w", quoted, err)
	}
	prog, err := Compile(ctx, filter, cols, sourceConstants{tx})
	if err != nil {
		return Checked{}, refusal(err, quoted, refuse)
	}
	if err := checkRendering(ctx, tx, prog, cols, quoted); err != nil {
		return Checked{}, err
	}
	c := Checked{Expr: prog.SQL(), Columns: prog.Columns()}
	if bad, err := outsideIdentity(ctx, tx, oid, c.Columns); err != nil {
		return Checked{}, fmt.Errorf("reading the replica identity of %s: %w", quoted, err)
	} else if len(bad) > 0 {
		return Checked{}, refuse(Identity, bad.reason(), bad.fix(quoted))
	}
	return c, nil
}

// refusal sorts an error of the check: PostgreSQL's verdict on the text or
// a construct Ferry does not evaluate refuses the filter; anything else is
// the check failing.
func refusal(err error, quoted string, refuse func(Kind, string, string) error) error {
	var pgErr *pgconn.PgError
	var ce *ConstructError
	switch {
	case errors.As(err, &pgErr) && refusesFilter(pgErr):
		return refuse(Invalid, "PostgreSQL does not accept it as a condition on the table: "+describe(pgErr),
			"write one boolean condition over the table's own columns, e.g. id > 1000 or region = 'eu'")
	case errors.As(err, &ce):
		return refuse(Unsupported, fmt.Sprintf("before PostgreSQL 15 Ferry evaluates filters itself, and %s", ce.Error()),
			"rewrite the condition with the constructs listed, or upgrade the source to PostgreSQL 15 or later, where PostgreSQL evaluates any row filter")
	}
	return fmt.Errorf("checking the filter of table %s: %w", quoted, err)
}

// readColumns are the table's columns in order, with their base types and
// what their collations allow.
func readColumns(ctx context.Context, tx pgx.Tx, oid uint32) ([]Column, error) {
	rows, err := tx.Query(ctx, `
		SELECT a.attname::text, CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END,
		       coalesce(co.collname IN ('C', 'POSIX') OR (a.attcollation = 100 AND d.datcollate IN ('C', 'POSIX')), false),
		       coalesce(NOT co.collisdeterministic, false)
		FROM pg_attribute a
		JOIN pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_collation co ON co.oid = a.attcollation
		JOIN pg_database d ON d.datname = current_database()
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, oid)
	if err != nil {
		return nil, err
	}
	var c Column
	var cols []Column
	_, err = pgx.ForEachRow(rows, []any{&c.Name, &c.Type, &c.CollateC, &c.Nondeterministic}, func() error {
		cols = append(cols, c)
		return nil
	})
	return cols, err
}

// sourceConstants reads constants as the source does, in the check's
// transaction and settings.
type sourceConstants struct{ tx pgx.Tx }

func (s sourceConstants) Canonical(ctx context.Context, text, typ string) (string, error) {
	var out string
	// format prints the output function's text, as pgoutput does (a cast
	// to text would print a boolean as true). typ is a pg_catalog type name
	// and numeric modifiers, built by the compiler from a whitelist, never
	// the filter's text.
	err := s.tx.QueryRow(ctx, "SELECT format('%s', CAST(CAST($1 AS text) AS "+typ+"))", text).Scan(&out)
	return out, err
}

// checkRendering makes sure the rendering, which is what the stream and
// the snapshots will use, compiles to itself and is a condition
// PostgreSQL accepts on the table: a rendering that did not would stop the
// task at the table's first change instead of here.
func checkRendering(ctx context.Context, tx pgx.Tx, prog *Program, cols []Column, quoted string) error {
	again, err := Compile(ctx, prog.SQL(), cols, Canonical{})
	if err == nil && again.SQL() != prog.SQL() {
		err = fmt.Errorf("it renders as %s, which renders as %s", prog.SQL(), again.SQL())
	}
	if err == nil {
		_, err = tx.Conn().PgConn().Prepare(ctx, "", fmt.Sprintf("SELECT FROM ONLY %s WHERE (%s)", quoted, prog.SQL()), nil)
	}
	if err != nil {
		return fmt.Errorf("the filter of table %s, as Ferry renders it, does not hold (%w); this is a bug in Ferry: please report it with the filter, and rewrite the condition meanwhile", quoted, err)
	}
	return nil
}
