package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// Every run and every machine must send the same rows: row i is a function
// of the seed and i alone, and rows differ from each other.
func TestGeneratedRowsAreReproducible(t *testing.T) {
	a, b := dlvBatch(dlvSeed, 10, 50, true), dlvBatch(dlvSeed, 10, 50, true)
	if !proto.Equal(a, b) {
		t.Fatal("two batches of the same rows differ")
	}
	if proto.Equal(a.GetEvents()[0], a.GetEvents()[1]) {
		t.Fatal("rows 10 and 11 are equal")
	}
	if got, want := a.GetWatermarkLsn(), a.GetEvents()[49].GetLsn(); got != want {
		t.Fatalf("watermark %X, want the last row's LSN %X", got, want)
	}
	shortest, longest := 1<<30, 0
	for i := 1; i <= 2000; i++ {
		note, _ := tuple.Field(dlvEvent(dlvSeed, i).GetNewTuple(), 3)
		n := len(note)
		shortest, longest = min(shortest, n), max(longest, n)
	}
	if shortest > 20 || longest < 200 {
		t.Fatalf("notes run from %d to %d bytes; want short and long ones", shortest, longest)
	}
}

// The baseline's messages are delivery's: keyed by the id's text, and the
// value is the row in the format, here Canal JSON carrying the row's id.
func TestBaselineEncodesLikeDelivery(t *testing.T) {
	enc := newBaselineEncoder(startFor("", "", "", taskv1.DataFormat_DATA_FORMAT_CANAL_JSON, 0))
	for i := 1; i <= 3; i++ {
		if err := enc.add(dlvEvent(dlvSeed, i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		k, v := enc.out.msg(i)
		if string(k) != strconv.Itoa(i+1) {
			t.Errorf("message %d has key %q, want %q", i, k, strconv.Itoa(i+1))
		}
		var row struct {
			Table string `json:"table"`
			Data  []struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(v, &row); err != nil {
			t.Fatalf("message %d is not JSON: %v: %s", i, err, v)
		}
		if row.Table != dlvTable || len(row.Data) != 1 || row.Data[0].ID != strconv.Itoa(i+1) {
			t.Errorf("message %d is %s; want table %s and id %d", i, v, dlvTable, i+1)
		}
	}
	if got := enc.out.bytes(0); got != int64(len(enc.out.data)) {
		t.Errorf("bytes(0) = %d, want %d", got, len(enc.out.data))
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if p := percentile(d, 0.5); p != 100*time.Millisecond {
		t.Errorf("p50 = %v, want 100ms", p)
	}
	if p := percentile(d, 0.99); p != 198*time.Millisecond {
		t.Errorf("p99 = %v, want 198ms", p)
	}
	if p := percentile(d[:1], 0.99); p != time.Millisecond {
		t.Errorf("p99 of one = %v, want 1ms", p)
	}
}

// A delivery under 85% of its baseline, or a paced stream that could not
// hold its rate, must be marked as a miss.
func TestDeliveryReportMarksMisses(t *testing.T) {
	d := &dlvReport{Codecs: []string{"lz4"}, LatencyRate: 10_000, Runs: []dlvRun{{Run: 1,
		Throughput: []dlvThroughput{
			{Format: "Canal JSON", Codec: "lz4", Share: 0.5},
			{Format: "DTS Avro", Codec: "lz4", Share: 0.9},
		},
		Latency: []dlvLatency{
			{Format: "Canal JSON", RowsPerSecond: 10_000, P50Ms: 12, P99Ms: 30},
			{Format: "DTS Avro", RowsPerSecond: 8_000},
		}}}}
	var b strings.Builder
	renderDelivery(&b, d)
	for _, want := range []string{
		"| Canal JSON | lz4 | 0 | 0 | 0.0 | 0 | 0.0 | 50% | ≥ 85% | " + missedMark + " |",
		"| DTS Avro | lz4 | 0 | 0 | 0.0 | 0 | 0.0 | 90% | ≥ 85% | met |",
		"| Canal JSON | lz4 | 10000 | ≥ 9900 | met | 12.0 | 30.0 |",
		"| DTS Avro | lz4 | 8000 | ≥ 9900 | " + missedMark + " |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, b.String())
		}
	}
}

// Running one scenario keeps the other's figures from the previous report.
func TestCarryOverKeepsTheOtherScenario(t *testing.T) {
	dir := t.TempDir()
	prev := report{Date: "then", Rows: 7, Runs: []runResult{{Run: 1}}, Delivery: &dlvReport{Date: "then"}}
	raw, err := json.Marshal(prev)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "latest.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	c := &config{outDir: dir, scenarios: map[string]bool{"delivery": true}}
	rep := report{Date: "now", Delivery: &dlvReport{Date: "now"}}
	carryOver(c, &rep)
	if rep.Date != "then" || rep.Rows != 7 || len(rep.Runs) != 1 || rep.Delivery.Date != "now" {
		t.Fatalf("after carrying over: date %q rows %d runs %d delivery date %q; want the old backlog and the new delivery",
			rep.Date, rep.Rows, len(rep.Runs), rep.Delivery.Date)
	}
}
