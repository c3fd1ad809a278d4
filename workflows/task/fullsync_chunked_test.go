package task

import (
	"context"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
	"github.com/ferry-cdc/ferry/workflows/activities"
)

// With every table keyed, full sync is backfills beside the stream: an
// attempt that fails after some chunks leaves them in the checkpoint, the
// next resumes from there, and once every table is confirmed the task goes
// on to plain incremental sync. No exported snapshot is read.
func TestChunkedFullSyncResumesAtItsNextChunk(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	a := &activities.Activities{}
	env.RegisterActivity(a)
	w := &wfTest{TestWorkflowEnvironment: env, t: t, a: a}
	items := &taskv1.TableRef{Schema: "public", Table: "items"}
	var setup *taskv1.SetupActivityInput
	env.OnActivity(a.Precheck, mock.Anything, mock.Anything).Return(&taskv1.PrecheckActivityResult{}, nil)
	env.OnActivity(a.Setup, mock.Anything, mock.Anything).Return(func(_ context.Context, in *taskv1.SetupActivityInput) (*taskv1.SetupActivityResult, error) {
		setup = in
		return &taskv1.SetupActivityResult{Tables: []*taskv1.TableRef{ordersRef, items}, EstimatedRows: []uint64{5000, 20},
			StartLsn: 100, AllKeyed: true}, nil
	})
	half := &cdcv1.Checkpoint{ConfirmedLsn: 300, Backfills: []*cdcv1.BackfillProgress{
		{Schema: "public", Table: "orders", AfterKey: []string{"2500"}, Rows: 2500, Lsn: 290, EstimatedRows: 5000},
		{Schema: "public", Table: "items", EstimatedRows: 20},
	}}
	var attempts []*taskv1.IncrementalActivityInput
	env.OnActivity(a.Incremental, mock.Anything, mock.Anything).Return(func(ctx context.Context, in *taskv1.IncrementalActivityInput) (*cdcv1.Checkpoint, error) {
		attempts = append(attempts, in)
		switch len(attempts) {
		case 1: // dies halfway through orders
			return nil, temporal.NewApplicationErrorWithOptions("capture went away", taskapi.ErrConnection,
				temporal.ApplicationErrorOptions{Details: []any{half}})
		case 2: // finishes both tables
			return &cdcv1.Checkpoint{ConfirmedLsn: 500, Backfills: []*cdcv1.BackfillProgress{
				{Schema: "public", Table: "orders", Rows: 5000, Done: true, Lsn: 480, EstimatedRows: 5000},
				{Schema: "public", Table: "items", Rows: 20, Done: true, Lsn: 490, EstimatedRows: 20},
			}}, nil
		}
		w.running.Add(1)
		<-ctx.Done()
		return nil, temporal.NewCanceledError()
	})
	w.whenIncrementalRuns(func() { w.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{}) })
	spec := fullSpec()
	spec.Advanced.FullThrottle = &taskv1.FullSyncThrottle{RowsPerSecond: 700}
	env.ExecuteWorkflow(TaskWorkflow, &taskv1.TaskWorkflowInput{TaskId: "t-1", Spec: spec})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if !setup.GetPublicationOnly() || !setup.GetChunkIfKeyed() {
		t.Errorf("setup input %v: want publication_only with chunk_if_keyed", setup)
	}
	if len(attempts) != 3 {
		t.Fatalf("%d incremental attempts, want 3 (failed, finished full sync, streaming)", len(attempts))
	}
	first, second, third := attempts[0], attempts[1], attempts[2]
	if !first.GetUntilBackfilled() || len(first.GetCheckpoint().GetBackfills()) != 2 || first.GetCheckpoint().GetConfirmedLsn() != 100 ||
		first.GetCheckpoint().GetBackfills()[0].GetEstimatedRows() != 5000 {
		t.Errorf("first attempt %v: want both tables from the start at the slot's LSN", first)
	}
	if got := second.GetCheckpoint().GetBackfills()[0].GetAfterKey(); !second.GetUntilBackfilled() || len(got) != 1 || got[0] != "2500" {
		t.Errorf("second attempt resumes after key %v, want 2500", got)
	}
	if third.GetUntilBackfilled() || third.GetCheckpoint().GetConfirmedLsn() != 500 || len(third.GetCheckpoint().GetBackfills()) != 0 {
		t.Errorf("third attempt %v: want plain incremental from 500 with no backfills left", third)
	}
	// The stream runs under the full sync throttle while it carries the
	// snapshot, and under the incremental one after.
	if first.GetSpec().GetAdvanced().GetIncrementalThrottle().GetRowsPerSecond() != 700 ||
		third.GetSpec().GetAdvanced().GetIncrementalThrottle().GetRowsPerSecond() != 0 {
		t.Errorf("stream throttles: full sync %v, incremental %v", first.GetSpec().GetAdvanced(), third.GetSpec().GetAdvanced())
	}
	st := w.state()
	if !st.GetFullSyncDone() || !st.GetFullSyncChunked() || len(st.GetFullSyncRows()) != 2 || st.GetFullSyncRows()[0].GetRows() != 5000 {
		t.Errorf("state %v: want full sync done by chunks, with its row counts", st)
	}
	env.AssertNotCalled(t, "FullSync", mock.Anything, mock.Anything)
}
