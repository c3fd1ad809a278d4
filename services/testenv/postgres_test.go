package testenv

import (
	"context"
	"fmt"
	"testing"
)

// The private server is set up like the shared one, survives a restart with
// its data, and takes new settings on restart.
func TestPrivatePostgres(t *testing.T) {
	p := StartPostgres(t)
	t.Logf("private PostgreSQL: initdb %s, start %s", p.InitTime, p.StartTime)
	conn := p.Conn(t)
	var level string
	var repl bool
	if err := conn.QueryRow(context.Background(),
		"SELECT current_setting('wal_level'), rolreplication FROM pg_roles WHERE rolname = current_user").Scan(&level, &repl); err != nil {
		t.Fatal(err)
	}
	if level != "logical" || !repl {
		t.Fatalf("wal_level %s, ferry has REPLICATION %v; want logical and true", level, repl)
	}
	Exec(t, conn, "CREATE TABLE kept (id int)", "INSERT INTO kept VALUES (1)")

	p.Restart("wal_level=replica")
	t.Logf("restart: start %s", p.StartTime)
	conn = p.Conn(t)
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT current_setting('wal_level'), count(*) FROM kept").Scan(&level, &n); err != nil {
		t.Fatal(err)
	}
	if level != "replica" || n != 1 {
		t.Fatalf("after Restart(wal_level=replica): wal_level %s and %d rows, want replica and 1", level, n)
	}
}

// Every supported major starts from its cached binaries, set up like the
// shared server, and reports the version it was asked for.
func TestPrivatePostgresEveryMajor(t *testing.T) {
	for _, major := range SupportedMajors {
		t.Run(fmt.Sprint(major), func(t *testing.T) {
			p := StartPostgresVersion(t, major)
			var num int
			var level string
			if err := p.Conn(t).QueryRow(context.Background(),
				"SELECT current_setting('server_version_num')::int, current_setting('wal_level')").Scan(&num, &level); err != nil {
				t.Fatal(err)
			}
			if num/10000 != major || level != "logical" {
				t.Fatalf("server_version_num %d, wal_level %s; want major %d and logical", num, level, major)
			}
			t.Logf("PostgreSQL %d: initdb %s, start %s", num, p.InitTime, p.StartTime)
		})
	}
}
