package delivery

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	"github.com/ferry-cdc/ferry/platform/rpcstream"
)

// deliverConn is a delivery stream's two ends: the batches it reads and
// the progress it reports. A Deliver call is one; Replicate's capturePipe
// is another, reading capture's stream itself.
type deliverConn interface {
	Recv() (*deliveryv1.DeliverRequest, error)
	Send(*deliveryv1.DeliverResponse) error
}

// Replicate runs a delivery stream fed by capture directly (see the RPC's
// documentation): the rows' path is capture, then this process, then Kafka,
// and the client hears only progress.
func (s *Server) Replicate(srv deliveryv1.DeliveryService_ReplicateServer) error {
	if s.Capture == nil {
		return status.Error(codes.FailedPrecondition, "this delivery service has no capture address, which Replicate reads changes from: start it with -capture host:port (env FERRY_CAPTURE_ADDRESS)")
	}
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	start := first.GetDelivery()
	if start == nil {
		return status.Error(codes.InvalidArgument, "the first ReplicateRequest must be delivery (StartDelivery)")
	}
	st, err := newStream(srv.Context(), s, start)
	if err != nil {
		return s.Metrics.countError(start.GetTaskId(), err)
	}
	pipe := &capturePipe{ctx: srv.Context(), srv: srv, capture: s.Capture, confirmStart: start.GetOptions().GetExactlyOnce()}
	err = st.run(pipe)
	pipe.close()
	return s.Metrics.countError(start.GetTaskId(), sideStatus(err))
}

// captureError is a failure of capture's side of Replicate.
type captureError struct {
	what string
	err  error
}

func (e *captureError) Error() string { return "capture stream: " + e.what + e.err.Error() }
func (e *captureError) Unwrap() error { return e.err }

// sideStatus names the side that failed, as the client reports it:
// "capture stream: " and capture's own status, or "delivery stream: " and
// delivery's (Kafka's, mostly).
func sideStatus(err error) error {
	if err == nil {
		return nil
	}
	var ce *captureError
	if errors.As(err, &ce) {
		st := status.Convert(ce.err)
		return status.Error(st.Code(), "capture stream: "+ce.what+st.Message())
	}
	st := status.Convert(err)
	return status.Error(st.Code(), "delivery stream: "+st.Message())
}

// capturePipe is the deliverConn of Replicate. Recv runs on the stream's
// receiver goroutine and Send on its sender, so the capture stream's Send
// (acks, and the start) is serialized by ackMu, and the client stream's by
// sendMu; gRPC allows one Recv beside them.
type capturePipe struct {
	ctx          context.Context
	srv          deliveryv1.DeliveryService_ReplicateServer
	capture      capturev1.CaptureServiceClient
	confirmStart bool // exactly-once: confirm the start LSN, Kafka's, at once

	changes  capturev1.CaptureService_StreamChangesClient
	snapshot grpc.ServerStreamingClient[capturev1.ReadSnapshotResponse]
	received atomic.Uint64

	ackMu   sync.Mutex
	open    bool   // changes is open for acks
	snap    bool   // the stream is a snapshot's, which takes no acks
	acked   uint64 // the last LSN confirmed to capture
	pending uint64 // a safe LSN reported before capture was open

	sendMu sync.Mutex
	closed bool // the handler has returned
}

// Recv is the next request for the delivery stream: capture's next batch,
// or its backfill progress with exactly-once. It opens capture's stream on
// the first call, once the client says where to start.
func (p *capturePipe) Recv() (*deliveryv1.DeliverRequest, error) {
	if p.changes == nil && p.snapshot == nil {
		if err := p.openCapture(); err != nil {
			return nil, err
		}
	}
	if p.changes != nil {
		return p.recvChange()
	}
	return p.recvSnapshot()
}

// openCapture waits for the client's changes or snapshot request and opens
// that stream of capture's.
func (p *capturePipe) openCapture() error {
	req, err := p.srv.Recv()
	if err != nil {
		return err // io.EOF: the client ended before capture started
	}
	switch {
	case req.GetChanges() != nil:
		return p.openChanges(req.GetChanges())
	case req.GetSnapshot() != nil:
		p.snapshot, err = p.capture.ReadSnapshot(p.ctx, req.GetSnapshot())
		if err != nil {
			return &captureError{"opening the snapshot stream: ", err}
		}
		p.ackMu.Lock()
		p.snap = true
		p.ackMu.Unlock()
		return nil
	}
	return status.Error(codes.InvalidArgument, "the second ReplicateRequest must be changes (StartStream) or snapshot (ReadSnapshotRequest)")
}

func (p *capturePipe) openChanges(start *capturev1.StartStream) error {
	changes, err := p.capture.StreamChanges(p.ctx)
	if err != nil {
		return &captureError{"opening the change stream: ", err}
	}
	p.ackMu.Lock()
	defer p.ackMu.Unlock()
	err = changes.Send(&capturev1.StreamChangesRequest{Kind: &capturev1.StreamChangesRequest_Start{Start: start}})
	if err != nil {
		return &captureError{"starting the change stream: ", rpcstream.RecvErr(changes.Recv, err)}
	}
	p.changes, p.open = changes, true
	lsn := p.pending
	if p.confirmStart {
		lsn = max(lsn, start.GetStartLsn())
	}
	return p.confirmLocked(lsn)
}

// confirmLocked sends capture an ack of lsn if it is new; ackMu is held.
func (p *capturePipe) confirmLocked(lsn uint64) error {
	if lsn <= p.acked {
		return nil
	}
	if !p.open {
		p.pending = lsn
		return nil
	}
	// A failed Send means capture's stream has ended; the receiver, the one
	// goroutine that may call Recv, gets its status and ends delivery's
	// stream with it. Until then nothing is confirmed past p.acked.
	if err := p.changes.Send(&capturev1.StreamChangesRequest{Kind: &capturev1.StreamChangesRequest_Ack{Ack: &capturev1.Ack{FlushedLsn: lsn}}}); err == nil {
		p.acked = lsn
	}
	return nil
}

func (p *capturePipe) recvChange() (*deliveryv1.DeliverRequest, error) {
	for {
		resp, err := p.changes.Recv()
		if err != nil {
			return nil, captureEnded(err)
		}
		if b := resp.GetBatch(); b != nil {
			p.received.Add(uint64(len(b.GetEvents())))
			return &deliveryv1.DeliverRequest{Kind: &deliveryv1.DeliverRequest_Batch{Batch: b}}, nil
		}
		bf := resp.GetBackfill()
		if bf == nil {
			continue
		}
		// Before delivery acts on it, so before any ack covering it.
		if err := p.progress(&deliveryv1.ReplicateResponse{Kind: &deliveryv1.ReplicateResponse_Backfill{Backfill: bf}}); err != nil {
			return nil, err
		}
		return &deliveryv1.DeliverRequest{Kind: &deliveryv1.DeliverRequest_Backfill{Backfill: bf}}, nil
	}
}

// recvSnapshot passes the snapshot's batches on and its start and progress
// to the client; after the final progress it ends the stream as a client
// half-close does, so delivery waits for Kafka and reports last.
func (p *capturePipe) recvSnapshot() (*deliveryv1.DeliverRequest, error) {
	for {
		resp, err := p.snapshot.Recv()
		if err != nil {
			return nil, captureEnded(err)
		}
		if b := resp.GetBatch(); b != nil {
			p.received.Add(uint64(len(b.GetEvents())))
			return &deliveryv1.DeliverRequest{Kind: &deliveryv1.DeliverRequest_Batch{Batch: b}}, nil
		}
		m := &deliveryv1.ReplicateResponse{}
		switch {
		case resp.GetStarted() != nil:
			m.Kind = &deliveryv1.ReplicateResponse_SnapshotStarted{SnapshotStarted: resp.GetStarted()}
		case resp.GetProgress() != nil:
			m.Kind = &deliveryv1.ReplicateResponse_SnapshotProgress{SnapshotProgress: resp.GetProgress()}
		default:
			continue
		}
		if err := p.progress(m); err != nil {
			return nil, err
		}
		if resp.GetProgress().GetDone() {
			return nil, io.EOF
		}
	}
}

// captureEnded is capture's stream failing. Capture never ends a stream by
// itself, so its end is an error too.
func captureEnded(err error) error {
	if errors.Is(err, io.EOF) {
		err = status.Error(codes.Unavailable, "capture ended the stream unexpectedly")
	}
	return &captureError{err: err}
}

// Send confirms the safe LSN to capture, then reports it to the client.
// The backfill progress relayed to delivery is not forwarded: without
// exactly-once delivery ignores it, with it delivery commits it in Kafka.
func (p *capturePipe) Send(r *deliveryv1.DeliverResponse) error {
	p.ackMu.Lock()
	var err error
	if !p.snap {
		err = p.confirmLocked(r.GetSafeLsn())
	}
	p.ackMu.Unlock()
	if err != nil {
		return err
	}
	return p.progress(&deliveryv1.ReplicateResponse{Kind: &deliveryv1.ReplicateResponse_Ack{Ack: r}})
}

func (p *capturePipe) progress(m *deliveryv1.ReplicateResponse) error {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	if p.closed {
		return errReplicateEnded
	}
	m.ReceivedEvents = p.received.Load()
	return p.srv.Send(m)
}

// errReplicateEnded is the receiver's progress after the handler returned,
// when gRPC no longer takes a Send.
var errReplicateEnded = errors.New("the Replicate stream has ended")

// close stops progress from reaching the client stream, which gRPC forbids
// once the handler has returned; the receiver may still be running.
func (p *capturePipe) close() {
	p.sendMu.Lock()
	p.closed = true
	p.sendMu.Unlock()
}
