package pgoutputtest

import "github.com/jackc/pglogrepl"

// Tuple is a row as pglogrepl parses it: each string a value's text, but
// "<null>" a NULL and "<toast>" an unchanged TOASTed value.
func Tuple(cols ...string) *pglogrepl.TupleData {
	t := &pglogrepl.TupleData{ColumnNum: uint16(len(cols))}
	for _, c := range cols {
		switch c {
		case "<null>":
			t.Columns = append(t.Columns, &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeNull})
		case "<toast>":
			t.Columns = append(t.Columns, &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeToast})
		default:
			t.Columns = append(t.Columns, &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeText, Data: []byte(c)})
		}
	}
	return t
}
