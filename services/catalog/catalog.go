// Package catalog introspects the source database: object selection and
// prechecks.
package catalog

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
)

// Server implements catalogv1.CatalogServiceServer.
type Server struct {
	catalogv1.UnimplementedCatalogServiceServer
	logger *slog.Logger
	// longTransactionAge is how long a transaction may be open before the
	// precheck warns about it.
	longTransactionAge time.Duration
	// messageLimit is the message size the row size item compares against.
	messageLimit int64
}

// DefaultLongTransactionAge is the age from which an open transaction is
// reported: a normal OLTP transaction is far shorter.
const DefaultLongTransactionAge = 5 * time.Minute

// NewServer returns a catalog server; it opens a source session per request.
func NewServer(logger *slog.Logger) *Server {
	return &Server{logger: logger, longTransactionAge: DefaultLongTransactionAge, messageLimit: DefaultMessageLimit}
}

// ResolveTables expands the selection to the tables it names today.
func (s *Server) ResolveTables(ctx context.Context, req *catalogv1.ResolveTablesRequest) (*catalogv1.ResolveTablesResponse, error) {
	conn, err := pgsource.Connect(ctx, req.GetSource())
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	defer func() { _ = conn.Close(context.Background()) }()
	tables, err := resolve(ctx, conn, req.GetObjects())
	if err != nil {
		return nil, err
	}
	estimates, keyed, err := estimateRows(ctx, conn, tables)
	if err != nil {
		return nil, err
	}
	return &catalogv1.ResolveTablesResponse{Tables: tables, EstimatedRows: estimates, HasPrimaryKey: keyed}, nil
}

// estimateRows reads reltuples, which costs nothing, rather than counting:
// progress needs a denominator, not an exact one (see estimatedRowsExpr).
// It also says which tables have a primary key, which decides how full sync
// reads them.
func estimateRows(ctx context.Context, conn *pgx.Conn, tables []*taskv1.TableRef) ([]uint64, []bool, error) {
	schemas, names := tableArrays(tables)
	rows, err := conn.Query(ctx, `SELECT `+estimatedRowsExpr+`,
  EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(s, t, i)
LEFT JOIN pg_namespace n ON n.nspname = u.s
LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = u.t
ORDER BY u.i`, schemas, names)
	if err != nil {
		return nil, nil, status.Errorf(codes.Unavailable, "estimating table sizes: %v", err)
	}
	out, keyed := make([]uint64, 0, len(tables)), make([]bool, 0, len(tables))
	var n int64
	var pk bool
	if _, err := pgx.ForEachRow(rows, []any{&n, &pk}, func() error {
		out, keyed = append(out, uint64(max(n, 0))), append(keyed, pk)
		return nil
	}); err != nil {
		return nil, nil, status.Errorf(codes.Unavailable, "estimating table sizes: %v", err)
	}
	return out, keyed, nil
}

// userTables are ordinary and partitioned tables outside the system schemas
// and Ferry's own (_ferry, the signal table of sources before PostgreSQL
// 14); partitions are left out because publications publish via their root.
const userTables = `SELECT n.nspname, c.relname` + userTablesFrom

const userTablesFrom = `
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_ferry') AND n.nspname NOT LIKE 'pg\_%'`

func resolve(ctx context.Context, conn *pgx.Conn, sel *taskv1.ObjectSelection) ([]*taskv1.TableRef, error) {
	seen := map[string]bool{}
	var out []*taskv1.TableRef
	add := func(schema, table string) {
		key := schema + "\x00" + table
		if !seen[key] {
			seen[key] = true
			out = append(out, &taskv1.TableRef{Schema: schema, Table: table})
		}
	}
	var schemas []string
	for _, s := range sel.GetSchemas() {
		schemas = append(schemas, s.GetSchema())
	}
	if sel.GetWholeDatabase() || len(schemas) > 0 {
		q := userTables + ` AND ($1 OR n.nspname = ANY($2)) ORDER BY 1, 2`
		rows, err := conn.Query(ctx, q, sel.GetWholeDatabase(), schemas)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "listing tables: %v", err)
		}
		var schema, table string
		if _, err := pgx.ForEachRow(rows, []any{&schema, &table}, func() error { add(schema, table); return nil }); err != nil {
			return nil, status.Errorf(codes.Unavailable, "listing tables: %v", err)
		}
	}
	found, err := existingTables(ctx, conn, sel.GetTables())
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, t := range sel.GetTables() {
		if !found[t.GetSchema()+"\x00"+t.GetTable()] {
			missing = append(missing, pgx.Identifier{t.GetSchema(), t.GetTable()}.Sanitize())
			continue
		}
		add(t.GetSchema(), t.GetTable())
	}
	if len(missing) > 0 {
		return nil, status.Errorf(codes.InvalidArgument,
			"selected tables do not exist (or are not ordinary tables): %s; fix the task's objects or create the tables",
			strings.Join(missing, ", "))
	}
	if len(out) == 0 {
		return nil, status.Error(codes.InvalidArgument, "the selection names no tables; select tables, schemas or the whole database")
	}
	return out, nil
}

// existingTables looks the named tables up in one query, keyed by schema and
// table joined with a NUL, so a selection of thousands is one round trip.
func existingTables(ctx context.Context, conn *pgx.Conn, tables []*taskv1.TableSelection) (map[string]bool, error) {
	found := map[string]bool{}
	if len(tables) == 0 {
		return found, nil
	}
	var schemas, names []string
	for _, t := range tables {
		schemas = append(schemas, t.GetSchema())
		names = append(names, t.GetTable())
	}
	rows, err := conn.Query(ctx, userTables+` AND (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, schemas, names)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "looking up the selected tables: %v", err)
	}
	var schema, table string
	if _, err := pgx.ForEachRow(rows, []any{&schema, &table}, func() error {
		found[schema+"\x00"+table] = true
		return nil
	}); err != nil {
		return nil, status.Errorf(codes.Unavailable, "looking up the selected tables: %v", err)
	}
	return found, nil
}
