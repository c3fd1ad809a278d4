// Package task holds TaskWorkflow, which runs one synchronization task's
// lifecycle: the deterministic code that decides what runs when, keeps the
// checkpoint and the retry windows, and takes signals and queries. The
// activities it schedules, which do all the I/O, are in
// workflows/activities; the names both sides share are in platform/taskapi.
package task

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/types/known/timestamppb"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// The incremental activity heartbeats far more often than this; a worker that
// dies is noticed within this time and the task resumes elsewhere.
const incrementalHeartbeatTimeout = 20 * time.Second

const maxBackoff = time.Minute

// The workflow schedules activities by their registered names
// (taskapi.Activity*) rather than by method values, so that this package
// does not link the activities' I/O code; the worker registers them.

// TaskWorkflow runs one task: precheck, setup (schema sync), then incremental
// sync until stopped. The incremental activity is single-attempt; this
// workflow owns the retry windows and the confirmed checkpoint.
func TaskWorkflow(ctx workflow.Context, in *taskv1.TaskWorkflowInput) error {
	r := newTaskRun(ctx, in)
	if err := workflow.SetQueryHandler(ctx, taskapi.QueryState, func() (*taskv1.TaskState, error) {
		return r.st, nil
	}); err != nil {
		return fmt.Errorf("registering query %s: %w", taskapi.QueryState, err)
	}
	if r.st.GetPaused() && r.st.GetPhase() == taskv1.Phase_PHASE_PRECHECK {
		// Created paused: nothing runs, not even the precheck, until
		// started (resumed) or stopped.
		r.setStatus(ctx, taskv1.Status_STATUS_PAUSED)
		r.awaitResume(ctx)
		if r.stopReq != nil {
			return r.stop(ctx)
		}
		r.setStatus(ctx, taskv1.Status_STATUS_RUNNING)
	}
	if err := r.prepare(ctx); err != nil {
		r.fail(ctx, describe(err))
		return err
	}
	if r.stopReq != nil { // stopped during full sync
		return r.stop(ctx)
	}
	return r.incremental(ctx)
}

type taskRun struct {
	in      *taskv1.TaskWorkflowInput
	st      *taskv1.TaskState
	stopReq *taskv1.StopSignal
	signals taskSignals
	// Modifications wait here until incremental sync can apply them.
	pendingModify []*taskv1.ModifyObjectsSignal
	// The throttle changed and running streams have not been told yet.
	throttleDirty bool
	restartReq    bool
}

func newTaskRun(ctx workflow.Context, in *taskv1.TaskWorkflowInput) *taskRun {
	st := in.GetState()
	if st == nil {
		st = &taskv1.TaskState{Phase: taskv1.Phase_PHASE_PRECHECK, Status: taskv1.Status_STATUS_RUNNING}
	}
	if st.Spec == nil {
		st.Spec = in.GetSpec()
	}
	return &taskRun{in: in, st: st, signals: newTaskSignals(ctx)}
}

// spec is the task's spec as signals left it.
func (r *taskRun) spec() *taskv1.TaskSpec { return r.st.GetSpec() }

// prepare runs the phases before incremental sync. Each is skipped once done,
// so a continued-as-new or restarted task never repeats them.
func (r *taskRun) prepare(ctx workflow.Context) error {
	if r.st.Phase == taskv1.Phase_PHASE_PRECHECK {
		r.setPhase(ctx, taskv1.Phase_PHASE_PRECHECK)
		var res taskv1.PrecheckActivityResult
		stopped, err := r.runPrepareStep(ctx, func(actx workflow.Context) error {
			return workflow.ExecuteActivity(actx, taskapi.ActivityPrecheck, &taskv1.PrecheckActivityInput{Spec: r.spec()}).Get(ctx, &res)
		})
		if err != nil {
			return fmt.Errorf("precheck: %w", err)
		}
		if stopped {
			return nil
		}
		r.st.Prechecks = taskapi.AcknowledgeWarnings(res.GetItems(), r.spec().GetAcknowledgedWarnings())
		if failed := taskapi.FailedPrechecks(r.st.Prechecks); failed != "" {
			return temporal.NewNonRetryableApplicationError("precheck failed: "+failed, taskapi.ErrConfig, nil)
		}
		r.st.Phase = taskv1.Phase_PHASE_SCHEMA_SYNC
	}
	if r.st.Phase == taskv1.Phase_PHASE_SCHEMA_SYNC {
		r.setPhase(ctx, taskv1.Phase_PHASE_SCHEMA_SYNC)
		name := r.replicationName(ctx)
		// Recorded before setup runs: a failed setup may leave a
		// publication or slot of this name, which a stop with release
		// and a restarted run must find.
		r.st.SlotName, r.st.PublicationName = name, name
		full := r.fullSyncPending(ctx)
		chunked := full && workflow.GetVersion(ctx, chunkedFullSyncChange, workflow.DefaultVersion, 1) >= 1
		var res taskv1.SetupActivityResult
		stopped, err := r.runPrepareStep(ctx, func(actx workflow.Context) error {
			return workflow.ExecuteActivity(actx, taskapi.ActivitySetup, &taskv1.SetupActivityInput{
				TaskId: r.in.GetTaskId(), Spec: r.spec(), SlotName: name, PublicationName: name,
				PublicationOnly: full, ChunkIfKeyed: chunked, ReplicationOwner: r.st.GetReplicationOwner(),
			}).Get(ctx, &res)
		})
		if err != nil {
			return fmt.Errorf("schema sync: %w", err)
		}
		if stopped {
			return nil
		}
		r.st.SlotName, r.st.PublicationName = name, name
		r.st.Tables = res.GetTables()
		switch {
		case chunked && res.GetAllKeyed():
			r.planChunkedFullSync(&res)
		case full:
			// Full sync creates the slot; its consistent point becomes
			// the checkpoint.
			r.st.Phase = taskv1.Phase_PHASE_FULL_SYNC
		default:
			r.st.Checkpoint = &cdcv1.Checkpoint{ConfirmedLsn: res.GetStartLsn()}
			r.st.Phase = taskv1.Phase_PHASE_INCREMENTAL
		}
	}
	if r.st.Phase == taskv1.Phase_PHASE_FULL_SYNC && r.st.GetFullSyncChunked() {
		return r.chunkedFullSync(ctx)
	}
	if r.st.Phase == taskv1.Phase_PHASE_FULL_SYNC {
		return r.fullSync(ctx)
	}
	return nil
}

// incremental keeps the incremental activity running until a stop, pausing,
// retrying and continuing-as-new as needed.
func (r *taskRun) incremental(ctx workflow.Context) error {
	r.setPhase(ctx, taskv1.Phase_PHASE_INCREMENTAL)
	for {
		r.drainSignals(ctx)
		switch {
		case r.stopReq != nil:
			return r.stop(ctx)
		case len(r.pendingModify) > 0:
			r.applyModifications(ctx)
			continue
		case r.restartReq:
			r.restart(ctx)
			continue
		case r.st.GetPaused():
			r.setStatus(ctx, taskv1.Status_STATUS_PAUSED)
			r.awaitResume(ctx)
			continue
		case workflow.GetInfo(ctx).GetContinueAsNewSuggested():
			r.drainSignals(ctx)
			if r.stopReq != nil || len(r.pendingModify) > 0 || r.restartReq {
				continue
			}
			return workflow.NewContinueAsNewError(ctx, taskapi.WorkflowName, r.continueAsNewInput())
		}
		r.setStatus(ctx, taskv1.Status_STATUS_RUNNING)
		before := r.st.GetCheckpoint().GetConfirmedLsn()
		_, err := r.runIncrementalOnce(ctx, false)
		if err == nil {
			continue
		}
		if err := r.onFailure(ctx, err, r.st.GetCheckpoint().GetConfirmedLsn() > before); err != nil {
			return err
		}
	}
}

// continueAsNewInput is the next run's input. The spec travels once, in
// the state (newTaskRun reads it there): the input is one payload, which
// Temporal refuses over 2 MB, and a spec naming 10,000 tables is half a
// megabyte, beside the state's own list of them and their full sync
// counts. The next run starts in incremental sync, past the phases that
// read the input's spec.
func (r *taskRun) continueAsNewInput() *taskv1.TaskWorkflowInput {
	return &taskv1.TaskWorkflowInput{TaskId: r.in.GetTaskId(), State: r.st, RetryMinuteSeconds: r.in.GetRetryMinuteSeconds()}
}

// restart clears the retry window: a restart asked for is a fresh start
// from the confirmed checkpoint, not another failure.
func (r *taskRun) restart(ctx workflow.Context) {
	r.restartReq = false
	r.st.Restarts++
	r.st.FailingSince, r.st.ConsecutiveFailures = nil, 0
	workflow.GetLogger(ctx).Info("restarting from the confirmed checkpoint", "phase", r.st.GetPhase().String(),
		"lsn", r.st.GetCheckpoint().GetConfirmedLsn())
}

// runIncrementalOnce runs one attempt of the incremental activity. It returns
// nil when a signal cancelled the attempt. With untilBackfilled (chunked full
// sync) an attempt that confirmed every backfill returns done.
func (r *taskRun) runIncrementalOnce(ctx workflow.Context, untilBackfilled bool) (done bool, _ error) {
	actx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	r.throttleDirty = false // the attempt takes the throttle from its input
	actx = workflow.WithActivityOptions(actx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * 365 * 24 * time.Hour,
		HeartbeatTimeout:    incrementalHeartbeatTimeout,
		WaitForCancellation: true,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	fut := workflow.ExecuteActivity(actx, taskapi.ActivityIncremental, &taskv1.IncrementalActivityInput{
		TaskId: r.in.GetTaskId(), Spec: r.streamSpec(), SlotName: r.st.GetSlotName(),
		PublicationName: r.st.GetPublicationName(), Checkpoint: r.st.GetCheckpoint(), UntilBackfilled: untilBackfilled,
	})
	interrupted := r.awaitOrInterrupt(ctx, fut, cancel)
	var cp cdcv1.Checkpoint
	err := fut.Get(ctx, &cp)
	if err == nil && untilBackfilled {
		r.st.Checkpoint = &cp
		return true, nil
	}
	r.absorbCheckpoint(err)
	if interrupted {
		return false, nil
	}
	if err == nil {
		return false, temporal.NewApplicationError("incremental sync ended without an error", taskapi.ErrOther)
	}
	return false, err
}

// onFailure decides, from the retry windows, whether to try again. It returns
// an error only when the task must fail.
func (r *taskRun) onFailure(ctx workflow.Context, err error, progressed bool) error {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.Type() == taskapi.ErrConfig {
		r.fail(ctx, describe(err))
		return err
	}
	class := classify(err)
	now := workflow.Now(ctx)
	if progressed || r.st.GetFailingSince() == nil {
		r.st.FailingSince = timestamppb.New(now)
		r.st.ConsecutiveFailures = 0
	}
	r.st.FailingClass = class
	r.st.ConsecutiveFailures++
	r.st.LastError = describe(err)
	window := r.retryWindow(class)
	failingFor := now.Sub(r.st.GetFailingSince().AsTime())
	if failingFor >= window {
		msg := fmt.Sprintf("task %s failed for %s, beyond its %s retry window of %s: %s",
			r.in.GetTaskId(), failingFor, className(class), window, describe(err))
		r.fail(ctx, msg)
		return temporal.NewNonRetryableApplicationError(msg, taskapi.ErrOther, err)
	}
	r.setStatus(ctx, taskv1.Status_STATUS_RETRYING)
	r.st.RetryingUntil = timestamppb.New(r.st.GetFailingSince().AsTime().Add(window))
	backoff := Backoff(r.st.GetConsecutiveFailures())
	workflow.GetLogger(ctx).Warn("sync failed; retrying", "phase", r.st.GetPhase().String(), "error", err, "backoff", backoff,
		"failingFor", failingFor, "window", window)
	timerCtx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	woke := false
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(workflow.NewTimer(timerCtx, backoff), func(workflow.Future) { woke = true })
	r.addControlSignals(ctx, sel, func() { woke = true })
	for !woke {
		sel.Select(ctx)
	}
	return nil
}

// fail marks the task failed, once, and sends the failure alert when the
// task asks for one. An alert that cannot be sent is logged, never fatal:
// the task has failed either way.
func (r *taskRun) fail(ctx workflow.Context, msg string) {
	if r.st.GetStatus() == taskv1.Status_STATUS_FAILED {
		return
	}
	r.st.LastError = msg
	r.setStatus(ctx, taskv1.Status_STATUS_FAILED)
	rules := r.spec().GetAlerts()
	if !rules.GetOnFailure() {
		return
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	err := workflow.ExecuteActivity(actx, taskapi.ActivityAlert, &taskv1.AlertActivityInput{
		TaskId: r.in.GetTaskId(), TaskName: r.spec().GetName(), Rules: rules, Kind: taskapi.AlertKindTaskFailed,
		Message: msg, At: timestamppb.New(workflow.Now(ctx)),
	}).Get(ctx, nil)
	if err != nil {
		workflow.GetLogger(ctx).Error("sending the failure alert", "error", err)
		return
	}
	r.st.AlertsSent++
}

// Backoff is the pause before retry n (1-based): 1 s doubling to a minute.
func Backoff(n uint32) time.Duration {
	d := time.Second
	for i := uint32(1); i < n && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// describe is what users read as the task's last error: the failing
// activity's own message, without the activity-error envelope around it.
func describe(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	var toErr *temporal.TimeoutError
	if errors.As(err, &toErr) {
		return "the worker stopped heartbeating (it died or lost Temporal): " + toErr.Error()
	}
	return err.Error()
}

func classify(err error) taskv1.ErrorClass {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.Type() == taskapi.ErrConnection {
		return taskv1.ErrorClass_ERROR_CLASS_CONNECTION
	}
	var toErr *temporal.TimeoutError
	if errors.As(err, &toErr) {
		// A heartbeat timeout means the worker or its host went away.
		return taskv1.ErrorClass_ERROR_CLASS_CONNECTION
	}
	return taskv1.ErrorClass_ERROR_CLASS_OTHER
}

func className(c taskv1.ErrorClass) string {
	if c == taskv1.ErrorClass_ERROR_CLASS_CONNECTION {
		return "connection"
	}
	return "other-issues"
}

func (r *taskRun) retryWindow(class taskv1.ErrorClass) time.Duration {
	minute := time.Minute
	if s := r.in.GetRetryMinuteSeconds(); s > 0 {
		minute = time.Duration(s) * time.Second
	}
	adv := r.spec().GetAdvanced()
	if class == taskv1.ErrorClass_ERROR_CLASS_CONNECTION {
		if m := adv.GetConnectionRetryMinutes(); m > 0 {
			return time.Duration(m) * minute
		}
		return taskapi.DefaultConnectionRetryMinutes * minute
	}
	if m := adv.GetOtherRetryMinutes(); m > 0 {
		return time.Duration(m) * minute
	}
	return taskapi.DefaultOtherRetryMinutes * minute
}

// absorbCheckpoint takes the confirmed LSN an attempt reported, from its
// error details or its last heartbeat, and never moves the checkpoint back.
func (r *taskRun) absorbCheckpoint(err error) {
	cp := CheckpointFromError(err)
	if cp == nil || cp.GetConfirmedLsn() <= r.st.GetCheckpoint().GetConfirmedLsn() {
		return
	}
	r.st.Checkpoint = cp
}

// CheckpointFromError extracts the checkpoint an incremental attempt left.
func CheckpointFromError(err error) *cdcv1.Checkpoint {
	if err == nil {
		return nil
	}
	// A pointer to a pointer decodes both encoded payloads (from the server)
	// and raw values (errors built in this process).
	var cp *cdcv1.Checkpoint
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.HasDetails() && appErr.Details(&cp) == nil {
		return cp
	}
	var canErr *temporal.CanceledError
	if errors.As(err, &canErr) && canErr.HasDetails() && canErr.Details(&cp) == nil {
		return cp
	}
	var toErr *temporal.TimeoutError
	if errors.As(err, &toErr) && toErr.HasLastHeartbeatDetails() && toErr.LastHeartbeatDetails(&cp) == nil {
		return cp
	}
	return nil
}

func (r *taskRun) stop(ctx workflow.Context) error {
	if r.stopReq.GetRelease() && r.st.GetSlotName() != "" {
		actx := workflow.WithActivityOptions(ctx, r.shortActivityOptions())
		err := workflow.ExecuteActivity(actx, taskapi.ActivityRelease, &taskv1.ReleaseActivityInput{
			Spec: r.spec(), SlotName: r.st.GetSlotName(), PublicationName: r.st.GetPublicationName(),
			ReplicationOwner: r.st.GetReplicationOwner(),
		}).Get(ctx, nil)
		if err != nil {
			return fmt.Errorf("releasing slot and publication %s: %w", r.st.GetSlotName(), err)
		}
		r.st.Released = true
	}
	r.setPhase(ctx, taskv1.Phase_PHASE_STOPPED)
	r.setStatus(ctx, taskv1.Status_STATUS_STOPPED)
	return nil
}

// shortActivityOptions retries setup-style activities for as long as the
// connection window allows; ErrConfig is final.
func (r *taskRun) shortActivityOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout:    5 * time.Minute,
		ScheduleToCloseTimeout: r.retryWindow(taskv1.ErrorClass_ERROR_CLASS_CONNECTION),
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        maxBackoff,
			NonRetryableErrorTypes: []string{taskapi.ErrConfig},
		},
	}
}

func (r *taskRun) setPhase(ctx workflow.Context, p taskv1.Phase) {
	r.st.Phase = p
	r.upsert(ctx, taskapi.SearchPhase.ValueSet(p.String()))
}

func (r *taskRun) setStatus(ctx workflow.Context, s taskv1.Status) {
	if s != taskv1.Status_STATUS_RETRYING {
		r.st.RetryingUntil = nil
	}
	if r.st.Status == s {
		return
	}
	r.st.Status = s
	r.upsert(ctx, taskapi.SearchStatus.ValueSet(s.String()))
}

func (r *taskRun) upsert(ctx workflow.Context, u temporal.SearchAttributeUpdate) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, u); err != nil {
		workflow.GetLogger(ctx).Warn("updating search attributes", "error", err)
	}
}

// hashedNamesChange versions the slot and publication names and their
// ownership: tasks that reached schema sync before it keep the folded name
// their slot has, and no owner, so capture neither checks nor records one.
const hashedNamesChange = "hashed-replication-names"

// replicationName is the task's slot and publication name. With it, a new
// task gets its ownership token: the first run's ID, which no other task
// (nor an earlier task of the same ID) ever had, kept in the state so that
// later runs (continue-as-new, RestartTask) present the same one.
func (r *taskRun) replicationName(ctx workflow.Context) string {
	version := workflow.GetVersion(ctx, hashedNamesChange, workflow.DefaultVersion, 1)
	if n := r.st.GetSlotName(); n != "" {
		// Named by an earlier run whose schema sync failed (RestartTask):
		// what its setup may have created has that name, old or new.
		return n
	}
	if version == workflow.DefaultVersion {
		return taskapi.LegacyReplicationName(r.in.GetTaskId())
	}
	if r.st.ReplicationOwner == "" {
		// The first run's ID; the test environment leaves it empty.
		info := workflow.GetInfo(ctx)
		r.st.ReplicationOwner = cmp.Or(info.FirstRunID, info.WorkflowExecution.RunID)
	}
	return taskapi.ReplicationName(r.in.GetTaskId())
}
