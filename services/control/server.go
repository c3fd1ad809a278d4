// Package control implements TaskService, the control API. Each task is a
// TaskWorkflow on Temporal whose workflow ID is the task ID; this package
// only validates, starts, signals and queries those workflows.
package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// Server implements taskv1.TaskServiceServer.
type Server struct {
	taskv1.UnimplementedTaskServiceServer
	temporal  client.Client
	taskQueue string
	namespace string
	catalog   catalogv1.CatalogServiceClient
	logger    *slog.Logger
	payloads  converter.DataConverter
}

// Options say where tasks live in Temporal.
type Options struct {
	TaskQueue string
	Namespace string
	// DataConverter reads the payloads DescribeWorkflowExecution returns
	// raw (heartbeat details): the Temporal client's, so sealed payloads
	// open. Nil: Temporal's default.
	DataConverter converter.DataConverter
}

// NewServer returns a control server that starts tasks through tc and runs
// standalone prechecks through cat.
func NewServer(tc client.Client, opts Options, cat catalogv1.CatalogServiceClient, logger *slog.Logger) *Server {
	dc := opts.DataConverter
	if dc == nil {
		dc = converter.GetDefaultDataConverter()
	}
	return &Server{temporal: tc, taskQueue: opts.TaskQueue, namespace: opts.Namespace, catalog: cat, logger: logger, payloads: dc}
}

// CreateTask validates the spec and starts the task's workflow.
func (s *Server) CreateTask(ctx context.Context, req *taskv1.CreateTaskRequest) (*taskv1.CreateTaskResponse, error) {
	spec, err := Normalize(req.GetSpec())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	id := req.GetTaskId()
	if id == "" {
		id = newTaskID()
	} else if !taskIDPattern.MatchString(id) {
		return nil, status.Errorf(codes.InvalidArgument,
			"task_id: %q must be 1 to 40 letters, digits, '-' or '_', starting with a letter or digit", id)
	}
	in, status0 := &taskv1.TaskWorkflowInput{TaskId: id, Spec: spec}, taskv1.Status_STATUS_RUNNING
	if req.GetCreatePaused() {
		status0 = taskv1.Status_STATUS_PAUSED
		in.State = &taskv1.TaskState{Phase: taskv1.Phase_PHASE_PRECHECK, Status: status0, Paused: true}
	}
	run, err := s.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       id,
		TaskQueue:                                s.taskQueue,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			taskapi.SearchTaskName.ValueSet(spec.GetName()),
			taskapi.SearchSourceDatabase.ValueSet(spec.GetSource().GetDatabase()),
			taskapi.SearchPhase.ValueSet(taskv1.Phase_PHASE_PRECHECK.String()),
			taskapi.SearchStatus.ValueSet(status0.String()),
		),
	}, taskapi.WorkflowName, in)
	if err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			return nil, status.Errorf(codes.AlreadyExists, "task %s already exists; choose another task_id or delete it", id)
		}
		return nil, status.Errorf(codes.Unavailable, "starting task %s on Temporal: %v", id, err)
	}
	s.logger.Info("task created", "task", id, "run", run.GetRunID())
	return &taskv1.CreateTaskResponse{TaskId: id, RunId: run.GetRunID()}, nil
}

func newTaskID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "task-" + hex.EncodeToString(b)
}

// GetTask returns the workflow's state and the running attempt's newest
// heartbeat checkpoint.
func (s *Server) GetTask(ctx context.Context, req *taskv1.GetTaskRequest) (*taskv1.GetTaskResponse, error) {
	st, err := s.state(ctx, req.GetTaskId())
	if err != nil {
		return nil, err
	}
	out := &taskv1.GetTaskResponse{TaskId: req.GetTaskId(), State: st}
	desc, err := s.temporal.DescribeWorkflowExecution(ctx, req.GetTaskId(), "")
	if err != nil {
		return nil, temporalError(req.GetTaskId(), err)
	}
	for _, pa := range desc.GetPendingActivities() {
		showTemporalRetries(st, s.openFailure(pa))
		if pa.GetActivityType().GetName() == taskapi.ActivityFullSync {
			var fs taskv1.FullSyncActivityResult
			if pa.GetHeartbeatDetails() != nil && s.payloads.FromPayloads(pa.GetHeartbeatDetails(), &fs) == nil {
				out.FullSync = &fs
			}
			continue
		}
		var cp cdcv1.Checkpoint
		if pa.GetHeartbeatDetails() != nil && s.payloads.FromPayloads(pa.GetHeartbeatDetails(), &cp) == nil &&
			cp.GetConfirmedLsn() >= out.HeartbeatConfirmedLsn {
			out.HeartbeatConfirmedLsn, out.Heartbeat = cp.GetConfirmedLsn(), &cp
		}
	}
	return out, nil
}

// ListTasks lists task workflows with their search attributes.
func (s *Server) ListTasks(ctx context.Context, req *taskv1.ListTasksRequest) (*taskv1.ListTasksResponse, error) {
	resp, err := s.temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query:         fmt.Sprintf("WorkflowType = '%s'", taskapi.WorkflowName),
		PageSize:      int32(min(req.GetPageSize(), 1000)),
		NextPageToken: req.GetPageToken(),
	})
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "listing tasks: %v", err)
	}
	out := &taskv1.ListTasksResponse{NextPageToken: resp.GetNextPageToken()}
	for _, e := range resp.GetExecutions() {
		out.Tasks = append(out.Tasks, &taskv1.TaskSummary{
			TaskId: e.GetExecution().GetWorkflowId(),
			Name:   keyword(e.GetSearchAttributes().GetIndexedFields(), "FerryTaskName"),
			Phase:  keyword(e.GetSearchAttributes().GetIndexedFields(), "FerryPhase"),
			Status: keyword(e.GetSearchAttributes().GetIndexedFields(), "FerryStatus"),
		})
	}
	return out, nil
}

// PrecheckTask runs the prechecks for a spec without creating a task.
func (s *Server) PrecheckTask(ctx context.Context, req *taskv1.PrecheckTaskRequest) (*taskv1.PrecheckTaskResponse, error) {
	spec, err := Normalize(req.GetSpec())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	res, err := s.catalog.Precheck(ctx, &catalogv1.PrecheckRequest{
		Source: spec.GetSource(), Objects: spec.GetObjects(), Destination: spec.GetDestination(),
	})
	if err != nil {
		return nil, err
	}
	items := append(res.GetItems(), taskapi.AcksItem(spec))
	return &taskv1.PrecheckTaskResponse{Items: taskapi.AcknowledgeWarnings(items, spec.GetAcknowledgedWarnings())}, nil
}

// PauseTask stops incremental sync at its confirmed checkpoint.
func (s *Server) PauseTask(ctx context.Context, req *taskv1.PauseTaskRequest) (*taskv1.PauseTaskResponse, error) {
	return &taskv1.PauseTaskResponse{}, s.signal(ctx, req.GetTaskId(), taskapi.SignalPause, &taskv1.PauseSignal{})
}

// StartTask starts a task created with create_paused.
func (s *Server) StartTask(ctx context.Context, req *taskv1.StartTaskRequest) (*taskv1.StartTaskResponse, error) {
	return &taskv1.StartTaskResponse{}, s.signal(ctx, req.GetTaskId(), taskapi.SignalResume, &taskv1.ResumeSignal{})
}

// ResumeTask continues a paused task from its checkpoint.
func (s *Server) ResumeTask(ctx context.Context, req *taskv1.ResumeTaskRequest) (*taskv1.ResumeTaskResponse, error) {
	return &taskv1.ResumeTaskResponse{}, s.signal(ctx, req.GetTaskId(), taskapi.SignalResume, &taskv1.ResumeSignal{})
}

// StopTask ends the task, dropping its slot and publication when asked.
func (s *Server) StopTask(ctx context.Context, req *taskv1.StopTaskRequest) (*taskv1.StopTaskResponse, error) {
	return &taskv1.StopTaskResponse{}, s.signal(ctx, req.GetTaskId(), taskapi.SignalStop, &taskv1.StopSignal{Release: req.GetRelease()})
}

func (s *Server) signal(ctx context.Context, id, name string, payload any) error {
	if err := s.temporal.SignalWorkflow(ctx, id, "", name, payload); err != nil {
		return temporalError(id, err)
	}
	return nil
}

func temporalError(id string, err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return status.Errorf(codes.NotFound, "task %s not found", id)
	}
	return status.Errorf(codes.Unavailable, "task %s: %v", id, err)
}

func keyword(fields map[string]*commonpb.Payload, name string) string {
	var v string
	if p, ok := fields[name]; ok {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &v)
	}
	return v
}

// openFailure returns pa with its last failure's message and stack opened
// when the worker sealed them (a payload key's failure converter).
func (s *Server) openFailure(pa *workflowpb.PendingActivityInfo) *workflowpb.PendingActivityInfo {
	if pa.GetLastFailure().GetEncodedAttributes() == nil {
		return pa
	}
	out := proto.Clone(pa).(*workflowpb.PendingActivityInfo)
	converter.DecodeCommonFailureAttributes(s.payloads, out.GetLastFailure())
	return out
}
