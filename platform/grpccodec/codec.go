// Package grpccodec is the gRPC codec of every Ferry server and client. It
// encodes Ferry's own messages with the reflection-free methods that
// protoc-gen-go-vtproto generates next to them (MarshalVT, UnmarshalVT), and
// every other message (health, reflection, Temporal's) exactly as gRPC's
// default proto codec does.
//
// Decoding change batches with protobuf-go's reflective coders, the oneof of
// each Value above all, was about 40% of the delivery service's CPU; the
// generated code does the same work without reflection.
//
// The package lives in the platform module, which every Ferry binary links
// and which depends on no Ferry module but gen (buf output only), so the
// services and the worker share it without depending on each other.
package grpccodec

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// Name is the codec's name. It is gRPC's "proto": the wire format does not
// change, so a peer with the default codec reads and writes the same bytes.
const Name = "proto"

// Codec is an encoding.CodecV2. Its zero value is ready to use.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// vtMessage is a message with the methods protoc-gen-go-vtproto generates
// for features marshal+unmarshal+size.
type vtMessage interface {
	proto.Message
	SizeVT() int
	MarshalToSizedBufferVT(dAtA []byte) (int, error)
	UnmarshalVT(dAtA []byte) error
}

// ServerOption makes a server encode and decode every call with Codec.
func ServerOption() grpc.ServerOption { return grpc.ForceServerCodecV2(Codec{}) }

// DialOption makes every call on a client connection use Codec. A call
// option of its own (the benchmark's raw-frame client) still takes precedence.
func DialOption() grpc.DialOption {
	return grpc.WithDefaultCallOptions(grpc.ForceCodecV2(Codec{}))
}

// Name returns "proto".
func (Codec) Name() string { return Name }

// Marshal encodes v. Buffers above gRPC's pooling threshold come from its
// default pool, as with gRPC's own codec, which hands them back once sent.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(vtMessage); ok {
		return marshalVT(m)
	}
	m := messageV2Of(v)
	if m == nil {
		return nil, fmt.Errorf("grpccodec: cannot marshal %T: it is not a protobuf message", v)
	}
	return marshalProto(m)
}

func marshalVT(m vtMessage) (mem.BufferSlice, error) {
	size := m.SizeVT()
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if _, err := m.MarshalToSizedBufferVT(buf); err != nil {
			return nil, fmt.Errorf("marshalling %T: %w", m, err)
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size) // len(*buf) == size: MarshalToSizedBufferVT fills it all
	if _, err := m.MarshalToSizedBufferVT(*buf); err != nil {
		pool.Put(buf)
		return nil, fmt.Errorf("marshalling %T: %w", m, err)
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// marshalProto is gRPC's default proto codec: UseCachedSize is safe because
// Size has just filled the cache.
func marshalProto(m proto.Message) (mem.BufferSlice, error) {
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true}
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf, err := opts.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("marshalling %T: %w", m, err)
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if _, err := opts.MarshalAppend((*buf)[:0], m); err != nil {
		pool.Put(buf)
		return nil, fmt.Errorf("marshalling %T: %w", m, err)
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// Unmarshal decodes data into v, replacing what v held, as proto.Unmarshal
// does (UnmarshalVT alone would merge). The generated UnmarshalVT copies
// strings and bytes, so nothing in v refers to data once it returns, which
// gRPC requires: it reuses data's buffers afterwards.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	if m, ok := v.(vtMessage); ok {
		proto.Reset(m)
		if err := m.UnmarshalVT(buf.ReadOnlyData()); err != nil {
			return fmt.Errorf("unmarshalling %T: %w", m, err)
		}
		return nil
	}
	m := messageV2Of(v)
	if m == nil {
		return fmt.Errorf("grpccodec: cannot unmarshal into %T: it is not a protobuf message", v)
	}
	if err := proto.Unmarshal(buf.ReadOnlyData(), m); err != nil {
		return fmt.Errorf("unmarshalling %T: %w", m, err)
	}
	return nil
}

// messageV2Of accepts the messages gRPC's default codec accepts.
func messageV2Of(v any) proto.Message {
	switch m := v.(type) {
	case protoadapt.MessageV2:
		return m
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(m)
	}
	return nil
}
