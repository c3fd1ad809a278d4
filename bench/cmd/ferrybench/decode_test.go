package main

import (
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// The decode client's scan of a response agrees with protobuf's own
// encoding: events counted, relations not, the watermark read, and a
// response without a batch counts nothing.
func TestBatchSummary(t *testing.T) {
	batch := &cdcv1.ChangeBatch{
		Relations:    []*cdcv1.Relation{{Oid: 1, Table: "t"}},
		Events:       []*cdcv1.ChangeEvent{{Lsn: 5, CommitLsn: 9}, {Lsn: 6}, {Lsn: 7, NewTuple: tuple.Of("3")}},
		WatermarkLsn: 1 << 40,
	}
	for _, tc := range []struct {
		resp *capturev1.StreamChangesResponse
		want batchSummary
	}{
		{&capturev1.StreamChangesResponse{Batch: batch}, batchSummary{events: 3, watermark: 1 << 40}},
		{&capturev1.StreamChangesResponse{Batch: &cdcv1.ChangeBatch{Events: batch.Events[:1]}}, batchSummary{events: 1}},
		{&capturev1.StreamChangesResponse{Backfill: &cdcv1.BackfillProgress{}}, batchSummary{}},
	} {
		raw, err := proto.Marshal(tc.resp)
		if err != nil {
			t.Fatal(err)
		}
		// Split in two buffers too, as gRPC may hand a message over.
		for _, data := range []mem.BufferSlice{{mem.SliceBuffer(raw)}, {mem.SliceBuffer(raw[:len(raw)/2]), mem.SliceBuffer(raw[len(raw)/2:])}} {
			got := batchSummary{events: 99}
			if err := (summaryCodec{}).Unmarshal(data, &got); err != nil || got != tc.want {
				t.Errorf("%v: got %+v, %v; want %+v", tc.resp, got, err, tc.want)
			}
		}
	}
	if err := (summaryCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0x0a, 0x05, 1})}, &batchSummary{}); err == nil {
		t.Error("a truncated frame was accepted")
	}
}
