package capture

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// Streaming of in-progress transactions is tested on a private PostgreSQL
// whose logical_decoding_work_mem is at its 64kB minimum, so that a few
// thousand rows are enough to make the walsender stream a transaction; the
// shared server, which other tests use, keeps its setting.

type streamPG struct {
	pg     *testenv.Postgres
	client capturev1.CaptureServiceClient
	spool  string // the capture's SpoolDir
}

func newStreamPG(t *testing.T, configure func(*Server)) *streamPG {
	t.Helper()
	return newStreamPGOn(t, testenv.StartPostgres(t), configure)
}

// newStreamPGOn is newStreamPG on a private server of another version.
func newStreamPGOn(t *testing.T, pg *testenv.Postgres, configure func(*Server)) *streamPG {
	t.Helper()
	e := &streamPG{pg: pg, spool: t.TempDir()}
	e.pg.Configure("logical_decoding_work_mem=64kB")
	testenv.Exec(t, e.pg.SuperConn(t), "SELECT pg_reload_conf()")
	pollUntil(t, "logical_decoding_work_mem to be 64kB", func() string {
		var v string
		if err := e.pg.Conn(t).QueryRow(context.Background(), "SHOW logical_decoding_work_mem").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}, func(v string) bool { return v == "64kB" })
	e.client = startServerWith(t, func(s *Server) {
		s.SpoolDir = e.spool
		if configure != nil {
			configure(s)
		}
	})
	return e
}

// task creates table name (id int8 PRIMARY KEY, note text) with a slot and
// publication of its own, and returns the table's quoted name and the
// StartStream of its slot.
func (e *streamPG) task(t *testing.T, name string) (string, *capturev1.StartStream) {
	t.Helper()
	q := quoteIdent("public", name)
	testenv.Exec(t, e.pg.Conn(t), "CREATE TABLE "+q+" (id int8 PRIMARY KEY, note text)")
	slot, pub := name+"_slot", name+"_pub"
	resp, err := e.client.EnsureReplication(context.Background(), &capturev1.EnsureReplicationRequest{
		Source: e.pg.Source(), SlotName: slot, PublicationName: pub, Tables: []*taskv1.TableRef{table("public", name)},
	})
	if err != nil {
		t.Fatalf("EnsureReplication: %v", err)
	}
	return q, &capturev1.StartStream{Source: e.pg.Source(), SlotName: slot, PublicationName: pub, StartLsn: resp.GetConfirmedLsn()}
}

// spoolBytes is the size of the spools in the capture's spool folder.
func (e *streamPG) spoolBytes(t *testing.T) (files int, size int64) {
	t.Helper()
	for _, f := range spoolFiles(t, e.spool) {
		if fi, err := os.Stat(f); err == nil {
			files, size = files+1, size+fi.Size()
		}
	}
	return files, size
}

// untilSpooled waits until the spools hold at least size bytes: the
// walsender streamed that much of a running transaction.
func (e *streamPG) untilSpooled(t *testing.T, size int64) {
	t.Helper()
	pollUntil(t, fmt.Sprintf("%d bytes spooled", size), func() int64 { _, n := e.spoolBytes(t); return n },
		func(n int64) bool { return n >= size })
}

func (e *streamPG) checkNoSpools(t *testing.T) {
	t.Helper()
	if files := spoolFiles(t, e.spool); len(files) != 0 {
		t.Fatalf("spools left behind: %v", files)
	}
}

// untilStreamed waits until PostgreSQL counts n transactions streamed by
// the slot.
func (e *streamPG) untilStreamed(t *testing.T, slot string, n int64) {
	t.Helper()
	super := e.pg.SuperConn(t)
	pollUntil(t, fmt.Sprintf("slot %s to have streamed %d transactions", slot, n), func() int64 {
		var got int64
		err := super.QueryRow(context.Background(),
			"SELECT coalesce(sum(stream_txns), 0)::int8 FROM pg_stat_replication_slots WHERE slot_name = $1", slot).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}, func(got int64) bool { return got >= n })
}

func (e *streamPG) begin(t *testing.T) pgx.Tx {
	t.Helper()
	tx, err := e.pg.Conn(t).Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

func txExec(t *testing.T, tx pgx.Tx, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := tx.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func insertRange(q string, from, to int) string {
	return fmt.Sprintf("INSERT INTO %s SELECT g, 'row ' || g FROM generate_series(%d, %d) g", q, from, to)
}

func seq(from, to int) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, int64(i))
	}
	return out
}

func (s *testStream) snapshot() []*cdcv1.ChangeBatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.batches)
}

// spooledRowBytes is less than a spooled insert of (id, 'row ' || id) takes
// for ids of four or five digits (16 bytes of header, about 36 of message),
// so waiting for n rows' worth waits for at least n rows.
const spooledRowBytes = 40

// (a) A transaction larger than logical_decoding_work_mem is streamed while
// it runs, sends nothing until it commits, then arrives once, whole and in
// order, exactly as protocol 1 sends it: same rows, LSNs, commit LSN, xid,
// commit time and watermark.
func TestStreamLargeTransactionArrivesAtItsCommit(t *testing.T) {
	const rows = 50_000
	e := newStreamPG(t, nil)
	q, start := e.task(t, "stream_large")
	s := openStream(t, e.client, start)
	tx := e.begin(t)
	txExec(t, tx, insertRange(q, 1, rows))
	e.untilSpooled(t, rows/2*spooledRowBytes)
	if evs := events(s.snapshot()); len(evs) != 0 {
		t.Fatalf("%d rows of a running transaction were sent", len(evs))
	}
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := s.untilIDs(t, seq(1, rows)...)
	checkWatermarks(t, got)
	evs := events(got)
	for _, ev := range evs {
		if ev.GetXid() != evs[0].GetXid() || ev.GetCommitLsn() != evs[0].GetCommitLsn() {
			t.Fatalf("row %d: xid %d commit %d, row 1: %d %d", colInt(ev.GetNewTuple(), 0),
				ev.GetXid(), ev.GetCommitLsn(), evs[0].GetXid(), evs[0].GetCommitLsn())
		}
	}
	e.untilStreamed(t, start.GetSlotName(), 1)
	e.checkNoSpools(t)

	// Nothing was acked: protocol 1 on the same slot sends it all again.
	s.close()
	v1 := openStream(t, startServerWith(t, func(s *Server) { s.StreamInProgress = false }), start)
	want := v1.untilIDs(t, seq(1, rows)...)
	for i, ev := range events(want) {
		if !proto.Equal(ev, evs[i]) {
			t.Fatalf("row %d: streamed %v, protocol 1 %v", i, evs[i], ev)
		}
	}
	if lastWatermark(got) != lastWatermark(want) {
		t.Fatalf("watermark %d streamed, %d with protocol 1", lastWatermark(got), lastWatermark(want))
	}
}

// (b) A streamed transaction that rolls back sends nothing, and deletes its
// spool; later transactions arrive.
func TestStreamAbortedTransactionSendsNothing(t *testing.T) {
	e := newStreamPG(t, nil)
	q, start := e.task(t, "stream_abort")
	s := openStream(t, e.client, start)
	tx := e.begin(t)
	txExec(t, tx, insertRange(q, 1, 20_000))
	e.untilSpooled(t, 10_000*spooledRowBytes)
	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, e.pg.Conn(t), insertRange(q, 100_001, 100_002))
	checkWatermarks(t, s.untilIDs(t, 100_001, 100_002))
	e.untilStreamed(t, start.GetSlotName(), 1)
	// The abort came before the later commit, so its spool is gone.
	e.checkNoSpools(t)
}

// (c) Subtransactions rolled back after their changes were streamed,
// nested ones included, lose exactly their rows; the rest of the
// transaction arrives.
func TestStreamRollbackToSavepoint(t *testing.T) {
	e := newStreamPG(t, nil)
	q, start := e.task(t, "stream_savepoint")
	s := openStream(t, e.client, start)
	tx := e.begin(t)
	txExec(t, tx, insertRange(q, 1, 5_000),
		"SAVEPOINT s1", insertRange(q, 5_001, 10_000),
		"SAVEPOINT s2", insertRange(q, 10_001, 15_000), "RELEASE SAVEPOINT s2",
		"SAVEPOINT s3", insertRange(q, 15_001, 16_000))
	// Rows well into s2 have been streamed before the rollback.
	e.untilSpooled(t, 12_000*spooledRowBytes)
	txExec(t, tx, "ROLLBACK TO SAVEPOINT s1",
		insertRange(q, 20_001, 20_010),
		"SAVEPOINT s4", insertRange(q, 30_001, 30_005), "RELEASE SAVEPOINT s4",
		"SAVEPOINT s5", insertRange(q, 40_001, 40_005), "ROLLBACK TO SAVEPOINT s5")
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := append(append(seq(1, 5_000), seq(20_001, 20_010)...), seq(30_001, 30_005)...)
	checkWatermarks(t, s.untilIDs(t, want...))
	e.checkNoSpools(t)
}

// (d) Two large transactions stream in turns, with small ones committing
// between their blocks: every row arrives once, each transaction whole and
// in order, transactions in commit order, watermarks only moving forward.
func TestStreamInterleavedTransactions(t *testing.T) {
	e := newStreamPG(t, nil)
	q, start := e.task(t, "stream_interleaved")
	s := openStream(t, e.client, start)
	a, b, small := e.begin(t), e.begin(t), e.pg.Conn(t)
	const chunk = 3_000
	var smallIDs []int64
	for i := range 5 {
		txExec(t, a, insertRange(q, 1_000_000+i*chunk+1, 1_000_000+(i+1)*chunk))
		txExec(t, b, insertRange(q, 2_000_000+i*chunk+1, 2_000_000+(i+1)*chunk))
		id := 3_000_000 + i
		testenv.Exec(t, small, insertRange(q, id, id))
		smallIDs = append(smallIDs, int64(id))
	}
	if err := b.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, small, insertRange(q, 3_000_100, 3_000_100))
	if err := a.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, small, insertRange(q, 3_000_200, 3_000_200))
	want := slices.Concat(smallIDs, seq(2_000_001, 2_000_000+5*chunk), []int64{3_000_100},
		seq(1_000_001, 1_000_000+5*chunk), []int64{3_000_200})
	got := s.untilIDs(t, want...)
	checkWatermarks(t, got)
	checkCommitOrder(t, got)
	e.untilStreamed(t, start.GetSlotName(), 2)
	e.checkNoSpools(t)
}

// checkCommitOrder: commit LSNs and watermarks never go back, and each
// transaction's rows are contiguous.
func checkCommitOrder(t *testing.T, batches []*cdcv1.ChangeBatch) {
	t.Helper()
	var commit, mark uint64
	seen := map[uint32]bool{}
	var cur uint32
	for _, b := range batches {
		if w := b.GetWatermarkLsn(); w != 0 {
			if w < mark {
				t.Fatalf("watermark went back from %d to %d", mark, w)
			}
			mark = w
		}
		for _, ev := range b.GetEvents() {
			if ev.GetCommitLsn() < commit {
				t.Fatalf("commit LSN went back from %d to %d", commit, ev.GetCommitLsn())
			}
			commit = ev.GetCommitLsn()
			if ev.GetXid() != cur {
				if seen[ev.GetXid()] {
					t.Fatalf("transaction %d came in two parts", ev.GetXid())
				}
				cur = ev.GetXid()
				seen[cur] = true
			}
		}
	}
}

// The keepalive watermark may pass the start of a streamed transaction
// still running, and be confirmed. A new connection then gets the whole
// transaction again when it commits (the slot's restart_lsn stayed behind
// its start), so nothing is lost; the first connection's spool is gone.
func TestStreamOpenTransactionSurvivesReconnect(t *testing.T) {
	const rows = 20_000
	e := newStreamPG(t, nil)
	q, start := e.task(t, "stream_reconnect")
	super := e.pg.SuperConn(t)
	s := openStream(t, e.client, start)
	stop := make(chan struct{})
	defer close(stop)
	go s.autoAck(stop)
	tx := e.begin(t)
	var before string
	if err := tx.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&before); err != nil {
		t.Fatal(err)
	}
	txExec(t, tx, insertRange(q, 1, rows))
	e.untilSpooled(t, rows/2*spooledRowBytes)
	txStart := mustLSN(t, &before)
	pollSlot(t, super, start.GetSlotName(), "a confirmed position past the open transaction's start",
		func(st slotState) bool { return st.confirmed > txStart })
	if evs := events(s.snapshot()); len(evs) != 0 {
		t.Fatalf("%d rows of a running transaction were sent", len(evs))
	}
	s.close()
	pollSlot(t, super, start.GetSlotName(), "the first stream to let go", func(st slotState) bool { return !st.active })
	e.checkNoSpools(t)

	again := openStream(t, e.client, start)
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := again.untilIDs(t, seq(1, rows)...)
	checkWatermarks(t, got)
	e.checkNoSpools(t)
}
