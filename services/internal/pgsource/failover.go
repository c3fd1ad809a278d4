package pgsource

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// FailoverMinVersion is PostgreSQL 17: failover slots, which standbys
// running with sync_replication_slots = on keep a copy of.
const FailoverMinVersion = 170000

// SlotSync is what a server tells about logical slot synchronization.
type SlotSync struct {
	Version int
	Standby bool
	// StandbySlots are the physical slots named in
	// synchronized_standby_slots: logical walsenders of failover slots send
	// nothing those standbys have not confirmed. Nil before PostgreSQL 17.
	StandbySlots []string
	// SyncSlots is this server's sync_replication_slots, which only acts on
	// a standby; a primary set up like its standbys shows it too.
	SyncSlots bool
}

// ReadSlotSync reads the server's slot synchronization settings.
func ReadSlotSync(ctx context.Context, conn *pgx.Conn) (SlotSync, error) {
	var s SlotSync
	var standbySlots string
	err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, pg_is_in_recovery(),
       coalesce(current_setting('synchronized_standby_slots', true), ''),
       coalesce(current_setting('sync_replication_slots', true), 'off') = 'on'`).
		Scan(&s.Version, &s.Standby, &standbySlots, &s.SyncSlots)
	if err != nil {
		return s, fmt.Errorf("reading the source's slot synchronization settings: %w", err)
	}
	s.StandbySlots = splitSlotList(standbySlots)
	return s, nil
}

// splitSlotList splits a list setting of slot names. Slot names are
// lower-case letters, digits and '_', so quotes only ever wrap them.
func splitSlotList(v string) []string {
	var out []string
	for _, name := range strings.Split(v, ",") {
		if name = strings.Trim(strings.TrimSpace(name), `"`); name != "" {
			out = append(out, name)
		}
	}
	return out
}

// FailoverSlot says whether the task's slot must be a failover slot: the
// task asks for it (source.failover_slot), or the primary shows that
// standbys synchronize slots (it waits for some in
// synchronized_standby_slots, or is set up like its standbys with
// sync_replication_slots). A slot without FAILOVER is lost with the
// primary, and the task with it. The error says why a slot asked for
// cannot be one: before PostgreSQL 17, or on a standby, where PostgreSQL
// cannot create failover slots.
func FailoverSlot(src *taskv1.SourceEndpoint, s SlotSync) (bool, error) {
	asked := src.GetFailoverSlot()
	switch {
	case s.Version < FailoverMinVersion && asked:
		return false, fmt.Errorf("source.failover_slot asks for a failover slot, but the source runs PostgreSQL %d and failover slots came with PostgreSQL 17: upgrade the source or set failover_slot to false",
			s.Version/10000)
	case s.Version < FailoverMinVersion:
		return false, nil
	case s.Standby && asked:
		return false, errors.New("source.failover_slot asks for a failover slot, but the source is a standby, where PostgreSQL cannot create one: point the task at the primary (list every server in source.hosts) or set failover_slot to false")
	case s.Standby:
		return false, nil
	}
	return asked || len(s.StandbySlots) > 0 || s.SyncSlots, nil
}
