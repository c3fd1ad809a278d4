package snapshot

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

func TestSplitBlocks(t *testing.T) {
	for _, c := range []struct {
		blocks, min, max int64
		want             []blockRange
	}{
		{0, 16, 100, []blockRange{{0, 0}}},
		{1, 16, 100, []blockRange{{0, 0}}},
		{16, 16, 100, []blockRange{{0, 0}}},
		{31, 16, 100, []blockRange{{0, 0}}},
		{32, 16, 100, []blockRange{{0, 16}, {16, 0}}},
		{47, 16, 100, []blockRange{{0, 16}, {16, 0}}}, // the remainder joins the last
		{48, 16, 100, []blockRange{{0, 16}, {16, 32}, {32, 0}}},
		{1000, 16, 4, []blockRange{{0, 250}, {250, 500}, {500, 750}, {750, 0}}},
		{1003, 16, 4, []blockRange{{0, 250}, {250, 500}, {500, 750}, {750, 0}}},
	} {
		got := splitBlocks(c.blocks, c.min, c.max)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("splitBlocks(%d, %d, %d) = %v, want %v", c.blocks, c.min, c.max, got, c.want)
		}
	}
	// Every size: ranges tile [0, ∞) with no gap or overlap, each at least
	// min blocks, never more than max of them.
	for blocks := int64(0); blocks < 3000; blocks += 7 {
		got := splitBlocks(blocks, 16, 50)
		if len(got) > 50 || got[0].lo != 0 || got[len(got)-1].hi != 0 {
			t.Fatalf("splitBlocks(%d): %d ranges %v; want at most 50 from 0, the last open-ended", blocks, len(got), got)
		}
		for i := 1; i < len(got); i++ {
			if got[i].lo != got[i-1].hi || got[i-1].hi-got[i-1].lo < 16 {
				t.Fatalf("splitBlocks(%d): range %d %v after %v; want contiguous ranges of at least 16", blocks, i, got[i], got[i-1])
			}
		}
	}
}

func TestChunkPlan(t *testing.T) {
	sizes := []tableSize{
		{oid: 10, filenode: 110, relkind: "r", blocks: 3},  // tiny: one chunk
		{oid: 11, filenode: 111, relkind: "r", blocks: 40}, // three chunks
		{oid: 12, relkind: "p"},                            // partitioned: through its root
		{},                                                 // missing: its reader reports it
		{oid: 13, filenode: 113, relkind: "r", blocks: 20},
	}
	chunks, perTable := chunkPlan(sizes, 150000, 10)
	var got []string
	for _, c := range chunks {
		got = append(got, fmt.Sprintf("%d:%q", c.table, c.where()))
		if c.ranged && (c.oid != sizes[c.table].oid || c.filenode != sizes[c.table].filenode) {
			t.Errorf("chunk %+v does not carry its table's oid and file", c)
		}
	}
	want := []string{`0:""`,
		`1:"ctid >= '(0,0)'::tid AND ctid < '(10,0)'::tid"`, `1:"ctid >= '(10,0)'::tid AND ctid < '(20,0)'::tid"`,
		`1:"ctid >= '(20,0)'::tid AND ctid < '(30,0)'::tid"`, `1:"ctid >= '(30,0)'::tid"`,
		`2:""`, `3:""`, `4:"ctid >= '(0,0)'::tid AND ctid < '(10,0)'::tid"`, `4:"ctid >= '(10,0)'::tid"`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("plan:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if fmt.Sprint(perTable) != "[1 4 1 1 2]" {
		t.Errorf("chunks per table %v, want [1 4 1 1 2]", perTable)
	}
	// Before TID Range Scan (PostgreSQL 14) every table is one chunk.
	if chunks, perTable := chunkPlan(sizes, 120015, 10); len(chunks) != len(sizes) || fmt.Sprint(perTable) != "[1 1 1 1 1]" {
		t.Errorf("plan on PostgreSQL 12: %v, %v; want one whole chunk per table", chunks, perTable)
	}
}

// TestCheckFilenodeSeesARewrite: a chunk planned before VACUUM FULL
// rewrote its table must fail the snapshot, Aborted, so that it is read
// again from scratch; one planned after passes.
func TestCheckFilenodeSeesARewrite(t *testing.T) {
	name := createChunkTable(t, "wtchunks_rw", 100, true)
	ref := table("public", name)
	conn := testenv.PG(t)
	ctx := context.Background()
	sizes, err := readTableSizes(ctx, conn, []*taskv1.TableRef{ref})
	if err != nil || sizes[0].relkind != "r" || sizes[0].filenode == 0 {
		t.Fatalf("readTableSizes = %+v, %v", sizes, err)
	}
	c := tableChunk{ranged: true, lo: 1, oid: sizes[0].oid, filenode: sizes[0].filenode}
	if err := checkFilenode(ctx, conn, ref, c); err != nil {
		t.Fatalf("checkFilenode before any rewrite: %v", err)
	}
	testenv.Exec(t, conn, "VACUUM FULL "+quoteIdent("public", name))
	if err := checkFilenode(ctx, conn, ref, c); status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), name) {
		t.Fatalf("checkFilenode after VACUUM FULL = %v; want Aborted naming the table", err)
	}
	after, err := readTableSizes(ctx, conn, []*taskv1.TableRef{ref})
	if err != nil {
		t.Fatal(err)
	}
	c.filenode = after[0].filenode
	if err := checkFilenode(ctx, conn, ref, c); err != nil {
		t.Fatalf("checkFilenode planned after the rewrite: %v", err)
	}
	if missing, err := readTableSizes(ctx, conn, []*taskv1.TableRef{table("public", name+"_nope")}); err != nil || missing[0] != (tableSize{}) {
		t.Fatalf("readTableSizes of a missing table = %+v, %v; want it zero", missing, err)
	}
}

// createChunkTable makes a table of (id, a dropped column, grp, note, a
// generated column) with rows 1..n, keyed or not; a keyless one has
// REPLICA IDENTITY FULL so that its updates and deletes are published.
// (capture's snapshot tests have the same.)
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

func table(schema, name string) *taskv1.TableRef {
	return &taskv1.TableRef{Schema: schema, Table: name}
}

func quoteIdent(parts ...string) string { return pgx.Identifier(parts).Sanitize() }
