package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
	"github.com/ferry-cdc/ferry/services/internal/pgsql"
)

// toStatus maps an error to the gRPC status clients act on, which the
// workflow turns into a retry window (workflows/activities ClassifyRPC):
// Unavailable is worth retrying as is (the connection window: a restarted
// server or a lost connection comes back by itself); FailedPrecondition and
// PermissionDenied need someone to fix the source first (the shorter
// other-issues window); DataLoss means the task cannot resume without
// losing changes, so it fails at once. The message keeps the wrapped
// context, which names the object.
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
		return status.Error(codes.Unavailable, msg+"; "+connectionHint)
	}
	return status.Error(codes.Internal, msg)
}

// classifyPgError sorts server errors by who must act. See
// https://www.postgresql.org/docs/current/errcodes-appendix.html.
func classifyPgError(e *pgconn.PgError) (codes.Code, string) {
	switch {
	case e.Code == "57P01", e.Code == "57P02", e.Code == "57P03", e.Code == "53300",
		strings.HasPrefix(e.Code, "08"):
		return codes.Unavailable, "the server is shutting down or restarting, or an administrator ended the session; Ferry retries and resumes from the last acknowledged position"
	case e.Code == "55006":
		return codes.Unavailable, "another session is using the object; retry once it has stopped"
	case e.Code == "42501":
		return codes.PermissionDenied, "grant the Ferry role REPLICATION, SELECT on the selected tables and ownership of them (publications need it), or use a role that has them"
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

// connectionHint says what a lost or refused connection needs.
const connectionHint = "PostgreSQL could not be reached or the connection was lost: check that it is running and reachable; Ferry retries and resumes from the last acknowledged position"

// connectReplication opens a replication session; a role without the
// REPLICATION attribute gets the statement that grants it.
func connectReplication(ctx context.Context, src *taskv1.SourceEndpoint) (*pgconn.PgConn, error) {
	conn, err := pgsource.ConnectReplication(ctx, src)
	if pgsql.IsCode(err, "42501") {
		return nil, status.Errorf(codes.PermissionDenied,
			"%v; role %q lacks the REPLICATION attribute that logical replication needs: run ALTER ROLE %s WITH REPLICATION as a superuser",
			err, src.GetUser(), pgx.Identifier{src.GetUser()}.Sanitize())
	}
	return conn, err
}

// slotDropped is a task's slot gone missing. It is never recreated here: the
// WAL since its confirmed position is no longer retained for the task, and
// a new slot would start at the current position and silently skip those
// changes. Only reading the tables again closes the gap, hence DataLoss,
// which fails the task at once instead of retrying in vain.
func slotDropped(slot string, resume pglogrepl.LSN) error {
	return status.Errorf(codes.DataLoss,
		"replication slot %s does not exist: it was dropped (or never created). The changes after the task's last confirmed position %s are no longer retained, and a new slot would skip them, so the task cannot resume: stop it with release and create it again with full sync to read the tables again",
		slot, resume)
}

// publicationMissing is a publication dropped while its slot still exists;
// see publicationDropped for why recreating it is no fix once a change was
// written meanwhile. Until a change is decoded that is not certain, so this
// is FailedPrecondition (retried): recreated in time, with no change
// written meanwhile, the publication would serve again.
func publicationMissing(pub, slot string) error {
	return status.Errorf(codes.FailedPrecondition,
		"publication %q does not exist, but replication slot %s does: the publication was dropped while the task ran. Changes written while it was missing cannot be decoded even after it is recreated, so stop the task with release and create it again with full sync",
		pub, slot)
}

// describeStreamFailure names the slot and publication a failed stream read
// from. The walsender's "publication does not exist" is final: pgoutput
// reads the publication as of each change's position, so a change written
// while it was missing never decodes, even after it is recreated, and the
// slot cannot move past it.
func describeStreamFailure(slot, pub string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42704" && strings.Contains(pgErr.Message, "publication") {
		return status.Errorf(codes.DataLoss,
			"streaming from replication slot %s: %v; publication %q was dropped while the slot still needed it. PostgreSQL decodes each change with the publication as it was when the change was written, so recreating the publication cannot decode the changes made while it was missing, and the task cannot resume: stop it with release and create it again with full sync",
			slot, err, pub)
	}
	return fmt.Errorf("streaming from replication slot %s (publication %s): %w", slot, pub, err)
}
