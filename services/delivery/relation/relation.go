// Package relation holds what every delivery format needs to know about a
// relation before it writes a row of it: the relation as the task names it
// (the capitalization policy, column renames and drops of
// ObjectSelection), the registry of those by relation OID, the facts about
// a column's type that the formats map from, and the description of a DDL
// record. Canal JSON, DTS Avro and Debezium JSON all read it, so that they
// name tables and columns identically, and delivery keys, routes and checkpoints by it
// whatever the format.
package relation

import (
	"strings"
	"time"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// Table is a relation as the task names it.
type Table struct {
	Rel *cdcv1.Relation
	// KeyIdx are the indexes of the key columns (Relation.key_columns), in
	// key order, into the event's values.
	KeyIdx []int
	Names  Names
	// Encoding is the format's own form of the table (what it writes the
	// same for every row), set by the encoder that prepared it, so that no
	// row pays a lookup to find it. Each format has its own type.
	Encoding any
	// Transforms are the table's row transforms, a *transform.Pipeline set
	// by delivery, or nil when the task has none for the table: every row
	// pays a nil check, not a lookup. Package transform reads this
	// package's column facts, so the type cannot be named here.
	Transforms any
}

// Names are a relation's names as messages carry them: the capitalization
// policy applied, column renames and drops applied.
type Names struct {
	Database string // the source database
	Schema   string
	Table    string
	Columns  []Column // the written columns, in source order
	// Key are the written names of the key columns, in key order; a
	// dropped key column is left out.
	Key []string
}

// Column is a written column.
type Column struct {
	Src  int // index into the event's values
	Name string
	// Reveals: the before-image carries this column's value (REPLICA
	// IDENTITY FULL, or a key column).
	Reveals bool
	// Def is the column as the relation defines it.
	Def *cdcv1.Column
}

// Registry prepares relations and finds them by OID. It is not safe for
// concurrent use.
type Registry struct {
	database string
	objects  *taskv1.ObjectSelection
	mapping  map[[2]string]*taskv1.TableSelection
	tables   map[uint32]*Table
}

// NewRegistry returns a registry naming relations of sourceDatabase as
// objects asks.
func NewRegistry(sourceDatabase string, objects *taskv1.ObjectSelection) *Registry {
	g := &Registry{
		database: sourceDatabase,
		objects:  objects,
		mapping:  map[[2]string]*taskv1.TableSelection{},
		tables:   map[uint32]*Table{},
	}
	for _, t := range objects.GetTables() {
		g.mapping[[2]string{t.GetSchema(), t.GetTable()}] = t
	}
	return g
}

// applyCase applies the task's capitalization policy to a name.
func (g *Registry) applyCase(s string) string {
	switch g.objects.GetNameCase() {
	case taskv1.NameCase_NAME_CASE_LOWER:
		return strings.ToLower(s)
	case taskv1.NameCase_NAME_CASE_UPPER:
		return strings.ToUpper(s)
	}
	return s
}

// Set defines or redefines a relation.
func (g *Registry) Set(r *cdcv1.Relation) *Table {
	t := &Table{Rel: r}
	sel := g.mapping[[2]string{r.GetSchema(), r.GetTable()}]
	maps := map[string]*taskv1.ColumnMapping{}
	for _, m := range sel.GetColumns() {
		maps[m.GetName()] = m
	}
	written := map[string]string{} // source column -> written name
	idx := map[string]int{}
	for i, c := range r.GetColumns() {
		idx[c.GetName()] = i
		m := maps[c.GetName()]
		if m.GetDrop() {
			continue
		}
		name := g.applyCase(c.GetName())
		if m.GetRename() != "" {
			name = m.GetRename()
		}
		written[c.GetName()] = name
		reveals := r.GetReplicaIdentity() == cdcv1.ReplicaIdentity_REPLICA_IDENTITY_FULL || c.GetKey()
		t.Names.Columns = append(t.Names.Columns, Column{Src: i, Name: name, Reveals: reveals, Def: c})
	}
	for _, k := range r.GetKeyColumns() {
		if i, ok := idx[k]; ok {
			t.KeyIdx = append(t.KeyIdx, i)
		}
		if w, ok := written[k]; ok {
			t.Names.Key = append(t.Names.Key, w)
		}
	}
	t.Names.Database = g.applyCase(g.database)
	t.Names.Schema = g.applyCase(r.GetSchema())
	t.Names.Table = g.applyCase(r.GetTable())
	g.tables[r.GetOid()] = t
	return t
}

// Table returns the prepared relation for oid.
func (g *Registry) Table(oid uint32) (*Table, bool) {
	t, ok := g.tables[oid]
	return t, ok
}

// DDL is a table definition or a change to one, as the DDL topic carries it.
type DDL struct {
	// Kind is the statement's kind: "CREATE", "ALTER" or "TRUNCATE".
	Kind string
	SQL  string
	// LSN is where the change took effect: the first change that used the
	// new definition (0 for a definition written by schema sync), or the
	// TRUNCATE's own position.
	LSN uint64
	// Commit is when; the zero time means now.
	Commit time.Time
}

// ValueOID is the type a column's values have: the base type of a domain
// (capture resolves it), else the column's own type.
func ValueOID(col *cdcv1.Column) uint32 {
	if b := col.GetBaseTypeOid(); b != 0 {
		return b
	}
	return col.GetTypeOid()
}

// IsCitext recognizes the citext extension's type, whose OID differs per
// database; format_type qualifies it when its schema is not on the path.
func IsCitext(typeName string) bool {
	return typeName == "citext" || strings.HasSuffix(typeName, ".citext")
}

// IsEnum reports whether col's values are an enum's labels (a domain over
// an enum included). A relation from an older sender does not say.
func IsEnum(col *cdcv1.Column) bool {
	return col.GetBaseTypeKind() == cdcv1.TypeKind_TYPE_KIND_ENUM
}
