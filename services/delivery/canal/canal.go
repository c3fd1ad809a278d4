// Package canal encodes row changes as Canal JSON (canal's FlatMessage, as the
// managed DTS service writes it to Kafka); see shared/spec/formats.md.
//
// Every message is one JSON object with exactly these keys, in this order:
// id, database, table, pkNames, isDdl, type, es, ts, sql, sqlType, mysqlType,
// data, old. No other key is ever written, so strict consumers keep working.
//
// Choices this package makes, where the format leaves room:
//
//   - id: a number that increases within a task across restarts without any
//     persisted state. Each stream starts at the Unix time in microseconds at
//     which it started and adds 1 per message. A restarted stream starts
//     above every id the previous one wrote as long as the previous one
//     averaged fewer than one message per microsecond (1M messages/s) and the
//     clock did not step back.
//   - database: the schema name (the role a MySQL database plays), or the
//     source database's name when KafkaOptions.canal_database_is_db_name is
//     set.
//   - Names: column renames and drops come from ObjectSelection.tables[]
//     .columns. The capitalization policy (ObjectSelection.name_case) applies
//     to the database, table and column names, as the managed service's policy
//     does, except to a column's explicit rename, which is written as given.
//     pkNames lists the written names of the key columns; a dropped key column
//     is left out of pkNames (and pkNames is null when none remain).
//   - es: the transaction's commit time in Unix milliseconds; for events
//     without one (none are expected) it is ts.
//   - Unchanged TOAST values (pgoutput's 'u': the source did not send a large
//     value the UPDATE did not touch). The value comes from the event's
//     before-image when that reveals it (REPLICA IDENTITY FULL). Otherwise
//     the column is left out of data (a null would read as SQL NULL), and
//     Encoder.UnchangedToast names it for the ferry.unchanged-toast header;
//     every such value is counted (Encoder.UnchangedToastNulls).
//   - data for DELETE is the before-image: all columns with REPLICA IDENTITY
//     FULL, else the key columns, the others null.
//   - old for UPDATE: always one object: the before-image values of the
//     columns whose text differs from data, limited to the columns the
//     replica identity reveals (all with FULL, the key columns otherwise),
//     and {} when the before-image reveals no change or the source sent none
//     (Flink's canal-json reads old[0] of every UPDATE). For INSERT and
//     DELETE it is null.
//   - Values: PostgreSQL's text, or with Options.ValueStyle FLINK booleans
//     and timestamptz in forms Flink parses (valuestyle.go).
//   - sqlType: java.sql.Types codes from the column's type (see SQLType):
//     arrays are ARRAY, composites STRUCT, enums VARCHAR, a domain maps as
//     its base type, and types without a code of their own are OTHER (1111).
//   - mysqlType: the type as format_type() prints it, or with
//     Options.MySQLTypeNames the MySQL name MySQLType gives.
package canal

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// Options configure an Encoder.
type Options struct {
	// SourceDatabase is written as "database" when DatabaseIsDBName is set.
	SourceDatabase   string
	DatabaseIsDBName bool
	// Objects supplies column mappings and the capitalization policy.
	Objects *taskv1.ObjectSelection
	// IDBase is the first id; zero means the Unix time in microseconds now.
	IDBase int64
	// Now gives "ts"; nil means time.Now.
	Now func() time.Time
	// MySQLTypeNames writes MySQL's type names in mysqlType (MySQLType)
	// instead of PostgreSQL's.
	MySQLTypeNames bool
	// ValueStyle is how values are written: PostgreSQL's text (the
	// default), or forms Flink's canal-json types parse (see valuestyle.go).
	ValueStyle taskv1.CanalValueStyle
}

type column struct {
	src     int    // index into the event's values
	key     []byte // `"name":`
	reveals bool   // the before-image reveals it
	conv    conv   // how ValueStyle rewrites its text
}

// table is a relation's Canal JSON, computed once per definition.
type table struct {
	database, table string // as "database" and "table" carry them
	prefix          []byte // `"database":..,"table":..,"pkNames":..,"isDdl":false,"type":"`
	types           []byte // `"sqlType":{..},"mysqlType":{..},"data":[`
	cols            []column
}

// Encoder turns change events into Canal JSON. It is not safe for concurrent
// use.
type Encoder struct {
	opts  Options
	next  int64
	now   func() time.Time
	rels  *relation.Registry
	toast uint64
	// unchanged lists, as a JSON array of written names, the unchanged
	// TOAST columns the last Encode left out; nil when none.
	unchanged []byte
}

// New returns an encoder.
func New(opts Options) *Encoder {
	e := &Encoder{opts: opts, next: opts.IDBase, now: opts.Now, rels: relation.NewRegistry(opts.SourceDatabase, opts.Objects)}
	if e.next == 0 {
		e.next = time.Now().UnixMicro()
	}
	if e.now == nil {
		e.now = time.Now
	}
	return e
}

// NextID is the id the next message will carry.
func (e *Encoder) NextID() int64 { return e.next }

// UnchangedToastNulls counts unchanged TOAST values left out of data
// because the before-image did not reveal them.
func (e *Encoder) UnchangedToastNulls() uint64 { return e.toast }

// UnchangedToast is the JSON array of the written names of the columns the
// last Encode left out of data as unchanged TOAST values, or nil when it
// left out none. It is valid until the next Encode; delivery puts it in
// the UnchangedToastHeader.
func (e *Encoder) UnchangedToast() []byte {
	if len(e.unchanged) == 0 {
		return nil
	}
	return e.unchanged
}

// SetRelation defines or redefines a relation.
func (e *Encoder) SetRelation(r *cdcv1.Relation) *relation.Table {
	rt := e.rels.Set(r)
	t := &table{database: rt.Names.Schema, table: rt.Names.Table}
	if e.opts.DatabaseIsDBName {
		t.database = rt.Names.Database
	}
	for _, c := range rt.Names.Columns {
		t.cols = append(t.cols, column{src: c.Src, key: append(appendString(nil, c.Name), ':'), reveals: c.Reveals, conv: e.convFor(c.Def)})
	}
	t.prefix = appendPrefix(nil, t, rt.Names.Key)
	t.types = e.appendTypes(nil, t, rt.Rel)
	rt.Encoding = t
	return rt
}

// appendPrefix writes the keys between id and type, the same for every row:
// database, table, pkNames (the written key names; null when none is
// written) and isDdl.
func appendPrefix(b []byte, t *table, pk []string) []byte {
	b = append(b, `"database":`...)
	b = appendString(b, t.database)
	b = append(b, `,"table":`...)
	b = appendString(b, t.table)
	b = append(b, `,"pkNames":`...)
	if len(pk) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, n := range pk {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, n)
		}
		b = append(b, ']')
	}
	return append(b, `,"isDdl":false,"type":"`...)
}

// appendTypes writes sqlType, mysqlType and the start of data, the same for
// every row.
func (e *Encoder) appendTypes(b []byte, t *table, r *cdcv1.Relation) []byte {
	b = append(b, `"sqlType":{`...)
	for i, c := range t.cols {
		if i > 0 {
			b = append(b, ',')
		}
		col := r.GetColumns()[c.src]
		b = append(b, c.key...)
		b = strconv.AppendInt(b, int64(SQLType(col)), 10)
	}
	b = append(b, `},"mysqlType":{`...)
	for i, c := range t.cols {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, c.key...)
		b = appendString(b, e.mysqlType(r.GetColumns()[c.src]))
	}
	return append(b, `},"data":[`...)
}

func (e *Encoder) mysqlType(col *cdcv1.Column) string {
	if e.opts.MySQLTypeNames {
		return MySQLType(col)
	}
	return col.GetTypeName()
}

// Table returns the prepared relation for oid.
func (e *Encoder) Table(oid uint32) (*relation.Table, bool) { return e.rels.Table(oid) }

// form is rt's Canal JSON, which a Canal JSON encoder's SetRelation made.
func form(rt *relation.Table) (*table, error) {
	t, ok := rt.Encoding.(*table)
	if !ok {
		return nil, fmt.Errorf("relation %d was not prepared for Canal JSON", rt.Rel.GetOid())
	}
	return t, nil
}

// Encode appends ev's Canal JSON to dst.
func (e *Encoder) Encode(dst []byte, rt *relation.Table, ev *cdcv1.ChangeEvent) ([]byte, error) {
	t, err := form(rt)
	if err != nil {
		return dst, err
	}
	op, row, old, err := images(rt.Rel, ev)
	if err != nil {
		return dst, err
	}
	e.unchanged = e.unchanged[:0]
	dst = e.appendHeader(dst, t, ev, op)
	dst = e.appendData(dst, t, row, old)
	if len(e.unchanged) > 0 {
		e.unchanged = append(e.unchanged, ']')
	}
	dst = append(dst, `}],"old":`...)
	if op != "UPDATE" {
		return append(dst, "null}"...), nil
	}
	// Always one object, {} when nothing is known: Flink's canal-json
	// reads old[0] for every UPDATE and takes a missing column as unchanged.
	dst = append(dst, "[{"...)
	if tuple.Len(old) > 0 {
		dst = e.appendChanged(dst, t, row, old)
	}
	return append(dst, "}]}"...), nil
}

// images picks the row that goes into data (the before-image for a DELETE)
// and the before-image of an UPDATE, and checks they fit the relation.
func images(rel *cdcv1.Relation, ev *cdcv1.ChangeEvent) (op string, row, old *cdcv1.Tuple, err error) {
	n := len(rel.GetColumns())
	switch ev.GetOp() {
	case cdcv1.Operation_OPERATION_INSERT:
		op, row = "INSERT", ev.GetNewTuple()
	case cdcv1.Operation_OPERATION_UPDATE:
		op, row, old = "UPDATE", ev.GetNewTuple(), ev.GetOldTuple()
	case cdcv1.Operation_OPERATION_DELETE:
		op, row = "DELETE", ev.GetOldTuple()
	default:
		return "", nil, nil, fmt.Errorf("event at LSN %d on %s.%s has operation %v", ev.GetLsn(), rel.GetSchema(), rel.GetTable(), ev.GetOp())
	}
	if tuple.Len(row) != n && (op != "DELETE" || tuple.Len(row) != 0) {
		return "", nil, nil, fmt.Errorf("event at LSN %d on %s.%s has %d values for %d columns", ev.GetLsn(), rel.GetSchema(), rel.GetTable(), tuple.Len(row), n)
	}
	for _, tu := range []*cdcv1.Tuple{row, old} {
		if tuple.Len(tu) == 0 {
			continue
		}
		if err := tuple.Check(tu, n); err != nil {
			return "", nil, nil, fmt.Errorf("event at LSN %d on %s.%s: %w", ev.GetLsn(), rel.GetSchema(), rel.GetTable(), err)
		}
	}
	return op, row, old, nil
}

// appendHeader writes every key before data: id, the table's precomputed
// names and types, the operation and the times.
func (e *Encoder) appendHeader(dst []byte, t *table, ev *cdcv1.ChangeEvent, op string) []byte {
	ts := e.now().UnixMilli()
	es := ts
	if ct := ev.GetCommitTime(); ct != nil {
		es = ct.AsTime().UnixMilli()
	}
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendInt(dst, e.next, 10)
	e.next++
	dst = append(dst, ',')
	dst = append(dst, t.prefix...)
	dst = append(dst, op...)
	dst = append(dst, `","es":`...)
	dst = strconv.AppendInt(dst, es, 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, `,"sql":"",`...)
	return append(dst, t.types...)
}

// appendData writes data's one row object. Every value is its source text
// as a JSON string (rewritten only by ValueStyle FLINK). An unchanged TOAST
// value the before-image does not reveal is left out: a null there would
// read as SQL NULL.
func (e *Encoder) appendData(dst []byte, t *table, row, old *cdcv1.Tuple) []byte {
	dst = append(dst, '{')
	first := true
	for i := range t.cols {
		c := &t.cols[i]
		text, k := tuple.Field(row, c.src)
		if k == tuple.UnchangedToast {
			if text, k = e.revealed(c, old); k == tuple.UnchangedToast {
				continue
			}
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, c.key...)
		switch {
		case k == tuple.Null:
			dst = append(dst, "null"...)
		case c.conv == convNone:
			dst = appendBytes(dst, text)
		default:
			dst = appendText(dst, c.conv, text)
		}
	}
	return dst
}

// appendChanged writes old's members: the prior values of the columns the
// UPDATE changed, among those the replica identity reveals.
func (e *Encoder) appendChanged(dst []byte, t *table, row, old *cdcv1.Tuple) []byte {
	first := true
	for _, c := range t.cols {
		if !c.reveals {
			continue
		}
		nt, kn := tuple.Field(row, c.src)
		if kn == tuple.UnchangedToast {
			continue // untouched by definition
		}
		ot, ko := tuple.Field(old, c.src)
		if ko == tuple.UnchangedToast {
			continue
		}
		if kn == ko && string(nt) == string(ot) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, c.key...)
		if ko == tuple.Null {
			dst = append(dst, "null"...)
		} else {
			dst = appendText(dst, c.conv, ot)
		}
	}
	return dst
}

// revealed is an unchanged TOAST value of column c from the before-image
// (REPLICA IDENTITY FULL). When that does not reveal it, the column is
// recorded for the header and counted, and the kind stays UnchangedToast.
func (e *Encoder) revealed(c *column, old *cdcv1.Tuple) ([]byte, tuple.Kind) {
	if tuple.Len(old) > 0 {
		if text, k := tuple.Field(old, c.src); k == tuple.Text {
			return text, k
		}
	}
	e.toast++
	if len(e.unchanged) == 0 {
		e.unchanged = append(e.unchanged, '[')
	} else {
		e.unchanged = append(e.unchanged, ',')
	}
	e.unchanged = append(e.unchanged, c.key[:len(c.key)-1]...)
	return nil, tuple.UnchangedToast
}

// SQLType maps a column's type to its java.sql.Types code. A domain maps as
// its base type. Types formats.md does not assign get the code PostgreSQL's
// JDBC driver reports where formats.md lists that code (oid BIGINT, name
// VARCHAR, "char" CHAR, enums VARCHAR, composites STRUCT), citext that of
// text, and every other type OTHER.
func SQLType(col *cdcv1.Column) int {
	switch col.GetBaseTypeKind() {
	case cdcv1.TypeKind_TYPE_KIND_ARRAY:
		return 2003 // ARRAY
	case cdcv1.TypeKind_TYPE_KIND_COMPOSITE:
		return 2002 // STRUCT
	case cdcv1.TypeKind_TYPE_KIND_ENUM:
		return 12 // VARCHAR
	}
	switch relation.ValueOID(col) {
	case 16:
		return 16 // BOOLEAN
	case 1560:
		return -7 // BIT
	case 21:
		return 5 // SMALLINT
	case 23:
		return 4 // INTEGER
	case 20:
		return -5 // BIGINT
	case 700:
		return 7 // REAL
	case 701:
		return 8 // DOUBLE
	case 1700:
		return 2 // NUMERIC
	case 1042:
		return 1 // CHAR
	case 1043:
		return 12 // VARCHAR
	case 25:
		return -1 // LONGVARCHAR
	case 1082:
		return 91 // DATE
	case 1083:
		return 92 // TIME
	case 1266:
		return 2013 // TIME_WITH_TIMEZONE
	case 1114:
		return 93 // TIMESTAMP
	case 1184:
		return 2014 // TIMESTAMP_WITH_TIMEZONE
	case 17:
		return -2 // BINARY
	case 26:
		return -5 // BIGINT: oid is unsigned 32-bit
	case 19:
		return 12 // VARCHAR
	case 18:
		return 1 // CHAR
	}
	switch {
	case relation.IsCitext(col.GetTypeName()):
		return -1 // LONGVARCHAR, as text
	case col.GetBaseTypeKind() == cdcv1.TypeKind_TYPE_KIND_UNSPECIFIED && strings.HasSuffix(col.GetTypeName(), "[]"):
		return 2003 // ARRAY, from a relation that does not say its kind
	}
	return 1111 // OTHER
}

// appendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	return appendJSON(dst, s)
}

// appendBytes appends s as a JSON string; s is not retained.
func appendBytes(dst []byte, s []byte) []byte {
	return appendJSON(dst, unsafe.String(unsafe.SliceData(s), len(s)))
}

func appendJSON(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"':
				dst = append(dst, '\\', '"')
			case '\\':
				dst = append(dst, '\\', '\\')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&15])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&15])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

const hex = "0123456789abcdef"
