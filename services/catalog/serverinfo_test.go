package catalog

import (
	"context"
	"log/slog"
	"slices"
	"testing"

	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

func TestGetServerInfo(t *testing.T) {
	s := NewServer(slog.Default())
	res, err := s.GetServerInfo(context.Background(), &catalogv1.GetServerInfoRequest{Source: testenv.Source(t)})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetVersionNum() < 150000 || res.GetVersionNum() >= 160000 || res.GetGreenplum() {
		t.Errorf("version %d (%q), greenplum %v: want PostgreSQL 15, not Greenplum", res.GetVersionNum(), res.GetVersion(), res.GetGreenplum())
	}
	if got := res.GetSettings()["wal_level"]; got != "logical" {
		t.Errorf("wal_level = %q, want logical (the stack sets it)", got)
	}
	if res.GetSettings()["wal_sender_timeout"] == "" || res.GetSettings()["max_replication_slots"] == "" {
		t.Errorf("settings %v lack what replication depends on", res.GetSettings())
	}
}

func TestListSchemas(t *testing.T) {
	conn := testenv.PG(t)
	schema := testenv.UniqueName("schemas")
	testenv.Exec(t, conn, `CREATE SCHEMA `+schema)
	t.Cleanup(func() { testenv.Exec(t, conn, `DROP SCHEMA `+schema) })
	res, err := NewServer(slog.Default()).ListSchemas(context.Background(), &catalogv1.ListSchemasRequest{Source: testenv.Source(t)})
	if err != nil {
		t.Fatal(err)
	}
	got := res.GetSchemas()
	if !slices.Contains(got, schema) || !slices.Contains(got, "public") || slices.Contains(got, "pg_catalog") || slices.Contains(got, "pg_toast") {
		t.Errorf("schemas %v: want %s and public, and no system schema", got, schema)
	}
}
