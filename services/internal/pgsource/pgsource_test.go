package pgsource_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// Values decode exactly only if every Ferry session prints them the same way,
// whatever the server's defaults.
func TestSessionsUseFixedOutputSettings(t *testing.T) {
	conn := testenv.PG(t)
	for setting, want := range map[string]string{"TimeZone": "UTC", "DateStyle": "ISO, MDY", "IntervalStyle": "postgres", "extra_float_digits": "3", "bytea_output": "hex", "standard_conforming_strings": "on"} {
		var got string
		if err := conn.QueryRow(context.Background(), "SELECT current_setting($1)", setting).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	var app string
	if err := conn.QueryRow(context.Background(), "SELECT current_setting('application_name')").Scan(&app); err != nil || app != pgsource.ApplicationName {
		t.Errorf("application_name = %q, %v; want %q", app, err, pgsource.ApplicationName)
	}
}

func TestDSNQuotesAwkwardNamesAndHidesNothingItShouldNot(t *testing.T) {
	t.Setenv("FERRY_TEST_PW", "p@ss word/")
	dsn, err := pgsource.DSN(&taskv1.SourceEndpoint{
		Host: "db", Database: "my-db", User: "u",
		Password: &taskv1.SecretRef{Source: &taskv1.SecretRef_Env{Env: "FERRY_TEST_PW"}},
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dsn, "/my-db?") || !strings.Contains(dsn, "replication=database") || !strings.Contains(dsn, "db:5432") {
		t.Errorf("dsn %q lacks the database, the replication mode or the default port", dsn)
	}
	if d := pgsource.Describe(&taskv1.SourceEndpoint{Host: "db", Database: "x", User: "u"}); strings.Contains(d, "p@ss") {
		t.Errorf("Describe leaks the password: %q", d)
	}
	if _, err := pgsource.DSN(&taskv1.SourceEndpoint{Host: "db"}, false); err == nil || !strings.Contains(err.Error(), "database") {
		t.Errorf("missing database: err = %v", err)
	}
}

// With several hosts every session must land on the primary: a server that
// refuses connections or is read-only is passed over, for SQL and
// replication sessions alike. All hosts share the role's password, as the
// servers of one cluster do.
func TestSeveralHostsConnectToTheWritableOne(t *testing.T) {
	pg := testenv.StartPostgres(t)
	src := pg.Source()
	dead := closedPort(t)
	src.Hosts = []*taskv1.HostPort{{Host: "127.0.0.1", Port: uint32(dead)}, {Host: src.GetHost(), Port: src.GetPort()}}
	src.Host, src.Port = "", 0
	for _, replication := range []bool{false, true} {
		dsn, err := pgsource.DSN(src, replication)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := pgconn.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Port != uint16(dead) || len(cfg.Fallbacks) != 1 || cfg.ValidateConnect == nil || cfg.ConnectTimeout == 0 {
			t.Errorf("replication=%v: %q parses to port %d with %d fallbacks, validation %v, timeout %s; want both hosts, read-write and a timeout per host",
				replication, dsn, cfg.Port, len(cfg.Fallbacks), cfg.ValidateConnect != nil, cfg.ConnectTimeout)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	super := pg.SuperConn(t)
	setReadOnly := func(v string) {
		if _, err := super.Exec(ctx, "ALTER SYSTEM SET default_transaction_read_only = "+v); err != nil {
			t.Fatal(err)
		}
		if _, err := super.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
	}
	setReadOnly("on")
	if _, err := pgsource.Connect(ctx, src); err == nil || !strings.Contains(err.Error(), "read only") {
		t.Errorf("with no writable host: err = %v, want a read-only refusal", err)
	}
	setReadOnly("off")
	conn, err := pgsource.Connect(ctx, src)
	if err != nil {
		t.Fatalf("connecting past a dead first host: %v", err)
	}
	_ = conn.Close(ctx)
	repl, err := pgsource.ConnectReplication(ctx, src)
	if err != nil {
		t.Fatalf("opening a replication session past a dead first host: %v", err)
	}
	_ = repl.Close(ctx)
	if d := pgsource.Describe(src); !strings.Contains(d, fmt.Sprintf("127.0.0.1:%d,", dead)) {
		t.Errorf("Describe(%v) = %q, want both hosts", src.GetHosts(), d)
	}
}

// A single host keeps any server, standbys included, so no read-write
// check is added.
func TestOneHostAcceptsAnyServer(t *testing.T) {
	dsn, err := pgsource.DSN(&taskv1.SourceEndpoint{Host: "db", Database: "x", User: "u"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(dsn, "target_session_attrs") {
		t.Errorf("dsn %q asks one host for read-write", dsn)
	}
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	return port
}
