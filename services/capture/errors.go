package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toStatus maps an error to the gRPC status clients act on: Unavailable is
// worth retrying as is, FailedPrecondition needs someone to fix the source
// first. The message keeps the wrapped context, which names the object.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		return s.Err()
	}
	msg := err.Error()
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		code, hint := classifyPgError(pgErr)
		if hint != "" {
			msg += "; " + hint
		}
		return status.Error(code, msg)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msg)
	case isConnectionError(err):
		return status.Error(codes.Unavailable, msg)
	}
	return status.Error(codes.Internal, msg)
}

// classifyPgError sorts server errors by who must act. See
// https://www.postgresql.org/docs/current/errcodes-appendix.html.
func classifyPgError(e *pgconn.PgError) (codes.Code, string) {
	switch {
	case e.Code == "57P01", e.Code == "57P02", e.Code == "57P03", e.Code == "53300",
		strings.HasPrefix(e.Code, "08"):
		return codes.Unavailable, "the server is shutting down, restarting or refusing connections; retry"
	case e.Code == "55006":
		return codes.Unavailable, "another session is using the object; retry once it has stopped"
	case e.Code == "42501":
		return codes.FailedPrecondition, "grant the Ferry role REPLICATION and ownership of the published tables, or use a role that has them"
	case e.Code == "28000", e.Code == "28P01":
		return codes.FailedPrecondition, "check the source user and password and pg_hba.conf"
	case e.Code == "3D000":
		return codes.FailedPrecondition, "check the source database name"
	case e.Code == "42P01":
		return codes.FailedPrecondition, "create the table or remove it from the task"
	case e.Code == "42704":
		return codes.FailedPrecondition, "run setup (EnsureReplication) to create the slot and publication"
	case e.Code == "55000" && strings.Contains(e.Message, "wal_level"):
		return codes.FailedPrecondition, "set wal_level = logical in postgresql.conf and restart PostgreSQL"
	case strings.HasPrefix(e.Code, "55"), strings.HasPrefix(e.Code, "42"), e.Code == "53400":
		return codes.FailedPrecondition, e.Hint
	}
	return codes.Internal, e.Hint
}

// isConnectionError reports a lost or refused connection to PostgreSQL.
func isConnectionError(err error) bool {
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) ||
		pgconn.SafeToRetry(err) && !pgconn.Timeout(err)
}

// failedPrecondition is for conditions this service detects itself.
func failedPrecondition(format string, args ...any) error {
	return status.Error(codes.FailedPrecondition, fmt.Sprintf(format, args...))
}
