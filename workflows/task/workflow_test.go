package task

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
	"github.com/ferry-cdc/ferry/workflows/activities"
)

func testSpec() *taskv1.TaskSpec {
	return &taskv1.TaskSpec{
		Name:        "orders",
		Source:      &taskv1.SourceEndpoint{Host: "db", Database: "shop", User: "ferry"},
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: "k:9092", Topic: "orders"},
		Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: "orders"}}},
		Advanced:    &taskv1.AdvancedOptions{ConnectionRetryMinutes: 30, OtherRetryMinutes: 5},
	}
}

type wfTest struct {
	*testsuite.TestWorkflowEnvironment
	t          *testing.T
	a          *activities.Activities
	increments []*taskv1.IncrementalActivityInput
	running    atomic.Int32 // incremental attempts started
}

// newWFTest registers the workflow with passing precheck and setup; each test
// mocks the incremental activity itself.
func newWFTest(t *testing.T) *wfTest {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	a := &activities.Activities{}
	env.RegisterActivity(a)
	env.OnActivity(a.Precheck, mock.Anything, mock.Anything).Return(&taskv1.PrecheckActivityResult{Items: []*taskv1.PrecheckItem{
		{Id: "wal_level", Severity: taskv1.Severity_SEVERITY_PASS},
		{Id: "primary_key", Severity: taskv1.Severity_SEVERITY_WARN, Message: "no key"},
	}}, nil).Maybe()
	env.OnActivity(a.Setup, mock.Anything, mock.Anything).Return(&taskv1.SetupActivityResult{StartLsn: 100}, nil).Maybe()
	return &wfTest{TestWorkflowEnvironment: env, t: t, a: a}
}

// onIncremental mocks successive incremental attempts; the last behaviour
// repeats for later attempts.
func (w *wfTest) onIncremental(attempts ...func(ctx context.Context, in *taskv1.IncrementalActivityInput) error) {
	n := 0
	w.OnActivity(w.a.Incremental, mock.Anything, mock.Anything).Return(func(ctx context.Context, in *taskv1.IncrementalActivityInput) (*cdcv1.Checkpoint, error) {
		w.increments = append(w.increments, in)
		f := attempts[min(n, len(attempts)-1)]
		n++
		w.running.Add(1)
		return nil, f(ctx, in)
	})
}

// whenIncrementalRuns calls f once an incremental attempt has started. A
// fixed delay is not enough: the test environment fast-forwards timers
// whenever no activity runs, which can fire a callback before the attempt.
func (w *wfTest) whenIncrementalRuns(f func()) {
	var try func()
	try = func() {
		if w.running.Load() == 0 {
			w.RegisterDelayedCallback(try, blockedDelay)
			return
		}
		f()
	}
	w.RegisterDelayedCallback(try, blockedDelay)
}

func (w *wfTest) run() error {
	w.ExecuteWorkflow(TaskWorkflow, &taskv1.TaskWorkflowInput{TaskId: "t-1", Spec: testSpec()})
	if !w.IsWorkflowCompleted() {
		w.t.Fatal("workflow did not complete")
	}
	return w.GetWorkflowError()
}

func (w *wfTest) state() *taskv1.TaskState {
	v, err := w.QueryWorkflow(taskapi.QueryState)
	if err != nil {
		w.t.Fatalf("query: %v", err)
	}
	var st taskv1.TaskState
	if err := v.Get(&st); err != nil {
		w.t.Fatalf("decoding state: %v", err)
	}
	return &st
}

// blockedDelay is short because the test environment's clock moves in real
// time while an activity is running.
const blockedDelay = 50 * time.Millisecond

func blockUntilCancelled(lsn uint64) func(context.Context, *taskv1.IncrementalActivityInput) error {
	return func(ctx context.Context, _ *taskv1.IncrementalActivityInput) error {
		<-ctx.Done()
		return temporal.NewCanceledError(&cdcv1.Checkpoint{ConfirmedLsn: lsn})
	}
}

func failWith(typ string, lsn uint64) func(context.Context, *taskv1.IncrementalActivityInput) error {
	return func(context.Context, *taskv1.IncrementalActivityInput) error {
		return temporal.NewApplicationErrorWithOptions("boom", typ, temporal.ApplicationErrorOptions{
			Details: []any{&cdcv1.Checkpoint{ConfirmedLsn: lsn}},
		})
	}
}

func TestStopReleasesAndKeepsCheckpoint(t *testing.T) {
	w := newWFTest(t)
	w.onIncremental(blockUntilCancelled(250))
	var released *taskv1.ReleaseActivityInput
	w.OnActivity(w.a.Release, mock.Anything, mock.Anything).Return(func(_ context.Context, in *taskv1.ReleaseActivityInput) error {
		released = in
		return nil
	})
	w.whenIncrementalRuns(func() { w.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{Release: true}) })
	if err := w.run(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	st := w.state()
	if st.GetPhase() != taskv1.Phase_PHASE_STOPPED || st.GetStatus() != taskv1.Status_STATUS_STOPPED {
		t.Errorf("phase/status = %v/%v, want STOPPED/STOPPED", st.GetPhase(), st.GetStatus())
	}
	// The test environment drops a cancelled activity's details (the real
	// server keeps them; TestCheckpointFromError covers the decoding), so
	// only check that stopping never moved the checkpoint back.
	if got := st.GetCheckpoint().GetConfirmedLsn(); got != 100 {
		t.Errorf("checkpoint = %d, want the setup LSN 100", got)
	}
	// A task started now gets the hashed name (taskapi.ReplicationName).
	name := taskapi.ReplicationName("t-1")
	if released == nil || released.GetSlotName() != name || released.GetPublicationName() != name {
		t.Errorf("release input = %v, want slot and publication %s", released, name)
	}
	// ...and an ownership token, kept in its state, which the release
	// presents so that capture drops only what this task created.
	if owner := st.GetReplicationOwner(); owner == "" || released.GetReplicationOwner() != owner {
		t.Errorf("owner in state %q, in the release %q: want one token in both", owner, released.GetReplicationOwner())
	}
	if len(w.increments) != 1 || w.increments[0].GetCheckpoint().GetConfirmedLsn() != 100 {
		t.Errorf("incremental started with %v, want one attempt from the setup LSN 100", w.increments)
	}
	if len(st.GetPrechecks()) != 2 {
		t.Errorf("prechecks in state = %d, want 2", len(st.GetPrechecks()))
	}
}

func TestPrecheckFailureFailsTaskWithoutSetup(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	a := &activities.Activities{}
	env.RegisterActivity(a)
	env.OnActivity(a.Precheck, mock.Anything, mock.Anything).Return(&taskv1.PrecheckActivityResult{Items: []*taskv1.PrecheckItem{
		{Id: "wal_level", Severity: taskv1.Severity_SEVERITY_FAIL, Message: "wal_level is replica", Fix: "set wal_level=logical"},
	}}, nil)
	env.ExecuteWorkflow(TaskWorkflow, &taskv1.TaskWorkflowInput{TaskId: "t-2", Spec: testSpec()})
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != taskapi.ErrConfig {
		t.Fatalf("workflow error = %v, want a %s", err, taskapi.ErrConfig)
	}
	if !appErr.NonRetryable() {
		t.Error("precheck failure must be non-retryable")
	}
	env.AssertNotCalled(t, "Setup", mock.Anything, mock.Anything)
}

func TestAcknowledgedWarningIsReportedAsAcknowledged(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	a := &activities.Activities{}
	env.RegisterActivity(a)
	env.OnActivity(a.Precheck, mock.Anything, mock.Anything).Return(&taskv1.PrecheckActivityResult{Items: []*taskv1.PrecheckItem{
		{Id: "wal_level", Severity: taskv1.Severity_SEVERITY_PASS},
		{Id: "primary_key", Severity: taskv1.Severity_SEVERITY_WARN, Message: "no key on public.t", Fix: "add a primary key"},
		{Id: "long_transactions", Severity: taskv1.Severity_SEVERITY_WARN, Message: "pid 7 open for 10m"},
		{Id: "temporary_tables", Severity: taskv1.Severity_SEVERITY_FAIL, Message: "made up", Fix: "none"},
	}}, nil)
	spec := testSpec()
	// A failure cannot be acknowledged: naming it changes nothing.
	spec.AcknowledgedWarnings = []string{"primary_key", "temporary_tables"}
	env.ExecuteWorkflow(TaskWorkflow, &taskv1.TaskWorkflowInput{TaskId: "t-ack", Spec: spec})
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != taskapi.ErrConfig || !appErr.NonRetryable() {
		t.Fatalf("workflow error = %v, want a non-retryable %s for the failed item", err, taskapi.ErrConfig)
	}
	if !strings.Contains(appErr.Error(), "temporary_tables") || strings.Contains(appErr.Error(), "primary_key") ||
		strings.Contains(appErr.Error(), "long_transactions") {
		t.Errorf("error %q should name only the failed item", appErr.Error())
	}
	v, err := env.QueryWorkflow(taskapi.QueryState)
	if err != nil {
		t.Fatal(err)
	}
	var st taskv1.TaskState
	if err := v.Get(&st); err != nil {
		t.Fatal(err)
	}
	got := map[string]*taskv1.PrecheckItem{}
	for _, it := range st.GetPrechecks() {
		got[it.GetId()] = it
	}
	if it := got["primary_key"]; it.GetSeverity() != taskv1.Severity_SEVERITY_PASS || !it.GetAcknowledged() ||
		it.GetMessage() != "no key on public.t" || it.GetFix() != "add a primary key" {
		t.Errorf("acknowledged warning in state = %v, want PASS, acknowledged, message and fix kept", it)
	}
	if it := got["long_transactions"]; it.GetSeverity() != taskv1.Severity_SEVERITY_WARN || it.GetAcknowledged() {
		t.Errorf("unacknowledged warning in state = %v, want WARN, not acknowledged", it)
	}
	if it := got["temporary_tables"]; it.GetSeverity() != taskv1.Severity_SEVERITY_FAIL || it.GetAcknowledged() {
		t.Errorf("failure in state = %v, want FAIL, not acknowledged", it)
	}
	env.AssertNotCalled(t, "Setup", mock.Anything, mock.Anything)
}

func TestUnacknowledgedWarningDoesNotBlock(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	a := &activities.Activities{}
	env.RegisterActivity(a)
	env.OnActivity(a.Precheck, mock.Anything, mock.Anything).Return(&taskv1.PrecheckActivityResult{Items: []*taskv1.PrecheckItem{
		{Id: "primary_key", Severity: taskv1.Severity_SEVERITY_WARN, Message: "no key"},
	}}, nil)
	// Setup ends the run, so reaching it is the proof that the warning
	// did not block; no timing is involved.
	setupCalls := 0
	env.OnActivity(a.Setup, mock.Anything, mock.Anything).Return(func(context.Context, *taskv1.SetupActivityInput) (*taskv1.SetupActivityResult, error) {
		setupCalls++
		return nil, temporal.NewNonRetryableApplicationError("end of test", taskapi.ErrConfig, nil)
	})
	env.ExecuteWorkflow(TaskWorkflow, &taskv1.TaskWorkflowInput{TaskId: "t-warn", Spec: testSpec()})
	if err := env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), "schema sync") {
		t.Fatalf("workflow error = %v, want the schema sync error the mock returns", err)
	}
	if setupCalls != 1 {
		t.Fatalf("setup calls = %d, want 1: a warning must not block the task", setupCalls)
	}
	v, err := env.QueryWorkflow(taskapi.QueryState)
	if err != nil {
		t.Fatal(err)
	}
	var st taskv1.TaskState
	if err := v.Get(&st); err != nil {
		t.Fatal(err)
	}
	if its := st.GetPrechecks(); len(its) != 1 || its[0].GetSeverity() != taskv1.Severity_SEVERITY_WARN || its[0].GetAcknowledged() {
		t.Errorf("prechecks in state = %v, want one unacknowledged WARN", its)
	}
}

func TestRetriesResumeFromReportedCheckpoint(t *testing.T) {
	w := newWFTest(t)
	w.onIncremental(
		failWith(taskapi.ErrConnection, 300),
		func(context.Context, *taskv1.IncrementalActivityInput) error {
			return temporal.NewHeartbeatTimeoutError(&cdcv1.Checkpoint{ConfirmedLsn: 400})
		},
		blockUntilCancelled(400),
	)
	w.OnActivity(w.a.Release, mock.Anything, mock.Anything).Return(nil).Maybe()
	w.RegisterDelayedCallback(func() {
		st := w.state()
		// The second attempt confirmed more before failing, so it restarted
		// the count: one failure in the current run.
		if st.GetStatus() != taskv1.Status_STATUS_RUNNING || st.GetConsecutiveFailures() != 1 {
			t.Errorf("after two failures: status %v, failures %d; want RUNNING, 1", st.GetStatus(), st.GetConsecutiveFailures())
		}
		w.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{})
	}, 3*time.Second+blockedDelay) // after the 1 s and 2 s backoffs
	if err := w.run(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	var starts []uint64
	for _, in := range w.increments {
		starts = append(starts, in.GetCheckpoint().GetConfirmedLsn())
	}
	want := []uint64{100, 300, 400}
	if len(starts) != len(want) || starts[0] != want[0] || starts[1] != want[1] || starts[2] != want[2] {
		t.Fatalf("attempts started at %v, want %v", starts, want)
	}
}

func TestOtherErrorsFailAfterTheirWindow(t *testing.T) {
	w := newWFTest(t)
	w.onIncremental(failWith(taskapi.ErrOther, 100))
	start := w.Now()
	err := w.run()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || !appErr.NonRetryable() {
		t.Fatalf("workflow error = %v, want a final application error", err)
	}
	elapsed := w.Now().Sub(start)
	if elapsed < 5*time.Minute || elapsed > 7*time.Minute {
		t.Errorf("failed after %s of workflow time, want just past the 5 min other-issues window", elapsed)
	}
	if st := w.state(); st.GetStatus() != taskv1.Status_STATUS_FAILED || st.GetLastError() == "" {
		t.Errorf("state = %v, want FAILED with the last error", st)
	}
}

func TestConnectionErrorsUseTheLongerWindow(t *testing.T) {
	w := newWFTest(t)
	w.onIncremental(failWith(taskapi.ErrConnection, 100))
	start := w.Now()
	if err := w.run(); err == nil {
		t.Fatal("want the task to fail once the connection window passes")
	}
	if elapsed := w.Now().Sub(start); elapsed < 30*time.Minute || elapsed > 32*time.Minute {
		t.Errorf("failed after %s, want just past the 30 min connection window", elapsed)
	}
}

func TestProgressResetsTheWindow(t *testing.T) {
	w := newWFTest(t)
	lsn := uint64(100)
	// Every attempt confirms more before failing, so the task never gives up.
	w.onIncremental(func(context.Context, *taskv1.IncrementalActivityInput) error {
		lsn += 10
		return failWith(taskapi.ErrOther, lsn)(nil, nil)
	})
	w.OnActivity(w.a.Release, mock.Anything, mock.Anything).Return(nil).Maybe()
	w.RegisterDelayedCallback(func() { w.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{}) }, 3*time.Hour)
	if err := w.run(); err != nil {
		t.Fatalf("workflow error = %v; an attempt that made progress must reset the window", err)
	}
	if got := w.state().GetCheckpoint().GetConfirmedLsn(); got != lsn {
		t.Errorf("checkpoint = %d, want %d", got, lsn)
	}
}

func TestPauseAndResume(t *testing.T) {
	w := newWFTest(t)
	w.onIncremental(failWith(taskapi.ErrConnection, 500), blockUntilCancelled(0), blockUntilCancelled(0))
	w.OnActivity(w.a.Release, mock.Anything, mock.Anything).Return(nil).Maybe()
	// The first attempt fails at once and the second starts after a 1 s backoff.
	at := time.Second + blockedDelay
	w.RegisterDelayedCallback(func() { w.SignalWorkflow(taskapi.SignalPause, &taskv1.PauseSignal{}) }, at)
	w.RegisterDelayedCallback(func() {
		if st := w.state(); st.GetStatus() != taskv1.Status_STATUS_PAUSED || len(w.increments) != 2 {
			t.Errorf("while paused: status %v after %d attempts; want PAUSED after 2", st.GetStatus(), len(w.increments))
		}
		w.SignalWorkflow(taskapi.SignalResume, &taskv1.ResumeSignal{})
	}, at+2*blockedDelay)
	w.RegisterDelayedCallback(func() { w.SignalWorkflow(taskapi.SignalStop, &taskv1.StopSignal{}) }, at+4*blockedDelay)
	if err := w.run(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if len(w.increments) != 3 || w.increments[2].GetCheckpoint().GetConfirmedLsn() != 500 {
		t.Fatalf("attempts = %d, last from %d; want 3, resumed after the pause from checkpoint 500",
			len(w.increments), w.increments[len(w.increments)-1].GetCheckpoint().GetConfirmedLsn())
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range map[uint32]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 7: time.Minute, 40: time.Minute} {
		if got := Backoff(n); got != want {
			t.Errorf("Backoff(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestCheckpointFromError(t *testing.T) {
	cp := &cdcv1.Checkpoint{ConfirmedLsn: 42}
	for name, err := range map[string]error{
		"application": temporal.NewApplicationErrorWithOptions("x", taskapi.ErrOther, temporal.ApplicationErrorOptions{Details: []any{cp}}),
		"cancelled":   temporal.NewCanceledError(cp),
		"heartbeat":   temporal.NewHeartbeatTimeoutError(cp),
	} {
		if got := CheckpointFromError(err); got.GetConfirmedLsn() != 42 {
			t.Errorf("%s: checkpoint = %v, want 42", name, got)
		}
	}
	if got := CheckpointFromError(errors.New("plain")); got != nil {
		t.Errorf("plain error: checkpoint = %v, want none", got)
	}
}

// A run restarted after a failed schema sync (RestartTask hands it the old
// state) sets up the slot and publication its predecessor named, even when
// that is a name from before hashed names: what the failed setup left has
// that name.
func TestRestartedSchemaSyncKeepsTheRecordedName(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	a := &activities.Activities{}
	env.RegisterActivity(a)
	var setups []*taskv1.SetupActivityInput
	env.OnActivity(a.Setup, mock.Anything, mock.Anything).Return(func(_ context.Context, in *taskv1.SetupActivityInput) (*taskv1.SetupActivityResult, error) {
		setups = append(setups, in)
		return nil, temporal.NewNonRetryableApplicationError("stop here", taskapi.ErrConfig, nil)
	})
	env.OnActivity(a.Alert, mock.Anything, mock.Anything).Return(nil).Maybe()
	st := &taskv1.TaskState{Phase: taskv1.Phase_PHASE_SCHEMA_SYNC, Spec: testSpec(), SlotName: "ferry_t_1", PublicationName: "ferry_t_1"}
	env.ExecuteWorkflow(TaskWorkflow, &taskv1.TaskWorkflowInput{TaskId: "t-1", Spec: testSpec(), State: st})
	if len(setups) == 0 || setups[0].GetSlotName() != "ferry_t_1" || setups[0].GetPublicationName() != "ferry_t_1" {
		t.Fatalf("setup inputs %v, want the recorded name ferry_t_1", setups)
	}
	if setups[0].GetReplicationOwner() != "" {
		t.Errorf("a task named before ownership was recorded got owner %q; capture would refuse its own objects", setups[0].GetReplicationOwner())
	}
}
