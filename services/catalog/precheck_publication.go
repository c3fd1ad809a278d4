package catalog

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// schemaPublicationVersion is PostgreSQL 15, which brought FOR TABLES IN
// SCHEMA.
const schemaPublicationVersion = 150000

// checkPublicationPrivilege fails a selection the task's publication cannot
// express for this role and server: objects.whole_database publishes FOR
// ALL TABLES and objects.schemas FOR TABLES IN SCHEMA (so that tables
// created later are captured), both of which PostgreSQL allows only a
// superuser, and the latter only from PostgreSQL 15. Caught here, the task
// never starts instead of failing at setup.
func checkPublicationPrivilege(ctx context.Context, conn *pgx.Conn, sel *taskv1.ObjectSelection) *taskv1.PrecheckItem {
	const id = "publication_privilege"
	whole, schemas := sel.GetWholeDatabase(), len(sel.GetSchemas()) > 0
	if !whole && !schemas {
		return pass(id, "the publication names the selected tables, which needs no superuser")
	}
	r, err := readRole(ctx, conn)
	if err != nil {
		return queryFailed(id, err)
	}
	var version int
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		return queryFailed(id, err)
	}
	what := "the whole database (FOR ALL TABLES)"
	if !whole {
		names := make([]string, len(sel.GetSchemas()))
		for i, s := range sel.GetSchemas() {
			names[i] = pgx.Identifier{s.GetSchema()}.Sanitize()
		}
		what = "schemas " + listNames(names) + " (FOR TABLES IN SCHEMA)"
		if version < schemaPublicationVersion {
			return fail(id, fmt.Sprintf("objects.schemas selects %s, which needs PostgreSQL 15 or later; the source runs server_version_num %d", what, version),
				"select the tables in objects.tables (a table created later is then captured only once modify-objects adds it), or select the whole database, or upgrade to PostgreSQL 15")
		}
	}
	if !r.GetSuperuser() {
		role := pgx.Identifier{r.GetRole()}.Sanitize()
		return fail(id, fmt.Sprintf("the task publishes %s so that tables created later are captured, which PostgreSQL allows only superusers, and role %q is not one", what, r.GetRole()),
			"run ALTER ROLE "+role+" WITH SUPERUSER as a superuser, or select the tables in objects.tables instead (a table created later is then captured only once modify-objects adds it)")
	}
	return pass(id, fmt.Sprintf("role %q is a superuser and may publish %s", r.GetRole(), what))
}
