package capture

import (
	"context"
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// snapshotRead is everything one ReadSnapshot call sent.
type snapshotRead struct {
	started  *capturev1.SnapshotStarted
	batches  []*cdcv1.ChangeBatch
	progress []*capturev1.SnapshotProgress
	order    []string // kinds in arrival order
}

func readSnapshot(t *testing.T, c capturev1.CaptureServiceClient, req *capturev1.ReadSnapshotRequest) snapshotRead {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	stream, err := c.ReadSnapshot(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var out snapshotRead
	receiveSnapshot(t, stream, &out)
	return out
}

// receiveSnapshot adds what the stream sends to out until it ends.
func receiveSnapshot(t *testing.T, stream grpc.ServerStreamingClient[capturev1.ReadSnapshotResponse], out *snapshotRead) {
	t.Helper()
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("ReadSnapshot: %v", err)
		}
		switch {
		case resp.GetStarted() != nil:
			out.started = resp.GetStarted()
			out.order = append(out.order, "started")
		case resp.GetBatch() != nil:
			out.batches = append(out.batches, resp.GetBatch())
			out.order = append(out.order, "batch")
		case resp.GetProgress() != nil:
			out.progress = append(out.progress, resp.GetProgress())
			out.order = append(out.order, "progress")
		}
	}
}

// createAwkward makes a table whose values exercise every escape of COPY's
// text format, NULL against the text "\N", a dropped and a generated
// column (neither of which pgoutput sends), and 2,500 ordinary rows.
func createAwkward(t *testing.T, name string) {
	t.Helper()
	conn := testenv.PG(t)
	q := quoteIdent("public", name)
	testenv.Exec(t, conn, `CREATE TABLE `+q+` (
		id int8 PRIMARY KEY, gone int, note text, payload bytea, at timestamptz, d date,
		ratio float8, amount numeric(12,3), tags text[], doc jsonb, twice int8 GENERATED ALWAYS AS (id * 2) STORED)`,
		`ALTER TABLE `+q+` DROP COLUMN gone`,
		`INSERT INTO `+q+` (id, note, payload, at, d, ratio, amount, tags, doc) VALUES
		 (1, E'tab\there\nnew\\line\r\b\f\v end', '\x5c0a09ff', '2024-01-02 03:04:05.123456+00', '0044-03-15 BC', 'NaN', -1.5, '{"a\tb","c\\d",NULL}', '{"k": "v\n"}'),
		 (2, '\N', '\x', 'infinity', 'infinity', '-Infinity', 'NaN', '{}', 'null'),
		 (3, '', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
		 (4, 'ünïcødé ✓', '\x00', '1999-12-31 23:59:59+05:30', '2000-02-29', 1e-300, 99999999.999, '{x}', '[1, 2.50]')`,
		`INSERT INTO `+q+` (id, note, amount) SELECT g, 'row ' || g, g / 7.0 FROM generate_series(5, 2504) g`)
	t.Cleanup(func() { testenv.Exec(t, testenv.PG(t), `DROP TABLE IF EXISTS `+q) })
}

func TestSnapshotMeetsTheStreamWithIdenticalValues(t *testing.T) {
	client := startServer(t)
	conn := testenv.PG(t)
	name, other := testenv.UniqueName("snap"), testenv.UniqueName("snap_nokey")
	createAwkward(t, name)
	oq := quoteIdent("public", other)
	testenv.Exec(t, conn, `CREATE TABLE `+oq+` (k text, v int)`, `ALTER TABLE `+oq+` REPLICA IDENTITY FULL`,
		`INSERT INTO `+oq+` VALUES ('a', 1), ('b', NULL), (NULL, 3)`)
	t.Cleanup(func() { testenv.Exec(t, testenv.PG(t), `DROP TABLE IF EXISTS `+oq) })
	r := newReplication(t, testenv.UniqueName("ferry_pub"), table("public", name), table("", other))

	ens, err := client.EnsureReplication(context.Background(), &capturev1.EnsureReplicationRequest{
		Source: testenv.Source(t), SlotName: r.slot, PublicationName: r.pub, Tables: r.tables, PublicationOnly: true,
	})
	if err != nil || ens.GetSlotCreated() || ens.GetConfirmedLsn() != 0 || !ens.GetPublicationCreated() {
		t.Fatalf("EnsureReplication(publication_only) = %v, %v; want the publication and no slot", ens, err)
	}
	if _, err := lookupSlot(context.Background(), conn, r.slot); !errors.Is(err, errSlotMissing) {
		t.Fatalf("slot after publication_only: %v, want none", err)
	}

	req := &capturev1.ReadSnapshotRequest{Source: testenv.Source(t), SlotName: r.slot, PublicationName: r.pub,
		Tables: r.tables, MaxBatchEvents: 1000, Parallelism: 2}
	snap := readSnapshot(t, client, req)
	checkSnapshotShape(t, snap, map[string]uint64{name: 2504, other: 3})
	slot := readSlot(t, conn, r.slot)
	if got := slot.confirmed; uint64(got) != snap.started.GetConsistentLsn() {
		t.Fatalf("slot confirmed_flush_lsn %s, snapshot consistent point %d: incremental would not start where the snapshot ends", got, snap.started.GetConsistentLsn())
	}

	// The same values through pgoutput: copies of the awkward rows, under
	// new ids, must decode to exactly what the snapshot decoded.
	s := openStream(t, client, r.start())
	q := quoteIdent("public", name)
	testenv.Exec(t, conn, `INSERT INTO `+q+` (id, note, payload, at, d, ratio, amount, tags, doc)
		SELECT id + 10000, note, payload, at, d, ratio, amount, tags, doc FROM `+q+` WHERE id <= 4 ORDER BY id`)
	streamed := s.untilEvents(t, 4)
	compareWithSnapshot(t, snap, streamed, name)
	s.close()

	// A second snapshot replaces the slot left by the first.
	again := readSnapshot(t, client, req)
	checkSnapshotShape(t, again, map[string]uint64{name: 2508, other: 3})
	if again.started.GetConsistentLsn() <= snap.started.GetConsistentLsn() {
		t.Fatalf("second snapshot at %d, first at %d: want the slot dropped and created anew", again.started.GetConsistentLsn(), snap.started.GetConsistentLsn())
	}
}

// checkSnapshotShape checks the order of a snapshot's messages, its batches
// and its final counts against want (rows per table name).
func checkSnapshotShape(t *testing.T, snap snapshotRead, want map[string]uint64) {
	t.Helper()
	lsn := snap.started.GetConsistentLsn()
	if len(snap.order) < 3 || snap.order[0] != "started" || lsn == 0 || snap.started.GetSnapshotTime() == nil {
		t.Fatalf("snapshot began with %v (started %v), want started with a consistent point and time", snap.order[:min(3, len(snap.order))], snap.started)
	}
	n := len(snap.order)
	last := snap.batches[len(snap.batches)-1]
	if snap.order[n-2] != "batch" || len(last.GetEvents()) != 0 || last.GetWatermarkLsn() != lsn || snap.order[n-1] != "progress" {
		t.Fatalf("snapshot ended with %v and last batch %v; want an empty batch with watermark %d, then progress", snap.order[n-2:], last, lsn)
	}
	names := map[uint32]string{}
	got := map[string]uint64{}
	for i, b := range snap.batches {
		for _, rel := range b.GetRelations() {
			names[rel.GetOid()] = rel.GetTable()
		}
		if len(b.GetEvents()) > 1000 || b.GetWatermarkLsn() != 0 && i != len(snap.batches)-1 {
			t.Fatalf("batch %d: %d events, watermark %d; want at most 1000 and no watermark before the last", i, len(b.GetEvents()), b.GetWatermarkLsn())
		}
		for _, ev := range b.GetEvents() {
			table, ok := names[ev.GetRelationOid()]
			if !ok || !ev.GetSnapshot() || ev.GetOp() != cdcv1.Operation_OPERATION_INSERT || ev.GetLsn() != lsn ||
				ev.GetCommitLsn() != lsn || !proto.Equal(ev.GetCommitTime(), snap.started.GetSnapshotTime()) {
				t.Fatalf("batch %d: bad snapshot event (relation known: %v): %v", i, ok, ev)
			}
			got[table]++
		}
	}
	final := snap.progress[len(snap.progress)-1]
	if !final.GetDone() || len(final.GetTables()) != len(want) {
		t.Fatalf("final progress %v, want done with %d tables", final, len(want))
	}
	for _, c := range final.GetTables() {
		if w := want[c.GetTable().GetTable()]; c.GetRows() != w || got[c.GetTable().GetTable()] != w || !c.GetDone() {
			t.Errorf("table %s: counted %d, sent %d, want %d and done", c.GetTable().GetTable(), c.GetRows(), got[c.GetTable().GetTable()], w)
		}
	}
}

// compareWithSnapshot matches each streamed row (id+10000) to its snapshot
// original: same relation definition, same values bar the id and the
// generated column, which pgoutput does not send.
func compareWithSnapshot(t *testing.T, snap snapshotRead, streamed []*cdcv1.ChangeBatch, name string) {
	t.Helper()
	var snapRel, streamRel *cdcv1.Relation
	byID := map[int64]*cdcv1.ChangeEvent{}
	for _, b := range snap.batches {
		for _, rel := range b.GetRelations() {
			if rel.GetTable() == name {
				snapRel = rel
			}
		}
		for _, ev := range b.GetEvents() {
			if ev.GetRelationOid() == snapRel.GetOid() {
				byID[colInt(ev.GetNewTuple(), 0)] = ev
			}
		}
	}
	for _, b := range streamed {
		if len(b.GetRelations()) > 0 {
			streamRel = b.GetRelations()[0]
		}
	}
	if !proto.Equal(snapRel, streamRel) {
		t.Fatalf("relations differ:\nsnapshot %v\nstream   %v", snapRel, streamRel)
	}
	if len(snapRel.GetColumns()) != 9 {
		t.Fatalf("relation has %d columns, want 9 (no dropped, no generated column): %v", len(snapRel.GetColumns()), snapRel)
	}
	for i, ev := range events(streamed) {
		id := colInt(ev.GetNewTuple(), 0)
		orig := byID[id-10000]
		if orig == nil {
			t.Fatalf("streamed row %d has no snapshot original", id)
		}
		if n := tuple.Len(orig.GetNewTuple()); n != tuple.Len(ev.GetNewTuple()) {
			t.Fatalf("row %d: snapshot has %d columns, stream %d", id-10000, n, tuple.Len(ev.GetNewTuple()))
		}
		for j := 1; j < tuple.Len(orig.GetNewTuple()); j++ {
			a, ak := tuple.Field(orig.GetNewTuple(), j)
			b, bk := tuple.Field(ev.GetNewTuple(), j)
			if ak != bk || string(a) != string(b) {
				t.Errorf("row %d (event %d) column %s: snapshot %q (%c), stream %q (%c)", id-10000, i, snapRel.GetColumns()[j].GetName(), a, ak, b, bk)
			}
		}
	}
}
