package capture

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/capture/internal/pgoutputtest"
	"github.com/ferry-cdc/ferry/services/capture/wire"
)

// Builders of protocol 2 messages as pgoutput writes them. xid is 0
// outside a stream block, where messages carry none.

func rowIDs(evs []*cdcv1.ChangeEvent) []int64 {
	var out []int64
	for _, ev := range evs {
		out = append(out, colInt(ev.GetNewTuple(), 0))
	}
	return out
}

// Two streamed transactions interleave with each other and with an
// ordinary one; one loses a subtransaction, the other aborts. What arrives
// is what protocol 1 would have sent: the ordinary transaction at its
// commit, then the surviving streamed rows at theirs, in streamed order,
// with the commit's LSNs, and watermarks only at commits.
//
// Protocol 4 (streaming 'parallel') differs only in its longer aborts.
func TestStreamedTransactionsReplayAtTheirCommit(t *testing.T) {
	v4Abort := func(xid, subxid uint32) []byte { return pgoutputtest.StreamAbortV4(xid, subxid, 0x4000, 1) }
	t.Run("protocol 2", func(t *testing.T) { checkStreamedReplay(t, fuzzStreamV2, pgoutputtest.StreamAbort) })
	t.Run("protocol 4", func(t *testing.T) { checkStreamedReplay(t, fuzzStreamV4, v4Abort) })
}

func checkStreamedReplay(t *testing.T, newStream func(sender, string) *stream, abort func(xid, subxid uint32) []byte) {
	dir := t.TempDir()
	out := &recorder{}
	st := newStream(out, dir)
	const oid = 16400
	msgs := [][]byte{
		pgoutputtest.StreamStart(700, true),
		pgoutputtest.Relation(700, oid),
		pgoutputtest.Insert(700, oid, 1),
		pgoutputtest.Insert(701, oid, 2), // subtransaction 701, rolled back below
		// The relation's definition comes with the rolled-back
		// subtransaction's change; pgoutput does not repeat it for row 5.
		pgoutputtest.Relation(701, oid+1),
		pgoutputtest.Insert(701, oid+1, 20),
		pgoutputtest.StreamStop(),
		pgoutputtest.StreamStart(800, true),
		pgoutputtest.Relation(800, oid),
		pgoutputtest.Insert(800, oid, 90), // transaction 800 aborts
		pgoutputtest.StreamStop(),
		pgoutputtest.Begin(900, 0x3000),
		pgoutputtest.Relation(0, oid),
		pgoutputtest.Insert(0, oid, 50),
		pgoutputtest.Commit(0x3000, 0x3100),
		abort(700, 701),
		pgoutputtest.StreamStart(700, false),
		pgoutputtest.Insert(702, oid, 3),
		pgoutputtest.Insert(700, oid, 4),
		pgoutputtest.Insert(700, oid+1, 5),
		pgoutputtest.StreamStop(),
		abort(800, 800),
		pgoutputtest.StreamCommit(700, 0x5000, 0x5100),
	}
	if err := feed(st, msgs); err != nil {
		t.Fatal(err)
	}
	batches := append(out.batches, st.batch.take())
	evs := events(batches)
	if got := rowIDs(evs); !slices.Equal(got, []int64{50, 1, 3, 4, 5}) {
		t.Fatalf("rows %v, want [50 1 3 4 5]", got)
	}
	lsns := feedLSNs(msgs)
	for i, want := range []struct {
		xid         uint32
		commit, lsn uint64
	}{
		{900, 0x3000, uint64(lsns[13])}, {700, 0x5000, uint64(lsns[2])}, {700, 0x5000, uint64(lsns[17])},
		{700, 0x5000, uint64(lsns[18])}, {700, 0x5000, uint64(lsns[19])},
	} {
		ev := evs[i]
		if ev.GetXid() != want.xid || ev.GetCommitLsn() != want.commit || ev.GetLsn() != want.lsn {
			t.Fatalf("row %d: xid %d commit %x lsn %x, want %d %x %x", colInt(ev.GetNewTuple(), 0),
				ev.GetXid(), ev.GetCommitLsn(), ev.GetLsn(), want.xid, want.commit, want.lsn)
		}
	}
	checkWatermarks(t, batches)
	if w := lastWatermark(batches); w != 0x5100 {
		t.Fatalf("last watermark %x, want the streamed commit's end 5100", w)
	}
	if files := spoolFiles(t, dir); len(files) != 0 {
		t.Fatalf("spools left: %v", files)
	}
}

// Nothing of a streamed transaction moves a watermark or reaches the
// client before its commit, and a stream that ends deletes what it spooled.
func TestOpenStreamedTransactionSendsNothing(t *testing.T) {
	dir := t.TempDir()
	out := &recorder{}
	st := fuzzStreamV2(out, dir)
	err := feed(st, [][]byte{
		pgoutputtest.StreamStart(700, true), pgoutputtest.Relation(700, 16400), pgoutputtest.Insert(700, 16400, 1), pgoutputtest.StreamStop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.batches) != 0 || !st.batch.empty() {
		t.Fatalf("an open streamed transaction produced %v, pending %v", out.batches, st.batch.cur)
	}
	if len(spoolFiles(t, dir)) != 1 {
		t.Fatal("the streamed transaction has no spool")
	}
	if err := st.spools.RemoveAll(); err != nil {
		t.Fatal(err)
	}
	if files := spoolFiles(t, dir); len(files) != 0 {
		t.Fatalf("spools left: %v", files)
	}
}

// Protocol violations are errors, never silently dropped data: a commit of
// a transaction this stream never saw, a Begin inside a stream block, a
// stream message inside an ordinary transaction.
func TestStreamProtocolViolations(t *testing.T) {
	for name, msgs := range map[string][][]byte{
		"commit without spool":       {pgoutputtest.StreamCommit(5, 0x5000, 0x5100)},
		"begin inside a block":       {pgoutputtest.StreamStart(5, true), pgoutputtest.Begin(6, 0x3000)},
		"block inside a transaction": {pgoutputtest.Begin(6, 0x3000), pgoutputtest.StreamStart(5, true)},
		"later block first":          {pgoutputtest.StreamStart(5, false)},
		"stop outside a block":       {pgoutputtest.StreamStop()},
	} {
		st := fuzzStreamV2(&recorder{}, t.TempDir())
		if err := feed(st, msgs); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// pluginArgs asks for protocol 4 only where the server has it, and
// otherwise falls back to protocol 2, or 1.
func TestPluginArgsStreamProtocol(t *testing.T) {
	for _, c := range []struct {
		version, protocol int
		stream            bool
		want              wire.StreamMode
		proto, streaming  string
	}{
		{170000, 4, true, wire.StreamParallel, "proto_version '4'", "streaming 'parallel'"},
		{160000, 4, true, wire.StreamParallel, "proto_version '4'", "streaming 'parallel'"},
		{160000, 2, true, wire.StreamOn, "proto_version '2'", "streaming 'on'"},
		{150000, 4, true, wire.StreamOn, "proto_version '2'", "streaming 'on'"},
		{140000, 4, true, wire.StreamOn, "proto_version '2'", "streaming 'on'"},
		{170000, 4, false, wire.StreamOff, "proto_version '1'", ""},
		{130000, 4, true, wire.StreamOff, "proto_version '1'", ""},
	} {
		args, mode := pluginArgs(c.version, "pub", c.stream, c.protocol)
		joined := strings.Join(args, ", ")
		if mode != c.want || args[0] != c.proto || !strings.Contains(joined, "streaming") != (c.streaming == "") ||
			c.streaming != "" && !slices.Contains(args, c.streaming) {
			t.Errorf("version %d protocol %d stream %v: %v (%s), want %s with %q", c.version, c.protocol, c.stream, args, mode, c.proto, c.streaming)
		}
	}
}

// spoolFiles lists the spools in dir.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "ferry-*.spool"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}
