package dtsavro

import (
	"errors"
	"fmt"

	"github.com/hamba/avro/v2"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ferry-cdc/ferry/services/delivery/relation"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// positions are the union member indexes and enum ordinals the encoder
// writes. They are read from the embedded schema rather than written down a
// second time, so the schema stays the single source of truth.
type positions struct {
	schema avro.Schema

	opInsert, opUpdate, opDelete, opDDL int32
	postgreSQL                          int32
	fieldsArray, imageArray, imageText  int32
	none                                int32

	integer, character, decimal, float, timestamp, dateTime, binaryObject, textObject, emptyObject int32
}

var sch = mustPositions()

// Schema returns the parsed Record schema (for a schema registry).
func Schema() avro.Schema { return sch.schema }

func mustPositions() positions {
	s, err := avro.Parse(SchemaJSON)
	if err != nil {
		panic(fmt.Sprintf("dtsavro: record.avsc: %v", err))
	}
	rec := s.(*avro.RecordSchema)
	p := positions{schema: s}
	field := func(name string) avro.Schema {
		for _, f := range rec.Fields() {
			if f.Name() == name {
				return f.Type()
			}
		}
		panic("dtsavro: record.avsc has no field " + name)
	}
	p.opInsert = symbol(field("operation"), "INSERT")
	p.opUpdate = symbol(field("operation"), "UPDATE")
	p.opDelete = symbol(field("operation"), "DELETE")
	p.opDDL = symbol(field("operation"), "DDL")
	source := field("source").(*avro.RecordSchema)
	p.postgreSQL = symbol(source.Fields()[0].Type(), "PostgreSQL")
	p.fieldsArray = member(field("fields"), "array")
	p.imageArray = member(field("beforeImages"), "array")
	p.imageText = member(field("afterImages"), "string")
	images := field("beforeImages").(*avro.UnionSchema).Types()[p.imageArray].(*avro.ArraySchema).Items()
	const ns = "com.alibaba.dts.formats.avro."
	p.integer = member(images, ns+"Integer")
	p.character = member(images, ns+"Character")
	p.decimal = member(images, ns+"Decimal")
	p.float = member(images, ns+"Float")
	p.timestamp = member(images, ns+"Timestamp")
	p.dateTime = member(images, ns+"DateTime")
	p.binaryObject = member(images, ns+"BinaryObject")
	p.textObject = member(images, ns+"TextObject")
	p.emptyObject = member(images, ns+"EmptyObject")
	empty := images.(*avro.UnionSchema).Types()[p.emptyObject]
	p.none = symbol(empty, "NONE")
	return p
}

func symbol(s avro.Schema, name string) int32 {
	for i, sym := range s.(*avro.EnumSchema).Symbols() {
		if sym == name {
			return int32(i)
		}
	}
	panic("dtsavro: record.avsc: no enum symbol " + name)
}

func member(s avro.Schema, name string) int32 {
	_, pos := s.(*avro.UnionSchema).Types().Get(name)
	if pos < 0 {
		panic("dtsavro: record.avsc: no union member " + name)
	}
	return int32(pos)
}

// prepareColumn decides, once per relation, how the column's values map.
func prepareColumn(c relation.Column) column {
	col := c.Def
	oid := relation.ValueOID(col) // a domain maps as its base type
	out := column{src: c.Src, reveals: c.Reveals, oid: oid, name: col.GetTypeName(), member: sch.textObject}
	switch oid {
	case pgtype.Int2OID:
		out.member, out.prec = sch.integer, 5
	case pgtype.Int4OID, pgtype.OIDOID:
		out.member, out.prec = sch.integer, 10
	case pgtype.Int8OID:
		out.member, out.prec = sch.integer, 19
	case pgtype.Float4OID:
		out.member, out.prec = sch.float, 24
	case pgtype.Float8OID:
		out.member, out.prec = sch.float, 53
	case pgtype.NumericOID:
		out.member = sch.decimal
		out.prec, out.scale = numericTypmod(col.GetTypeModifier())
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.QCharOID, pgtype.NameOID:
		out.member = sch.character
	}
	if relation.IsCitext(col.GetTypeName()) || relation.IsEnum(col) {
		out.member = sch.character
	}
	return out
}

// numericTypmod decodes numeric's type modifier as PostgreSQL 15's
// numeric_typmod_precision and numeric_typmod_scale do (scale may be
// negative there); -1 (unconstrained) gives 0 and 0.
func numericTypmod(typmod int32) (prec, scale int32) {
	if typmod < 4 {
		return 0, 0
	}
	t := typmod - 4
	return (t >> 16) & 0xffff, ((t & 0x7ff) ^ 1024) - 1024
}

// writeValue writes one image element, the union index then the member,
// from the value's text, parsing only the types DTS Avro writes as numbers.
func (e *Encoder) writeValue(w *avro.Writer, c *column, text []byte, k tuple.Kind) error {
	switch k {
	case tuple.Null:
		w.WriteInt(0)
		return nil
	case tuple.UnchangedToast:
		w.WriteInt(sch.emptyObject)
		w.WriteInt(sch.none)
		return nil
	}
	switch c.oid {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID:
		// Integer.value is the decimal text, which is PostgreSQL's own.
		w.WriteInt(sch.integer)
		w.WriteInt(c.prec)
		w.WriteBytes(text)
	case pgtype.Float4OID, pgtype.Float8OID:
		f, err := parseFloat(text, c.oid == pgtype.Float4OID)
		if err != nil {
			return err
		}
		w.WriteInt(sch.float)
		w.WriteDouble(f)
		w.WriteInt(c.prec)
		w.WriteInt(0)
	case pgtype.NumericOID:
		w.WriteInt(sch.decimal)
		w.WriteBytes(text)
		w.WriteInt(c.prec)
		w.WriteInt(c.scale)
	case pgtype.ByteaOID:
		var err error
		if e.text, err = appendBytea(e.text[:0], text); err != nil {
			return err
		}
		w.WriteInt(sch.binaryObject)
		w.WriteString("bytea")
		w.WriteBytes(e.text)
	case pgtype.DateOID:
		return writeDate(w, c, text)
	case pgtype.TimestampOID:
		return writeTimestamp(w, c, text)
	case pgtype.TimestamptzOID:
		return writeTimestamptz(w, c, text)
	default:
		writeText(w, c, text)
	}
	return nil
}

// writeText writes a value DTS Avro keeps as text: a Character for the
// character types, else a TextObject naming the type.
func writeText(w *avro.Writer, c *column, text []byte) {
	if c.member == sch.character {
		w.WriteInt(sch.character)
		w.WriteString("utf8")
		w.WriteBytes(text)
		return
	}
	writeTextObject(w, c.name, text)
}

func writeTextObject(w *avro.Writer, typeName string, text []byte) {
	w.WriteInt(sch.textObject)
	w.WriteString(typeName)
	w.WriteBytes(text) // a string is written as bytes are
}

// writeDateTime writes a DateTime; hour < 0 leaves the time fields null.
func writeDateTime(w *avro.Writer, y int64, mo, d int, hour, minute, second, micros int64) {
	w.WriteInt(sch.dateTime)
	for _, f := range []int64{y, int64(mo), int64(d)} {
		w.WriteInt(1)
		w.WriteLong(f) // int and long share the zig-zag encoding
	}
	if hour < 0 {
		for range 4 {
			w.WriteInt(0)
		}
		return
	}
	for _, f := range []int64{hour, minute, second, micros} {
		w.WriteInt(1)
		w.WriteLong(f)
	}
}

// writeDate writes a DateTime, or the text for the infinities and years
// before 1 AD, which DateTime cannot hold.
func writeDate(w *avro.Writer, c *column, s []byte) error {
	if isInfinity(s) {
		writeTextObject(w, typeName(c, "date"), s)
		return nil
	}
	y, mo, d, err := parseDate(s)
	if err != nil {
		return err
	}
	if y < 1 {
		writeTextObject(w, typeName(c, "date"), s)
		return nil
	}
	writeDateTime(w, int64(y), mo, d, -1, 0, 0, 0)
	return nil
}

const microsPerDay = 86_400_000_000

func writeTimestamp(w *avro.Writer, c *column, s []byte) error {
	if isInfinity(s) {
		writeTextObject(w, typeName(c, "timestamp without time zone"), s)
		return nil
	}
	us, err := parseTimestamp(s, false)
	if errors.Is(err, errBeyondMicros) {
		writeTextObject(w, c.name, s)
		return nil
	}
	if err != nil {
		return err
	}
	days := floorDiv(us, microsPerDay)
	rem := us - days*microsPerDay
	y, mo, d := civil(days)
	if y < 1 {
		writeTextObject(w, typeName(c, "timestamp without time zone"), s)
		return nil
	}
	secs := rem / 1_000_000
	writeDateTime(w, y, mo, d, secs/3600, secs/60%60, secs%60, rem%1_000_000)
	return nil
}

func writeTimestamptz(w *avro.Writer, c *column, s []byte) error {
	if isInfinity(s) {
		writeTextObject(w, typeName(c, "timestamp with time zone"), s)
		return nil
	}
	us, err := parseTimestamp(s, true)
	if errors.Is(err, errBeyondMicros) {
		writeTextObject(w, c.name, s)
		return nil
	}
	if err != nil {
		return err
	}
	sec := floorDiv(us, 1_000_000)
	w.WriteInt(sch.timestamp)
	w.WriteLong(sec)
	w.WriteInt(int32(us - sec*1_000_000)) // 0..999999
	return nil
}

// typeName is the column's type name, or def for a kind arriving on a column
// whose relation did not name its type.
func typeName(c *column, def string) string {
	if c.name != "" {
		return c.name
	}
	return def
}
