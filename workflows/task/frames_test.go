package task

import (
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
)

// A batch relayed as a raw frame must reach delivery exactly as capture sent
// it, whatever its size (the length prefix spans several bytes past 127).
func TestRelayedFrameIsTheSameBatch(t *testing.T) {
	for _, rows := range []int{0, 1, 3000} {
		batch := &cdcv1.ChangeBatch{WatermarkLsn: 42, Relations: []*cdcv1.Relation{{Oid: 7, Schema: "s", Table: "t"}}}
		for i := range rows {
			batch.Events = append(batch.Events, &cdcv1.ChangeEvent{
				Op: cdcv1.Operation_OPERATION_INSERT, RelationOid: 7, Lsn: uint64(i),
				NewValues: []*cdcv1.Value{{Kind: &cdcv1.Value_Numeric{Numeric: "12.50"}}, {Kind: &cdcv1.Value_Null{Null: true}}},
			})
		}
		wire, err := proto.Marshal(&capturev1.StreamChangesResponse{Batch: batch})
		if err != nil {
			t.Fatal(err)
		}
		var f rawFrame
		if err := (frameCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, &f); err != nil {
			t.Fatal(err)
		}
		if err := f.toDeliverRequest(); err != nil {
			t.Fatal(err)
		}
		out, err := (frameCodec{}).Marshal(&f)
		if err != nil {
			t.Fatal(err)
		}
		var req deliveryv1.DeliverRequest
		if err := proto.Unmarshal(out.Materialize(), &req); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(req.GetBatch(), batch) {
			t.Fatalf("%d rows: delivery would receive a different batch", rows)
		}
	}
}

func TestRelayRefusesFramesThatAreNotBatches(t *testing.T) {
	for _, b := range [][]byte{nil, {0x12, 0x00}} {
		f := rawFrame{b: b}
		if err := f.toDeliverRequest(); err == nil {
			t.Errorf("frame %x was accepted", b)
		}
	}
}

func TestFrameCodecStillSpeaksProto(t *testing.T) {
	ack := &capturev1.StreamChangesRequest{Kind: &capturev1.StreamChangesRequest_Ack{Ack: &capturev1.Ack{FlushedLsn: 9}}}
	out, err := (frameCodec{}).Marshal(ack)
	if err != nil {
		t.Fatal(err)
	}
	var back capturev1.StreamChangesRequest
	if err := (frameCodec{}).Unmarshal(out, &back); err != nil || !proto.Equal(&back, ack) {
		t.Fatalf("round trip = %v, %v", &back, err)
	}
}
