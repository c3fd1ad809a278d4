// Package pgsource turns a task's SourceEndpoint into PostgreSQL connection
// settings, resolving the password where the service runs.
package pgsource

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/internal/secret"
)

// ApplicationName tags Ferry's sessions in pg_stat_activity.
const ApplicationName = "ferry"

// DSN builds a connection URL. With replication set, the session speaks the
// replication protocol (replication=database) as logical decoding needs.
// An endpoint with several hosts gets libpq's multi-host form with
// target_session_attrs=read-write: the session lands on whichever server is
// the primary now, so a task follows a failover by itself. A single host
// keeps any server, as a standby can be a source from PostgreSQL 16 on.
func DSN(src *taskv1.SourceEndpoint, replication bool) (string, error) {
	hosts := Hosts(src)
	if len(hosts) == 0 || src.GetDatabase() == "" || src.GetUser() == "" {
		return "", fmt.Errorf("source endpoint needs a host, database and user (got hosts=%q database=%q user=%q)",
			hostList(hosts), src.GetDatabase(), src.GetUser())
	}
	for _, h := range hosts {
		if h.GetHost() == "" {
			return "", fmt.Errorf("source endpoint lists a host without a name (hosts=%q)", hostList(hosts))
		}
	}
	password, err := secret.Resolve(src.GetPassword())
	if err != nil {
		return "", fmt.Errorf("resolving the source password: %w", err)
	}
	q := url.Values{}
	q.Set("sslmode", sslMode(src.GetSslMode()))
	q.Set("application_name", ApplicationName)
	// Fix the settings that shape PostgreSQL's text output, so values read
	// the same whatever the server's defaults: timestamptz in UTC, ISO dates,
	// floats printed with enough digits to round-trip exactly, and bytea in
	// hex. Values travel to Kafka as this text (Canal JSON copies it).
	q.Set("timezone", "UTC")
	q.Set("datestyle", "ISO")
	q.Set("intervalstyle", "postgres")
	q.Set("extra_float_digits", "3")
	q.Set("bytea_output", "hex")
	// SQL Ferry writes (snapshot filters above all) quotes strings the
	// standard way; a server or role configured otherwise would read a
	// backslash in them as an escape.
	q.Set("standard_conforming_strings", "on")
	if len(hosts) > 1 {
		q.Set("target_session_attrs", "read-write")
		// Per host: a server that drops packets must not use up the
		// caller's whole deadline before the next host is tried.
		q.Set("connect_timeout", strconv.Itoa(hostConnectTimeoutSeconds))
	}
	if replication {
		q.Set("replication", "database")
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(src.GetUser(), password),
		Host:     hostList(hosts),
		Path:     "/" + src.GetDatabase(),
		RawQuery: q.Encode(),
	}
	return u.String(), nil
}

// hostConnectTimeoutSeconds bounds each host's connection attempt when an
// endpoint lists several.
const hostConnectTimeoutSeconds = 10

// Hosts are the endpoint's servers in the order sessions try them: hosts,
// or else host and port. Ports default to 5432.
func Hosts(src *taskv1.SourceEndpoint) []*taskv1.HostPort {
	if len(src.GetHosts()) == 0 && src.GetHost() == "" {
		return nil
	}
	in := src.GetHosts()
	if len(in) == 0 {
		in = []*taskv1.HostPort{{Host: src.GetHost(), Port: src.GetPort()}}
	}
	out := make([]*taskv1.HostPort, len(in))
	for i, h := range in {
		out[i] = &taskv1.HostPort{Host: h.GetHost(), Port: cmp.Or(h.GetPort(), 5432)}
	}
	return out
}

// hostList is hosts as libpq's "host:port,host:port".
func hostList(hosts []*taskv1.HostPort) string {
	parts := make([]string, len(hosts))
	for i, h := range hosts {
		parts[i] = net.JoinHostPort(h.GetHost(), strconv.Itoa(int(cmp.Or(h.GetPort(), 5432))))
	}
	return strings.Join(parts, ",")
}

func sslMode(m taskv1.SslMode) string {
	switch m {
	case taskv1.SslMode_SSL_MODE_PREFER:
		return "prefer"
	case taskv1.SslMode_SSL_MODE_REQUIRE:
		return "require"
	case taskv1.SslMode_SSL_MODE_VERIFY_CA:
		return "verify-ca"
	case taskv1.SslMode_SSL_MODE_VERIFY_FULL:
		return "verify-full"
	default:
		return "disable"
	}
}

// Connect opens a regular SQL session.
func Connect(ctx context.Context, src *taskv1.SourceEndpoint) (*pgx.Conn, error) {
	dsn, err := DSN(src, false)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", Describe(src), err)
	}
	return conn, nil
}

// ConnectReplication opens a session in the replication protocol.
func ConnectReplication(ctx context.Context, src *taskv1.SourceEndpoint) (*pgconn.PgConn, error) {
	dsn, err := DSN(src, true)
	if err != nil {
		return nil, err
	}
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("opening a replication connection to %s: %w", Describe(src), err)
	}
	return conn, nil
}

// Describe names the endpoint for errors and logs, without the password.
func Describe(src *taskv1.SourceEndpoint) string {
	return fmt.Sprintf("postgres %s@%s/%s", src.GetUser(), hostList(Hosts(src)), src.GetDatabase())
}

// ServerVersion is the source's server_version_num, read on q: a session,
// or a transaction of one.
func ServerVersion(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) (int, error) {
	var v int
	if err := q.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&v); err != nil {
		return 0, fmt.Errorf("reading the source's server_version_num: %w", err)
	}
	return v, nil
}
