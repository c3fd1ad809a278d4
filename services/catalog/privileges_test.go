package catalog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

func TestGetPrivileges(t *testing.T) {
	conn := testenv.PG(t)
	s := testenv.UniqueName("privs")
	testenv.Exec(t, conn,
		`CREATE SCHEMA `+s,
		`CREATE TABLE `+s+`.own (id int)`,
		`CREATE TABLE `+s+`.own_revoked (id int)`,
		`REVOKE SELECT ON `+s+`.own_revoked FROM CURRENT_USER`)
	t.Cleanup(func() { testenv.Exec(t, conn, `DROP SCHEMA `+s+` CASCADE`) })
	// Tables of another role, one of them readable by the task's role.
	testenv.Exec(t, superPG(t),
		`CREATE TABLE `+s+`.theirs (id int)`,
		`CREATE TABLE `+s+`.theirs_granted (id int)`,
		`GRANT SELECT ON `+s+`.theirs_granted TO `+testenv.Source(t).GetUser())
	srv := NewServer(slog.Default())

	res, err := srv.GetPrivileges(context.Background(), &catalogv1.GetPrivilegesRequest{
		Source:  testenv.Source(t),
		Objects: &taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: s}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The local stack's role replicates and owns its database, without being
	// a superuser.
	if res.GetRole() != testenv.Source(t).GetUser() || res.GetSuperuser() || !res.GetReplication() || !res.GetCreateOnDatabase() {
		t.Errorf("role %q superuser %v replication %v create %v, want %s, false, true, true",
			res.GetRole(), res.GetSuperuser(), res.GetReplication(), res.GetCreateOnDatabase(), testenv.Source(t).GetUser())
	}
	var got []string
	for _, p := range res.GetTables() {
		got = append(got, fmt.Sprintf("%s.%s select=%v owner=%v", p.GetTable().GetSchema(), p.GetTable().GetTable(), p.GetSelect(), p.GetOwner()))
	}
	want := []string{
		s + ".own select=true owner=true",
		s + ".own_revoked select=false owner=true",
		s + ".theirs select=false owner=false",
		s + ".theirs_granted select=true owner=false",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("table privileges:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// No selection: the role's attributes only.
	res, err = srv.GetPrivileges(context.Background(), &catalogv1.GetPrivilegesRequest{Source: testenv.Source(t)})
	if err != nil || res.GetRole() == "" || len(res.GetTables()) != 0 {
		t.Errorf("without a selection: %v, %v; want the role and no tables", res, err)
	}
}

func TestGetPrivilegesErrors(t *testing.T) {
	srv := NewServer(slog.Default())
	_, err := srv.GetPrivileges(context.Background(), &catalogv1.GetPrivilegesRequest{
		Source:  testenv.Source(t),
		Objects: &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: "no_such_table_here"}}},
	})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"public"."no_such_table_here"`) {
		t.Errorf("missing table: %v, want InvalidArgument naming it", err)
	}
	down := testenv.Source(t)
	down.Port = 1
	_, err = srv.GetPrivileges(context.Background(), &catalogv1.GetPrivilegesRequest{Source: down})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("unreachable source: %v, want Unavailable", err)
	}
}
