package debezium

import (
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/canal"
)

// The relation, its written names and the DDL record are shared by every
// format and live in package canal for now. This file is the only place
// this package names canal: when they move to a package of their own,
// re-point these lines (Table, Names.Columns[].Src and .Name, KeyIdx and
// DDL's Kind, LSN and Commit are all this package reads).

// Table is a relation prepared for encoding, with its names as messages
// carry them.
type Table = canal.Table

// DDL is a table definition, a change to one, or a TRUNCATE.
type DDL = canal.DDL

// nameMapper prepares relations (names after the capitalization policy
// and column mapping, key column indexes) and finds them by OID.
type nameMapper struct{ enc *canal.Encoder }

func newNameMapper(sourceDatabase string, objects *taskv1.ObjectSelection) nameMapper {
	return nameMapper{canal.New(canal.Options{SourceDatabase: sourceDatabase, Objects: objects, IDBase: 1})}
}

func (m nameMapper) set(r *cdcv1.Relation) *Table { return m.enc.SetRelation(r) }

func (m nameMapper) table(oid uint32) (*Table, bool) { return m.enc.Table(oid) }
