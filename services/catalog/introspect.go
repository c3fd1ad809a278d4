package catalog

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
)

// introspectTimeout bounds an introspection RPC, connecting included, when
// the caller's deadline is later or unset: every query below reads the
// catalogs or a bounded sample, so one that takes longer is stuck on a lock.
const introspectTimeout = 30 * time.Second

// estimatedRowsExpr is the planner's row estimate of pg_class c as of its
// last VACUUM or ANALYZE, which costs no scan. A partitioned table has no
// rows of its own, so its leaves are summed.
const estimatedRowsExpr = `coalesce(CASE WHEN c.relkind = 'p'
  THEN (SELECT sum(greatest(pc.reltuples, 0)) FROM pg_partition_tree(c.oid) pt
        JOIN pg_class pc ON pc.oid = pt.relid WHERE pt.isleaf)
  ELSE greatest(c.reltuples, 0) END, 0)::int8`

// sizeBytesExpr is the disk size of pg_class c with its TOAST table and
// indexes, from the files' sizes rather than a scan; a partitioned table
// sums its leaves. It takes the relation's AccessShareLock for a moment, so
// only an ALTER TABLE holding it can delay it (introspectTimeout bounds that).
const sizeBytesExpr = `coalesce(CASE WHEN c.relkind = 'p'
  THEN (SELECT sum(pg_total_relation_size(pt.relid)) FROM pg_partition_tree(c.oid) pt WHERE pt.isleaf)
  ELSE pg_total_relation_size(c.oid) END, 0)::int8`

// tableInfoColumns reads a TableInfo from pg_class c and pg_namespace n.
const tableInfoColumns = `n.nspname, c.relname, ` + estimatedRowsExpr + `, ` + sizeBytesExpr

func scanTableInfo(row pgx.CollectableRow) (*catalogv1.TableInfo, error) {
	ref := &taskv1.TableRef{}
	info := &catalogv1.TableInfo{Table: ref}
	return info, row.Scan(&ref.Schema, &ref.Table, &info.EstimatedRows, &info.SizeBytes)
}

// connectSource opens a session for one introspection RPC; the returned
// cancel closes it and releases the RPC's deadline.
func connectSource(ctx context.Context, src *taskv1.SourceEndpoint) (*pgx.Conn, context.Context, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, introspectTimeout)
	conn, err := pgsource.Connect(ctx, src)
	if err != nil {
		cancel()
		return nil, nil, nil, status.Errorf(codes.Unavailable, "connecting to the source %s: %v", pgsource.Describe(src), err)
	}
	return conn, ctx, func() { _ = conn.Close(context.Background()); cancel() }, nil
}

// sourceError turns a failed catalog query into a status: the server
// refused it (a missing privilege, or another server error), the query ran
// out of time, or the server could not be reached.
func sourceError(what string, err error) error {
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42501":
		return status.Errorf(codes.PermissionDenied, "%s: %v; grant the task's role the privilege named, or pick a role that has it", what, err)
	case errors.As(err, &pgErr) && pgErr.Code == "57014", errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "%s: %v; the source is slow or a lock blocks the catalog (see pg_locks), try again", what, err)
	case errors.As(err, &pgErr):
		return status.Errorf(codes.Internal, "%s: %v", what, err)
	default:
		return status.Errorf(codes.Unavailable, "%s: %v", what, err)
	}
}

// ListTables lists the ordinary and partitioned tables of a schema (every
// user schema when none is named) as ResolveTables would select them:
// partitions are left out, since they are published through their root.
func (s *Server) ListTables(ctx context.Context, req *catalogv1.ListTablesRequest) (*catalogv1.ListTablesResponse, error) {
	conn, ctx, done, err := connectSource(ctx, req.GetSource())
	if err != nil {
		return nil, err
	}
	defer done()
	schema := req.GetSchema()
	rows, err := conn.Query(ctx, `SELECT `+tableInfoColumns+userTablesFrom+` AND ($1 = '' OR n.nspname = $1) ORDER BY 1, 2`, schema)
	if err != nil {
		return nil, sourceError("listing tables", err)
	}
	infos, err := pgx.CollectRows(rows, scanTableInfo)
	if err != nil {
		return nil, sourceError("listing tables", err)
	}
	if len(infos) == 0 && schema != "" {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
			return nil, sourceError("looking up schema "+schema, err)
		}
		if !exists {
			return nil, status.Errorf(codes.NotFound, "schema %s does not exist; names are case-sensitive, ListSchemas lists them",
				pgx.Identifier{schema}.Sanitize())
		}
	}
	return &catalogv1.ListTablesResponse{Tables: infos}, nil
}

// tableHeader is what DescribeTable reads about the relation itself.
type tableHeader struct {
	oid                uint32
	relkind, replIdent string
	identIndex         string
	canSelect          bool
	averageRowBytes    int64
	sizeExpr           string // sums the columns' sizes, see columnSizesSQL
	info               *catalogv1.TableInfo
}

// tableHeaderQuery binds the table like the prechecks do. average_row_bytes
// sums pg_stats.avg_width, the average stored (compressed) width of each
// column's values, as of the last ANALYZE; like the sample, it counts the
// columns and not the tuple header. It is zero (unknown) unless every
// column has statistics the role may read (pg_stats shows only columns it
// may SELECT; one added since the last ANALYZE has none). A partitioned
// table's statistics are those of its whole tree.
var tableHeaderQuery = `WITH ` + selectedTables + `
SELECT c.oid, c.relkind::text, c.relreplident::text,
  coalesce((SELECT ic.relname::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
            WHERE i.indrelid = c.oid AND i.indisreplident), ''),
  has_table_privilege(c.oid, 'SELECT'),
  coalesce((SELECT CASE WHEN count(st.avg_width) = count(*) THEN sum(st.avg_width) END
            FROM pg_attribute a LEFT JOIN pg_stats st ON st.schemaname = n.nspname AND st.tablename = c.relname
              AND st.attname = a.attname AND st.inherited = (c.relkind = 'p')
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), 0)::int8,
  coalesce(` + columnSizesSQL("c") + `, ''),
  ` + tableInfoColumns + `
FROM sel JOIN pg_class c ON c.oid = sel.oid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')`

func readTableHeader(ctx context.Context, conn *pgx.Conn, ref *taskv1.TableRef) (*tableHeader, error) {
	schemas, names := tableArrays([]*taskv1.TableRef{ref})
	h := &tableHeader{info: &catalogv1.TableInfo{Table: &taskv1.TableRef{}}}
	err := conn.QueryRow(ctx, tableHeaderQuery, schemas, names).Scan(&h.oid, &h.relkind, &h.replIdent, &h.identIndex,
		&h.canSelect, &h.averageRowBytes, &h.sizeExpr,
		&h.info.Table.Schema, &h.info.Table.Table, &h.info.EstimatedRows, &h.info.SizeBytes)
	name := pgx.Identifier{ref.GetSchema(), ref.GetTable()}.Sanitize()
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, status.Errorf(codes.NotFound,
			"table %s does not exist, or is not an ordinary or partitioned table; check its schema and name (both are case-sensitive), ListTables lists the tables", name)
	}
	if err != nil {
		return nil, sourceError("reading table "+name, err)
	}
	return h, nil
}

var replicaIdentities = map[string]string{"d": "default", "f": "full", "n": "nothing", "i": "index"}

// DescribeTable reads a table's definition, keys, replica identity,
// partitions and inheritance from the catalogs, and its largest row from a
// bounded sample.
func (s *Server) DescribeTable(ctx context.Context, req *catalogv1.DescribeTableRequest) (*catalogv1.DescribeTableResponse, error) {
	ref := req.GetTable()
	if ref.GetSchema() == "" || ref.GetTable() == "" {
		return nil, status.Errorf(codes.InvalidArgument, `table needs schema and table (got %q.%q), e.g. {"schema": "public", "table": "orders"}`,
			ref.GetSchema(), ref.GetTable())
	}
	conn, ctx, done, err := connectSource(ctx, req.GetSource())
	if err != nil {
		return nil, err
	}
	defer done()
	h, err := readTableHeader(ctx, conn, ref)
	if err != nil {
		return nil, err
	}
	res := &catalogv1.DescribeTableResponse{
		Info: h.info, ReplicaIdentity: replicaIdentities[h.replIdent], Partitioned: h.relkind == "p",
		AverageRowBytes: h.averageRowBytes,
	}
	if h.replIdent == "i" {
		res.ReplicaIdentityIndex = h.identIndex
	}
	if res.Columns, err = readColumns(ctx, conn, h.oid); err != nil {
		return nil, sourceError("reading the columns of "+h.name(), err)
	}
	if err := readKeys(ctx, conn, h.oid, res); err != nil {
		return nil, sourceError("reading the keys of "+h.name(), err)
	}
	if err := readRelatedTables(ctx, conn, h.oid, res); err != nil {
		return nil, sourceError("reading the partitions and inheritance of "+h.name(), err)
	}
	res.LargestRowBytes = s.sampleDescribed(ctx, conn, h)
	return res, nil
}

func (h *tableHeader) name() string {
	return pgx.Identifier{h.info.GetTable().GetSchema(), h.info.GetTable().GetTable()}.Sanitize()
}

// sampleDescribed samples the largest row as the row size precheck does.
// Without SELECT, or when the sample fails (its statement_timeout, a lock),
// the size is unknown, which the contract says as zero; the rest of the
// description stands.
func (s *Server) sampleDescribed(ctx context.Context, conn *pgx.Conn, h *tableHeader) int64 {
	if !h.canSelect {
		return 0
	}
	size, err := sampleLargestRow(ctx, conn, sizeCandidate{
		relkind: h.relkind, name: h.name(), sizeExpr: h.sizeExpr, reltuples: float64(h.info.GetEstimatedRows()),
	})
	if err != nil {
		s.logger.Warn("describe table: the row sample failed, largest_row_bytes left unknown", "table", h.name(), "error", err)
		return 0
	}
	return size
}

// readColumns lists the live columns in attnum order. A generated column's
// expression is reported as its default: PostgreSQL keeps both in
// pg_attrdef, and kind tells them apart.
func readColumns(ctx context.Context, conn *pgx.Conn, oid uint32) ([]*catalogv1.ColumnInfo, error) {
	rows, err := conn.Query(ctx, `
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
  t.typnamespace <> 'pg_catalog'::regnamespace, a.attstorage <> 'p',
  coalesce(pg_get_expr(d.adbin, d.adrelid), ''),
  CASE WHEN a.attidentity <> '' THEN 'identity' WHEN a.attgenerated <> '' THEN 'generated' ELSE '' END
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`, oid)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*catalogv1.ColumnInfo, error) {
		c := &catalogv1.ColumnInfo{}
		return c, row.Scan(&c.Name, &c.Type, &c.NotNull, &c.CustomType, &c.Toastable, &c.Default, &c.Kind)
	})
}

// readKeys reads the primary key and the unique keys: valid unique indexes
// on plain columns without a predicate, their key columns in index order
// (INCLUDE columns are not part of the key). Expression and partial unique
// indexes are left out, as they do not identify a row by its columns.
func readKeys(ctx context.Context, conn *pgx.Conn, oid uint32, res *catalogv1.DescribeTableResponse) error {
	rows, err := conn.Query(ctx, `
SELECT i.indisprimary, ic.relname::text,
  ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE k.ord <= i.indnkeyatts ORDER BY k.ord)
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND NOT 0 = ANY (i.indkey)
ORDER BY NOT i.indisprimary, ic.relname`, oid)
	if err != nil {
		return err
	}
	var primary bool
	var name string
	var cols []string
	_, err = pgx.ForEachRow(rows, []any{&primary, &name, &cols}, func() error {
		if primary {
			res.PrimaryKey = cols
		} else {
			res.UniqueKeys = append(res.UniqueKeys, &catalogv1.UniqueKey{Name: name, Columns: cols})
		}
		return nil
	})
	return err
}

// readRelatedTables lists a partitioned table's leaf partitions (through
// sub-partitions), and the parents and children by inheritance. A
// partition's pg_inherits row is its partitioning parent, not inheritance,
// so it is left out on both sides.
func readRelatedTables(ctx context.Context, conn *pgx.Conn, oid uint32, res *catalogv1.DescribeTableResponse) error {
	rows, err := conn.Query(ctx, `
SELECT 'partition', n.nspname::text, c.relname::text
FROM pg_partition_tree($1::oid::regclass) pt JOIN pg_class c ON c.oid = pt.relid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE pt.isleaf AND pt.relid <> $1::oid::regclass
UNION ALL
SELECT 'parent', n.nspname, c.relname
FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhparent JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE h.inhrelid = $1 AND NOT (SELECT relispartition FROM pg_class WHERE oid = $1)
UNION ALL
SELECT 'child', n.nspname, c.relname
FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE h.inhparent = $1 AND NOT c.relispartition
ORDER BY 1, 2, 3`, oid)
	if err != nil {
		return err
	}
	var kind string
	lists := map[string]*[]*taskv1.TableRef{"partition": &res.Partitions, "parent": &res.InheritsFrom, "child": &res.InheritedBy}
	var schema, table string
	_, err = pgx.ForEachRow(rows, []any{&kind, &schema, &table}, func() error {
		list := lists[kind]
		*list = append(*list, &taskv1.TableRef{Schema: schema, Table: table})
		return nil
	})
	return err
}
