package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/capture/decode"
	"github.com/ferry-cdc/ferry/services/capture/throttle"
	"github.com/ferry-cdc/ferry/services/internal/pgsql"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// TableReader reads one chunk of a snapshot's table with COPY ... TO STDOUT
// in text format. COPY's text format is each value's output function text,
// as pgoutput sends it, with backslash escapes around it; unescaped, it
// travels as the stream's values do, so both phases produce identical
// tuples.
type TableReader struct {
	idx      int
	snap     *Exported
	maxBatch int
	items    chan<- snapshotItem
	thr      *throttle.Throttle // shared by the snapshot's readers
	// keyCols, set by a backfill, are the primary-key columns whose text
	// each row's key is kept from, in keys (package backfill).
	keyCols []int
	keys    [][]string

	rel     *decode.Relation
	cur     *cdcv1.ChangeBatch
	partial []byte
	fields  [][]byte
}

// snapshotTable is a table as one reader reads its chunks: described once
// per reader and table, on the reader's connection and in the snapshot.
type snapshotTable struct {
	idx  int
	ref  *taskv1.TableRef
	rel  *decode.Relation
	cols []string // quoted
	from string
	// filter is pub's row filter on the table, if any, as this snapshot
	// sees the publication: the one the slot decodes the changes after the
	// snapshot with (see capture's filters.go).
	filter string
}

// describeSnapshotTable describes table idx for reading; version is the
// source's server_version_num.
func describeSnapshotTable(ctx context.Context, conn *pgx.Conn, version int, pub string, idx int, t *taskv1.TableRef) (*snapshotTable, error) {
	rel, relkind, err := DescribeTable(ctx, conn, t)
	if err != nil {
		return nil, err
	}
	st := &snapshotTable{idx: idx, ref: t, rel: rel, cols: make([]string, len(rel.Msg.Columns))}
	for i, c := range rel.Msg.Columns {
		st.cols[i] = pgx.Identifier{c.Name}.Sanitize()
	}
	// A partitioned table is published through its root
	// (publish_via_partition_root), so its partitions' rows are read through
	// it; any other table only for its own rows, as pgoutput reports them.
	st.from = "ONLY " + pgsql.Qualified(t)
	if relkind == "p" {
		st.from = pgsql.Qualified(t)
	}
	if st.filter, err = PublishedFilter(ctx, conn, version, pub, rel.Msg.RelationID); err != nil {
		return nil, err
	}
	return st, nil
}

// read reads chunk c of table st and hands over its rows, then the end of
// the chunk.
func (tr *TableReader) read(ctx context.Context, conn *pgx.Conn, st *snapshotTable, c tableChunk) error {
	tr.rel = st.rel
	tr.cur = &cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{st.rel.Proto}}
	// queries_per_second counts the queries that read table data, one COPY
	// per chunk; the few catalog lookups describing the table are not.
	if err := tr.thr.Wait(ctx, throttle.Cost{Queries: 1}); err != nil {
		return err
	}
	if _, err := conn.PgConn().CopyTo(ctx, copyWriter{tr, ctx}, snapshotChunkQuery(st.cols, st.from, st.filter, c)); err != nil {
		return err
	}
	if len(tr.partial) > 0 {
		return errors.New("COPY output ended inside a row")
	}
	if err := checkFilenode(ctx, conn, st.ref, c); err != nil {
		return err
	}
	return tr.emit(ctx, true)
}

// NewKeyReader is a TableReader for a backfill chunk: it keeps up to
// maxBatch rows of rel, stamped with at, in one batch instead of handing
// them over, and each row's key texts (the columns keyCols).
func NewKeyReader(rel *decode.Relation, at *timestamppb.Timestamp, keyCols []int, maxBatch int) *TableReader {
	return &TableReader{snap: &Exported{At: at}, maxBatch: maxBatch, rel: rel, cur: &cdcv1.ChangeBatch{}, keyCols: keyCols}
}

// Writer is what COPY's output goes to (see copyWriter).
func (tr *TableReader) Writer(ctx context.Context) io.Writer { return copyWriter{tr, ctx} }

// Complete tells whether COPY's output ended at the end of a row.
func (tr *TableReader) Complete() bool { return len(tr.partial) == 0 }

// Events are the rows read and not handed over.
func (tr *TableReader) Events() []*cdcv1.ChangeEvent { return tr.cur.GetEvents() }

// Keys are the key texts of the rows read, in order (NewKeyReader).
func (tr *TableReader) Keys() [][]string { return tr.keys }

// copyWriter adapts TableReader to the io.Writer that CopyTo fills; the
// context lets a blocked hand-over end when the snapshot is abandoned.
type copyWriter struct {
	tr  *TableReader
	ctx context.Context
}

// Write takes whatever part of COPY's output arrives and decodes each
// complete row at once, so memory holds one batch, never a table.
func (w copyWriter) Write(p []byte) (int, error) {
	tr := w.tr
	data := p
	if len(tr.partial) > 0 {
		tr.partial = append(tr.partial, p...)
		data = tr.partial
	}
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		if err := tr.row(data[:i]); err != nil {
			return 0, err
		}
		data = data[i+1:]
		if len(tr.cur.GetEvents()) >= tr.maxBatch {
			if err := tr.emit(w.ctx, false); err != nil {
				return 0, err
			}
		}
	}
	tr.partial = append(tr.partial[:0], data...)
	return len(p), nil
}

// row decodes one line of COPY's text format into a snapshot INSERT.
func (tr *TableReader) row(line []byte) error {
	cols := tr.rel.Msg.Columns
	tr.fields = tr.fields[:0]
	if len(cols) > 0 {
		for f := range bytes.SplitSeq(line, []byte{'\t'}) {
			tr.fields = append(tr.fields, f)
		}
	}
	if len(tr.fields) != len(cols) {
		return fmt.Errorf("COPY row has %d fields, the table has %d columns", len(tr.fields), len(cols))
	}
	// The escaped line is at least as long as the text it holds.
	values := tuple.New(len(cols), len(line))
	for i, f := range tr.fields {
		if string(f) == `\N` {
			tuple.Append(values, tuple.Null, nil)
			continue
		}
		var err error
		if values.Text, err = unescapeCopyText(values.Text, f); err != nil {
			return fmt.Errorf("column %q: %w", cols[i].Name, err)
		}
		tuple.Append(values, tuple.Text, nil)
	}
	if tr.keyCols != nil {
		key, err := copyKey(tr.fields, tr.keyCols)
		if err != nil {
			return err
		}
		tr.keys = append(tr.keys, key)
	}
	lsn := uint64(tr.snap.LSN)
	tr.cur.Events = append(tr.cur.Events, &cdcv1.ChangeEvent{
		Op: cdcv1.Operation_OPERATION_INSERT, RelationOid: tr.rel.Msg.RelationID, NewTuple: values,
		Lsn: lsn, CommitLsn: lsn, CommitTime: tr.snap.At, Snapshot: true,
	})
	return nil
}

// emit hands the current batch over (and the end of the chunk when last).
func (tr *TableReader) emit(ctx context.Context, last bool) error {
	it := snapshotItem{table: tr.idx, done: last}
	if len(tr.cur.GetEvents()) > 0 {
		it.batch = tr.cur
		tr.cur = &cdcv1.ChangeBatch{}
	}
	if it.batch == nil && !last {
		return nil
	}
	// Rows and bytes are paid before the hand-over, so the readers together
	// emit no faster than the throttle allows, whatever their number.
	if it.batch != nil {
		if err := tr.thr.Wait(ctx, tr.thr.BatchCost(it.batch)); err != nil {
			return err
		}
	}
	select {
	case tr.items <- it:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unescapeCopyText undoes COPY's text-format escapes. COPY TO writes only
// \\, \b, \f, \n, \r, \t and \v; the octal and \x forms COPY FROM accepts
// are decoded too, so nothing is passed on half-escaped.
func unescapeCopyText(dst, f []byte) ([]byte, error) {
	if bytes.IndexByte(f, '\\') < 0 {
		return append(dst, f...), nil
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		if i >= len(f) {
			return dst, errors.New("COPY field ends in a lone backslash")
		}
		switch c = f[i]; c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'v':
			dst = append(dst, '\v')
		case 'x':
			n, used := parseDigits(f[i+1:], 16, 2)
			if used == 0 {
				dst = append(dst, 'x')
				continue
			}
			dst, i = append(dst, byte(n)), i+used
		case '0', '1', '2', '3', '4', '5', '6', '7':
			n, used := parseDigits(f[i:], 8, 3)
			dst, i = append(dst, byte(n)), i+used-1
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil
}

// parseDigits reads up to max digits of base from the start of b.
func parseDigits(b []byte, base, limit int) (n, used int) {
	for used < limit && used < len(b) {
		d := strings.IndexByte("0123456789abcdef", b[used]|0x20)
		if d < 0 || d >= base {
			break
		}
		n = n*base + d
		used++
	}
	return n, used
}

// DescribeTable builds the table's relation as pgoutput would send it: the
// columns pgoutput publishes (not dropped, not generated) in attnum order,
// flagged as key when in the replica identity, then described by the
// stream's own decode.Relations so that both phases carry the same Relation.
func DescribeTable(ctx context.Context, conn *pgx.Conn, t *taskv1.TableRef) (*decode.Relation, string, error) {
	schema := t.GetSchema()
	if schema == "" {
		schema = "public"
	}
	msg := &pglogrepl.RelationMessage{Namespace: schema, RelationName: t.GetTable()}
	var relkind, ident string
	err := conn.QueryRow(ctx, `
		SELECT c.oid, c.relkind::text, c.relreplident::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, schema, t.GetTable()).Scan(&msg.RelationID, &relkind, &ident)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, "", status.Errorf(codes.FailedPrecondition, "table %s does not exist in the snapshot; create it or remove it from the task", pgsql.Qualified(t))
	}
	if err != nil {
		return nil, "", fmt.Errorf("looking up the table: %w", err)
	}
	msg.ReplicaIdentity = ident[0]
	if msg.Columns, err = publishedColumns(ctx, conn, msg.RelationID); err != nil {
		return nil, "", fmt.Errorf("listing the columns: %w", err)
	}
	msg.ColumnNum = uint16(len(msg.Columns))
	cache := decode.NewRelations(conn)
	if err := cache.Define(ctx, msg); err != nil {
		return nil, "", err
	}
	rel, _ := cache.Lookup(msg.RelationID)
	return rel, relkind, nil
}

// publishedColumns lists the columns pgoutput sends, with its key flag:
// every column under REPLICA IDENTITY FULL, else those of the replica
// identity index (the primary key by default), none under NOTHING.
func publishedColumns(ctx context.Context, conn *pgx.Conn, oid uint32) ([]*pglogrepl.RelationMessageColumn, error) {
	rows, err := conn.Query(ctx, `
		SELECT a.attname, a.atttypid, a.atttypmod,
		       CASE c.relreplident
		         WHEN 'f' THEN true
		         WHEN 'd' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary
		                               AND a.attnum = ANY (i.indkey::int2[]))
		         WHEN 'i' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident
		                               AND a.attnum = ANY (i.indkey::int2[]))
		         ELSE false
		       END
		FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
		WHERE c.oid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		ORDER BY a.attnum`, oid)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*pglogrepl.RelationMessageColumn, error) {
		var c pglogrepl.RelationMessageColumn
		var key bool
		err := row.Scan(&c.Name, &c.DataType, &c.TypeModifier, &key)
		if key {
			c.Flags = 1
		}
		return &c, err
	})
}

// copyKey is the unescaped text of a COPY row's key fields.
func copyKey(fields [][]byte, cols []int) ([]string, error) {
	key := make([]string, len(cols))
	for i, ci := range cols {
		if string(fields[ci]) == `\N` {
			return nil, errors.New("a primary-key column is null")
		}
		text, err := unescapeCopyText(nil, fields[ci])
		if err != nil {
			return nil, err
		}
		key[i] = string(text)
	}
	return key, nil
}
