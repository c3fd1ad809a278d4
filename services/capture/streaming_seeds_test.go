package capture

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/ferry-cdc/ferry/services/capture/wire"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// TestStreamedFuzzSeedsFromPostgres records what protocol 2 sends for
// streamed transactions (committed, rolled back whole, with a rolled-back
// subtransaction, interleaved) and checks that the stream's handler takes
// it as the fuzz targets do. With FERRY_UPDATE_FUZZ_SEEDS=1 it also writes
// the stream-real-* seeds of FuzzParseStreamMessage and
// FuzzStreamedMessages (writeSeeds leaves them alone).
func TestStreamedFuzzSeedsFromPostgres(t *testing.T) {
	e := newStreamPG(t, nil)
	raw, inBlock := checkRecordedWorkload(t, e, "stream_seeds", 2)
	if os.Getenv("FERRY_UPDATE_FUZZ_SEEDS") == "1" {
		writeStreamSeeds(t, raw, inBlock)
	}
}

// checkRecordedWorkload runs runStreamedWorkload on a table name of its
// own, records what the slot sends with the given protocol, and checks
// that the stream's handler takes it: every message parses, every kind
// came, and exactly the committed rows come out, in commit order.
func checkRecordedWorkload(t *testing.T, e *streamPG, name string, protocol int) ([][]byte, []bool) {
	t.Helper()
	q, start := e.task(t, name)
	raw, inBlock := recordStreamedWorkload(t, e, q, start.GetSlotName(), start.GetPublicationName(), protocol)
	parallel := protocol == 4
	kinds := map[string]int{}
	for i, m := range raw {
		if _, err := wire.ParseStreamMessage(m, inBlock[i], parallel); err != nil {
			t.Fatalf("real message %d (%q) is refused: %v", i, m[0], err)
		}
		kinds[streamKind(m, inBlock[i])]++
	}
	for _, k := range []string{"S", "E", "c", "A-top", "A-sub", "R-stream", "I-stream", "B", "C", "I", "M"} {
		if kinds[k] == 0 {
			t.Fatalf("the workload produced no %s message: %v", k, kinds)
		}
	}
	out := &recorder{}
	st := fuzzStreamV2(out, t.TempDir())
	if parallel {
		st = fuzzStreamV4(out, t.TempDir())
	}
	if err := feed(st, raw); err != nil {
		t.Fatalf("the real sequence is refused: %v", err)
	}
	out.batches = append(out.batches, st.batch.take())
	want := slices.Concat(seq(1, 1000), seq(3001, 3010), []int64{9001}, seq(20001, 22000), seq(10001, 14000))
	if got := ids(out.batches); !slices.Equal(got, want) {
		t.Fatalf("%d rows, want %d: %v", len(got), len(want), got)
	}
	checkFedBatches(t, raw, out.batches, st.rels)
	checkStreamedRows(t, raw, out.batches)
	checkWatermarks(t, out.batches)
	return raw, inBlock
}

// streamKind names a message for the coverage check: stream blocks' own
// kinds get a suffix, and aborts say what they end.
func streamKind(m []byte, inBlock bool) string {
	k := string(m[:1])
	switch {
	case inBlock && k != "E":
		return k + "-stream"
	case k == "A" && string(m[1:5]) == string(m[5:9]):
		return "A-top"
	case k == "A":
		return "A-sub"
	}
	return k
}

// recordStreamedWorkload runs the workload and returns every message the
// slot sends with protocol (2 or 4) up to the end marker, and whether a
// stream block was open before each.
func recordStreamedWorkload(t *testing.T, e *streamPG, q, slot, pub string, protocol int) ([][]byte, []bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	repl, err := pgsource.ConnectReplication(ctx, e.pg.Source())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = repl.Close(context.Background()) }()
	version, err := pgsource.ServerVersion(ctx, e.pg.Conn(t))
	if err != nil {
		t.Fatal(err)
	}
	args, streaming := pluginArgs(version, pub, true, protocol)
	if want := map[int]wire.StreamMode{2: wire.StreamOn, 4: wire.StreamParallel}[protocol]; streaming != want {
		t.Fatalf("plugin arguments %v on server %d ask for %s, want %s", args, version, streaming, want)
	}
	if err := pglogrepl.StartReplication(ctx, repl, slot, 0, pglogrepl.StartReplicationOptions{Mode: pglogrepl.LogicalReplication, PluginArgs: args}); err != nil {
		t.Fatal(err)
	}
	runStreamedWorkload(t, e, q)
	var raw [][]byte
	var inBlock []bool
	open := false
	for {
		m := nextWALData(ctx, t, repl, len(raw))
		raw, inBlock = append(raw, m), append(inBlock, open)
		switch m[0] {
		case wire.MsgStreamStart:
			open = true
		case wire.MsgStreamStop:
			open = false
		}
		if m[0] == 'M' && !open && strings.Contains(string(m), seedEndPrefix) {
			return raw, inBlock
		}
	}
}

// runStreamedWorkload: each large part is well over the 64kB
// logical_decoding_work_mem, so the walsender streams it while decoding,
// before it reaches the rollback or commit that ends it.
func runStreamedWorkload(t *testing.T, e *streamPG, q string) {
	t.Helper()
	sub := e.begin(t)
	txExec(t, sub, insertRange(q, 1, 1000), "SAVEPOINT s1", insertRange(q, 1001, 3000),
		"ROLLBACK TO SAVEPOINT s1", insertRange(q, 3001, 3010))
	if err := sub.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	aborted := e.begin(t)
	txExec(t, aborted, insertRange(q, 5001, 8000))
	if err := aborted.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, e.pg.Conn(t), insertRange(q, 9001, 9001))
	a, b := e.begin(t), e.begin(t)
	txExec(t, a, insertRange(q, 10001, 12000))
	txExec(t, b, insertRange(q, 20001, 22000))
	txExec(t, a, insertRange(q, 12001, 14000))
	for _, tx := range []interface{ Commit(context.Context) error }{b, a} {
		if err := tx.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Exec(t, e.pg.Conn(t), `SELECT pg_logical_emit_message(false, '`+seedEndPrefix+`', '')`)
}

// writeStreamSeeds writes the first real message of each kind, and the
// sequence with each stream block cut to its first three messages, which
// keeps the protocol while staying small enough to mutate quickly.
func writeStreamSeeds(t *testing.T, raw [][]byte, inBlock []bool) {
	t.Helper()
	seen := map[string]bool{}
	for i, m := range raw {
		k := streamKind(m, inBlock[i])
		if seen[k] {
			continue
		}
		seen[k] = true
		writeSeed(t, "FuzzParseStreamMessage", fmt.Sprintf("stream-real-%02d-%s", len(seen), k),
			"[]byte("+strconv.Quote(string(m))+")\nbool("+strconv.FormatBool(inBlock[i])+")")
	}
	var small [][]byte
	kept := 0
	for i, m := range raw {
		if inBlock[i] && m[0] != wire.MsgStreamStop {
			if kept++; kept > 3 {
				continue
			}
		} else {
			kept = 0
		}
		small = append(small, m)
	}
	writeSeed(t, "FuzzStreamedMessages", "stream-real-workload-small", "[]byte("+strconv.Quote(string(joinSequence(small...)))+")")
}
