package snapshot

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferry-cdc/ferry/services/capture/signal"
	"github.com/ferry-cdc/ferry/services/internal/rowfilter"
)

// PublishedFilter is the row filter the publication applies to the table
// (relation oid), as PostgreSQL renders it, or "" for none. A plain SELECT
// on pg_publication_rel reads the catalog in the caller's transaction
// snapshot (the functions behind pg_publication_tables would read the
// latest), so a snapshot filters its rows as the publication stood at that
// snapshot, which is what the slot decodes the changes after it with.
// Before PostgreSQL 15 it is the filter Ferry evaluates, read from its row
// in the same snapshot (signal.ReadFilters).
func PublishedFilter(ctx context.Context, q signal.Querier, version int, pub string, oid uint32) (string, error) {
	if signal.EvaluatedFilters(version) {
		return evaluatedFilter(ctx, q, pub, oid)
	}
	var expr string
	err := q.QueryRow(ctx, `
		SELECT coalesce(pg_get_expr(r.prqual, r.prrelid), '')
		FROM pg_publication p JOIN pg_publication_rel r ON r.prpubid = p.oid
		WHERE p.pubname = $1 AND r.prrelid = $2`, pub, oid).Scan(&expr)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the row filter of publication %s: %w", pgx.Identifier{pub}.Sanitize(), err)
	}
	return expr, nil
}

// evaluatedFilter is the filter Ferry evaluates on table oid, from the
// publication's row as the caller's snapshot sees it.
func evaluatedFilter(ctx context.Context, q signal.Querier, pub string, oid uint32) (string, error) {
	exprs, err := signal.ReadFilters(ctx, q, pub)
	if err != nil || len(exprs) == 0 {
		return "", err
	}
	var name string
	err = q.QueryRow(ctx, `
		SELECT '"' || replace(n.nspname, '"', '""') || '"."' || replace(c.relname, '"', '""') || '"'
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`, oid).Scan(&name)
	if err != nil {
		return "", fmt.Errorf("naming the table of relation %d: %w", oid, err)
	}
	expr := exprs[name]
	// The row is Ferry's, but a snapshot's query is no place to trust it.
	if expr != "" {
		if err := rowfilter.OneCondition(expr); err != nil {
			return "", status.Errorf(codes.FailedPrecondition, "the filter of table %s in %s is not one condition (%v); set it again with modify-objects", name, signal.TableName, err)
		}
	}
	return expr, nil
}
