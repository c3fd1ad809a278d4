package task

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
	"github.com/ferry-cdc/ferry/workflows/activities"
)

// newPrepareTest is a workflow test whose precheck and setup each fail
// with the given errors, one per attempt, before they pass.
func newPrepareTest(t *testing.T, precheckErrs, setupErrs []error) (*wfTest, *int, *int) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	a := &activities.Activities{}
	env.RegisterActivity(a)
	prechecks, setups := 0, 0
	env.OnActivity(a.Precheck, mock.Anything, mock.Anything).Return(func(context.Context, *taskv1.PrecheckActivityInput) (*taskv1.PrecheckActivityResult, error) {
		prechecks++
		if prechecks <= len(precheckErrs) {
			return nil, precheckErrs[prechecks-1]
		}
		return &taskv1.PrecheckActivityResult{Items: []*taskv1.PrecheckItem{{Id: "wal_level", Severity: taskv1.Severity_SEVERITY_PASS}}}, nil
	})
	env.OnActivity(a.Setup, mock.Anything, mock.Anything).Return(func(context.Context, *taskv1.SetupActivityInput) (*taskv1.SetupActivityResult, error) {
		setups++
		if setups <= len(setupErrs) {
			return nil, setupErrs[setups-1]
		}
		return &taskv1.SetupActivityResult{StartLsn: 100}, nil
	})
	env.OnActivity(a.Release, mock.Anything, mock.Anything).Return(nil).Maybe()
	return &wfTest{TestWorkflowEnvironment: env, t: t, a: a}, &prechecks, &setups
}

func setupErr(typ string) error {
	return temporal.NewApplicationError(`creating slot and publication ferry_t_1: creating publication "ferry_t_1": ERROR: unrecognized publication parameter`, typ)
}

// A setup that keeps failing shows RETRYING with its error between attempts
// and goes back to RUNNING once an attempt succeeds.
func TestSetupFailuresShowRetryingThenRunning(t *testing.T) {
	w, _, setups := newPrepareTest(t, nil, []error{setupErr(taskapi.ErrOther), setupErr(taskapi.ErrOther), setupErr(taskapi.ErrOther)})
	w.onIncremental(blockUntilCancelled(100))
	start := w.Now()
	// Attempts fail at 0 s, 1 s and 3 s (backoffs of 1, 2 and 4 s); the
	// fourth, at 7 s, succeeds.
	w.RegisterDelayedCallback(func() {
		st := w.state()
		if st.GetPhase() != taskv1.Phase_PHASE_SCHEMA_SYNC || st.GetStatus() != taskv1.Status_STATUS_RETRYING {
			t.Errorf("between setup attempts: phase/status %v/%v, want SCHEMA_SYNC/RETRYING", st.GetPhase(), st.GetStatus())
		}
		if !strings.Contains(st.GetLastError(), "unrecognized publication parameter") {
			t.Errorf("last error = %q, want setup's error", st.GetLastError())
		}
		if st.GetConsecutiveFailures() != 2 || st.GetFailingClass() != taskv1.ErrorClass_ERROR_CLASS_OTHER {
			t.Errorf("failures %d of class %v, want 2 of OTHER", st.GetConsecutiveFailures(), st.GetFailingClass())
		}
		// testSpec's other-issues window is 5 minutes.
		if got, want := st.GetRetryingUntil().AsTime(), start.Add(5*time.Minute); got.Sub(want).Abs() > time.Second {
			t.Errorf("retrying until %v, want %v", got, want)
		}
	}, 2*time.Second)
	w.whenIncrementalRuns(func() {
		st := w.state()
		if st.GetPhase() != taskv1.Phase_PHASE_INCREMENTAL || st.GetStatus() != taskv1.Status_STATUS_RUNNING {
			t.Errorf("after setup succeeded: phase/status %v/%v, want INCREMENTAL/RUNNING", st.GetPhase(), st.GetStatus())
		}
		if st.GetFailingSince() != nil || st.GetConsecutiveFailures() != 0 || st.GetRetryingUntil() != nil {
			t.Errorf("after setup succeeded: failing since %v, %d failures, retrying until %v; want a clear window",
				st.GetFailingSince(), st.GetConsecutiveFailures(), st.GetRetryingUntil())
		}
		w.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{})
	})
	if err := w.run(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if *setups != 4 {
		t.Errorf("setup attempts = %d, want 4", *setups)
	}
	if got := w.increments[0].GetCheckpoint().GetConfirmedLsn(); got != 100 {
		t.Errorf("incremental started at %d, want setup's LSN 100", got)
	}
}

// A precheck that cannot reach the catalog retries in the connection window
// and shows it.
func TestPrecheckFailuresShowRetrying(t *testing.T) {
	unreachable := temporal.NewApplicationError("running the precheck: connection refused", taskapi.ErrConnection)
	w, prechecks, _ := newPrepareTest(t, []error{unreachable, unreachable}, nil)
	w.onIncremental(blockUntilCancelled(100))
	w.RegisterDelayedCallback(func() {
		st := w.state()
		if st.GetPhase() != taskv1.Phase_PHASE_PRECHECK || st.GetStatus() != taskv1.Status_STATUS_RETRYING ||
			st.GetFailingClass() != taskv1.ErrorClass_ERROR_CLASS_CONNECTION || st.GetConsecutiveFailures() != 1 ||
			!strings.Contains(st.GetLastError(), "connection refused") {
			t.Errorf("between precheck attempts: state %v, want PRECHECK/RETRYING after 1 connection failure", st)
		}
	}, 500*time.Millisecond)
	w.whenIncrementalRuns(func() { w.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{}) })
	if err := w.run(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if *prechecks != 3 {
		t.Errorf("precheck attempts = %d, want 3", *prechecks)
	}
}

// A setup that never succeeds fails the task once its window passes, with
// its own error in the state.
func TestSetupFailsAfterItsWindow(t *testing.T) {
	errs := make([]error, 100)
	for i := range errs {
		errs[i] = setupErr(taskapi.ErrOther)
	}
	w, _, _ := newPrepareTest(t, nil, errs)
	start := w.Now()
	err := w.run()
	if err == nil || !strings.Contains(err.Error(), "schema sync: task t-1 failed for") ||
		!strings.Contains(err.Error(), "beyond its other-issues retry window of 5m0s") {
		t.Fatalf("workflow error = %v, want schema sync to fail past its window", err)
	}
	if elapsed := w.Now().Sub(start); elapsed < 5*time.Minute || elapsed > 7*time.Minute {
		t.Errorf("failed after %s, want just past the 5 min other-issues window", elapsed)
	}
	st := w.state()
	if st.GetStatus() != taskv1.Status_STATUS_FAILED || !strings.Contains(st.GetLastError(), "unrecognized publication parameter") {
		t.Errorf("state = %v, want FAILED with setup's error", st)
	}
}

// A stop while setup retries ends the task without waiting for setup.
func TestStopDuringSetupRetries(t *testing.T) {
	errs := make([]error, 100)
	for i := range errs {
		errs[i] = setupErr(taskapi.ErrConnection)
	}
	w, _, setups := newPrepareTest(t, nil, errs)
	w.RegisterDelayedCallback(func() { w.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{Release: true}) }, 10*time.Second)
	if err := w.run(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	st := w.state()
	if st.GetPhase() != taskv1.Phase_PHASE_STOPPED || st.GetStatus() != taskv1.Status_STATUS_STOPPED {
		t.Errorf("phase/status = %v/%v, want STOPPED/STOPPED", st.GetPhase(), st.GetStatus())
	}
	if *setups > 5 {
		t.Errorf("setup attempts = %d, want the stop to end the retries", *setups)
	}
}
