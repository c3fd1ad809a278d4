package main

import (
	"strings"
	"testing"
)

// Table names sort in creation order, and each batch's DO block creates and
// fills exactly its own range.
func TestT10kCreateSQL(t *testing.T) {
	if got := t10kTableName(7); got != "bench_t10k_00007" {
		t.Fatalf("table 7 is %q", got)
	}
	sql := t10kCreateSQL(501, 1000, 3)
	for _, want := range []string{"FOR i IN 501..1000 LOOP", "'bench_t10k', 'bench_t10k_' || lpad(i::text, 5, '0')",
		"PRIMARY KEY", "generate_series(1, 3)"} {
		if !strings.Contains(sql, want) {
			t.Fatalf("DO block lacks %q:\n%s", want, sql)
		}
	}
}

// The schema selection names the schema only; the tables selection names
// every table, all into the task's one topic.
func TestT10kSpecSelects(t *testing.T) {
	c := &config{t10kTables: 12, t10kSelect: "schema"}
	s := t10kSetup{taskUser: "postgres", passwordFile: "/pw"}
	spec := t10kSpec(c, s, "topic")
	if got := spec.GetObjects().GetSchemas(); len(got) != 1 || got[0].GetSchema() != t10kSchema || len(spec.GetObjects().GetTables()) != 0 {
		t.Fatalf("schema selection: %v", spec.GetObjects())
	}
	c.t10kSelect = "tables"
	spec = t10kSpec(c, s, "topic")
	tables := spec.GetObjects().GetTables()
	if len(tables) != 12 || tables[11].GetTable() != "bench_t10k_00012" || tables[0].GetTopic() != "" || len(spec.GetObjects().GetSchemas()) != 0 {
		t.Fatalf("tables selection: %d tables, last %v", len(tables), tables[len(tables)-1])
	}
	if !spec.GetSyncTypes().GetFull() || spec.GetDestination().GetTopic() != "topic" || spec.GetSource().GetPassword().GetFile() != "/pw" {
		t.Fatalf("spec: %v", spec)
	}
}

// The report shows each phase and marks an event over Temporal's limit.
func TestRenderT10k(t *testing.T) {
	rep := &t10kReport{Tables: 2, Rows: 3, Select: "schema", Runs: []t10kResult{{
		Run: 1, PrecheckSeconds: 1.5, ToIncrementalSecs: 9, FullSyncRows: 6, FullSyncTablesDone: 2, TopicMessages: 8,
		LargestEventBytes: 3 << 20, Processes: map[string]procUsage{"worker": {PeakRSSMB: 40}},
	}}}
	var b strings.Builder
	renderT10k(&b, rep)
	out := b.String()
	for _, want := range []string{"# Ferry benchmark: 2 tables in one task", "| Precheck, s (CreateTask to the workflow leaving precheck) | 1.5 |",
		"| Largest history event, KB (Temporal refuses payloads over 2048) | 3072 | 3072 – 3072 | ≤ 2048 | " + missedMark,
		"| 1 | 6 / 6 | 2 / 2 | 8 |"} {
		if !strings.Contains(out, want) {
			t.Fatalf("report lacks %q:\n%s", want, out)
		}
	}
}
