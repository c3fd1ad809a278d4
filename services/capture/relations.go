package capture

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

// relation is one table definition as the stream last reported it.
type relation struct {
	msg   *pglogrepl.RelationMessage
	proto *cdcv1.Relation
	// sent is whether proto went out on this stream since it last changed.
	sent bool
}

// catalog is the SQL session relations are described with.
type catalog interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// relationCache maps relation OIDs to definitions. pgoutput sends a
// RelationMessage before a relation's first change in a session and again
// after its definition changes, so each message replaces the entry.
type relationCache struct {
	conn  catalog
	byOID map[uint32]*relation
}

func newRelationCache(conn catalog) *relationCache {
	return &relationCache{conn: conn, byOID: map[uint32]*relation{}}
}

// define describes msg's relation, looking up type names and key columns.
func (c *relationCache) define(ctx context.Context, msg *pglogrepl.RelationMessage) error {
	typeNames, err := c.typeNames(ctx, msg)
	if err != nil {
		return fmt.Errorf("describing the columns of %s.%s: %w", msg.Namespace, msg.RelationName, err)
	}
	keys, err := c.keyColumns(ctx, msg.RelationID)
	if err != nil {
		return fmt.Errorf("reading the key of %s.%s: %w", msg.Namespace, msg.RelationName, err)
	}
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
			TypeName:     typeNames[i],
			TypeModifier: col.TypeModifier,
			Key:          col.Flags&1 != 0,
		})
	}
	c.byOID[msg.RelationID] = &relation{msg: msg, proto: rel}
	return nil
}

func (c *relationCache) get(oid uint32) (*relation, error) {
	rel, ok := c.byOID[oid]
	if !ok {
		return nil, fmt.Errorf("change for relation %d arrived before its definition", oid)
	}
	return rel, nil
}

// typeNames formats the message's own type OIDs and modifiers, so names
// match the definition the change was decoded with even if the table has
// been altered since.
func (c *relationCache) typeNames(ctx context.Context, msg *pglogrepl.RelationMessage) ([]string, error) {
	oids := make([]uint32, len(msg.Columns))
	mods := make([]int32, len(msg.Columns))
	for i, col := range msg.Columns {
		oids[i], mods[i] = col.DataType, col.TypeModifier
	}
	rows, err := c.conn.Query(ctx, `
		SELECT format_type(t.oid, t.mod)
		FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS t(oid, mod, ord)
		ORDER BY t.ord`, oids, mods)
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	if len(names) != len(msg.Columns) {
		return nil, fmt.Errorf("format_type returned %d names for %d columns", len(names), len(msg.Columns))
	}
	return names, nil
}

// keyColumns returns the primary key's columns, or else those of the best
// unique index: the replica identity index if there is one, then one whose
// columns are all NOT NULL, then the narrowest. Partial and expression
// indexes do not identify rows, and INCLUDE columns are not key columns.
func (c *relationCache) keyColumns(ctx context.Context, oid uint32) ([]string, error) {
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
			GROUP BY i.indexrelid
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
