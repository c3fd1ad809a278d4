package catalog

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
)

// standbySlot is a physical slot on the primary as the failover items see
// it: a standby streams through it, and its xmin shows that the standby
// sends hot_standby_feedback (a standby's own settings are visible only on
// the standby).
type standbySlot struct {
	name                               string
	exists, physical, active, feedback bool
	invalidation                       string
}

// checkFailover adds the item failover_slot and, on a PostgreSQL 17
// primary, judges from what the primary shows of its standbys the items
// synchronized_standby_slots, hot_standby_feedback and
// sync_replication_slots, replacing the latter two as haItems judged them
// from this server's own settings.
func checkFailover(ctx context.Context, conn *pgx.Conn, src *taskv1.SourceEndpoint, items []*taskv1.PrecheckItem) []*taskv1.PrecheckItem {
	sync, err := pgsource.ReadSlotSync(ctx, conn)
	if err != nil {
		return append(items, queryFailed("failover_slot", err))
	}
	items = append(items, failoverSlotItem(src, sync))
	if sync.Version < pgsource.FailoverMinVersion || sync.Standby {
		return append(items, pass("synchronized_standby_slots", "synchronized_standby_slots does not apply: it came with PostgreSQL 17 and acts on primaries"))
	}
	slots, err := readStandbySlots(ctx, conn, sync.StandbySlots)
	if err != nil {
		return append(items, queryFailed("synchronized_standby_slots", err))
	}
	items = append(items, standbySlotsItem(sync.StandbySlots, slots))
	return replaceItems(items, feedbackItem(slots), primarySyncSlotsItem(sync))
}

// failoverSlotItem says whether Ferry's slot will be a failover slot, and
// fails when the task asks for one the source cannot make.
func failoverSlotItem(src *taskv1.SourceEndpoint, s pgsource.SlotSync) *taskv1.PrecheckItem {
	const id = "failover_slot"
	want, err := pgsource.FailoverSlot(src, s)
	switch {
	case err != nil:
		return fail(id, err.Error(), "set source.failover_slot to false, or point the task at a PostgreSQL 17 (or later) primary")
	case want && len(pgsource.Hosts(src)) < 2:
		return warn(id, "Ferry creates its slot with FAILOVER ("+failoverReason(src, s)+"), so a promoted standby keeps it, but the task names one server, "+
			pgsource.Describe(src)+", and keeps connecting to it after a failover",
			"list every server, primary and standbys, in source.hosts so the task follows the primary; or acknowledge this warning if the host name itself follows the primary (a virtual IP or a DNS name the failover moves)")
	case want:
		return pass(id, "Ferry creates its slot with FAILOVER ("+failoverReason(src, s)+") and follows the primary across "+pgsource.Describe(src))
	case s.Version < pgsource.FailoverMinVersion:
		return pass(id, fmt.Sprintf("failover slots came with PostgreSQL 17; the source runs PostgreSQL %d (see sync_replication_slots)", s.Version/10000))
	case s.Standby:
		return pass(id, "the source is a standby, where PostgreSQL creates no failover slots; Ferry's slot lives on this standby only")
	}
	return pass(id, "Ferry creates its slot without FAILOVER: the task does not ask for it (source.failover_slot) and the primary shows no standby that synchronizes slots (see sync_replication_slots)")
}

func failoverReason(src *taskv1.SourceEndpoint, s pgsource.SlotSync) string {
	switch {
	case src.GetFailoverSlot():
		return "source.failover_slot asks for it"
	case len(s.StandbySlots) > 0:
		return "synchronized_standby_slots names " + strings.Join(s.StandbySlots, ", ")
	}
	return "sync_replication_slots is on"
}

// readStandbySlots reads the slots named in synchronized_standby_slots or,
// when it names none, the physical slots standbys stream through now.
func readStandbySlots(ctx context.Context, conn *pgx.Conn, names []string) ([]standbySlot, error) {
	sql := `
SELECT u.n, s.slot_name IS NOT NULL, coalesce(s.slot_type = 'physical', false), coalesce(s.active, false),
       s.xmin IS NOT NULL, coalesce(s.invalidation_reason, '')
FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i) LEFT JOIN pg_replication_slots s ON s.slot_name = u.n
ORDER BY u.i`
	args := []any{names}
	if len(names) == 0 {
		sql = `
SELECT slot_name::text, true, true, true, xmin IS NOT NULL, coalesce(invalidation_reason, '')
FROM pg_replication_slots WHERE slot_type = 'physical' AND active ORDER BY 1`
		args = nil
	}
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	var out []standbySlot
	var s standbySlot
	_, err = pgx.ForEachRow(rows, []any{&s.name, &s.exists, &s.physical, &s.active, &s.feedback, &s.invalidation}, func() error {
		out = append(out, s)
		return nil
	})
	return out, err
}

// standbySlotsItem judges synchronized_standby_slots: the walsenders of
// failover slots, Ferry's included, send nothing the standbys on those
// physical slots have not confirmed, so Ferry never holds a change the
// promoted standby lacks. A slot named there that cannot confirm stops
// them all.
func standbySlotsItem(named []string, slots []standbySlot) *taskv1.PrecheckItem {
	const id = "synchronized_standby_slots"
	if len(named) == 0 {
		fix := "ALTER SYSTEM SET synchronized_standby_slots = '<the physical slot of each standby with sync_replication_slots = on>'; SELECT pg_reload_conf();"
		if len(slots) > 0 {
			fix += " standbys stream now through " + listNames(slotNames(slots, func(standbySlot) bool { return true }))
		}
		return warn(id, "synchronized_standby_slots is empty: Ferry may receive changes that no standby has yet; after a failover the promoted standby lacks them while Kafka has them, and its copy of Ferry's slot may not be usable yet", fix)
	}
	if bad := slotNames(slots, func(s standbySlot) bool { return !s.exists || !s.physical || s.invalidation != "" }); len(bad) > 0 {
		return fail(id, "synchronized_standby_slots names "+listNames(bad)+", which "+verb(bad, "is", "are")+" missing, not physical or invalidated: the walsenders of failover slots, Ferry's included, wait for "+verb(bad, "it", "them")+" forever",
			"on the standby create its physical slot (SELECT pg_create_physical_replication_slot('<name>') on this primary) and name it in primary_slot_name, or take it out of synchronized_standby_slots; then SELECT pg_reload_conf()")
	}
	if idle := slotNames(slots, func(s standbySlot) bool { return !s.active }); len(idle) > 0 {
		return warn(id, "no standby streams through "+listNames(idle)+", named in synchronized_standby_slots: Ferry's stream waits until "+verb(idle, "its standby reconnects", "their standbys reconnect"),
			"start the standby or fix its primary_conninfo and primary_slot_name, or take the slot out of synchronized_standby_slots and SELECT pg_reload_conf()")
	}
	return pass(id, "synchronized_standby_slots names "+listNames(named)+": Ferry receives only changes the standbys on those slots have")
}

// feedbackItem judges the standbys' hot_standby_feedback from their
// physical slots' xmin, which a slot sync worker needs and which only the
// standby can turn on.
func feedbackItem(slots []standbySlot) *taskv1.PrecheckItem {
	const id = "hot_standby_feedback"
	active := slotNames(slots, func(s standbySlot) bool { return s.active })
	if len(active) == 0 {
		return warn(id, "no standby is connected through a physical slot, so Ferry cannot see from the primary whether the standbys send hot_standby_feedback (a standby's setting is visible only on it), which slot synchronization needs",
			"on each standby check SHOW hot_standby_feedback and set it on, with primary_slot_name naming a physical slot on this primary; then run the precheck again")
	}
	if off := slotNames(slots, func(s standbySlot) bool { return s.active && !s.feedback }); len(off) > 0 {
		return warn(id, "the standbys on physical slots "+listNames(off)+" send no hot_standby_feedback (their slots hold no xmin): they cannot synchronize logical slots, so a failover to them loses Ferry's slot",
			"on those standbys run ALTER SYSTEM SET hot_standby_feedback = on; SELECT pg_reload_conf();")
	}
	return pass(id, "the standbys on physical slots "+listNames(active)+" send hot_standby_feedback (their slots hold an xmin)")
}

// primarySyncSlotsItem: sync_replication_slots acts on standbys, whose
// settings the primary does not show; a primary that names standby slots
// in synchronized_standby_slots was set up for them.
func primarySyncSlotsItem(s pgsource.SlotSync) *taskv1.PrecheckItem {
	const id = "sync_replication_slots"
	if len(s.StandbySlots) == 0 {
		return syncSlotsItem(haSettings{versionNum: s.Version, syncSlots: ptr(onOff(s.SyncSlots))}, fmt.Sprintf("PostgreSQL %d", s.Version/10000))
	}
	return pass(id, "the primary waits for the standbys on "+listNames(s.StandbySlots)+" (synchronized_standby_slots), which synchronize Ferry's failover slot when they run with sync_replication_slots = on; that setting is visible only on each standby (SHOW sync_replication_slots)")
}

func slotNames(slots []standbySlot, keep func(standbySlot) bool) []string {
	var out []string
	for _, s := range slots {
		if keep(s) {
			out = append(out, s.name)
		}
	}
	return out
}

func verb(names []string, one, many string) string {
	if len(names) == 1 {
		return one
	}
	return many
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func ptr[T any](v T) *T { return &v }

// replaceItems puts each of repl in place of the item of the same id.
func replaceItems(items []*taskv1.PrecheckItem, repl ...*taskv1.PrecheckItem) []*taskv1.PrecheckItem {
	for _, r := range repl {
		for i, it := range items {
			if it.GetId() == r.GetId() {
				items[i] = r
			}
		}
	}
	return items
}
