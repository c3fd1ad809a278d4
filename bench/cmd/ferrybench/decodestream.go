package main

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
)

// batchSummary is what the decode client keeps of a StreamChangesResponse:
// how many events its batch holds and its watermark. The client never
// decodes the events, as Ferry's worker never does (it relays raw frames),
// so that its own CPU takes as little as possible from capture's on a small
// machine.
type batchSummary struct {
	events    int
	watermark uint64
}

// Field numbers of StreamChangesResponse.batch and, in ChangeBatch, of
// events and watermark_lsn (proto/ferry/capture/v1, proto/ferry/cdc/v1).
const (
	responseBatchField  = 1
	batchEventsField    = 2
	batchWatermarkField = 3
)

// summaryCodec is the proto codec, except that responses are only scanned
// into a batchSummary.
type summaryCodec struct{}

var _ encoding.CodecV2 = summaryCodec{}

func (summaryCodec) Name() string { return "proto" }

func (summaryCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("summaryCodec cannot marshal %T", v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshalling %T: %w", m, err)
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (summaryCodec) Unmarshal(data mem.BufferSlice, v any) error {
	s, ok := v.(*batchSummary)
	if !ok {
		return fmt.Errorf("summaryCodec cannot unmarshal into %T", v)
	}
	var b []byte
	if len(data) == 1 {
		b = data[0].ReadOnlyData() // no copy: scanned before this returns
	} else {
		b = data.Materialize()
	}
	*s = batchSummary{}
	batch, err := field(b, responseBatchField)
	if err != nil || batch == nil {
		return err // a response without a batch (backfill progress) counts nothing
	}
	return s.scan(batch)
}

// field returns the bytes of the length-delimited field num of msg, nil
// when it is absent.
func field(msg []byte, num protowire.Number) ([]byte, error) {
	for len(msg) > 0 {
		n, typ, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return nil, protowire.ParseError(l)
		}
		msg = msg[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(msg)
			if l < 0 {
				return nil, protowire.ParseError(l)
			}
			return v, nil
		}
		l = protowire.ConsumeFieldValue(n, typ, msg)
		if l < 0 {
			return nil, protowire.ParseError(l)
		}
		msg = msg[l:]
	}
	return nil, nil
}

// scan counts a ChangeBatch's events and reads its watermark.
func (s *batchSummary) scan(b []byte) error {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
		if n == batchWatermarkField && typ == protowire.VarintType {
			v, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return protowire.ParseError(l)
			}
			s.watermark, b = v, b[l:]
			continue
		}
		if n == batchEventsField {
			s.events++
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
	}
	return nil
}

// timeCapture opens StreamChanges on capture's slot and reads it as fast as
// capture sends, acknowledging every watermark at once (as if Kafka took
// no time), until a watermark covers the last row: past end, or the first
// watermark once all rows arrived (it ends the last row's transaction:
// capture sets a watermark only on a batch that ends at a commit). The clock
// runs from opening the stream, as pg_recvlogical's runs from its start.
//
// start names the slot to stream and rows how many rows it must carry.
func timeCapture(ctx context.Context, c *config, f *ferry, client capturev1.CaptureServiceClient, start *capturev1.StartStream, rows int, end uint64) (captureResult, error) {
	var res captureResult
	pid := f.procs["capture"].Process.Pid
	before, err := readProc(pid)
	if err != nil {
		return res, fmt.Errorf("sampling capture: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.ferryTimeout)
	defer cancel()
	t0 := time.Now()
	slot := start.GetSlotName()
	stream, err := client.StreamChanges(ctx, grpc.ForceCodecV2(summaryCodec{}))
	if err != nil {
		return res, fmt.Errorf("opening StreamChanges on %s: %w", slot, err)
	}
	if err := stream.Send(&capturev1.StreamChangesRequest{Kind: &capturev1.StreamChangesRequest_Start{Start: start}}); err != nil {
		return res, fmt.Errorf("starting the stream on %s: %w", slot, err)
	}
	for {
		var s batchSummary
		// The receive's deadline is ctx's: the scenario's -ferry-timeout.
		if err := stream.RecvMsg(&s); err != nil {
			return res, fmt.Errorf("reading %s after %d of %d rows: %w", slot, res.Events, rows, err)
		}
		res.Events += s.events
		res.Batches++
		if s.watermark == 0 {
			continue
		}
		ack := &capturev1.StreamChangesRequest{Kind: &capturev1.StreamChangesRequest_Ack{Ack: &capturev1.Ack{FlushedLsn: s.watermark}}}
		if err := stream.Send(ack); err != nil {
			return res, fmt.Errorf("acknowledging %s: %w", lsnString(s.watermark), err)
		}
		if s.watermark >= end || res.Events >= rows {
			break
		}
	}
	took := time.Since(t0)
	after, err := readProc(pid)
	if err != nil {
		return res, fmt.Errorf("sampling capture: %w", err)
	}
	_ = stream.CloseSend()
	if res.Events != rows {
		return res, fmt.Errorf("capture sent %d events for %d rows", res.Events, rows)
	}
	res.Seconds = took.Seconds()
	res.RowsPerSecond = float64(rows) / res.Seconds
	res.CPUSeconds = after.CPUSeconds - before.CPUSeconds
	res.CPUSecondsPerMillion = res.CPUSeconds * 1e6 / float64(rows)
	res.PeakRSSMB = after.PeakRSSMB
	return res, nil
}
