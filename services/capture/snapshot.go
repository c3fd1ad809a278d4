package capture

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	"github.com/ferry-cdc/ferry/services/capture/snapshot"
	"github.com/ferry-cdc/ferry/services/capture/throttle"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
)

// ReadSnapshot is full sync; see the contract in capture.proto.
func (s *Server) ReadSnapshot(req *capturev1.ReadSnapshotRequest, gs capturev1.CaptureService_ReadSnapshotServer) error {
	if err := validateNames(req.GetSlotName(), req.GetPublicationName()); err != nil {
		return err
	}
	if len(req.GetTables()) == 0 {
		return status.Error(codes.InvalidArgument, "ReadSnapshot needs at least one table")
	}
	ctx := gs.Context()
	thr := throttle.ForSnapshot(req.GetThrottle())
	defer s.throttles.Add(req.GetSlotName(), thr)()
	gs, unwatch := s.Metrics.watchSnapshot(req, gs)
	defer unwatch()
	snap, err := s.exportSnapshot(ctx, req)
	if err != nil {
		return toStatus(err)
	}
	defer func() { _ = snap.Repl.Close(context.WithoutCancel(ctx)) }()
	started := &capturev1.SnapshotStarted{ConsistentLsn: uint64(snap.LSN), SnapshotName: snap.Name, SnapshotTime: snap.At}
	if err := gs.Send(&capturev1.ReadSnapshotResponse{Started: started}); err != nil {
		return toStatus(fmt.Errorf("sending the snapshot's start: %w", err))
	}
	begun := time.Now()
	counts, err := snapshot.Read(ctx, req, snap, thr, gs, snapshot.Options{ChunkBlocks: s.snapshotChunkBlocks, MaxBatch: defaultMaxBatchEvents})
	if err != nil {
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		s.logger.Warn("snapshot failed", "slot", req.GetSlotName(), "error", err)
		return toStatus(err)
	}
	var total uint64
	for _, c := range counts {
		total += c.GetRows()
	}
	s.logger.Info("snapshot read", "slot", req.GetSlotName(), "consistent_lsn", snap.LSN.String(),
		"tables", len(counts), "rows", total, "seconds", time.Since(begun).Seconds())
	return nil
}

// exportSnapshot creates the slot with an exported snapshot, once the
// publication exists (a slot older than its publication cannot decode).
func (s *Server) exportSnapshot(ctx context.Context, req *capturev1.ReadSnapshotRequest) (*snapshot.Exported, error) {
	slot, pub := req.GetSlotName(), req.GetPublicationName()
	conn, err := pgsource.Connect(ctx, req.GetSource())
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, exists, err := publicationTables(ctx, conn, pub); err != nil {
		return nil, err
	} else if !exists {
		return nil, failedPrecondition("publication %q does not exist; run setup (EnsureReplication with publication_only) before full sync", pub)
	}
	if err := s.dropStaleSlot(ctx, conn, req, slot); err != nil {
		return nil, err
	}
	if owner := req.GetOwner(); owner != "" {
		if err := claimSlot(ctx, conn, pub, owner); err != nil {
			return nil, err
		}
	}
	failover, err := slotFailover(ctx, conn, req.GetSource())
	if err != nil {
		return nil, err
	}
	repl, err := connectReplication(ctx, req.GetSource())
	if err != nil {
		return nil, err
	}
	res, err := createSlot(ctx, repl, slot, failover, true)
	if err == nil {
		snap := &snapshot.Exported{Repl: repl, Name: res.SnapshotName}
		if snap.LSN, err = pglogrepl.ParseLSN(res.ConsistentPoint); err == nil {
			var at time.Time
			err = conn.QueryRow(ctx, "SELECT now()").Scan(&at)
			snap.At = timestamppb.New(at)
		}
		if err == nil {
			s.logger.Info("snapshot exported", "slot", slot, "snapshot", snap.Name, "consistent_lsn", snap.LSN.String(), "failover", failover)
			return snap, nil
		}
	}
	_ = repl.Close(context.WithoutCancel(ctx))
	return nil, fmt.Errorf("creating replication slot %s with an exported snapshot: %w", slot, err)
}

// dropStaleSlot drops the task's slot left by an earlier snapshot attempt:
// its snapshot died with that attempt's session, so the slot's start point
// no longer meets any snapshot. A slot of another plugin or database is not
// Ferry's to drop.
func (s *Server) dropStaleSlot(ctx context.Context, conn *pgx.Conn, req *capturev1.ReadSnapshotRequest, slot string) error {
	src := req.GetSource()
	info, err := lookupSlot(ctx, conn, slot)
	if errors.Is(err, errSlotMissing) {
		return nil
	}
	if err != nil {
		return err
	}
	if info.plugin != "pgoutput" || info.database != src.GetDatabase() {
		return failedPrecondition("replication slot %s exists with plugin %q on database %q, but Ferry needs pgoutput on %q; drop it or choose another task ID",
			slot, info.plugin, info.database, src.GetDatabase())
	}
	if owner := req.GetOwner(); owner != "" {
		if err := ownSlot(ctx, conn, slot, req.GetPublicationName(), owner); err != nil {
			return err
		}
	}
	s.logger.Warn("dropping the slot of an interrupted full sync; the snapshot starts again", "slot", slot)
	_, err = dropSlot(ctx, conn, slot)
	return err
}
