package capture

import (
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/ferry-cdc/ferry/services/capture/signal"
)

// The stream's side of Ferry's signal table (package signal): it never
// ships the table's changes, and at their transaction's commit handles
// each as the logical message it stands for.

// txnSignal is one signal row the stream met inside a transaction;
// content is nil for a deleted row.
type txnSignal struct {
	slot, prefix string
	content      []byte
}

// signalColumns is where the stream finds the signal table and its
// columns; oid 0 until pgoutput has described the table.
type signalColumns struct {
	oid                   uint32
	slot, prefix, content int
}

// signalRow takes a signal table change out of the stream: it reports
// whether m is one, and notes the row's signal for the transaction's
// commit. A deleted row (its key alone) is a signal with no content.
func (st *stream) signalRow(m pglogrepl.Message) bool {
	var oid uint32
	var tuple *pglogrepl.TupleData
	deleted := false
	switch m := m.(type) {
	case *pglogrepl.InsertMessage:
		oid, tuple = m.RelationID, m.Tuple
	case *pglogrepl.UpdateMessage:
		oid, tuple = m.RelationID, m.NewTuple
	case *pglogrepl.DeleteMessage:
		oid, tuple, deleted = m.RelationID, m.OldTuple, true
	}
	if st.sig.oid == 0 || oid != st.sig.oid {
		return false
	}
	if tuple != nil && st.txn != nil && max(st.sig.slot, st.sig.prefix, st.sig.content) < len(tuple.Columns) {
		s := txnSignal{slot: string(tuple.Columns[st.sig.slot].Data), prefix: string(tuple.Columns[st.sig.prefix].Data)}
		content := tuple.Columns[st.sig.content]
		switch {
		case deleted:
		case content.DataType == pglogrepl.TupleDataTypeToast:
			return true // the content did not change: nothing to signal
		default:
			s.content = content.Data
		}
		st.txn.signals = append(st.txn.signals, s)
	}
	return true
}

// commitSignals handles the signals of a committed transaction as the
// non-transactional messages they stand for, at at, the start of its
// commit record: every transaction that committed before it has been
// sent, and the signal's own commit lies past it, so a slot confirmed
// there replays only the signal.
func (st *stream) commitSignals(now time.Time, signals []txnSignal, at pglogrepl.LSN) error {
	for _, s := range signals {
		if s.prefix == signal.FilterPrefix {
			if st.filters != nil && s.slot == st.filters.Publication() {
				if err := st.filters.Set(s.content); err != nil {
					return err
				}
			}
			continue
		}
		if s.content == nil {
			continue
		}
		m := &pglogrepl.LogicalDecodingMessage{LSN: at, Prefix: s.prefix, Content: s.content}
		if err := st.message(now, m, at); err != nil {
			return err
		}
	}
	return nil
}

// signalRelation reports whether m defines Ferry's signal table, and
// where its columns are.
func signalRelation(m *pglogrepl.RelationMessage) (signalColumns, bool) {
	if m.Namespace != signal.Schema || m.RelationName != signal.Table {
		return signalColumns{}, false
	}
	sc := signalColumns{oid: m.RelationID, slot: -1, prefix: -1, content: -1}
	for i, c := range m.Columns {
		switch c.Name {
		case "slot_name":
			sc.slot = i
		case "prefix":
			sc.prefix = i
		case "content":
			sc.content = i
		}
	}
	return sc, min(sc.slot, sc.prefix, sc.content) >= 0
}
