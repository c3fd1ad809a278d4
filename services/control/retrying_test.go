package control

import (
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	failurepb "go.temporal.io/api/failure/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

func pendingSetup(attempt int32, errType string) *workflowpb.PendingActivityInfo {
	return &workflowpb.PendingActivityInfo{
		ActivityType: &commonpb.ActivityType{Name: taskapi.ActivitySetup},
		Attempt:      attempt,
		LastFailure: &failurepb.Failure{
			Message: `creating slot and publication ferry_t: creating publication "ferry_t": ERROR: unrecognized publication parameter`,
			FailureInfo: &failurepb.Failure_ApplicationFailureInfo{
				ApplicationFailureInfo: &failurepb.ApplicationFailureInfo{Type: errType},
			},
		},
		ExpirationTime: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
	}
}

// A setup Temporal retries (a task begun before the workflow owned those
// retries) shows as RETRYING with its last failure.
func TestTemporalRetriesOfSetupShowAsRetrying(t *testing.T) {
	st := &taskv1.TaskState{Phase: taskv1.Phase_PHASE_SCHEMA_SYNC, Status: taskv1.Status_STATUS_RUNNING}
	showTemporalRetries(st, pendingSetup(6, taskapi.ErrOther))
	if st.GetStatus() != taskv1.Status_STATUS_RETRYING || st.GetConsecutiveFailures() != 5 ||
		st.GetFailingClass() != taskv1.ErrorClass_ERROR_CLASS_OTHER ||
		st.GetLastError() != `creating slot and publication ferry_t: creating publication "ferry_t": ERROR: unrecognized publication parameter` ||
		!st.GetRetryingUntil().AsTime().Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("state = %v, want RETRYING after 5 failures of class OTHER with setup's error and its expiration", st)
	}
	st = &taskv1.TaskState{Status: taskv1.Status_STATUS_RUNNING}
	showTemporalRetries(st, pendingSetup(2, taskapi.ErrConnection))
	if st.GetFailingClass() != taskv1.ErrorClass_ERROR_CLASS_CONNECTION {
		t.Errorf("class = %v, want CONNECTION", st.GetFailingClass())
	}
}

func TestFirstAttemptsAndOtherActivitiesAreLeftAlone(t *testing.T) {
	for name, pa := range map[string]*workflowpb.PendingActivityInfo{
		"first attempt": pendingSetup(1, taskapi.ErrOther),
		"incremental": func() *workflowpb.PendingActivityInfo {
			pa := pendingSetup(3, taskapi.ErrOther)
			pa.ActivityType.Name = "Incremental"
			return pa
		}(),
	} {
		st := &taskv1.TaskState{Status: taskv1.Status_STATUS_RUNNING}
		showTemporalRetries(st, pa)
		if st.GetStatus() != taskv1.Status_STATUS_RUNNING || st.GetLastError() != "" {
			t.Errorf("%s: state = %v, want it untouched", name, st)
		}
	}
	paused := &taskv1.TaskState{Status: taskv1.Status_STATUS_PAUSED}
	showTemporalRetries(paused, pendingSetup(4, taskapi.ErrOther))
	if paused.GetStatus() != taskv1.Status_STATUS_PAUSED {
		t.Errorf("a paused task shows %v, want PAUSED", paused.GetStatus())
	}
}
