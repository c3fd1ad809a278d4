package capture

import (
	"slices"
	"strconv"
	"testing"

	"github.com/jackc/pglogrepl"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/capture/internal/pgoutputtest"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// A TRUNCATE is one event in its transaction's place: between the rows
// around it, at its own LSN, with the transaction's commit, its relations
// and options, and their definitions sent once before it.
func TestTruncateIsAnEventInItsTransaction(t *testing.T) {
	out := &recorder{}
	st := fuzzStream(out)
	st.batch = newBatcher(100, 1000)
	const a, b = 16500, 16501
	msgs := [][]byte{
		pgoutputtest.Begin(900, 0x3000),
		pgoutputtest.Relation(0, a),
		pgoutputtest.Insert(0, a, 1),
		pgoutputtest.Relation(0, b),
		pgoutputtest.Truncate(0, pglogrepl.TruncateOptionCascade|pglogrepl.TruncateOptionRestartIdentity, a, b),
		pgoutputtest.Insert(0, a, 2),
		pgoutputtest.Commit(0x3000, 0x3100),
		pgoutputtest.Begin(901, 0x4000),
		pgoutputtest.Truncate(0, 0, b),
		pgoutputtest.Commit(0x4000, 0x4100),
	}
	if err := feed(st, msgs); err != nil {
		t.Fatal(err)
	}
	batches := append(out.batches, st.batch.take())
	evs := events(batches)
	lsns := feedLSNs(msgs)
	want := []struct {
		op       cdcv1.Operation
		lsn      pglogrepl.LSN
		commit   uint64
		oids     []uint32
		cascade  bool
		identity bool
	}{
		{op: cdcv1.Operation_OPERATION_INSERT, lsn: lsns[2], commit: 0x3000},
		{cdcv1.Operation_OPERATION_TRUNCATE, lsns[4], 0x3000, []uint32{a, b}, true, true},
		{op: cdcv1.Operation_OPERATION_INSERT, lsn: lsns[5], commit: 0x3000},
		{cdcv1.Operation_OPERATION_TRUNCATE, lsns[8], 0x4000, []uint32{b}, false, false},
	}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d: %v", len(evs), len(want), evs)
	}
	for i, w := range want {
		ev := evs[i]
		tr := ev.GetTruncate()
		if ev.GetOp() != w.op || ev.GetLsn() != uint64(w.lsn) || ev.GetCommitLsn() != w.commit ||
			!slices.Equal(tr.GetRelationOids(), w.oids) || tr.GetCascade() != w.cascade || tr.GetRestartIdentity() != w.identity {
			t.Fatalf("event %d: %v, want %+v", i, ev, w)
		}
		if w.op == cdcv1.Operation_OPERATION_TRUNCATE && (ev.GetRelationOid() != w.oids[0] || ev.GetNewTuple() != nil || ev.GetOldTuple() != nil) {
			t.Fatalf("event %d: relation %d and values %v, want relation %d and none", i, ev.GetRelationOid(), ev.GetNewTuple(), w.oids[0])
		}
	}
	var defs []uint32
	for _, bt := range batches {
		for _, r := range bt.GetRelations() {
			defs = append(defs, r.GetOid())
		}
	}
	if !slices.Equal(defs, []uint32{a, b}) {
		t.Fatalf("definitions sent %v, want each relation once, before its first event: [%d %d]", defs, a, b)
	}
	checkWatermarks(t, batches)
	if w := lastWatermark(batches); w != 0x4100 {
		t.Fatalf("last watermark %x, want the last commit's end 4100", w)
	}
}

// A TRUNCATE inside a streamed transaction waits for its commit, like a row.
func TestStreamedTruncateReplaysAtCommit(t *testing.T) {
	out := &recorder{}
	st := fuzzStreamV2(out, t.TempDir())
	const a = 16600
	msgs := [][]byte{
		pgoutputtest.StreamStart(700, true),
		pgoutputtest.Relation(700, a),
		pgoutputtest.Insert(700, a, 1),
		pgoutputtest.Truncate(700, 0, a),
		pgoutputtest.StreamStop(),
	}
	if err := feed(st, msgs); err != nil {
		t.Fatal(err)
	}
	if len(out.batches) != 0 || !st.batch.empty() {
		t.Fatalf("an open streamed transaction sent %v", out.batches)
	}
	msgs = append(msgs, pgoutputtest.StreamCommit(700, 0x5000, 0x5100))
	st = fuzzStreamV2(out, t.TempDir())
	if err := feed(st, msgs); err != nil {
		t.Fatal(err)
	}
	evs := events(append(out.batches, st.batch.take()))
	lsns := feedLSNs(msgs)
	if len(evs) != 2 || evs[1].GetOp() != cdcv1.Operation_OPERATION_TRUNCATE || evs[1].GetLsn() != uint64(lsns[3]) || evs[1].GetCommitLsn() != 0x5000 {
		t.Fatalf("events %v, want the row, then the TRUNCATE at %s with commit 5000", evs, lsns[3])
	}
}

// A TRUNCATE outside a transaction is a protocol violation, not a no-op.
func TestTruncateOutsideTransaction(t *testing.T) {
	st := fuzzStream(&recorder{})
	if err := feed(st, [][]byte{pgoutputtest.Relation(0, 1), pgoutputtest.Truncate(0, 0, 1)}); err == nil {
		t.Fatal("a TRUNCATE outside a transaction was accepted")
	}
}

// A TRUNCATE of a table being backfilled counts as a change of every key:
// a chunk read before it, between its watermarks or in a snapshot that
// does not see it, would bring the emptied rows back, so none is kept; a
// chunk whose snapshot sees it is kept whole.
func TestBackfillDropsChunksATruncateEmptied(t *testing.T) {
	rel, other := testRelation(42, "t"), testRelation(43, "u")
	bf := &backfiller{
		tables:   []backfillTable{{ref: &taskv1.TableRef{Schema: "public", Table: "t"}, pk: []string{"id"}}},
		progress: []*cdcv1.BackfillProgress{{Table: "t"}},
		changed:  []map[string]keyChange{{}},
		matches:  map[uint32]relMatch{},
		chunks:   newChunkRegistry(),
		windows:  []int64{0},
		horizon:  90,
	}
	next := make(chan struct{}, 3)
	chunk := func(n int64, snapshot string) *chunk {
		snap, err := parseXidSnapshot(snapshot)
		if err != nil {
			t.Fatal(err)
		}
		c := &chunk{n: n, rel: rel, full: true, snap: snap, last: []string{"3"}, sent: next}
		for id := 1; id <= 3; id++ {
			c.events = append(c.events, &cdcv1.ChangeEvent{Snapshot: true, NewTuple: tuple.Of("x", strconv.Itoa(id))})
			c.keys = append(c.keys, encodeKey([]string{strconv.Itoa(id)}))
		}
		return c
	}
	// Between the watermarks of chunk 7.
	bf.windows[0] = 7
	bf.observeTruncate(other, 101)
	bf.observeTruncate(rel, 101)
	if kept := bf.keep(chunk(7, "100:110:"), 5000); len(kept) != 0 {
		t.Fatalf("chunk 7 kept %d rows a TRUNCATE between its watermarks emptied", len(kept))
	}
	bf.advance(chunk(7, "100:110:"), 0, 5000)
	// Before chunk 8's LW, by a transaction its snapshot does not see.
	bf.observeTruncate(rel, 112)
	bf.windows[0] = 8
	if kept := bf.keep(chunk(8, "110:113:112"), 6000); len(kept) != 0 {
		t.Fatalf("chunk 8 kept %d rows its snapshot read before the TRUNCATE", len(kept))
	}
	bf.advance(chunk(8, "110:113:112"), 0, 6000)
	bf.windows[0] = 9
	if kept := bf.keep(chunk(9, "113:113:"), 7000); len(kept) != 3 {
		t.Fatalf("chunk 9, read after the TRUNCATE, kept %d of 3 rows", len(kept))
	}
	if bf.advance(chunk(9, "113:113:"), 3, 7000); len(bf.truncated) != 0 {
		t.Fatalf("a TRUNCATE every later snapshot sees is still noted: %v", bf.truncated)
	}
}
