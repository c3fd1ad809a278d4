package catalog

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// The shared server's role is no superuser: whole-database and whole-schema
// selections fail with the fix, tables pass; as the superuser all pass.
func TestPrecheckPublicationPrivilege(t *testing.T) {
	schema := testenv.UniqueName("pub_priv")
	whole := &taskv1.ObjectSelection{WholeDatabase: true}
	schemas := &taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: schema}}}
	tables := &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: schema, Table: "t"}}}
	ctx := context.Background()

	role := testenv.Source(t).GetUser()
	conn := testenv.PG(t)
	for _, tc := range []struct {
		sel  *taskv1.ObjectSelection
		want []string
	}{
		{whole, []string{"the whole database (FOR ALL TABLES)", `role "` + role + `" is not one`}},
		{schemas, []string{`schemas "` + schema + `" (FOR TABLES IN SCHEMA)`, `role "` + role + `" is not one`}},
	} {
		it := checkPublicationPrivilege(ctx, conn, tc.sel)
		expect(t, map[string]*taskv1.PrecheckItem{it.GetId(): it}, "publication_privilege", sevFail, tc.want)
		if fix := it.GetFix(); !strings.Contains(fix, "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" WITH SUPERUSER") || !strings.Contains(fix, "objects.tables") {
			t.Errorf("fix %q lacks the ALTER ROLE or the alternative", fix)
		}
	}
	it := checkPublicationPrivilege(ctx, conn, tables)
	expect(t, map[string]*taskv1.PrecheckItem{it.GetId(): it}, "publication_privilege", sevPass, []string{"needs no superuser"})

	super := superPG(t)
	for _, sel := range []*taskv1.ObjectSelection{whole, schemas} {
		it := checkPublicationPrivilege(ctx, super, sel)
		expect(t, map[string]*taskv1.PrecheckItem{it.GetId(): it}, "publication_privilege", sevPass, []string{"is a superuser"})
	}
}

// Precheck reports the item, so a task selecting a schema as the shared
// server's role never starts.
func TestPrecheckFailsSchemasWithoutSuperuser(t *testing.T) {
	conn := testenv.PG(t)
	schema := testenv.UniqueName("pub_priv")
	testenv.Exec(t, conn, `CREATE SCHEMA `+schema, `CREATE TABLE `+schema+`.t (id int PRIMARY KEY)`)
	t.Cleanup(func() { testenv.Exec(t, conn, `DROP SCHEMA `+schema+` CASCADE`) })
	items := precheckItems(t, NewServer(slog.Default()), testenv.Source(t),
		&taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: schema}}})
	expect(t, items, "publication_privilege", sevFail, []string{schema, "FOR TABLES IN SCHEMA"})
	expect(t, items, "objects", sevPass, []string{"1 tables selected"})
}
