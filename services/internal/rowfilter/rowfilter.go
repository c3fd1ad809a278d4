// Package rowfilter checks a task's per-table filter (objects.tables[].filter)
// the way PostgreSQL will use it: as the row filter of the task's
// publication (CREATE PUBLICATION ... FOR TABLE t WHERE (...), PostgreSQL 15
// and later), which the server applies to the stream and Ferry's snapshots
// apply as a WHERE clause.
//
// PostgreSQL parses and type-checks a row filter when it is set, but checks
// its columns only later, at each UPDATE and DELETE on the table: a filter
// that uses a column outside the replica identity makes every UPDATE and
// DELETE of the application fail with "cannot update table". Check finds
// that out first, without a SQL parser of its own: it creates a scratch
// publication with the filter in a transaction it rolls back, and reads
// what PostgreSQL recorded, namely the filter's deparsed expression
// (pg_get_expr of pg_publication_rel.prqual) and the columns it depends on
// (pg_depend, one row per column).
package rowfilter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// MinServerVersion is PostgreSQL 15, which brought publication row filters.
const MinServerVersion = 150000

// lockTimeout bounds the wait for the table's lock: CREATE PUBLICATION takes
// SHARE UPDATE EXCLUSIVE, which a long ALTER TABLE or VACUUM FULL holds off.
const lockTimeout = 10 * time.Second

// Kind says why a filter was refused.
type Kind int

const (
	// Invalid: PostgreSQL does not accept the text as a row filter.
	Invalid Kind = iota + 1
	// Identity: the filter uses columns outside the replica identity.
	Identity
	// Unsupported: before PostgreSQL 15, a construct Ferry cannot
	// evaluate exactly.
	Unsupported
	// Missing: the table does not exist.
	Missing
)

// Error is a filter refused for what it says, not for a failure to check it.
type Error struct {
	Kind   Kind
	Table  string // quoted schema.table
	Filter string
	Reason string
	Fix    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("filter %q of table %s: %s; %s", e.Filter, e.Table, e.Reason, e.Fix)
}

// Checked is a filter PostgreSQL accepted for a table.
type Checked struct {
	// Expr is PostgreSQL's own rendering of the filter: one expression of
	// columns, constants, built-in operators and immutable built-in
	// functions, whatever the text held. Ferry writes Expr, never the
	// user's text, into the publication.
	Expr string
	// Columns are the columns the filter uses, in the table's order.
	Columns []string
}

// Check checks filter as the row filter of table schema.table on conn, which
// must not be inside a transaction. A refused filter is an *Error; any other
// error (a lost connection, a role that may not publish the table) is the
// check failing.
func Check(ctx context.Context, conn *pgx.Conn, schema, table, filter string) (Checked, error) {
	quoted := pgx.Identifier{schema, table}.Sanitize()
	refuse := func(kind Kind, reason, fix string) error {
		return &Error{Kind: kind, Table: quoted, Filter: filter, Reason: reason, Fix: fix}
	}
	if strings.TrimSpace(filter) == "" {
		return Checked{}, refuse(Invalid, "the filter is empty", "write a condition over the table's columns, or leave filter unset to take every row")
	}
	var version int
	var oid *uint32
	err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, to_regclass($1)::oid`, quoted).Scan(&version, &oid)
	if err != nil {
		return Checked{}, fmt.Errorf("looking up table %s: %w", quoted, err)
	}
	if oid == nil {
		return Checked{}, refuse(Missing, "the table does not exist", "create it, or remove it from the task")
	}
	if version < MinServerVersion {
		return checkEvaluated(ctx, conn, *oid, quoted, filter, refuse)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return Checked{}, fmt.Errorf("checking the filter of table %s: %w", quoted, err)
	}
	// Nothing the check does may stay: the scratch publication goes with it.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	c, err := scratch(ctx, tx, *oid, quoted, filter)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && refusesFilter(pgErr) {
			return Checked{}, refuse(Invalid, "PostgreSQL does not accept it as a publication row filter: "+describe(pgErr),
				"write one boolean condition over the table's own columns, with constants, built-in operators and immutable built-in functions only (no subqueries, user-defined functions or types, or system columns), e.g. id > 1000 or region = 'eu'")
		}
		if errors.Is(err, errNotOneCondition) {
			return Checked{}, refuse(Invalid, err.Error(), "write one condition, without unbalanced parentheses")
		}
		return Checked{}, fmt.Errorf("checking the filter of table %s: %w", quoted, err)
	}
	if bad, err := outsideIdentity(ctx, tx, *oid, c.Columns); err != nil {
		return Checked{}, fmt.Errorf("reading the replica identity of %s: %w", quoted, err)
	} else if len(bad) > 0 {
		return Checked{}, refuse(Identity, bad.reason(), bad.fix(quoted))
	}
	return c, nil
}

var errNotOneCondition = errors.New("the filter reaches outside its own WHERE clause")

// scratch creates the scratch publication and reads back what PostgreSQL
// made of the filter. The statement goes over the extended protocol, which
// carries exactly one statement, so no text in the filter can run another.
// The newline lets a filter end in a -- comment.
func scratch(ctx context.Context, tx pgx.Tx, oid uint32, quoted, filter string) (Checked, error) {
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", lockTimeout.Milliseconds())); err != nil {
		return Checked{}, err
	}
	suffix := make([]byte, 8)
	_, _ = rand.Read(suffix)
	name := "ferry_filter_check_" + hex.EncodeToString(suffix)
	sql := fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s WHERE (%s\n) WITH (publish_via_partition_root = true)", name, quoted, filter)
	if _, err := tx.Conn().PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Close(); err != nil {
		return Checked{}, err
	}
	// A filter like "true), TABLE other WHERE (true" parses, and adds
	// tables or schemas to the scratch publication: only the table and
	// the children that inherit its filter may be in it.
	var c Checked
	var strays int
	err := tx.QueryRow(ctx, `
		WITH RECURSIVE tree(oid) AS (
		  SELECT $2::oid UNION SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid),
		pub AS (SELECT oid FROM pg_publication WHERE pubname = $1)
		SELECT coalesce(pg_get_expr(r.prqual, r.prrelid), ''),
		  ARRAY(SELECT a.attname::text FROM pg_depend d
		        JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
		        WHERE d.classid = 'pg_publication_rel'::regclass AND d.objid = r.oid
		          AND d.refclassid = 'pg_class'::regclass AND d.refobjid = r.prrelid AND d.refobjsubid > 0
		        ORDER BY a.attnum),
		  (SELECT count(*) FROM pg_publication_rel o JOIN pub ON o.prpubid = pub.oid WHERE o.prrelid NOT IN (SELECT oid FROM tree))
		  + (SELECT count(*) FROM pg_publication_namespace n JOIN pub ON n.pnpubid = pub.oid)
		FROM pg_publication_rel r JOIN pub ON r.prpubid = pub.oid
		WHERE r.prrelid = $2`, name, oid).Scan(&c.Expr, &c.Columns, &strays)
	if err != nil {
		return Checked{}, fmt.Errorf("reading the scratch publication %s: %w", name, err)
	}
	if strays > 0 || c.Expr == "" {
		return Checked{}, errNotOneCondition
	}
	return c, nil
}

// refusesFilter tells PostgreSQL's verdicts on the filter (syntax, unknown
// columns, types, disallowed functions, bad constants) from failures to
// check it (privileges, locks, a server going away).
func refusesFilter(e *pgconn.PgError) bool {
	switch {
	case e.Code == "42501": // insufficient_privilege: the role, not the filter
		return false
	case strings.HasPrefix(e.Code, "42"), strings.HasPrefix(e.Code, "22"), e.Code == "0A000":
		return true
	}
	return false
}

// describe is PostgreSQL's message with its detail and hint; the error's
// position points into the scratch statement, not the filter, so it is left
// out.
func describe(e *pgconn.PgError) string {
	msg := e.Message
	if e.Detail != "" {
		msg += " (" + strings.TrimSuffix(e.Detail, ".") + ")"
	}
	if e.Hint != "" {
		msg += " (hint: " + strings.TrimSuffix(e.Hint, ".") + ")"
	}
	return msg
}

// identityGap is, per table that stores the rows (the table itself, or the
// partitions or children of a parent), the filter's columns outside its
// replica identity.
type identityGap []relationGap

type relationGap struct {
	name     string // quoted
	ident    string // what the replica identity is
	identity []string
	missing  []string
}

// outsideIdentity compares the filter's columns, by name as partitions and
// children match them, with the replica identity of every table PostgreSQL
// checks the filter against: the one an UPDATE or DELETE changes, so the
// leaf partitions of a partitioned table, and the table and its children
// otherwise.
func outsideIdentity(ctx context.Context, tx pgx.Tx, oid uint32, columns []string) (identityGap, error) {
	if len(columns) == 0 {
		return nil, nil
	}
	rows, err := tx.Query(ctx, `
		WITH RECURSIVE tree(oid) AS (
		  SELECT $1::oid UNION SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid)
		SELECT n.nspname::text, c.relname::text, c.relreplident::text,
		  (SELECT ic.relname::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
		   WHERE i.indrelid = c.oid AND CASE c.relreplident WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident ELSE false END),
		  ARRAY(SELECT a.attname::text FROM pg_index i
		        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
		        WHERE i.indrelid = c.oid AND CASE c.relreplident WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident ELSE false END
		        ORDER BY array_position(i.indkey::int2[], a.attnum))
		FROM tree JOIN pg_class c ON c.oid = tree.oid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r'
		ORDER BY tree.oid <> $1, 1`, oid)
	if err != nil {
		return nil, err
	}
	var gaps identityGap
	var g relationGap
	var schema, table, replident string
	var index *string
	_, err = pgx.ForEachRow(rows, []any{&schema, &table, &replident, &index, &g.identity}, func() error {
		if replident == "f" {
			return nil
		}
		g.name = pgx.Identifier{schema, table}.Sanitize()
		g.ident = identityName(replident, index)
		g.missing = nil
		for _, col := range columns {
			if !slices.Contains(g.identity, col) {
				g.missing = append(g.missing, col)
			}
		}
		if len(g.missing) > 0 {
			gaps = append(gaps, g)
		}
		return nil
	})
	return gaps, err
}

func identityName(replident string, index *string) string {
	switch {
	case replident == "n":
		return "REPLICA IDENTITY NOTHING"
	case index == nil && replident == "d":
		return "none: DEFAULT without a primary key"
	case index == nil:
		return "none: its index is gone"
	case replident == "d":
		return "the primary key " + pgx.Identifier{*index}.Sanitize()
	}
	return "index " + pgx.Identifier{*index}.Sanitize()
}

func (gaps identityGap) reason() string {
	var parts []string
	for _, g := range gaps {
		key := ""
		if len(g.identity) > 0 {
			key = " (" + strings.Join(g.identity, ", ") + ")"
		}
		parts = append(parts, fmt.Sprintf("column(s) %s not in the replica identity of %s, which is %s%s",
			strings.Join(g.missing, ", "), g.name, g.ident, key))
	}
	return "it uses " + strings.Join(parts, "; ") +
		`. PostgreSQL would then refuse every UPDATE and DELETE on the table ("cannot update table ... Column used in the publication WHERE expression is not part of the replica identity"), so Ferry does not set it`
}

func (gaps identityGap) fix(quoted string) string {
	var alters []string
	for _, g := range gaps {
		alters = append(alters, "ALTER TABLE "+g.name+" REPLICA IDENTITY FULL")
	}
	fix := "filter on replica identity columns only"
	if len(gaps[0].identity) > 0 {
		fix += " (" + strings.Join(gaps[0].identity, ", ") + ")"
	}
	return fix + ", or run " + strings.Join(alters, "; ") +
		" (every UPDATE and DELETE then writes the whole old row to the WAL), and keep that replica identity while " + quoted + " has the filter"
}
