package capture

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"google.golang.org/protobuf/types/known/timestamppb"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/capture/decode"
	"github.com/ferry-cdc/ferry/services/capture/wire"
)

// data handles one pgoutput message.
func (st *stream) data(ctx context.Context, xld pglogrepl.XLogData) error {
	if st.spools != nil {
		if handled, err := st.streamData(ctx, xld); handled || err != nil {
			return err
		}
	}
	msg, err := wire.ParseMessage(xld.WALData)
	if err != nil {
		return fmt.Errorf("parsing pgoutput message at %s: %w", xld.WALStart, err)
	}
	return st.apply(ctx, msg, xld.WALStart)
}

// apply acts on one protocol 1 message, received or replayed from a spool.
func (st *stream) apply(ctx context.Context, msg pglogrepl.Message, walStart pglogrepl.LSN) error {
	now := time.Now()
	if st.roots != nil {
		var err error
		if msg, err = st.roots.Translate(ctx, msg); err != nil {
			return err
		}
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		st.txn = &txn{xid: m.Xid, commitLSN: uint64(m.FinalLSN), commitTime: timestamppb.New(m.CommitTime)}
		return st.flushIfDue(now)
	case *pglogrepl.CommitMessage:
		return st.commit(now, m)
	case *pglogrepl.RelationMessage:
		if sc, ok := signalRelation(m); ok {
			st.sig = sc
			return nil
		}
		if st.filters != nil {
			st.filters.Forget(m.RelationID)
		}
		// Events already batched were decoded with the old definition; the
		// receiver applies a batch's relations first, so they must not share
		// a batch with the new one.
		if st.batch.refers(m.RelationID) {
			if err := st.send(st.batch.take()); err != nil {
				return err
			}
		}
		return st.defineRelation(ctx, m)
	case *pglogrepl.InsertMessage, *pglogrepl.UpdateMessage, *pglogrepl.DeleteMessage:
		if st.signalRow(m) {
			return nil
		}
		if err := st.flushIfDue(now); err != nil {
			return err
		}
		return st.change(now, m, walStart)
	case *pglogrepl.TruncateMessage:
		if err := st.flushIfDue(now); err != nil {
			return err
		}
		return st.truncate(now, m, walStart)
	case *pglogrepl.LogicalDecodingMessage:
		return st.message(now, m, walStart)
	}
	// Origin and Type messages carry nothing Ferry needs: values of custom
	// types travel as text.
	return nil
}

// message handles a logical decoding message: Ferry's heartbeat or any
// other application's. None is ever shipped as a row; a message only marks
// a position. A non-transactional one outside a transaction is sent where
// the walsender decodes it, after every transaction that committed before
// it, so its position (the end of its WAL record) is a valid watermark. A
// transactional one belongs to its transaction, whose commit carries the
// watermark. A streamed transaction still in progress does not stop a
// message from being a watermark, for the reasons idleWatermark gives;
// pgoutput never sends a non-transactional message inside a stream block.
func (st *stream) message(now time.Time, m *pglogrepl.LogicalDecodingMessage, walStart pglogrepl.LSN) error {
	if consumed, err := st.backfillMark(m, max(m.LSN, walStart)); consumed || err != nil {
		return err
	}
	if m.Transactional || st.txn != nil {
		return nil
	}
	lsn := max(m.LSN, walStart)
	if uint64(lsn) <= st.lastWatermark {
		return nil
	}
	st.lsn.Receive(lsn)
	st.batch.commit(now, uint64(lsn))
	return st.flushIfDue(now)
}

// commit ends the transaction. The batch gets the commit's end LSN as its
// watermark unless the transaction left nothing to carry it: then the
// keepalive watermark advances the slot instead, and skipped transactions
// do not each cost an empty batch.
func (st *stream) commit(now time.Time, m *pglogrepl.CommitMessage) error {
	hadEvents := st.txn != nil && st.txn.events > 0
	var signals []txnSignal
	if st.txn != nil {
		signals = st.txn.signals
	}
	st.txn = nil
	// A signal stands where its commit record starts, before the batch
	// takes the commit's end: a high watermark must reach delivery on its
	// chunk's batch first, and the end of its record is then already a
	// later watermark, which confirms the chunk (backfills promote
	// progress only past its LSN).
	if err := st.commitSignals(now, signals, m.CommitLSN); err != nil {
		return err
	}
	if hadEvents || !st.batch.empty() {
		st.batch.commit(now, uint64(m.TransactionEndLSN))
	}
	return st.flushIfDue(now)
}

// change decodes a row change and adds it to the batch, preceded by its
// relation if this stream has not sent that definition yet.
func (st *stream) change(now time.Time, m pglogrepl.Message, lsn pglogrepl.LSN) error {
	if st.txn == nil {
		return fmt.Errorf("row change at %s outside a transaction", lsn)
	}
	if st.filters != nil {
		var err error
		if m, err = st.filterChange(m); err != nil || m == nil {
			return err
		}
	}
	ev, rel, err := st.rels.Change(m)
	if err != nil {
		return fmt.Errorf("decoding the change at %s: %w", lsn, err)
	}
	if err := st.bf.Observe(rel, m, st.txn.xid); err != nil {
		return fmt.Errorf("the change at %s: %w", lsn, err)
	}
	ev.Lsn = uint64(lsn)
	ev.CommitLsn = st.txn.commitLSN
	ev.Xid = st.txn.xid
	ev.CommitTime = st.txn.commitTime
	var def *cdcv1.Relation
	if !rel.Sent {
		def, rel.Sent = rel.Proto, true
	}
	st.batch.add(now, def, ev)
	st.txn.events++
	return nil
}

// truncate adds a TRUNCATE to the batch as one event, preceded by the
// definitions of its relations this stream has not sent yet. pgoutput lists
// only the published tables (a partitioned root alone when the publication
// publishes via the root) and sends nothing when none is.
func (st *stream) truncate(now time.Time, m *pglogrepl.TruncateMessage, lsn pglogrepl.LSN) error {
	if st.txn == nil {
		return fmt.Errorf("TRUNCATE at %s outside a transaction", lsn)
	}
	if len(m.RelationIDs) == 0 {
		return nil
	}
	var defs []*cdcv1.Relation
	for _, oid := range m.RelationIDs {
		rel, err := st.rels.Get(oid)
		if err != nil {
			return fmt.Errorf("decoding the TRUNCATE at %s: %w", lsn, err)
		}
		st.bf.ObserveTruncate(rel, st.txn.xid)
		if !rel.Sent {
			defs = append(defs, rel.Proto)
			rel.Sent = true
		}
	}
	ev := decode.TruncateEvent(m)
	ev.Lsn = uint64(lsn)
	ev.CommitLsn = st.txn.commitLSN
	ev.Xid = st.txn.xid
	ev.CommitTime = st.txn.commitTime
	st.batch.addMany(now, defs, ev, m.RelationIDs)
	st.txn.events++
	return nil
}

// filterChange applies the filter Ferry evaluates itself (before
// PostgreSQL 15) to a row change: nil when the change is filtered out.
func (st *stream) filterChange(m pglogrepl.Message) (pglogrepl.Message, error) {
	var oid uint32
	switch m := m.(type) {
	case *pglogrepl.InsertMessage:
		oid = m.RelationID
	case *pglogrepl.UpdateMessage:
		oid = m.RelationID
	case *pglogrepl.DeleteMessage:
		oid = m.RelationID
	}
	rel, err := st.rels.Get(oid)
	if err != nil {
		return nil, err
	}
	return st.filters.Filter(rel, m)
}
