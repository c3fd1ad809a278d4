package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/internal/pgsql"
	"github.com/ferry-cdc/ferry/services/testenv"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// Tenants make the first key column awkward: a quote, a backslash and a tab
// (which COPY escapes) and non-ASCII text, all of which after_key carries
// back into the chunk query.
var bfTenants = []string{"acme", "o'brien", `back\slash`, "tab\tsep", "ünï ✓"}

// bfItem is one StreamChanges response: a batch or a backfill frame.
type bfItem struct {
	batch *cdcv1.ChangeBatch
	frame *cdcv1.BackfillProgress
}

// bfStream is a StreamChanges client that keeps batches and backfill
// frames in arrival order and acks every watermark as soon as it arrives,
// as delivery does once Kafka holds the batch.
type bfStream struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	items []bfItem
	acked uint64
	err   error
}

func openBackfillStream(t *testing.T, c capturev1.CaptureServiceClient, start *capturev1.StartStream) *bfStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := c.StreamChanges(ctx)
	if err == nil {
		err = stream.Send(&capturev1.StreamChangesRequest{Kind: &capturev1.StreamChangesRequest_Start{Start: start}})
	}
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &bfStream{cancel: cancel, done: make(chan struct{})}
	go s.collect(stream)
	t.Cleanup(s.close)
	return s
}

func (s *bfStream) collect(stream grpc.BidiStreamingClient[capturev1.StreamChangesRequest, capturev1.StreamChangesResponse]) {
	defer close(s.done)
	for {
		resp, err := stream.Recv()
		s.mu.Lock()
		if err != nil {
			s.err = err
			s.mu.Unlock()
			return
		}
		var ack uint64
		if f := resp.GetBackfill(); f != nil {
			s.items = append(s.items, bfItem{frame: f})
		} else {
			s.items = append(s.items, bfItem{batch: resp.GetBatch()})
			if w := resp.GetBatch().GetWatermarkLsn(); w > s.acked {
				ack = w
			}
		}
		s.mu.Unlock()
		if ack == 0 {
			continue
		}
		if err := stream.Send(&capturev1.StreamChangesRequest{Kind: &capturev1.StreamChangesRequest_Ack{Ack: &capturev1.Ack{FlushedLsn: ack}}}); err != nil {
			continue // the stream is ending; Recv reports why
		}
		s.mu.Lock()
		s.acked = ack
		s.mu.Unlock()
	}
}

func (s *bfStream) close() {
	s.cancel()
	<-s.done
}

func (s *bfStream) snapshot() ([]bfItem, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.items), s.acked, s.err
}

// until polls the items until cond holds, failing after waitLimit or when
// the stream fails.
func (s *bfStream) until(t *testing.T, what string, cond func([]bfItem) bool) []bfItem {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		items, _, err := s.snapshot()
		if cond(items) {
			return items
		}
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("waiting for %s: stream failed: %v", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up after %s with %d responses", what, waitLimit, len(items))
		}
		<-tick.C
	}
}

// lastFrame is the newest backfill frame, or nil.
func lastFrame(items []bfItem) *cdcv1.BackfillProgress {
	for i := len(items) - 1; i >= 0; i-- {
		if items[i].frame != nil {
			return items[i].frame
		}
	}
	return nil
}

func countFrames(items []bfItem) int {
	n := 0
	for _, it := range items {
		if it.frame != nil {
			n++
		}
	}
	return n
}

func itemsWatermark(items []bfItem) uint64 {
	var w uint64
	for _, it := range items {
		w = max(w, it.batch.GetWatermarkLsn())
	}
	return w
}

// createTenants makes a table keyed by (tenant, id) with perTenant rows for
// each of bfTenants, analyzed so that its estimated row count is exact.
func createTenants(t *testing.T, name string, perTenant int) string {
	t.Helper()
	conn := testenv.PG(t)
	q := quoteIdent("public", name)
	testenv.Exec(t, conn, `CREATE TABLE `+q+` (
		tenant text, id int8, amount numeric(12,3) NOT NULL, note text, at timestamptz NOT NULL,
		PRIMARY KEY (tenant, id))`)
	t.Cleanup(func() { testenv.Exec(t, testenv.PG(t), `DROP TABLE IF EXISTS `+q) })
	_, err := conn.Exec(context.Background(), `INSERT INTO `+q+`
		SELECT tn, g, g / 7.0, 'row ' || g, '2024-01-01 00:00:00+00'::timestamptz + g * interval '1.5 second'
		FROM unnest($1::text[]) tn, generate_series(1, $2::int8) g`, bfTenants, perTenant)
	if err != nil {
		t.Fatalf("filling %s: %v", q, err)
	}
	testenv.Exec(t, conn, `ANALYZE `+q)
	return q
}

// churn changes random rows of a tenants table until stopped: updates,
// deletes, inserts and key-changing updates, alone or three to a
// transaction. Half of them hit the rows just after the backfill's latest
// position, so that they meet the chunk being read.
type churn struct {
	q         string
	perTenant int64
	near      func() []string // the latest after_key
	stop      chan struct{}
	done      chan error
	ops       atomic.Int64
}

func startChurn(t *testing.T, q string, perTenant int, near func() []string) *churn {
	t.Helper()
	c := &churn{q: q, perTenant: int64(perTenant), near: near, stop: make(chan struct{}), done: make(chan error, 1)}
	conn := testenv.PG(t)
	go func() { c.done <- c.run(conn) }()
	t.Cleanup(func() { c.halt(t) })
	return c
}

// halt stops the writer and fails the test if it failed.
func (c *churn) halt(t *testing.T) {
	t.Helper()
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	if err := <-c.done; err != nil {
		t.Fatalf("churn: %v", err)
	}
}

func (c *churn) run(conn *pgx.Conn) error {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return nil
		case <-tick.C:
		}
		var err error
		if r.IntN(10) == 0 {
			err = c.transaction(conn, r)
		} else {
			err = c.op(context.Background(), conn, r)
		}
		if err != nil && !pgsql.IsCode(err, "23505") { // a key change onto a taken key
			return err
		}
	}
}

func (c *churn) transaction(conn *pgx.Conn, r *rand.Rand) error {
	tx, err := conn.Begin(context.Background())
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	for range 3 {
		if err := c.op(context.Background(), tx, r); err != nil {
			return err
		}
	}
	return tx.Commit(context.Background())
}

// key picks a key: half the time just after the backfill's position.
func (c *churn) key(r *rand.Rand) (string, int64) {
	if after := c.near(); len(after) == 2 && r.IntN(2) == 0 {
		id, _ := strconv.ParseInt(after[1], 10, 64)
		return after[0], id + 1 + r.Int64N(300)
	}
	return bfTenants[r.IntN(len(bfTenants))], 1 + r.Int64N(c.perTenant*6/5)
}

func (c *churn) op(ctx context.Context, db execer, r *rand.Rand) error {
	tenant, id := c.key(r)
	var err error
	switch n := r.IntN(20); {
	case n < 8:
		var note any = fmt.Sprintf("upd %d", r.Int64())
		if n == 0 {
			note = nil
		}
		_, err = db.Exec(ctx, `UPDATE `+c.q+` SET amount = amount + 1, note = $3, at = clock_timestamp() WHERE tenant = $1 AND id = $2`, tenant, id, note)
	case n < 12:
		_, err = db.Exec(ctx, `DELETE FROM `+c.q+` WHERE tenant = $1 AND id = $2`, tenant, id)
	case n < 17:
		_, err = db.Exec(ctx, `INSERT INTO `+c.q+` VALUES ($1, $2, $3, 'new', clock_timestamp()) ON CONFLICT DO NOTHING`, tenant, id, r.IntN(1000))
	default:
		// Only in autocommit: a clash aborts the statement, which in a
		// transaction would abort the others too.
		if _, ok := db.(*pgx.Conn); ok {
			_, err = db.Exec(ctx, `UPDATE `+c.q+` SET id = $3 WHERE tenant = $1 AND id = $2`, tenant, id, c.perTenant*2+r.Int64N(c.perTenant*20))
		}
	}
	c.ops.Add(1)
	return err
}

// bfPrefixes tag the columns (tenant, id, amount, note, at) as renderRow's
// columns are tagged.
var bfPrefixes = []string{"t:", "i:", "n:", "t:", "ts:"}

// renderValue prints column i of a row image so that it compares with
// tableRows' columns: at, PostgreSQL's timestamptz text in UTC, as
// microseconds.
func renderValue(tu *cdcv1.Tuple, i int) string {
	text, k := tuple.Field(tu, i)
	if k != tuple.Text {
		return "null"
	}
	if i == 4 {
		at, err := time.Parse("2006-01-02 15:04:05.999999-07", string(text))
		if err != nil {
			return fmt.Sprintf("?%s: %v", text, err)
		}
		return "ts:" + strconv.FormatInt(at.UnixMicro(), 10)
	}
	return bfPrefixes[i] + string(text)
}

func renderValues(tu *cdcv1.Tuple) string {
	out := make([]string, tuple.Len(tu))
	for i := range out {
		out[i] = renderValue(tu, i)
	}
	return strings.Join(out, " | ")
}

// replay applies every change and snapshot row in order, keyed by the
// primary key (tenant, id), and returns the rows that remain.
func replay(t *testing.T, streams ...[]bfItem) map[string]string {
	t.Helper()
	rows := map[string]string{}
	key := func(tu *cdcv1.Tuple) string { return renderValue(tu, 0) + " | " + renderValue(tu, 1) }
	for _, items := range streams {
		for _, it := range items {
			for _, rel := range it.batch.GetRelations() {
				var names []string
				for _, c := range rel.GetColumns() {
					names = append(names, c.GetName())
				}
				if !slices.Equal(names, []string{"tenant", "id", "amount", "note", "at"}) {
					t.Fatalf("relation %s has columns %v", rel.GetTable(), names)
				}
			}
			for _, ev := range it.batch.GetEvents() {
				switch ev.GetOp() {
				case cdcv1.Operation_OPERATION_INSERT:
					rows[key(ev.GetNewTuple())] = renderValues(ev.GetNewTuple())
				case cdcv1.Operation_OPERATION_UPDATE:
					if ev.GetOldTuple() != nil { // the key changed
						delete(rows, key(ev.GetOldTuple()))
					}
					rows[key(ev.GetNewTuple())] = renderValues(ev.GetNewTuple())
				case cdcv1.Operation_OPERATION_DELETE:
					delete(rows, key(ev.GetOldTuple()))
				}
			}
		}
	}
	return rows
}

// tableRows reads the table as replay renders it.
func tableRows(t *testing.T, conn *pgx.Conn, q string) map[string]string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `
		SELECT tenant, id, amount::text, note, (extract(epoch FROM at) * 1000000)::int8 FROM `+q)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var tenant, amount string
		var note *string
		var id, at int64
		if err := rows.Scan(&tenant, &id, &amount, &note, &at); err != nil {
			t.Fatal(err)
		}
		n := "null"
		if note != nil {
			n = "t:" + *note
		}
		k := "t:" + tenant + " | i:" + strconv.FormatInt(id, 10)
		out[k] = k + " | n:" + amount + " | " + n + " | ts:" + strconv.FormatInt(at, 10)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// compareRows fails the test with the first differences.
func compareRows(t *testing.T, got, want map[string]string) {
	t.Helper()
	var diffs []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			diffs = append(diffs, "missing "+w)
		} else if g != w {
			diffs = append(diffs, "stale   "+g+"\n   want "+w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, "extra   "+g)
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		t.Fatalf("the stream replayed gives %d rows, the table has %d; %d differences, first ones:\n%s",
			len(got), len(want), len(diffs), strings.Join(diffs[:min(len(diffs), 10)], "\n"))
	}
}

// checkFrames checks the backfill frames of one stream, whose tables
// started with rows already sent: each follows the batch that ends its
// chunk, whose watermark is its lsn and whose events are exactly the
// chunk's snapshot INSERTs positioned at it; rows counts what was sent;
// only a table's last is done. It also checks that every event's relation
// was sent before it.
func checkFrames(t *testing.T, items []bfItem, rows map[string]uint64, chunk int) []*cdcv1.BackfillProgress {
	t.Helper()
	var frames []*cdcv1.BackfillProgress
	defined := map[uint32]bool{}
	finished := map[string]bool{}
	for i, it := range items {
		if it.frame == nil {
			for _, rel := range it.batch.GetRelations() {
				defined[rel.GetOid()] = true
			}
			for _, ev := range it.batch.GetEvents() {
				if !defined[ev.GetRelationOid()] {
					t.Fatalf("response %d: an event of relation %d before its definition", i, ev.GetRelationOid())
				}
				if ev.GetSnapshot() && i+1 < len(items) && items[i+1].frame == nil {
					t.Fatalf("response %d: a snapshot row in a batch that no backfill frame follows", i)
				}
			}
			continue
		}
		f := it.frame
		prev := items[max(i-1, 0)].batch
		if i == 0 || prev == nil || prev.GetWatermarkLsn() != f.GetLsn() || f.GetLsn() == 0 {
			t.Fatalf("frame %d (%v) does not follow a batch whose watermark is its lsn (previous: %v)", len(frames), f, prev)
		}
		if len(prev.GetEvents()) > chunk {
			t.Fatalf("frame %d: its chunk sent %d rows, more than the chunk size %d", len(frames), len(prev.GetEvents()), chunk)
		}
		for _, ev := range prev.GetEvents() {
			if !ev.GetSnapshot() || ev.GetOp() != cdcv1.Operation_OPERATION_INSERT || ev.GetLsn() != f.GetLsn() ||
				ev.GetCommitLsn() != f.GetLsn() || ev.GetXid() != 0 || ev.GetCommitTime() == nil || ev.GetOldTuple() != nil {
				t.Fatalf("frame %d: its batch holds %v, want snapshot INSERTs at lsn %d", len(frames), ev, f.GetLsn())
			}
		}
		rows[f.GetTable()] += uint64(len(prev.GetEvents()))
		if f.GetRows() != rows[f.GetTable()] {
			t.Fatalf("frame %d says %d rows, the stream sent %d", len(frames), f.GetRows(), rows[f.GetTable()])
		}
		if finished[f.GetTable()] {
			t.Fatalf("frame %d comes after the one that said %s was done", len(frames), f.GetTable())
		}
		finished[f.GetTable()] = f.GetDone()
		frames = append(frames, f)
	}
	return frames
}

// checkAfterKeys asserts that after_key moves forward in the table's
// order (the database compares, in its collation).
func checkAfterKeys(t *testing.T, conn *pgx.Conn, frames []*cdcv1.BackfillProgress, from []string) {
	t.Helper()
	prev := from
	for i, f := range frames {
		key := f.GetAfterKey()
		if len(key) != 2 {
			t.Fatalf("frame %d: after_key %q, want (tenant, id)", i, key)
		}
		if prev != nil {
			var ahead bool
			err := conn.QueryRow(context.Background(), `SELECT ($1::text, $2::int8) > ($3::text, $4::int8)`,
				key[0], key[1], prev[0], prev[1]).Scan(&ahead)
			if err != nil || !ahead && !f.GetDone() {
				t.Fatalf("frame %d: after_key %q is not past %q (%v)", i, key, prev, err)
			}
		}
		prev = key
	}
}

// currentWAL is the source's WAL insert position.
func currentWAL(t *testing.T, conn *pgx.Conn) uint64 {
	t.Helper()
	var lsn string
	if err := conn.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return uint64(mustLSN(t, &lsn))
}
