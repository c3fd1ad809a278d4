package activities

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

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/rpcstream"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// FullSync has delivery read capture's snapshot and write it to Kafka
// (DeliveryService.Replicate), and returns once Kafka has acknowledged
// every row: the final safe LSN must be the snapshot's consistent point and
// the acknowledged count the number of rows delivery received, which must
// be the number capture read. It is single-attempt like Incremental; an
// interrupted snapshot starts again from scratch (see
// services/capture/snapshot).
func (a *Activities) FullSync(ctx context.Context, in *taskv1.FullSyncActivityInput) (*taskv1.FullSyncActivityResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Resolved again even when setup passed the tables: the estimates give
	// progress its denominator.
	resolved, err := a.Catalog.ResolveTables(ctx, &catalogv1.ResolveTablesRequest{
		Source: in.GetSpec().GetSource(), Objects: in.GetSpec().GetObjects(),
	})
	if err != nil {
		return nil, ClassifyRPC("resolving the selected tables", err)
	}
	tables := in.GetTables()
	if len(tables) == 0 {
		tables = resolved.GetTables()
	}
	rs, err := a.Delivery.Replicate(ctx)
	if err != nil {
		return nil, ClassifyRPC("opening the delivery stream", err)
	}
	spec := in.GetSpec()
	for _, req := range []*deliveryv1.ReplicateRequest{
		{Kind: &deliveryv1.ReplicateRequest_Delivery{Delivery: &deliveryv1.StartDelivery{
			TaskId: in.GetTaskId(), Kafka: spec.GetDestination(), Options: spec.GetKafka(),
			Objects: spec.GetObjects(), SourceDatabase: spec.GetSource().GetDatabase(),
		}}},
		{Kind: &deliveryv1.ReplicateRequest_Snapshot{Snapshot: &capturev1.ReadSnapshotRequest{
			Source: spec.GetSource(), SlotName: in.GetSlotName(), PublicationName: in.GetPublicationName(), Tables: tables,
			Throttle: spec.GetAdvanced().GetFullThrottle(), Owner: in.GetReplicationOwner(),
		}}},
	} {
		if err := rs.Send(req); err != nil {
			return nil, ClassifyRPC("starting the full sync", rpcstream.RecvErr(rs.Recv, err))
		}
	}
	prog := &snapshotProgress{estimates: estimatesByTable(resolved)}
	go prog.heartbeat(ctx)
	if err := prog.follow(rs); err != nil {
		return nil, ClassifyRPC("full sync", err)
	}
	res, err := prog.result()
	if err != nil {
		return nil, temporal.NewApplicationError(err.Error(), taskapi.ErrOther)
	}
	activity.GetLogger(ctx).Info("full sync delivered", "consistentLSN", res.GetConsistentLsn(), "rows", res.GetAckedRows())
	return res, nil
}

// snapshotProgress is shared by the progress and heartbeat goroutines.
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

// follow records delivery's progress until the stream ends, which
// delivery does once Kafka has acknowledged the snapshot's last row.
func (p *snapshotProgress) follow(rs grpc.BidiStreamingClient[deliveryv1.ReplicateRequest, deliveryv1.ReplicateResponse]) error {
	for {
		m, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err // delivery's status names the side that failed
		}
		p.absorb(m)
	}
}

// absorb records a start, progress or ack message.
func (p *snapshotProgress) absorb(m *deliveryv1.ReplicateResponse) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rows = m.GetReceivedEvents()
	if st := m.GetSnapshotStarted(); st != nil {
		p.started = st
	}
	if pr := m.GetSnapshotProgress(); pr != nil {
		p.tables, p.done = pr.GetTables(), pr.GetDone()
		for _, t := range p.tables {
			t.EstimatedRows = p.estimates[tableKey(t.GetTable())]
		}
	}
	if ack := m.GetAck(); ack != nil {
		p.lastAck, p.ackCount = ack, ack.GetAckedEvents()
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
		return nil, fmt.Errorf("full sync: capture read %d rows and delivery received %d, but Kafka acknowledged %d with safe LSN %d (consistent point %d)",
			read, p.rows, p.lastAck.GetAckedEvents(), p.lastAck.GetSafeLsn(), lsn)
	}
	return &taskv1.FullSyncActivityResult{ConsistentLsn: lsn, Tables: p.tables, AckedRows: p.rows, Done: true}, nil
}
