package decode

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// PartitionRoots makes a PostgreSQL 12 stream look like one from 13 and
// later with publish_via_partition_root: 12 cannot publish a partitioned
// table, so Ferry publishes its leaves (capture's publishedLeaves), and pgoutput then
// reports each change under the leaf that holds the row. Before the rest of
// the loop sees a message, its leaf is replaced by the root: the relation's
// OID and names become the root's and its columns take the root's order,
// which a leaf attached from a table of its own may not share. An UPDATE
// that moves a row to another partition reaches the stream as a DELETE
// from one leaf and an INSERT into the other, which is also how 13 and
// later send it under the root.
type PartitionRoots struct {
	conn   Catalog
	byLeaf map[uint32]*leafRoot
}

// leafRoot is one leaf as its root presents it.
type leafRoot struct {
	msg *pglogrepl.RelationMessage // the root's definition
	// from[i] is the leaf column that holds the root's column i.
	from []int
}

// NewPartitionRoots looks partitions up on conn.
func NewPartitionRoots(conn Catalog) *PartitionRoots {
	return &PartitionRoots{conn: conn, byLeaf: map[uint32]*leafRoot{}}
}

// Translate returns msg as the root would have sent it, or msg itself when
// it does not concern a partition.
func (p *PartitionRoots) Translate(ctx context.Context, msg pglogrepl.Message) (pglogrepl.Message, error) {
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		return p.relation(ctx, m)
	case *pglogrepl.InsertMessage:
		if lr := p.byLeaf[m.RelationID]; lr != nil {
			return &pglogrepl.InsertMessage{RelationID: lr.msg.RelationID, Tuple: lr.tuple(m.Tuple)}, nil
		}
	case *pglogrepl.UpdateMessage:
		if lr := p.byLeaf[m.RelationID]; lr != nil {
			return &pglogrepl.UpdateMessage{RelationID: lr.msg.RelationID, OldTupleType: m.OldTupleType,
				OldTuple: lr.tuple(m.OldTuple), NewTuple: lr.tuple(m.NewTuple)}, nil
		}
	case *pglogrepl.DeleteMessage:
		if lr := p.byLeaf[m.RelationID]; lr != nil {
			return &pglogrepl.DeleteMessage{RelationID: lr.msg.RelationID, OldTupleType: m.OldTupleType,
				OldTuple: lr.tuple(m.OldTuple)}, nil
		}
	case *pglogrepl.TruncateMessage:
		return p.truncate(m), nil
	}
	return msg, nil
}

// truncate names each root once in place of its truncated leaves.
func (p *PartitionRoots) truncate(m *pglogrepl.TruncateMessage) *pglogrepl.TruncateMessage {
	out := *m
	out.RelationIDs = make([]uint32, 0, len(m.RelationIDs))
	seen := map[uint32]bool{}
	for _, oid := range m.RelationIDs {
		if lr := p.byLeaf[oid]; lr != nil {
			oid = lr.msg.RelationID
		}
		if !seen[oid] {
			seen[oid] = true
			out.RelationIDs = append(out.RelationIDs, oid)
		}
	}
	out.RelationNum = uint32(len(out.RelationIDs))
	return &out
}

// tuple reorders a leaf's tuple into the root's column order.
func (lr *leafRoot) tuple(t *pglogrepl.TupleData) *pglogrepl.TupleData {
	if t == nil {
		return nil
	}
	cols := make([]*pglogrepl.TupleDataColumn, len(lr.from))
	for i, j := range lr.from {
		cols[i] = t.Columns[j]
	}
	return &pglogrepl.TupleData{ColumnNum: uint16(len(cols)), Columns: cols}
}

// relation looks up whether m's relation is a partition, and if so
// remembers how its root presents it and returns the root's definition.
func (p *PartitionRoots) relation(ctx context.Context, m *pglogrepl.RelationMessage) (pglogrepl.Message, error) {
	var (
		rootOID         uint32
		schema, name    string
		columns         []string
		leafIsPartition bool
	)
	err := p.queryRoot(ctx, m.RelationID, &leafIsPartition, &rootOID, &schema, &name, &columns)
	if err != nil {
		return nil, fmt.Errorf("looking up the partition root of %s.%s: %w", m.Namespace, m.RelationName, err)
	}
	if !leafIsPartition {
		delete(p.byLeaf, m.RelationID)
		return m, nil
	}
	describedColumns := make(map[string]int, len(m.Columns))
	for i, c := range m.Columns {
		describedColumns[c.Name] = i
	}
	lr := &leafRoot{from: make([]int, 0, len(columns))}
	root := &pglogrepl.RelationMessage{RelationID: rootOID, Namespace: schema, RelationName: name,
		ReplicaIdentity: m.ReplicaIdentity}
	for _, c := range columns {
		j, ok := describedColumns[c]
		if !ok {
			return nil, fmt.Errorf("partition %s.%s does not send column %q of its root %s.%s", m.Namespace, m.RelationName, c, schema, name)
		}
		lr.from = append(lr.from, j)
		root.Columns = append(root.Columns, m.Columns[j])
	}
	if len(lr.from) != len(m.Columns) {
		return nil, fmt.Errorf("partition %s.%s sends %d columns, its root %s.%s has %d", m.Namespace, m.RelationName, len(m.Columns), schema, name, len(columns))
	}
	root.ColumnNum = uint16(len(root.Columns))
	lr.msg = root
	p.byLeaf[m.RelationID] = lr
	return root, nil
}

// queryRoot reads the root of a partition and the root's columns in its
// own order, as pgoutput would send them (no dropped or generated ones).
func (p *PartitionRoots) queryRoot(ctx context.Context, oid uint32, isPartition *bool, root *uint32, schema, name *string, columns *[]string) error {
	rows, err := p.conn.Query(ctx, `
		SELECT c.relispartition, r.oid, rn.nspname::text, r.relname::text,
		       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
		                 WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), '{}')
		FROM pg_class c
		JOIN pg_class r ON r.oid = CASE WHEN c.relispartition THEN pg_partition_root(c.oid) ELSE c.oid END
		JOIN pg_namespace rn ON rn.oid = r.relnamespace
		WHERE c.oid = $1`, oid)
	if err != nil {
		return err
	}
	found := false
	_, err = pgx.ForEachRow(rows, []any{isPartition, root, schema, name, columns}, func() error {
		found = true
		return nil
	})
	if err == nil && !found {
		// Dropped since the change was written: its changes keep the
		// name pgoutput gave them.
		*isPartition = false
	}
	return err
}
