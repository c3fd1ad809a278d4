package capture

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-cdc/ferry/services/capture/wire"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// Protocol 4 with streaming 'parallel' (PostgreSQL 16 and later) on the
// servers that have it, each a private one with logical_decoding_work_mem
// at 64kB (newStreamPG): what the walsender sends, aborts included, and a
// capture asking for it end to end.
func TestStreamProtocol4(t *testing.T) {
	for _, major := range []int{16, 17} {
		t.Run(fmt.Sprint(major), func(t *testing.T) {
			e := newStreamPGOn(t, testenv.StartPostgresVersion(t, major), func(s *Server) { s.StreamProtocol = 4 })
			t.Run("AbortsCarryTheirLSNAndTime", func(t *testing.T) { checkProtocol4Aborts(t, e) })
			t.Run("ConcurrentTransactions", func(t *testing.T) { checkConcurrentStreamed(t, e) })
		})
	}
}

// checkProtocol4Aborts records runStreamedWorkload with protocol 4 and
// checks that the handler takes it (checkRecordedWorkload), and that
// every abort, of a whole transaction or of a subtransaction, has the
// longer form with a real LSN and a time from the workload's run.
func checkProtocol4Aborts(t *testing.T, e *streamPG) {
	begun := time.Now().Add(-time.Second) // the server's clock may lag a little
	raw, inBlock := checkRecordedWorkload(t, e, "v4_aborts", 4)
	ended := time.Now().Add(time.Second)
	aborts := 0
	for i, m := range raw {
		if inBlock[i] || m[0] != wire.MsgStreamAbort {
			continue
		}
		msg, err := wire.ParseStreamMessage(m, false, true)
		if err != nil {
			t.Fatal(err)
		}
		a := msg.(*wire.StreamAbortMessage)
		if len(m) != 1+4+4+8+8 || a.AbortLSN == 0 || a.AbortTime.Before(begun) || a.AbortTime.After(ended) {
			t.Fatalf("abort %d of %d/%d: %d bytes, LSN %s, time %s (workload ran %s to %s)",
				i, a.Xid, a.SubXid, len(m), a.AbortLSN, a.AbortTime, begun, ended)
		}
		aborts++
	}
	if aborts < 2 {
		t.Fatalf("%d aborts recorded, want the subtransaction's and the transaction's", aborts)
	}
}

// checkConcurrentStreamed: three large transactions write in turns, so the
// walsender streams their blocks interleaved, while small ones commit
// between them. One loses a subtransaction after it was streamed, one
// rolls back. Every committed row arrives once, each transaction whole at
// its commit, in commit order; no aborted row arrives; the slot confirms
// nothing until the client acks, then exactly what it acked.
func checkConcurrentStreamed(t *testing.T, e *streamPG) {
	q, start := e.task(t, "v4_concurrent")
	s := openStream(t, e.client, start)
	a, b, c, small := e.begin(t), e.begin(t), e.begin(t), e.pg.Conn(t)
	const chunk = 2_000
	var smallIDs []int64
	txExec(t, b, "SAVEPOINT s1")
	for i := range 3 {
		txExec(t, a, insertRange(q, 1_000_000+i*chunk+1, 1_000_000+(i+1)*chunk))
		txExec(t, b, insertRange(q, 2_000_000+i*chunk+1, 2_000_000+(i+1)*chunk))
		txExec(t, c, insertRange(q, 3_000_000+i*chunk+1, 3_000_000+(i+1)*chunk))
		id := 4_000_000 + i
		testenv.Exec(t, small, insertRange(q, id, id))
		smallIDs = append(smallIDs, int64(id))
	}
	// Most of b's subtransaction has been streamed before it rolls back.
	e.untilXidSpooled(t, start.GetSlotName(), xidOf(t, b), 2*chunk*spooledRowBytes)
	txExec(t, b, "ROLLBACK TO SAVEPOINT s1", insertRange(q, 2_100_001, 2_100_000+chunk))
	if err := b.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, small, insertRange(q, 4_000_100, 4_000_100))
	if err := a.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := slices.Concat(smallIDs, seq(2_100_001, 2_100_000+chunk), []int64{4_000_100}, seq(1_000_001, 1_000_000+3*chunk))
	got := s.untilIDs(t, want...)
	checkWatermarks(t, got)
	checkCommitOrder(t, got)
	e.untilStreamed(t, start.GetSlotName(), 3)
	e.checkNoSpools(t)

	super := e.pg.SuperConn(t)
	w := lastWatermark(got)
	if st := readSlot(t, super, start.GetSlotName()); uint64(st.confirmed) >= w {
		t.Fatalf("slot confirmed %s before any ack (watermark %x)", st.confirmed, w)
	}
	s.ack(t, w)
	pollSlot(t, super, start.GetSlotName(), "the ack to be confirmed", func(st slotState) bool {
		if uint64(st.confirmed) > w {
			t.Fatalf("slot confirmed %s beyond the acked %x", st.confirmed, w)
		}
		return uint64(st.confirmed) == w
	})
}

// xidOf is the transaction's top-level xid.
func xidOf(t *testing.T, tx pgx.Tx) uint32 {
	t.Helper()
	var xid uint32
	if err := tx.QueryRow(context.Background(), "SELECT pg_current_xact_id()::text::int8").Scan(&xid); err != nil {
		t.Fatal(err)
	}
	return xid
}

// untilXidSpooled waits until the spool of slot's transaction xid holds at
// least size bytes.
func (e *streamPG) untilXidSpooled(t *testing.T, slot string, xid uint32, size int64) {
	t.Helper()
	pattern := filepath.Join(e.spool, fmt.Sprintf("ferry-%s-%d-*.spool", slot, xid))
	pollUntil(t, fmt.Sprintf("%d bytes spooled for transaction %d", size, xid), func() int64 {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, f := range files {
			if fi, err := os.Stat(f); err == nil {
				n += fi.Size()
			}
		}
		return n
	}, func(n int64) bool { return n >= size })
}
