package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// completeReport is a smoke report in which everything arrived.
func completeReport() report {
	audit := func(n int) topicAudit { return topicAudit{Messages: n, Distinct: n} }
	mixedSide := func() *mixedSide {
		return &mixedSide{Messages: map[string]int{opInsert: 7, opUpdate: 2, opDelete: 1}}
	}
	rep := report{Rows: 50, Runs: []runResult{{Run: 1, Ferry: ferryResult{Topic: audit(50)}, Debezium: &debeziumResult{Topic: audit(50)}}}}
	rep.Delivery = &dlvReport{Codecs: []string{"lz4", "zstd"}, Runs: []dlvRun{{Run: 1, Throughput: make([]dlvThroughput, 2*len(dlvFormats)), Latency: make([]dlvLatency, len(dlvFormats))}}}
	rep.Mixed = &mixedReport{Counts: map[string]int{opInsert: 7, opUpdate: 2, opDelete: 1}, Runs: []mixedRun{{Run: 1, Ferry: *mixedSide(), Debezium: mixedSide()}}}
	rep.Latency = &latencyReport{Rate: 100, Measured: "1s", Warmup: "500ms", Runs: []latencyRun{{Run: 1,
		Ferry: latencyFigures{Rows: 100, MessagesN: 150}, Debezium: &latencyFigures{Rows: 100, MessagesN: 150}}}}
	rep.FullSync = &fsReport{Parts: []*fsPartReport{{Name: "one", Rows: 30, Runs: []fsRunResult{{Run: 1,
		Ferry: fsFerryResult{Topic: audit(30)}, Debezium: &fsDbzResult{Rows: 30, Topic: audit(30)}}}}}}
	rep.BigTxn = &bigTxnReport{Rows: 20, Runs: []runResult{{Run: 1, Ferry: ferryResult{Topic: audit(20)}}}}
	rep.Decode = &decodeReport{Runs: []decodeRun{{Run: 1, Shapes: []decodeShape{
		{Shape: "backlog", Rows: 10, Capture: captureResult{Events: 10}}, {Shape: "bigtxn", Rows: 10, Capture: captureResult{Events: 10}}}}}}
	rep.StreamProto = &streamProtoReport{Runs: []streamProtoRun{{Run: 1, Shapes: []spResult{
		{Shape: "one", Committed: 10, V2: captureResult{Events: 10}, V4: captureResult{Events: 10}},
		{Shape: "concurrent", Committed: 8, V2: captureResult{Events: 8}, V4: captureResult{Events: 8}}}}}}
	rep.Tables10k = &t10kReport{Tables: 5, Rows: 3, Runs: []t10kResult{{Run: 1, FullSyncRows: 15, FullSyncTablesDone: 5}}}
	return rep
}

func writeSmokeReport(t *testing.T, rep report) string {
	t.Helper()
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "latest.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckSmokeFindsWhatDidNotArrive(t *testing.T) {
	if err := checkSmoke(writeSmokeReport(t, completeReport())); err != nil {
		t.Fatalf("a complete report: %v", err)
	}
	for want, breakIt := range map[string]func(*report){
		"backlog run 1, Debezium: 49 of 50":    func(r *report) { r.Runs[0].Debezium.Topic.Distinct = 49 },
		"delivery run 1: 3 throughput figures": func(r *report) { r.Delivery.Runs[0].Throughput = r.Delivery.Runs[0].Throughput[:3] },
		"mixed run 1, Ferry's UPDATEs: 1 of 2": func(r *report) { r.Mixed.Runs[0].Ferry.Messages[opUpdate] = 1 },
		"latency run 1, Debezium's messages":   func(r *report) { r.Latency.Runs[0].Debezium.MessagesN = 149 },
		"fullsync one run 1: Debezium did not": func(r *report) { r.FullSync.Parts[0].Runs[0].Debezium = nil },
		"bigtxn: did not run, error: boom":     func(r *report) { r.BigTxn.Error = "boom" },
		"decode run 1, bigtxn events: 9 of 10": func(r *report) { r.Decode.Runs[0].Shapes[1].Capture.Events = 9 },
		"concurrent on protocol 4: 7 of 8":     func(r *report) { r.StreamProto.Runs[0].Shapes[1].V4.Events = 7 },
		"tables10k run 1, tables done: 4 of 5": func(r *report) { r.Tables10k.Runs[0].FullSyncTablesDone = 4 },
		"tables10k: did not run":               func(r *report) { r.Tables10k = nil },
	} {
		rep := completeReport()
		breakIt(&rep)
		err := checkSmoke(writeSmokeReport(t, rep))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want a problem %q, got %v", want, err)
		}
	}
}
