package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/capture/backfill"
	"github.com/ferry-cdc/ferry/services/capture/decode"
	"github.com/ferry-cdc/ferry/services/capture/signal"
	"github.com/ferry-cdc/ferry/services/capture/throttle"
	"github.com/ferry-cdc/ferry/services/capture/wire"
)

const (
	// statusInterval is the longest gap between status updates, well
	// inside PostgreSQL's default wal_sender_timeout of 60 s.
	statusInterval = 10 * time.Second
	// statusCoalesce spaces out updates that only report progress, and
	// bounds how long a receive blocks so acks are applied promptly.
	statusCoalesce = 100 * time.Millisecond
	// idleWatermarkInterval spaces out empty batches that only carry a
	// keepalive's WAL position.
	idleWatermarkInterval = time.Second
	// heartbeatTimeout bounds a heartbeat statement, which runs inside the
	// replication loop.
	heartbeatTimeout = 5 * time.Second
	// heartbeatPrefix is the logical message prefix of Ferry's heartbeats.
	heartbeatPrefix = "ferry_heartbeat"
)

// errClientDone means the client closed its side of the stream.
var errClientDone = errors.New("client closed the stream")

// sender is the sending half of the gRPC stream.
type sender interface {
	Send(*capturev1.StreamChangesResponse) error
}

// txn is the transaction whose changes are arriving.
type txn struct {
	xid        uint32
	commitLSN  uint64
	commitTime *timestamppb.Timestamp
	events     int
	signals    []txnSignal // signal table rows (signals.go)
}

// stream is one StreamChanges call. Everything but lsn is owned by the
// goroutine running run.
type stream struct {
	logger  *slog.Logger
	out     sender
	repl    *pgconn.PgConn
	catalog *pgx.Conn
	rels    *decode.Relations
	lsn     *wire.LSNTracker
	batch   *batcher

	txn           *txn
	lastStatus    time.Time
	serverWALEnd  pglogrepl.LSN
	lastWatermark uint64
	lastIdleMark  time.Time
	hb            heartbeat
	bf            *backfill.Backfills // nil: no tables to backfill (package backfill)
	// roots present partitions' changes under their roots (PostgreSQL 12,
	// decode/partitions.go); nil where the publication does so itself.
	roots *decode.PartitionRoots
	// sig finds Ferry's signal table in the stream (signals.go).
	sig signalColumns
	// filters are the row filters Ferry evaluates itself, before
	// PostgreSQL 15 (decode/filters.go); nil where the publication filters.
	filters *decode.Filters
	// version is the source's server_version_num.
	version int
	// spools hold in-progress streamed transactions (protocol 2 or 4,
	// streaming.go); nil: protocol 1, where none are streamed.
	spools *wire.SpoolSet
	// streaming is the protocol the stream asked for; wire.StreamParallel
	// lengthens StreamAbort.
	streaming wire.StreamMode
	// defineRelation records a Relation message; the relation cache's
	// define, which asks the catalog, unless a test replaces it.
	defineRelation func(context.Context, *pglogrepl.RelationMessage) error
	// pace holds a batch until the throttle lets it go; nil: unthrottled.
	pace func(*cdcv1.ChangeBatch) error
	// limited reports whether a rows or bytes limit is on; nil: never.
	limited func() bool
}

// heartbeat is the schedule of the logical messages that keep the slot
// moving while the published tables are idle.
type heartbeat struct {
	every   time.Duration // zero: none
	payload string        // the slot's name, so a DBA can tell whose it is
	last    time.Time
	failing bool // the last one failed; log recovery once
}

func newStream(logger *slog.Logger, out sender, repl *pgconn.PgConn, catalog *pgx.Conn,
	confirmed, start pglogrepl.LSN, batch *batcher) *stream {
	st := &stream{
		logger:        logger,
		out:           out,
		repl:          repl,
		catalog:       catalog,
		rels:          decode.NewRelations(catalog),
		lsn:           wire.NewLSNTracker(confirmed, start),
		batch:         batch,
		lastStatus:    time.Now(),
		lastWatermark: uint64(confirmed),
	}
	st.defineRelation = st.rels.Define
	return st
}

// close ends both sessions. It runs when the gRPC call ends, so it must not
// use the call's context, which is already cancelled.
func (st *stream) close() {
	st.bf.Stop()
	if err := st.spools.RemoveAll(); err != nil {
		st.logger.Warn("deleting the spools of in-progress streamed transactions failed; delete them by hand", "error", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = st.repl.Close(ctx)
	_ = st.catalog.Close(ctx)
}

// receiveAcks applies the client's acks as they arrive and reports why the
// client side ended on done.
func (st *stream) receiveAcks(in interface {
	Recv() (*capturev1.StreamChangesRequest, error)
}, done chan<- error) {
	for {
		req, err := in.Recv()
		if errors.Is(err, io.EOF) {
			done <- errClientDone
			return
		}
		if err != nil {
			done <- fmt.Errorf("reading from the client: %w", err)
			return
		}
		ack := req.GetAck()
		if ack == nil {
			done <- status.Error(codes.InvalidArgument, "after StartStream the client may only send Ack")
			return
		}
		if flushed, capped := st.lsn.Ack(pglogrepl.LSN(ack.GetFlushedLsn())); capped {
			st.logger.Warn("client acked beyond what it was sent; capped",
				"acked", pglogrepl.LSN(ack.GetFlushedLsn()).String(), "flushed", flushed.String())
		}
	}
}

// run is the replication loop: report status, receive one message with a
// deadline, act on it.
func (st *stream) run(ctx context.Context, clientDone <-chan error) error {
	// A receive waits on the connection's read deadline (listen), so the
	// end of the call must move that deadline for the slot to be let go at
	// once.
	stop := context.AfterFunc(ctx, func() { _ = st.repl.Conn().SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		select {
		case err := <-clientDone:
			return err
		default:
		}
		if err := st.bf.Failed(); err != nil {
			return err
		}
		now := time.Now()
		if st.statusDue(now) {
			if err := st.sendStatus(now); err != nil {
				return err
			}
		}
		if err := st.idleWatermark(now); err != nil {
			return err
		}
		if err := st.heartbeat(ctx, now); err != nil {
			return err
		}
		msg, err := st.listen(ctx)
		if err != nil {
			return err
		}
		if msg == nil {
			if err := st.flushIfDue(time.Now()); err != nil {
				return err
			}
			continue
		}
		if err := st.dispatch(ctx, msg); err != nil {
			return err
		}
	}
}

// listen receives one message, or nil once the wait is over. The wait ends
// at the pending batch's deadline so no batch is held longer than its delay.
func (st *stream) listen(ctx context.Context) (*pgproto3.CopyData, error) {
	wait := statusCoalesce
	if deadline, ok := st.batch.deadline(); ok {
		// At least a millisecond, so a message already buffered (often the
		// commit that ends the batch) is still read before flushing.
		wait = max(min(wait, time.Until(deadline)), time.Millisecond)
	}
	// The deadline goes on the connection rather than into a context per
	// message: a context with a timeout, and pgconn's watcher of it, cost
	// about 15% of capture's CPU. run moves the deadline when ctx ends.
	if err := st.repl.Conn().SetReadDeadline(time.Now().Add(wait)); err != nil {
		return nil, fmt.Errorf("setting the replication connection's read deadline: %w", err)
	}
	if ctx.Err() != nil { // ended before the deadline above replaced run's
		return nil, fmt.Errorf("receiving from the replication stream: %w", ctx.Err())
	}
	msg, err := st.repl.ReceiveMessage(context.Background())
	if err != nil {
		if pgconn.Timeout(err) {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("receiving from the replication stream: %w", ctx.Err())
			}
			return nil, nil
		}
		return nil, fmt.Errorf("receiving from the replication stream: %w", err)
	}
	switch msg := msg.(type) {
	case *pgproto3.CopyData:
		return msg, nil
	case *pgproto3.ErrorResponse:
		return nil, fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(msg))
	case *pgproto3.CopyDone:
		return nil, status.Error(codes.Unavailable, "PostgreSQL ended the replication stream")
	default:
		st.logger.Debug("ignoring replication protocol message", "type", fmt.Sprintf("%T", msg))
		return nil, nil
	}
}

func (st *stream) dispatch(ctx context.Context, msg *pgproto3.CopyData) error {
	if len(msg.Data) == 0 {
		return nil
	}
	switch msg.Data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		return st.keepalive(msg.Data[1:])
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
		if err != nil {
			return fmt.Errorf("parsing XLogData: %w", err)
		}
		st.lsn.Receive(xld.WALStart)
		return st.data(ctx, xld)
	}
	return nil
}

// keepalive records the server's WAL end and answers at once if asked;
// otherwise the walsender would drop the connection after
// wal_sender_timeout.
func (st *stream) keepalive(buf []byte) error {
	pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(buf)
	if err != nil {
		return fmt.Errorf("parsing keepalive: %w", err)
	}
	st.lsn.Receive(pkm.ServerWALEnd)
	st.serverWALEnd = max(st.serverWALEnd, pkm.ServerWALEnd)
	if pkm.ReplyRequested {
		return st.sendStatus(time.Now())
	}
	return nil
}

// statusDue: every statusInterval, or sooner (coalesced) when there is
// progress to report. Keepalives asking for a reply are answered directly.
func (st *stream) statusDue(now time.Time) bool {
	since := now.Sub(st.lastStatus)
	return since >= statusInterval || since >= statusCoalesce && st.lsn.Changed()
}

// sendStatus reports received as written and the acked position as flushed
// and applied. flushed is never zero (see wire.NewLSNTracker), which matters:
// pglogrepl would replace a zero by the write position.
func (st *stream) sendStatus(now time.Time) error {
	received, flushed := st.lsn.Positions()
	if flushed == 0 {
		return errors.New("refusing to report a zero flush position")
	}
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), st.repl, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: received,
		WALFlushPosition: flushed,
		WALApplyPosition: flushed,
		ClientTime:       now,
	})
	if err != nil {
		return fmt.Errorf("sending standby status update: %w", err)
	}
	st.lsn.Reported(received, flushed)
	st.lastStatus = now
	return nil
}

// idleWatermark lets an idle slot advance: when nothing is pending and no
// transaction is open, every change at or below the server's WAL end has
// been sent, so that position is a valid watermark.
//
// A streamed transaction still in progress (protocol 2, spooled) does not
// count as open here, and the watermark may pass the start of its changes:
// none of them has been sent, and its commit, which is what replays them,
// lies beyond the server's WAL end (the walsender reports the end of what
// it decoded, and sends a StreamCommit as soon as it decodes the commit).
// Confirming such a position is safe for PostgreSQL: the slot's
// restart_lsn stays behind the start of every running transaction, and a
// transaction whose commit lies beyond the confirmed position is decoded
// and sent again whole on the next connection.
func (st *stream) idleWatermark(now time.Time) error {
	if st.txn != nil || !st.batch.empty() || uint64(st.serverWALEnd) <= st.lastWatermark ||
		now.Sub(st.lastIdleMark) < idleWatermarkInterval {
		return nil
	}
	st.lastIdleMark = now
	return st.send(&cdcv1.ChangeBatch{WatermarkLsn: uint64(st.serverWALEnd)})
}

// heartbeat writes a signal into the source's WAL when one is due: a
// non-transactional logical message, which needs no table and no privilege
// beyond connecting (pg_logical_emit_message is executable by PUBLIC), or
// before PostgreSQL 14, whose pgoutput drops messages, a row of Ferry's
// signal table (package signal). The stream turns either into a watermark. A
// failed heartbeat is logged, not fatal: the slot keeps advancing on
// keepalives. Only a lost session ends the stream, since relation lookups
// need it too.
func (st *stream) heartbeat(ctx context.Context, now time.Time) error {
	if st.hb.every <= 0 || now.Sub(st.hb.last) < st.hb.every {
		return nil
	}
	st.hb.last = now
	hctx, cancel := context.WithTimeout(ctx, heartbeatTimeout)
	defer cancel()
	err := signal.Write(hctx, st.catalog, st.version, st.hb.payload, heartbeatPrefix, st.hb.payload)
	switch {
	case err == nil:
		if st.hb.failing {
			st.logger.Info("heartbeats work again")
		}
		st.hb.failing = false
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case st.catalog.IsClosed():
		return status.Errorf(codes.Unavailable, "writing the heartbeat: the source session was lost: %v", err)
	}
	st.hb.failing = true
	st.logger.Warn("writing the heartbeat failed; the slot advances on keepalives only until it works",
		"error", err, "hint", "the source user must be able to run pg_logical_emit_message (PostgreSQL 14 and later) or write Ferry's signal table "+signal.TableName+" (before 14), and the source must not be a standby")
	return nil
}

func (st *stream) flushIfDue(now time.Time) error {
	if !st.batch.due(now) {
		return nil
	}
	return st.send(st.batch.take())
}

func (st *stream) send(b *cdcv1.ChangeBatch) error {
	parts := []*cdcv1.ChangeBatch{b}
	if st.limited != nil && st.limited() {
		parts = throttle.SplitBatch(b, throttle.PartEvents)
	}
	for _, p := range parts {
		if st.pace != nil {
			if err := st.pace(p); err != nil {
				return err
			}
		}
		// Parts each paid within a slice still add up to a long time away
		// from the replication connection: keep the walsender hearing from
		// us (the update reports only what acks confirmed).
		if now := time.Now(); len(parts) > 1 && now.Sub(st.lastStatus) >= throttle.Slice {
			if err := st.sendStatus(now); err != nil {
				return err
			}
		}
		if err := st.out.Send(&capturev1.StreamChangesResponse{Batch: p}); err != nil {
			return fmt.Errorf("sending a batch to the client: %w", err)
		}
	}
	st.lastWatermark = max(st.lastWatermark, b.GetWatermarkLsn())
	return nil
}
