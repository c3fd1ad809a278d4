// Package task holds the TaskWorkflow, which runs one synchronization task's
// lifecycle, and the activities it orchestrates.
package task

import "go.temporal.io/sdk/temporal"

// DefaultTaskQueue is where workers poll for task workflows and activities
// unless configured otherwise; the control API starts tasks on the same one.
const DefaultTaskQueue = "ferry-tasks"

// WorkflowName is the registered name of TaskWorkflow; the control API and
// `temporal workflow start` use it.
const WorkflowName = "TaskWorkflow"

// Signal names are part of the public API: users send them with
// `temporal workflow signal --name ...`. Never rename one.
const (
	SignalPause  = "ferry.pause"
	SignalResume = "ferry.resume"
	SignalStop   = "ferry.stop"
	// SignalModifyObjects takes a *taskv1.ModifyObjectsSignal: the task's
	// new selection, whole.
	SignalModifyObjects = "ferry.modify-objects"
	// SignalUpdateThrottle takes a *taskv1.UpdateThrottleSignal; it applies
	// to running streams and snapshots without restarting them.
	SignalUpdateThrottle = "ferry.update-throttle"
	// SignalRestart restarts the running phase from the confirmed checkpoint.
	SignalRestart = "ferry.restart"
)

// ActivityFullSync is the full sync activity's registered name; the
// control API reads its heartbeat for per-table progress.
const ActivityFullSync = "FullSync"

// ActivityPrecheck and ActivitySetup are the registered names of the
// activities before streaming; the control API reads the retries of tasks
// that began before the workflow owned them.
const (
	ActivityPrecheck = "Precheck"
	ActivitySetup    = "Setup"
)

// QueryState returns the task's *taskv1.TaskState.
const QueryState = "ferry.state"

// Application error types. The workflow decides retry windows by them.
const (
	// ErrConnection: the source, Kafka or a Ferry service could not be reached.
	ErrConnection = "ferry.ConnectionError"
	// ErrOther: anything else that may pass with time.
	ErrOther = "ferry.OtherError"
	// ErrConfig: a precheck failure, a bad spec, or a source that lost what
	// the task needs to resume (capture's DataLoss); retrying cannot help.
	ErrConfig = "ferry.ConfigError"
)

// Search attributes registered in the Temporal server (deploy/local/stack.sh)
// so that tasks can be found and read in the Temporal UI.
var (
	SearchTaskName       = temporal.NewSearchAttributeKeyKeyword("FerryTaskName")
	SearchPhase          = temporal.NewSearchAttributeKeyKeyword("FerryPhase")
	SearchStatus         = temporal.NewSearchAttributeKeyKeyword("FerryStatus")
	SearchSourceDatabase = temporal.NewSearchAttributeKeyKeyword("FerrySourceDatabase")
)
