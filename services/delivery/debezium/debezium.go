// Package debezium encodes row changes as Debezium's JSON change events, as
// the Debezium PostgreSQL connector writes them through Kafka Connect's
// JsonConverter: a value {"before","after","source","transaction","op",
// "ts_ms","ts_us","ts_ns"} and a key holding the key columns, each wrapped
// as {"schema":..,"payload":..} when Options.Schemas is set
// (schemas.enable=true) and bare otherwise.
//
// Choices, where Ferry's input or Debezium's documentation leaves room:
//
//   - op: "c" INSERT, "u" UPDATE, "d" DELETE, "r" a row read by full sync,
//     "t" TRUNCATE (Debezium writes it unless skipped.operations holds t).
//     CREATE and ALTER records are not written: Debezium's PostgreSQL
//     connector writes no DDL events either (EncodeDDL returns nothing).
//   - before: the before-image the source sent: every column under REPLICA
//     IDENTITY FULL, the key columns (others null) for a DELETE or a key
//     change otherwise, and null for an UPDATE without one, as Debezium.
//   - An UPDATE that changes the key reaches the encoder as a DELETE of
//     the old key and an INSERT of the new (delivery splits it, as
//     Debezium does), so the old key gets its tombstone.
//   - Unchanged TOAST values (not sent, not revealed by a FULL
//     before-image) are UnavailableValue where the column's schema is a
//     string (bytes: its UTF-8 bytes; arrays of strings: a one-element
//     array), as Debezium does, else null; either way Encoder.UnchangedToast
//     names them for the ferry.unchanged-toast header.
//   - source: version is "ferry", name Options.ServerName, ts_ms the commit
//     time, snapshot "true" for full sync rows (never "first" or "last":
//     rows are not numbered within a table's snapshot) and "false"
//     otherwise, sequence [the previous transaction's commit LSN, the
//     change's LSN] as decimal strings, txId, lsn; xmin is null.
//   - Schemas: a non-key column is optional (the relation does not say
//     NOT NULL), a key column is not.
//
// Values follow Debezium's PostgreSQL mapping (types.go, values.go).
package debezium

import (
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// Version is the source block's "version".
const Version = "ferry"

// Options configure an Encoder.
type Options struct {
	SourceDatabase string
	// ServerName is the source block's "name" and the prefix of the schema
	// names (Debezium's topic.prefix); empty means SourceDatabase.
	ServerName string
	Objects    *taskv1.ObjectSelection
	// Schemas wraps key and value in {"schema","payload"}.
	Schemas bool
	// Tombstones: a DELETE is followed by its key with a null value.
	Tombstones bool
	Decimal    taskv1.DebeziumDecimalHandling
	// Now gives the envelope's ts_ms; nil means time.Now.
	Now func() time.Time
}

// Encoder turns change events into Debezium JSON. It is not safe for
// concurrent use.
type Encoder struct {
	opts   Options
	names  nameMapper // name mapping, shared with every format
	tables map[uint32]*table
	now    func() time.Time
	next   int64
	source []byte // `{"version":..,"connector":"postgresql","name":..`
	toast  uint64
	// unchanged lists, as a JSON array, the unchanged TOAST columns the
	// last Encode could not take from a before-image; nil when none.
	unchanged []byte
	// lastCommit is the commit LSN of the transaction before curCommit's.
	lastCommit, curCommit uint64
}

type column struct {
	src  int
	name []byte // `"name":`
	raw  string // the written name
	typ  columnType
	key  bool
}

type table struct {
	cols []column
	keys []column // the written key columns, in key order
	db   []byte   // `,"db":..`
	st   []byte   // `,"schema":..,"table":..`
	// valueSchema and keySchema open a message with schemas:
	// `{"schema":{..},"payload":`.
	valueSchema, keySchema []byte
}

// New returns an encoder.
func New(opts Options) *Encoder {
	if opts.ServerName == "" {
		opts.ServerName = opts.SourceDatabase
	}
	e := &Encoder{
		opts:   opts,
		names:  newNameMapper(opts.SourceDatabase, opts.Objects),
		tables: map[uint32]*table{},
		now:    opts.Now,
		next:   1,
	}
	if e.now == nil {
		e.now = time.Now
	}
	e.source = append(e.source, `{"version":"`+Version+`","connector":"postgresql","name":`...)
	e.source = appendString(e.source, opts.ServerName)
	return e
}

// NextID counts the messages written, from 1; Debezium JSON has no id.
func (e *Encoder) NextID() int64 { return e.next }

// UnchangedToastNulls counts unchanged TOAST values written as
// UnavailableValue or null because no before-image revealed them.
func (e *Encoder) UnchangedToastNulls() uint64 { return e.toast }

// UnchangedToast is the JSON array of the written names of the columns the
// last Encode wrote as unavailable, or nil.
func (e *Encoder) UnchangedToast() []byte {
	if len(e.unchanged) == 0 {
		return nil
	}
	return e.unchanged
}

// Tombstones reports whether a DELETE is followed by a tombstone.
func (e *Encoder) Tombstones() bool { return e.opts.Tombstones }

// Table returns the prepared relation for oid.
func (e *Encoder) Table(oid uint32) (*Table, bool) { return e.names.table(oid) }

// SetRelation defines or redefines a relation.
func (e *Encoder) SetRelation(r *cdcv1.Relation) *Table {
	ct := e.names.set(r)
	n := ct.Names
	t := &table{}
	isKey := map[int]bool{}
	for _, i := range ct.KeyIdx {
		isKey[i] = true
	}
	for _, c := range n.Columns {
		col := r.GetColumns()[c.Src]
		t.cols = append(t.cols, column{src: c.Src, raw: c.Name, name: append(appendString(nil, c.Name), ':'), typ: typeOf(col, e.opts.Decimal), key: isKey[c.Src]})
	}
	for _, i := range ct.KeyIdx {
		for _, c := range t.cols {
			if c.src == i {
				t.keys = append(t.keys, c)
			}
		}
	}
	t.db = appendString([]byte(`,"db":`), n.Database)
	t.st = appendString([]byte(`,"schema":`), n.Schema)
	t.st = appendString(append(t.st, `,"table":`...), n.Table)
	if e.opts.Schemas {
		prefix := e.opts.ServerName + "." + n.Schema + "." + n.Table
		t.valueSchema = []byte(`{"schema":` + envelopeSchema(t, prefix) + `,"payload":`)
		t.keySchema = []byte(`{"schema":` + structSchema(fieldSchemas(t.keys), false, prefix+".Key", "") + `,"payload":`)
	}
	e.tables[r.GetOid()] = t
	return ct
}

func fieldSchemas(cols []column) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = fieldSchema(c.typ, c.raw, !c.key)
	}
	return out
}

func (e *Encoder) table(ct *Table) (*table, error) {
	t := e.tables[ct.Rel.GetOid()]
	if t == nil {
		return nil, fmt.Errorf("relation %d was never set", ct.Rel.GetOid())
	}
	return t, nil
}

// Encode appends ev's change event (the value) to dst.
func (e *Encoder) Encode(dst []byte, ct *Table, ev *cdcv1.ChangeEvent) ([]byte, error) {
	t, err := e.table(ct)
	if err != nil {
		return dst, err
	}
	op, before, after, err := images(ct.Rel, ev)
	if err != nil {
		return dst, err
	}
	e.unchanged = e.unchanged[:0]
	start := len(dst)
	dst = append(dst, t.valueSchema...)
	dst = append(dst, `{"before":`...)
	if dst, err = e.appendImage(dst, t, before, nil); err == nil {
		dst = append(dst, `,"after":`...)
		dst, err = e.appendImage(dst, t, after, before)
	}
	if err != nil {
		return dst[:start], fmt.Errorf("event at LSN %d on %s.%s: %w", ev.GetLsn(), ct.Rel.GetSchema(), ct.Rel.GetTable(), err)
	}
	if len(e.unchanged) > 0 {
		e.unchanged = append(e.unchanged, ']')
	}
	dst = append(dst, `,"source":`...)
	dst = e.appendSource(dst, t, ev)
	dst = e.appendTail(dst, op)
	if e.opts.Schemas {
		dst = append(dst, '}')
	}
	e.next++
	return dst, nil
}

// appendTail closes the payload: transaction (none: Ferry writes no
// transaction metadata), op and the processing time.
func (e *Encoder) appendTail(dst []byte, op byte) []byte {
	now := e.now()
	dst = append(dst, `,"transaction":null,"op":"`...)
	dst = append(dst, op)
	dst = append(dst, `","ts_ms":`...)
	dst = strconv.AppendInt(dst, now.UnixMilli(), 10)
	dst = append(dst, `,"ts_us":`...)
	dst = strconv.AppendInt(dst, now.UnixMicro(), 10)
	dst = append(dst, `,"ts_ns":`...)
	dst = strconv.AppendInt(dst, now.UnixNano(), 10)
	return append(dst, '}')
}

// images picks op and the before and after images, and checks they fit.
func images(rel *cdcv1.Relation, ev *cdcv1.ChangeEvent) (op byte, before, after *cdcv1.Tuple, err error) {
	switch ev.GetOp() {
	case cdcv1.Operation_OPERATION_INSERT:
		op, after = 'c', ev.GetNewTuple()
		if ev.GetSnapshot() {
			op = 'r'
		}
	case cdcv1.Operation_OPERATION_UPDATE:
		op, before, after = 'u', ev.GetOldTuple(), ev.GetNewTuple()
	case cdcv1.Operation_OPERATION_DELETE:
		op, before = 'd', ev.GetOldTuple()
	default:
		return 0, nil, nil, fmt.Errorf("event at LSN %d on %s.%s has operation %v", ev.GetLsn(), rel.GetSchema(), rel.GetTable(), ev.GetOp())
	}
	n := len(rel.GetColumns())
	if op != 'd' && tuple.Len(after) != n {
		return 0, nil, nil, fmt.Errorf("event at LSN %d on %s.%s has %d values for %d columns", ev.GetLsn(), rel.GetSchema(), rel.GetTable(), tuple.Len(after), n)
	}
	for _, tu := range []*cdcv1.Tuple{before, after} {
		if tuple.Len(tu) == 0 {
			continue
		}
		if err := tuple.Check(tu, n); err != nil {
			return 0, nil, nil, fmt.Errorf("event at LSN %d on %s.%s: %w", ev.GetLsn(), rel.GetSchema(), rel.GetTable(), err)
		}
	}
	return op, before, after, nil
}

// appendImage writes one row image, or null when the source sent none. An
// unchanged TOAST value comes from other (the before-image) when that
// reveals it.
func (e *Encoder) appendImage(dst []byte, t *table, row, other *cdcv1.Tuple) ([]byte, error) {
	if tuple.Len(row) == 0 {
		return append(dst, "null"...), nil
	}
	dst = append(dst, '{')
	for i := range t.cols {
		c := &t.cols[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, c.name...)
		text, k := tuple.Field(row, c.src)
		if k == tuple.UnchangedToast && tuple.Len(other) > 0 {
			text, k = tuple.Field(other, c.src)
		}
		switch k {
		case tuple.Null:
			dst = append(dst, "null"...)
		case tuple.UnchangedToast:
			dst = e.appendUnavailable(dst, c)
		default:
			var err error
			if dst, err = appendValue(dst, &c.typ, text); err != nil {
				return dst, fmt.Errorf("column %d: %w", c.src+1, err)
			}
		}
	}
	return append(dst, '}'), nil
}

// appendUnavailable writes Debezium's placeholder (null where the schema
// has no room for it), counts it and names the column for the header.
func (e *Encoder) appendUnavailable(dst []byte, c *column) []byte {
	e.toast++
	if len(e.unchanged) == 0 {
		e.unchanged = append(e.unchanged, '[')
	} else {
		e.unchanged = append(e.unchanged, ',')
	}
	e.unchanged = append(e.unchanged, c.name[:len(c.name)-1]...)
	if p := c.typ.placeholder(); p != "" {
		return append(dst, p...)
	}
	return append(dst, "null"...)
}

// appendSource writes the source block.
func (e *Encoder) appendSource(dst []byte, t *table, ev *cdcv1.ChangeEvent) []byte {
	commit := e.now()
	if ct := ev.GetCommitTime(); ct != nil {
		commit = ct.AsTime()
	}
	if cl := ev.GetCommitLsn(); cl != e.curCommit {
		e.lastCommit, e.curCommit = e.curCommit, cl
	}
	dst = append(dst, e.source...)
	dst = append(dst, `,"ts_ms":`...)
	dst = strconv.AppendInt(dst, commit.UnixMilli(), 10)
	dst = append(dst, `,"snapshot":"`...)
	if ev.GetSnapshot() {
		dst = append(dst, "true"...)
	} else {
		dst = append(dst, "false"...)
	}
	dst = append(dst, '"')
	dst = append(dst, t.db...)
	dst = append(dst, `,"sequence":"[`...)
	if e.lastCommit == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, `\"`...)
		dst = strconv.AppendUint(dst, e.lastCommit, 10)
		dst = append(dst, `\"`...)
	}
	dst = append(dst, `,\"`...)
	dst = strconv.AppendUint(dst, ev.GetLsn(), 10)
	dst = append(dst, `\"]","ts_us":`...)
	dst = strconv.AppendInt(dst, commit.UnixMicro(), 10)
	dst = append(dst, `,"ts_ns":`...)
	dst = strconv.AppendInt(dst, commit.UnixNano(), 10)
	dst = append(dst, t.st...)
	dst = append(dst, `,"txId":`...)
	dst = strconv.AppendUint(dst, uint64(ev.GetXid()), 10)
	dst = append(dst, `,"lsn":`...)
	dst = strconv.AppendUint(dst, ev.GetLsn(), 10)
	return append(dst, `,"xmin":null}`...)
}

// EncodeKey appends ev's key message: the key columns of the after-image
// (the before-image for a DELETE), or reports false when the table has
// no written key column.
func (e *Encoder) EncodeKey(dst []byte, ct *Table, ev *cdcv1.ChangeEvent) ([]byte, bool, error) {
	t, err := e.table(ct)
	if err != nil || len(t.keys) == 0 {
		return dst, false, err
	}
	row := ev.GetNewTuple()
	if tuple.Len(row) == 0 {
		row = ev.GetOldTuple()
	}
	if tuple.Len(row) == 0 {
		return dst, false, nil
	}
	start := len(dst)
	dst = append(dst, t.keySchema...)
	dst = append(dst, '{')
	for i := range t.keys {
		c := &t.keys[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, c.name...)
		text, k := tuple.Field(row, c.src)
		if k != tuple.Text {
			dst = append(dst, "null"...)
			continue
		}
		if dst, err = appendValue(dst, &c.typ, text); err != nil {
			return dst[:start], false, fmt.Errorf("key of the event at LSN %d on %s.%s, column %d: %w", ev.GetLsn(), ct.Rel.GetSchema(), ct.Rel.GetTable(), c.src+1, err)
		}
	}
	dst = append(dst, '}')
	if e.opts.Schemas {
		dst = append(dst, '}')
	}
	return dst, true, nil
}

// EncodeDDL writes a TRUNCATE as Debezium's "t" event of t (before and
// after null); CREATE and ALTER, of which Debezium's PostgreSQL connector
// writes no event, append nothing.
func (e *Encoder) EncodeDDL(dst []byte, ct *Table, d DDL) ([]byte, error) {
	if d.Kind != "TRUNCATE" {
		return dst, nil
	}
	t, err := e.table(ct)
	if err != nil {
		return dst, err
	}
	ev := &cdcv1.ChangeEvent{Lsn: d.LSN, CommitLsn: e.curCommit}
	if !d.Commit.IsZero() {
		ev.CommitTime = timestamppb.New(d.Commit)
	}
	dst = append(dst, t.valueSchema...)
	dst = append(dst, `{"before":null,"after":null,"source":`...)
	dst = e.appendSource(dst, t, ev)
	dst = e.appendTail(dst, 't')
	if e.opts.Schemas {
		dst = append(dst, '}')
	}
	e.next++
	return dst, nil
}

// envelopeSchema is the value's Connect schema for table t.
func envelopeSchema(t *table, prefix string) string {
	row := fieldSchemas(t.cols)
	return structSchema([]string{
		structSchema(row, true, prefix+".Value", "before"),
		structSchema(row, true, prefix+".Value", "after"),
		sourceSchema,
		transactionSchema,
		`{"type":"string","optional":false,"field":"op"}`,
		`{"type":"int64","optional":true,"field":"ts_ms"}`,
		`{"type":"int64","optional":true,"field":"ts_us"}`,
		`{"type":"int64","optional":true,"field":"ts_ns"}`,
	}, false, prefix+".Envelope", "")
}

const sourceSchema = `{"type":"struct","fields":[` +
	`{"type":"string","optional":false,"field":"version"},` +
	`{"type":"string","optional":false,"field":"connector"},` +
	`{"type":"string","optional":false,"field":"name"},` +
	`{"type":"int64","optional":false,"field":"ts_ms"},` +
	`{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},"default":"false","field":"snapshot"},` +
	`{"type":"string","optional":false,"field":"db"},` +
	`{"type":"string","optional":true,"field":"sequence"},` +
	`{"type":"int64","optional":true,"field":"ts_us"},` +
	`{"type":"int64","optional":true,"field":"ts_ns"},` +
	`{"type":"string","optional":false,"field":"schema"},` +
	`{"type":"string","optional":false,"field":"table"},` +
	`{"type":"int64","optional":true,"field":"txId"},` +
	`{"type":"int64","optional":true,"field":"lsn"},` +
	`{"type":"int64","optional":true,"field":"xmin"}` +
	`],"optional":false,"name":"io.debezium.connector.postgresql.Source","field":"source"}`

const transactionSchema = `{"type":"struct","fields":[` +
	`{"type":"string","optional":false,"field":"id"},` +
	`{"type":"int64","optional":false,"field":"total_order"},` +
	`{"type":"int64","optional":false,"field":"data_collection_order"}` +
	`],"optional":true,"name":"event.block","version":1,"field":"transaction"}`
