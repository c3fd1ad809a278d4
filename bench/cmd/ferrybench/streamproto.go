package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// The streamproto scenario compares capture's two ways of receiving large
// transactions while they run on PostgreSQL 16 and later: pgoutput
// protocol 2 with streaming 'on' and protocol 4 with streaming 'parallel'
// (capture's -stream-protocol). Both slots decode the same WAL; each is
// read by a fresh capture process, as the decode scenario reads its slot.

const streamProtoTable = "bench_streamproto"

// streamProtocols are the protocols compared, in the order of odd runs;
// even runs reverse it, so that neither always reads a cold page cache.
var streamProtocols = []int{2, 4}

func streamProtoSlot(protocol int) (slot, pub string) {
	return fmt.Sprintf("bench_sp_v%d", protocol), fmt.Sprintf("bench_sp_v%d_pub", protocol)
}

// spShape is a workload of the scenario: sessions transactions written
// in turns, chunk rows at a time, of rows rows in all. With several
// sessions, the last one rolls back and the second loses its last chunk to
// ROLLBACK TO SAVEPOINT, so that both kinds of StreamAbort, the one
// message the protocols send differently, are in the stream.
type spShape struct {
	name           string
	rows, sessions int
	chunk          int
}

func streamProtoShapes(c *config) []spShape {
	return []spShape{
		{name: "one", rows: c.spRows, sessions: 1, chunk: c.spRows},
		{name: "concurrent", rows: c.spRows, sessions: 4, chunk: max(1, c.spRows/40)},
	}
}

// committed is how many rows the shape's commits keep.
func (s spShape) committed() int {
	if s.sessions == 1 {
		return s.rows
	}
	per := s.rows / s.sessions
	last := per - (per-1)/s.chunk*s.chunk // the rolled-back chunk's rows
	return (s.sessions-1)*per - last
}

// measureStreamProto writes the shape once with both slots in place, then
// times a fresh capture on each slot, with its protocol.
func measureStreamProto(ctx context.Context, e *benchEnv, pg *privatePG, s spShape, run int) (spResult, error) {
	res := spResult{Shape: s.name, Rows: s.rows, Committed: s.committed(), Sessions: s.sessions}
	owner, err := pg.connectFerry(ctx)
	if err != nil {
		return res, err
	}
	defer func() { _ = owner.Close(context.WithoutCancel(ctx)) }()
	if err := recreateTable(ctx, owner, streamProtoTable); err != nil {
		return res, err
	}
	logDir, err := os.MkdirTemp("", "ferrybench-streamproto-")
	if err != nil {
		return res, fmt.Errorf("creating the log folder: %w", err)
	}
	defer func() { _ = os.RemoveAll(logDir) }()
	if err := ensureStreamProtoSlots(ctx, e, pg, logDir); err != nil {
		return res, err
	}
	began := time.Now()
	end, err := writeStreamProtoShape(ctx, pg, s)
	if err != nil {
		return res, err
	}
	res.WriteSeconds = time.Since(began).Seconds()
	order := streamProtocols
	if run%2 == 0 {
		order = []int{streamProtocols[1], streamProtocols[0]}
	}
	for _, protocol := range order {
		r, err := timeStreamProto(ctx, e, pg, protocol, res.Committed, end, logDir)
		if err != nil {
			return res, fmt.Errorf("protocol %d: %w (capture's log: %s)", protocol, err, logDir)
		}
		streamed, err := streamedTxns(ctx, pg, protocol)
		if err != nil {
			return res, err
		}
		log.Printf("streamproto run %d, %s: protocol %d %.0f rows/s, %d streamed transactions, peak RSS %.0f MB",
			run, s.name, protocol, r.RowsPerSecond, streamed, r.PeakRSSMB)
		if protocol == 2 {
			res.V2, res.V2Streamed = r, streamed
		} else {
			res.V4, res.V4Streamed = r, streamed
		}
	}
	res.First = order[0]
	res.Ratio = res.V4.RowsPerSecond / res.V2.RowsPerSecond
	return res, nil
}

// ensureStreamProtoSlots drops what an earlier measurement left and has a
// capture create both slots and publications before the writes.
func ensureStreamProtoSlots(ctx context.Context, e *benchEnv, pg *privatePG, logDir string) error {
	super, err := connect(ctx, pg.superDSN("ferry"))
	if err != nil {
		return err
	}
	defer func() { _ = super.Close(context.WithoutCancel(ctx)) }()
	f, conn, err := startCapture(ctx, e, logDir)
	defer f.stop()
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	client := capturev1.NewCaptureServiceClient(conn)
	for _, protocol := range streamProtocols {
		slot, pub := streamProtoSlot(protocol)
		if err := dropSlotWhenInactive(ctx, super, slot, pub); err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := client.EnsureReplication(cctx, &capturev1.EnsureReplicationRequest{
			Source: pg.source(), SlotName: slot, PublicationName: pub,
			Tables: []*taskv1.TableRef{{Schema: "public", Table: streamProtoTable}},
		})
		cancel()
		if err != nil {
			return fmt.Errorf("EnsureReplication %s: %w", slot, err)
		}
	}
	return nil
}

// writeStreamProtoShape writes the shape's transactions and returns the
// WAL position after the last of them ended.
func writeStreamProtoShape(ctx context.Context, pg *privatePG, s spShape) (uint64, error) {
	per := s.rows / s.sessions
	txs := make([]pgx.Tx, s.sessions)
	for i := range txs {
		conn, err := pg.connectFerry(ctx)
		if err != nil {
			return 0, err
		}
		defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
		if txs[i], err = conn.Begin(ctx); err != nil {
			return 0, fmt.Errorf("beginning session %d: %w", i, err)
		}
	}
	for lo := 0; lo < per; lo += s.chunk {
		hi := min(lo+s.chunk, per)
		for i, tx := range txs {
			if s.sessions > 1 && i == 1 && hi == per {
				if _, err := tx.Exec(ctx, "SAVEPOINT last_chunk"); err != nil {
					return 0, fmt.Errorf("session %d: %w", i, err)
				}
			}
			first := i*per + lo + 1
			if _, err := tx.Exec(ctx, "INSERT INTO public."+streamProtoTable+" "+insertSelect, first, i*per+hi); err != nil {
				return 0, fmt.Errorf("session %d, rows %d..%d: %w", i, first, i*per+hi, err)
			}
		}
	}
	return endStreamProtoShape(ctx, pg, s, txs)
}

// endStreamProtoShape commits the sessions in order, except for the
// rollbacks the shape asks for.
func endStreamProtoShape(ctx context.Context, pg *privatePG, s spShape, txs []pgx.Tx) (uint64, error) {
	for i, tx := range txs {
		var err error
		switch {
		case s.sessions > 1 && i == len(txs)-1:
			err = tx.Rollback(ctx)
		case s.sessions > 1 && i == 1:
			if _, err = tx.Exec(ctx, "ROLLBACK TO SAVEPOINT last_chunk"); err == nil {
				err = tx.Commit(ctx)
			}
		default:
			err = tx.Commit(ctx)
		}
		if err != nil {
			return 0, fmt.Errorf("ending session %d: %w", i, err)
		}
	}
	conn, err := pg.connectFerry(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	return currentLSN(ctx, conn)
}

// timeStreamProto starts a capture asking for protocol and times it over
// its slot (timeCapture).
func timeStreamProto(ctx context.Context, e *benchEnv, pg *privatePG, protocol, rows int, end uint64, logDir string) (captureResult, error) {
	env := []string{fmt.Sprintf("FERRY_CAPTURE_STREAM_PROTOCOL=%d", protocol), "FERRY_CAPTURE_STREAM_IN_PROGRESS=true"}
	f, conn, err := startCaptureWith(ctx, e, logDir, env)
	defer f.stop()
	if err != nil {
		return captureResult{}, err
	}
	defer func() { _ = conn.Close() }()
	slot, pub := streamProtoSlot(protocol)
	start := &capturev1.StartStream{Source: pg.source(), SlotName: slot, PublicationName: pub}
	return timeCapture(ctx, e.c, f, capturev1.NewCaptureServiceClient(conn), start, rows, end)
}

// streamedTxns is how many transactions the walsender streamed on the
// protocol's slot (pg_stat_replication_slots), once its walsender has
// gone, which reports the last of them: zero would mean the shape never
// outgrew logical_decoding_work_mem and compared nothing.
func streamedTxns(ctx context.Context, pg *privatePG, protocol int) (int64, error) {
	super, err := connect(ctx, pg.superDSN("ferry"))
	if err != nil {
		return 0, err
	}
	defer func() { _ = super.Close(context.WithoutCancel(ctx)) }()
	slot, _ := streamProtoSlot(protocol)
	err = poll(ctx, 30*time.Second, 50*time.Millisecond, "slot "+slot+" to be inactive", func() (bool, string, error) {
		st, err := readSlot(ctx, super, slot)
		return !st.active, fmt.Sprintf("active %v", st.active), err
	})
	if err != nil {
		return 0, err
	}
	var n int64
	err = super.QueryRow(ctx, "SELECT coalesce(sum(stream_txns), 0)::int8 FROM pg_stat_replication_slots WHERE slot_name = $1", slot).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("reading the streaming statistics of %s: %w", slot, err)
	}
	return n, nil
}
