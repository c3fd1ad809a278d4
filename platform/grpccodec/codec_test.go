package grpccodec

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	"google.golang.org/grpc/encoding"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// batch is a ChangeBatch of row changes, rows events long.
func batch(rows int) *cdcv1.ChangeBatch {
	b := &cdcv1.ChangeBatch{
		Relations: []*cdcv1.Relation{{Oid: 16384, Schema: "public", Table: "orders", KeyColumns: []string{"id"},
			Columns: []*cdcv1.Column{{Name: "id", TypeOid: 20, TypeName: "int8", Key: true}, {Name: "note", TypeOid: 25, TypeModifier: -1}}}},
		WatermarkLsn: 1 << 40,
	}
	for i := range rows {
		b.Events = append(b.Events, &cdcv1.ChangeEvent{
			Op: cdcv1.Operation_OPERATION_UPDATE, RelationOid: 16384, Lsn: uint64(1000 + i), CommitLsn: 5000, Xid: 77,
			CommitTime: &timestamppb.Timestamp{Seconds: 1_700_000_000, Nanos: 123}, Snapshot: i%2 == 0,
			// Row images as capture sends them: texts, a NULL and an
			// unchanged TOAST value.
			NewTuple: rowTuple(strconv.Itoa(i), fmt.Sprintf("row %d %s", i, strings.Repeat("é", i%7)), "12.50", `\x000102`, "-infinity"),
			OldTuple: &cdcv1.Tuple{Ends: []uint32{0, 0}, Kinds: []byte("nu")},
		})
	}
	return b
}

// split cuts b into pieces of at most n bytes, as HTTP/2 frames arrive.
// rowTuple is a Tuple of texts.
func rowTuple(texts ...string) *cdcv1.Tuple {
	t := &cdcv1.Tuple{}
	for _, s := range texts {
		t.Text = append(t.Text, s...)
		t.Ends = append(t.Ends, uint32(len(t.Text)))
		t.Kinds = append(t.Kinds, 't')
	}
	return t
}

func split(b []byte, n int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > n {
		s = append(s, mem.SliceBuffer(b[:n]))
		b = b[n:]
	}
	return append(s, mem.SliceBuffer(b))
}

// Both directions must agree with protobuf-go byte for byte in meaning, on
// one-buffer messages and pooled ones above gRPC's pooling threshold, and on
// messages that arrive in many buffers.
func TestVTMessagesRoundTripWithProtobufGo(t *testing.T) {
	if _, ok := any(&cdcv1.ChangeBatch{}).(vtMessage); !ok {
		t.Fatal("ChangeBatch has no vtprotobuf methods: run make gen")
	}
	for _, rows := range []int{0, 1, 500} {
		want := &deliveryv1.DeliverRequest{Kind: &deliveryv1.DeliverRequest_Batch{Batch: batch(rows)}}
		out, err := Codec{}.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		var viaProto deliveryv1.DeliverRequest
		if err := proto.Unmarshal(out.Materialize(), &viaProto); err != nil || !proto.Equal(&viaProto, want) {
			t.Fatalf("%d rows: protobuf-go decodes Codec's bytes as %v (err %v), want the original", rows, &viaProto, err)
		}
		out.Free()

		wire, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		var got deliveryv1.DeliverRequest
		if err := (Codec{}).Unmarshal(split(wire, 16<<10), &got); err != nil || !proto.Equal(&got, want) {
			t.Fatalf("%d rows: Codec decodes protobuf-go's bytes as %v (err %v), want the original", rows, &got, err)
		}
	}
}

// gRPC reuses a message's buffers after Unmarshal returns, so the decoded
// message must not point into them; and decoding into a used message
// replaces it, as proto.Unmarshal does, rather than merging.
func TestUnmarshalCopiesAndReplaces(t *testing.T) {
	wire, err := proto.Marshal(batch(3))
	if err != nil {
		t.Fatal(err)
	}
	got := batch(5)
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, got); err != nil {
		t.Fatal(err)
	}
	clear(wire)
	if want := batch(3); !proto.Equal(got, want) {
		t.Fatalf("after decoding 3 rows into a 5-row batch and clearing the input: %d events, first text %q; want %d events, %q",
			len(got.GetEvents()), got.GetEvents()[0].GetNewTuple().GetText(), 3, want.GetEvents()[0].GetNewTuple().GetText())
	}
}

// Messages without generated methods (health, reflection, Temporal) take
// gRPC's default path.
func TestOtherMessagesUseProtobufGo(t *testing.T) {
	want := &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}
	if _, ok := any(want).(vtMessage); ok {
		t.Fatal("the health message has vtprotobuf methods; the test needs one without")
	}
	out, err := Codec{}.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var got healthpb.HealthCheckResponse
	if err := (Codec{}).Unmarshal(out, &got); err != nil || !proto.Equal(&got, want) {
		t.Fatalf("health response round trip = %v, %v; want %v", &got, err, want)
	}
	if _, err := (Codec{}).Marshal("not a message"); err == nil {
		t.Fatal("Marshal of a string succeeded, want an error")
	}
	if err := (Codec{}).Unmarshal(out, new(int)); err == nil {
		t.Fatal("Unmarshal into *int succeeded, want an error")
	}
}

// The codec must keep gRPC's name, so peers see ordinary protobuf.
func TestNameIsProto(t *testing.T) {
	if got, want := (Codec{}).Name(), encoding.GetCodecV2("proto").Name(); got != want {
		t.Fatalf("Name() = %q, want %q", got, want)
	}
}

// BenchmarkUnmarshalBatch compares gRPC's default decoding of a 1,000-row
// DeliverRequest with Codec's.
func BenchmarkUnmarshalBatch(b *testing.B) {
	wire, err := proto.Marshal(&deliveryv1.DeliverRequest{Kind: &deliveryv1.DeliverRequest_Batch{Batch: batch(1000)}})
	if err != nil {
		b.Fatal(err)
	}
	data := split(wire, 16<<10)
	b.Run("protobuf-go", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m deliveryv1.DeliverRequest
			if err := encoding.GetCodecV2("proto").Unmarshal(data, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("grpccodec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m deliveryv1.DeliverRequest
			if err := (Codec{}).Unmarshal(data, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMarshalBatch is the same comparison for capture's side.
func BenchmarkMarshalBatch(b *testing.B) {
	m := &capturev1.StreamChangesResponse{Batch: batch(1000)}
	for _, c := range []encoding.CodecV2{encoding.GetCodecV2("proto"), Codec{}} {
		name := fmt.Sprintf("%T", c)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out, err := c.Marshal(m)
				if err != nil {
					b.Fatal(err)
				}
				out.Free()
			}
		})
	}
}
