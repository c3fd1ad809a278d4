package decode

import (
	"fmt"
	"slices"

	"github.com/jackc/pglogrepl"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

// TruncateEvent is the event of a TRUNCATE message, without its position.
func TruncateEvent(m *pglogrepl.TruncateMessage) *cdcv1.ChangeEvent {
	return &cdcv1.ChangeEvent{
		Op:          cdcv1.Operation_OPERATION_TRUNCATE,
		RelationOid: m.RelationIDs[0],
		Truncate: &cdcv1.Truncate{
			RelationOids:    slices.Clone(m.RelationIDs),
			Cascade:         m.Option&pglogrepl.TruncateOptionCascade != 0,
			RestartIdentity: m.Option&pglogrepl.TruncateOptionRestartIdentity != 0,
		},
	}
}

// Change decodes a row change (Insert, Update or Delete) of a relation
// defined before it into its event, without its position, and returns the
// relation with it.
func (c *Relations) Change(m pglogrepl.Message) (*cdcv1.ChangeEvent, *Relation, error) {
	var (
		op       cdcv1.Operation
		oid      uint32
		newTuple *pglogrepl.TupleData
		oldTuple *pglogrepl.TupleData
	)
	switch m := m.(type) {
	case *pglogrepl.InsertMessage:
		op, oid, newTuple = cdcv1.Operation_OPERATION_INSERT, m.RelationID, m.Tuple
	case *pglogrepl.UpdateMessage:
		op, oid, newTuple, oldTuple = cdcv1.Operation_OPERATION_UPDATE, m.RelationID, m.NewTuple, m.OldTuple
	case *pglogrepl.DeleteMessage:
		op, oid, oldTuple = cdcv1.Operation_OPERATION_DELETE, m.RelationID, m.OldTuple
	default:
		return nil, nil, fmt.Errorf("unexpected message %T", m)
	}
	rel, err := c.Get(oid)
	if err != nil {
		return nil, nil, err
	}
	newT, err := decodeTuple(rel, newTuple)
	if err != nil {
		return nil, nil, err
	}
	// A 'K' tuple carries the key columns and nulls elsewhere, which is
	// the contract's "columns it does not reveal are null".
	oldT, err := decodeTuple(rel, oldTuple)
	if err != nil {
		return nil, nil, err
	}
	return &cdcv1.ChangeEvent{Op: op, RelationOid: oid, NewTuple: newT, OldTuple: oldT}, rel, nil
}
