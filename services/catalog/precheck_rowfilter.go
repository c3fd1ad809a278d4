package catalog

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/internal/rowfilter"
)

// checkRowFilters fails the filters (objects.tables[].filter) setup would
// refuse: conditions PostgreSQL does not accept as publication row filters,
// and conditions on columns outside the table's replica identity, which
// would make PostgreSQL refuse every UPDATE and DELETE the application runs
// on the table. rowfilter.Check asks the source itself, with a scratch
// publication in a transaction it rolls back; before PostgreSQL 15, where
// Ferry evaluates filters itself, it also refuses what Ferry cannot
// evaluate exactly, naming the construct.
func checkRowFilters(ctx context.Context, conn *pgx.Conn, sel *taskv1.ObjectSelection) *taskv1.PrecheckItem {
	const id = "row_filter"
	whole := map[string]bool{}
	for _, sc := range sel.GetSchemas() {
		whole[sc.GetSchema()] = true
	}
	var problems, fixes []string
	n := 0
	for i, t := range sel.GetTables() {
		filter := strings.TrimSpace(t.GetFilter())
		if filter == "" {
			continue
		}
		n++
		schema := cmp.Or(t.GetSchema(), "public")
		name := pgx.Identifier{schema, t.GetTable()}.Sanitize()
		field := fmt.Sprintf("objects.tables[%d]", i)
		if sel.GetWholeDatabase() || whole[schema] {
			problems = append(problems, fmt.Sprintf("%s: %s is published with the whole database or its schema, which PostgreSQL publishes unfiltered", field, name))
			fixes = append(fixes, "select the tables to filter by name, not their schema or the whole database")
			continue
		}
		_, err := rowfilter.Check(ctx, conn, schema, t.GetTable(), filter)
		var fe *rowfilter.Error
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
		case errors.As(err, &fe):
			problems = append(problems, fmt.Sprintf("%s: filter %q of %s: %s", field, fe.Filter, fe.Table, fe.Reason))
			fixes = append(fixes, fe.Fix)
		case errors.As(err, &pgErr) && pgErr.Code == "42501":
			problems = append(problems, fmt.Sprintf("%s: could not check the filter of %s: %v", field, name, err))
			fixes = append(fixes, "make the task's role the owner of "+name+": PostgreSQL lets only a table's owner publish it")
		default:
			problems = append(problems, fmt.Sprintf("%s: could not check the filter of %s: %v", field, name, err))
			fixes = append(fixes, "run the precheck again once the source answers")
		}
	}
	switch {
	case n == 0:
		return pass(id, "no table has a filter")
	case len(problems) > 0:
		return fail(id, strings.Join(problems, "; "), strings.Join(fixes, "; "))
	}
	return pass(id, fmt.Sprintf("%d filters are conditions on replica identity columns, which %s", n, filterEvaluator(ctx, conn)))
}

// filterEvaluator says who evaluates the filters on this source.
func filterEvaluator(ctx context.Context, conn *pgx.Conn) string {
	var version int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err == nil && version < filterTableVersion {
		return "Ferry evaluates itself before PostgreSQL 15, exactly as PostgreSQL would"
	}
	return "PostgreSQL evaluates as publication row filters"
}

// hasFilters reports whether any selected table has a filter.
func hasFilters(sel *taskv1.ObjectSelection) bool {
	for _, t := range sel.GetTables() {
		if strings.TrimSpace(t.GetFilter()) != "" {
			return true
		}
	}
	return false
}
