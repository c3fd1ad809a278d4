package capture

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	"github.com/ferry-cdc/ferry/services/capture/signal"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
	"github.com/ferry-cdc/ferry/services/internal/pgsql"
)

// PostgreSQL only accepts these slot names; checking here gives a clear
// error instead of a syntax error from the replication protocol.
var slotNamePattern = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// slotReleaseWait bounds how long ReleaseReplication waits for a stream that
// is still stopping to let go of the slot.
const slotReleaseWait = 10 * time.Second

func validateNames(slot, publication string) error {
	if !slotNamePattern.MatchString(slot) {
		return status.Errorf(codes.InvalidArgument,
			"slot name %q is invalid: PostgreSQL slot names are 1-63 characters of a-z, 0-9 and _", slot)
	}
	if publication == "" || len(publication) > 63 {
		return status.Errorf(codes.InvalidArgument, "publication name %q must be 1-63 bytes", publication)
	}
	return nil
}

// EnsureReplication creates the publication and then, unless asked for the
// publication only, the slot. The order
// matters: pgoutput looks the publication up as of each change's point in
// the WAL, so a slot older than its publication fails to decode.
func (s *Server) EnsureReplication(ctx context.Context, req *capturev1.EnsureReplicationRequest) (*capturev1.EnsureReplicationResponse, error) {
	if err := validateEnsure(req); err != nil {
		return nil, err
	}
	conn, err := pgsource.Connect(ctx, req.GetSource())
	if err != nil {
		return nil, toStatus(err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()

	if err := checkWALLevel(ctx, conn); err != nil {
		return nil, err
	}
	pubCreated, err := ensurePublication(ctx, conn, req)
	if err != nil {
		return nil, toStatus(err)
	}
	if req.GetPublicationOnly() {
		// Full sync creates the slot with the snapshot it reads.
		s.logger.Info("publication ensured", "publication", req.GetPublicationName(), "publication_created", pubCreated)
		return &capturev1.EnsureReplicationResponse{PublicationCreated: pubCreated}, nil
	}
	slotCreated, err := ensureSlot(ctx, conn, req)
	if err != nil {
		return nil, toStatus(err)
	}
	info, err := lookupSlot(ctx, conn, req.GetSlotName())
	if err != nil {
		return nil, toStatus(err)
	}
	s.logger.Info("replication ensured", "slot", req.GetSlotName(), "publication", req.GetPublicationName(),
		"slot_created", slotCreated, "publication_created", pubCreated, "confirmed_lsn", info.confirmed.String())
	return &capturev1.EnsureReplicationResponse{
		ConfirmedLsn:       uint64(info.confirmed),
		SlotCreated:        slotCreated,
		PublicationCreated: pubCreated,
	}, nil
}

// validateEnsure checks the request before connecting. A publication-only
// request may leave the slot unnamed: modify-objects sets the tables of a
// running task's publication and has no slot to create.
func validateEnsure(req *capturev1.EnsureReplicationRequest) error {
	slot := req.GetSlotName()
	if slot == "" && req.GetPublicationOnly() {
		slot = "unnamed"
	}
	if err := validateNames(slot, req.GetPublicationName()); err != nil {
		return err
	}
	if !req.GetAllTables() && len(req.GetTables()) == 0 && len(req.GetSchemas()) == 0 {
		return status.Error(codes.InvalidArgument, "EnsureReplication needs tables, schemas or all_tables")
	}
	for i, sc := range req.GetSchemas() {
		if sc == "" {
			return status.Errorf(codes.InvalidArgument, "schemas[%d] is empty; name the schema to publish", i)
		}
	}
	return nil
}

func checkWALLevel(ctx context.Context, conn *pgx.Conn) error {
	var level string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
		return toStatus(fmt.Errorf("reading wal_level: %w", err))
	}
	if level != "logical" {
		return failedPrecondition("the source has wal_level = %s; set wal_level = logical in postgresql.conf and restart PostgreSQL", level)
	}
	return nil
}

// ensureSlot creates the logical slot unless it exists. An existing slot
// of another plugin or database cannot serve this task and is left alone.
func ensureSlot(ctx context.Context, conn *pgx.Conn, req *capturev1.EnsureReplicationRequest) (bool, error) {
	src, name, owner := req.GetSource(), req.GetSlotName(), req.GetOwner()
	info, err := lookupSlot(ctx, conn, name)
	if err == nil {
		if info.plugin != "pgoutput" || info.database != src.GetDatabase() {
			return false, failedPrecondition("replication slot %s exists with plugin %q on database %q, but Ferry needs pgoutput on %q; drop it or choose another slot name",
				name, info.plugin, info.database, src.GetDatabase())
		}
		if owner != "" {
			return false, ownSlot(ctx, conn, name, req.GetPublicationName(), owner)
		}
		return false, nil
	}
	if !errors.Is(err, errSlotMissing) {
		return false, err
	}
	if owner != "" {
		if err := claimSlot(ctx, conn, req.GetPublicationName(), owner); err != nil {
			return false, err
		}
	}
	failover, err := slotFailover(ctx, conn, src)
	if err != nil {
		return false, err
	}
	repl, err := connectReplication(ctx, src)
	if err != nil {
		return false, err
	}
	defer func() { _ = repl.Close(context.WithoutCancel(ctx)) }()
	_, err = createSlot(ctx, repl, name, failover, false)
	switch {
	case err == nil:
		return true, nil
	case pgsql.IsCode(err, "42710"): // created concurrently
		return false, nil
	}
	return false, fmt.Errorf("creating replication slot %s: %w", name, err)
}

var errSlotMissing = errors.New("replication slot does not exist")

type slotInfo struct {
	confirmed pglogrepl.LSN
	plugin    string
	database  string
	active    bool
	activePID *int32
	failover  bool // always false before PostgreSQL 17
	// synced: a copy synchronized from a primary; on a primary, one left
	// by the promotion of the standby it was copied to (PostgreSQL 17).
	synced bool
}

func lookupSlot(ctx context.Context, conn *pgx.Conn, name string) (slotInfo, error) {
	var (
		info      slotInfo
		confirmed *string
		plugin    *string
		database  *string
	)
	err := conn.QueryRow(ctx, `
		SELECT confirmed_flush_lsn::text, plugin::text, database::text, active, active_pid,
		       coalesce((to_jsonb(s) ->> 'failover')::bool, false), coalesce((to_jsonb(s) ->> 'synced')::bool, false)
		FROM pg_replication_slots s WHERE slot_name = $1`, name).
		Scan(&confirmed, &plugin, &database, &info.active, &info.activePID, &info.failover, &info.synced)
	if errors.Is(err, pgx.ErrNoRows) {
		return info, fmt.Errorf("replication slot %s: %w", name, errSlotMissing)
	}
	if err != nil {
		return info, fmt.Errorf("reading replication slot %s: %w", name, err)
	}
	if plugin != nil {
		info.plugin = *plugin
	}
	if database != nil {
		info.database = *database
	}
	if confirmed != nil {
		if info.confirmed, err = pglogrepl.ParseLSN(*confirmed); err != nil {
			return info, fmt.Errorf("reading replication slot %s: %w", name, err)
		}
	}
	return info, nil
}

// ReleaseReplication drops the slot, then the publication; each only if it
// exists.
func (s *Server) ReleaseReplication(ctx context.Context, req *capturev1.ReleaseReplicationRequest) (*capturev1.ReleaseReplicationResponse, error) {
	if err := validateNames(req.GetSlotName(), req.GetPublicationName()); err != nil {
		return nil, err
	}
	conn, err := pgsource.Connect(ctx, req.GetSource())
	if err != nil {
		return nil, toStatus(err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if why, err := unowned(ctx, conn, req); err != nil || why != "" {
		if why != "" {
			s.logger.Warn("replication left in place", "slot", req.GetSlotName(), "publication", req.GetPublicationName(), "because", why)
		}
		return &capturev1.ReleaseReplicationResponse{LeftBecause: why}, toStatus(err)
	}

	slotDropped, err := dropSlot(ctx, conn, req.GetSlotName())
	if err != nil {
		return nil, toStatus(err)
	}
	pubDropped, err := dropPublication(ctx, conn, req.GetPublicationName())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := signal.ForgetFilters(ctx, conn, req.GetPublicationName()); err != nil {
		return nil, toStatus(err)
	}
	signalsDropped, err := signal.ReleaseTable(ctx, conn)
	if err != nil {
		return nil, toStatus(err)
	}
	s.logger.Info("replication released", "slot", req.GetSlotName(), "publication", req.GetPublicationName(),
		"slot_dropped", slotDropped, "publication_dropped", pubDropped, "signal_table_dropped", signalsDropped)
	return &capturev1.ReleaseReplicationResponse{SlotDropped: slotDropped, PublicationDropped: pubDropped}, nil
}

// unowned says why a release with an owner must leave the slot and
// publication alone, or "" when they are the owner's (or already gone).
func unowned(ctx context.Context, conn *pgx.Conn, req *capturev1.ReleaseReplicationRequest) (string, error) {
	owner, slot, pub := req.GetOwner(), req.GetSlotName(), req.GetPublicationName()
	if owner == "" {
		return "", nil
	}
	_, err := lookupSlot(ctx, conn, slot)
	slotExists := err == nil
	if err != nil && !errors.Is(err, errSlotMissing) {
		return "", err
	}
	c, err := readClaim(ctx, conn, pub)
	switch {
	case errors.Is(err, errNoPublication) && !slotExists:
		return "", nil // released before
	case errors.Is(err, errNoPublication):
		return fmt.Sprintf("replication slot %s exists but publication %s, which records Ferry's ownership, does not, so Ferry cannot tell the slot is this task's; drop it yourself if nothing uses it",
			slot, pgx.Identifier{pub}.Sanitize()), nil
	case err != nil:
		return "", err
	case c.owner != owner:
		return fmt.Sprintf("publication %s is not this task's (%s); drop it and slot %s yourself if nothing uses them",
			pgx.Identifier{pub}.Sanitize(), describeClaim(c, owner), slot), nil
	case slotExists && !c.slot:
		return fmt.Sprintf("replication slot %s was not created by this task; drop it yourself if nothing uses it, then stop the task with release again", slot), nil
	}
	return "", nil
}

func dropSlot(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	if err := waitSlotInactive(ctx, conn, name, slotReleaseWait); err != nil {
		if errors.Is(err, errSlotMissing) {
			return false, nil
		}
		return false, err
	}
	_, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", name)
	switch {
	case err == nil:
		return true, nil
	case pgsql.IsCode(err, "42704"): // dropped concurrently
		return false, nil
	}
	return false, fmt.Errorf("dropping replication slot %s: %w", name, err)
}

// waitSlotInactive polls until no session streams from the slot: a stream
// that is shutting down holds it for a moment after its client left.
func waitSlotInactive(ctx context.Context, conn *pgx.Conn, name string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := lookupSlot(ctx, conn, name)
		if err != nil {
			return err
		}
		if !info.active {
			return nil
		}
		if time.Now().After(deadline) {
			pid := int32(0)
			if info.activePID != nil {
				pid = *info.activePID
			}
			return failedPrecondition("replication slot %s is still in use by process %d after %s; stop the stream that reads it (or terminate that process) and retry",
				name, pid, wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func dropPublication(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	st, err := readPublication(ctx, conn, name)
	if err != nil || !st.exists {
		return false, err
	}
	quoted := pgx.Identifier{name}.Sanitize()
	_, err = conn.Exec(ctx, "DROP PUBLICATION "+quoted)
	switch {
	case err == nil:
		return true, nil
	case pgsql.IsCode(err, "42704"):
		return false, nil
	}
	return false, fmt.Errorf("dropping publication %s: %w", quoted, err)
}
