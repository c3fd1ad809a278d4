package task

import (
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/proto"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// taskSignals are the channels of every signal a task takes; their names
// are the constants in platform/taskapi.
type taskSignals struct {
	pause, resume, stop, modify, throttle, restart workflow.ReceiveChannel
}

func newTaskSignals(ctx workflow.Context) taskSignals {
	return taskSignals{
		pause:    workflow.GetSignalChannel(ctx, taskapi.SignalPause),
		resume:   workflow.GetSignalChannel(ctx, taskapi.SignalResume),
		stop:     workflow.GetSignalChannel(ctx, taskapi.SignalStop),
		modify:   workflow.GetSignalChannel(ctx, taskapi.SignalModifyObjects),
		throttle: workflow.GetSignalChannel(ctx, taskapi.SignalUpdateThrottle),
		restart:  workflow.GetSignalChannel(ctx, taskapi.SignalRestart),
	}
}

// awaitOrInterrupt waits for an activity while serving the signals; a
// pause, stop, restart or (in incremental sync) a modification cancels it
// through cancel and reports interrupted. A throttle change reaches the
// running activity without interrupting it.
func (r *taskRun) awaitOrInterrupt(ctx workflow.Context, fut workflow.Future, cancel workflow.CancelFunc) bool {
	interrupted := false
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(fut, func(workflow.Future) {})
	r.addControlSignals(ctx, sel, func() { interrupted = true })
	for !fut.IsReady() && !interrupted {
		sel.Select(ctx)
		// A stream that could not be told restarts and takes the new
		// throttle from its request; a snapshot is not restarted for it.
		if r.throttleDirty && !interrupted && !fut.IsReady() && !r.pushThrottle(ctx) &&
			r.st.GetPhase() == taskv1.Phase_PHASE_INCREMENTAL {
			interrupted = true
		}
	}
	if interrupted {
		cancel()
	}
	return interrupted
}

func (r *taskRun) addControlSignals(ctx workflow.Context, sel workflow.Selector, interrupt func()) {
	sel.AddReceive(r.signals.pause, func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(ctx, nil)
		r.st.Paused = true
		interrupt()
	})
	sel.AddReceive(r.signals.resume, func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(ctx, nil)
		r.st.Paused = false
	})
	sel.AddReceive(r.signals.stop, func(c workflow.ReceiveChannel, _ bool) {
		var s taskv1.StopSignal
		c.Receive(ctx, &s)
		r.stopReq = &s
		interrupt()
	})
	sel.AddReceive(r.signals.modify, func(c workflow.ReceiveChannel, _ bool) {
		var s taskv1.ModifyObjectsSignal
		c.Receive(ctx, &s)
		r.pendingModify = append(r.pendingModify, &s)
		// Full sync keeps going: its tables were fixed when it started, and
		// the modification applies when incremental sync begins.
		if r.st.GetPhase() == taskv1.Phase_PHASE_INCREMENTAL {
			interrupt()
		}
	})
	sel.AddReceive(r.signals.throttle, func(c workflow.ReceiveChannel, _ bool) {
		var s taskv1.UpdateThrottleSignal
		c.Receive(ctx, &s)
		r.updateThrottle(&s)
	})
	sel.AddReceive(r.signals.restart, func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(ctx, nil)
		r.restartReq = true
		interrupt()
	})
}

// drainSignals applies every signal already delivered, so that none is lost
// when the workflow continues as new.
func (r *taskRun) drainSignals(ctx workflow.Context) {
	for r.signals.pause.ReceiveAsync(nil) {
		r.st.Paused = true
	}
	for r.signals.resume.ReceiveAsync(nil) {
		r.st.Paused = false
	}
	var s taskv1.StopSignal
	for r.signals.stop.ReceiveAsync(&s) {
		r.stopReq = &taskv1.StopSignal{Release: s.GetRelease()}
	}
	for {
		var m taskv1.ModifyObjectsSignal
		if !r.signals.modify.ReceiveAsync(&m) {
			break
		}
		r.pendingModify = append(r.pendingModify, &m)
	}
	for {
		var t taskv1.UpdateThrottleSignal
		if !r.signals.throttle.ReceiveAsync(&t) {
			break
		}
		r.updateThrottle(&t)
	}
	for r.signals.restart.ReceiveAsync(nil) {
		r.restartReq = true
	}
}

func (r *taskRun) awaitResume(ctx workflow.Context) {
	sel := workflow.NewSelector(ctx)
	r.addControlSignals(ctx, sel, func() {})
	for r.st.GetPaused() && r.stopReq == nil {
		sel.Select(ctx)
	}
}

// updateThrottle puts a throttle signal into the spec; the running activity
// learns of it through pushThrottle, later ones from their input.
func (r *taskRun) updateThrottle(s *taskv1.UpdateThrottleSignal) {
	spec := proto.Clone(r.spec()).(*taskv1.TaskSpec)
	if spec.Advanced == nil {
		spec.Advanced = &taskv1.AdvancedOptions{}
	}
	if s.GetFull() != nil {
		spec.Advanced.FullThrottle = s.GetFull()
	}
	if s.GetIncremental() != nil {
		spec.Advanced.IncrementalThrottle = s.GetIncremental()
	}
	r.st.Spec = spec
	r.throttleDirty = true
}
