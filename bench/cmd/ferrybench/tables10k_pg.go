package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// t10kSchema holds the scenario's tables and nothing else, so that a task
// can select the schema whole and the clean-up can drop it.
const t10kSchema = "bench_t10k"

// t10kBatch is how many tables one transaction creates or drops. Each table
// takes an AccessExclusiveLock on itself, its primary key index and its
// TOAST table and index until commit; the shared lock table holds about
// max_locks_per_transaction (64 by default) × max_connections (100) locks,
// so 10,000 tables in one transaction would run it out of shared memory.
const t10kBatch = 500

// t10kTableName is table i's name (1-based): bench_t10k_00001 and so on,
// so that names sort in creation order.
func t10kTableName(i int) string { return fmt.Sprintf("bench_t10k_%05d", i) }

// t10kCreateSQL is one transaction's DO block: it creates tables lo..hi and
// writes rows rows into each. Rows are a function of the id alone.
func t10kCreateSQL(lo, hi, rows int) string {
	return fmt.Sprintf(`DO $$
DECLARE t text;
BEGIN
  FOR i IN %d..%d LOOP
    t := format('%%I.%%I', '%s', 'bench_t10k_' || lpad(i::text, 5, '0'));
    EXECUTE 'CREATE TABLE ' || t || ' (id bigint PRIMARY KEY, n integer NOT NULL, note text)';
    EXECUTE 'INSERT INTO ' || t || ' SELECT g, g * 7, ''row '' || g FROM generate_series(1, %d) g';
  END LOOP;
END $$`, lo, hi, t10kSchema, rows)
}

// createT10kTables drops what an aborted invocation left, then creates the
// schema (owned by the task's role, so that it may publish the tables by
// name) and n tables of rows rows each, t10kBatch tables per transaction.
func createT10kTables(ctx context.Context, super, owner *pgx.Conn, n, rows int) (time.Duration, error) {
	if err := dropT10kTables(ctx, super); err != nil {
		return 0, err
	}
	if _, err := super.Exec(ctx, fmt.Sprintf("CREATE SCHEMA %s AUTHORIZATION ferry", t10kSchema)); err != nil {
		return 0, fmt.Errorf("creating schema %s: %w", t10kSchema, err)
	}
	start := time.Now()
	for lo := 1; lo <= n; lo += t10kBatch {
		hi := min(lo+t10kBatch-1, n)
		if _, err := owner.Exec(ctx, t10kCreateSQL(lo, hi, rows)); err != nil {
			return 0, fmt.Errorf("creating tables %s..%s: %w", t10kTableName(lo), t10kTableName(hi), err)
		}
	}
	return time.Since(start), nil
}

// dropT10kTables drops the schema's tables t10kBatch at a time (a plain
// DROP SCHEMA ... CASCADE of 10,000 tables runs out of lock memory), then
// the schema itself.
func dropT10kTables(ctx context.Context, super *pgx.Conn) error {
	for {
		rows, err := super.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') LIMIT $2`, t10kSchema, t10kBatch)
		if err != nil {
			return fmt.Errorf("listing the tables of %s: %w", t10kSchema, err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("listing the tables of %s: %w", t10kSchema, err)
		}
		if len(names) == 0 {
			break
		}
		if _, err := super.Exec(ctx, "DROP TABLE "+strings.Join(names, ", ")+" CASCADE"); err != nil {
			return fmt.Errorf("dropping %d tables of %s: %w", len(names), t10kSchema, err)
		}
	}
	if _, err := super.Exec(ctx, "DROP SCHEMA IF EXISTS "+t10kSchema+" CASCADE"); err != nil {
		return fmt.Errorf("dropping schema %s: %w", t10kSchema, err)
	}
	return nil
}
