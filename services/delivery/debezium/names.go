package debezium

import (
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/canal"
)

// The relation, its written names and the DDL record are shared by every
// format and live in package canal for now. This file is the only place
// this package names canal: when they move to a package of their own,
// re-point these lines.

// Table is a relation prepared for encoding, with its names as messages
// carry them.
type Table = canal.Table

// DDL is a table definition, a change to one, or a TRUNCATE.
type DDL = canal.DDL

// nameMapper prepares relations: names after the capitalization policy and
// column mapping, key column indexes.
type nameMapper = canal.Encoder

func newNameMapper(sourceDatabase string, objects *taskv1.ObjectSelection) *nameMapper {
	return canal.New(canal.Options{SourceDatabase: sourceDatabase, Objects: objects, IDBase: 1})
}
