package dtsavro

import (
	"fmt"

	"github.com/hamba/avro/v2"
	"github.com/jackc/pgx/v5/pgtype"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/delivery/canal"
	"github.com/ferry-cdc/ferry/services/delivery/pgtext"
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
func prepareColumn(c canal.Column, col *cdcv1.Column) column {
	oid := canal.ValueOID(col) // a domain maps as its base type
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
	case pgtext.OIDFloat8:
		out.member, out.prec = sch.float, 53
	case 1700:
		out.member = sch.decimal
		out.prec, out.scale = numericTypmod(col.GetTypeModifier())
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.QCharOID, pgtype.NameOID:
		out.member = sch.character
	}
	if canal.IsCitext(col.GetTypeName()) || col.GetBaseTypeKind() == cdcv1.TypeKind_TYPE_KIND_ENUM {
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

// writeValue writes one image element: the union index, then the member.
func (e *Encoder) writeValue(w *avro.Writer, c *column, v *cdcv1.Value) {
	switch k := v.GetKind().(type) {
	case nil, *cdcv1.Value_Null:
		w.WriteInt(0)
	case *cdcv1.Value_UnchangedToast:
		w.WriteInt(sch.emptyObject)
		w.WriteInt(sch.none)
	case *cdcv1.Value_Int:
		e.writeInteger(w, c, v)
	case *cdcv1.Value_Float:
		w.WriteInt(sch.float)
		w.WriteDouble(k.Float)
		w.WriteInt(c.prec)
		w.WriteInt(0)
	case *cdcv1.Value_Numeric:
		w.WriteInt(sch.decimal)
		w.WriteString(k.Numeric)
		w.WriteInt(c.prec)
		w.WriteInt(c.scale)
	case *cdcv1.Value_Text:
		if c.member == sch.character {
			w.WriteInt(sch.character)
			w.WriteString("utf8")
			w.WriteString(k.Text)
			return
		}
		writeTextObject(w, c.name, k.Text)
	case *cdcv1.Value_Bytes:
		w.WriteInt(sch.binaryObject)
		w.WriteString("bytea")
		w.WriteBytes(k.Bytes)
	case *cdcv1.Value_Date:
		e.writeDate(w, c, v)
	case *cdcv1.Value_Timestamp:
		e.writeTimestamp(w, c, v)
	case *cdcv1.Value_Timestamptz:
		e.writeTimestamptz(w, c, v)
	default: // bool, and any kind added later: PostgreSQL's text output
		writeTextObject(w, c.name, string(e.appendText(c, v)))
	}
}

func writeTextObject(w *avro.Writer, typeName, text string) {
	w.WriteInt(sch.textObject)
	w.WriteString(typeName)
	w.WriteString(text)
}

func (e *Encoder) writeInteger(w *avro.Writer, c *column, v *cdcv1.Value) {
	prec := c.prec
	if c.member != sch.integer {
		prec = 19 // an int kind on a column not typed as one: int64's digits
	}
	w.WriteInt(sch.integer)
	w.WriteInt(prec)
	w.WriteBytes(e.appendText(c, v))
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

func (e *Encoder) writeDate(w *avro.Writer, c *column, v *cdcv1.Value) {
	d := v.GetDate()
	y, mo, day := pgtext.Civil(int64(d.GetDays()))
	if d.GetInfinity() != cdcv1.Infinity_INFINITY_UNSPECIFIED || y < 1 {
		writeTextObject(w, typeName(c, "date"), string(e.appendText(c, v)))
		return
	}
	writeDateTime(w, y, mo, day, -1, 0, 0, 0)
}

const microsPerDay = 86_400_000_000

func (e *Encoder) writeTimestamp(w *avro.Writer, c *column, v *cdcv1.Value) {
	ts := v.GetTimestamp()
	us := ts.GetMicros()
	days := floorDiv(us, microsPerDay)
	rem := us - days*microsPerDay
	y, mo, d := pgtext.Civil(days)
	if ts.GetInfinity() != cdcv1.Infinity_INFINITY_UNSPECIFIED || y < 1 {
		writeTextObject(w, typeName(c, "timestamp without time zone"), string(e.appendText(c, v)))
		return
	}
	secs := rem / 1_000_000
	writeDateTime(w, y, mo, d, secs/3600, secs/60%60, secs%60, rem%1_000_000)
}

func (e *Encoder) writeTimestamptz(w *avro.Writer, c *column, v *cdcv1.Value) {
	ts := v.GetTimestamptz()
	if ts.GetInfinity() != cdcv1.Infinity_INFINITY_UNSPECIFIED {
		writeTextObject(w, typeName(c, "timestamp with time zone"), string(e.appendText(c, v)))
		return
	}
	us := ts.GetMicros()
	sec := floorDiv(us, 1_000_000)
	w.WriteInt(sch.timestamp)
	w.WriteLong(sec)
	w.WriteInt(int32(us - sec*1_000_000)) // 0..999999
}

// typeName is the column's type name, or def for a kind arriving on a column
// whose relation did not name its type.
func typeName(c *column, def string) string {
	if c.name != "" {
		return c.name
	}
	return def
}
