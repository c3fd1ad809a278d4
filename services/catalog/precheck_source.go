package catalog

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func warn(id, msg, fix string) *taskv1.PrecheckItem {
	return item(id, taskv1.Severity_SEVERITY_WARN, msg, fix)
}

// checkDatabaseName warns about characters that Ferry handles but tools
// downstream often do not. Ferry quotes the name everywhere (URL-escaped in
// its connection strings, a parameter in SQL, "\u002E" for dots in DTS Avro's
// objectName), so the task runs; what breaks is a consumer that splits
// "database.schema.table" at dots or pastes the name into a shell or a
// connection string. That is the user's call, hence a warning they can
// acknowledge rather than a failure that would block a database they cannot
// rename.
func checkDatabaseName(ctx context.Context, conn *pgx.Conn) *taskv1.PrecheckItem {
	const id = "database_name"
	var name string
	if err := conn.QueryRow(ctx, `SELECT current_database()`).Scan(&name); err != nil {
		return queryFailed(id, err)
	}
	if bad := unsafeNameChars(name); bad != "" {
		return warn(id, fmt.Sprintf("the database name %q contains %s, which consumers that parse names or build connection strings and shell commands from them may mishandle", name, bad),
			"rename the database (ALTER DATABASE ... RENAME TO) to letters, digits, '_', '-' and '$', or acknowledge this warning if every consumer takes names verbatim")
	}
	return pass(id, fmt.Sprintf("the database name %q is safe", name))
}

// unsafeNameChars describes the characters of name outside letters, digits,
// '_', '-' and '$' (hyphens are explicitly supported by the task spec), or
// returns "" when there are none.
func unsafeNameChars(name string) string {
	var bad []string
	seen := map[rune]bool{}
	for _, r := range name {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-' || r == '$' || seen[r] {
			continue
		}
		seen[r] = true
		switch {
		case unicode.IsSpace(r):
			bad = append(bad, "whitespace")
		case unicode.IsControl(r):
			bad = append(bad, fmt.Sprintf("control character %U", r))
		default:
			bad = append(bad, fmt.Sprintf("%q", r))
		}
	}
	return strings.Join(bad, ", ")
}

// haSettings are the server facts behind the high-availability items.
type haSettings struct {
	versionNum           int
	standby              bool
	hotStandby, feedback string
	syncSlots            *string // nil before PostgreSQL 17
}

func checkHighAvailability(ctx context.Context, conn *pgx.Conn) []*taskv1.PrecheckItem {
	var h haSettings
	err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, pg_is_in_recovery(),
       current_setting('hot_standby'), current_setting('hot_standby_feedback'), current_setting('sync_replication_slots', true)`).
		Scan(&h.versionNum, &h.standby, &h.hotStandby, &h.feedback, &h.syncSlots)
	if err != nil {
		return []*taskv1.PrecheckItem{queryFailed("hot_standby", err)}
	}
	return haItems(h)
}

// haItems judges the settings as read on the source. On a primary the three
// settings only matter for the standbys built from its configuration, and
// each standby reads its own; the messages say so.
func haItems(h haSettings) []*taskv1.PrecheckItem {
	version := fmt.Sprintf("PostgreSQL %d", h.versionNum/10000)
	var out []*taskv1.PrecheckItem
	if h.hotStandby == "on" {
		out = append(out, pass("hot_standby", "hot_standby is on: standbys configured like this server accept read-only sessions"))
	} else {
		out = append(out, warn("hot_standby", "hot_standby is "+h.hotStandby+": a standby configured like this server refuses connections, so Ferry cannot be pointed at it and it cannot synchronize logical slots",
			"set hot_standby = on (the default) on the standbys and restart them"))
	}
	switch {
	case h.feedback == "on":
		out = append(out, pass("hot_standby_feedback", "hot_standby_feedback is on"))
	case h.standby:
		out = append(out, warn("hot_standby_feedback", "the source is a standby with hot_standby_feedback off: the primary may vacuum catalog rows that Ferry's slot still needs, which invalidates the slot",
			"on this standby run ALTER SYSTEM SET hot_standby_feedback = on; SELECT pg_reload_conf(); and give it a physical slot on the primary (primary_slot_name)"))
	case h.syncSlots != nil:
		out = append(out, warn("hot_standby_feedback", "hot_standby_feedback is off: standbys configured like this server cannot synchronize logical slots, so a failover loses Ferry's slot",
			"set hot_standby_feedback = on on the standbys (with sync_replication_slots = on)"))
	default:
		out = append(out, pass("hot_standby_feedback", "hot_standby_feedback is off; it has no effect on a primary, and "+version+" standbys keep no logical slots (see sync_replication_slots)"))
	}
	out = append(out, syncSlotsItem(h, version))
	return out
}

// syncSlotsItem warns, rather than passes, when the server cannot synchronize
// slots at all: a failover then loses Ferry's slot and with it every change
// until a new full sync. That is a real risk with no setting to fix it, which
// is exactly what an acknowledged warning records.
func syncSlotsItem(h haSettings, version string) *taskv1.PrecheckItem {
	const id = "sync_replication_slots"
	switch {
	case h.syncSlots == nil:
		return warn(id, "sync_replication_slots is not available on "+version+" (it came with PostgreSQL 17): standbys do not keep logical replication slots, so after a failover Ferry's slot is gone and the task needs a new full sync",
			"upgrade to PostgreSQL 17 or later for failover slots, or acknowledge this warning and recreate the task with sync_types.full after a failover")
	case *h.syncSlots == "on":
		return pass(id, "sync_replication_slots is on: standbys configured like this server synchronize logical slots created with the failover option")
	default:
		return warn(id, "sync_replication_slots is off: standbys configured like this server do not synchronize logical slots, so a failover loses Ferry's slot",
			"on each standby set sync_replication_slots = on, hot_standby_feedback = on and primary_slot_name; on the primary list those physical slots in synchronized_standby_slots")
	}
}

// checkLongTransactions warns about transactions open longer than maxAge that
// hold an xid or a snapshot: creating the slot waits for every transaction
// with an xid to end, and they hold back the horizon the snapshot and the
// slot start from. Sessions of other roles are only visible with
// pg_read_all_stats; the item says when some were hidden.
func checkLongTransactions(ctx context.Context, conn *pgx.Conn, maxAge time.Duration) *taskv1.PrecheckItem {
	const id = "long_transactions"
	rows, err := conn.Query(ctx, `
SELECT pid, extract(epoch FROM now() - xact_start)::float8, coalesce(usename, ''), coalesce(datname, ''),
       coalesce(application_name, ''), coalesce(state, ''), count(*) OVER ()
FROM pg_stat_activity
WHERE xact_start < now() - make_interval(secs => $1) AND pid <> pg_backend_pid()
  AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL)
ORDER BY xact_start LIMIT 5`, maxAge.Seconds())
	if err != nil {
		return queryFailed(id, err)
	}
	var open []string
	var total int
	var pid int
	var age float64
	var user, db, app, state string
	if _, err := pgx.ForEachRow(rows, []any{&pid, &age, &user, &db, &app, &state, &total}, func() error {
		open = append(open, fmt.Sprintf("pid %d open for %s (user %q, database %q, application %q, %s)",
			pid, (time.Duration(age)*time.Second).String(), user, db, app, state))
		return nil
	}); err != nil {
		return queryFailed(id, err)
	}
	hidden, err := hiddenSessions(ctx, conn)
	if err != nil {
		return queryFailed(id, err)
	}
	if len(open) == 0 {
		return pass(id, fmt.Sprintf("no transaction has been open longer than %s%s", maxAge, hidden))
	}
	return warn(id, fmt.Sprintf("%d transactions have been open longer than %s, oldest first: %s%s",
		total, maxAge, strings.Join(open, "; "), hidden),
		"end those transactions (COMMIT, or SELECT pg_terminate_backend(pid)) before starting the task: creating the slot waits for them and they hold back its snapshot")
}

// hiddenSessions notes how many sessions the precheck could not see.
func hiddenSessions(ctx context.Context, conn *pgx.Conn) (string, error) {
	var hidden int
	err := conn.QueryRow(ctx, `
SELECT count(*) FROM pg_stat_activity
WHERE usesysid IS NOT NULL AND NOT pg_has_role(usesysid, 'USAGE') AND NOT pg_has_role('pg_read_all_stats', 'USAGE')`).Scan(&hidden)
	if err != nil || hidden == 0 {
		return "", err
	}
	return fmt.Sprintf(" (the transactions of %d sessions of other roles are hidden from this role; GRANT pg_read_all_stats to it so the precheck sees them)", hidden), nil
}

// checkTemporaryTables lists the database's temporary tables: logical
// decoding never sees them, so writes an application makes to one (for
// example one that shadows a selected table) never reach Kafka.
func checkTemporaryTables(ctx context.Context, conn *pgx.Conn) *taskv1.PrecheckItem {
	const id = "temporary_tables"
	names, err := queryNames(ctx, conn, `
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relpersistence = 't' AND c.relkind IN ('r', 'p') ORDER BY 1`)
	if err != nil {
		return queryFailed(id, err)
	}
	if len(names) == 0 {
		return pass(id, "no temporary tables")
	}
	return warn(id, "temporary tables are never captured (logical decoding skips them): "+listNames(names),
		"write the data to be synchronized to permanent tables, or acknowledge this warning")
}

// queryNames runs a query that returns one name per row.
func queryNames(ctx context.Context, conn *pgx.Conn, sql string, args ...any) ([]string, error) {
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// listNames joins names for a message, at most maxListed of them.
func listNames(names []string) string {
	if len(names) <= maxListed {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:maxListed], ", "), len(names)-maxListed)
}

// maxListed keeps messages (which the workflow keeps in its state) short on
// selections of thousands of tables.
const maxListed = 20
