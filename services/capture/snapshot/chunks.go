package snapshot

import (
	"cmp"
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/internal/pgsql"
)

// The exported snapshot is read in chunks of heap blocks, so that the
// readers share a large table instead of one of them reading it alone: a
// chunk is a ctid range, which every table has, key or not. PostgreSQL 14
// and later plan "ctid >= '(a,0)' AND ctid < '(b,0)'" as a TID Range Scan,
// reading only those blocks; before 14 (Greenplum 7 included, whose ctids
// are per segment anyway) it would scan the whole table for every chunk,
// so a table there is one chunk.
//
// Rows the snapshot sees live in blocks that existed when it was taken,
// but the relation may have grown since and its size is read later, so a
// table's last chunk has no upper bound. Plain VACUUM and HOT never move a
// tuple to another block; only a rewrite (VACUUM FULL, CLUSTER, a
// rewriting ALTER TABLE) does, and it needs an ACCESS EXCLUSIVE lock. A
// reader keeps the ACCESS SHARE lock of every table it read until its
// transaction ends, but reading a table's size locks it only for the
// moment, and the readers end their transactions one by one as the queue
// runs dry, so a rewrite can fall between the plan and a chunk, or between
// two chunks of a table. Each chunk therefore checks, while it holds the
// lock, that the table's file is still the one the plan measured, and the
// snapshot fails (Aborted, retried from scratch) if not.

const (
	// snapshotChunkBlocks is the smallest chunk: 4096 blocks, 32 MB at the
	// default 8 kB block size. A table of a few MB is one chunk, one COPY;
	// the fixed cost of a chunk (a query start and a file check) is far
	// below 1% of reading 32 MB, and a table of a few GB still gets dozens
	// of chunks for the readers to share.
	snapshotChunkBlocks = 4096
	// snapshotMaxChunks bounds the chunks of one table: a huge table gets
	// larger chunks rather than an ever longer plan. Hundreds of chunks per
	// reader are plenty to keep the readers even at the end.
	snapshotMaxChunks = 1024
	// tidRangeScanVersion is the first server_version_num with TID Range
	// Scan.
	tidRangeScanVersion = 140000
)

// tableChunk is one work item of a snapshot: blocks [lo, hi) of a table,
// or the whole table.
type tableChunk struct {
	table int
	lo    uint32
	hi    uint32 // 0: no upper bound (the table's last chunk)
	// ranged is false for a table read whole, with no ctid condition.
	ranged bool
	// filenode is the table's file when planned, checked by each ranged
	// chunk (see above).
	filenode uint32
	oid      uint32
}

// where is the chunk's ctid condition, "" for a whole table. The bounds
// are numbers this package computed, never text from a request.
func (c tableChunk) where() string {
	if !c.ranged {
		return ""
	}
	w := fmt.Sprintf("ctid >= '(%d,0)'::tid", c.lo)
	if c.hi != 0 {
		w += fmt.Sprintf(" AND ctid < '(%d,0)'::tid", c.hi)
	}
	return w
}

// blockRange is [lo, hi) in blocks; hi 0 is open-ended.
type blockRange struct{ lo, hi uint32 }

// splitBlocks cuts a table of the given blocks into ranges of at least
// minBlocks each (at most maxChunks of them), the last open-ended and
// taking the remainder. A table under twice minBlocks, or an empty one, is
// one range: [0, ∞).
func splitBlocks(blocks int64, minBlocks, maxChunks int64) []blockRange {
	per := max(minBlocks, blocks/maxChunks, 1)
	n := max(min(blocks/per, maxChunks), 1) // the remainder joins the last range
	out := make([]blockRange, 0, n)
	for i := range n {
		r := blockRange{lo: uint32(i * per), hi: uint32((i + 1) * per)}
		if i == n-1 {
			r.hi = 0
		}
		out = append(out, r)
	}
	return out
}

// tableSize is what the plan reads about a table in the snapshot.
type tableSize struct {
	oid, filenode uint32
	relkind       string
	blocks        int64
}

// planChunks reads every table's size and plans the snapshot's chunks
// (chunkPlan). conn is in the snapshot's transaction, so the tables are
// those the snapshot sees.
func planChunks(ctx context.Context, conn *pgx.Conn, version int, tables []*taskv1.TableRef, minBlocks int64) ([]tableChunk, []int, error) {
	sizes := make([]tableSize, len(tables))
	if version >= tidRangeScanVersion {
		var err error
		if sizes, err = readTableSizes(ctx, conn, tables); err != nil {
			return nil, nil, err
		}
	}
	chunks, perTable := chunkPlan(sizes, version, minBlocks)
	return chunks, perTable, nil
}

// chunkPlan lists the chunks of the tables of the given sizes, table by
// table, and how many each table has.
func chunkPlan(sizes []tableSize, version int, minBlocks int64) ([]tableChunk, []int) {
	var chunks []tableChunk
	perTable := make([]int, len(sizes))
	for i, sz := range sizes {
		// Only a plain table is split: a partitioned one is read through
		// its root, whose own size is nil, and a table missing from the
		// snapshot is left to its reader to report.
		var ranges []blockRange
		if sz.relkind == "r" && version >= tidRangeScanVersion {
			ranges = splitBlocks(sz.blocks, minBlocks, snapshotMaxChunks)
		}
		if len(ranges) <= 1 {
			chunks = append(chunks, tableChunk{table: i})
			perTable[i] = 1
			continue
		}
		for _, r := range ranges {
			chunks = append(chunks, tableChunk{table: i, lo: r.lo, hi: r.hi, ranged: true, filenode: sz.filenode, oid: sz.oid})
		}
		perTable[i] = len(ranges)
	}
	return chunks, perTable
}

// readTableSizes reads each table's oid, kind, file and size in blocks, in
// one query; a table the snapshot does not see comes back zero.
func readTableSizes(ctx context.Context, conn *pgx.Conn, tables []*taskv1.TableRef) ([]tableSize, error) {
	schemas, names := make([]string, len(tables)), make([]string, len(tables))
	for i, t := range tables {
		schemas[i], names[i] = cmp.Or(t.GetSchema(), "public"), t.GetTable()
	}
	rows, err := conn.Query(ctx, `
		SELECT t.i, c.oid, c.relkind::text, pg_relation_size(c.oid) / current_setting('block_size')::int8,
		       coalesce(pg_relation_filenode(c.oid), 0)
		FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(s, n, i)
		JOIN pg_namespace ns ON ns.nspname = t.s
		JOIN pg_class c ON c.relnamespace = ns.oid AND c.relname = t.n`, schemas, names)
	if err != nil {
		return nil, fmt.Errorf("reading the sizes of the tables to snapshot: %w", err)
	}
	sizes := make([]tableSize, len(tables))
	var i int64
	var sz tableSize
	_, err = pgx.ForEachRow(rows, []any{&i, &sz.oid, &sz.relkind, &sz.blocks, &sz.filenode}, func() error {
		sizes[i-1] = sz
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the sizes of the tables to snapshot: %w", err)
	}
	return sizes, nil
}

// checkFilenode fails the snapshot if the chunk's table was rewritten
// since the plan measured it. Run after the chunk's read, in the same
// transaction, it sees the file the read used: the read's ACCESS SHARE
// lock, still held, keeps any rewrite waiting.
func checkFilenode(ctx context.Context, conn *pgx.Conn, t *taskv1.TableRef, c tableChunk) error {
	if !c.ranged {
		return nil
	}
	var now uint32
	if err := conn.QueryRow(ctx, "SELECT coalesce(pg_relation_filenode($1::oid), 0)", c.oid).Scan(&now); err != nil {
		return fmt.Errorf("checking the file of %s: %w", pgsql.Qualified(t), err)
	}
	if now != c.filenode {
		return status.Errorf(codes.Aborted,
			"table %s was rewritten (VACUUM FULL, CLUSTER or a rewriting ALTER TABLE) while full sync read it in chunks; the snapshot starts again",
			pgsql.Qualified(t))
	}
	return nil
}

// ChunkCount is how many chunks a plain table of the given blocks is read
// in when the smallest chunk is minBlocks (PostgreSQL 14 and later).
func ChunkCount(blocks, minBlocks int64) int {
	return len(splitBlocks(blocks, minBlocks, snapshotMaxChunks))
}

// ChunkSelect is the SELECT that reads blocks [lo, hi) of a table (hi 0:
// to its end); see snapshotChunkSelect.
func ChunkSelect(cols []string, from, filter string, lo, hi uint32) string {
	return snapshotChunkSelect(cols, from, filter, tableChunk{ranged: true, lo: lo, hi: hi})
}

// snapshotChunkQuery is the COPY of snapshotChunkSelect.
func snapshotChunkQuery(cols []string, from, filter string, c tableChunk) string {
	return "COPY (" + snapshotChunkSelect(cols, from, filter, c) + ") TO STDOUT"
}

// snapshotChunkSelect selects chunk c of a table (from: its FROM clause):
// its quoted columns, in the chunk's ctid range, through the publication's
// row filter ("" for none).
func snapshotChunkSelect(cols []string, from, filter string, c tableChunk) string {
	var conds []string
	if w := c.where(); w != "" {
		conds = append(conds, w)
	}
	if filter != "" {
		conds = append(conds, "("+filter+")")
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	return fmt.Sprintf("SELECT %s FROM %s%s", strings.Join(cols, ", "), from, where)
}
