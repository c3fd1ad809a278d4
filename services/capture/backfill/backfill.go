// Package backfill is DBLog's chunked full sync beside the live stream:
// readers on sessions of their own read tables in primary-key chunks
// between watermarks they write into the WAL, and the replication loop
// drops the chunk rows the stream superseded.
package backfill

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/capture/decode"
	"github.com/ferry-cdc/ferry/services/internal/pgsql"
)

// Backfill snapshots the tables added to a running task beside the stream,
// as DBLog does (Andreas Andreakis and Ioannis Papapanagiotou, 2020). A
// reader on a plain SQL session of its own reads each table in primary-key
// order, one chunk at a time, between two logical messages it writes into
// the WAL: a low watermark (LW) before the chunk and a high watermark (HW)
// after it. The replication loop meets both in the stream. Between them it
// notes the key of every change to the table; at the HW it drops the chunk
// rows whose key changed (the stream already carries their newer versions)
// and sends the others as snapshot INSERTs whose position is the HW. Rows
// the stream sent before the HW are older than the chunk's, rows after it
// newer, so a consumer applying everything in order ends with the table.
//
// One correction to the paper: a transaction's commit record reaches the
// WAL (and the stream) a moment before the transaction becomes visible to
// new snapshots, while its commit is flushed or waits for a synchronous
// standby. Such a transaction can land before the LW and still be missing
// from the chunk, whose row would then overwrite its change (the test
// catches this about one run in seven without the correction). The reader
// therefore records the chunk's snapshot (txid_current_snapshot), and the
// loop also drops rows whose key was changed before the LW by a
// transaction that snapshot does not see. It keeps noting changes from
// the stream's start, and forgets those of transactions older than the
// last chunk snapshot's xmin, which every later snapshot sees.
//
// Watermarks are logical messages on PostgreSQL 14 and later (pgoutput's
// messages option) and rows of Ferry's signal table before (package signal);
// either way they carry a random session id so that watermarks replayed from an earlier
// stream are ignored. The loop never waits for the reader: the reader hands
// the chunk over before it writes the HW, so the chunk is there when the HW
// is decoded. Up to chunksInFlight chunks per reader are in
// flight: a reader reads the next chunk while the loop still waits for the
// previous one's HW or sends it.
//
// Several readers, each on a session of its own, read different tables at
// once (Server.BackfillReaders), so a full sync of many tables keeps the
// source busy while one chunk crosses the walsender. A table is read by
// one reader, one chunk after another, so the windows of one table never
// overlap (a chunk's LW is written after the previous chunk's HW), while
// windows of different tables do: the loop keeps a window per table. The
// horizon below must stay behind every open chunk's snapshot, since
// readers take them in any order (chunkRegistry.settle). Chunks of one
// table are not read at once: a table's progress is one key, the last of
// the chunks sent, and exactly-once delivery commits each chunk with that
// progress, so a chunk sent ahead of an earlier one of its table could
// not be recorded and would be read and written again after a restart.

const (
	// Prefix is the logical message prefix of backfill watermarks.
	Prefix               = "ferry_backfill"
	defaultBackfillChunk = 1000
	// backfillStatementTimeout bounds the reader's short statements:
	// connecting, describing a table, writing a watermark.
	backfillStatementTimeout = 30 * time.Second
	backfillChunkTimeout     = 5 * time.Minute
	// backfillChunksInFlight: two for a single reader, so that reading a
	// chunk overlaps the round trip of the one before (its HW through the
	// walsender, its rows to the client), which otherwise left the source
	// idle half the time. Several readers overlap each other's round trips,
	// so each keeps one (chunksInFlight): 4 readers with two each held
	// eight chunks and took capture past 256 MB on 100 tables of 100,000
	// rows.
	backfillChunksInFlight = 2
	// DefaultReaders is how many sessions read tables at once unless the
	// capture is told otherwise: enough to keep a small source busy while
	// chunks wait for their watermarks, few enough to leave connections
	// and memory (two chunks each) to everyone else.
	DefaultReaders = 4
)

// Backfills is one stream's backfills. The fields after done belong to the
// replication loop; the readers only touch tables (read-only), chunks,
// todo, errs and their own chunkReader.
type Backfills struct {
	tables    []backfillTable
	tag       string // "<slot>:<session>:", the start of this stream's watermark contents
	slot      string // whose signal table row carries the watermarks before 14
	chunkRows int
	pub       string // whose row filters the chunks apply
	version   int    // the source's server_version_num
	readers   int    // sessions reading tables at once

	chunks *chunkRegistry // readers and loop: the chunks between LW and sent
	todo   chan int       // readers: the tables no reader has taken yet
	errs   chan error     // readers to loop: why a reader stopped
	cancel context.CancelFunc
	done   chan struct{}

	progress []*cdcv1.BackfillProgress
	// windows holds, per table, the chunk whose LW the loop has met and
	// whose HW not yet; 0: none.
	windows []int64
	changed []map[string]keyChange // per table: keys changed recently
	// truncated holds, per table, the latest TRUNCATE noted like a change
	// of every key: a chunk read before it must not bring its rows back.
	truncated map[int]keyChange
	matches   map[uint32]relMatch
	// horizon: every chunk still to come sees the transactions before it,
	// which the loop therefore need not note (nor keep while it replays a
	// backlog).
	horizon uint32
}

// backfillTable is what the request and the catalog say about one table.
type backfillTable struct {
	ref   *taskv1.TableRef
	pk    []string // primary-key columns, in key order
	after []string // where the request resumes
}

// keyChange is the latest change of one key the loop has seen.
type keyChange struct {
	xid    uint32
	window int64 // the chunk between whose watermarks it came; 0: none
}

// relMatch says whether a relation is a table being backfilled, and where
// its primary key's columns are.
type relMatch struct {
	rel   *decode.Relation
	table int // -1: not backfilled
	key   []int
}

// Chunk is what the reader read between one LW and HW.
type Chunk struct {
	n      int64
	table  int
	rel    *decode.Relation
	events []*cdcv1.ChangeEvent
	keys   []string // the encoded key of each event
	last   []string // the last row's key texts; nil when the chunk is empty
	full   bool
	snap   xidSnapshot
	sent   chan<- struct{} // the reader's: told once the loop sent the chunk
}

// Start checks the request's unfinished backfills and starts up to
// readers readers. It returns nil when there is nothing to backfill.
func Start(ctx context.Context, start *capturev1.StartStream, conn *pgx.Conn, readers int) (*Backfills, error) {
	var todo []*cdcv1.BackfillProgress
	for _, p := range start.GetBackfills() {
		if !p.GetDone() { // the worker may pass finished ones along
			todo = append(todo, p)
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	horizon, version, err := checkBackfillServer(ctx, conn)
	if err != nil {
		return nil, err
	}
	session := make([]byte, 8)
	_, _ = rand.Read(session)
	bf := &Backfills{
		tag:       start.GetSlotName() + ":" + hex.EncodeToString(session) + ":",
		slot:      start.GetSlotName(),
		chunkRows: int(start.GetBackfillChunkRows()),
		pub:       start.GetPublicationName(),
		version:   version,
		readers:   max(readers, 1),
		chunks:    newChunkRegistry(),
		errs:      make(chan error, 1),
		done:      make(chan struct{}),
		matches:   map[uint32]relMatch{},
		horizon:   horizon,
	}
	if bf.chunkRows == 0 {
		bf.chunkRows = defaultBackfillChunk
	}
	tables, estimates, err := checkBackfillTables(ctx, conn, start.GetPublicationName(), todo)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i, p := range todo {
		t := tables[i]
		if seen[pgsql.Qualified(t.ref)] {
			return nil, status.Errorf(codes.InvalidArgument, "table %s is backfilled twice; list each table once", pgsql.Qualified(t.ref))
		}
		seen[pgsql.Qualified(t.ref)] = true
		p = proto.Clone(p).(*cdcv1.BackfillProgress)
		if p.GetEstimatedRows() == 0 {
			p.EstimatedRows = estimates[i]
		}
		bf.tables = append(bf.tables, t)
		bf.progress = append(bf.progress, p)
		bf.changed = append(bf.changed, map[string]keyChange{})
	}
	bf.windows = make([]int64, len(bf.tables))
	bf.todo = make(chan int, len(bf.tables))
	for i := range bf.tables {
		bf.todo <- i
	}
	close(bf.todo)
	rctx, cancel := context.WithCancel(ctx)
	bf.cancel = cancel
	go bf.read(rctx, start.GetSource())
	return bf, nil
}

// checkBackfillServer returns the xmin of a snapshot taken now (every
// chunk's snapshot sees the transactions before it) and the server's
// server_version_num.
func checkBackfillServer(ctx context.Context, conn *pgx.Conn) (uint32, int, error) {
	var version int
	var snap string
	err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int, txid_current_snapshot()::text").Scan(&version, &snap)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the source's server_version_num: %w", err)
	}
	s, err := parseXidSnapshot(snap)
	return s.xmin, version, err
}

// checkBackfillTablesQuery reads, for each table named by $1 (schemas) and
// $2 (names), in that order, what checkBackfillShape needs. It is one query
// for all the tables: pg_publication_tables expands the whole publication
// on every use (for FOR TABLES IN SCHEMA, every table of the schema), so
// asking it once per table made a 10,000-table full sync spend about 0.3 s
// per table before its first chunk. exists is false for a table that is
// missing or is not an ordinary or partitioned table.
const checkBackfillTablesQuery = `
WITH pub AS MATERIALIZED (
  -- A partition stands for its root: PostgreSQL 12 publishes the leaves
  -- of a partitioned table (publishedLeaves).
  SELECT DISTINCT coalesce(rn.nspname, pt.schemaname)::text AS s, coalesce(r.relname, pt.tablename)::text AS t
  FROM pg_publication_tables pt
  LEFT JOIN pg_namespace ln ON ln.nspname = pt.schemaname
  LEFT JOIN pg_class l ON l.relnamespace = ln.oid AND l.relname = pt.tablename AND l.relispartition
  LEFT JOIN pg_class r ON r.oid = pg_partition_root(l.oid)
  LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
  WHERE pt.pubname = $3)
SELECT c.oid IS NOT NULL, coalesce(c.relreplident::text, ''), pub.t IS NOT NULL,
       coalesce(CASE WHEN c.relkind = 'p'
            THEN coalesce((SELECT sum(greatest(l.reltuples, 0)) FROM pg_partition_tree(c.oid) pt
                           JOIN pg_class l ON l.oid = pt.relid WHERE pt.isleaf), 0)
            ELSE greatest(c.reltuples, 0) END, 0)::int8,
       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index i
                 CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                 WHERE i.indrelid = c.oid AND i.indisprimary), '{}'),
       coalesce((SELECT array_agg(a.attname::text) FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
                 WHERE i.indrelid = c.oid AND i.indisreplident), '{}')
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(s, t, i)
LEFT JOIN pg_namespace n ON n.nspname = u.s
LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = u.t AND c.relkind IN ('r', 'p')
LEFT JOIN pub ON pub.s = u.s AND pub.t = u.t
ORDER BY u.i`

// checkBackfillTables looks the tables up and checks that a backfill can
// work on each: it is published, has a primary key to read it in order by,
// and its deletes carry that key. It also returns the planner's row counts,
// in the order of ps.
func checkBackfillTables(ctx context.Context, conn *pgx.Conn, pub string, ps []*cdcv1.BackfillProgress) ([]backfillTable, []uint64, error) {
	tables := make([]backfillTable, len(ps))
	schemas, names := make([]string, len(ps)), make([]string, len(ps))
	for i, p := range ps {
		tables[i] = backfillTable{ref: &taskv1.TableRef{Schema: cmp.Or(p.GetSchema(), "public"), Table: p.GetTable()}, after: p.GetAfterKey()}
		if p.GetTable() == "" {
			return nil, nil, status.Error(codes.InvalidArgument, "a backfill needs a table name")
		}
		schemas[i], names[i] = tables[i].ref.Schema, tables[i].ref.Table
	}
	rows, err := conn.Query(ctx, checkBackfillTablesQuery, schemas, names, pub)
	if err != nil {
		return nil, nil, fmt.Errorf("looking up the %d tables to backfill: %w", len(ps), err)
	}
	estimates := make([]uint64, 0, len(ps))
	var (
		exists, published bool
		ident             string
		estimate          int64
		pk, identCols     []string
	)
	i := 0
	_, err = pgx.ForEachRow(rows, []any{&exists, &ident, &published, &estimate, &pk, &identCols}, func() error {
		t := &tables[i]
		i++
		name := pgsql.Qualified(t.ref)
		if !exists {
			return status.Errorf(codes.FailedPrecondition, "table %s does not exist; create it or remove it from the task", name)
		}
		t.pk = slices.Clone(pk)
		estimates = append(estimates, uint64(estimate))
		return checkBackfillShape(*t, name, pub, ident, published, identCols)
	})
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("looking up the %d tables to backfill: %w", len(ps), err)
	}
	return tables, estimates, nil
}

func checkBackfillShape(t backfillTable, name, pub, ident string, published bool, identCols []string) error {
	switch {
	case !published:
		return status.Errorf(codes.FailedPrecondition, "table %s is not in publication %q, so its changes are not streamed; add it to the publication (run setup with the task's tables) before backfilling it", name, pub)
	case len(t.pk) == 0:
		return status.Errorf(codes.FailedPrecondition, "table %s has no primary key: a backfill reads a table in primary-key order and matches its rows with the stream by that key; add a primary key (ALTER TABLE %s ADD PRIMARY KEY (...)) or remove the table from the task", name, name)
	case ident == "n" || ident == "i" && slices.ContainsFunc(t.pk, func(c string) bool { return !slices.Contains(identCols, c) }):
		return status.Errorf(codes.FailedPrecondition, "table %s has a replica identity that leaves its primary key out of deletes, so a backfill could not tell which rows they remove; run ALTER TABLE %s REPLICA IDENTITY DEFAULT (or FULL)", name, name)
	case len(t.after) != 0 && len(t.after) != len(t.pk):
		return status.Errorf(codes.InvalidArgument, "the backfill of %s resumes after a key of %d values, but its primary key has %d columns (%s)",
			name, len(t.after), len(t.pk), strings.Join(t.pk, ", "))
	}
	return nil
}

// Failed returns the reader's error, if it stopped on one. Safe on nil.
func (bf *Backfills) Failed() error {
	if bf == nil {
		return nil
	}
	select {
	case err := <-bf.errs:
		return err
	default:
		return nil
	}
}

// Stop ends the reader and waits for it. Safe on nil.
func (bf *Backfills) Stop() {
	if bf == nil {
		return
	}
	bf.cancel()
	<-bf.done
}

// markContent is the payload of chunk n's watermark of kind "lw" or "hw".
func (bf *Backfills) markContent(kind string, n int64) string {
	return bf.tag + kind + ":" + strconv.FormatInt(n, 10)
}

// ParseMark reads a watermark of this stream; ok is false for any other.
func (bf *Backfills) ParseMark(content []byte) (kind string, n int64, ok bool) {
	rest, ok := strings.CutPrefix(string(content), bf.tag)
	if !ok {
		return "", 0, false
	}
	kind, num, ok := strings.Cut(rest, ":")
	if !ok || kind != "lw" && kind != "hw" {
		return "", 0, false
	}
	n, err := strconv.ParseInt(num, 10, 64)
	return kind, n, err == nil && n > 0
}

// OpenWindow opens chunk n's window at its low watermark: changes of its
// table are noted against it from here until its high watermark.
func (bf *Backfills) OpenWindow(n int64) {
	if table, ok := bf.chunks.table(n); ok {
		bf.windows[table] = n
	}
}

// Take is chunk n, which its reader handed over before writing its HW.
func (bf *Backfills) Take(n int64) (*Chunk, error) {
	c := bf.chunks.handed(n)
	if c == nil {
		return nil, fmt.Errorf("backfill chunk %d: its high watermark came before the chunk", n)
	}
	if bf.windows[c.table] != n {
		return nil, fmt.Errorf("backfill chunk %d: its high watermark came without its low watermark", n)
	}
	return c, nil
}

// Keep drops the rows whose key changed under the chunk and places the
// others at hw: changed between the watermarks, or by a transaction the
// chunk's snapshot does not see.
func (bf *Backfills) Keep(c *Chunk, hw uint64) []*cdcv1.ChangeEvent {
	changed := bf.changed[c.table]
	kept := c.events[:0]
	for i, ev := range c.events {
		if k, ok := changed[c.keys[i]]; ok && (k.window == c.n || !c.snap.visible(k.xid)) {
			continue
		}
		if k, ok := bf.truncated[c.table]; ok && (k.window == c.n || !c.snap.visible(k.xid)) {
			continue
		}
		ev.Lsn, ev.CommitLsn = hw, hw
		kept = append(kept, ev)
	}
	return kept
}

// Advance records the sent chunk in its table's progress, forgets the
// changes every later snapshot sees, and lets the reader go on.
func (bf *Backfills) Advance(c *Chunk, sent int, hw uint64) *cdcv1.BackfillProgress {
	p := bf.progress[c.table]
	p.Rows += uint64(sent)
	if c.last != nil {
		p.AfterKey = c.last
	}
	p.Done = !c.full
	p.Lsn = hw
	bf.windows[c.table] = 0
	if h, ok := bf.chunks.settle(c); ok && xidPrecedes(bf.horizon, h) {
		bf.horizon = h
	}
	for _, changed := range bf.changed {
		for key, k := range changed {
			if xidPrecedes(k.xid, bf.horizon) {
				delete(changed, key)
			}
		}
	}
	for table, k := range bf.truncated {
		if xidPrecedes(k.xid, bf.horizon) {
			delete(bf.truncated, table)
		}
	}
	if p.Done {
		bf.changed[c.table] = nil
		delete(bf.truncated, c.table)
		clear(bf.matches)
	}
	select {
	case c.sent <- struct{}{}:
	default: // cannot happen: the reader's channel holds all it may have in flight
	}
	return proto.Clone(p).(*cdcv1.BackfillProgress)
}

// Observe notes the keys a change of a table being backfilled touches.
// Safe on nil.
func (bf *Backfills) Observe(rel *decode.Relation, m pglogrepl.Message, xid uint32) error {
	if bf == nil {
		return nil
	}
	if xidPrecedes(xid, bf.horizon) {
		return nil
	}
	mt, err := bf.match(rel)
	if err != nil || mt.table < 0 {
		return err
	}
	var newTuple, oldTuple *pglogrepl.TupleData
	switch m := m.(type) {
	case *pglogrepl.InsertMessage:
		newTuple = m.Tuple
	case *pglogrepl.UpdateMessage:
		newTuple, oldTuple = m.NewTuple, m.OldTuple
	case *pglogrepl.DeleteMessage:
		oldTuple = m.OldTuple
	}
	change := keyChange{xid: xid, window: bf.windows[mt.table]}
	newKey, newOK := tupleKey(newTuple, mt.key)
	oldKey, oldOK := tupleKey(oldTuple, mt.key)
	if newOK {
		bf.changed[mt.table][newKey] = change
	}
	if oldOK {
		bf.changed[mt.table][oldKey] = change
	}
	if !newOK && !oldOK {
		return fmt.Errorf("a change of %s, which is being backfilled, does not carry its primary key (an unchanged TOASTed key column, or a delete without the key in its replica identity), so the backfill cannot tell which row it touched; run ALTER TABLE %s REPLICA IDENTITY FULL",
			pgsql.Qualified(bf.tables[mt.table].ref), pgsql.Qualified(bf.tables[mt.table].ref))
	}
	return nil
}

// match tells whether rel is a table still being backfilled.
func (bf *Backfills) match(rel *decode.Relation) (relMatch, error) {
	oid := rel.Msg.RelationID
	if m, ok := bf.matches[oid]; ok && m.rel == rel {
		return m, nil
	}
	m := relMatch{rel: rel, table: -1}
	for i, t := range bf.tables {
		if bf.progress[i].GetDone() || t.ref.GetSchema() != rel.Msg.Namespace || t.ref.GetTable() != rel.Msg.RelationName {
			continue
		}
		key, err := columnIndexes(rel, t.pk)
		if err != nil {
			return m, fmt.Errorf("backfill of %s: %w", pgsql.Qualified(t.ref), err)
		}
		m.table, m.key = i, key
		break
	}
	bf.matches[oid] = m
	return m, nil
}

// ObserveTruncate notes a TRUNCATE of rel as a change of every key of it,
// when rel is a table being backfilled.
func (bf *Backfills) ObserveTruncate(rel *decode.Relation, xid uint32) {
	if bf == nil || xidPrecedes(xid, bf.horizon) {
		return
	}
	for i, t := range bf.tables {
		if !bf.progress[i].GetDone() && t.ref.GetSchema() == rel.Msg.Namespace && t.ref.GetTable() == rel.Msg.RelationName {
			if bf.truncated == nil {
				bf.truncated = map[int]keyChange{}
			}
			bf.truncated[i] = keyChange{xid: xid, window: bf.windows[i]}
		}
	}
}

// columnIndexes finds the named columns in rel.
func columnIndexes(rel *decode.Relation, names []string) ([]int, error) {
	idx := make([]int, len(names))
	for i, name := range names {
		idx[i] = slices.IndexFunc(rel.Msg.Columns, func(c *pglogrepl.RelationMessageColumn) bool { return c.Name == name })
		if idx[i] < 0 {
			return nil, fmt.Errorf("primary-key column %q is not among the table's published columns", name)
		}
	}
	return idx, nil
}

// tupleKey encodes the key columns of a pgoutput tuple, which are the
// columns' text output, as COPY's are once unescaped. ok is false when a
// key column is missing (no tuple, a null, or an unchanged TOAST value).
func tupleKey(tuple *pglogrepl.TupleData, cols []int) (string, bool) {
	if tuple == nil {
		return "", false
	}
	var b []byte
	for _, ci := range cols {
		if ci >= len(tuple.Columns) || tuple.Columns[ci].DataType != pglogrepl.TupleDataTypeText {
			return "", false
		}
		b = appendKeyPart(b, tuple.Columns[ci].Data)
	}
	return string(b), true
}

// encodeKey encodes key texts the way tupleKey does.
func encodeKey(texts []string) string {
	var b []byte
	for _, t := range texts {
		b = appendKeyPart(b, []byte(t))
	}
	return string(b)
}

// appendKeyPart length-prefixes each part, so no text can pass for two.
func appendKeyPart(b, part []byte) []byte {
	b = strconv.AppendInt(b, int64(len(part)), 10)
	b = append(b, ':')
	return append(b, part...)
}

// Relation is the table's definition the chunk was read with.
func (c *Chunk) Relation() *decode.Relation { return c.rel }

// TableName is the quoted name of chunk c's table.
func (bf *Backfills) TableName(c *Chunk) string { return pgsql.Qualified(bf.tables[c.table].ref) }

// chunksInFlight is how many chunks each reader may have handed over and
// not yet sent.
func (bf *Backfills) chunksInFlight() int {
	if bf.readers > 1 {
		return 1
	}
	return backfillChunksInFlight
}
