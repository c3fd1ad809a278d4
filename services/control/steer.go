package control

import (
	"context"
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// ModifyObjects validates the task's spec with the new selection, as
// CreateTask would, then hands the normalized selection to the workflow.
func (s *Server) ModifyObjects(ctx context.Context, req *taskv1.ModifyObjectsRequest) (*taskv1.ModifyObjectsResponse, error) {
	st, err := s.state(ctx, req.GetTaskId())
	if err != nil {
		return nil, err
	}
	spec := taskapi.ModifiedSpec(st.GetSpec(), &taskv1.ModifyObjectsSignal{
		Objects: req.GetObjects(), Compression: req.GetCompression(), Acks: req.GetAcks(),
	})
	norm, err := Normalize(spec)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := s.checkTransforms(ctx, norm); err != nil {
		return nil, err
	}
	sig := &taskv1.ModifyObjectsSignal{Objects: norm.GetObjects(), Compression: req.GetCompression(), Acks: req.GetAcks()}
	return &taskv1.ModifyObjectsResponse{}, s.signal(ctx, req.GetTaskId(), taskapi.SignalModifyObjects, sig)
}

// UpdateThrottle changes the throttles of a running task without
// restarting its stream or snapshot.
func (s *Server) UpdateThrottle(ctx context.Context, req *taskv1.UpdateThrottleRequest) (*taskv1.UpdateThrottleResponse, error) {
	if req.GetFull() == nil && req.GetIncremental() == nil {
		return nil, status.Error(codes.InvalidArgument,
			"set full and/or incremental: each one given replaces that throttle whole (zero fields are unlimited)")
	}
	sig := &taskv1.UpdateThrottleSignal{Full: req.GetFull(), Incremental: req.GetIncremental()}
	return &taskv1.UpdateThrottleResponse{}, s.signal(ctx, req.GetTaskId(), taskapi.SignalUpdateThrottle, sig)
}

// RestartTask restarts a running task's phase from its confirmed
// checkpoint, or starts a failed task again as a new run that resumes from
// the state its last run left.
func (s *Server) RestartTask(ctx context.Context, req *taskv1.RestartTaskRequest) (*taskv1.RestartTaskResponse, error) {
	id := req.GetTaskId()
	desc, err := s.temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return nil, temporalError(id, err)
	}
	switch desc.GetWorkflowExecutionInfo().GetStatus() {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return &taskv1.RestartTaskResponse{}, s.signal(ctx, id, taskapi.SignalRestart, &taskv1.RestartSignal{})
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		return nil, status.Errorf(codes.FailedPrecondition, "task %s was stopped and cannot restart; create a new task", id)
	}
	st, err := s.state(ctx, id)
	if err != nil {
		return nil, err
	}
	if st.GetReleased() {
		return nil, status.Errorf(codes.FailedPrecondition, "task %s released its slot and cannot resume; create a new task", id)
	}
	// The failed run's history keeps its error; the new run starts clean.
	st.Status, st.FailingSince, st.ConsecutiveFailures, st.LastError, st.RetryingUntil = taskv1.Status_STATUS_RUNNING, nil, 0, "", nil
	st.Restarts++
	run, err := s.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: id, TaskQueue: s.taskQueue, WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			taskapi.SearchTaskName.ValueSet(st.GetSpec().GetName()),
			taskapi.SearchSourceDatabase.ValueSet(st.GetSpec().GetSource().GetDatabase()),
			taskapi.SearchPhase.ValueSet(st.GetPhase().String()),
			taskapi.SearchStatus.ValueSet(st.GetStatus().String()),
		),
	}, taskapi.WorkflowName, &taskv1.TaskWorkflowInput{TaskId: id, Spec: st.GetSpec(), State: st})
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "starting task %s again on Temporal: %v", id, err)
	}
	s.logger.Info("task restarted as a new run", "task", id, "run", run.GetRunID(), "phase", st.GetPhase().String())
	return &taskv1.RestartTaskResponse{RunId: run.GetRunID()}, nil
}

// DeleteTask removes a task that no longer runs from Temporal.
func (s *Server) DeleteTask(ctx context.Context, req *taskv1.DeleteTaskRequest) (*taskv1.DeleteTaskResponse, error) {
	id := req.GetTaskId()
	desc, err := s.temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return nil, temporalError(id, err)
	}
	if desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return nil, status.Errorf(codes.FailedPrecondition,
			"task %s is running; stop it first (StopTask with release drops its slot and publication)", id)
	}
	if !req.GetForce() {
		st, err := s.state(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("%w; delete with force to skip the slot check", err)
		}
		if st.GetSlotName() != "" && !st.GetReleased() {
			return nil, status.Errorf(codes.FailedPrecondition,
				"task %s still has replication slot %s on the source, which keeps retaining WAL: restart the task and stop it "+
					"with release, or drop the slot and publication yourself, then delete with force", id, st.GetSlotName())
		}
	}
	_, err = s.temporal.WorkflowService().DeleteWorkflowExecution(ctx, &workflowservice.DeleteWorkflowExecutionRequest{
		Namespace:         s.namespace,
		WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: id, RunId: desc.GetWorkflowExecutionInfo().GetExecution().GetRunId()},
	})
	if err != nil {
		return nil, temporalError(id, err)
	}
	s.logger.Info("task deleted", "task", id)
	return &taskv1.DeleteTaskResponse{}, nil
}

// state queries a task's workflow, running or closed, for its state.
func (s *Server) state(ctx context.Context, id string) (*taskv1.TaskState, error) {
	resp, err := s.temporal.QueryWorkflow(ctx, id, "", taskapi.QueryState)
	if err != nil {
		return nil, temporalError(id, err)
	}
	var st taskv1.TaskState
	if err := resp.Get(&st); err != nil {
		return nil, status.Errorf(codes.Internal, "decoding task %s state: %v", id, err)
	}
	return &st, nil
}
