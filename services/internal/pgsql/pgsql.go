// Package pgsql holds what Ferry's PostgreSQL code shares: quoting string
// constants for the two grammars Ferry sends PostgreSQL (SQL, and the
// walsender's replication commands, which differ on backslashes, so one
// quoter cannot serve both), table names, and SQLSTATE checks.
package pgsql

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// Literal quotes s as an SQL string constant that reads the same whatever
// standard_conforming_strings says: an escape string, E'...', whenever s
// holds a backslash, and a plain one otherwise. With the setting off, a
// plain '...' would read a backslash as an escape ('a\' would not even end).
func Literal(s string) string {
	q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if strings.Contains(s, `\`) {
		return "E" + strings.ReplaceAll(q, `\`, `\\`)
	}
	return q
}

// ReplicationLiteral quotes s for a replication command, such as the
// output plugin's options in START_REPLICATION. The walsender's scanner
// (repl_scanner.l) knows only '...' with each quote doubled, reads a
// backslash as itself whatever standard_conforming_strings says, and has no
// E'...': Literal's escape string is a syntax error there.
func ReplicationLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// Qualified is a table's quoted schema.table, for SQL and for messages;
// an empty schema means public.
func Qualified(t *taskv1.TableRef) string {
	schema := t.GetSchema()
	if schema == "" {
		schema = "public"
	}
	return pgx.Identifier{schema, t.GetTable()}.Sanitize()
}

// IsCode reports whether err is a PostgreSQL error with SQLSTATE code.
func IsCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}
