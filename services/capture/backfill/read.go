package backfill

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/capture/decode"
	"github.com/ferry-cdc/ferry/services/capture/signal"
	"github.com/ferry-cdc/ferry/services/capture/snapshot"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
	"github.com/ferry-cdc/ferry/services/internal/pgsql"
)

// The backfill's reader (see backfill.go): a goroutine with a plain SQL
// session of its own that frames each chunk with its watermarks.

// xidSnapshot is txid_current_snapshot() cut to 32-bit xids, which is what
// pgoutput's BEGIN carries.
type xidSnapshot struct {
	xmin, xmax uint32
	xip        []uint32
}

// parseXidSnapshot reads txid_current_snapshot's text, "xmin:xmax:xip,...".
func parseXidSnapshot(text string) (xidSnapshot, error) {
	var s xidSnapshot
	parts := strings.Split(text, ":")
	if len(parts) != 3 {
		return s, fmt.Errorf("snapshot %q is not xmin:xmax:xip", text)
	}
	xids := []string{parts[0], parts[1]}
	if parts[2] != "" {
		xids = append(xids, strings.Split(parts[2], ",")...)
	}
	for i, x := range xids {
		v, err := strconv.ParseUint(x, 10, 64)
		if err != nil {
			return s, fmt.Errorf("snapshot %q: %w", text, err)
		}
		switch i {
		case 0:
			s.xmin = uint32(v)
		case 1:
			s.xmax = uint32(v)
		default:
			s.xip = append(s.xip, uint32(v))
		}
	}
	return s, nil
}

// visible tells whether the snapshot sees the committed transaction xid.
func (s xidSnapshot) visible(xid uint32) bool {
	if xidPrecedes(xid, s.xmin) {
		return true
	}
	return xidPrecedes(xid, s.xmax) && !slices.Contains(s.xip, xid)
}

// xidPrecedes compares xids modulo 2^32, as PostgreSQL does.
func xidPrecedes(a, b uint32) bool { return int32(a-b) < 0 }

// chunkReader is one reader goroutine's state.
type chunkReader struct {
	bf       *Backfills
	conn     *pgx.Conn
	n        int64 // the last chunk's number
	inFlight int   // chunks handed over that the loop has not sent yet
	// sent hears from the loop each time it sent one of this reader's
	// chunks.
	sent chan struct{}
}

// chunkQuery reads one table's chunks.
type chunkQuery struct {
	rel    *decode.Relation
	key    []int
	prefix string // COPY (SELECT ... FROM ...
	order  string // ORDER BY ... LIMIT n) TO STDOUT
	limit  int
	// filter is the publication's row filter on the table as the chunk's
	// snapshot sees it (snapshot.PublishedFilter); "" for none.
	filter string
}

// read runs the readers until every table is read, reporting the first
// failure to the loop, which then ends the stream and with it the others.
func (bf *Backfills) read(ctx context.Context, src *taskv1.SourceEndpoint) {
	defer close(bf.done)
	var wg sync.WaitGroup
	for range min(bf.readers, len(bf.tables)) {
		wg.Go(func() {
			if err := bf.readTables(ctx, src); err != nil && ctx.Err() == nil {
				select {
				case bf.errs <- err:
				default: // the loop stops on the first
				}
			}
		})
	}
	wg.Wait()
}

// readTables is one reader: on a session of its own, it reads the tables
// no other reader has taken, one after another.
func (bf *Backfills) readTables(ctx context.Context, src *taskv1.SourceEndpoint) error {
	cctx, cancel := context.WithTimeout(ctx, backfillStatementTimeout)
	conn, err := pgsource.Connect(cctx, src)
	cancel()
	if err != nil {
		return fmt.Errorf("backfill: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	// The high watermark's commit must flush it (see mark), whatever the
	// source's default; locally is enough, as the walsender sends what is
	// flushed here, and waiting for a synchronous standby would cost every
	// chunk a round trip to it, or stall the backfill while it is down.
	sctx, cancel := context.WithTimeout(ctx, backfillStatementTimeout)
	_, err = conn.Exec(sctx, "SET synchronous_commit = local")
	cancel()
	if err != nil {
		return fmt.Errorf("backfill: setting synchronous_commit: %w", err)
	}
	r := &chunkReader{bf: bf, conn: conn, sent: make(chan struct{}, backfillChunksInFlight)}
	for i := range bf.todo {
		if err := r.table(ctx, i); err != nil {
			return backfillError(src.GetUser(), bf.tables[i].ref, err)
		}
	}
	return nil
}

// table reads table i chunk by chunk until a chunk comes back short.
func (r *chunkReader) table(ctx context.Context, i int) error {
	t := r.bf.tables[i]
	dctx, cancel := context.WithTimeout(ctx, backfillStatementTimeout)
	rel, relkind, err := snapshot.DescribeTable(dctx, r.conn, t.ref)
	cancel()
	if err != nil {
		return err
	}
	q, err := newChunkQuery(t, rel, relkind, r.bf.chunkRows)
	if err != nil {
		return err
	}
	after := t.after
	for {
		if err := r.awaitTurn(ctx); err != nil {
			return err
		}
		c, err := r.chunk(ctx, i, q, after)
		if err != nil {
			return err
		}
		if err := r.handOver(ctx, c); err != nil {
			return err
		}
		if !c.full {
			return nil
		}
		after = c.last
	}
}

func newChunkQuery(t backfillTable, rel *decode.Relation, relkind string, limit int) (chunkQuery, error) {
	key, err := columnIndexes(rel, t.pk)
	if err != nil {
		return chunkQuery{}, err
	}
	cols := make([]string, len(rel.Msg.Columns))
	for i, c := range rel.Msg.Columns {
		cols[i] = pgx.Identifier{c.Name}.Sanitize()
	}
	keys := make([]string, len(key))
	for i, ci := range key {
		keys[i] = cols[ci]
	}
	// As full sync: a partitioned table's rows are read through its root.
	from := "ONLY " + pgsql.Qualified(t.ref)
	if relkind == "p" {
		from = pgsql.Qualified(t.ref)
	}
	return chunkQuery{
		rel: rel, key: key, limit: limit,
		prefix: fmt.Sprintf("COPY (SELECT %s FROM %s", strings.Join(cols, ", "), from),
		order:  fmt.Sprintf(" ORDER BY %s LIMIT %d) TO STDOUT", strings.Join(keys, ", "), limit),
	}, nil
}

// sql reads the chunk after the key texts after (all of it when empty).
// The row comparison casts each text to its column's type, so it orders
// exactly as ORDER BY and the primary-key index do.
func (q chunkQuery) sql(after []string) string {
	var conds []string
	if len(after) > 0 {
		conds = append(conds, q.after(after))
	}
	if q.filter != "" {
		conds = append(conds, "("+q.filter+")")
	}
	if len(conds) == 0 {
		return q.prefix + q.order
	}
	return q.prefix + " WHERE " + strings.Join(conds, " AND ") + q.order
}

// after is the condition that skips the keys up to after.
func (q chunkQuery) after(after []string) string {
	cols := make([]string, len(q.key))
	lits := make([]string, len(q.key))
	for i, ci := range q.key {
		col := q.rel.Proto.GetColumns()[ci]
		cols[i] = pgx.Identifier{col.GetName()}.Sanitize()
		lits[i] = pgsql.Literal(after[i]) + "::" + col.GetTypeName()
	}
	return fmt.Sprintf("(%s) > (%s)", strings.Join(cols, ", "), strings.Join(lits, ", "))
}

// awaitTurn waits until fewer than chunksInFlight of this reader's chunks
// wait for the loop.
func (r *chunkReader) awaitTurn(ctx context.Context) error {
	for r.inFlight >= r.bf.chunksInFlight() {
		select {
		case <-r.sent:
			r.inFlight--
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// chunk writes the LW and reads the rows after the key after in a
// snapshot it records.
func (r *chunkReader) chunk(ctx context.Context, table int, q chunkQuery, after []string) (*Chunk, error) {
	r.n = r.bf.chunks.start(table)
	if err := r.mark(ctx, "lw"); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, backfillChunkTimeout)
	defer cancel()
	tx, err := r.conn.BeginTx(cctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("starting the transaction of chunk %d: %w", r.n, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // a no-op once committed
	var text string
	var at time.Time
	// The first statement takes the transaction's snapshot, which the COPY
	// then reads in.
	if err := tx.QueryRow(cctx, "SELECT txid_current_snapshot()::text, clock_timestamp()").Scan(&text, &at); err != nil {
		return nil, fmt.Errorf("taking the snapshot of chunk %d: %w", r.n, err)
	}
	c := &Chunk{n: r.n, table: table, rel: q.rel, sent: r.sent}
	if c.snap, err = parseXidSnapshot(text); err != nil {
		return nil, err
	}
	r.bf.chunks.snapped(c.n, c.snap.xmin)
	// The stream filters the table with the publication as of each change,
	// so the chunk takes the filter as of its own snapshot.
	if q.filter, err = snapshot.PublishedFilter(cctx, tx, r.bf.version, r.bf.pub, q.rel.Msg.RelationID); err != nil {
		return nil, fmt.Errorf("chunk %d: %w", r.n, err)
	}
	tr := snapshot.NewKeyReader(q.rel, timestamppb.New(at), q.key, q.limit+1)
	if _, err := r.conn.PgConn().CopyTo(cctx, tr.Writer(cctx), q.sql(after)); err != nil {
		return nil, fmt.Errorf("reading chunk %d: %w", r.n, err)
	}
	if !tr.Complete() {
		return nil, fmt.Errorf("reading chunk %d: COPY output ended inside a row", r.n)
	}
	if err := tx.Commit(cctx); err != nil {
		return nil, fmt.Errorf("ending the transaction of chunk %d: %w", r.n, err)
	}
	c.events, c.full = tr.Events(), len(tr.Events()) >= q.limit
	keys := tr.Keys()
	c.keys = make([]string, len(keys))
	for i, k := range keys {
		c.keys[i] = encodeKey(k)
	}
	if len(keys) > 0 {
		c.last = keys[len(keys)-1]
	}
	return c, nil
}

// handOver gives the chunk to the loop, then writes its HW: the loop finds
// the chunk waiting when it decodes the HW.
func (r *chunkReader) handOver(ctx context.Context, c *Chunk) error {
	r.bf.chunks.hand(c)
	r.inFlight++
	return r.mark(ctx, "hw")
}

// mark writes the current chunk's watermark of kind "lw" or "hw": a row
// of the signal table before PostgreSQL 14 (package signal), else a message. Not
// transactional, so pgoutput sends it at its own WAL position. PostgreSQL
// 15 does not flush such a message (pg_logical_emit_message's flush
// argument came in 17), and the walsender sends only flushed WAL, so a
// high watermark would wait for the WAL writer (wal_writer_delay, 200 ms by
// default) and every chunk with it: full sync ran at about 7,000 rows/s
// that way. Taking an xid in the same statement makes its commit flush the
// WAL, the message included (the session sets synchronous_commit local).
func (r *chunkReader) mark(ctx context.Context, kind string) error {
	mctx, cancel := context.WithTimeout(ctx, backfillStatementTimeout)
	defer cancel()
	content := r.bf.markContent(kind, r.n)
	var err error
	if signal.UsesTable(r.bf.version) {
		// Committed at once, and so flushed.
		err = signal.Write(mctx, r.conn, r.bf.version, r.bf.slot, Prefix, content)
	} else {
		q := "SELECT pg_logical_emit_message(false, $1, $2)"
		if kind == "hw" {
			q = "SELECT pg_logical_emit_message(false, $1, $2), txid_current()"
		}
		_, err = r.conn.Exec(mctx, q, Prefix, content)
	}
	if err != nil {
		return fmt.Errorf("writing the %s watermark of chunk %d: %w", kind, r.n, err)
	}
	return nil
}

// backfillError names the table, says which GRANT a role that may not read
// it needs, and makes a timeout retryable.
func backfillError(role string, t *taskv1.TableRef, err error) error {
	switch {
	case pgsql.IsCode(err, "42501"):
		return status.Errorf(codes.PermissionDenied, "backfill of %s: %v; role %q may not read the table: run GRANT SELECT ON %s TO %s",
			pgsql.Qualified(t), err, role, pgsql.Qualified(t), pgx.Identifier{role}.Sanitize())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.Unavailable, "backfill of %s: %v; the source answered too slowly, the backfill resumes at its last confirmed chunk", pgsql.Qualified(t), err)
	}
	return fmt.Errorf("backfill of %s: %w", pgsql.Qualified(t), err)
}
