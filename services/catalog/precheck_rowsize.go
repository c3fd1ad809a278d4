package catalog

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

const (
	// DefaultMessageLimit is Kafka's default max.message.bytes, which the
	// row size item compares against; the catalog cannot see the topic's
	// own setting.
	DefaultMessageLimit = 1048588
	// Only the tables with the most out-of-line data are sampled, at most
	// this many, each with at most sampleRows rows.
	maxSampledTables = 20
	sampleRows       = 1000
	sampleTimeout    = 10 * time.Second
)

// rowSizeCandidates are the selected tables that store values out of line
// (a row without TOAST fits in a page, far below any message limit),
// counting a partitioned table's partitions. Evidence of TOAST data is the
// TOAST table's pages as of the last VACUUM, or rows ever inserted into it
// (the statistics counters, which need no lock), so thousands of tables cost
// one catalog query.
var rowSizeCandidates = `WITH RECURSIVE ` + selectedTables + `,
tree AS (
  SELECT sel.oid AS root, sel.oid AS rel FROM sel WHERE has_table_privilege(sel.oid, 'SELECT')
  UNION ALL
  SELECT t.root, h.inhrelid FROM tree t JOIN pg_inherits h ON h.inhparent = t.rel
  JOIN pg_class p ON p.oid = h.inhrelid AND p.relispartition)
SELECT r.relkind::text, format('%I.%I', n.nspname, r.relname), r.reltuples::float8,
  ` + columnSizesSQL("r") + `
FROM tree JOIN pg_class c ON c.oid = tree.rel
LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
JOIN pg_class r ON r.oid = tree.root JOIN pg_namespace n ON n.oid = r.relnamespace
GROUP BY r.oid, r.relkind, n.nspname, r.relname, r.reltuples
HAVING sum(coalesce(tc.relpages, 0)) > 0 OR sum(coalesce(pg_stat_get_tuples_inserted(tc.oid), 0)) > 0
ORDER BY sum(coalesce(tc.relpages, 0)) DESC, sum(coalesce(pg_stat_get_tuples_inserted(tc.oid), 0)) DESC
LIMIT $3`

// columnSizesSQL is a subquery on pg_class alias rel: the SQL expression
// that sums the stored sizes of a row's columns, or NULL without columns.
// pg_column_size of each column reads a TOASTed value's size from its
// pointer; pg_column_size of the whole row would fetch the value instead.
func columnSizesSQL(rel string) string {
	return `(SELECT string_agg(format('COALESCE(pg_column_size(%I), 0)', a.attname), ' + ' ORDER BY a.attnum)
   FROM pg_attribute a WHERE a.attrelid = ` + rel + `.oid AND a.attnum > 0 AND NOT a.attisdropped)`
}

type sizeCandidate struct {
	relkind, name, sizeExpr string
	reltuples               float64
}

// checkRowSize estimates the largest row of the tables most likely to have
// large ones by sampling pg_column_size, which reads the stored (compressed)
// size from the TOAST pointer without fetching the value. The estimate is a
// lower bound of the message: it carries the values uncompressed, encoded,
// and an UPDATE's before-image as well.
func (s *Server) checkRowSize(ctx context.Context, conn *pgx.Conn, tables []*taskv1.TableRef) *taskv1.PrecheckItem {
	const id = "row_size"
	schemas, names := tableArrays(tables)
	rows, err := conn.Query(ctx, rowSizeCandidates, schemas, names, maxSampledTables)
	if err != nil {
		return queryFailed(id, err)
	}
	var cands []sizeCandidate
	var c sizeCandidate
	if _, err := pgx.ForEachRow(rows, []any{&c.relkind, &c.name, &c.reltuples, &c.sizeExpr}, func() error {
		cands = append(cands, c)
		return nil
	}); err != nil {
		return queryFailed(id, err)
	}
	var over, unsampled []string
	var largest int64
	var largestTable string
	for _, c := range cands {
		size, err := sampleLargestRow(ctx, conn, c)
		if err != nil {
			unsampled = append(unsampled, fmt.Sprintf("%s (%v)", c.name, err))
			continue
		}
		if size > largest {
			largest, largestTable = size, c.name
		}
		if size >= s.messageLimit {
			over = append(over, fmt.Sprintf("%s (about %d bytes)", c.name, size))
		}
	}
	return rowSizeItem(s.messageLimit, len(cands), over, unsampled, largest, largestTable)
}

func rowSizeItem(limit int64, sampled int, over, unsampled []string, largest int64, largestTable string) *taskv1.PrecheckItem {
	const id = "row_size"
	note := ""
	if len(unsampled) > 0 {
		note = "; could not sample " + strings.Join(unsampled, ", ")
	}
	if len(over) > 0 {
		return warn(id, fmt.Sprintf("sampled rows reach the %d-byte message limit (Kafka's default max.message.bytes) even as stored, compressed: %s; the largest is in %s%s",
			limit, listNames(over), largestTable, note),
			"raise max.message.bytes on the topics (and message.max.bytes and replica.fetch.max.bytes on the brokers), set kafka.dead_letter_topic to divert such rows, or leave the large columns out with the table's columns")
	}
	if sampled == 0 {
		return pass(id, fmt.Sprintf("no selected table stores values out of line, so every row is far below the %d-byte message limit%s", limit, note))
	}
	return pass(id, fmt.Sprintf("sampled %d tables with out-of-line values; the largest row found, about %d bytes as stored, is in %s, below the %d-byte message limit%s",
		sampled, largest, largestTable, limit, note))
}

// sampleLargestRow returns the largest row size among up to sampleRows rows
// drawn from random pages of the table. Three things bound it: TABLESAMPLE
// SYSTEM reads only the pages it draws (about twice sampleRows rows' worth,
// as reltuples estimates them), LIMIT stops the scan at sampleRows rows, and
// statement_timeout (with the context's deadline as a client-side backstop)
// stops it after sampleTimeout whatever the table's state.
func sampleLargestRow(ctx context.Context, conn *pgx.Conn, c sizeCandidate) (int64, error) {
	if c.sizeExpr == "" {
		return 0, nil
	}
	percent := 100.0
	if c.reltuples > sampleRows {
		percent = min(100, 100*2*sampleRows/c.reltuples)
	}
	only := "ONLY "
	if c.relkind == "p" {
		only = "" // a partitioned table's rows are in its partitions
	}
	ctx, cancel := context.WithTimeout(ctx, sampleTimeout+time.Second)
	defer cancel()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, fmt.Errorf("sampling %s: %w", c.name, err)
	}
	defer func() {
		// The sample's own context may be spent; the rollback gets its own.
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer rcancel()
		_ = tx.Rollback(rctx)
	}()
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL statement_timeout = %d", sampleTimeout.Milliseconds())); err != nil {
		return 0, fmt.Errorf("sampling %s: %w", c.name, err)
	}
	var size int64
	q := fmt.Sprintf(`SELECT COALESCE(max(%s), 0)::bigint FROM (SELECT * FROM %s%s TABLESAMPLE SYSTEM (%g) LIMIT %d) s`,
		c.sizeExpr, only, c.name, percent, sampleRows)
	if err := tx.QueryRow(ctx, q).Scan(&size); err != nil {
		return 0, fmt.Errorf("sampling %s: %w", c.name, err)
	}
	return size, nil
}
