package catalog

import (
	"context"
	"strconv"

	"github.com/jackc/pgx/v5"

	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
)

// serverSettings are the settings logical replication depends on; the
// precheck reads the same ones to say what to change. adbpg_version is
// AnalyticDB for PostgreSQL's kernel version (precheck_greenplum.go), absent
// elsewhere.
var serverSettings = []string{
	"wal_level", "max_replication_slots", "max_wal_senders", "max_slot_wal_keep_size", "wal_sender_timeout",
	"hot_standby", "hot_standby_feedback", "server_encoding", "TimeZone", "DateStyle", "IntervalStyle",
	"max_connections", "logical_decoding_work_mem", "track_commit_timestamp", "adbpg_version",
}

// GetServerInfo reports the source's version, the settings replication
// depends on, and whether it is AnalyticDB for PostgreSQL or Greenplum,
// whose version string names Greenplum and whose catalog has
// gp_segment_configuration.
func (s *Server) GetServerInfo(ctx context.Context, req *catalogv1.GetServerInfoRequest) (*catalogv1.GetServerInfoResponse, error) {
	conn, ctx, done, err := connectSource(ctx, req.GetSource())
	if err != nil {
		return nil, err
	}
	defer done()
	out := &catalogv1.GetServerInfoResponse{Settings: map[string]string{}}
	var num string
	var gp bool
	err = conn.QueryRow(ctx, `SELECT version(), current_setting('server_version_num'),
		version() ILIKE '%greenplum%' OR to_regclass('pg_catalog.gp_segment_configuration') IS NOT NULL`).Scan(&out.Version, &num, &gp)
	if err != nil {
		return nil, sourceError("reading the server version", err)
	}
	n, _ := strconv.ParseUint(num, 10, 32)
	out.VersionNum, out.Greenplum = uint32(n), gp
	rows, err := conn.Query(ctx, `SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY($1)`, serverSettings)
	if err != nil {
		return nil, sourceError("reading the server settings", err)
	}
	var name, value string
	if _, err := pgx.ForEachRow(rows, []any{&name, &value}, func() error { out.Settings[name] = value; return nil }); err != nil {
		return nil, sourceError("reading the server settings", err)
	}
	return out, nil
}

// ListSchemas lists the user schemas, the ones a selection may name.
func (s *Server) ListSchemas(ctx context.Context, req *catalogv1.ListSchemasRequest) (*catalogv1.ListSchemasResponse, error) {
	conn, ctx, done, err := connectSource(ctx, req.GetSource())
	if err != nil {
		return nil, err
	}
	defer done()
	rows, err := conn.Query(ctx, `SELECT nspname FROM pg_namespace
		WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\_%' ORDER BY 1`)
	if err != nil {
		return nil, sourceError("listing schemas", err)
	}
	schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, sourceError("listing schemas", err)
	}
	return &catalogv1.ListSchemasResponse{Schemas: schemas}, nil
}
