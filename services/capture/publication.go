package capture

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	"github.com/ferry-cdc/ferry/services/capture/signal"
	"github.com/ferry-cdc/ferry/services/internal/pgsql"
	"github.com/ferry-cdc/ferry/services/internal/rowfilter"
)

// schemaPublicationVersion is PostgreSQL 15, which brought FOR TABLES IN
// SCHEMA and pg_publication_namespace.
const schemaPublicationVersion = 150000

// viaRootVersion is PostgreSQL 13, which brought publish_via_partition_root.
// Before it a publication cannot name a partitioned table: Ferry publishes
// its leaves, and the stream carries their changes under the root's name
// (decode/partitions.go), as 13 and later do.
const viaRootVersion = 130000

// pubTarget is what a publication publishes: every table of the database,
// or whole schemas plus tables named outside them, each table with its row
// filter if it has one ("s"."t" WHERE (expr)). Names are quoted, filters
// are PostgreSQL's own rendering (pg_get_expr), and both lists are sorted,
// so that the wanted and the current state compare as strings.
type pubTarget struct {
	allTables bool
	schemas   []string
	tables    []string
}

// wantedTarget is what the request asks the publication to publish, with
// the row filters checkFilters rendered, by quoted table name. A table
// inside a selected schema is left to the schema: PostgreSQL would accept
// it in both, but listing it once keeps the comparison with the catalog
// exact.
func wantedTarget(req *capturev1.EnsureReplicationRequest, filters map[string]string) pubTarget {
	if req.GetAllTables() {
		return pubTarget{allTables: true}
	}
	var p pubTarget
	inSchema := map[string]bool{}
	for _, s := range req.GetSchemas() {
		inSchema[s] = true
		p.schemas = append(p.schemas, pgx.Identifier{s}.Sanitize())
	}
	for _, t := range req.GetTables() {
		if !inSchema[cmp.Or(t.GetSchema(), "public")] {
			p.tables = append(p.tables, withFilter(pgsql.Qualified(t), filters[pgsql.Qualified(t)]))
		}
	}
	slices.Sort(p.schemas)
	slices.Sort(p.tables)
	p.schemas, p.tables = slices.Compact(p.schemas), slices.Compact(p.tables)
	return p
}

// withFilter is a table as a publication's object list names it.
func withFilter(quoted, expr string) string {
	if expr == "" {
		return quoted
	}
	return quoted + " WHERE (" + expr + ")"
}

// clause is the object list of CREATE PUBLICATION ... FOR and of ALTER
// PUBLICATION ... SET (the latter never with ALL TABLES).
func (p pubTarget) clause() string {
	if p.allTables {
		return "ALL TABLES"
	}
	var parts []string
	if len(p.schemas) > 0 {
		parts = append(parts, "TABLES IN SCHEMA "+strings.Join(p.schemas, ", "))
	}
	if len(p.tables) > 0 {
		parts = append(parts, "TABLE "+strings.Join(p.tables, ", "))
	}
	return strings.Join(parts, ", ")
}

func (p pubTarget) equal(o pubTarget) bool {
	return p.allTables == o.allTables && slices.Equal(p.schemas, o.schemas) && slices.Equal(p.tables, o.tables)
}

// needsSuperuser: PostgreSQL lets only superusers publish FOR ALL TABLES or
// FOR TABLES IN SCHEMA (CREATE and ALTER ... SET alike).
func (p pubTarget) needsSuperuser() bool { return p.allTables || len(p.schemas) > 0 }

func (p pubTarget) describe() string {
	if p.allTables {
		return "FOR ALL TABLES (objects.whole_database)"
	}
	return "a list of schemas and tables"
}

// pubState is a publication as the catalog holds it.
type pubState struct {
	version int // server_version_num
	exists  bool
	have    pubTarget
}

// readPublication reads whether the publication exists and what it
// publishes: every table, or the schemas (pg_publication_namespace) and
// tables (pg_publication_rel) it names directly.
func readPublication(ctx context.Context, conn *pgx.Conn, name string) (pubState, error) {
	var st pubState
	err := conn.QueryRow(ctx, `
		SELECT current_setting('server_version_num')::int, p.oid IS NOT NULL, coalesce(p.puballtables, false)
		FROM (SELECT 1) AS one LEFT JOIN pg_publication p ON p.pubname = $1`, name).
		Scan(&st.version, &st.exists, &st.have.allTables)
	if err != nil {
		return st, fmt.Errorf("looking up publication %q: %w", name, err)
	}
	if !st.exists || st.have.allTables {
		return st, nil
	}
	// Names are quoted as qualified quotes them (always, unlike format's
	// %I), so that they compare with wantedTarget's.
	filter := `''`
	if st.version >= rowfilter.MinServerVersion {
		filter = `coalesce(' WHERE (' || pg_get_expr(r.prqual, r.prrelid) || ')', '')`
	}
	rows, err := conn.Query(ctx, `
		SELECT '"' || replace(n.nspname, '"', '""') || '"."' || replace(c.relname, '"', '""') || '"' || `+filter+`
		FROM pg_publication p
		JOIN pg_publication_rel r ON r.prpubid = p.oid
		JOIN pg_class c ON c.oid = r.prrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE p.pubname = $1 ORDER BY 1`, name)
	if err == nil {
		st.have.tables, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		return st, fmt.Errorf("listing the tables of publication %q: %w", name, err)
	}
	// Sorted like wantedTarget: ORDER BY collates, Sort compares bytes.
	slices.Sort(st.have.tables)
	if st.version < schemaPublicationVersion {
		return st, nil
	}
	rows, err = conn.Query(ctx, `
		SELECT format('%I', n.nspname)
		FROM pg_publication p
		JOIN pg_publication_namespace pn ON pn.pnpubid = p.oid
		JOIN pg_namespace n ON n.oid = pn.pnnspid
		WHERE p.pubname = $1 ORDER BY 1`, name)
	if err == nil {
		st.have.schemas, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		return st, fmt.Errorf("listing the schemas of publication %q: %w", name, err)
	}
	slices.Sort(st.have.schemas)
	return st, nil
}

// ensurePublication creates the publication, or makes an existing one
// publish exactly what the request asks for, always via the partition root.
// Before PostgreSQL 15 the filters go to their row of the signal table
// instead (signal.WriteFilters; ensureFilterRow).
func ensurePublication(ctx context.Context, conn *pgx.Conn, req *capturev1.EnsureReplicationRequest) (bool, error) {
	filters, err := checkFilters(ctx, conn, req)
	if err != nil {
		return false, err
	}
	st, err := readPublication(ctx, conn, req.GetPublicationName())
	if err != nil {
		return false, err
	}
	if !signal.EvaluatedFilters(st.version) {
		return ensurePublished(ctx, conn, req, st, filters, false)
	}
	return ensureFilterRow(ctx, conn, req, st, filters)
}

// ensureFilterRow changes the publication and the filters Ferry evaluates
// in an order that leaves no change unfiltered: first the row gets the new
// filters beside the old ones, then the publication its tables (a table
// added with a filter is published only once its filter is), then the row
// loses the filters of tables no longer filtered. The stream takes each
// row change at its commit, so the signal table is published first when a
// filter is new on PostgreSQL 14, whose publications otherwise leave it out.
func ensureFilterRow(ctx context.Context, conn *pgx.Conn, req *capturev1.EnsureReplicationRequest, st pubState, filters map[string]string) (bool, error) {
	name := req.GetPublicationName()
	had, err := signal.ReadFilters(ctx, conn, name)
	if err != nil {
		return false, err
	}
	interim := maps.Clone(had)
	if interim == nil {
		interim = map[string]string{}
	}
	maps.Copy(interim, filters)
	if len(interim) > 0 {
		if err := signal.EnsureTable(ctx, conn); err != nil {
			return false, err
		}
	}
	if len(filters) > 0 && st.exists && !st.have.allTables && !slices.Contains(st.have.tables, signal.TableName) {
		if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s", pgx.Identifier{name}.Sanitize(), signal.TableName)); err != nil {
			return false, fmt.Errorf("adding Ferry's signal table to publication %s: %w", pgx.Identifier{name}.Sanitize(), err)
		}
	}
	if !maps.Equal(had, interim) {
		if err := signal.WriteFilters(ctx, conn, name, interim); err != nil {
			return false, err
		}
	}
	// The table stays published while the row holds filters, so that the
	// stream sees them removed.
	created, err := ensurePublished(ctx, conn, req, st, nil, len(interim) > 0)
	if err != nil || maps.Equal(interim, filters) {
		return created, err
	}
	return created, signal.WriteFilters(ctx, conn, name, filters)
}

// ensurePublished makes the publication publish what the request asks
// for, with filters as its row filters, and Ferry's signal table too if
// signals.
func ensurePublished(ctx context.Context, conn *pgx.Conn, req *capturev1.EnsureReplicationRequest, st pubState, filters map[string]string, signals bool) (bool, error) {
	name := req.GetPublicationName()
	quoted := pgx.Identifier{name}.Sanitize()
	want, err := versionedTarget(ctx, conn, st.version, wantedTarget(req, filters), signals)
	if err != nil {
		return false, err
	}
	if len(want.schemas) > 0 && st.version < schemaPublicationVersion {
		return false, failedPrecondition("publication %s: selecting whole schemas needs PostgreSQL 15 or later (FOR TABLES IN SCHEMA), and the source runs server_version_num %d; select the tables in objects.tables or the whole database instead",
			quoted, st.version)
	}
	if !st.exists {
		err := createOwnedPublication(ctx, conn, name, createPublication(quoted, want, st.version), req.GetOwner())
		if err == nil {
			return true, nil
		}
		if !pgsql.IsCode(err, "42710") { // duplicate_object: created concurrently
			return false, publishError(conn, "creating", quoted, want, err)
		}
		if st, err = readPublication(ctx, conn, name); err != nil {
			return false, err
		}
	}
	if owner := req.GetOwner(); owner != "" {
		if _, err := ownPublication(ctx, conn, name, owner); err != nil {
			return false, err
		}
	}
	if st.have.allTables != want.allTables {
		return false, recreatePublication(ctx, conn, req, st, want)
	}
	// Before the tables: PostgreSQL refuses a row filter on a partitioned
	// table while publish_via_partition_root is false.
	if st.version >= viaRootVersion {
		if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s SET (publish_via_partition_root = true)", quoted)); err != nil {
			return false, fmt.Errorf("altering publication %s: %w", quoted, err)
		}
	}
	// CREATE's default, so that an existing publication cannot hide TRUNCATEs.
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s SET (publish = 'insert, update, delete, truncate')", quoted)); err != nil {
		return false, fmt.Errorf("altering publication %s: %w", quoted, err)
	}
	if !st.have.equal(want) {
		if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s SET %s", quoted, want.clause())); err != nil {
			return false, publishError(conn, "setting the tables of", quoted, want, err)
		}
	}
	return false, nil
}

// recreatePublication turns a FOR ALL TABLES publication into a list or
// back, which ALTER PUBLICATION cannot do. It does so only while the task's
// slot does not exist yet (a setup that is retried, or full sync's setup,
// whose snapshot creates the slot later): no decoding session depends on
// the publication then. Under a slot, a publication missing for a moment
// leaves changes that never decode (see publicationMissing); a drop and
// create in one transaction would leave no such gap, but PostgreSQL does
// not document replacing the publication a live decoder reads as safe, and
// a change of selection that big is made safely by a new task.
func recreatePublication(ctx context.Context, conn *pgx.Conn, req *capturev1.EnsureReplicationRequest, st pubState, want pubTarget) error {
	slot, quoted := req.GetSlotName(), pgx.Identifier{req.GetPublicationName()}.Sanitize()
	refuse := func(why string) error {
		return failedPrecondition("publication %s publishes %s, but the task now selects %s, and PostgreSQL cannot alter one into the other; %s. To change between objects.whole_database and a list of schemas or tables, stop the task with release and create it again with the new selection (with sync_types.full to read the tables)",
			quoted, st.have.describe(), want.describe(), why)
	}
	if slot == "" {
		return refuse("Ferry does not recreate the publication of a running task, whose replication slot decodes with it")
	}
	_, err := lookupSlot(ctx, conn, slot)
	if err == nil {
		return refuse(fmt.Sprintf("Ferry does not recreate it under replication slot %s, which decodes with it", slot))
	}
	if !errors.Is(err, errSlotMissing) {
		return err
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DROP PUBLICATION "+quoted); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, createPublication(quoted, want, st.version)); err != nil || req.GetOwner() == "" {
			return err
		}
		return writeClaim(ctx, tx, req.GetPublicationName(), claim{owner: req.GetOwner()})
	})
	if err != nil {
		return publishError(conn, "recreating", quoted, want, err)
	}
	return nil
}

// versionedTarget adapts what the publication should publish to the
// server: before 14, or with signals, it also publishes Ferry's signal
// table, creating it if need be (FOR ALL TABLES includes it by itself), and
// before 13 a partitioned table's leaves in its place.
func versionedTarget(ctx context.Context, conn *pgx.Conn, version int, want pubTarget, signals bool) (pubTarget, error) {
	var err error
	if version < viaRootVersion {
		if want.tables, err = publishedLeaves(ctx, conn, want.tables); err != nil {
			return want, err
		}
	}
	if signal.UsesTable(version) || signals {
		if err := signal.EnsureTable(ctx, conn); err != nil {
			return want, err
		}
		if !want.allTables {
			want.tables = append(want.tables, signal.TableName)
			slices.Sort(want.tables)
			want.tables = slices.Compact(want.tables)
		}
	}
	return want, nil
}

// createPublication is the statement that creates the publication, always
// via the partition root where the server has the option.
func createPublication(quoted string, want pubTarget, version int) string {
	stmt := "CREATE PUBLICATION " + quoted
	if clause := want.clause(); clause != "" {
		// Empty only for partitioned tables with no partition yet, on 12.
		stmt += " FOR " + clause
	}
	if version >= viaRootVersion {
		stmt += " WITH (publish_via_partition_root = true)"
	}
	return stmt
}

// publishedLeaves replaces each partitioned table of a publication's table
// list (quoted names, no row filters: those need 15) with its leaf
// partitions, sorted, which is how PostgreSQL 12 publishes a partitioned
// table. A partition attached later is published once setup runs again
// (a restart, or modify-objects).
func publishedLeaves(ctx context.Context, conn *pgx.Conn, tables []string) ([]string, error) {
	if len(tables) == 0 {
		return tables, nil
	}
	rows, err := conn.Query(ctx, `
		SELECT coalesce('"' || replace(ln.nspname, '"', '""') || '"."' || replace(l.relname, '"', '""') || '"', t.name)
		FROM unnest($1::text[]) AS t(name)
		LEFT JOIN pg_class c ON c.oid = to_regclass(t.name) AND c.relkind = 'p'
		LEFT JOIN LATERAL pg_partition_tree(c.oid) pt ON pt.isleaf
		LEFT JOIN pg_class l ON l.oid = pt.relid AND l.relkind = 'r'
		LEFT JOIN pg_namespace ln ON ln.oid = l.relnamespace
		WHERE c.oid IS NULL OR l.oid IS NOT NULL`, tables)
	if err != nil {
		return nil, fmt.Errorf("listing the partitions of the selected partitioned tables: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing the partitions of the selected partitioned tables: %w", err)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// publishError explains the superuser rule, which PostgreSQL's own message
// ("must be superuser to create FOR ALL TABLES publication") leaves without
// a way out.
func publishError(conn *pgx.Conn, doing, quoted string, want pubTarget, err error) error {
	if pgsql.IsCode(err, "42501") && want.needsSuperuser() {
		role := conn.Config().User
		return status.Errorf(codes.PermissionDenied,
			"%s publication %s %s: %v; PostgreSQL lets only superusers publish whole schemas (objects.schemas, FOR TABLES IN SCHEMA) or the whole database (objects.whole_database, FOR ALL TABLES), and role %q is not one: run ALTER ROLE %s WITH SUPERUSER, or select the tables by name in objects.tables (a table created later is then captured only once modify-objects adds it)",
			doing, quoted, want.clause(), err, role, pgx.Identifier{role}.Sanitize())
	}
	return fmt.Errorf("%s publication %s: %w", doing, quoted, err)
}

// publicationTables reports whether the publication exists and the tables
// it names directly (none for FOR ALL TABLES; schemas are not listed).
func publicationTables(ctx context.Context, conn *pgx.Conn, name string) ([]string, bool, error) {
	st, err := readPublication(ctx, conn, name)
	return st.have.tables, st.exists, err
}
