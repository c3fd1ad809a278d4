package capture

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ferry-cdc/ferry/services/capture/wire"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// seedEndPrefix marks the end of the workload in the WAL.
const seedEndPrefix = "ferry_seed_end"

// TestFuzzSeedsFromPostgres records the raw pgoutput messages of a workload
// that exercises every message and column kind capture handles, and checks
// that the stream's handler takes all of them as the fuzz targets do. With
// FERRY_UPDATE_FUZZ_SEEDS=1 it also rewrites the seed corpora under
// testdata/fuzz from them.
func TestFuzzSeedsFromPostgres(t *testing.T) {
	raw := recordWorkload(t)
	kinds := map[byte]int{}
	for i, m := range raw {
		if _, err := wire.ParseMessage(m); err != nil {
			t.Fatalf("real message %d (%q) is refused: %v", i, m[0], err)
		}
		kinds[m[0]]++
	}
	for _, k := range []byte("BCRYIUDTM") {
		if kinds[k] == 0 {
			t.Fatalf("the workload produced no %q message: %v", k, kinds)
		}
	}
	out := &recorder{}
	st := fuzzStream(out)
	if err := feed(st, raw); err != nil {
		t.Fatalf("the real sequence is refused: %v", err)
	}
	out.batches = append(out.batches, st.batch.take())
	changes := kinds['I'] + kinds['U'] + kinds['D'] + kinds['T']
	if got := len(events(out.batches)); got != changes {
		t.Fatalf("%d events from %d change and truncate messages", got, changes)
	}
	checkFedBatches(t, raw, out.batches, st.rels)
	if os.Getenv("FERRY_UPDATE_FUZZ_SEEDS") == "1" {
		writeSeeds(t, raw)
	}
}

// recordWorkload runs the workload and returns the WALData of every
// message the slot streams up to the end marker.
func recordWorkload(t *testing.T) [][]byte {
	t.Helper()
	client := startServer(t)
	conn := testenv.PG(t)
	name, full := testenv.UniqueName("seed"), testenv.UniqueName("seed_full")
	mood := testenv.UniqueName("seed_mood")
	q, qf, qm := quoteIdent("public", name), quoteIdent("public", full), quoteIdent("public", mood)
	testenv.Exec(t, conn, `CREATE TYPE `+qm+` AS ENUM ('sad', 'ok')`,
		`CREATE TABLE `+q+` (id int8 PRIMARY KEY, b bool, i2 int2, i4 int4, f4 float4, f8 float8, n numeric,
			by bytea, d date, ts timestamp, tz timestamptz, tx text, j jsonb, m `+qm+`, big text)`,
		`CREATE TABLE `+qf+` (id int4, note text)`, `ALTER TABLE `+qf+` REPLICA IDENTITY FULL`)
	t.Cleanup(func() {
		testenv.Exec(t, testenv.PG(t), `DROP TABLE IF EXISTS `+q, `DROP TABLE IF EXISTS `+qf, `DROP TYPE IF EXISTS `+qm)
	})
	r := newReplication(t, testenv.UniqueName("ferry_pub"), table("public", name), table("public", full))
	r.ensure(t, client)

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	repl, err := pgsource.ConnectReplication(ctx, testenv.Source(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = repl.Close(context.Background()) }()
	version, err := pgsource.ServerVersion(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	args, _ := pluginArgs(version, r.pub, false, DefaultStreamProtocol)
	if err := pglogrepl.StartReplication(ctx, repl, r.slot, 0, pglogrepl.StartReplicationOptions{Mode: pglogrepl.LogicalReplication, PluginArgs: args}); err != nil {
		t.Fatal(err)
	}
	runSeedWorkload(t, q, qf)
	var raw [][]byte
	for {
		m := nextWALData(ctx, t, repl, len(raw))
		raw = append(raw, m)
		if m[0] == 'M' && strings.Contains(string(m), seedEndPrefix) {
			return raw
		}
	}
}

func runSeedWorkload(t *testing.T, q, qf string) {
	t.Helper()
	conn := testenv.PG(t)
	big := `(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 300) g)` // stored out of line
	testenv.Exec(t, conn,
		`INSERT INTO `+q+` VALUES
		 (1, true, -32768, 2147483647, 1.5, 'NaN', 'NaN', '\xdeadbeef', '2024-02-29', '2000-01-01 00:00:00.000001',
		  '1999-12-31 23:59:59.5+00', 'hé "quoted"', '{"a": [1, null]}', 'ok', `+big+`),
		 (2, false, 0, 0, '-Infinity', '-0', '-12.500', '', '0044-03-15 BC', 'infinity',
		  '294276-12-31 23:59:59.999999+00', E'line\nbreak', 'null', 'sad', NULL),
		 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '-infinity', '4713-01-01 00:00:00 BC', '-infinity',
		  NULL, NULL, NULL, NULL)`,
		`UPDATE `+q+` SET tx = 'changed' WHERE id = 1`, // big is unchanged TOAST
		`UPDATE `+q+` SET id = 10 WHERE id = 2`,        // old key
		`DELETE FROM `+q+` WHERE id = 3`,
		`INSERT INTO `+qf+` VALUES (1, 'one'), (2, NULL)`,
		`UPDATE `+qf+` SET note = 'uno' WHERE id = 1`, // old tuple, REPLICA IDENTITY FULL
		`DELETE FROM `+qf+` WHERE id = 2`,
		`TRUNCATE `+qf)
	testenv.Exec(t, conn, `BEGIN`, `INSERT INTO `+qf+` VALUES (3, 'three')`,
		`SELECT pg_logical_emit_message(true, 'ferry_seed', 'in a transaction')`, `COMMIT`)
	testenv.Exec(t, conn, `SELECT pg_logical_emit_message(false, '`+heartbeatPrefix+`', 'ferry_slot_seed')`,
		`SELECT pg_logical_emit_message(false, '`+seedEndPrefix+`', '')`)
}

// writeSeeds rewrites the corpora: every real message alone, and the whole
// sequence.
func writeSeeds(t *testing.T, raw [][]byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz")
	// FuzzParseMessage is the wire package's.
	wireDir := filepath.Join("wire", "testdata", "fuzz")
	// Only the generated seeds: crash-* inputs the fuzzers found stay.
	old, err := filepath.Glob(filepath.Join(dir, "Fuzz*", "real-*"))
	if err != nil {
		t.Fatal(err)
	}
	wireOld, err := filepath.Glob(filepath.Join(wireDir, "Fuzz*", "real-*"))
	if err != nil {
		t.Fatal(err)
	}
	old = append(old, wireOld...)
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range raw {
		writeSeed(t, filepath.Join(wireDir, "FuzzParseMessage"), fmt.Sprintf("real-%02d-%c", i, m[0]), "[]byte("+strconv.Quote(string(m))+")")
	}
	writeSeed(t, filepath.Join(dir, "FuzzStreamMessages"), "real-workload", "[]byte("+strconv.Quote(string(joinSequence(raw...)))+")")
	// The same without the out-of-line value, which is most of the bytes
	// and makes every mutation slow to minimize.
	small := slices.DeleteFunc(slices.Clone(raw), func(m []byte) bool { return len(m) > 1000 })
	writeSeed(t, filepath.Join(dir, "FuzzStreamMessages"), "real-workload-small", "[]byte("+strconv.Quote(string(joinSequence(small...)))+")")
}

// writeSeed writes one seed into dir, the corpus of one fuzz target.
func writeSeed(t *testing.T, dir, name, values string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte("go test fuzz v1\n"+values+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// nextWALData receives until the next XLogData and returns a copy of its
// pgoutput message; got is how many the caller has, for the error.
func nextWALData(ctx context.Context, t *testing.T, repl *pgconn.PgConn, got int) []byte {
	t.Helper()
	for {
		msg, err := repl.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("receiving the workload (got %d messages): %v", got, err)
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok || len(cd.Data) == 0 || cd.Data[0] != pglogrepl.XLogDataByteID {
			continue
		}
		xld, err := pglogrepl.ParseXLogData(cd.Data[1:])
		if err != nil {
			t.Fatal(err)
		}
		return slices.Clone(xld.WALData)
	}
}
