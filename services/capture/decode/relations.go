// Package decode turns pgoutput's messages into Ferry's change events:
// relation definitions described from the catalog, partitions' changes
// presented under their roots, row images as cdcv1.Tuple, each value the
// text pgoutput sent, and, before PostgreSQL 15, the row filters Ferry
// evaluates itself.
package decode

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

// Relation is one table definition as the stream last reported it.
type Relation struct {
	Msg   *pglogrepl.RelationMessage
	Proto *cdcv1.Relation
	// Sent is whether Proto went out on this stream since it last changed.
	Sent bool
}

// Catalog is the SQL session relations are described with.
type Catalog interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Relations maps relation OIDs to definitions. pgoutput sends a
// RelationMessage before a relation's first change in a session and again
// after its definition changes, so each message replaces the entry.
type Relations struct {
	conn  Catalog
	byOID map[uint32]*Relation
}

// NewRelations is an empty cache that describes relations on conn.
func NewRelations(conn Catalog) *Relations {
	return &Relations{conn: conn, byOID: map[uint32]*Relation{}}
}

// Define describes msg's relation, looking up type names and key columns.
func (c *Relations) Define(ctx context.Context, msg *pglogrepl.RelationMessage) error {
	types, err := c.columnTypes(ctx, msg)
	if err != nil {
		return fmt.Errorf("describing the columns of %s.%s: %w", msg.Namespace, msg.RelationName, err)
	}
	keys, err := c.keyColumns(ctx, msg.RelationID)
	if err != nil {
		return fmt.Errorf("reading the key of %s.%s: %w", msg.Namespace, msg.RelationName, err)
	}
	c.Put(msg, types, keys)
	return nil
}

// Put records msg's relation with what the catalog said about its columns
// (types has one entry per column) and key.
func (c *Relations) Put(msg *pglogrepl.RelationMessage, types []ColumnType, keys []string) {
	rel := &cdcv1.Relation{
		Oid:             msg.RelationID,
		Schema:          msg.Namespace,
		Table:           msg.RelationName,
		ReplicaIdentity: replicaIdentity(msg.ReplicaIdentity),
		KeyColumns:      keys,
	}
	for i, col := range msg.Columns {
		rel.Columns = append(rel.Columns, &cdcv1.Column{
			Name:         col.Name,
			TypeOid:      col.DataType,
			TypeName:     types[i].Name,
			TypeModifier: col.TypeModifier,
			Key:          col.Flags&1 != 0,
			BaseTypeOid:  types[i].BaseOID,
			BaseTypeKind: types[i].BaseKind,
		})
	}
	c.byOID[msg.RelationID] = &Relation{Msg: msg, Proto: rel}
}

// Lookup is the definition of relation oid, if there is one.
func (c *Relations) Lookup(oid uint32) (*Relation, bool) {
	rel, ok := c.byOID[oid]
	return rel, ok
}

// Get is the definition of relation oid, which pgoutput sends before the
// relation's first change.
func (c *Relations) Get(oid uint32) (*Relation, error) {
	rel, ok := c.byOID[oid]
	if !ok {
		return nil, fmt.Errorf("change for relation %d arrived before its definition", oid)
	}
	return rel, nil
}

// ColumnType is what the catalog says about a column's type.
type ColumnType struct {
	Name     string // format_type
	BaseOID  uint32 // the domain's base type, nested domains resolved; else the type
	BaseKind cdcv1.TypeKind
}

// columnTypes formats the message's own type OIDs and modifiers, so names
// match the definition the change was decoded with even if the table has
// been altered since. It also resolves domains to their base types: a
// domain's text output is its base type's, so values decode as the base
// type's and formats map them as that type (formats.md: domains by base
// type).
func (c *Relations) columnTypes(ctx context.Context, msg *pglogrepl.RelationMessage) ([]ColumnType, error) {
	oids := make([]uint32, len(msg.Columns))
	mods := make([]int32, len(msg.Columns))
	for i, col := range msg.Columns {
		oids[i], mods[i] = col.DataType, col.TypeModifier
	}
	rows, err := c.conn.Query(ctx, `
		WITH RECURSIVE col AS (
			SELECT * FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS t(oid, mod, ord)
		), base(ord, oid, depth) AS (
			SELECT ord, oid, 0 FROM col
			UNION ALL
			SELECT b.ord, ty.typbasetype, b.depth + 1
			FROM base b JOIN pg_type ty ON ty.oid = b.oid
			WHERE ty.typtype = 'd'
		), resolved AS (
			SELECT DISTINCT ON (ord) ord, oid FROM base ORDER BY ord, depth DESC
		)
		SELECT format_type(col.oid, col.mod), r.oid,
		       coalesce(ty.typtype::text, ''), coalesce(ty.typcategory::text, '')
		FROM col JOIN resolved r USING (ord)
		LEFT JOIN pg_type ty ON ty.oid = r.oid
		ORDER BY col.ord`, oids, mods)
	if err != nil {
		return nil, err
	}
	types, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ColumnType, error) {
		var t ColumnType
		var typtype, category string
		err := row.Scan(&t.Name, &t.BaseOID, &typtype, &category)
		t.BaseKind = typeKind(typtype, category)
		return t, err
	})
	if err != nil {
		return nil, err
	}
	if len(types) != len(msg.Columns) {
		return nil, fmt.Errorf("format_type returned %d names for %d columns", len(types), len(msg.Columns))
	}
	return types, nil
}

// typeKind maps pg_type.typtype and typcategory.
func typeKind(typtype, category string) cdcv1.TypeKind {
	switch {
	case typtype == "b" && category == "A":
		return cdcv1.TypeKind_TYPE_KIND_ARRAY
	case typtype == "b":
		return cdcv1.TypeKind_TYPE_KIND_BASE
	case typtype == "c":
		return cdcv1.TypeKind_TYPE_KIND_COMPOSITE
	case typtype == "e":
		return cdcv1.TypeKind_TYPE_KIND_ENUM
	case typtype == "r":
		return cdcv1.TypeKind_TYPE_KIND_RANGE
	case typtype == "m":
		return cdcv1.TypeKind_TYPE_KIND_MULTIRANGE
	case typtype == "p":
		return cdcv1.TypeKind_TYPE_KIND_PSEUDO
	}
	return cdcv1.TypeKind_TYPE_KIND_UNSPECIFIED
}

// DecodeOID is the type column i's values are decoded as: the domain's base
// type for a domain.
func (r *Relation) DecodeOID(i int) uint32 {
	if i < len(r.Proto.GetColumns()) {
		if b := r.Proto.GetColumns()[i].GetBaseTypeOid(); b != 0 {
			return b
		}
	}
	return r.Msg.Columns[i].DataType
}

// keyColumns returns the primary key's columns, or else those of the best
// unique index: the replica identity index if there is one, then one whose
// columns are all NOT NULL, then the narrowest. Partial and expression
// indexes do not identify rows, and INCLUDE columns are not key columns.
func (c *Relations) keyColumns(ctx context.Context, oid uint32) ([]string, error) {
	rows, err := c.conn.Query(ctx, `
		WITH candidate AS (
			SELECT i.indexrelid, i.indkey::int2[] AS keys, i.indnkeyatts,
			       i.indisprimary, i.indisreplident,
			       bool_and(a.attnotnull) AS not_null
			FROM pg_index i
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
			WHERE i.indrelid = $1
			  AND (i.indisprimary OR (i.indisunique AND i.indisvalid AND i.indpred IS NULL
			       AND NOT 0 = ANY (i.indkey::int2[])))
			-- Every column, not just indexrelid: pg_index has a primary
			-- key (which makes the rest dependent) only from PostgreSQL 14.
			GROUP BY i.indexrelid, i.indkey, i.indnkeyatts, i.indisprimary, i.indisreplident
		), best AS (
			SELECT * FROM candidate
			ORDER BY indisprimary DESC, indisreplident DESC, not_null DESC, indnkeyatts, indexrelid
			LIMIT 1
		)
		SELECT a.attname
		FROM best
		CROSS JOIN LATERAL unnest(best.keys) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = $1 AND a.attnum = k.attnum
		WHERE k.ord <= best.indnkeyatts
		ORDER BY k.ord`, oid)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func replicaIdentity(b uint8) cdcv1.ReplicaIdentity {
	switch b {
	case 'd':
		return cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT
	case 'n':
		return cdcv1.ReplicaIdentity_REPLICA_IDENTITY_NOTHING
	case 'f':
		return cdcv1.ReplicaIdentity_REPLICA_IDENTITY_FULL
	case 'i':
		return cdcv1.ReplicaIdentity_REPLICA_IDENTITY_INDEX
	}
	return cdcv1.ReplicaIdentity_REPLICA_IDENTITY_UNSPECIFIED
}
