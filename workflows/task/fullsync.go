package task

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// FullSync relays capture's snapshot to delivery and returns once Kafka has
// acknowledged every row: the final safe LSN must be the snapshot's
// consistent point and the acknowledged count the number of rows relayed,
// which must be the number capture read. It is single-attempt like
// Incremental; an interrupted snapshot starts again from scratch (see
// services/capture/snapshot.go).
func (a *Activities) FullSync(ctx context.Context, in *taskv1.FullSyncActivityInput) (*taskv1.FullSyncActivityResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Resolved again even when setup passed the tables: the estimates give
	// progress its denominator.
	resolved, err := a.Catalog.ResolveTables(ctx, &catalogv1.ResolveTablesRequest{
		Source: in.GetSpec().GetSource(), Objects: in.GetSpec().GetObjects(),
	})
	if err != nil {
		return nil, classifyRPC("resolving the selected tables", err)
	}
	tables := in.GetTables()
	if len(tables) == 0 {
		tables = resolved.GetTables()
	}
	relay := grpc.ForceCodecV2(frameCodec{})
	delStream, err := a.Delivery.Deliver(ctx, relay)
	if err != nil {
		return nil, classifyRPC("opening the delivery stream", err)
	}
	if err := delStream.Send(&deliveryv1.DeliverRequest{Kind: &deliveryv1.DeliverRequest_Start{Start: &deliveryv1.StartDelivery{
		TaskId: in.GetTaskId(), Kafka: in.GetSpec().GetDestination(), Options: in.GetSpec().GetKafka(),
		Objects: in.GetSpec().GetObjects(), SourceDatabase: in.GetSpec().GetSource().GetDatabase(),
	}}}); err != nil {
		return nil, classifyRPC("starting the delivery stream", recvErr(delStream.Recv, err))
	}
	capStream, err := a.Capture.ReadSnapshot(ctx, &capturev1.ReadSnapshotRequest{
		Source: in.GetSpec().GetSource(), SlotName: in.GetSlotName(), PublicationName: in.GetPublicationName(), Tables: tables,
		Throttle: in.GetSpec().GetAdvanced().GetFullThrottle(),
	}, relay)
	if err != nil {
		return nil, classifyRPC("opening the snapshot stream", err)
	}
	prog := &snapshotProgress{estimates: estimatesByTable(resolved)}
	acksDone := make(chan error, 1)
	go func() { acksDone <- prog.collectAcks(delStream) }()
	go prog.heartbeat(ctx)

	if err := relaySnapshot(capStream, delStream, prog); err != nil {
		var sendErr deliverySendError
		if errors.As(err, &sendErr) {
			// Delivery ended the stream; its own status says why.
			if ackErr := <-acksDone; ackErr != nil {
				err = ackErr
			}
		}
		return nil, classifyRPC("full sync", err)
	}
	if err := delStream.CloseSend(); err != nil {
		return nil, classifyRPC("full sync: closing the delivery stream", err)
	}
	if err := <-acksDone; err != nil {
		return nil, classifyRPC("full sync: waiting for Kafka's acknowledgements", err)
	}
	res, err := prog.result()
	if err != nil {
		return nil, temporal.NewApplicationError(err.Error(), ErrOther)
	}
	activity.GetLogger(ctx).Info("full sync delivered", "consistentLSN", res.GetConsistentLsn(), "rows", res.GetAckedRows())
	return res, nil
}

// deliverySendError marks a failed send to delivery, whose cause only the
// delivery stream's status tells.
type deliverySendError struct{ err error }

func (e deliverySendError) Error() string { return e.err.Error() }
func (e deliverySendError) Unwrap() error { return e.err }

// relaySnapshot forwards batches as raw frames and absorbs capture's start
// and progress messages, until capture reports the snapshot done.
func relaySnapshot(capStream grpc.ServerStreamingClient[capturev1.ReadSnapshotResponse],
	delStream deliveryv1.DeliveryService_DeliverClient, prog *snapshotProgress) error {
	for {
		var f rawFrame
		if err := capStream.RecvMsg(&f); err != nil {
			return wrapStream("capture", err)
		}
		if len(f.b) > 0 && f.b[0] == captureBatchTag {
			n, err := batchEvents(f.b)
			if err != nil {
				return wrapStream("capture", err)
			}
			if err := f.toDeliverRequest(); err != nil {
				return wrapStream("capture", err)
			}
			if err := delStream.SendMsg(&f); err != nil {
				return deliverySendError{wrapStream("delivery", err)}
			}
			prog.relayed(n)
			continue
		}
		var resp capturev1.ReadSnapshotResponse
		if err := proto.Unmarshal(f.b, &resp); err != nil {
			return wrapStream("capture", fmt.Errorf("decoding a snapshot message: %w", err))
		}
		if done := prog.absorb(&resp); done {
			return nil
		}
	}
}

// batchEvents counts the events of a ChangeBatch frame without decoding
// them: field 2 of the batch, which is the frame's one field.
func batchEvents(frame []byte) (int, error) {
	_, _, n := protowire.ConsumeTag(frame)
	if n < 0 {
		return 0, protowire.ParseError(n)
	}
	batch, m := protowire.ConsumeBytes(frame[n:])
	if m < 0 {
		return 0, protowire.ParseError(m)
	}
	count := 0
	for len(batch) > 0 {
		num, typ, n := protowire.ConsumeTag(batch)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, batch[n:])
		if m < 0 {
			return 0, protowire.ParseError(m)
		}
		if num == 2 {
			count++
		}
		batch = batch[n+m:]
	}
	return count, nil
}

// snapshotProgress is shared by the relay, ack and heartbeat goroutines.
type snapshotProgress struct {
	mu       sync.Mutex
	started  *capturev1.SnapshotStarted
	tables   []*taskv1.TableRowCount
	done     bool
	rows     uint64
	lastAck  *deliveryv1.DeliverResponse
	ackCount uint64
	// The catalog's row estimates by schema and table, for progress.
	estimates map[string]uint64
}

func estimatesByTable(res *catalogv1.ResolveTablesResponse) map[string]uint64 {
	out := make(map[string]uint64, len(res.GetTables()))
	for i, t := range res.GetTables() {
		if i < len(res.GetEstimatedRows()) {
			out[tableKey(t)] = res.GetEstimatedRows()[i]
		}
	}
	return out
}

func (p *snapshotProgress) relayed(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rows += uint64(n)
}

// absorb records a start or progress message and reports the snapshot done.
func (p *snapshotProgress) absorb(resp *capturev1.ReadSnapshotResponse) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := resp.GetStarted(); st != nil {
		p.started = st
	}
	if pr := resp.GetProgress(); pr != nil {
		p.tables, p.done = pr.GetTables(), pr.GetDone()
		for _, t := range p.tables {
			t.EstimatedRows = p.estimates[tableKey(t.GetTable())]
		}
	}
	return p.done
}

// collectAcks reads delivery's responses until the stream ends; the last
// one, sent after the client closed its side, is the final count.
func (p *snapshotProgress) collectAcks(delStream deliveryv1.DeliveryService_DeliverClient) error {
	for {
		ack, err := delStream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return wrapStream("delivery", err)
		}
		p.mu.Lock()
		p.lastAck, p.ackCount = ack, ack.GetAckedEvents()
		p.mu.Unlock()
	}
}

func (p *snapshotProgress) heartbeat(ctx context.Context) {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		activity.RecordHeartbeat(ctx, p.snapshot())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// snapshot is the heartbeat's view: rows per table relayed so far.
func (p *snapshotProgress) snapshot() *taskv1.FullSyncActivityResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &taskv1.FullSyncActivityResult{
		ConsistentLsn: p.started.GetConsistentLsn(), Tables: p.tables, AckedRows: p.ackCount,
	}
}

// result checks that what capture read, what was relayed and what Kafka
// acknowledged agree, and that the safe LSN reached the consistent point.
func (p *snapshotProgress) result() (*taskv1.FullSyncActivityResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started == nil || !p.done {
		return nil, errors.New("full sync: capture ended the snapshot without its start or its final counts")
	}
	var read uint64
	for _, t := range p.tables {
		read += t.GetRows()
	}
	lsn := p.started.GetConsistentLsn()
	if read != p.rows || p.lastAck.GetAckedEvents() != p.rows || p.lastAck.GetSafeLsn() < lsn {
		return nil, fmt.Errorf("full sync: capture read %d rows and the worker relayed %d, but Kafka acknowledged %d with safe LSN %d (consistent point %d)",
			read, p.rows, p.lastAck.GetAckedEvents(), p.lastAck.GetSafeLsn(), lsn)
	}
	return &taskv1.FullSyncActivityResult{ConsistentLsn: lsn, Tables: p.tables, AckedRows: p.rows, Done: true}, nil
}
