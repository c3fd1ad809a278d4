package capture

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferry-cdc/ferry/services/capture/wire"
	"github.com/jackc/pglogrepl"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Protocol version 2 with streaming 'on' lets PostgreSQL 14 and later send
// a transaction before it ends, once it outgrows logical_decoding_work_mem,
// instead of spilling it to the server's disk until the commit. It arrives
// in stream blocks (StreamStart .. StreamStop), which interleave with other
// transactions' blocks and with ordinary transactions, and ends with a
// StreamCommit or a StreamAbort. Until then it may still roll back, whole
// or one subtransaction at a time, so nothing of it may reach the client:
// its messages go to a spool (wire/spool.go), and the commit replays them
// through the protocol 1 path (apply) as one ordinary transaction at the
// commit's position. The client sees exactly what protocol 1 would have
// sent, at the same place in the stream, with the same LSNs.
//
// Protocol 4 with streaming 'parallel' (PostgreSQL 16 and later) sends the
// same blocks; only its StreamAbort is longer (wire.StreamMode). A subscriber
// gains from it by applying several streamed transactions at once, in
// parallel workers; Ferry gains nothing of the kind, since a transaction
// may reach the client only at its commit, in commit order, whatever the
// protocol. Blocks of concurrent transactions interleave in both, and the
// spools, one per top-level xid, take them in any order.

// streamData handles the four stream messages and every message inside a
// stream block, and reports whether it handled xld; anything else is a
// protocol 1 message for data.
func (st *stream) streamData(ctx context.Context, xld pglogrepl.XLogData) (bool, error) {
	data := xld.WALData
	inBlock := st.spools.InBlock()
	if len(data) == 0 || !inBlock && !wire.IsStreamControl(data[0]) {
		return false, nil
	}
	if inBlock && data[0] != wire.MsgStreamStop {
		return true, st.spoolMessage(xld)
	}
	msg, err := wire.ParseStreamMessage(data, inBlock, st.streaming == wire.StreamParallel)
	if err != nil {
		return true, fmt.Errorf("parsing pgoutput message at %s: %w", xld.WALStart, err)
	}
	if st.txn != nil {
		return true, fmt.Errorf("stream message %q at %s inside transaction %d", data[0], xld.WALStart, st.txn.xid)
	}
	switch m := msg.(type) {
	case *pglogrepl.StreamStartMessageV2:
		return true, st.spools.Start(m.Xid, m.FirstSegment == 1)
	case *pglogrepl.StreamStopMessageV2:
		return true, st.spools.Stop()
	case *pglogrepl.StreamCommitMessageV2:
		return true, st.streamCommit(ctx, m)
	case *wire.StreamAbortMessage:
		return true, st.streamAbort(m)
	}
	return true, fmt.Errorf("unexpected stream message %T at %s", msg, xld.WALStart)
}

// spoolMessage writes a message of the open stream block to its
// transaction's spool, as the protocol 1 message it would have been, with
// its own (sub)transaction's xid beside it. It checks only the framing:
// decoding waits for the commit, which may never come.
//
// Relation and Type messages are spooled too and, on purpose, not applied
// to the relation cache now. pgoutput tracks which definitions each
// streamed transaction was sent apart from those of ordinary transactions:
// a definition inside a stream block may come from DDL the transaction
// itself ran, and ordinary transactions that commit first are still sent
// without a Relation message, expecting the definition the client had
// before. Applying it now would decode them with the uncommitted one, or
// keep it after an abort. Replayed in order at the commit, it takes effect
// exactly where pgoutput (which marks it sent only when the streamed
// transaction commits) assumes the client has it.
func (st *stream) spoolMessage(xld pglogrepl.XLogData) error {
	data := xld.WALData
	if err := wire.CheckStreamFraming(data, true, st.streaming == wire.StreamParallel); err != nil {
		return fmt.Errorf("parsing pgoutput message at %s: %w", xld.WALStart, err)
	}
	if data[0] == 'O' {
		return nil // an origin carries nothing Ferry needs
	}
	subxid, body := wire.StreamXid(data)
	return st.spools.Add(subxid, xld.WALStart, data[0], body)
}

// streamAbort drops what a rolled-back transaction or subtransaction
// streamed: the spool of a top-level transaction, or the marked records of
// a subtransaction at replay. The abort's LSN and time (protocol 4) are
// only logged: an abort sends nothing, so it moves no watermark; the next
// keepalive or commit covers its WAL.
func (st *stream) streamAbort(m *wire.StreamAbortMessage) error {
	known, err := st.spools.Abort(m.Xid, m.SubXid)
	if err != nil {
		return err
	}
	if !known {
		st.logger.Warn("abort of a streamed transaction that sent nothing on this stream; nothing to discard", "xid", m.Xid, "subxid", m.SubXid)
		return nil
	}
	if m.AbortLSN != 0 {
		st.logger.Debug("discarded a rolled-back streamed transaction", "xid", m.Xid, "subxid", m.SubXid,
			"abort_lsn", m.AbortLSN.String(), "abort_time", m.AbortTime)
	}
	return nil
}

// streamCommit replays transaction m.Xid from its spool as an ordinary
// transaction: Begin's fields come from the commit (its LSN, which is what
// Begin's final LSN would have been, and its time), then the changes of
// every subtransaction that did not roll back, in the order they were
// streamed, then the commit, whose end LSN is the watermark. Nothing of the
// transaction moved any watermark before this point.
func (st *stream) streamCommit(ctx context.Context, m *pglogrepl.StreamCommitMessageV2) error {
	now := time.Now()
	if err := st.flushIfDue(now); err != nil {
		return err
	}
	st.txn = &txn{xid: m.Xid, commitLSN: uint64(m.CommitLSN), commitTime: timestamppb.New(m.CommitTime)}
	begun := now
	err := st.spools.Replay(m.Xid, func(rec wire.SpoolRecord) error { return st.replayRecord(ctx, rec) })
	if err != nil {
		if errors.Is(err, wire.ErrNoSpool) {
			// Committing a transaction whose changes were never seen would
			// skip them: fail, and let the next connection send it again.
			return fmt.Errorf("slot %s: streamed transaction %d committed at %s but none of it was streamed on this connection: %w",
				st.spools.Slot(), m.Xid, m.CommitLSN, err)
		}
		return fmt.Errorf("replaying streamed transaction %d (commit %s): %w", m.Xid, m.CommitLSN, err)
	}
	st.logger.Debug("replayed a streamed transaction", "xid", m.Xid, "commit_lsn", m.CommitLSN.String(),
		"events", st.txn.events, "took", time.Since(begun))
	return st.commit(time.Now(), &pglogrepl.CommitMessage{
		CommitLSN: m.CommitLSN, TransactionEndLSN: m.TransactionEndLSN, CommitTime: m.CommitTime,
	})
}

// replayRecord applies one spooled message. Changes of a rolled-back
// subtransaction are skipped. Its Relation and Type messages are not:
// pgoutput counts a definition as sent to the whole top-level transaction,
// so later changes outside the subtransaction rely on it without a Relation
// message of their own.
//
// A long replay keeps away from the replication connection; status updates
// go on meanwhile so the walsender does not time the stream out.
func (st *stream) replayRecord(ctx context.Context, rec wire.SpoolRecord) error {
	typ := rec.Data[0]
	if rec.Aborted && typ != 'R' && typ != 'Y' {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if now := time.Now(); st.repl != nil && st.statusDue(now) { // nil: a test without a connection
		if err := st.sendStatus(now); err != nil {
			return err
		}
	}
	msg, err := wire.ParseMessage(rec.Data)
	if err != nil {
		return fmt.Errorf("parsing the spooled message at %s of subtransaction %d: %w", rec.LSN, rec.Subxid, err)
	}
	return st.apply(ctx, msg, rec.LSN)
}
