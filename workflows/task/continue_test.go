package task

import (
	"testing"

	"github.com/stretchr/testify/mock"
	"google.golang.org/protobuf/proto"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// The continue-as-new input carries the spec once, in the state: a spec of
// 10,000 tables twice over made the input exceed Temporal's 2 MB limit.
func TestContinueAsNewCarriesTheSpecOnce(t *testing.T) {
	spec := testSpec()
	st := &taskv1.TaskState{Phase: taskv1.Phase_PHASE_INCREMENTAL, Spec: spec, SlotName: "ferry_t_1"}
	r := &taskRun{in: &taskv1.TaskWorkflowInput{TaskId: "t-1", Spec: spec, RetryMinuteSeconds: 3}, st: st}
	in := r.continueAsNewInput()
	if in.GetSpec() != nil || !proto.Equal(in.GetState().GetSpec(), spec) || in.GetTaskId() != "t-1" || in.GetRetryMinuteSeconds() != 3 {
		t.Fatalf("continue-as-new input %v: want no top-level spec, the state's spec, the task id and retry minute", in)
	}
}

// A run continued as new (its spec only in the state) resumes incremental
// sync with that spec from the state's checkpoint, and stops.
func TestRunContinuedAsNewStreamsWithTheStatesSpec(t *testing.T) {
	w := newWFTest(t)
	w.onIncremental(blockUntilCancelled(300))
	w.OnActivity(w.a.Release, mock.Anything, mock.Anything).Return(nil)
	w.whenIncrementalRuns(func() { w.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{Release: true}) })
	spec := testSpec()
	st := &taskv1.TaskState{Phase: taskv1.Phase_PHASE_INCREMENTAL, Status: taskv1.Status_STATUS_RUNNING, Spec: spec,
		SlotName: "ferry_t_1", PublicationName: "ferry_t_1", FullSyncDone: true, Checkpoint: &cdcv1.Checkpoint{ConfirmedLsn: 200}}
	r := &taskRun{in: &taskv1.TaskWorkflowInput{TaskId: "t-1", Spec: spec}, st: st}
	w.ExecuteWorkflow(TaskWorkflow, r.continueAsNewInput())
	if err := w.GetWorkflowError(); !w.IsWorkflowCompleted() || err != nil {
		t.Fatalf("completed %v, error %v", w.IsWorkflowCompleted(), err)
	}
	if len(w.increments) != 1 || !proto.Equal(w.increments[0].GetSpec(), spec) || w.increments[0].GetCheckpoint().GetConfirmedLsn() != 200 {
		t.Fatalf("incremental attempts %v: want one with the state's spec from LSN 200", w.increments)
	}
	w.AssertNotCalled(t, "Precheck", mock.Anything, mock.Anything)
	w.AssertNotCalled(t, "Setup", mock.Anything, mock.Anything)
	if got := w.state().GetPhase(); got != taskv1.Phase_PHASE_STOPPED {
		t.Fatalf("phase %v, want stopped", got)
	}
}
