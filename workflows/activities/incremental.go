package activities

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"google.golang.org/grpc"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/rpcstream"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// heartbeatEvery keeps heartbeats flowing while the stream is idle; the SDK
// throttles the ones sent on every ack.
const heartbeatEvery = time.Second

// ackHeartbeatGap spaces the heartbeats acks record. The SDK sends at
// most one per HeartbeatThrottle but encodes every one it is given, and
// during a chunked full sync of 10,000 tables the checkpoint (a progress
// entry per table) is a megabyte: one per ack, a chunk each, took more CPU
// than the sync. An attempt that ends returns its checkpoint whole, so
// only a worker that dies loses up to this much of the heartbeat's lag.
const ackHeartbeatGap = 500 * time.Millisecond

// HeartbeatThrottle is the longest the worker holds back a heartbeat; it
// bounds how long a pause or stop waits for the incremental activity.
const HeartbeatThrottle = 2 * time.Second

// Incremental runs the task's change stream: delivery reads it from
// capture, writes it to Kafka and confirms Kafka's acks to capture
// (DeliveryService.Replicate); the activity only steers and hears progress.
// Only an LSN that delivery reports safe is heartbeated and returned with
// any error. It runs until cancelled or until the stream fails; the
// workflow decides whether to retry.
//
// With exactly-once delivery, delivery's committed checkpoint may be ahead
// of the heartbeated one (a worker died after Kafka committed), so capture
// starts where Kafka already is (incremental_eos.go).
func (a *Activities) Incremental(ctx context.Context, in *taskv1.IncrementalActivityInput) (*cdcv1.Checkpoint, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cp := &checkpointTracker{lsn: in.GetCheckpoint().GetConfirmedLsn(), backfills: newBackfillProgress(in.GetCheckpoint().GetBackfills()),
		untilBackfilled: in.GetUntilBackfilled()}
	errc := make(chan error, 2)
	go func() { errc <- heartbeatLoop(ctx, cp) }()

	rs, err := a.openReplicate(ctx, in, cp)
	if errors.Is(err, errBackfilled) {
		activity.GetLogger(ctx).Info("every backfill was already committed to Kafka", "confirmedLSN", cp.get())
		return cp.snapshot(), nil
	}
	if err != nil {
		return nil, err
	}
	go func() { errc <- followProgress(ctx, rs, cp, a.latencyWatch(ctx, in)) }()
	go a.sourceWatch(ctx, in).run(ctx)
	err = <-errc
	cancel()
	if errors.Is(err, errBackfilled) {
		activity.GetLogger(ctx).Info("every backfill confirmed", "confirmedLSN", cp.get())
		return cp.snapshot(), nil
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		activity.GetLogger(ctx).Info("incremental sync cancelled", "confirmedLSN", cp.get())
	}
	return nil, ClassifyRPC("incremental sync", err, cp.snapshot())
}

// replicateStream is the client's end of DeliveryService.Replicate.
type replicateStream = grpc.BidiStreamingClient[deliveryv1.ReplicateRequest, deliveryv1.ReplicateResponse]

// openReplicate starts delivery, then capture's stream at cp's LSN with
// cp's unfinished backfills; with exactly-once, at Kafka's checkpoint when
// that is further along (resumeExactlyOnce). It returns errBackfilled when
// Kafka already holds every chunk of a chunked full sync.
func (a *Activities) openReplicate(ctx context.Context, in *taskv1.IncrementalActivityInput, cp *checkpointTracker) (replicateStream, error) {
	rs, err := a.Delivery.Replicate(ctx)
	if err != nil {
		return nil, ClassifyRPC("opening the delivery stream", err, cp.snapshot())
	}
	start := &deliveryv1.ReplicateRequest{Kind: &deliveryv1.ReplicateRequest_Delivery{Delivery: deliveryStart(in.GetTaskId(), in.GetSpec(), cp.get())}}
	if err := rs.Send(start); err != nil {
		return nil, ClassifyRPC("starting the delivery stream", rpcstream.RecvErr(rs.Recv, err), cp.snapshot())
	}
	if in.GetSpec().GetKafka().GetExactlyOnce() {
		if err := resumeExactlyOnce(ctx, rs, cp); err != nil {
			return nil, err
		}
	}
	changes := &deliveryv1.ReplicateRequest{Kind: &deliveryv1.ReplicateRequest_Changes{Changes: &capturev1.StartStream{
		Source: in.GetSpec().GetSource(), SlotName: in.GetSlotName(), PublicationName: in.GetPublicationName(),
		StartLsn: cp.get(), HeartbeatSeconds: heartbeatSeconds(in.GetSpec()),
		Throttle: in.GetSpec().GetAdvanced().GetIncrementalThrottle(), Backfills: cp.pendingBackfills(),
		BackfillChunkRows: backfillChunkRows(in),
	}}}
	if err := rs.Send(changes); err != nil {
		return nil, ClassifyRPC("starting the capture stream", rpcstream.RecvErr(rs.Recv, err), cp.snapshot())
	}
	return rs, nil
}

// fullSyncChunkRows is the chunk size of chunked full sync. Each chunk
// costs two watermarks, a query and a wait for the stream to reach its high
// watermark, so larger chunks read faster (1,000-row chunks ran a 200,000-row
// table at about 45,000 rows/s here); a chunk is held in capture's memory
// until then, and rows changed during its window are dropped from it.
// Tables added to a running task keep capture's default of 1,000.
const fullSyncChunkRows = 10_000

func backfillChunkRows(in *taskv1.IncrementalActivityInput) uint32 {
	if in.GetUntilBackfilled() {
		return fullSyncChunkRows
	}
	return 0
}

// errBackfilled ends an attempt asked to stop once every backfill is
// confirmed (chunked full sync).
var errBackfilled = errors.New("every backfill is confirmed")

// heartbeatSeconds is the task's heartbeat interval, defaulted for specs
// normalized before the option was.
func heartbeatSeconds(spec *taskv1.TaskSpec) uint32 {
	if h := spec.GetAdvanced().GetHeartbeatSeconds(); h > 0 {
		return h
	}
	return taskapi.DefaultHeartbeatSeconds
}

// deliveryStart opens a delivery stream for the task, whichever phase
// feeds it; checkpoint is the worker's (see StartDelivery.checkpoint_lsn).
func deliveryStart(taskID string, spec *taskv1.TaskSpec, checkpoint uint64) *deliveryv1.StartDelivery {
	return &deliveryv1.StartDelivery{
		TaskId: taskID, Kafka: spec.GetDestination(), Options: spec.GetKafka(),
		Objects: spec.GetObjects(), SourceDatabase: spec.GetSource().GetDatabase(),
		WriteTableDefinitions: spec.GetSyncTypes().GetSchema(), CheckpointLsn: checkpoint,
	}
}

// followProgress takes delivery's progress until the stream ends: capture's
// backfill progress, which waits until Kafka confirms it, and every safe LSN,
// which delivery has confirmed to capture, recorded as the checkpoint with
// the end-to-end latency it reports (alert.go), which also feeds alerts
// (nil: the task has no latency alert).
func followProgress(ctx context.Context, rs replicateStream, cp *checkpointTracker, alerts *latencyWatch) error {
	var beat heartbeatGate
	for {
		m, err := rs.Recv()
		if err != nil {
			return err // delivery's status names the side that failed
		}
		if b := m.GetBackfill(); b != nil {
			cp.reportBackfill(b)
			continue
		}
		ack := m.GetAck()
		if ack == nil || !cp.advance(ack) {
			continue
		}
		latency := ackLatency(ack)
		cp.setLatency(latency)
		alerts.observe(latency, time.Now())
		if beat.due(time.Now()) {
			activity.RecordHeartbeat(ctx, cp.snapshot())
		}
		if cp.finished() {
			return errBackfilled
		}
	}
}

// heartbeatGate lets a heartbeat through at most once per ackHeartbeatGap.
type heartbeatGate struct{ last time.Time }

func (g *heartbeatGate) due(now time.Time) bool {
	if !g.last.IsZero() && now.Sub(g.last) < ackHeartbeatGap {
		return false
	}
	g.last = now
	return true
}

func heartbeatLoop(ctx context.Context, cp *checkpointTracker) error {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		activity.RecordHeartbeat(ctx, cp.snapshot())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// checkpointTracker is shared by the ack and heartbeat goroutines.
type checkpointTracker struct {
	mu           sync.Mutex
	lsn          uint64
	events       uint64
	deadLettered uint64
	latencyMs    uint64 // of the last ack that moved lsn
	backfills    backfillProgress
	// Chunked full sync: the attempt ends once every backfill is confirmed.
	untilBackfilled bool
}

// finished tells a chunked full sync attempt that Kafka confirmed the last
// chunk of every table.
func (c *checkpointTracker) finished() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.untilBackfilled {
		return false
	}
	for _, b := range c.backfills.confirmed {
		if !b.GetDone() {
			return false
		}
	}
	return true
}

func (c *checkpointTracker) reportBackfill(b *cdcv1.BackfillProgress) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.backfills.report(b, c.lsn)
}

// pendingBackfills are the added tables whose snapshot is not finished.
func (c *checkpointTracker) pendingBackfills() []*cdcv1.BackfillProgress {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*cdcv1.BackfillProgress
	for _, b := range c.backfills.snapshot() {
		if !b.GetDone() {
			out = append(out, b)
		}
	}
	return out
}

// advance records delivery's progress and reports whether the safe LSN moved.
func (c *checkpointTracker) advance(ack *deliveryv1.DeliverResponse) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events, c.deadLettered = ack.GetAckedEvents(), ack.GetDeadLettered()
	if ack.GetSafeLsn() <= c.lsn {
		return false
	}
	c.lsn = ack.GetSafeLsn()
	c.backfills.promote(c.lsn)
	return true
}

// setLatency records the end-to-end latency of the last safe LSN.
func (c *checkpointTracker) setLatency(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.latencyMs = uint64(d.Milliseconds())
}

func (c *checkpointTracker) get() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lsn
}

func (c *checkpointTracker) snapshot() *cdcv1.Checkpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &cdcv1.Checkpoint{ConfirmedLsn: c.lsn, AckedEvents: c.events, DeadLettered: c.deadLettered, LatencyMs: c.latencyMs,
		Backfills: c.backfills.snapshot()}
}
