package task

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"google.golang.org/protobuf/proto"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
	"github.com/ferry-cdc/ferry/workflows/activities"
)

func fullSpec() *taskv1.TaskSpec {
	s := testSpec()
	s.SyncTypes = &taskv1.SyncTypes{Full: true}
	return s
}

var ordersRef = &taskv1.TableRef{Schema: "public", Table: "orders"}

// fullSyncTest mocks precheck, a setup that records its input and
// resolves one table, successive full sync attempts, and release.
type fullSyncTest struct {
	*wfTest
	setups    []*taskv1.SetupActivityInput
	fullSyncs []*taskv1.FullSyncActivityInput
	released  []*taskv1.ReleaseActivityInput
}

func newFullSyncTest(t *testing.T, attempts ...func(context.Context, *taskv1.FullSyncActivityInput) (*taskv1.FullSyncActivityResult, error)) *fullSyncTest {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	a := &activities.Activities{}
	env.RegisterActivity(a)
	f := &fullSyncTest{wfTest: &wfTest{TestWorkflowEnvironment: env, t: t, a: a}}
	f.OnActivity(a.Precheck, mock.Anything, mock.Anything).Return(&taskv1.PrecheckActivityResult{}, nil).Maybe()
	f.OnActivity(a.Setup, mock.Anything, mock.Anything).Return(func(_ context.Context, in *taskv1.SetupActivityInput) (*taskv1.SetupActivityResult, error) {
		f.setups = append(f.setups, in)
		res := &taskv1.SetupActivityResult{Tables: []*taskv1.TableRef{ordersRef}}
		if !in.GetPublicationOnly() {
			res.StartLsn = 100
		}
		return res, nil
	}).Maybe()
	n := 0
	f.OnActivity(a.FullSync, mock.Anything, mock.Anything).Return(func(ctx context.Context, in *taskv1.FullSyncActivityInput) (*taskv1.FullSyncActivityResult, error) {
		f.fullSyncs = append(f.fullSyncs, in)
		next := attempts[min(n, len(attempts)-1)]
		n++
		return next(ctx, in)
	}).Maybe()
	f.OnActivity(a.Release, mock.Anything, mock.Anything).Return(func(_ context.Context, in *taskv1.ReleaseActivityInput) error {
		f.released = append(f.released, in)
		return nil
	}).Maybe()
	return f
}

// when calls then once cond holds, checking every blockedDelay.
func (f *fullSyncTest) when(cond func() bool, then func()) {
	var try func()
	try = func() {
		if !cond() {
			f.RegisterDelayedCallback(try, blockedDelay)
			return
		}
		then()
	}
	f.RegisterDelayedCallback(try, blockedDelay)
}

var snapshotDone = func(context.Context, *taskv1.FullSyncActivityInput) (*taskv1.FullSyncActivityResult, error) {
	return &taskv1.FullSyncActivityResult{ConsistentLsn: 500, AckedRows: 7, Done: true,
		Tables: []*taskv1.TableRowCount{{Table: ordersRef, Rows: 7, Done: true}}}, nil
}

func (f *fullSyncTest) run(in *taskv1.TaskWorkflowInput) error {
	f.ExecuteWorkflow(TaskWorkflow, in)
	if !f.IsWorkflowCompleted() {
		f.t.Fatal("workflow did not complete")
	}
	return f.GetWorkflowError()
}

func TestFullSyncThenIncrementalFromTheConsistentPoint(t *testing.T) {
	f := newFullSyncTest(t, snapshotDone)
	f.onIncremental(blockUntilCancelled(500))
	// Long enough for the activities before incremental, whose mocks
	// return at once, to have run.
	f.RegisterDelayedCallback(func() { f.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{}) }, 10*blockedDelay)
	if err := f.run(&taskv1.TaskWorkflowInput{TaskId: "t-1", Spec: fullSpec()}); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if st := f.state(); !st.GetFullSyncDone() || len(st.GetFullSyncRows()) != 1 || st.GetFullSyncRows()[0].GetRows() != 7 ||
		st.GetCheckpoint().GetConfirmedLsn() != 500 {
		t.Errorf("final state = %v; want full sync done with 7 rows of orders and checkpoint 500", st)
	}
	if len(f.setups) != 1 || !f.setups[0].GetPublicationOnly() {
		t.Fatalf("setup inputs %v; want one, for the publication only", f.setups)
	}
	if len(f.fullSyncs) != 1 || !proto.Equal(f.fullSyncs[0].GetTables()[0], ordersRef) || f.fullSyncs[0].GetSlotName() != taskapi.ReplicationName("t-1") { // new tasks get hashed names
		t.Fatalf("full sync inputs %v; want one, for setup's tables and the task's slot", f.fullSyncs)
	}
	if len(f.increments) != 1 || f.increments[0].GetCheckpoint().GetConfirmedLsn() != 500 {
		t.Fatalf("incremental attempts %v; want one from the consistent point 500", f.increments)
	}
}

func TestFullSyncRetriesInsideTheWindow(t *testing.T) {
	f := newFullSyncTest(t,
		func(context.Context, *taskv1.FullSyncActivityInput) (*taskv1.FullSyncActivityResult, error) {
			return nil, temporal.NewApplicationError("capture unreachable", taskapi.ErrConnection)
		},
		snapshotDone)
	f.onIncremental(blockUntilCancelled(500))
	f.RegisterDelayedCallback(func() { f.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{}) }, time.Second+blockedDelay)
	if err := f.run(&taskv1.TaskWorkflowInput{TaskId: "t-1", Spec: fullSpec()}); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if len(f.fullSyncs) != 2 || len(f.increments) != 1 || f.increments[0].GetCheckpoint().GetConfirmedLsn() != 500 {
		t.Fatalf("%d full sync and %d incremental attempts; want 2, then 1 from 500", len(f.fullSyncs), len(f.increments))
	}
	if st := f.state(); st.GetConsecutiveFailures() != 0 || st.GetFailingSince() != nil {
		t.Errorf("failure count %d since %v after success; want reset", st.GetConsecutiveFailures(), st.GetFailingSince())
	}
}

func TestFullSyncFailsAfterItsWindow(t *testing.T) {
	f := newFullSyncTest(t, func(context.Context, *taskv1.FullSyncActivityInput) (*taskv1.FullSyncActivityResult, error) {
		return nil, temporal.NewApplicationError("boom", taskapi.ErrOther)
	})
	start := f.Now()
	if err := f.run(&taskv1.TaskWorkflowInput{TaskId: "t-1", Spec: fullSpec()}); err == nil {
		t.Fatal("want the task to fail once the other-issues window passes")
	}
	if elapsed := f.Now().Sub(start); elapsed < 5*time.Minute || elapsed > 7*time.Minute {
		t.Errorf("failed after %s, want just past the 5 min window", elapsed)
	}
	if st := f.state(); st.GetFullSyncDone() || st.GetStatus() != taskv1.Status_STATUS_FAILED {
		t.Errorf("state = %v; want FAILED without full sync done", st)
	}
	f.AssertNotCalled(t, "Incremental", mock.Anything, mock.Anything)
}

func TestStopDuringFullSyncReleases(t *testing.T) {
	f := newFullSyncTest(t, func(ctx context.Context, _ *taskv1.FullSyncActivityInput) (*taskv1.FullSyncActivityResult, error) {
		<-ctx.Done()
		return nil, temporal.NewCanceledError()
	})
	f.RegisterDelayedCallback(func() { f.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{Release: true}) }, blockedDelay)
	if err := f.run(&taskv1.TaskWorkflowInput{TaskId: "t-1", Spec: fullSpec()}); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if st := f.state(); len(f.released) != 1 || st.GetPhase() != taskv1.Phase_PHASE_STOPPED || st.GetFullSyncDone() {
		t.Fatalf("released %v, state %v; want released and STOPPED without full sync done", f.released, st)
	}
	f.AssertNotCalled(t, "Incremental", mock.Anything, mock.Anything)
}

func TestPauseDuringFullSyncRestartsIt(t *testing.T) {
	f := newFullSyncTest(t,
		func(ctx context.Context, _ *taskv1.FullSyncActivityInput) (*taskv1.FullSyncActivityResult, error) {
			<-ctx.Done()
			return nil, temporal.NewCanceledError()
		},
		snapshotDone)
	f.onIncremental(blockUntilCancelled(500))
	// Each step waits for the state it needs rather than for a fixed time:
	// the test clock runs in real time while an activity runs.
	f.when(func() bool { return len(f.fullSyncs) == 1 }, func() {
		f.SignalWorkflow(taskapi.SignalPause, &taskv1.PauseSignal{})
		f.when(func() bool { return f.state().GetStatus() == taskv1.Status_STATUS_PAUSED }, func() {
			if st := f.state(); st.GetPhase() != taskv1.Phase_PHASE_FULL_SYNC {
				t.Errorf("while paused: phase %v, want FULL_SYNC", st.GetPhase())
			}
			f.SignalWorkflow(taskapi.SignalResume, &taskv1.ResumeSignal{})
			f.whenIncrementalRuns(func() { f.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{}) })
		})
	})
	if err := f.run(&taskv1.TaskWorkflowInput{TaskId: "t-1", Spec: fullSpec()}); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if len(f.fullSyncs) != 2 || !f.state().GetFullSyncDone() || len(f.increments) != 1 {
		t.Fatalf("%d full sync attempts, %d incremental; want 2 (paused, then complete) and 1", len(f.fullSyncs), len(f.increments))
	}
}

// A task whose state says full sync is done never runs it again: not after
// continue-as-new, and not if setup must run again.
func TestFullSyncIsNeverRerunOnceDone(t *testing.T) {
	for name, phase := range map[string]taskv1.Phase{"continued as new": taskv1.Phase_PHASE_INCREMENTAL, "setup again": taskv1.Phase_PHASE_SCHEMA_SYNC} {
		t.Run(name, func(t *testing.T) {
			f := newFullSyncTest(t, snapshotDone)
			f.onIncremental(blockUntilCancelled(900))
			f.RegisterDelayedCallback(func() { f.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{}) }, blockedDelay)
			st := &taskv1.TaskState{Phase: phase, Status: taskv1.Status_STATUS_RUNNING, FullSyncDone: true,
				SlotName: "ferry_t_1", PublicationName: "ferry_t_1", Checkpoint: &cdcv1.Checkpoint{ConfirmedLsn: 900}}
			if err := f.run(&taskv1.TaskWorkflowInput{TaskId: "t-1", Spec: fullSpec(), State: st}); err != nil {
				t.Fatalf("workflow error: %v", err)
			}
			if len(f.fullSyncs) != 0 {
				t.Fatalf("full sync ran %d times, want never", len(f.fullSyncs))
			}
			for _, in := range f.setups {
				if in.GetPublicationOnly() {
					t.Fatal("setup left the slot to a full sync that will not run")
				}
			}
		})
	}
}

// The worker counts a snapshot batch's rows from its raw frame, without
// decoding it; the count must match the decoded batch.
