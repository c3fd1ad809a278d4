package capture

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
)

// slotFailover decides whether the task's slot must be a failover slot
// (see pgsource.FailoverSlot); a slot asked for that cannot be one is a
// configuration error.
func slotFailover(ctx context.Context, conn *pgx.Conn, src *taskv1.SourceEndpoint) (bool, error) {
	facts, err := pgsource.ReadSlotSync(ctx, conn)
	if err != nil {
		return false, err
	}
	want, err := pgsource.FailoverSlot(src, facts)
	if err != nil {
		return false, status.Error(codes.FailedPrecondition, err.Error())
	}
	return want, nil
}

// createSlot creates the logical slot, exporting a snapshot or not. A
// failover slot needs the option list of PostgreSQL 15 and later; other
// slots keep the old syntax, which PostgreSQL 12 to 14 understand.
func createSlot(ctx context.Context, repl *pgconn.PgConn, name string, failover, export bool) (pglogrepl.CreateReplicationSlotResult, error) {
	if !failover {
		action := "NOEXPORT_SNAPSHOT"
		if export {
			action = "EXPORT_SNAPSHOT"
		}
		return pglogrepl.CreateReplicationSlot(ctx, repl, name, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
			Mode: pglogrepl.LogicalReplication, SnapshotAction: action,
		})
	}
	snapshot := "nothing"
	if export {
		snapshot = "export"
	}
	// name matches slotNamePattern, so it needs no quoting.
	sql := fmt.Sprintf("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput (SNAPSHOT '%s', FAILOVER true)", name, snapshot)
	return pglogrepl.ParseCreateReplicationSlot(repl.Exec(ctx, sql))
}

// ensureFailover turns an existing slot into a failover slot when it must
// be one: a task set up before Ferry made failover slots, or before the
// standbys were configured, becomes safe on its next stream. The slot must
// not be in use, as when a stream is about to start.
func ensureFailover(ctx context.Context, conn *pgx.Conn, repl *pgconn.PgConn, src *taskv1.SourceEndpoint, slot string, logger *slog.Logger) error {
	want, err := slotFailover(ctx, conn, src)
	if err != nil || !want {
		return err
	}
	info, err := lookupSlot(ctx, conn, slot)
	if err != nil || info.failover {
		return err
	}
	if _, err := repl.Exec(ctx, fmt.Sprintf("ALTER_REPLICATION_SLOT %s (FAILOVER true)", slot)).ReadAll(); err != nil {
		return fmt.Errorf("making replication slot %s a failover slot: %w", slot, err)
	}
	logger.Info("replication slot made a failover slot, so that standbys synchronize it", "slot", slot)
	return nil
}
