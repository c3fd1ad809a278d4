package task

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

func TestModifyObjectsAddsBackfillsAndRestartsTheStream(t *testing.T) {
	w := newWFTest(t)
	var modified *taskv1.ModifyActivityInput
	w.OnActivity(w.a.Modify, mock.Anything, mock.Anything).Return(func(_ context.Context, in *taskv1.ModifyActivityInput) (*taskv1.ModifyActivityResult, error) {
		modified = in
		added := &taskv1.TableRef{Schema: "public", Table: "items"}
		return &taskv1.ModifyActivityResult{
			Tables: []*taskv1.TableRef{{Schema: "public", Table: "orders"}, added},
			Added:  []*taskv1.TableRef{added}, AddedEstimatedRows: []uint64{4200},
		}, nil
	})
	w.OnActivity(w.a.Release, mock.Anything, mock.Anything).Return(nil).Maybe()
	w.onIncremental(blockUntilCancelled(150), blockUntilCancelled(150))
	objects := &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{
		{Schema: "public", Table: "orders"}, {Schema: "public", Table: "items", Topic: "items"},
	}}
	w.whenIncrementalRuns(func() {
		w.SignalWorkflow(taskapi.SignalModifyObjects, &taskv1.ModifyObjectsSignal{Objects: objects, Compression: taskv1.Compression_COMPRESSION_ZSTD})
		w.running.Store(0)
		w.whenIncrementalRuns(func() { w.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{}) })
	})
	// A task past its full sync: added tables get snapshots of their own.
	spec := testSpec()
	spec.SyncTypes = &taskv1.SyncTypes{Full: true}
	w.ExecuteWorkflow(TaskWorkflow, &taskv1.TaskWorkflowInput{TaskId: "t-1", Spec: spec, State: &taskv1.TaskState{
		Phase: taskv1.Phase_PHASE_INCREMENTAL, FullSyncDone: true, SlotName: "ferry_t_1", PublicationName: "ferry_t_1",
		Checkpoint: &cdcv1.Checkpoint{ConfirmedLsn: 100},
	}})
	if err := w.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if modified == nil || len(modified.GetSpec().GetObjects().GetTables()) != 2 ||
		modified.GetSpec().GetKafka().GetCompression() != taskv1.Compression_COMPRESSION_ZSTD {
		t.Fatalf("Modify got %v, want the new objects and zstd", modified)
	}
	if len(w.increments) != 2 {
		t.Fatalf("incremental ran %d times, want 2 (before and after the modification)", len(w.increments))
	}
	second := w.increments[1]
	if got := second.GetSpec().GetObjects().GetTables(); len(got) != 2 || got[1].GetTopic() != "items" {
		t.Errorf("the second attempt's objects = %v, want the modified ones", got)
	}
	bf := second.GetCheckpoint().GetBackfills()
	if len(bf) != 1 || bf[0].GetTable() != "items" || bf[0].GetEstimatedRows() != 4200 || bf[0].GetDone() {
		t.Errorf("backfills handed to the second attempt = %v, want items from the start", bf)
	}
	st := w.state()
	if len(st.GetTables()) != 2 || st.GetLastSignalError() != "" || st.GetSpec().GetKafka().GetCompression() != taskv1.Compression_COMPRESSION_ZSTD {
		t.Errorf("state after modify: tables %v, last signal error %q, spec %v", st.GetTables(), st.GetLastSignalError(), st.GetSpec())
	}
}

func TestRefusedModificationKeepsTheObjects(t *testing.T) {
	w := newWFTest(t)
	w.OnActivity(w.a.Modify, mock.Anything, mock.Anything).Return(nil,
		temporal.NewNonRetryableApplicationError("added tables without a primary key cannot be snapshotted: public.logs", taskapi.ErrConfig, nil))
	w.onIncremental(blockUntilCancelled(150), blockUntilCancelled(150))
	w.whenIncrementalRuns(func() {
		w.SignalWorkflow(taskapi.SignalModifyObjects, &taskv1.ModifyObjectsSignal{Objects: &taskv1.ObjectSelection{
			Tables: []*taskv1.TableSelection{{Schema: "public", Table: "logs"}}}})
		w.running.Store(0)
		w.whenIncrementalRuns(func() { w.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{}) })
	})
	if err := w.run(); err != nil {
		t.Fatalf("a refused modification failed the task: %v", err)
	}
	st := w.state()
	if !strings.Contains(st.GetLastSignalError(), "public.logs") {
		t.Errorf("last_signal_error = %q, want the refusal naming public.logs", st.GetLastSignalError())
	}
	if got := w.increments[1].GetSpec().GetObjects().GetTables()[0].GetTable(); got != "orders" {
		t.Errorf("after a refused modification the stream runs on %q, want orders", got)
	}
}

// An empty selection is refused in the workflow itself: a hand-written
// `temporal workflow signal` must not empty the publication.
func TestEmptyModificationIsRefusedWithoutAnActivity(t *testing.T) {
	w := newWFTest(t)
	w.onIncremental(blockUntilCancelled(150), blockUntilCancelled(150))
	w.whenIncrementalRuns(func() {
		w.SignalWorkflow(taskapi.SignalModifyObjects, &taskv1.ModifyObjectsSignal{})
		w.running.Store(0)
		w.whenIncrementalRuns(func() { w.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{}) })
	})
	if err := w.run(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if got := w.state().GetLastSignalError(); !strings.Contains(got, "selects nothing") {
		t.Errorf("last_signal_error = %q", got)
	}
}

func TestUpdateThrottleReachesTheRunningStream(t *testing.T) {
	w := newWFTest(t)
	var pushed *taskv1.ApplyThrottleInput
	w.OnActivity(w.a.ApplyThrottle, mock.Anything, mock.Anything).Return(func(_ context.Context, in *taskv1.ApplyThrottleInput) (*capturev1.UpdateThrottleResponse, error) {
		pushed = in
		return &capturev1.UpdateThrottleResponse{StreamsUpdated: 1}, nil
	})
	w.onIncremental(blockUntilCancelled(150))
	w.whenIncrementalRuns(func() {
		w.SignalWorkflow(taskapi.SignalUpdateThrottle, &taskv1.UpdateThrottleSignal{Incremental: &taskv1.IncrementalThrottle{RowsPerSecond: 500}})
		w.RegisterDelayedCallback(func() { w.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{}) }, blockedDelay)
	})
	if err := w.run(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if pushed.GetSpec().GetAdvanced().GetIncrementalThrottle().GetRowsPerSecond() != 500 || pushed.GetSlotName() == "" {
		t.Fatalf("ApplyThrottle got %v, want 500 rows/s for the task's slot", pushed)
	}
	if len(w.increments) != 1 {
		t.Errorf("incremental ran %d times; a throttle change must not restart the stream", len(w.increments))
	}
	st := w.state()
	if st.GetSpec().GetAdvanced().GetIncrementalThrottle().GetRowsPerSecond() != 500 || st.GetSpec().GetAdvanced().GetOtherRetryMinutes() != 5 {
		t.Errorf("spec after the throttle change: %v (the rest of advanced must stay)", st.GetSpec().GetAdvanced())
	}
}

// When no running stream took the throttle (capture restarted, say), the
// attempt restarts so that it reads the throttle from its input.
func TestUnappliedThrottleRestartsTheStream(t *testing.T) {
	w := newWFTest(t)
	w.OnActivity(w.a.ApplyThrottle, mock.Anything, mock.Anything).Return(&capturev1.UpdateThrottleResponse{}, nil)
	w.onIncremental(blockUntilCancelled(150), blockUntilCancelled(150))
	w.whenIncrementalRuns(func() {
		w.SignalWorkflow(taskapi.SignalUpdateThrottle, &taskv1.UpdateThrottleSignal{Incremental: &taskv1.IncrementalThrottle{MegabytesPerSecond: 3}})
		w.running.Store(0)
		w.whenIncrementalRuns(func() { w.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{}) })
	})
	if err := w.run(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if len(w.increments) != 2 || w.increments[1].GetSpec().GetAdvanced().GetIncrementalThrottle().GetMegabytesPerSecond() != 3 {
		t.Fatalf("attempts %d; the second must carry 3 MB/s", len(w.increments))
	}
}

func TestRestartSignalResetsTheWindowAndResumes(t *testing.T) {
	w := newWFTest(t)
	w.onIncremental(failWith(taskapi.ErrOther, 180), blockUntilCancelled(200), blockUntilCancelled(200))
	w.whenIncrementalRuns(func() {
		// The first attempt failed; the second is running in the window.
		w.running.Store(0)
		w.whenIncrementalRuns(func() {
			w.SignalWorkflow(taskapi.SignalRestart, &taskv1.RestartSignal{})
			w.running.Store(0)
			w.whenIncrementalRuns(func() { w.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{}) })
		})
	})
	if err := w.run(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	st := w.state()
	if st.GetRestarts() != 1 || st.GetFailingSince() != nil || st.GetConsecutiveFailures() != 0 {
		t.Errorf("after restart: restarts %d, failing since %v, failures %d", st.GetRestarts(), st.GetFailingSince(), st.GetConsecutiveFailures())
	}
	if len(w.increments) < 3 || w.increments[2].GetCheckpoint().GetConfirmedLsn() != 180 {
		t.Errorf("attempts %d; the restarted one must start from the failed attempt's checkpoint 180", len(w.increments))
	}
}

// retry_minute_seconds shortens a window's minute for tests on real
// services; a five-minute other window then lasts five seconds.
func TestRetryMinuteSecondsShortensTheWindow(t *testing.T) {
	w := newWFTest(t)
	w.onIncremental(failWith(taskapi.ErrOther, 100))
	w.ExecuteWorkflow(TaskWorkflow, &taskv1.TaskWorkflowInput{TaskId: "t-1", Spec: testSpec(), RetryMinuteSeconds: 1})
	err := w.GetWorkflowError()
	if err == nil || !strings.Contains(err.Error(), "retry window of 5s") {
		t.Fatalf("error = %v, want the 5 s other window to expire", err)
	}
}

func TestFailureSendsTheAlertOnce(t *testing.T) {
	w := newWFTest(t)
	var alerts []*taskv1.AlertActivityInput
	w.OnActivity(w.a.Alert, mock.Anything, mock.Anything).Return(func(_ context.Context, in *taskv1.AlertActivityInput) error {
		alerts = append(alerts, in)
		return nil
	})
	w.onIncremental(failWith(taskapi.ErrConfig, 100))
	spec := testSpec()
	spec.Alerts = &taskv1.AlertRules{OnFailure: true, WebhookUrl: "http://127.0.0.1:1/hook"}
	w.ExecuteWorkflow(TaskWorkflow, &taskv1.TaskWorkflowInput{TaskId: "t-1", Spec: spec})
	if w.GetWorkflowError() == nil {
		t.Fatal("the task did not fail")
	}
	if len(alerts) != 1 || alerts[0].GetKind() != taskapi.AlertKindTaskFailed || !strings.Contains(alerts[0].GetMessage(), "boom") ||
		alerts[0].GetTaskName() != "orders" {
		t.Fatalf("alerts = %v, want one task_failed alert carrying the error", alerts)
	}
	if st := w.state(); st.GetAlertsSent() != 1 || st.GetStatus() != taskv1.Status_STATUS_FAILED {
		t.Errorf("state: alerts sent %d, status %v", st.GetAlertsSent(), st.GetStatus())
	}
}

// A task created paused runs nothing, not even the precheck, until it is
// started (resumed).
func TestCreatedPausedRunsNothingUntilStarted(t *testing.T) {
	w := newWFTest(t)
	w.onIncremental(blockUntilCancelled(150))
	var prechecked bool
	w.RegisterDelayedCallback(func() {
		st := w.state()
		prechecked = len(st.GetPrechecks()) > 0
		if st.GetStatus() != taskv1.Status_STATUS_PAUSED || st.GetPhase() != taskv1.Phase_PHASE_PRECHECK {
			t.Errorf("before start: %v/%v, want PRECHECK/PAUSED", st.GetPhase(), st.GetStatus())
		}
		w.SignalWorkflow(taskapi.SignalResume, &taskv1.ResumeSignal{})
		w.whenIncrementalRuns(func() { w.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{}) })
	}, time.Hour) // the test clock skips ahead: an hour of waiting runs nothing
	w.ExecuteWorkflow(TaskWorkflow, &taskv1.TaskWorkflowInput{TaskId: "t-1", Spec: testSpec(), State: &taskv1.TaskState{
		Phase: taskv1.Phase_PHASE_PRECHECK, Status: taskv1.Status_STATUS_PAUSED, Paused: true,
	}})
	if err := w.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if prechecked {
		t.Error("the precheck ran before the task was started")
	}
	if len(w.increments) != 1 || w.state().GetPhase() != taskv1.Phase_PHASE_STOPPED {
		t.Errorf("after start: %d incremental attempts, phase %v", len(w.increments), w.state().GetPhase())
	}
}
