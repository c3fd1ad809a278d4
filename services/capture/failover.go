package capture

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// failoverMinVersion is PostgreSQL 17: failover slots, synchronized by
// standbys running with sync_replication_slots = on.
const failoverMinVersion = 170000

// failoverFacts are what the source tells about slot synchronization.
type failoverFacts struct {
	version        int
	standby        bool
	standbySlots   string // synchronized_standby_slots; "" when unset or before 17
	syncSlots      bool   // sync_replication_slots
	failoverWanted bool
}

func readFailoverFacts(ctx context.Context, conn *pgx.Conn, src *taskv1.SourceEndpoint) (failoverFacts, error) {
	f := failoverFacts{failoverWanted: src.GetFailoverSlot()}
	err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, pg_is_in_recovery(),
       coalesce(current_setting('synchronized_standby_slots', true), ''),
       coalesce(current_setting('sync_replication_slots', true), 'off') = 'on'`).
		Scan(&f.version, &f.standby, &f.standbySlots, &f.syncSlots)
	if err != nil {
		return f, fmt.Errorf("reading the source's slot synchronization settings: %w", err)
	}
	return f, nil
}

// slotFailover says whether the task's slot must be a failover slot: the
// task asks for it, or the primary shows that standbys synchronize slots
// (it waits for some in synchronized_standby_slots, or is configured like
// its standbys with sync_replication_slots). A slot without FAILOVER is
// lost with the primary, and the task with it. Asking below PostgreSQL 17,
// or on a standby, where PostgreSQL cannot create failover slots, is a
// configuration error.
func slotFailover(f failoverFacts) (bool, error) {
	switch {
	case f.version < failoverMinVersion && f.failoverWanted:
		return false, failedPrecondition("source.failover_slot asks for a failover slot, but the source runs PostgreSQL %d and failover slots came with PostgreSQL 17: upgrade the source or set failover_slot to false",
			f.version/10000)
	case f.version < failoverMinVersion:
		return false, nil
	case f.standby && f.failoverWanted:
		return false, failedPrecondition("source.failover_slot asks for a failover slot, but the source is a standby, where PostgreSQL cannot create one: point the task at the primary (list every server in source.hosts) or set failover_slot to false")
	case f.standby:
		return false, nil
	}
	return f.failoverWanted || f.standbySlots != "" || f.syncSlots, nil
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
	facts, err := readFailoverFacts(ctx, conn, src)
	if err != nil {
		return err
	}
	want, err := slotFailover(facts)
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
