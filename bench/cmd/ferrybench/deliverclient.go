package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
)

// Batches are encoded before the clock starts and sent as raw frames, as
// capture's own frames reach delivery (Replicate): the figure is
// delivery's, not this client's protobuf encoding.
type rawFrame struct{ b []byte }

// frameCodec is the proto codec, except that it sends rawFrames as they are.
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
	}
	return nil, fmt.Errorf("frameCodec cannot marshal %T", v)
}

func (frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("frameCodec cannot unmarshal into %T", v)
	}
	return proto.Unmarshal(data.Materialize(), m)
}

// ack is one DeliverResponse with the time it arrived.
type ack struct {
	at    time.Time
	safe  uint64
	acked uint64
}

// deliverSession is one Deliver stream: the caller sends, a goroutine
// receives and timestamps every response on arrival.
type deliverSession struct {
	stream grpc.BidiStreamingClient[deliveryv1.DeliverRequest, deliveryv1.DeliverResponse]
	acks   chan ack // closed when the stream ends
	err    error    // why it ended, nil for a clean end; read after acks closes
	last   ack
}

func openDeliver(ctx context.Context, conn *grpc.ClientConn, start *deliveryv1.StartDelivery) (*deliverSession, error) {
	stream, err := deliveryv1.NewDeliveryServiceClient(conn).Deliver(ctx, grpc.ForceCodecV2(frameCodec{}))
	if err != nil {
		return nil, fmt.Errorf("opening a Deliver stream: %w", err)
	}
	if err := stream.Send(&deliveryv1.DeliverRequest{Kind: &deliveryv1.DeliverRequest_Start{Start: start}}); err != nil {
		return nil, fmt.Errorf("sending StartDelivery: %w", sendError(stream, err))
	}
	s := &deliverSession{stream: stream, acks: make(chan ack, 1024)}
	go s.receive()
	return s, nil
}

func (s *deliverSession) receive() {
	defer close(s.acks)
	for {
		res, err := s.stream.Recv()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			s.err = fmt.Errorf("delivery ended the stream: %w", err)
			return
		}
		s.acks <- ack{at: time.Now(), safe: res.GetSafeLsn(), acked: res.GetAckedEvents()}
	}
}

func (s *deliverSession) send(f []byte) error {
	if err := s.stream.SendMsg(&rawFrame{b: f}); err != nil {
		return fmt.Errorf("sending a change batch: %w", sendError(s.stream, err))
	}
	return nil
}

// sendError swaps io.EOF, which only says the server ended the stream, for
// the status the server ended it with.
func sendError(stream grpc.ClientStream, err error) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	if rerr := stream.RecvMsg(new(deliveryv1.DeliverResponse)); rerr != nil && !errors.Is(rerr, io.EOF) {
		return rerr
	}
	return err
}

// waitSafe reads responses until the safe LSN reaches lsn and returns the
// arrival time of the response that reached it.
func (s *deliverSession) waitSafe(ctx context.Context, lsn uint64, timeout time.Duration) (time.Time, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for s.last.safe < lsn {
		select {
		case a, ok := <-s.acks:
			if !ok {
				return time.Time{}, s.endError(fmt.Sprintf("before the safe LSN reached %X", lsn))
			}
			s.last = a
		case <-deadline.C:
			return time.Time{}, fmt.Errorf("the safe LSN is %X after %s, waiting for %X", s.last.safe, timeout, lsn)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
	return s.last.at, nil
}

// endError explains an end of stream the caller did not ask for.
func (s *deliverSession) endError(when string) error {
	if s.err != nil {
		return fmt.Errorf("%s: %w", when, s.err)
	}
	return fmt.Errorf("delivery ended the stream %s", when)
}

// finish half-closes the stream and reads until its end, which must come
// without an error; it returns delivery's final response. The stream's
// context bounds the wait.
func (s *deliverSession) finish() (ack, error) {
	if err := s.stream.CloseSend(); err != nil {
		return s.last, fmt.Errorf("closing the Deliver stream: %w", err)
	}
	for a := range s.acks {
		s.last = a
	}
	return s.last, s.err
}
