package main

import (
	"slices"
	"strings"
	"testing"
)

// A Debezium insert event as the JsonConverter writes it with schemas off.
const debeziumInsert = `{"before":null,"after":{"id":42,"customer":"customer-045997","amount":"AZ6Y","placed_at":"2026-01-01T14:25:54.000000Z","note":"order 42 a1d0c6e83f027327d8461063f4ac58a6"},"source":{"version":"3.4.3.Final","connector":"postgresql","name":"ferrybench_dbz_1_1","ts_ms":1764000000000,"snapshot":"false","db":"ferry","sequence":"[\"24160560\",\"24160944\"]","ts_us":1764000000000000,"ts_ns":1764000000000000000,"schema":"public","table":"bench_orders","txId":771,"lsn":24160944,"xmin":null},"transaction":null,"op":"c","ts_ms":1764000000100,"ts_us":1764000000100000,"ts_ns":1764000000100000000}`

func TestDebeziumIDs(t *testing.T) {
	ids, err := debeziumIDs([]byte(debeziumInsert))
	if err != nil || !slices.Equal(ids, []int{42}) {
		t.Fatalf("debeziumIDs = %v, %v; want [42]", ids, err)
	}
	// A delete (after is null) or a tombstone carries no row to count: the
	// backlog has inserts only, so either is an error, not a silent skip.
	for _, v := range []string{`{"before":{"id":1},"after":null,"op":"d"}`, `null`, `{"after":{"note":"x"}}`} {
		if ids, err := debeziumIDs([]byte(v)); err == nil {
			t.Errorf("debeziumIDs(%s) = %v, want an error", v, ids)
		}
	}
}

func TestCanalIDs(t *testing.T) {
	ids, err := canalIDs([]byte(`{"data":[{"id":"7","note":"a"},{"id":"8"}],"type":"INSERT"}`))
	if err != nil || !slices.Equal(ids, []int{7, 8}) {
		t.Fatalf("canalIDs = %v, %v; want [7 8]", ids, err)
	}
}

// The Debezium rows appear only when every run has the baseline, with the
// 3x goal judged on Ferry's ratio; a skipped baseline is said, not hidden.
func TestDebeziumInReport(t *testing.T) {
	run := func(n int, over float64) runResult {
		return runResult{Run: n, OverDebeziumToKafka: over, OverDebeziumToConfirmed: over,
			Debezium: &debeziumResult{RowsPerSecToKafka: 1000, RowsPerSecToConfirmed: 900}}
	}
	rep := report{Rows: 10, DebeziumVersion: debeziumVersion, ConnectVersion: connectVersion,
		Runs: []runResult{run(1, 2.5), run(2, 3.5), run(3, 4)}}
	md := renderMarkdown(rep)
	for _, want := range []string{
		"| Ferry / Debezium, to Kafka | 3.50× | 2.50× – 4.00× | ≥ 3.00× | met (missed in 1 of 3 runs) |",
		"| Debezium, rows/s confirmed (slot flushed) | 900 |",
		"debezium-connector-postgres " + debeziumVersion + " in Kafka Connect " + connectVersion,
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	rep.DebeziumVersion = ""
	for i := range rep.Runs {
		rep.Runs[i].Debezium = nil
	}
	md = renderMarkdown(rep)
	if strings.Contains(md, "Ferry / Debezium") || !strings.Contains(md, "Debezium baseline: **skipped**") {
		t.Errorf("a skipped baseline must drop its rows and say so:\n%s", md)
	}
}
