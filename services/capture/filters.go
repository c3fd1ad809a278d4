package capture

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	"github.com/ferry-cdc/ferry/services/capture/signal"
	"github.com/ferry-cdc/ferry/services/internal/rowfilter"
)

// Row filters (objects.tables[].filter) are publication row filters: the
// publication lists a filtered table as TABLE s.t WHERE (expr), and the
// server streams only the changes that pass it. For an UPDATE PostgreSQL
// tests the old and the new row: an UPDATE whose old row passed and whose
// new row does not arrives as a DELETE, the reverse as an INSERT. Full sync
// and backfills read the filter back from the publication, in their own
// snapshot (publishedFilter), and apply it as a WHERE clause, so a snapshot
// holds exactly the rows the stream would. The text they run is
// PostgreSQL's rendering of the filter, never the request's.

// checkFilters checks the request's row filters against the request and,
// with rowfilter.Check, against the source, before the publication is
// touched: a refused filter leaves the publication as it was. It returns
// each filter as PostgreSQL renders it, by quoted table name.
func checkFilters(ctx context.Context, conn *pgx.Conn, req *capturev1.EnsureReplicationRequest) (map[string]string, error) {
	if len(req.GetFilters()) == 0 {
		return nil, nil
	}
	listed := map[string]bool{}
	for _, t := range req.GetTables() {
		listed[qualified(t)] = true
	}
	inSchema := map[string]bool{}
	for _, s := range req.GetSchemas() {
		inSchema[s] = true
	}
	out := map[string]string{}
	for i, f := range req.GetFilters() {
		t := f.GetTable()
		name, schema := qualified(t), cmp.Or(t.GetSchema(), "public")
		var why string
		switch {
		case t.GetTable() == "":
			why = "names no table"
		case req.GetAllTables():
			why = fmt.Sprintf("filters table %s, but the publication is FOR ALL TABLES (objects.whole_database), whose tables PostgreSQL publishes unfiltered; select the tables by name to filter them", name)
		case inSchema[schema]:
			why = fmt.Sprintf("filters table %s, but its schema %s is published whole (FOR TABLES IN SCHEMA, objects.schemas), whose tables PostgreSQL publishes unfiltered; select the table by name, not its schema, to filter it",
				name, pgx.Identifier{schema}.Sanitize())
		case !listed[name]:
			why = fmt.Sprintf("filters table %s, which is not among the tables to publish", name)
		case out[name] != "":
			why = fmt.Sprintf("filters table %s a second time; give each table one filter", name)
		}
		if why != "" {
			return nil, status.Errorf(codes.InvalidArgument, "filters[%d] %s", i, why)
		}
		c, err := rowfilter.Check(ctx, conn, schema, t.GetTable(), strings.TrimSpace(f.GetFilter()))
		if err != nil {
			return nil, filterStatus(req.GetPublicationName(), err)
		}
		out[name] = c.Expr
	}
	return out, nil
}

// filterStatus sorts a refused filter by who must act: InvalidArgument for
// text PostgreSQL does not accept, FailedPrecondition for a source that
// cannot take it as it is.
func filterStatus(pub string, err error) error {
	var fe *rowfilter.Error
	if !errors.As(err, &fe) {
		return toStatus(fmt.Errorf("publication %s: %w", pgx.Identifier{pub}.Sanitize(), err))
	}
	code := codes.FailedPrecondition
	if fe.Kind == rowfilter.Invalid {
		code = codes.InvalidArgument
	}
	return status.Errorf(code, "publication %s left unchanged: %v", pgx.Identifier{pub}.Sanitize(), err)
}

// publishedFilter is the row filter the publication applies to the table
// (relation oid), as PostgreSQL renders it, or "" for none. A plain SELECT
// on pg_publication_rel reads the catalog in the caller's transaction
// snapshot (the functions behind pg_publication_tables would read the
// latest), so a snapshot filters its rows as the publication stood at that
// snapshot, which is what the slot decodes the changes after it with.
// Before PostgreSQL 15 it is the filter Ferry evaluates, read from its row
// in the same snapshot (signal.ReadFilters).
func publishedFilter(ctx context.Context, q signal.Querier, version int, pub string, oid uint32) (string, error) {
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

// serverVersion is the source's server_version_num.
func serverVersion(ctx context.Context, q signal.Querier) (int, error) {
	var v int
	if err := q.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&v); err != nil {
		return 0, fmt.Errorf("reading the source's server_version_num: %w", err)
	}
	return v, nil
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
			return "", failedPrecondition("the filter of table %s in %s is not one condition (%v); set it again with modify-objects", name, signal.TableName, err)
		}
	}
	return expr, nil
}
