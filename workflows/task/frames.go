package task

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// The worker relays every change batch from capture to delivery but never
// reads one. Decoding and re-encoding each batch cost about a fifth of
// Ferry's CPU per row, so batches cross the worker as raw protobuf frames.
//
// StreamChangesResponse{batch = 1} and DeliverRequest{batch = 2} each hold
// one length-delimited ChangeBatch, so a frame of the first becomes a frame
// of the second by rewriting its field tag: the length and the batch's bytes
// stay as they are.
const (
	captureBatchTag  = 1<<3 | 2 // field 1, wire type LEN
	deliveryBatchTag = 2<<3 | 2 // field 2, wire type LEN
)

// rawFrame is one gRPC message left encoded.
type rawFrame struct{ b []byte }

// toDeliverRequest rewrites a StreamChangesResponse frame into a
// DeliverRequest frame in place.
func (f *rawFrame) toDeliverRequest() error {
	if len(f.b) == 0 || f.b[0] != captureBatchTag {
		return fmt.Errorf("capture sent a frame that is not a single change batch (first byte %#x)", firstByte(f.b))
	}
	f.b[0] = deliveryBatchTag
	return nil
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

// frameCodec is the proto codec, except that it leaves rawFrames encoded.
// It keeps the name "proto", so the services see ordinary protobuf.
type frameCodec struct{}

var _ encoding.CodecV2 = frameCodec{}

func (frameCodec) Name() string { return "proto" }

func (frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *rawFrame:
		return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
	case proto.Message:
		b, err := proto.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("marshalling %T: %w", m, err)
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	default:
		return nil, fmt.Errorf("frameCodec cannot marshal %T", v)
	}
}

func (frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *rawFrame:
		// Materialize copies: gRPC reuses the buffers once this returns.
		m.b = data.Materialize()
		return nil
	case proto.Message:
		return proto.Unmarshal(data.Materialize(), m)
	default:
		return fmt.Errorf("frameCodec cannot unmarshal into %T", v)
	}
}
