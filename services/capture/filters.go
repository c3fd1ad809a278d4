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
	"github.com/ferry-cdc/ferry/services/internal/pgsql"
	"github.com/ferry-cdc/ferry/services/internal/rowfilter"
)

// Row filters (objects.tables[].filter) are publication row filters: the
// publication lists a filtered table as TABLE s.t WHERE (expr), and the
// server streams only the changes that pass it. For an UPDATE PostgreSQL
// tests the old and the new row: an UPDATE whose old row passed and whose
// new row does not arrives as a DELETE, the reverse as an INSERT. Full sync
// and backfills read the filter back from the publication, in their own
// snapshot (snapshot.PublishedFilter), and apply it as a WHERE clause, so a snapshot
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
		listed[pgsql.Qualified(t)] = true
	}
	inSchema := map[string]bool{}
	for _, s := range req.GetSchemas() {
		inSchema[s] = true
	}
	out := map[string]string{}
	for i, f := range req.GetFilters() {
		t := f.GetTable()
		name, schema := pgsql.Qualified(t), cmp.Or(t.GetSchema(), "public")
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
