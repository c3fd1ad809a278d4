package task

import (
	"log/slog"
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// TestReplayRecordedHistories replays histories recorded from real runs on
// the Temporal dev server (see `make record-history`). A change to
// TaskWorkflow that alters its commands for an existing history fails here;
// such changes belong behind workflow.GetVersion.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/*.history.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no recorded histories in testdata/")
	}
	// The worker's converter: recorded signals from the temporal CLI are
	// plain JSON that it decodes with protojson.
	r, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{DataConverter: taskapi.DataConverter()})
	if err != nil {
		t.Fatal(err)
	}
	r.RegisterWorkflowWithOptions(TaskWorkflow, workflow.RegisterOptions{Name: taskapi.WorkflowName})
	for _, f := range files {
		if err := r.ReplayWorkflowHistoryFromJSONFile(log.NewStructuredLogger(slog.Default()), f); err != nil {
			t.Errorf("replaying %s: %v", f, err)
		}
	}
}
