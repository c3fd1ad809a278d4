package canal

import (
	"strconv"

	"github.com/ferry-cdc/ferry/services/delivery/relation"
)

// EncodeDDL appends a DDL record for t. As formats.md asks, data, old,
// pkNames, sqlType and mysqlType are null, and the names are those the
// table's row messages carry.
func (e *Encoder) EncodeDDL(dst []byte, rt *relation.Table, d relation.DDL) ([]byte, error) {
	t, err := form(rt)
	if err != nil {
		return dst, err
	}
	ts := e.now().UnixMilli()
	es := ts
	if !d.Commit.IsZero() {
		es = d.Commit.UnixMilli()
	}
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendInt(dst, e.next, 10)
	e.next++
	dst = append(dst, `,"database":`...)
	dst = appendString(dst, t.database)
	dst = append(dst, `,"table":`...)
	dst = appendString(dst, t.table)
	dst = append(dst, `,"pkNames":null,"isDdl":true,"type":`...)
	dst = appendString(dst, d.Kind)
	dst = append(dst, `,"es":`...)
	dst = strconv.AppendInt(dst, es, 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, `,"sql":`...)
	dst = appendString(dst, d.SQL)
	return append(dst, `,"sqlType":null,"mysqlType":null,"data":null,"old":null}`...), nil
}
