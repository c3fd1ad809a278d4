package debezium

import (
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
)

// Table is a relation prepared for encoding, with its names as messages
// carry them; every format shares it (package relation).
type Table = relation.Table

// DDL is a table definition, a change to one, or a TRUNCATE.
type DDL = relation.DDL

// nameMapper prepares relations (names after the capitalization policy
// and column mapping, key column indexes) and finds them by OID.
type nameMapper struct{ reg *relation.Registry }

func newNameMapper(sourceDatabase string, objects *taskv1.ObjectSelection) nameMapper {
	return nameMapper{relation.NewRegistry(sourceDatabase, objects)}
}

func (m nameMapper) set(r *cdcv1.Relation) *Table { return m.reg.Set(r) }

func (m nameMapper) table(oid uint32) (*Table, bool) { return m.reg.Table(oid) }
