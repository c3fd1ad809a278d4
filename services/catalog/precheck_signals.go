package catalog

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// signalTableVersion is PostgreSQL 14: before it pgoutput drops logical
// messages, and Ferry carries its heartbeats and full-sync watermarks
// through a table of its own instead (services/capture/signal).
const signalTableVersion = 140000

// filterTableVersion is PostgreSQL 15, which brought publication row
// filters; before it Ferry keeps a task's filters in its signal table.
const filterTableVersion = 150000

const signalTable = `"_ferry"."signals"`

// checkSignalTable says, before PostgreSQL 14 (or before 15 for a task
// with row filters, which Ferry keeps there), what setup will create and
// whether the role may: schema _ferry and table _ferry.signals need CREATE
// on the database, unless they exist and the role may write the table.
func checkSignalTable(ctx context.Context, conn *pgx.Conn, filters bool) *taskv1.PrecheckItem {
	const id = "signal_table"
	var version int
	var exists, canWrite, canCreate bool
	var role, db string
	err := conn.QueryRow(ctx, `
		SELECT current_setting('server_version_num')::int, to_regclass($1) IS NOT NULL,
		       coalesce((SELECT pg_has_role(relowner, 'USAGE') FROM pg_class WHERE oid = to_regclass($1)), false)
		       AND has_table_privilege(to_regclass($1), 'INSERT, UPDATE'),
		       has_database_privilege(current_database(), 'CREATE'), current_user::text, current_database()::text`,
		signalTable).Scan(&version, &exists, &canWrite, &canCreate, &role, &db)
	if err != nil {
		return queryFailed(id, err)
	}
	var why string
	switch {
	case version < signalTableVersion:
		why = fmt.Sprintf("before PostgreSQL 14 (the source runs server_version_num %d) pgoutput does not forward logical messages, so Ferry writes its heartbeats and full-sync watermarks as rows of %s, which it publishes with the task's tables and drops when the last task releases it", version, signalTable)
	case version < filterTableVersion && filters:
		why = fmt.Sprintf("before PostgreSQL 15 (the source runs server_version_num %d) Ferry evaluates row filters itself and keeps them as a row of %s, which it publishes with the task's tables and drops when the last task releases it", version, signalTable)
	case version < filterTableVersion:
		return pass(id, "PostgreSQL 14: heartbeats and watermarks are logical messages; Ferry creates no table unless the task has row filters")
	default:
		return pass(id, "PostgreSQL 15 or later: heartbeats and watermarks are logical messages and row filters are the publication's; Ferry creates no table")
	}
	switch {
	case exists && canWrite:
		return pass(id, why+fmt.Sprintf("; the table exists and role %q owns and may write it", role))
	case exists:
		return fail(id, why+fmt.Sprintf("; the table exists, but role %q does not own it (which publishing it needs) or may not insert into and update it", role),
			fmt.Sprintf("run ALTER TABLE %s OWNER TO %s", signalTable, pgx.Identifier{role}.Sanitize()))
	case canCreate:
		return pass(id, why+fmt.Sprintf("; setup will create schema _ferry and the table, which role %q may (CREATE on database %q)", role, db))
	}
	return fail(id, why+fmt.Sprintf("; setup must create schema _ferry and the table, and role %q lacks CREATE on database %q", role, db),
		fmt.Sprintf("run GRANT CREATE ON DATABASE %s TO %s, or as a superuser run CREATE SCHEMA _ferry AUTHORIZATION %s; then Ferry creates the table in it",
			pgx.Identifier{db}.Sanitize(), pgx.Identifier{role}.Sanitize(), pgx.Identifier{role}.Sanitize()))
}
