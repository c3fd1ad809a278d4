package capture

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/capture/snapshot"
	"github.com/ferry-cdc/ferry/services/internal/pgsql"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// createChunkTable makes a table of (id, a dropped column, grp, note, a
// generated column) with rows 1..n, keyed or not; a keyless one has
// REPLICA IDENTITY FULL so that its updates and deletes are published.
func createChunkTable(t *testing.T, prefix string, n int, keyed bool) string {
	t.Helper()
	name := testenv.UniqueName(prefix)
	q := quoteIdent("public", name)
	key := ""
	if keyed {
		key = " PRIMARY KEY"
	}
	conn := testenv.PG(t)
	testenv.Exec(t, conn, `CREATE TABLE `+q+` (id int8`+key+`, gone int, grp int NOT NULL, note text,
		twice int8 GENERATED ALWAYS AS (id * 2) STORED)`,
		`ALTER TABLE `+q+` DROP COLUMN gone`,
		fmt.Sprintf(`INSERT INTO %s (id, grp, note) SELECT g, g %% 5, 'row ' || g || repeat('x', 60) FROM generate_series(1, %d) g`, q, n))
	if !keyed {
		testenv.Exec(t, conn, `ALTER TABLE `+q+` REPLICA IDENTITY FULL`)
	}
	t.Cleanup(func() { testenv.Exec(t, testenv.PG(t), `DROP TABLE IF EXISTS `+q) })
	return name
}

// rowsInSnapshot reads each table (name -> row filter) in the exported
// snapshot: id -> "grp|note".
func rowsInSnapshot(t *testing.T, snapshot string, filters map[string]string) map[string]map[int64]string {
	t.Helper()
	ctx := context.Background()
	conn := testenv.PG(t)
	testenv.Exec(t, conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "SET TRANSACTION SNAPSHOT "+pgsql.Literal(snapshot))
	out := map[string]map[int64]string{}
	for name, filter := range filters {
		rows, err := conn.Query(ctx, `SELECT id, grp, note FROM ONLY `+quoteIdent("public", name)+` WHERE `+filter)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = map[int64]string{}
		var id int64
		var grp int
		var note string
		if _, err := pgx.ForEachRow(rows, []any{&id, &grp, &note}, func() error {
			out[name][id] = fmt.Sprintf("%d|%s", grp, note)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Exec(t, conn, "COMMIT")
	return out
}

// chunkReadersOf counts the sessions of the role the tests connect as whose
// transaction read a chunk of table last, and is still open.
func chunkReadersOf(t *testing.T, conn *pgx.Conn, table string) int {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT query FROM pg_stat_activity
		WHERE state IN ('active', 'idle in transaction') AND pid <> pg_backend_pid() AND usename = current_user`)
	if err != nil {
		t.Fatal(err)
	}
	queries, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, q := range queries {
		if strings.HasPrefix(q, "COPY (SELECT ") && strings.Contains(q, quoteIdent("public", table)+" WHERE ctid >= ") {
			n++
		}
	}
	return n
}

// plannedChunks is how many chunks tables of these names get now.
func plannedChunks(t *testing.T, conn *pgx.Conn, minBlocks int64, tables ...string) int {
	t.Helper()
	n := 0
	for _, name := range tables {
		var blocks int64
		if err := conn.QueryRow(context.Background(), `SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int8`,
			quoteIdent("public", name)).Scan(&blocks); err != nil {
			t.Fatal(err)
		}
		n += snapshot.ChunkCount(blocks, minBlocks)
	}
	return n
}

// writeAfterSnapshot inserts, updates and deletes rows of the tables made
// by createChunkTable with n rows, in committed transactions, and vacuums
// them: none of it may show in the snapshot.
func writeAfterSnapshot(t *testing.T, n int, tables ...string) {
	t.Helper()
	conn := testenv.PG(t)
	for _, name := range tables {
		q := quoteIdent("public", name)
		testenv.Exec(t, conn,
			fmt.Sprintf(`INSERT INTO %s (id, grp, note) SELECT g, g %% 5, 'new ' || g || repeat('y', 60) FROM generate_series(%d, %d) g`, q, n+1, n+3000),
			`UPDATE `+q+` SET grp = grp + 10, note = note || ' updated' WHERE id % 3 = 0`,
			`DELETE FROM `+q+` WHERE id % 11 = 0`,
			`VACUUM `+q)
	}
}

// chunkChurn keeps writing to the tables in small transactions until stopped.
type chunkChurn struct {
	ops  atomic.Int64
	stop chan struct{}
	done chan error
	once sync.Once
	err  error
}

func startChunkChurn(t *testing.T, n int, tables ...string) *chunkChurn {
	t.Helper()
	conn := testenv.PG(t)
	c := &chunkChurn{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		ctx := context.Background()
		for i := 1; ; i++ {
			select {
			case <-c.stop:
				c.done <- nil
				return
			default:
			}
			for _, name := range tables {
				q := quoteIdent("public", name)
				for _, stmt := range []string{
					fmt.Sprintf(`INSERT INTO %s (id, grp, note) VALUES (%d, 1, 'churn')`, q, 10*n+i),
					fmt.Sprintf(`UPDATE %s SET note = note || '.' WHERE id = %d`, q, i*37%n+1),
					fmt.Sprintf(`DELETE FROM %s WHERE id = %d`, q, i*53%n+1),
				} {
					if _, err := conn.Exec(ctx, stmt); err != nil {
						c.done <- fmt.Errorf("%s: %w", stmt, err)
						return
					}
					c.ops.Add(1)
				}
			}
		}
	}()
	t.Cleanup(func() { _ = c.finish() })
	return c
}

// finish stops the writer and returns its failure, if any.
func (c *chunkChurn) finish() error {
	c.once.Do(func() {
		close(c.stop)
		c.err = <-c.done
	})
	return c.err
}

// TestSnapshotChunksHoldExactlyTheSnapshot reads a keyed and a keyless
// table in many chunks on four connections, with row filters, while
// committed writes change them, and a tiny table whole: the snapshot must
// hold exactly the rows the exported snapshot sees, each once, with the
// published columns only.
func TestSnapshotChunksHoldExactlyTheSnapshot(t *testing.T) {
	const n = 30000
	srv := NewServer(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	srv.snapshotChunkBlocks = 16
	client := serve(t, srv)
	keyed, keyless := createChunkTable(t, "wtchunks_k", n, true), createChunkTable(t, "wtchunks_n", n, false)
	tiny := createChunkTable(t, "wtchunks_tiny", 3, true)
	filters := map[string]string{keyed: "id % 7 <> 0", keyless: "grp <> 3", tiny: "true"}
	r := newReplication(t, testenv.UniqueName("ferry_pub"), table("public", keyed), table("public", keyless), table("", tiny))
	if _, err := client.EnsureReplication(context.Background(), &capturev1.EnsureReplicationRequest{
		Source: testenv.Source(t), PublicationName: r.pub, Tables: r.tables, PublicationOnly: true,
		Filters: []*capturev1.TableFilter{filtered(keyed, filters[keyed]), filtered(keyless, filters[keyless])},
	}); err != nil {
		t.Fatalf("EnsureReplication(publication_only): %v", err)
	}
	conn := testenv.PG(t)
	chunks := plannedChunks(t, conn, srv.snapshotChunkBlocks, keyed, keyless) + 1
	// At first one chunk query a second, so that the writes below commit
	// before most chunks are read.
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	defer cancel()
	stream, err := client.ReadSnapshot(ctx, &capturev1.ReadSnapshotRequest{Source: testenv.Source(t), SlotName: r.slot,
		PublicationName: r.pub, Tables: r.tables, MaxBatchEvents: 200, Parallelism: 4,
		Throttle: &taskv1.FullSyncThrottle{QueriesPerSecond: 1}})
	if err != nil {
		t.Fatal(err)
	}
	var snap snapshotRead
	first, err := stream.Recv()
	if err != nil || first.GetStarted() == nil {
		t.Fatalf("first ReadSnapshot message %v, %v; want started", first, err)
	}
	begun := time.Now()
	snap.started, snap.order = first.GetStarted(), []string{"started"}
	want := rowsInSnapshot(t, snap.started.GetSnapshotName(), filters)
	writeAfterSnapshot(t, n, keyed, keyless)
	if before := 1 + int(time.Since(begun)/time.Second); before >= chunks {
		t.Fatalf("up to %d of %d chunks were read before the writes committed; want the writes during the snapshot", before, chunks)
	}
	// A rows limit, not the sender, keeps the readers inside their chunks'
	// COPYs while the test looks: how much gRPC buffers ahead of the
	// receiver varies from run to run. Which table they are on by then
	// depends on timing: two chunks of either one read at once show a table
	// shared by readers.
	throttle := func(what string, th *taskv1.FullSyncThrottle) {
		t.Helper()
		if up, err := client.UpdateThrottle(ctx, &capturev1.UpdateThrottleRequest{SlotName: r.slot, Full: th}); err != nil || up.GetStreamsUpdated() != 1 {
			t.Fatalf("UpdateThrottle = %v, %v; want the snapshot %s", up, err, what)
		}
	}
	throttle("limited to 2,000 rows/s", &taskv1.FullSyncThrottle{RowsPerSecond: 2000})
	pollUntil(t, "two chunks of one table read at once", func() int {
		return max(chunkReadersOf(t, conn, keyed), chunkReadersOf(t, conn, keyless))
	}, func(n int) bool { return n >= 2 })
	throttle("unthrottled", &taskv1.FullSyncThrottle{})
	w := startChunkChurn(t, n, keyed, keyless)
	receiveSnapshot(t, stream, &snap)
	if err := w.finish(); err != nil || w.ops.Load() == 0 {
		t.Fatalf("writer during the snapshot: %d writes, %v", w.ops.Load(), err)
	}
	t.Logf("%d writes while the snapshot was received", w.ops.Load())

	counts := map[string]uint64{}
	for name, rows := range want {
		counts[name] = uint64(len(rows))
	}
	checkSnapshotShape(t, snap, counts)
	checkDoneWhenComplete(t, snap)
	compareSnapshotRows(t, snapshotRows(t, snap), want)
	explainChunks(t, conn, keyed, filters[keyed])
}

// snapshotRows collects the snapshot's rows like rowsInSnapshot, failing
// on a row sent twice or a column that is not published.
func snapshotRows(t *testing.T, snap snapshotRead) map[string]map[int64]string {
	t.Helper()
	names := map[uint32]string{}
	out := map[string]map[int64]string{}
	for _, b := range snap.batches {
		for _, rel := range b.GetRelations() {
			names[rel.GetOid()] = rel.GetTable()
			var cols []string
			for _, c := range rel.GetColumns() {
				cols = append(cols, c.GetName())
			}
			if strings.Join(cols, ",") != "id,grp,note" {
				t.Fatalf("relation %s has columns %v, want id, grp, note (none dropped, none generated)", rel.GetTable(), cols)
			}
		}
		for _, ev := range b.GetEvents() {
			name, v := names[ev.GetRelationOid()], ev.GetNewTuple()
			if out[name] == nil {
				out[name] = map[int64]string{}
			}
			id := colInt(v, 0)
			if _, twice := out[name][id]; twice {
				t.Errorf("%s id %d sent twice", name, id)
			}
			out[name][id] = fmt.Sprintf("%d|%s", colInt(v, 1), colText(v, 2))
		}
	}
	return out
}

// compareSnapshotRows fails on every row missing, extra or different.
func compareSnapshotRows(t *testing.T, got, want map[string]map[int64]string) {
	t.Helper()
	for name, rows := range want {
		bad := 0
		for id, row := range rows {
			if g, ok := got[name][id]; !ok || g != row {
				if bad++; bad <= 5 {
					t.Errorf("%s id %d: snapshot has %q (present %v), the exported snapshot %q", name, id, g, ok, row)
				}
			}
		}
		for id, row := range got[name] {
			if _, ok := rows[id]; !ok {
				if bad++; bad <= 10 {
					t.Errorf("%s id %d: snapshot has %q, which the exported snapshot does not", name, id, row)
				}
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d rows differ among %d sent and %d in the snapshot", name, bad, len(got[name]), len(rows))
		}
	}
}

// checkDoneWhenComplete checks that a table is reported done only once all
// its rows were sent: its count then is its final count.
func checkDoneWhenComplete(t *testing.T, snap snapshotRead) {
	t.Helper()
	final := map[string]uint64{}
	for _, c := range snap.progress[len(snap.progress)-1].GetTables() {
		final[c.GetTable().GetTable()] = c.GetRows()
	}
	names := map[uint32]string{}
	sent := map[string]uint64{}
	bi, pi := 0, 0
	for _, kind := range snap.order {
		switch kind {
		case "batch":
			b := snap.batches[bi]
			bi++
			for _, rel := range b.GetRelations() {
				names[rel.GetOid()] = rel.GetTable()
			}
			for _, ev := range b.GetEvents() {
				sent[names[ev.GetRelationOid()]]++
			}
		case "progress":
			for _, c := range snap.progress[pi].GetTables() {
				name := c.GetTable().GetTable()
				if c.GetRows() != sent[name] || c.GetDone() && sent[name] != final[name] {
					t.Fatalf("progress %d: %s counted %d (done %v) with %d sent, %d in the end", pi, name, c.GetRows(), c.GetDone(), sent[name], final[name])
				}
			}
			pi++
		}
	}
}

// explainChunks checks that a bounded and an open-ended chunk of table,
// through its row filter, are TID Range Scans, not full scans.
func explainChunks(t *testing.T, conn *pgx.Conn, table, filter string) {
	t.Helper()
	for _, c := range [][2]uint32{{16, 32}, {32, 0}} {
		sql := "EXPLAIN " + snapshot.ChunkSelect([]string{"id", "note"}, "ONLY "+quoteIdent("public", table), filter, c[0], c[1])
		rows, err := conn.Query(context.Background(), sql)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if text := strings.Join(plan, "\n"); !strings.HasPrefix(text, "Tid Range Scan") || !strings.Contains(text, "TID Cond: ") {
			t.Errorf("%s:\n%s\nwant a Tid Range Scan", sql, text)
		}
	}
}

// TestSnapshotThrottleCountsChunkQueries: each chunk is a query to the
// queries_per_second bucket.
func TestSnapshotThrottleCountsChunkQueries(t *testing.T) {
	srv := NewServer(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	srv.snapshotChunkBlocks = 4
	client := serve(t, srv)
	name, quoted := createThrottled(t, 2500)
	var blocks int64
	if err := testenv.PG(t).QueryRow(context.Background(),
		`SELECT pg_relation_size('`+quoted+`') / current_setting('block_size')::int8`).Scan(&blocks); err != nil {
		t.Fatal(err)
	}
	chunks := snapshot.ChunkCount(blocks, 4)
	if chunks < 3 {
		t.Fatalf("%d blocks make %d chunks; the test needs at least 3", blocks, chunks)
	}
	r := newReplication(t, testenv.UniqueName("ferry_pub"), table("public", name))
	r.publicationOnly(t, client)
	begun := time.Now()
	snap := readSnapshot(t, client, &capturev1.ReadSnapshotRequest{
		Source: testenv.Source(t), SlotName: r.slot, PublicationName: r.pub, Tables: r.tables,
		Parallelism: 4, Throttle: &taskv1.FullSyncThrottle{QueriesPerSecond: 1},
	})
	// At one query a second the last chunk starts chunks-1 seconds in.
	if got, least := time.Since(begun), time.Duration(chunks-1)*time.Second; got < least-100*time.Millisecond {
		t.Fatalf("%d chunks at 1 query/s read in %s; want at least %s", chunks, got, least)
	}
	checkSnapshotShape(t, snap, map[string]uint64{name: 2500})
}
