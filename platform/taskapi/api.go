// Package taskapi is the public face of a task's workflow: the names and
// values the control API, ferryctl and users of the Temporal CLI share with
// the worker (workflow, signal, query and activity names, application error
// types, search attributes, option defaults, the data converter) and the
// pure functions both sides apply to a spec. It lives apart from the
// workflow so that the services do not link the worker's code.
//
// Every name here is recorded in workflow histories and used from outside
// Ferry: changing one breaks running tasks and their replay.
package taskapi

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

// Registered names of the activities: the workflow schedules them by these
// names, which are the worker's method names (workflows/activities), and
// recorded histories hold them. The control API reads the heartbeat of
// ActivityFullSync for per-table progress, and the retries of
// ActivityPrecheck and ActivitySetup for tasks that began before the
// workflow owned them.
const (
	ActivityPrecheck      = "Precheck"
	ActivitySetup         = "Setup"
	ActivityFullSync      = "FullSync"
	ActivityIncremental   = "Incremental"
	ActivityModify        = "Modify"
	ActivityApplyThrottle = "ApplyThrottle"
	ActivityAlert         = "Alert"
	ActivityRelease       = "Release"
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

// Retry-window defaults and bounds, in minutes, as the managed service has
// them; control fills them into a spec that leaves them unset.
const (
	DefaultConnectionRetryMinutes = 720
	DefaultOtherRetryMinutes      = 10
)

// DefaultHeartbeatSeconds is how often capture writes a heartbeat into the
// source's WAL when a task leaves advanced.heartbeat_seconds unset
// (control fills it in; tasks created before it did get this too). Each
// heartbeat is a WAL record of about 100 bytes; the interval bounds how far
// an idle slot's confirmed_flush_lsn trails the WAL when keepalives do not
// carry the position.
const DefaultHeartbeatSeconds = 30

// DefaultSourceCheckSeconds is how often the source alerts read the slot
// when alerts.source_check_seconds is unset: each reading is one short
// session on the source.
const DefaultSourceCheckSeconds = 30

// Alert kinds and states, as the webhook body carries them (the workflow
// sends task_failed, the incremental activity the others).
const (
	AlertKindTaskFailed      = "task_failed"
	AlertKindLatency         = "latency"
	AlertKindRetainedWAL     = "retained_wal"
	AlertKindSlotLag         = "slot_lag"
	AlertKindLongTransaction = "long_transaction"
	AlertFiring              = "firing"
	AlertResolved            = "resolved"
)

// Search attributes registered in the Temporal server (deploy/local/stack.sh)
// so that tasks can be found and read in the Temporal UI.
var (
	SearchTaskName       = temporal.NewSearchAttributeKeyKeyword("FerryTaskName")
	SearchPhase          = temporal.NewSearchAttributeKeyKeyword("FerryPhase")
	SearchStatus         = temporal.NewSearchAttributeKeyKeyword("FerryStatus")
	SearchSourceDatabase = temporal.NewSearchAttributeKeyKeyword("FerrySourceDatabase")
)
