package task

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
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
	if !r.in.GetSpec().GetSyncTypes().GetFull() || r.st.GetFullSyncDone() {
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
		r.drainSignals(ctx)
		switch {
		case r.stopReq != nil:
			return nil
		case r.st.GetPaused():
			r.setStatus(ctx, taskv1.Status_STATUS_PAUSED)
			r.awaitResume(ctx)
			continue
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
	fut := workflow.ExecuteActivity(actx, activities.FullSync, &taskv1.FullSyncActivityInput{
		TaskId: r.in.GetTaskId(), Spec: r.in.GetSpec(), SlotName: r.st.GetSlotName(),
		PublicationName: r.st.GetPublicationName(), Tables: r.st.GetTables(),
	})
	interrupted := r.awaitOrInterrupt(ctx, fut, cancel)
	var res taskv1.FullSyncActivityResult
	if err := fut.Get(ctx, &res); err != nil {
		return nil, interrupted, err
	}
	return &res, false, nil
}
