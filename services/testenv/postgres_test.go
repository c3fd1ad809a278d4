package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"
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

// A PostgreSQL 17 standby keeps a copy of the primary's failover slot,
// which becomes usable once the standby is promoted.
func TestStandbySynchronizesFailoverSlots(t *testing.T) {
	begun := time.Now()
	p := StartPostgresVersion(t, 17)
	s := p.NewStandby(t, "standby1")
	t.Logf("primary and standby up in %s", time.Since(begun).Round(time.Millisecond))
	ctx := context.Background()
	super := p.SuperConn(t)
	Exec(t, super, "ALTER SYSTEM SET synchronized_standby_slots = 'standby1'", "SELECT pg_reload_conf()",
		"SELECT pg_create_logical_replication_slot('fo', 'pgoutput', false, false, true)",
		"CREATE TABLE t (id int)", "INSERT INTO t VALUES (1)")
	standby := s.SuperConn(t)
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for ; ; <-tick.C {
		var synced, temporary bool
		err := standby.QueryRow(ctx, "SELECT synced, temporary FROM pg_replication_slots WHERE slot_name = 'fo'").Scan(&synced, &temporary)
		if err == nil && synced && !temporary {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby has no synchronized slot fo: synced %v temporary %v err %v; log:\n%s", synced, temporary, err, s.logTail())
		}
		// A reload wakes the slot sync worker from its back-off.
		Exec(t, standby, "SELECT pg_reload_conf()")
		Exec(t, super, "INSERT INTO t VALUES (2)", "SELECT pg_log_standby_snapshot()", "SELECT pg_replication_slot_advance('fo', pg_current_wal_lsn())")
	}
	t.Logf("slot synchronized %s after start", time.Since(begun).Round(time.Millisecond))
	// hot_standby_feedback shows on the primary as the physical slot's xmin.
	var feedback bool
	if err := p.Conn(t).QueryRow(ctx, "SELECT xmin IS NOT NULL FROM pg_replication_slots WHERE slot_name = 'standby1' AND active").Scan(&feedback); err != nil || !feedback {
		t.Errorf("the standby's physical slot: xmin set %v (%v), want its hot_standby_feedback to show", feedback, err)
	}
	p.Crash()
	s.Promote()
	Exec(t, standby, "SELECT pg_replication_slot_advance('fo', pg_current_wal_lsn())")
	t.Logf("promoted %s after start", time.Since(begun).Round(time.Millisecond))
}
