package taskapi

import (
	"fmt"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// What `temporal workflow signal --input` sends: plain JSON with enum names.
func TestPlainJSONSignalsDecodeAsProtoJSON(t *testing.T) {
	dc := DataConverter()
	in := `{"objects": {"tables": [{"schema": "public", "table": "items", "operations": ["OPERATION_SET_INSERT"]}]},
		"compression": "COMPRESSION_ZSTD"}`
	p := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(in)}
	var sig taskv1.ModifyObjectsSignal
	if err := dc.FromPayload(p, &sig); err != nil {
		t.Fatal(err)
	}
	if sig.GetCompression() != taskv1.Compression_COMPRESSION_ZSTD ||
		sig.GetObjects().GetTables()[0].GetOperations()[0] != taskv1.OperationSet_OPERATION_SET_INSERT {
		t.Fatalf("decoded %v", &sig)
	}
	p.Data = []byte(`{"objcts": {}}`)
	if err := dc.FromPayload(p, &sig); err == nil || !strings.Contains(err.Error(), "objcts") {
		t.Fatalf("a misspelt field decoded without an error naming it: %v", err)
	}
	// Non-proto values keep encoding/json.
	var n int
	if err := dc.FromPayload(&commonpb.Payload{Metadata: p.Metadata, Data: []byte("42")}, &n); err != nil || n != 42 {
		t.Fatalf("int: %d, %v", n, err)
	}
}

// A checkpoint of 10,000 tables' progress is written as binary protobuf,
// 2.5 times smaller than protojson; a small one stays readable JSON. Both
// decode with this converter and with the SDK's default one, which the
// control API reads heartbeat details with.
func TestLargeMessagesAreWrittenAsBinaryProtobuf(t *testing.T) {
	dc := DataConverter()
	small := &cdcv1.Checkpoint{ConfirmedLsn: 42, Backfills: []*cdcv1.BackfillProgress{{Schema: "s", Table: "t", Rows: 3}}}
	large := &cdcv1.Checkpoint{ConfirmedLsn: 42}
	for i := range 10_000 {
		large.Backfills = append(large.Backfills, &cdcv1.BackfillProgress{
			Schema: "bench_t10k", Table: fmt.Sprintf("bench_t10k_%05d", i), AfterKey: []string{"3"}, Rows: 3, Done: true, Lsn: 4_211_211_392 + uint64(i)})
	}
	for _, tc := range []struct {
		m        *cdcv1.Checkpoint
		encoding string
	}{{small, "json/protobuf"}, {large, "binary/protobuf"}} {
		p, err := dc.ToPayload(tc.m)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(p.GetMetadata()["encoding"]); got != tc.encoding {
			t.Fatalf("%d backfills encoded as %s, want %s", len(tc.m.GetBackfills()), got, tc.encoding)
		}
		if tc.m == large {
			json, _ := protojson.Marshal(large)
			if len(p.GetData())*2 > len(json) || len(p.GetData()) > 512<<10 {
				t.Fatalf("binary payload %d bytes against protojson's %d: want less than half, and under Temporal's 512 KB warning", len(p.GetData()), len(json))
			}
		}
		for name, d := range map[string]converter.DataConverter{"ours": dc, "default": converter.GetDefaultDataConverter()} {
			var back cdcv1.Checkpoint
			if err := d.FromPayload(p, &back); err != nil || !proto.Equal(&back, tc.m) {
				t.Fatalf("%s converter decoding %s: %v (equal %v)", name, tc.encoding, err, proto.Equal(&back, tc.m))
			}
		}
	}
}
