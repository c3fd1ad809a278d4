package task

import (
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// applyModifications applies the queued modify-objects signals in order.
// A refused one leaves the task as it was and says why in
// last_signal_error; the stream restarts either way, from the checkpoint.
func (r *taskRun) applyModifications(ctx workflow.Context) {
	for len(r.pendingModify) > 0 {
		sig := r.pendingModify[0]
		r.pendingModify = r.pendingModify[1:]
		if err := r.modify(ctx, sig); err != nil {
			r.st.LastSignalError = describe(err)
			workflow.GetLogger(ctx).Warn("modify-objects refused; the task keeps its objects", "error", err)
			continue
		}
		r.st.LastSignalError = ""
	}
}

func (r *taskRun) modify(ctx workflow.Context, sig *taskv1.ModifyObjectsSignal) error {
	if len(sig.GetObjects().GetTables()) == 0 && len(sig.GetObjects().GetSchemas()) == 0 && !sig.GetObjects().GetWholeDatabase() {
		return temporal.NewNonRetryableApplicationError(
			"modify-objects: objects selects nothing; send the whole new selection (tables, schemas or whole_database)", taskapi.ErrConfig, nil)
	}
	spec := taskapi.ModifiedSpec(r.spec(), sig)
	// A modification must not hold the stream back for a whole connection
	// window: past the other-issues window it is refused instead.
	opts := r.shortActivityOptions()
	opts.ScheduleToCloseTimeout = r.retryWindow(taskv1.ErrorClass_ERROR_CLASS_OTHER)
	var res taskv1.ModifyActivityResult
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), taskapi.ActivityModify, &taskv1.ModifyActivityInput{
		TaskId: r.in.GetTaskId(), Spec: spec, PublicationName: r.st.GetPublicationName(),
		PreviousTables: r.st.GetTables(), PreviousObjects: r.spec().GetObjects(), ReplicationOwner: r.st.GetReplicationOwner(),
	}).Get(ctx, &res)
	if err != nil {
		return fmt.Errorf("modify-objects: %w", err)
	}
	r.st.Spec, r.st.Tables = spec, res.GetTables()
	r.planBackfills(&res)
	workflow.GetLogger(ctx).Info("objects modified", "added", len(res.GetAdded()), "removed", len(res.GetRemoved()),
		"tables", len(res.GetTables()))
	return nil
}

// planBackfills gives each added table a snapshot of its own when the task
// has full sync, and forgets those of removed tables. A table removed and
// added again is snapshotted again: its rows may have changed unseen.
func (r *taskRun) planBackfills(res *taskv1.ModifyActivityResult) {
	if r.st.Checkpoint == nil {
		r.st.Checkpoint = &cdcv1.Checkpoint{}
	}
	cp := r.st.Checkpoint
	drop := append(slices.Clone(res.GetRemoved()), res.GetAdded()...)
	cp.Backfills = slices.DeleteFunc(cp.Backfills, func(b *cdcv1.BackfillProgress) bool {
		return slices.ContainsFunc(drop, func(t *taskv1.TableRef) bool { return sameTable(b, t) })
	})
	if !r.spec().GetSyncTypes().GetFull() {
		return
	}
	for i, t := range res.GetAdded() {
		var est uint64
		if i < len(res.GetAddedEstimatedRows()) {
			est = res.GetAddedEstimatedRows()[i]
		}
		cp.Backfills = append(cp.Backfills, &cdcv1.BackfillProgress{Schema: t.GetSchema(), Table: t.GetTable(), EstimatedRows: est})
	}
}

func sameTable(b *cdcv1.BackfillProgress, t *taskv1.TableRef) bool {
	return b.GetSchema() == t.GetSchema() && b.GetTable() == t.GetTable()
}

// pushThrottle tells the running streams and snapshots of the task's slot
// about the throttle in the spec. It reports false when none took it.
func (r *taskRun) pushThrottle(ctx workflow.Context) bool {
	r.throttleDirty = false
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3, NonRetryableErrorTypes: []string{taskapi.ErrConfig}},
	})
	var res capturev1.UpdateThrottleResponse
	err := workflow.ExecuteActivity(actx, taskapi.ActivityApplyThrottle, &taskv1.ApplyThrottleInput{
		Spec: r.streamSpec(), SlotName: r.st.GetSlotName(),
	}).Get(ctx, &res)
	if err != nil || res.GetStreamsUpdated() == 0 {
		workflow.GetLogger(ctx).Warn("the running stream did not take the new throttle", "error", err)
		return false
	}
	return true
}
