package capture

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// Before PostgreSQL 14 pgoutput drops logical messages, so the heartbeat
// and the backfill's watermarks cannot travel as pg_logical_emit_message.
// There they go through a small table Ferry owns in the source, as the
// original DBLog design has it: each signal is an upsert of the row (slot,
// prefix) in a transaction of its own, published with the task's tables.
// The stream never ships the table's changes; at the transaction's commit
// it handles each signal as the non-transactional message it stands for,
// at the start of the commit record, so everything downstream of the
// decoder is the same on every version. One row per slot and prefix keeps
// the table at a few rows whatever the rate.
const (
	// messagesVersion is PostgreSQL 14, whose pgoutput forwards logical
	// messages (messages 'true').
	messagesVersion = 140000
	signalSchema    = "_ferry"
	signalTable     = "signals"
)

// signalTableName is the table's quoted name, as publications list it.
var signalTableName = pgx.Identifier{signalSchema, signalTable}.Sanitize()

// signalDDL creates the table; the schema keeps it out of the application's
// own (objects.whole_database and schema listings leave it out).
var signalDDL = []string{
	"CREATE SCHEMA IF NOT EXISTS " + pgx.Identifier{signalSchema}.Sanitize(),
	"CREATE TABLE IF NOT EXISTS " + signalTableName +
		" (slot_name text NOT NULL, prefix text NOT NULL, content text NOT NULL, PRIMARY KEY (slot_name, prefix))",
}

// usesSignalTable reports whether a server of this server_version_num
// needs the signal table.
func usesSignalTable(version int) bool { return version < messagesVersion }

// ensureSignalTable creates the table if it is missing. It needs CREATE on
// the database the first time; the precheck item signal_table says so.
func ensureSignalTable(ctx context.Context, conn *pgx.Conn) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", signalTableName).Scan(&exists); err != nil {
		return fmt.Errorf("looking up Ferry's signal table %s: %w", signalTableName, err)
	}
	if exists {
		return nil
	}
	for _, stmt := range signalDDL {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			if isPgCode(err, "42501") {
				role := conn.Config().User
				return failedPrecondition("creating Ferry's signal table %s: %v; before PostgreSQL 14 Ferry carries its heartbeats and full-sync watermarks through this table, which it must own to publish it: run GRANT CREATE ON DATABASE %s TO %s, or as a superuser CREATE SCHEMA %s AUTHORIZATION %s",
					signalTableName, err, pgx.Identifier{conn.Config().Database}.Sanitize(), pgx.Identifier{role}.Sanitize(),
					pgx.Identifier{signalSchema}.Sanitize(), pgx.Identifier{role}.Sanitize())
			}
			return fmt.Errorf("creating Ferry's signal table %s: %w", signalTableName, err)
		}
	}
	return nil
}

// writeSignal writes one signal: a logical message on 14 and later, else an
// upsert into the signal table, committed (and so flushed) at once.
func writeSignal(ctx context.Context, conn *pgx.Conn, version int, slot, prefix, content string) error {
	if !usesSignalTable(version) {
		_, err := conn.Exec(ctx, "SELECT pg_logical_emit_message(false, $1, $2)", prefix, content)
		return err
	}
	return upsertSignal(ctx, conn, slot, prefix, content)
}

// upsertSignal writes the row (slot, prefix) of the signal table.
func upsertSignal(ctx context.Context, conn *pgx.Conn, slot, prefix, content string) error {
	_, err := conn.Exec(ctx, "INSERT INTO "+signalTableName+` AS s VALUES ($1, $2, $3)
		ON CONFLICT (slot_name, prefix) DO UPDATE SET content = EXCLUDED.content`, slot, prefix, content)
	return err
}

// signal is one signal row the stream met inside a transaction; content
// is nil for a deleted row.
type signal struct {
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
		s := signal{slot: string(tuple.Columns[st.sig.slot].Data), prefix: string(tuple.Columns[st.sig.prefix].Data)}
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
func (st *stream) commitSignals(now time.Time, signals []signal, at pglogrepl.LSN) error {
	for _, s := range signals {
		if s.prefix == filterPrefix {
			if st.filters != nil && s.slot == st.filters.pub {
				if err := st.filters.set(s.content); err != nil {
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
	if m.Namespace != signalSchema || m.RelationName != signalTable {
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

// releaseSignalTable drops the signal table, and its schema if that is then
// empty, once no other task can need it: no publication names it and no
// logical slot is left on the database. A FOR ALL TABLES publication
// includes it without naming it, so a task with one keeps a slot, which
// keeps the table. The check and the drop run under the table's ACCESS
// EXCLUSIVE lock, which a publication adding the table waits for, so a
// task set up meanwhile either is seen or finds the table gone and
// creates it again when its setup is retried. It reports whether it
// dropped the table.
func releaseSignalTable(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", signalTableName).Scan(&exists); err != nil || !exists {
		return false, wrapSignal("looking up", err)
	}
	dropped := false
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "LOCK TABLE "+signalTableName+" IN ACCESS EXCLUSIVE MODE"); err != nil {
			return err
		}
		var inUse bool
		if err := tx.QueryRow(ctx, `
			SELECT EXISTS (SELECT 1 FROM pg_publication_rel WHERE prrelid = to_regclass($1))
			    OR EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_type = 'logical' AND database = current_database())`,
			signalTableName).Scan(&inUse); err != nil || inUse {
			return err
		}
		if _, err := tx.Exec(ctx, "DROP TABLE "+signalTableName); err != nil {
			return err
		}
		dropped = true
		return nil
	})
	if err != nil {
		return false, wrapSignal("dropping", err)
	}
	if dropped {
		// RESTRICT: a schema someone else put objects in stays.
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{signalSchema}.Sanitize()); err != nil && !isPgCode(err, "2BP01") {
			return true, fmt.Errorf("dropping Ferry's schema %s: %w", signalSchema, err)
		}
	}
	return dropped, nil
}

func wrapSignal(doing string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s Ferry's signal table %s: %w", doing, signalTableName, err)
}
