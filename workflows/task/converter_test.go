package task

import (
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"

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
