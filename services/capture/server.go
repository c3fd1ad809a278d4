// Package capture serves CaptureService: it manages a task's publication and
// logical replication slot and streams decoded pgoutput changes in batches,
// confirming WAL to PostgreSQL only as far as the client acknowledges.
//
// Values travel in PostgreSQL's text protocol: pgoutput runs without
// binary = true, and full sync reads COPY's text format. Capture parses no
// value: each row image goes to delivery as a cdcv1.Tuple of the texts as
// the source sent them (COPY's unescaped), and a format parses only what it
// needs when it encodes. Text is exact for every type because it is what
// the type's own output function prints, and each session fixes the
// settings that shape it (pgsource: TimeZone=UTC, DateStyle=ISO,
// IntervalStyle=postgres, extra_float_digits=3, bytea_output=hex).
package capture

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	"github.com/ferry-cdc/ferry/services/capture/backfill"
	"github.com/ferry-cdc/ferry/services/capture/decode"
	"github.com/ferry-cdc/ferry/services/capture/signal"
	"github.com/ferry-cdc/ferry/services/capture/throttle"
	"github.com/ferry-cdc/ferry/services/capture/wire"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
	"github.com/ferry-cdc/ferry/services/internal/pgsql"
)

// Server implements capturev1.CaptureServiceServer. It keeps no state
// between calls: every stream opens its own connections. It only knows the
// throttles of the running calls, for UpdateThrottle.
type Server struct {
	capturev1.UnimplementedCaptureServiceServer
	logger    *slog.Logger
	throttles throttle.Registry
	// Metrics records per-slot metrics (metrics.go); nil records none.
	Metrics *Metrics
	// snapshotChunkBlocks, when set, replaces the snapshot's smallest
	// chunk (snapshot.Options), so that tests split small tables into many
	// chunks.
	snapshotChunkBlocks int64
	// StreamInProgress asks PostgreSQL 14 and later to stream large
	// transactions while they run (pgoutput protocol 2, streaming.go)
	// rather than spill them to the server's disk until they commit; the
	// capture spools them to SpoolDir instead. False, or an older server,
	// keeps protocol 1.
	StreamInProgress bool
	// StreamProtocol is the pgoutput protocol streaming asks for on
	// PostgreSQL 16 and later: 2 (streaming 'on') or 4 (streaming
	// 'parallel'); 14 and 15 always get 2. Zero: DefaultStreamProtocol.
	StreamProtocol int
	// SpoolDir holds the spools of streamed transactions; empty:
	// os.TempDir().
	SpoolDir string
	// BackfillReaders is how many tables a stream's backfill (the keyed
	// full sync, and tables added later) reads at once, each on a session
	// of its own; 1 reads them one after another. Zero:
	// DefaultBackfillReaders.
	BackfillReaders int
}

// NewServer returns a Server that logs to logger and streams in-progress
// transactions where the source supports it.
func NewServer(logger *slog.Logger) *Server {
	return &Server{logger: logger, StreamInProgress: true, StreamProtocol: DefaultStreamProtocol, BackfillReaders: DefaultBackfillReaders}
}

// DefaultBackfillReaders is how many tables a stream's backfill reads at
// once unless the capture is told otherwise (backfill.DefaultReaders).
const DefaultBackfillReaders = backfill.DefaultReaders

// DefaultStreamProtocol is the protocol streamed transactions use on
// PostgreSQL 16 and later unless the capture is told otherwise. It stays 2,
// which 14 and 15 speak too, because 4 was not faster: the streamproto
// benchmark (bench/README.md) read the same 1,000,000 rows with both on
// PostgreSQL 17, in one big transaction and in four interleaved ones with
// aborts, and found 4/2 = 1.01 in both shapes over 5 runs, with run-to-run
// spread of 0.81 to 1.17 that followed which protocol ran first. For a
// client that ships whole transactions at their commit the protocols differ
// only in StreamAbort's length (wire.StreamMode), so nothing faster was to be
// expected.
const DefaultStreamProtocol = 2

// parallelStreamVersion is the first server_version_num with pgoutput
// protocol 4 and streaming 'parallel'.
const parallelStreamVersion = 160000

// CheckStreamProtocol tells whether p is a StreamProtocol Ferry speaks.
func CheckStreamProtocol(p int) error {
	if p != 2 && p != 4 {
		return fmt.Errorf("stream protocol %d is not 2 or 4", p)
	}
	return nil
}

// slotBusyWait bounds how long a new stream waits for the previous reader
// of its slot (typically a stream that is just closing) to let go.
const slotBusyWait = 10 * time.Second

// StreamChanges reads the StartStream request, opens the slot and runs the
// replication loop until the client leaves or something fails.
func (s *Server) StreamChanges(gs capturev1.CaptureService_StreamChangesServer) error {
	ctx := gs.Context()
	first, err := gs.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) || ctx.Err() != nil {
			return nil
		}
		return toStatus(fmt.Errorf("reading StartStream: %w", err))
	}
	start := first.GetStart()
	if start == nil {
		return status.Error(codes.InvalidArgument, "the first StreamChanges message must be StartStream")
	}
	if err := validateNames(start.GetSlotName(), start.GetPublicationName()); err != nil {
		return err
	}
	thr := throttle.ForStream(start.GetThrottle())
	defer s.throttles.Add(start.GetSlotName(), thr)()
	gs, unwatch := s.Metrics.watchStream(start, gs)
	defer unwatch()
	st, err := s.openStream(ctx, start, gs)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return toStatus(err)
	}
	defer st.close()
	st.pace = st.paceWith(ctx, thr)
	st.limited = thr.Limited

	acks := make(chan error, 1)
	go st.receiveAcks(gs, acks)
	err = st.run(ctx, acks)
	if ctx.Err() != nil || errors.Is(err, errClientDone) {
		s.logger.Info("stream ended by the client", "slot", start.GetSlotName())
		return nil
	}
	s.logger.Warn("stream failed", "slot", start.GetSlotName(), "error", err)
	return toStatus(describeStreamFailure(start.GetSlotName(), start.GetPublicationName(), err))
}

// openStream checks the slot and publication, then starts replication at
// max(start_lsn, confirmed_flush_lsn).
func (s *Server) openStream(ctx context.Context, start *capturev1.StartStream, gs sender) (*stream, error) {
	slot, pub := start.GetSlotName(), start.GetPublicationName()
	conn, err := pgsource.Connect(ctx, start.GetSource())
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = conn.Close(context.WithoutCancel(ctx))
		}
	}()
	slotNow, err := checkStreamable(ctx, conn, slot, pub, pglogrepl.LSN(start.GetStartLsn()))
	if err != nil {
		return nil, err
	}
	confirmed := slotNow.confirmed
	repl, err := connectReplication(ctx, start.GetSource())
	if err != nil {
		return nil, err
	}
	if err := ensureFailover(ctx, conn, repl, start.GetSource(), slot, s.logger); err != nil {
		_ = repl.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	startLSN := resumeAt(s.logger, slot, pglogrepl.LSN(start.GetStartLsn()), slotNow)
	version, err := pgsource.ServerVersion(ctx, conn)
	if err != nil {
		_ = repl.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	args, streaming := pluginArgs(version, pub, s.StreamInProgress, s.StreamProtocol)
	err = pglogrepl.StartReplication(ctx, repl, slot, startLSN, pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication, PluginArgs: args,
	})
	if err != nil {
		_ = repl.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("starting replication from slot %s at %s: %w", slot, startLSN, err)
	}
	s.logger.Info("stream started", "slot", slot, "publication", pub,
		"start_lsn", startLSN.String(), "confirmed_lsn", confirmed.String(), "streaming", streaming.String())
	ok = true
	st := newStream(s.logger.With("slot", slot), gs, repl, conn, confirmed, startLSN,
		newBatcher(start.GetMaxBatchEvents(), start.GetMaxBatchDelayMs()))
	st.version, st.streaming = version, streaming
	if version < viaRootVersion {
		st.roots = decode.NewPartitionRoots(conn)
	}
	if signal.EvaluatedFilters(version) {
		exprs, err := signal.ReadFilters(ctx, conn, pub)
		if err != nil {
			st.close()
			return nil, err
		}
		st.filters = decode.NewFilters(pub, exprs)
	}
	if streaming != wire.StreamOff {
		st.spools = wire.NewSpoolSet(s.SpoolDir, slot)
		if n, err := st.spools.RemoveOrphans(); err != nil {
			s.logger.Warn("old spools are left in the spool folder; delete them by hand", "slot", slot, "error", err)
		} else if n > 0 {
			s.logger.Info("deleted spools an earlier stream left behind", "slot", slot, "files", n)
		}
	}
	st.hb = heartbeat{every: time.Duration(start.GetHeartbeatSeconds()) * time.Second, payload: slot}
	// Started once replication has, so every watermark is in the stream.
	if st.bf, err = backfill.Start(ctx, start, conn, cmp.Or(s.BackfillReaders, DefaultBackfillReaders)); err != nil {
		st.close()
		return nil, err
	}
	return st, nil
}

// pluginArgs are pgoutput's options, and how they ask for streaming.
// messages 'true' (PostgreSQL 14 and later; older servers reject the
// option) forwards logical messages, which carries the heartbeat's position
// to the stream. With streamInProgress, PostgreSQL 14 and later also get
// protocol 2 with streaming 'on' (both are new in 14), or, on 16 and later
// with protocol 4, streaming 'parallel'.
func pluginArgs(version int, pub string, streamInProgress bool, protocol int) ([]string, wire.StreamMode) {
	streaming := wire.StreamOff
	switch {
	case !streamInProgress || version < signal.MessagesVersion:
	case protocol == 4 && version >= parallelStreamVersion:
		streaming = wire.StreamParallel
	default:
		streaming = wire.StreamOn
	}
	proto := map[wire.StreamMode]string{wire.StreamOff: "1", wire.StreamOn: "2", wire.StreamParallel: "4"}[streaming]
	args := []string{
		"proto_version '" + proto + "'",
		// publication_names is a list of identifiers inside a string
		// literal: quote the name as an identifier, then as a literal.
		"publication_names " + pgsql.ReplicationLiteral(pgx.Identifier{pub}.Sanitize()),
	}
	if !signal.UsesTable(version) {
		args = append(args, "messages 'true'")
	}
	switch streaming {
	case wire.StreamOn:
		args = append(args, "streaming 'on'")
	case wire.StreamParallel:
		args = append(args, "streaming 'parallel'")
	}
	return args, streaming
}

// checkStreamable returns the slot's confirmed_flush_lsn once the slot is
// free, with errors that say how to fix wal_level or a missing slot or
// publication. wal_level comes first: it is the cause to fix first when a
// slot is missing too.
func checkStreamable(ctx context.Context, conn *pgx.Conn, slot, pub string, resume pglogrepl.LSN) (slotInfo, error) {
	if err := checkWALLevel(ctx, conn); err != nil {
		return slotInfo{}, err
	}
	_, pubExists, err := publicationTables(ctx, conn, pub)
	if err != nil {
		return slotInfo{}, err
	}
	if err := waitSlotInactive(ctx, conn, slot, slotBusyWait); err != nil {
		if errors.Is(err, errSlotMissing) {
			return slotInfo{}, slotDropped(slot, resume)
		}
		if s, ok := status.FromError(err); ok && s.Code() == codes.FailedPrecondition {
			// Another stream may still be closing: worth retrying.
			return slotInfo{}, status.Error(codes.Unavailable, s.Message())
		}
		return slotInfo{}, err
	}
	if !pubExists {
		return slotInfo{}, publicationMissing(pub, slot)
	}
	info, err := lookupSlot(ctx, conn, slot)
	if err != nil {
		return slotInfo{}, err
	}
	if info.plugin != "pgoutput" {
		return slotInfo{}, failedPrecondition("replication slot %s uses plugin %q, not pgoutput; drop it and run setup again", slot, info.plugin)
	}
	if info.confirmed == 0 {
		// Reporting a zero flush position would let pglogrepl substitute the
		// write position, confirming WAL no one acknowledged.
		return slotInfo{}, failedPrecondition("replication slot %s has no confirmed_flush_lsn; it is not a usable logical slot", slot)
	}
	return info, nil
}

// resumeAt is where the stream starts: the checkpoint Kafka confirmed, or
// the slot's confirmed position if that is later. A slot a promoted
// standby synchronized is the exception: the checkpoint may lie past the
// point where the new primary's timeline forked from the old one's WAL
// (WAL Ferry confirmed that the standby never received, when the primary
// did not wait for it with synchronized_standby_slots), and starting there
// would skip the new timeline's transactions below it. From the slot's own
// position the stream sends some changes again, and loses none.
func resumeAt(logger *slog.Logger, slot string, checkpoint pglogrepl.LSN, info slotInfo) pglogrepl.LSN {
	if info.synced && checkpoint > info.confirmed {
		logger.Warn("the slot was synchronized to a standby that has since been promoted; resuming at its own position, before the task's checkpoint, so changes between them are sent again",
			"slot", slot, "checkpoint", checkpoint.String(), "slot_confirmed", info.confirmed.String())
		return info.confirmed
	}
	return max(checkpoint, info.confirmed)
}
