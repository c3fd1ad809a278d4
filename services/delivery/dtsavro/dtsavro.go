// Package dtsavro encodes row changes as DTS Avro: one
// com.alibaba.dts.formats.avro.Record per row change, in plain Avro binary
// encoding, as the managed DTS service writes it to Kafka; see
// shared/spec/formats.md. The schema is record.avsc, embedded.
//
// Where formats.md leaves room, this package chooses as follows. Several
// choices follow what Alibaba's own reader (aliyun-dts-subscribe-sdk-java,
// LazyRecordDeserializer) does with the bytes, because "readable by a stock
// DTS reader" is the test that matters.
//
// Record header:
//
//   - version is 1.
//   - id increases within a task with the scheme Canal JSON uses: the Unix
//     time in microseconds at which the stream started, plus one per message
//     (see package canal).
//   - sourceTimestamp is the commit time in Unix seconds (floor), and
//     bornTimestamp the same instant in Unix milliseconds. Events without a
//     commit time (none are expected) use the time of encoding.
//   - sourcePosition is the change's LSN and safeSourcePosition its
//     transaction's commit LSN, both as pg_lsn text in upper-case hex with
//     the low half always padded to 8 digits ("16/0374D848"), the form the
//     task brief asks for and newer PostgreSQL releases print. PostgreSQL
//     15 prints the same LSN unpadded ("16/374D848"); both read back as the
//     same pg_lsn, but compare them as pg_lsn, not as text.
//   - sourceTxid is the xid in decimal.
//   - source is {PostgreSQL, Options.ServerVersion}; delivery is not told the
//     server version today, so it is "" until capture passes it along.
//   - objectName is "database.schema.table" with the task's capitalization
//     policy applied to each part, the database being the source database.
//     A "." inside a part is written as the six characters \u002E, the escape
//     the DTS reader's ObjectNameUtils undoes, so the three parts survive.
//   - processTimestamps is null.
//   - tags holds {"snapshot": "true"} for rows read by full sync and is empty
//     otherwise. DTS's own writers also put "pk_uk_info" and others there;
//     formats.md does not define them, so none is invented here.
//   - fields lists the written columns (renames applied, dropped columns left
//     out) with the type OID as dataTypeNumber; an OID above 2^31-1 wraps to a
//     negative int as PostgreSQL's oid::int4 cast does.
//
// Images: INSERT has beforeImages null and afterImages the new row; UPDATE
// has beforeImages the old row when the source sent one (else null) and
// afterImages the new row; DELETE has beforeImages the old row and
// afterImages null. Values arrive as the source's text (cdcv1.Tuple) and
// only floats, bytea, dates and timestamps are parsed, here; text that
// does not parse fails the event with an error naming the column and its
// type, never the value. One element per entry of fields:
//
//   - SQL NULL is the union's null.
//   - EmptyObject NONE means "value not present", never NULL: a column the
//     before-image does not reveal (under REPLICA IDENTITY DEFAULT or INDEX
//     only key columns are revealed; PostgreSQL sends null for the others,
//     which would otherwise be mistaken for SQL NULL), and an unchanged
//     TOASTed value the source did not send (pgoutput's 'u'). An unchanged
//     TOAST value in the after-image takes the before-image's value when
//     that reveals it (REPLICA IDENTITY FULL); otherwise it is NONE and is
//     counted (Encoder.UnchangedToastNulls).
//   - smallint, integer, bigint, oid: Integer, value the decimal text,
//     precision the decimal digits of the type's maximum: 5, 10, 19, 10.
//   - numeric: Decimal, value the exact text (NaN, Infinity and -Infinity
//     kept as text), precision and scale from the type modifier:
//     ((typmod-4)>>16)&0xffff and the low 11 bits of typmod-4 sign-extended
//     (PostgreSQL 15 allows a negative scale; for scales 0..1000 this equals
//     (typmod-4)&0xffff); 0 and 0 when unconstrained.
//   - real, double precision: Float with the binary64 value (real widens
//     exactly), precision 24 or 53 (binary digits, as
//     information_schema.columns.numeric_precision reports them) and scale 0
//     (floats have no scale).
//   - text, varchar, char, "char", name, citext and enums: Character, charset
//     "utf8", value the bytes. The text arrives in the replication session's
//     client_encoding, which is the database's encoding unless set; the
//     charset is right for UTF8 databases, which Ferry assumes.
//   - bytea: BinaryObject{type "bytea", value the raw bytes}.
//   - date: DateTime with year, month and day, the time fields null.
//   - timestamp: DateTime with every field; millis carries the
//     microseconds of the second (0..999999), because that is how the DTS
//     reader reads the field for PostgreSQL and MySQL sources (it multiplies
//     it by 1000 to get nanoseconds), and it keeps the value exact.
//   - date and timestamp values DateTime cannot state without ambiguity,
//     infinity, -infinity and years before 1 AD, are TextObject with
//     PostgreSQL's text ("infinity", "0044-03-15 BC").
//   - timestamptz: Timestamp{timestamp: Unix seconds (floor), millis: the
//     microseconds past that second (0..999999)}. The DTS reader takes this
//     second field as microseconds (UnixTimestamp.micro), so writing micros
//     is both exact and what a stock reader expects. infinity and -infinity
//     are TextObject, and so are timestamps past 294247 AD, which int64
//     microseconds since 1970 cannot hold.
//   - a domain maps as its base type (capture resolves it; Column
//     .base_type_oid), with its own name where the member has a type field.
//   - everything else, including boolean ("t"/"f", which the DTS reader
//     turns into 1/0 for PostgreSQL), time, timetz and interval (TextObject
//     keeps their microseconds and offsets exactly where DateTime could not),
//     json, jsonb, xml, uuid, network, money, bit strings, geometric types,
//     arrays, ranges, multiranges and composites: TextObject{type: the
//     column's type as format_type prints it, value: PostgreSQL's text
//     output}. A relation that does not name its types' kinds (older
//     senders) maps enums as TextObject too.
package dtsavro

import (
	_ "embed"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hamba/avro/v2"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// SchemaJSON is the Record schema, exactly as formats.md defines it.
//
//go:embed record.avsc
var SchemaJSON string

// FullName is the schema's full name.
const FullName = "com.alibaba.dts.formats.avro.Record"

// Options configure an Encoder.
type Options struct {
	// SourceDatabase is the first part of objectName.
	SourceDatabase string
	// Objects supplies column mappings and the capitalization policy.
	Objects *taskv1.ObjectSelection
	// ServerVersion is source.version; empty when unknown.
	ServerVersion string
	// IDBase is the first id; zero means the Unix time in microseconds now.
	IDBase int64
	// Now is the clock for events without a commit time; nil means time.Now.
	Now func() time.Time
}

// Encoder turns change events into DTS Avro Records. It is not safe for
// concurrent use.
type Encoder struct {
	opts  Options
	rels  *relation.Registry
	next  int64
	now   func() time.Time
	w     *avro.Writer
	text  []byte
	toast uint64
}

// table is a relation prepared for encoding.
type table struct {
	objectName string
	fields     []byte // the encoded "fields" union, the same for every row
	cols       []column
}

type column struct {
	src     int
	reveals bool
	member  int32 // the image union member for a value of the column's own kind
	prec    int32
	scale   int32
	oid     uint32
	name    string // format_type, for TextObject.type
}

// New returns an encoder.
func New(opts Options) *Encoder {
	e := &Encoder{
		opts: opts,
		rels: relation.NewRegistry(opts.SourceDatabase, opts.Objects),
		next: opts.IDBase,
		now:  opts.Now,
		w:    avro.NewWriter(nil, 512),
	}
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

// UnchangedToastNulls counts unchanged TOAST values written as EmptyObject
// NONE because the before-image did not reveal them.
func (e *Encoder) UnchangedToastNulls() uint64 { return e.toast }

// UnchangedToast is always nil: EmptyObject NONE marks an unchanged TOAST
// value inside the record, so no header is needed.
func (e *Encoder) UnchangedToast() []byte { return nil }

// Table returns the prepared relation for oid.
func (e *Encoder) Table(oid uint32) (*relation.Table, bool) { return e.rels.Table(oid) }

// SetRelation defines or redefines a relation.
func (e *Encoder) SetRelation(r *cdcv1.Relation) *relation.Table {
	rt := e.rels.Set(r)
	n := rt.Names
	t := &table{objectName: escapeName(n.Database) + "." + escapeName(n.Schema) + "." + escapeName(n.Table)}
	w := avro.NewWriter(nil, 64)
	w.WriteInt(sch.fieldsArray)
	w.WriteLong(int64(len(n.Columns)))
	for _, c := range n.Columns {
		w.WriteString(c.Name)
		w.WriteInt(int32(c.Def.GetTypeOid())) // wraps like oid::int4
		t.cols = append(t.cols, prepareColumn(c))
	}
	if len(n.Columns) > 0 {
		w.WriteLong(0)
	}
	t.fields = append([]byte(nil), w.Buffer()...)
	rt.Encoding = t
	return rt
}

// form is rt's prepared form, which a DTS Avro encoder's SetRelation made.
func form(rt *relation.Table) (*table, error) {
	t, ok := rt.Encoding.(*table)
	if !ok {
		return nil, fmt.Errorf("relation %d was never set", rt.Rel.GetOid())
	}
	return t, nil
}

// escapeName writes "." as \u002E, which the DTS reader's ObjectNameUtils
// turns back into "." after splitting objectName at the dots.
func escapeName(s string) string {
	return strings.ReplaceAll(s, ".", `\u002E`)
}

// Encode appends ev's Record to dst.
func (e *Encoder) Encode(dst []byte, rt *relation.Table, ev *cdcv1.ChangeEvent) ([]byte, error) {
	t, err := form(rt)
	if err != nil {
		return dst, err
	}
	op, before, after, err := images(rt.Rel, ev)
	if err != nil {
		return dst, err
	}
	commit := e.now()
	if c := ev.GetCommitTime(); c != nil {
		commit = c.AsTime()
	}
	w := e.w
	w.Reset(nil)
	e.writeHeader(w, t, op, ev, commit)
	_, _ = w.Write(t.fields) // appends to memory; cannot fail
	deleted := ev.GetOp() == cdcv1.Operation_OPERATION_DELETE
	if err := e.writeImage(w, t, before, nil, true, deleted); err != nil {
		e.next--
		return dst, fmt.Errorf("event at LSN %d on %s.%s: %w", ev.GetLsn(), rt.Rel.GetSchema(), rt.Rel.GetTable(), err)
	}
	if err := e.writeImage(w, t, after, before, false, false); err != nil {
		e.next--
		return dst, fmt.Errorf("event at LSN %d on %s.%s: %w", ev.GetLsn(), rt.Rel.GetSchema(), rt.Rel.GetTable(), err)
	}
	w.WriteLong(commit.UnixMilli())
	// With a schema registry, the delivery stream writes the Confluent
	// header (magic byte, schema id) into dst before this; see formats.md.
	return append(dst, w.Buffer()...), nil
}

// images picks the before and after rows for ev and checks they fit the
// relation. A nil before of a DELETE is written as NONE for every column.
func images(rel *cdcv1.Relation, ev *cdcv1.ChangeEvent) (op int32, before, after *cdcv1.Tuple, err error) {
	nw, old := ev.GetNewTuple(), ev.GetOldTuple()
	switch ev.GetOp() {
	case cdcv1.Operation_OPERATION_INSERT:
		op, after = sch.opInsert, nw
	case cdcv1.Operation_OPERATION_UPDATE:
		op, before, after = sch.opUpdate, old, nw
	case cdcv1.Operation_OPERATION_DELETE:
		op, before = sch.opDelete, old
	default:
		return 0, nil, nil, fmt.Errorf("event at LSN %d on %s.%s has operation %v", ev.GetLsn(), rel.GetSchema(), rel.GetTable(), ev.GetOp())
	}
	n := len(rel.GetColumns())
	if ev.GetOp() != cdcv1.Operation_OPERATION_DELETE && tuple.Len(after) != n {
		return 0, nil, nil, fmt.Errorf("event at LSN %d on %s.%s has %d values for %d columns", ev.GetLsn(), rel.GetSchema(), rel.GetTable(), tuple.Len(after), n)
	}
	for _, t := range []*cdcv1.Tuple{before, after} {
		if err := tuple.Check(t, n); err != nil {
			return 0, nil, nil, fmt.Errorf("event at LSN %d on %s.%s: %w", ev.GetLsn(), rel.GetSchema(), rel.GetTable(), err)
		}
	}
	return op, before, after, nil
}

func (e *Encoder) writeHeader(w *avro.Writer, t *table, op int32, ev *cdcv1.ChangeEvent, commit time.Time) {
	w.WriteInt(1) // version
	w.WriteLong(e.next)
	e.next++
	w.WriteLong(commit.Unix())
	e.text = AppendLSN(e.text[:0], ev.GetLsn())
	w.WriteBytes(e.text)
	e.text = AppendLSN(e.text[:0], ev.GetCommitLsn())
	w.WriteBytes(e.text)
	// Xid 0 is PostgreSQL's InvalidTransactionId: no transaction, as for a
	// DDL record, which is written as the field's default "".
	e.text = e.text[:0]
	if ev.GetXid() != 0 {
		e.text = strconv.AppendUint(e.text, uint64(ev.GetXid()), 10)
	}
	w.WriteBytes(e.text)
	w.WriteInt(sch.postgreSQL)
	w.WriteString(e.opts.ServerVersion)
	w.WriteInt(op)
	w.WriteInt(1) // objectName: the string member
	w.WriteString(t.objectName)
	w.WriteInt(0) // processTimestamps: null
	if ev.GetSnapshot() {
		w.WriteLong(1)
		w.WriteString("snapshot")
		w.WriteString("true")
	}
	w.WriteLong(0) // end of tags
}

// writeImage writes one image union. A row without columns is the union's
// null, except
// a DELETE's before-image, which is still an array, of NONE: a DELETE with
// beforeImages null would name no row at all (PostgreSQL refuses deletes it
// cannot identify, so that is not expected). other is the before-image,
// consulted for unchanged TOAST values of the after-image.
func (e *Encoder) writeImage(w *avro.Writer, t *table, row, other *cdcv1.Tuple, isBefore, deleted bool) error {
	if tuple.Len(row) == 0 && !deleted {
		w.WriteInt(0)
		return nil
	}
	w.WriteInt(sch.imageArray)
	if len(t.cols) == 0 {
		w.WriteLong(0)
		return nil
	}
	w.WriteLong(int64(len(t.cols)))
	for i := range t.cols {
		c := &t.cols[i]
		text, k := tuple.Field(row, c.src)
		switch {
		case isBefore && (!c.reveals || row == nil):
			k = tuple.UnchangedToast // written as NONE
		case !isBefore && k == tuple.UnchangedToast && c.reveals && tuple.Len(other) > 0:
			if ot, ok := tuple.Field(other, c.src); ok != tuple.UnchangedToast {
				text, k = ot, ok
			}
		}
		if !isBefore && k == tuple.UnchangedToast {
			e.toast++
		}
		if err := e.writeValue(w, c, text, k); err != nil {
			return fmt.Errorf("column %d (type oid %d): %w", c.src+1, c.oid, err)
		}
	}
	w.WriteLong(0)
	return nil
}

// LSN text: pg_lsn's "%X/%08X".
const upperHex = "0123456789ABCDEF"

// AppendLSN appends lsn as PostgreSQL prints a pg_lsn.
func AppendLSN(dst []byte, lsn uint64) []byte {
	dst = appendHex(dst, lsn>>32, 1)
	dst = append(dst, '/')
	return appendHex(dst, lsn&0xffffffff, 8)
}

func appendHex(dst []byte, v uint64, minDigits int) []byte {
	var b [16]byte
	i := len(b)
	for v != 0 || len(b)-i < minDigits {
		i--
		b[i] = upperHex[v&15]
		v >>= 4
	}
	return append(dst, b[i:]...)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
