package control

import (
	workflowpb "go.temporal.io/api/workflow/v1"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// showTemporalRetries covers tasks whose precheck or setup began before the
// workflow owned those retries: Temporal then retries the activity itself,
// the workflow's state stays RUNNING without an error, and only the pending
// activity knows its attempts and last failure. Newer tasks run those
// activities one attempt at a time, so their attempt is always 1.
func showTemporalRetries(st *taskv1.TaskState, pa *workflowpb.PendingActivityInfo) {
	switch pa.GetActivityType().GetName() {
	case taskapi.ActivityPrecheck, taskapi.ActivitySetup:
	default:
		return
	}
	if st.GetStatus() != taskv1.Status_STATUS_RUNNING || pa.GetAttempt() < 2 || pa.GetLastFailure() == nil {
		return
	}
	st.Status = taskv1.Status_STATUS_RETRYING
	st.LastError = pa.GetLastFailure().GetMessage()
	st.ConsecutiveFailures = uint32(pa.GetAttempt() - 1)
	st.FailingClass = taskv1.ErrorClass_ERROR_CLASS_OTHER
	if pa.GetLastFailure().GetApplicationFailureInfo().GetType() == taskapi.ErrConnection {
		st.FailingClass = taskv1.ErrorClass_ERROR_CLASS_CONNECTION
	}
	// Those attempts ran under a schedule-to-close timeout of the
	// connection window, which is when Temporal gives up.
	st.RetryingUntil = pa.GetExpirationTime()
}
