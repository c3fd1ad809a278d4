package catalog

import (
	"context"

	"github.com/jackc/pgx/v5"

	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// readRole reads the session role's attributes. superuser and replication
// are the raw attributes: a superuser may replicate without REPLICATION.
func readRole(ctx context.Context, conn *pgx.Conn) (*catalogv1.GetPrivilegesResponse, error) {
	r := &catalogv1.GetPrivilegesResponse{}
	err := conn.QueryRow(ctx, `
SELECT rolname::text, rolsuper, rolreplication, has_database_privilege(current_database(), 'CREATE')
FROM pg_roles WHERE rolname = current_user`).Scan(&r.Role, &r.Superuser, &r.Replication, &r.CreateOnDatabase)
	return r, err
}

// GetPrivileges reports the role's attributes and, for the selected tables,
// SELECT and ownership. The selection is resolved like ResolveTables (a
// missing table is InvalidArgument naming it), and the tables are then read
// in one query, so a selection of 10,000 tables costs three round trips.
func (s *Server) GetPrivileges(ctx context.Context, req *catalogv1.GetPrivilegesRequest) (*catalogv1.GetPrivilegesResponse, error) {
	conn, ctx, done, err := connectSource(ctx, req.GetSource())
	if err != nil {
		return nil, err
	}
	defer done()
	res, err := readRole(ctx, conn)
	if err != nil {
		return nil, sourceError("reading the role's attributes", err)
	}
	sel := req.GetObjects()
	if !sel.GetWholeDatabase() && len(sel.GetSchemas()) == 0 && len(sel.GetTables()) == 0 {
		return res, nil
	}
	tables, err := resolve(ctx, conn, sel)
	if err != nil {
		return nil, err
	}
	if res.Tables, err = tablePrivileges(ctx, conn, tables); err != nil {
		return nil, sourceError("reading the privileges on the selected tables", err)
	}
	return res, nil
}

// tablePrivileges reads SELECT and ownership of the tables, sorted by
// schema and table. Owner means what ALTER PUBLICATION ... ADD TABLE checks:
// the role owns the table or inherits the owner's privileges.
func tablePrivileges(ctx context.Context, conn *pgx.Conn, tables []*taskv1.TableRef) ([]*catalogv1.TablePrivilege, error) {
	schemas, names := tableArrays(tables)
	rows, err := conn.Query(ctx, `WITH `+selectedTables+`
SELECT sel.nspname::text, sel.relname::text, has_table_privilege(sel.oid, 'SELECT'), pg_has_role(c.relowner, 'USAGE')
FROM sel JOIN pg_class c ON c.oid = sel.oid
ORDER BY 1, 2`, schemas, names)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*catalogv1.TablePrivilege, error) {
		ref := &taskv1.TableRef{}
		p := &catalogv1.TablePrivilege{Table: ref}
		return p, row.Scan(&ref.Schema, &ref.Table, &p.Select, &p.Owner)
	})
}
