package activities

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"google.golang.org/protobuf/proto"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
)

// resumeTimeout bounds the wait for an exactly-once delivery stream's
// first response: delivery fences the task's earlier producer (up to a
// minute) and reads its checkpoint (up to two) before it answers.
const resumeTimeout = 4 * time.Minute

// resumeExactlyOnce waits for the checkpoint delivery committed to Kafka
// with its last transaction, and moves cp to the further along of that and
// the heartbeated checkpoint, each backfill to its further along progress.
// A chunk Kafka already holds is thus never read again: read at a new
// watermark, its rows would not be dropped as resent. Delivery confirms
// the start LSN to capture at once, as it would have confirmed it on an
// ack. It returns errBackfilled when Kafka already holds every chunk of a
// chunked full sync.
func resumeExactlyOnce(ctx context.Context, rs replicateStream, cp *checkpointTracker) error {
	first, err := firstResponse(ctx, rs, resumeTimeout)
	if err != nil {
		return ClassifyRPC("resuming the exactly-once delivery stream", err, cp.snapshot())
	}
	cp.resume(first)
	activity.GetLogger(ctx).Info("delivery resumed from its exactly-once checkpoint",
		"lsn", first.GetResumedFromLsn(), "backfills", len(first.GetResumedBackfills()), "startLSN", cp.get())
	activity.RecordHeartbeat(ctx, cp.snapshot())
	if cp.finished() {
		return errBackfilled
	}
	return nil
}

// firstResponse receives delivery's first progress, its resumed
// checkpoint, within timeout.
func firstResponse(ctx context.Context, rs replicateStream, timeout time.Duration) (*deliveryv1.DeliverResponse, error) {
	type result struct {
		r   *deliveryv1.ReplicateResponse
		err error
	}
	got := make(chan result, 1)
	go func() {
		r, err := rs.Recv()
		got <- result{r, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case res := <-got:
		if res.err != nil {
			return nil, res.err
		}
		if res.r.GetAck() == nil {
			return nil, fmt.Errorf("delivery's first progress is not its resumed checkpoint: %v", res.r)
		}
		return res.r.GetAck(), nil
	case <-t.C:
		// The caller cancels ctx, which ends the Recv.
		return nil, fmt.Errorf("delivery did not answer within %s: is the broker reachable and the task's transactional.id free?", timeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// resume takes delivery's first exactly-once response: its checkpoint if
// further along than the heartbeated one, and its backfill progress (see
// backfillProgress.merge).
func (c *checkpointTracker) resume(r *deliveryv1.DeliverResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.backfills.merge(r.GetResumedBackfills(), c.lsn)
	c.lsn = max(c.lsn, r.GetSafeLsn())
	c.events, c.deadLettered = r.GetAckedEvents(), r.GetDeadLettered()
}

// merge takes, for each table this checkpoint backfills, Kafka's committed
// progress when it is further along (a later chunk's lsn). Progress below
// the heartbeated LSN base is not newer than what the checkpoint holds:
// the worker reports each progress before delivery sees it and heartbeats
// it with any LSN past it. Progress at base may not be in the checkpoint
// yet (the worker confirms a chunk only once the safe LSN is past it, see
// backfillProgress.promote), and Kafka holds its rows. Such progress can only be
// left from an earlier backfill of a table removed and added again, and
// must not skip the new one. Tables the checkpoint does not backfill are
// done or removed, and ignored.
func (p *backfillProgress) merge(committed []*cdcv1.BackfillProgress, base uint64) {
	for _, k := range committed {
		if k.GetLsn() < base {
			continue
		}
		i, ok := p.at[keyOf(k)]
		if !ok || k.GetLsn() <= p.confirmed[i].GetLsn() {
			continue
		}
		next := proto.Clone(k).(*cdcv1.BackfillProgress)
		next.EstimatedRows = max(next.GetEstimatedRows(), p.confirmed[i].GetEstimatedRows())
		p.confirmed[i] = next
	}
}
