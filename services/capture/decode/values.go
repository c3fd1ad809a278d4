package decode

import (
	"fmt"

	"github.com/jackc/pglogrepl"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// decodeTuple copies a pgoutput tuple into a Tuple, each value as the text
// pgoutput sent: capture parses no value, so that a format parses only what
// it needs, when it encodes.
func decodeTuple(rel *Relation, t *pglogrepl.TupleData) (*cdcv1.Tuple, error) {
	if t == nil {
		return nil, nil
	}
	if len(t.Columns) != len(rel.Msg.Columns) {
		return nil, fmt.Errorf("relation %s.%s: tuple has %d columns, relation has %d",
			rel.Msg.Namespace, rel.Msg.RelationName, len(t.Columns), len(rel.Msg.Columns))
	}
	size := 0
	for _, col := range t.Columns {
		size += len(col.Data)
	}
	out := tuple.New(len(t.Columns), size)
	for i, col := range t.Columns {
		switch col.DataType {
		case pglogrepl.TupleDataTypeNull:
			tuple.Append(out, tuple.Null, nil)
		case pglogrepl.TupleDataTypeToast:
			tuple.Append(out, tuple.UnchangedToast, nil)
		case pglogrepl.TupleDataTypeText:
			tuple.Append(out, tuple.Text, col.Data)
		default:
			// Only binary = true in the start options makes pgoutput send 'b'.
			return nil, fmt.Errorf("column %q of %s.%s: unexpected tuple data kind %q",
				rel.Msg.Columns[i].Name, rel.Msg.Namespace, rel.Msg.RelationName, col.DataType)
		}
	}
	return out, nil
}
