package task

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/proto"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// fullSyncChange versions the full sync branch: histories recorded before
// it (which never had full sync) replay without it.
const fullSyncChange = "full-sync"

// fullSyncStartToClose is effectively unbounded: heartbeats, not a
// deadline, tell whether a snapshot of any size is still alive.
const fullSyncStartToClose = 10 * 365 * 24 * time.Hour

// fullSyncPending tells whether this task still needs its snapshot. Once
// full_sync_done is in the state, it never runs again.
func (r *taskRun) fullSyncPending(ctx workflow.Context) bool {
	if !r.spec().GetSyncTypes().GetFull() || r.st.GetFullSyncDone() {
		return false
	}
	return workflow.GetVersion(ctx, fullSyncChange, workflow.DefaultVersion, 1) >= 1
}

// fullSync runs the full sync activity until it succeeds, applying pause,
// stop and the retry windows as incremental sync does. On success the
// checkpoint is the snapshot's consistent point, where incremental starts.
// A stop leaves r.stopReq set for the caller.
func (r *taskRun) fullSync(ctx workflow.Context) error {
	r.setPhase(ctx, taskv1.Phase_PHASE_FULL_SYNC)
	for {
		if r.settle(ctx) {
			return nil
		}
		r.setStatus(ctx, taskv1.Status_STATUS_RUNNING)
		res, interrupted, err := r.runFullSyncOnce(ctx)
		switch {
		case err == nil:
			r.st.FullSyncDone = true
			r.st.FullSyncRows = res.GetTables()
			r.st.Checkpoint = &cdcv1.Checkpoint{ConfirmedLsn: res.GetConsistentLsn(), AckedEvents: res.GetAckedRows()}
			r.st.FailingSince, r.st.ConsecutiveFailures = nil, 0
			r.st.Phase = taskv1.Phase_PHASE_INCREMENTAL
			return nil
		case interrupted:
			continue
		}
		if err := r.onFailure(ctx, err, false); err != nil {
			return err
		}
	}
}

// settle applies the signals delivered between two full sync attempts: it
// waits out a pause and clears a restart (the next attempt is the restart),
// and reports a stop, which the caller leaves to r.stopReq. Modifications
// stay queued for incremental sync.
func (r *taskRun) settle(ctx workflow.Context) (stopped bool) {
	for {
		r.drainSignals(ctx)
		switch {
		case r.stopReq != nil:
			return true
		case r.restartReq:
			r.restart(ctx)
		case r.st.GetPaused():
			r.setStatus(ctx, taskv1.Status_STATUS_PAUSED)
			r.awaitResume(ctx)
		default:
			return false
		}
	}
}

// runFullSyncOnce runs one attempt. interrupted is true when a pause or
// stop cancelled it; a snapshot that completed anyway still counts.
func (r *taskRun) runFullSyncOnce(ctx workflow.Context) (*taskv1.FullSyncActivityResult, bool, error) {
	actx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	r.throttleDirty = false // the attempt takes the throttle from its input
	actx = workflow.WithActivityOptions(actx, workflow.ActivityOptions{
		StartToCloseTimeout: fullSyncStartToClose,
		HeartbeatTimeout:    incrementalHeartbeatTimeout,
		WaitForCancellation: true,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	fut := workflow.ExecuteActivity(actx, taskapi.ActivityFullSync, &taskv1.FullSyncActivityInput{
		TaskId: r.in.GetTaskId(), Spec: r.spec(), SlotName: r.st.GetSlotName(),
		PublicationName: r.st.GetPublicationName(), Tables: r.st.GetTables(), ReplicationOwner: r.st.GetReplicationOwner(),
	})
	interrupted := r.awaitOrInterrupt(ctx, fut, cancel)
	var res taskv1.FullSyncActivityResult
	if err := fut.Get(ctx, &res); err != nil {
		return nil, interrupted, err
	}
	return &res, false, nil
}

// chunkedFullSyncChange versions chunked full sync: histories recorded
// before it (one exported snapshot, always) replay without it.
const chunkedFullSyncChange = "chunked-full-sync"

// planChunkedFullSync starts full sync from the slot setup created: every
// table is a backfill from its first key, streamed beside the changes.
func (r *taskRun) planChunkedFullSync(res *taskv1.SetupActivityResult) {
	cp := &cdcv1.Checkpoint{ConfirmedLsn: res.GetStartLsn()}
	for i, t := range res.GetTables() {
		var est uint64
		if i < len(res.GetEstimatedRows()) {
			est = res.GetEstimatedRows()[i]
		}
		cp.Backfills = append(cp.Backfills, &cdcv1.BackfillProgress{Schema: t.GetSchema(), Table: t.GetTable(), EstimatedRows: est})
	}
	r.st.Checkpoint, r.st.FullSyncChunked = cp, true
	r.st.Phase = taskv1.Phase_PHASE_FULL_SYNC
}

// streamSpec is the spec the stream runs with. During chunked full sync
// nearly every row the stream carries is a snapshot row, so the full sync
// throttle (its rows and megabytes; capture has no query limit for chunks)
// is the stream's.
func (r *taskRun) streamSpec() *taskv1.TaskSpec {
	if r.st.GetPhase() != taskv1.Phase_PHASE_FULL_SYNC || !r.st.GetFullSyncChunked() {
		return r.spec()
	}
	spec := proto.Clone(r.spec()).(*taskv1.TaskSpec)
	if spec.Advanced == nil {
		spec.Advanced = &taskv1.AdvancedOptions{}
	}
	full := spec.GetAdvanced().GetFullThrottle()
	spec.Advanced.IncrementalThrottle = &taskv1.IncrementalThrottle{
		RowsPerSecond: full.GetRowsPerSecond(), MegabytesPerSecond: full.GetMegabytesPerSecond(),
	}
	return spec
}

// chunkedFullSync runs the incremental activity until Kafka confirmed every
// table's last chunk. An interrupted attempt (a pause, a restart, a failure,
// a dead worker) leaves the confirmed chunks in the checkpoint, so the next
// one resumes at the next chunk instead of reading everything again.
func (r *taskRun) chunkedFullSync(ctx workflow.Context) error {
	r.setPhase(ctx, taskv1.Phase_PHASE_FULL_SYNC)
	for {
		if r.settle(ctx) {
			return nil
		}
		r.setStatus(ctx, taskv1.Status_STATUS_RUNNING)
		before := r.st.GetCheckpoint().GetConfirmedLsn()
		done, err := r.runIncrementalOnce(ctx, true)
		if done {
			r.finishChunkedFullSync()
			return nil
		}
		if err == nil {
			continue
		}
		if err := r.onFailure(ctx, err, r.st.GetCheckpoint().GetConfirmedLsn() > before); err != nil {
			return err
		}
	}
}

func (r *taskRun) finishChunkedFullSync() {
	r.st.FullSyncRows = nil
	for _, b := range r.st.GetCheckpoint().GetBackfills() {
		r.st.FullSyncRows = append(r.st.FullSyncRows, &taskv1.TableRowCount{
			Table: &taskv1.TableRef{Schema: b.GetSchema(), Table: b.GetTable()}, Rows: b.GetRows(), Done: b.GetDone(),
			EstimatedRows: b.GetEstimatedRows(),
		})
	}
	// The counts live on in full_sync_rows; the checkpoint, which every
	// heartbeat carries, keeps only backfills still to come.
	r.st.Checkpoint.Backfills = nil
	r.st.FullSyncDone = true
	r.st.FailingSince, r.st.ConsecutiveFailures = nil, 0
	r.st.Phase = taskv1.Phase_PHASE_INCREMENTAL
}
