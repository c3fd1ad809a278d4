package delivery

import (
	"slices"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// opMask is a set of row operations, one bit per cdcv1.Operation.
type opMask uint8

const allOps opMask = 1<<cdcv1.Operation_OPERATION_INSERT | 1<<cdcv1.Operation_OPERATION_UPDATE | 1<<cdcv1.Operation_OPERATION_DELETE

func (m opMask) allows(op cdcv1.Operation) bool { return m&(1<<op) != 0 }

func maskOf(ops []taskv1.OperationSet) opMask {
	var m opMask
	for _, o := range ops {
		switch o {
		case taskv1.OperationSet_OPERATION_SET_INSERT:
			m |= 1 << cdcv1.Operation_OPERATION_INSERT
		case taskv1.OperationSet_OPERATION_SET_UPDATE:
			m |= 1 << cdcv1.Operation_OPERATION_UPDATE
		case taskv1.OperationSet_OPERATION_SET_DELETE:
			m |= 1 << cdcv1.Operation_OPERATION_DELETE
		}
	}
	return m
}

// operationsFor is the set of operations shipped for a table: the table's
// own list, else its schema's, else the selection's, else all three. A row
// change that is not shipped is still covered by its batch's watermark, so
// skipping it never holds the safe LSN back. tsel is the table's own
// selection, nil when it has none (found by the caller's index, so that a
// task of 10,000 tables does not scan them all per table).
func operationsFor(sel *taskv1.ObjectSelection, tsel *taskv1.TableSelection, schema string) opMask {
	if !selected(sel, tsel, schema) {
		return 0
	}
	if len(tsel.GetOperations()) > 0 {
		return maskOf(tsel.GetOperations())
	}
	for _, sc := range sel.GetSchemas() {
		if sc.GetSchema() == schema && len(sc.GetOperations()) > 0 {
			return maskOf(sc.GetOperations())
		}
	}
	if len(sel.GetOperations()) > 0 {
		return maskOf(sel.GetOperations())
	}
	return allOps
}

// selected tells whether sel selects the table (a stream without any
// selection, as tools open, ships everything). A table that modify-objects
// removed still has the changes it made before it left the publication in
// the slot's backlog, and they must not reach Kafka after the removal.
func selected(sel *taskv1.ObjectSelection, tsel *taskv1.TableSelection, schema string) bool {
	selects := sel.GetWholeDatabase() || len(sel.GetSchemas()) > 0 || len(sel.GetTables()) > 0
	return !selects || tsel != nil || sel.GetWholeDatabase() || slices.ContainsFunc(sel.GetSchemas(), func(sc *taskv1.SchemaSelection) bool {
		return sc.GetSchema() == schema
	})
}
