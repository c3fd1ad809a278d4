// Package pgsource turns a task's SourceEndpoint into PostgreSQL connection
// settings, resolving the password where the service runs.
package pgsource

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/internal/secret"
)

// ApplicationName tags Ferry's sessions in pg_stat_activity.
const ApplicationName = "ferry"

// DSN builds a connection URL. With replication set, the session speaks the
// replication protocol (replication=database) as logical decoding needs.
func DSN(src *taskv1.SourceEndpoint, replication bool) (string, error) {
	if src.GetHost() == "" || src.GetDatabase() == "" || src.GetUser() == "" {
		return "", fmt.Errorf("source endpoint needs host, database and user (got host=%q database=%q user=%q)",
			src.GetHost(), src.GetDatabase(), src.GetUser())
	}
	password, err := secret.Resolve(src.GetPassword())
	if err != nil {
		return "", fmt.Errorf("resolving the source password: %w", err)
	}
	port := src.GetPort()
	if port == 0 {
		port = 5432
	}
	q := url.Values{}
	q.Set("sslmode", sslMode(src.GetSslMode()))
	q.Set("application_name", ApplicationName)
	// Fix the settings that shape PostgreSQL's text output, so values decode
	// the same whatever the server's defaults: timestamptz in UTC, ISO dates,
	// and floats printed with enough digits to round-trip exactly.
	q.Set("timezone", "UTC")
	q.Set("datestyle", "ISO")
	q.Set("intervalstyle", "postgres")
	q.Set("extra_float_digits", "3")
	if replication {
		q.Set("replication", "database")
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(src.GetUser(), password),
		Host:     net.JoinHostPort(src.GetHost(), strconv.Itoa(int(port))),
		Path:     "/" + src.GetDatabase(),
		RawQuery: q.Encode(),
	}
	return u.String(), nil
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
	port := src.GetPort()
	if port == 0 {
		port = 5432
	}
	return fmt.Sprintf("postgres %s@%s:%d/%s", src.GetUser(), src.GetHost(), port, src.GetDatabase())
}
