package capture

import (
	"slices"
	"testing"

	"github.com/jackc/pglogrepl"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/capture/internal/pgoutputtest"
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
