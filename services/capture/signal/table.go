// Package signal owns Ferry's signal table in the source, _ferry.signals:
// before PostgreSQL 14 heartbeats and backfill watermarks travel through
// it instead of logical messages, and before 15 it holds the row filters
// Ferry evaluates itself.
package signal

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferry-cdc/ferry/services/internal/pgsql"
)

// Before PostgreSQL 14 pgoutput drops logical messages, so the heartbeat
// and the backfill's watermarks cannot travel as pg_logical_emit_message.
// There they go through a small table Ferry owns in the source, as the
// original DBLog design has it: each signal is an upsert of the row (slot,
// prefix) in a transaction of its own, published with the task's tables.
// The stream never ships the table's changes; at the transaction's commit
// it handles each signal as the non-transactional message it stands for,
// at the start of the commit record, so everything downstream of the
// decoder is the same on every version. One row per slot and prefix keeps
// the table at a few rows whatever the rate.
const (
	// MessagesVersion is PostgreSQL 14, whose pgoutput forwards logical
	// messages (messages 'true').
	MessagesVersion = 140000
	Schema          = "_ferry"
	Table           = "signals"
)

// TableName is the table's quoted name, as publications list it.
var TableName = pgx.Identifier{Schema, Table}.Sanitize()

// signalDDL creates the table; the schema keeps it out of the application's
// own (objects.whole_database and schema listings leave it out).
var signalDDL = []string{
	"CREATE SCHEMA IF NOT EXISTS " + pgx.Identifier{Schema}.Sanitize(),
	"CREATE TABLE IF NOT EXISTS " + TableName +
		" (slot_name text NOT NULL, prefix text NOT NULL, content text NOT NULL, PRIMARY KEY (slot_name, prefix))",
}

// UsesTable reports whether a server of this server_version_num
// needs the signal table.
func UsesTable(version int) bool { return version < MessagesVersion }

// EnsureTable creates the table if it is missing. It needs CREATE on
// the database the first time; the precheck item signal_table says so.
func EnsureTable(ctx context.Context, conn *pgx.Conn) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", TableName).Scan(&exists); err != nil {
		return fmt.Errorf("looking up Ferry's signal table %s: %w", TableName, err)
	}
	if exists {
		return nil
	}
	for _, stmt := range signalDDL {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			if pgsql.IsCode(err, "42501") {
				role := conn.Config().User
				return status.Errorf(codes.FailedPrecondition, "creating Ferry's signal table %s: %v; before PostgreSQL 14 Ferry carries its heartbeats and full-sync watermarks through this table, which it must own to publish it: run GRANT CREATE ON DATABASE %s TO %s, or as a superuser CREATE SCHEMA %s AUTHORIZATION %s",
					TableName, err, pgx.Identifier{conn.Config().Database}.Sanitize(), pgx.Identifier{role}.Sanitize(),
					pgx.Identifier{Schema}.Sanitize(), pgx.Identifier{role}.Sanitize())
			}
			return fmt.Errorf("creating Ferry's signal table %s: %w", TableName, err)
		}
	}
	return nil
}

// Write writes one signal: a logical message on 14 and later, else an
// upsert into the signal table, committed (and so flushed) at once.
func Write(ctx context.Context, conn *pgx.Conn, version int, slot, prefix, content string) error {
	if !UsesTable(version) {
		_, err := conn.Exec(ctx, "SELECT pg_logical_emit_message(false, $1, $2)", prefix, content)
		return err
	}
	return upsertSignal(ctx, conn, slot, prefix, content)
}

// upsertSignal writes the row (slot, prefix) of the signal table.
func upsertSignal(ctx context.Context, conn *pgx.Conn, slot, prefix, content string) error {
	_, err := conn.Exec(ctx, "INSERT INTO "+TableName+` AS s VALUES ($1, $2, $3)
		ON CONFLICT (slot_name, prefix) DO UPDATE SET content = EXCLUDED.content`, slot, prefix, content)
	return err
}

// ReleaseTable drops the signal table, and its schema if that is then
// empty, once no other task can need it: no publication names it and no
// logical slot is left on the database. A FOR ALL TABLES publication
// includes it without naming it, so a task with one keeps a slot, which
// keeps the table. The check and the drop run under the table's ACCESS
// EXCLUSIVE lock, which a publication adding the table waits for, so a
// task set up meanwhile either is seen or finds the table gone and
// creates it again when its setup is retried. It reports whether it
// dropped the table.
func ReleaseTable(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", TableName).Scan(&exists); err != nil || !exists {
		return false, wrapSignal("looking up", err)
	}
	dropped := false
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "LOCK TABLE "+TableName+" IN ACCESS EXCLUSIVE MODE"); err != nil {
			return err
		}
		var inUse bool
		if err := tx.QueryRow(ctx, `
			SELECT EXISTS (SELECT 1 FROM pg_publication_rel WHERE prrelid = to_regclass($1))
			    OR EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_type = 'logical' AND database = current_database())`,
			TableName).Scan(&inUse); err != nil || inUse {
			return err
		}
		if _, err := tx.Exec(ctx, "DROP TABLE "+TableName); err != nil {
			return err
		}
		dropped = true
		return nil
	})
	if err != nil {
		return false, wrapSignal("dropping", err)
	}
	if dropped {
		// RESTRICT: a schema someone else put objects in stays.
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{Schema}.Sanitize()); err != nil && !pgsql.IsCode(err, "2BP01") {
			return true, fmt.Errorf("dropping Ferry's schema %s: %w", Schema, err)
		}
	}
	return dropped, nil
}

func wrapSignal(doing string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s Ferry's signal table %s: %w", doing, TableName, err)
}
