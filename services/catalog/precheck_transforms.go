package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/transform"
)

// transformColumns describes a table's columns as capture's relations do,
// so that transforms compile here exactly as delivery compiles them.
const transformColumns = `
SELECT a.attname::text, a.atttypid, format_type(a.atttypid, a.atttypmod), a.atttypmod,
  COALESCE(a.attnum = ANY(i.indkey), false),
  CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END,
  c.relreplident::text
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE n.nspname = $1 AND c.relname = $2
ORDER BY a.attnum`

// checkTransforms compiles every selected table's transforms against the
// table's real columns and types, failing with the table, the transform's
// position and CEL's message.
func checkTransforms(ctx context.Context, conn *pgx.Conn, sel *taskv1.ObjectSelection) *taskv1.PrecheckItem {
	if !transform.Any(sel) {
		return pass(transform.PrecheckID, "no row transforms")
	}
	tables, err := resolve(ctx, conn, sel)
	if err != nil {
		return fail(transform.PrecheckID, err.Error(), "fix the task's object selection")
	}
	var problems []string
	n := 0
	for _, t := range tables {
		ts := transform.For(sel, t.GetSchema(), t.GetTable())
		if len(ts) == 0 {
			continue
		}
		n++
		rel, err := describeRelation(ctx, conn, t.GetSchema(), t.GetTable())
		if err != nil {
			return queryFailed(transform.PrecheckID, err)
		}
		var te *transform.Error
		if _, err := transform.Compile(rel, ts); errors.As(err, &te) {
			problems = append(problems, te.Error())
		} else if err != nil {
			problems = append(problems, fmt.Sprintf("table %s.%s: %v", t.GetSchema(), t.GetTable(), err))
		}
	}
	if len(problems) > 0 {
		return fail(transform.PrecheckID, strings.Join(problems, "; "),
			"fix the expressions: positions count the task's transforms first, then the schema's, then the table's")
	}
	return pass(transform.PrecheckID, fmt.Sprintf("the transforms of %d tables compile against their columns", n))
}

func describeRelation(ctx context.Context, conn *pgx.Conn, schema, table string) (*cdcv1.Relation, error) {
	rows, err := conn.Query(ctx, transformColumns, schema, table)
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %s.%s: %w", schema, table, err)
	}
	rel := &cdcv1.Relation{Schema: schema, Table: table}
	var c cdcv1.Column
	var ident string
	_, err = pgx.ForEachRow(rows, []any{&c.Name, &c.TypeOid, &c.TypeName, &c.TypeModifier, &c.Key, &c.BaseTypeOid, &ident}, func() error {
		col := &cdcv1.Column{Name: c.Name, TypeOid: c.TypeOid, TypeName: c.TypeName, TypeModifier: c.TypeModifier, Key: c.Key, BaseTypeOid: c.BaseTypeOid}
		rel.Columns = append(rel.Columns, col)
		if col.Key {
			rel.KeyColumns = append(rel.KeyColumns, col.Name)
		}
		if ident == "f" {
			rel.ReplicaIdentity = cdcv1.ReplicaIdentity_REPLICA_IDENTITY_FULL
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %s.%s: %w", schema, table, err)
	}
	return rel, nil
}
