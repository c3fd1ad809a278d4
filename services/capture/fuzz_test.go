package capture

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"testing"

	"github.com/jackc/pglogrepl"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/capture/decode"
	"github.com/ferry-cdc/ferry/services/capture/internal/pgoutputtest"
	"github.com/ferry-cdc/ferry/services/capture/wire"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// The seed corpora under testdata/fuzz are real pgoutput messages and
// values, written by TestFuzzSeedsFromPostgres (see there); plain go test
// runs them, go test -fuzz explores from them.

// FuzzStreamMessages feeds a sequence of messages (each preceded by its
// length as a big-endian uint16) through the stream's handler, as if the
// walsender had sent them: no panic, malformed input is an error, logical
// messages never become rows, and every row has its relation's width.
func FuzzStreamMessages(f *testing.F) {
	f.Add(joinSequence([]byte("B" + string(make([]byte, 20)))))
	f.Fuzz(func(t *testing.T, seq []byte) {
		msgs := splitSequence(seq)
		out := &recorder{}
		st := fuzzStream(out)
		err := feed(st, msgs)
		if errors.Is(err, wire.ErrDecoderPanic) {
			t.Fatalf("decoder panicked: %v", err)
		}
		if err == nil {
			// Whatever is pending goes out, as at the batch deadline.
			if !st.batch.empty() {
				out.batches = append(out.batches, st.batch.take())
			}
		}
		checkFedBatches(t, msgs, out.batches, st.rels)
	})
}

// FuzzStreamedMessages is FuzzStreamMessages speaking protocol 2, with
// stream blocks, aborts and commits: besides its checks, no row of a
// rolled-back (sub)transaction, nor of one not committed yet, is shipped,
// and every streamed row carries its commit's LSN and top-level xid.
func FuzzStreamedMessages(f *testing.F) {
	f.Add(joinSequence(pgoutputtest.StreamStart(7, true), pgoutputtest.StreamStop(), pgoutputtest.StreamCommit(7, 1, 2)))
	f.Fuzz(func(t *testing.T, seq []byte) {
		msgs := splitSequence(seq)
		out := &recorder{}
		dir := t.TempDir()
		st := fuzzStreamV2(out, dir)
		err := feed(st, msgs)
		if errors.Is(err, wire.ErrDecoderPanic) {
			t.Fatalf("decoder panicked: %v", err)
		}
		if err == nil && !st.batch.empty() {
			out.batches = append(out.batches, st.batch.take())
		}
		checkFedBatches(t, msgs, out.batches, st.rels)
		checkStreamedRows(t, msgs, out.batches)
		if err := st.spools.RemoveAll(); err != nil {
			t.Fatal(err)
		}
	})
}

// streamOrigin is where a message inside a stream block came from.
type streamOrigin struct {
	top, sub uint32
	pos      int
}

// streamedOrigins maps the feed LSN of every message inside a stream block
// to its transaction, and says for each message whether a block was open
// before it, following the protocol as the handler does up to its first
// error (after which nothing more is shipped).
func streamedOrigins(msgs [][]byte) (map[uint64]streamOrigin, []bool) {
	lsns := feedLSNs(msgs)
	origins := map[uint64]streamOrigin{}
	inBlock := make([]bool, len(msgs))
	open, top := false, uint32(0)
	for i, m := range msgs {
		inBlock[i] = open
		switch {
		case len(m) == 0:
		case open && m[0] == wire.MsgStreamStop:
			open = false
		case open && wire.HasStreamXid(m[0]) && len(m) >= 5:
			origins[uint64(lsns[i])] = streamOrigin{top: top, sub: binary.BigEndian.Uint32(m[1:]), pos: i}
		case !open && m[0] == wire.MsgStreamStart && len(m) >= 5:
			open, top = true, binary.BigEndian.Uint32(m[1:])
		}
	}
	return origins, inBlock
}

func checkStreamedRows(t *testing.T, msgs [][]byte, batches []*cdcv1.ChangeBatch) {
	t.Helper()
	origins, inBlock := streamedOrigins(msgs)
	for _, ev := range events(batches) {
		o, ok := origins[ev.GetLsn()]
		if !ok {
			continue
		}
		if ev.GetXid() != o.top {
			t.Fatalf("a row of transaction %d was shipped as %d", o.top, ev.GetXid())
		}
		checkRowEnd(t, msgs, inBlock, o, ev)
	}
}

// checkRowEnd: the first end of o's transaction after it is a commit, with
// no abort of its subtransaction before, and the row has its commit LSN.
func checkRowEnd(t *testing.T, msgs [][]byte, inBlock []bool, o streamOrigin, ev *cdcv1.ChangeEvent) {
	t.Helper()
	for j := o.pos + 1; j < len(msgs); j++ {
		m := msgs[j]
		if inBlock[j] || len(m) < 5 || binary.BigEndian.Uint32(m[1:]) != o.top {
			continue
		}
		switch {
		case m[0] == wire.MsgStreamAbort && len(m) >= 9:
			if sub := binary.BigEndian.Uint32(m[5:]); sub == o.top || sub == o.sub {
				t.Fatalf("a row of %d/%d was shipped though message %d aborted it", o.top, o.sub, j)
			}
		case m[0] == wire.MsgStreamCommit && len(m) >= 14:
			if want := binary.BigEndian.Uint64(m[6:]); ev.GetCommitLsn() != want {
				t.Fatalf("a row of %d carries commit %x, its commit is at %x", o.top, ev.GetCommitLsn(), want)
			}
			return
		}
	}
	t.Fatalf("a row of %d/%d was shipped though its transaction never committed", o.top, o.sub)
}

// recorder is the gRPC stream's sending half, keeping what was sent.
type recorder struct{ batches []*cdcv1.ChangeBatch }

func (r *recorder) Send(resp *capturev1.StreamChangesResponse) error {
	r.batches = append(r.batches, resp.GetBatch())
	return nil
}

// fuzzStream is a stream with no connections: Relation messages record
// their columns' own types as their base types instead of asking the
// catalog.
func fuzzStream(out sender) *stream {
	logger := slog.New(slog.DiscardHandler)
	st := newStream(logger, out, nil, nil, 0x1000000, 0x1000000, newBatcher(4, 1000))
	st.defineRelation = func(_ context.Context, rm *pglogrepl.RelationMessage) error {
		types := make([]decode.ColumnType, len(rm.Columns))
		for j, c := range rm.Columns {
			types[j] = decode.ColumnType{Name: strconv.Itoa(int(c.DataType)), BaseOID: c.DataType}
		}
		st.rels.Put(rm, types, nil)
		return nil
	}
	return st
}

// fuzzStreamV2 is fuzzStream speaking protocol 2, spooling to dir.
func fuzzStreamV2(out sender, dir string) *stream {
	st := fuzzStream(out)
	st.spools = wire.NewSpoolSet(dir, "fuzz")
	st.streaming = wire.StreamOn
	return st
}

// fuzzStreamV4 is fuzzStreamV2 speaking protocol 4 with streaming
// 'parallel'.
func fuzzStreamV4(out sender, dir string) *stream {
	st := fuzzStreamV2(out, dir)
	st.streaming = wire.StreamParallel
	return st
}

func joinSequence(msgs ...[]byte) []byte {
	var out []byte
	for _, m := range msgs {
		out = binary.BigEndian.AppendUint16(out, uint16(len(m)))
		out = append(out, m...)
	}
	return out
}

// splitSequence undoes joinSequence; a short last length takes what is left.
func splitSequence(seq []byte) [][]byte {
	var out [][]byte
	for len(seq) >= 2 {
		n := int(binary.BigEndian.Uint16(seq))
		seq = seq[2:]
		n = min(n, len(seq))
		out = append(out, seq[:n])
		seq = seq[n:]
	}
	return out
}

// feedLSN is the WAL position feed gives message i of msgs.
func feedLSNs(msgs [][]byte) []pglogrepl.LSN {
	out := make([]pglogrepl.LSN, len(msgs))
	lsn := pglogrepl.LSN(0x1000000)
	for i, m := range msgs {
		lsn += pglogrepl.LSN(len(m) + 1)
		out[i] = lsn
	}
	return out
}

// feed hands each message to the stream at increasing LSNs (feedLSNs).
func feed(st *stream, msgs [][]byte) error {
	for i, lsn := range feedLSNs(msgs) {
		if err := st.data(context.Background(), pglogrepl.XLogData{WALStart: lsn, ServerWALEnd: lsn, WALData: msgs[i]}); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
	}
	return nil
}

// checkFedBatches: events come only from Insert, Update, Delete and
// Truncate messages; each row has as many values as its relation has
// columns, and a TRUNCATE none, over defined relations.
func checkFedBatches(t *testing.T, msgs [][]byte, batches []*cdcv1.ChangeBatch, rels *decode.Relations) {
	t.Helper()
	changes := 0
	for _, m := range msgs {
		if len(m) > 0 && bytes.IndexByte([]byte("IUDT"), m[0]) >= 0 {
			changes++
		}
	}
	got := events(batches)
	if len(got) > changes {
		t.Fatalf("%d rows from %d change messages: something else was shipped as a row", len(got), changes)
	}
	for _, ev := range got {
		if ev.GetOp() == cdcv1.Operation_OPERATION_TRUNCATE {
			checkFedTruncate(t, ev, rels)
			continue
		}
		rel, err := rels.Get(ev.GetRelationOid())
		if err != nil {
			t.Fatalf("a row of an undefined relation was shipped: %v", err)
		}
		for _, tu := range []*cdcv1.Tuple{ev.GetNewTuple(), ev.GetOldTuple()} {
			if err := tuple.Check(tu, len(rel.Msg.Columns)); err != nil {
				t.Fatalf("row of relation %d: %v", ev.GetRelationOid(), err)
			}
		}
	}
}

func checkFedTruncate(t *testing.T, ev *cdcv1.ChangeEvent, rels *decode.Relations) {
	t.Helper()
	oids := ev.GetTruncate().GetRelationOids()
	if len(oids) == 0 || oids[0] != ev.GetRelationOid() || ev.GetNewTuple() != nil || ev.GetOldTuple() != nil {
		t.Fatalf("TRUNCATE event of relation %d lists %v and carries values", ev.GetRelationOid(), oids)
	}
	for _, oid := range oids {
		if _, err := rels.Get(oid); err != nil {
			t.Fatalf("a TRUNCATE of an undefined relation was shipped: %v", err)
		}
	}
}
