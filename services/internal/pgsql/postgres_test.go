package pgsql_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ferry-cdc/ferry/services/internal/pgsource"
	"github.com/ferry-cdc/ferry/services/internal/pgsql"
	"github.com/ferry-cdc/ferry/services/testenv"
)

var inputs = []string{"", "plain", "it's", `a\`, `a\'b`, `\\x41`, `'\''`, "日本語"}

// TestLiteralReadsBackUnderEitherSetting reads every quoted input back
// through PostgreSQL with standard_conforming_strings on and off.
func TestLiteralReadsBackUnderEitherSetting(t *testing.T) {
	conn := testenv.PG(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, scs := range []string{"on", "off"} {
		// Its own statement: a setting applies to the statements parsed
		// after it.
		testenv.Exec(t, conn, "SET standard_conforming_strings = "+scs)
		for _, s := range inputs {
			var got string
			if err := conn.QueryRow(ctx, "SELECT "+pgsql.Literal(s)).Scan(&got); err != nil || got != s {
				t.Errorf("standard_conforming_strings %s: SELECT %s = %q, %v; want %q", scs, pgsql.Literal(s), got, err, s)
			}
		}
	}
	// The input that shows why SQL takes Literal: capture's old quoter,
	// which only doubled quotes (ReplicationLiteral's rule), turns `a\`
	// into 'a\', which with the setting off escapes its closing quote.
	var got string
	err := conn.QueryRow(ctx, "SELECT "+pgsql.ReplicationLiteral(`a\`)).Scan(&got)
	if err == nil && got == `a\` {
		t.Fatalf("with standard_conforming_strings off, %s read back as %q: the plain quoting was expected to misread it", pgsql.ReplicationLiteral(`a\`), got)
	}
}

// TestReplicationLiteralNamesAPublication streams from a publication whose
// name holds a backslash and a quote, named in START_REPLICATION's options
// the way capture names it, and checks that Literal's escape string is a
// syntax error there.
func TestReplicationLiteralNamesAPublication(t *testing.T) {
	conn := testenv.PG(t)
	table, pub := testenv.UniqueName("pgsql_quote"), testenv.UniqueName(`pgsql\'pub`)
	qpub := pgx.Identifier{pub}.Sanitize()
	testenv.Exec(t, conn, "CREATE TABLE "+table+" (id int PRIMARY KEY)", "CREATE PUBLICATION "+qpub+" FOR TABLE "+table)
	t.Cleanup(func() { testenv.Exec(t, testenv.PG(t), "DROP PUBLICATION "+qpub, "DROP TABLE "+table) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	slot := testenv.UniqueName("pgsql_slot")
	start := func(repl *pgconn.PgConn, quoted string) error {
		return pglogrepl.StartReplication(ctx, repl, slot, 0, pglogrepl.StartReplicationOptions{
			Mode: pglogrepl.LogicalReplication, PluginArgs: []string{"proto_version '1'", "publication_names " + quoted},
		})
	}
	// Parsing comes before the slot's lookup, so no slot is needed here.
	var pgErr *pgconn.PgError
	if err := start(replConn(ctx, t), pgsql.Literal(qpub)); !errors.As(err, &pgErr) || pgErr.Code != "42601" {
		t.Fatalf("START_REPLICATION with the escape string %s: %v; want a syntax error, the walsender's grammar has none", pgsql.Literal(qpub), err)
	}
	repl := replConn(ctx, t)
	if _, err := pglogrepl.CreateReplicationSlot(ctx, repl, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{Temporary: true}); err != nil {
		t.Fatal(err)
	}
	if err := start(repl, pgsql.ReplicationLiteral(qpub)); err != nil {
		t.Fatalf("START_REPLICATION with %s: %v", pgsql.ReplicationLiteral(qpub), err)
	}
	testenv.Exec(t, conn, "INSERT INTO "+table+" VALUES (1)")
	// pgoutput looks the publication up by the name it read as it decodes
	// the insert: a misread name ends the stream with an error instead.
	awaitInsert(ctx, t, repl)
}

func replConn(ctx context.Context, t *testing.T) *pgconn.PgConn {
	t.Helper()
	repl, err := pgsource.ConnectReplication(ctx, testenv.Source(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = repl.Close(context.Background()) })
	return repl
}

func awaitInsert(ctx context.Context, t *testing.T, repl *pgconn.PgConn) {
	t.Helper()
	for {
		msg, err := repl.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("waiting for the insert: %v", err)
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			t.Fatalf("the stream failed: %s", e.Message)
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok || len(cd.Data) == 0 || cd.Data[0] != pglogrepl.XLogDataByteID {
			continue
		}
		xld, err := pglogrepl.ParseXLogData(cd.Data[1:])
		if err != nil {
			t.Fatal(err)
		}
		m, err := pglogrepl.Parse(xld.WALData)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.(*pglogrepl.InsertMessage); ok {
			return
		}
	}
}
