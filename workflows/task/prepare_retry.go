package task

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// prepareRetriesChange versions the retry loop this workflow owns for the
// precheck and setup activities. Before it, Temporal retried them inside
// one activity, where the state never saw a failure: a setup failing on
// every attempt left the task RUNNING with no error until the window
// killed it. Histories recorded before it replay with Temporal's retries.
const prepareRetriesChange = "prepare-retries"

// prepareAttemptTimeout bounds one precheck or setup attempt; a worker that
// dies during one is noticed then, and the attempt counts as a connection
// failure.
const prepareAttemptTimeout = 5 * time.Minute

// runPrepareStep runs a precheck or setup attempt (attempt executes the
// activity with the context it is given) until one succeeds, as incremental
// sync does: between attempts the state is RETRYING with the last error,
// and the retry windows, pause, stop and restart apply. stopped reports a
// stop, left in r.stopReq for the caller.
func (r *taskRun) runPrepareStep(ctx workflow.Context, attempt func(workflow.Context) error) (stopped bool, _ error) {
	if workflow.GetVersion(ctx, prepareRetriesChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return false, attempt(workflow.WithActivityOptions(ctx, r.shortActivityOptions()))
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: prepareAttemptTimeout,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	for {
		if r.settle(ctx) {
			return true, nil
		}
		// A resumed pause goes back to what the task was doing.
		if r.st.GetConsecutiveFailures() > 0 {
			r.setStatus(ctx, taskv1.Status_STATUS_RETRYING)
		} else {
			r.setStatus(ctx, taskv1.Status_STATUS_RUNNING)
		}
		err := attempt(actx)
		if err == nil {
			r.st.FailingSince, r.st.ConsecutiveFailures = nil, 0
			r.setStatus(ctx, taskv1.Status_STATUS_RUNNING)
			return false, nil
		}
		if err := r.onFailure(ctx, err, false); err != nil {
			return false, err
		}
	}
}
