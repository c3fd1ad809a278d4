package catalog

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// tableFacts is what the per-table items need, read for all selected tables
// in one query.
type tableFacts struct {
	schema, table string
	replIdent     string // d, n, f or i
	canSelect     bool
	hasPK, hasKey bool
	hasIdentIndex bool     // an index marked as the replica identity exists
	toastable     []string // columns stored extended or external
	crossSchema   []string // "child inherits parent" across schemas
}

func (f *tableFacts) name() string { return pgx.Identifier{f.schema, f.table}.Sanitize() }

// selectedTables binds $1 and $2 (schema and table arrays) to pg_class rows.
const selectedTables = `
sel AS (
  SELECT c.oid, n.nspname, c.relname, c.relkind, c.relreplident, c.reltoastrelid, c.reltuples
  FROM unnest($1::text[], $2::text[]) AS s(nsp, rel)
  JOIN pg_namespace n ON n.nspname = s.nsp
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.rel)`

const tableFactsQuery = `WITH ` + selectedTables + `
SELECT nspname, relname, relreplident::text, has_table_privilege(sel.oid, 'SELECT'),
  EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = sel.oid AND i.indisprimary),
  EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = sel.oid AND (i.indisprimary OR (i.indisunique AND i.indimmediate))),
  EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = sel.oid AND i.indisreplident),
  ARRAY(SELECT a.attname::text FROM pg_attribute a
        WHERE a.attrelid = sel.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attstorage IN ('x', 'e') ORDER BY a.attnum),
  ARRAY(SELECT format('%I.%I inherits %I.%I', chn.nspname, ch.relname, pan.nspname, pa.relname)
        FROM pg_inherits h
        JOIN pg_class ch ON ch.oid = h.inhrelid JOIN pg_namespace chn ON chn.oid = ch.relnamespace
        JOIN pg_class pa ON pa.oid = h.inhparent JOIN pg_namespace pan ON pan.oid = pa.relnamespace
        WHERE (h.inhrelid = sel.oid OR h.inhparent = sel.oid) AND NOT ch.relispartition AND ch.relnamespace <> pa.relnamespace
        ORDER BY 1)
FROM sel ORDER BY 1, 2`

func tableArrays(tables []*taskv1.TableRef) (schemas, names []string) {
	for _, t := range tables {
		schemas = append(schemas, t.GetSchema())
		names = append(names, t.GetTable())
	}
	return schemas, names
}

func readTableFacts(ctx context.Context, conn *pgx.Conn, tables []*taskv1.TableRef) ([]*tableFacts, error) {
	schemas, names := tableArrays(tables)
	rows, err := conn.Query(ctx, tableFactsQuery, schemas, names)
	if err != nil {
		return nil, fmt.Errorf("reading the selected tables' definitions: %w", err)
	}
	var out []*tableFacts
	var f tableFacts
	_, err = pgx.ForEachRow(rows, []any{&f.schema, &f.table, &f.replIdent, &f.canSelect, &f.hasPK, &f.hasKey,
		&f.hasIdentIndex, &f.toastable, &f.crossSchema}, func() error {
		c := f
		out = append(out, &c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the selected tables' definitions: %w", err)
	}
	return out, nil
}

// checkTables resolves the selection, then judges every selected table with
// set-based queries, so thousands of tables take a handful of round trips.
func (s *Server) checkTables(ctx context.Context, conn *pgx.Conn, sel *taskv1.ObjectSelection) []*taskv1.PrecheckItem {
	tables, err := resolve(ctx, conn, sel)
	if err != nil {
		return []*taskv1.PrecheckItem{fail("objects", err.Error(), "fix the task's object selection")}
	}
	facts, err := readTableFacts(ctx, conn, tables)
	if err != nil {
		return []*taskv1.PrecheckItem{queryFailed("objects", err)}
	}
	items := []*taskv1.PrecheckItem{pass("objects", fmt.Sprintf("%d tables selected", len(tables)))}
	items = append(items, selectPrivilegeItem(facts), primaryKeyItem(facts), replicaIdentityItem(facts),
		toastItem(facts), inheritanceItem(facts), checkUnloggedTables(ctx, conn, sel))
	return append(items, s.checkRowSize(ctx, conn, tables))
}

// collect lists the names of the tables for which pick says something.
func collect(facts []*tableFacts, pick func(*tableFacts) string) []string {
	var out []string
	for _, f := range facts {
		if s := pick(f); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func selectPrivilegeItem(facts []*tableFacts) *taskv1.PrecheckItem {
	noSelect := collect(facts, func(f *tableFacts) string {
		if f.canSelect {
			return ""
		}
		return f.name()
	})
	if len(noSelect) > 0 {
		return fail("select_privilege", fmt.Sprintf("no SELECT privilege on %d tables: %s", len(noSelect), listNames(noSelect)),
			"GRANT SELECT on those tables to the task's user")
	}
	return pass("select_privilege", "SELECT granted on every selected table")
}

func primaryKeyItem(facts []*tableFacts) *taskv1.PrecheckItem {
	noKey := collect(facts, func(f *tableFacts) string {
		if f.hasKey {
			return ""
		}
		return f.name()
	})
	if len(noKey) > 0 {
		return warn("primary_key", fmt.Sprintf("%d tables without a primary key or unique key: %s; consumers may see duplicates and UPDATE/DELETE carry no key",
			len(noKey), listNames(noKey)),
			"add a primary key, or acknowledge this warning")
	}
	return pass("primary_key", "every selected table has a primary or unique key")
}

// replicaIdentityItem warns about tables whose replica identity is empty:
// DEFAULT without a primary key, NOTHING, or USING INDEX whose index is gone.
// Once such a table is in a publication that publishes UPDATE and DELETE,
// PostgreSQL refuses those statements on it.
func replicaIdentityItem(facts []*tableFacts) *taskv1.PrecheckItem {
	var fixes []string
	bad := collect(facts, func(f *tableFacts) string {
		var why string
		switch {
		case f.replIdent == "d" && !f.hasPK:
			why = "DEFAULT without a primary key"
		case f.replIdent == "n":
			why = "NOTHING"
		case f.replIdent == "i" && !f.hasIdentIndex:
			why = "USING INDEX, but the index is gone"
		default:
			return ""
		}
		if len(fixes) < 3 {
			fixes = append(fixes, "ALTER TABLE "+f.name()+" REPLICA IDENTITY FULL")
		}
		return f.name() + " (" + why + ")"
	})
	if len(bad) == 0 {
		return pass("replica_identity", "every selected table has a replica identity, so UPDATE and DELETE carry their old key")
	}
	return warn("replica_identity", fmt.Sprintf("%d tables have no replica identity: %s; once published, PostgreSQL refuses UPDATE and DELETE on them, and changes carry no before-image",
		len(bad), listNames(bad)),
		"give each a primary key, or run "+strings.Join(fixes, "; ")+" (or REPLICA IDENTITY USING INDEX on a unique index of NOT NULL columns)")
}

// toastItem warns about columns whose values can be stored out of line, on
// tables without REPLICA IDENTITY FULL: an UPDATE that leaves such a value
// alone ships it as "unchanged", which Canal JSON writes as null and DTS Avro
// as EmptyObject NONE.
func toastItem(facts []*tableFacts) *taskv1.PrecheckItem {
	bad := collect(facts, func(f *tableFacts) string {
		if f.replIdent == "f" || len(f.toastable) == 0 {
			return ""
		}
		return f.name() + "(" + strings.Join(f.toastable, ", ") + ")"
	})
	if len(bad) == 0 {
		return pass("toast", "no selected table can ship an unchanged TOASTed value: every table with TOAST-able columns has REPLICA IDENTITY FULL")
	}
	return warn("toast", fmt.Sprintf("%d tables have TOAST-able columns without REPLICA IDENTITY FULL: %s; an UPDATE that does not change such a value ships it as unchanged (null in Canal JSON, EmptyObject NONE in DTS Avro)",
		len(bad), listNames(bad)),
		"run ALTER TABLE ... REPLICA IDENTITY FULL on those tables (it makes every UPDATE and DELETE log the whole old row), or acknowledge this warning if consumers merge unchanged values themselves")
}

// inheritanceItem fails on legacy inheritance across schemas: a parent's
// reads include its children's rows, but their changes are published as the
// child's, in another schema than the selection expects.
func inheritanceItem(facts []*tableFacts) *taskv1.PrecheckItem {
	seen := map[string]bool{}
	var pairs []string
	for _, f := range facts {
		for _, p := range f.crossSchema {
			if !seen[p] {
				seen[p] = true
				pairs = append(pairs, p)
			}
		}
	}
	if len(pairs) == 0 {
		return pass("inheritance", "no selected table inherits across schemas")
	}
	return fail("inheritance", "tables inherit across schemas, which Ferry does not support (a parent's rows would include the child's, whose changes are published under the child's schema): "+listNames(pairs),
		"move the child into its parent's schema (ALTER TABLE ... SET SCHEMA), detach it (ALTER TABLE child NO INHERIT parent), or leave both out of the selection")
}

// checkUnloggedTables lists unlogged tables in the selected schemas (or the
// whole database): they are not in the WAL, so the selection skips them.
func checkUnloggedTables(ctx context.Context, conn *pgx.Conn, sel *taskv1.ObjectSelection) *taskv1.PrecheckItem {
	const id = "unlogged_tables"
	var schemas []string
	for _, s := range sel.GetSchemas() {
		schemas = append(schemas, s.GetSchema())
	}
	names, err := queryNames(ctx, conn, `
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relpersistence = 'u' AND c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
  AND ($1 OR n.nspname = ANY($2)) ORDER BY 1`, sel.GetWholeDatabase(), schemas)
	if err != nil {
		return queryFailed(id, err)
	}
	if len(names) == 0 {
		return pass(id, "no unlogged tables in the selected schemas")
	}
	return warn(id, "unlogged tables are not written to the WAL, so they are left out and their changes never captured: "+listNames(names),
		"run ALTER TABLE ... SET LOGGED on those that should be synchronized, or acknowledge this warning")
}
