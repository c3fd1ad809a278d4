package main

import (
	"strings"
	"testing"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/canal"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
)

// The audit's fast path must read what delivery's own Canal JSON encoder
// writes, rows and DDL records alike, without falling back to JSON.
func TestCanalRowReadsTheEncodersMessages(t *testing.T) {
	enc := newBaselineEncoder(startFor("", "", "", taskv1.DataFormat_DATA_FORMAT_CANAL_JSON, 0))
	for _, i := range []int{1, 42, 123456} {
		if err := enc.add(dlvEvent(dlvSeed, i)); err != nil {
			t.Fatal(err)
		}
	}
	for n, want := range []int{1, 42, 123456} {
		_, v := enc.out.msg(n)
		if _, ok := digitsAfter(v, `"data":[{"id":"`); !ok {
			t.Fatalf("message %d lacks the fast path's marker: %s", n, v)
		}
		table, id, err := canalRow("", v)
		if err != nil || table != dlvTable || id != want {
			t.Errorf("canalRow(message %d) = %q, %d, %v; want %q, %d", n, table, id, err, dlvTable, want)
		}
	}
	ddl, err := canal.New(canal.Options{}).EncodeDDL(nil, enc.tab, relation.DDL{Kind: "CREATE", SQL: "CREATE TABLE x ()"})
	if err != nil {
		t.Fatal(err)
	}
	if table, id, err := canalRow("", ddl); err != nil || table != dlvTable || id != 0 {
		t.Errorf("canalRow(DDL) = %q, %d, %v; want %q, 0 (no row)", table, id, err, dlvTable)
	}
}

func TestDebeziumRowTakesTheTableFromTheTopic(t *testing.T) {
	v := []byte(`{"before":null,"after":{"id":77,"qty":1},"source":{"table":"bench_full_t002"},"op":"r"}`)
	table, id, err := debeziumRow("p.public.bench_full_t002", v)
	if err != nil || table != "bench_full_t002" || id != 77 {
		t.Errorf("debeziumRow = %q, %d, %v; want bench_full_t002, 77", table, id, err)
	}
	if _, _, err := debeziumRow("p.public.t", []byte(`{"after":null}`)); err == nil {
		t.Error("an event without after.id was accepted")
	}
}

// A cap keeps one table's rows or whole tables, and never goes unreported.
func TestDebeziumScope(t *testing.T) {
	one := fsPart{tables: []string{"a"}, rows: 10_000_000}
	many := fsPart{tables: []string{"a", "b", "c", "d"}, rows: 100}
	for _, tc := range []struct {
		p            fsPart
		max          int
		tables, rows int
		capped       bool
	}{
		{one, 0, 1, 10_000_000, false},
		{one, 2_000_000, 1, 2_000_000, true},
		{many, 400, 4, 100, false},
		{many, 250, 2, 100, true},
		{many, 50, 1, 100, true},
	} {
		tables, rows, capped := fsDbzScope(tc.p, tc.max)
		if len(tables) != tc.tables || rows != tc.rows || capped != tc.capped {
			t.Errorf("fsDbzScope(%d × %d, %d) = %d tables × %d, capped %v; want %d × %d, %v",
				len(tc.p.tables), tc.p.rows, tc.max, len(tables), rows, capped, tc.tables, tc.rows, tc.capped)
		}
	}
}

// The report names the full sync path and marks a capped Debezium run in
// the figure itself.
func TestRenderFullSyncMarksCapAndPath(t *testing.T) {
	run := fsRunResult{Run: 1, Ferry: fsFerryResult{Chunked: true, Processes: map[string]procUsage{}},
		Debezium: &fsDbzResult{Rows: 2_000_000, Tables: 1, Capped: true, RowsPerSec: 10}, OverDebeziumToKafka: 4}
	rep := &fsReport{Runs: 1, DebeziumMaxRows: 2_000_000, DebeziumVersion: debeziumVersion,
		Parts: []*fsPartReport{{Name: "1 × 10000000 rows", Tables: 1, RowsPerTable: 10_000_000, Rows: 10_000_000, Runs: []fsRunResult{run}}}}
	var b strings.Builder
	renderFullSync(&b, rep)
	out := b.String()
	for _, want := range []string{"chunked (DBLog", "Debezium snapshot (**capped**: 2000000 rows in 1 table(s))", "| Ferry / Debezium, to Kafka | 4.00× |", missedMark} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
}
