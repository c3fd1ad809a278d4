package activities

// Source alerts: while incremental sync runs, the activity reads the task's
// slot through capture's GetSlotHealth every alerts.source_check_seconds
// and judges three figures against their thresholds, each held for
// alerts.source_for_seconds before it fires:
//   - retained_wal: WAL the slot keeps on the source's disk;
//   - slot_lag: WAL not yet confirmed, which Kafka has not acknowledged;
//   - long_transaction: the oldest open writing transaction, which holds
//     the slot's restart point (and so the retained WAL) back.
// A reading that fails is logged and skipped: the stream itself reports a
// source that is gone, and an alert must not flap on one lost session.

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// slotHealthTimeout bounds one reading.
const slotHealthTimeout = 10 * time.Second

// sourceRule is one source alert: a figure of the reading against its
// threshold.
type sourceRule struct {
	kind, unit, what string
	figure           func(*capturev1.GetSlotHealthResponse) int64
	eval             thresholdEvaluator[int64]
	sink             *alertSink
}

// sourceWatch runs a task's source alerts; nil when none is configured.
type sourceWatch struct {
	rules  []*sourceRule
	every  time.Duration
	hold   time.Duration
	read   func(context.Context) (*capturev1.GetSlotHealthResponse, error)
	logger log.Logger
}

func (a *Activities) sourceWatch(ctx context.Context, in *taskv1.IncrementalActivityInput) *sourceWatch {
	req := &capturev1.GetSlotHealthRequest{Source: in.GetSpec().GetSource(), SlotName: in.GetSlotName()}
	read := func(ctx context.Context) (*capturev1.GetSlotHealthResponse, error) {
		ctx, cancel := context.WithTimeout(ctx, slotHealthTimeout)
		defer cancel()
		return a.Capture.GetSlotHealth(ctx, req)
	}
	w := newSourceWatch(ctx, activity.GetLogger(ctx), a.httpClient(), in.GetTaskId(), in.GetSpec(), read)
	for _, r := range w.ruleList() {
		r.sink.metrics = a.Metrics
	}
	return w
}

func newSourceWatch(ctx context.Context, logger log.Logger, client *http.Client, taskID string, spec *taskv1.TaskSpec,
	read func(context.Context) (*capturev1.GetSlotHealthResponse, error)) *sourceWatch {
	a := spec.GetAlerts()
	hold := time.Duration(a.GetSourceForSeconds()) * time.Second
	w := &sourceWatch{hold: hold, read: read, logger: logger,
		every: time.Duration(cmp.Or(a.GetSourceCheckSeconds(), taskapi.DefaultSourceCheckSeconds)) * time.Second}
	add := func(threshold int64, kind, unit, what string, figure func(*capturev1.GetSlotHealthResponse) int64) {
		if threshold > 0 {
			w.rules = append(w.rules, &sourceRule{kind: kind, unit: unit, what: what, figure: figure,
				eval: thresholdEvaluator[int64]{threshold: threshold, hold: hold}, sink: newAlertSink(ctx, logger, client, taskID, spec)})
		}
	}
	add(int64(a.GetRetainedWalThresholdMegabytes())<<20, taskapi.AlertKindRetainedWAL, "bytes", "retained WAL",
		(*capturev1.GetSlotHealthResponse).GetRetainedWalBytes)
	add(int64(a.GetSlotLagThresholdMegabytes())<<20, taskapi.AlertKindSlotLag, "bytes", "slot lag",
		(*capturev1.GetSlotHealthResponse).GetLagBytes)
	add(int64(a.GetTransactionThresholdSeconds()), taskapi.AlertKindLongTransaction, "seconds", "the oldest open transaction",
		(*capturev1.GetSlotHealthResponse).GetOldestTransactionSeconds)
	if len(w.rules) == 0 {
		return nil
	}
	return w
}

func (w *sourceWatch) ruleList() []*sourceRule {
	if w == nil {
		return nil
	}
	return w.rules
}

// run reads and judges until ctx ends.
func (w *sourceWatch) run(ctx context.Context) {
	if w == nil {
		return
	}
	tick := time.NewTicker(w.every)
	defer tick.Stop()
	failing := false
	for {
		h, err := w.read(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				w.logger.Warn("cannot read the slot for the source alerts; they wait for the next reading", "error", err)
			}
			failing = true
		default:
			failing = false
			w.observe(h, time.Now())
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// observe judges one reading; transitions go to each rule's sink.
func (w *sourceWatch) observe(h *capturev1.GetSlotHealthResponse, now time.Time) {
	for _, r := range w.rules {
		v := r.figure(h)
		state, changed := r.eval.Observe(v, now)
		if !changed {
			continue
		}
		msg := fmt.Sprintf("%s %s is above %s", r.what, r.format(v), r.format(r.eval.threshold))
		if w.hold > 0 {
			msg = fmt.Sprintf("%s %s has stayed above %s for %s", r.what, r.format(v), r.format(r.eval.threshold), w.hold)
		}
		if state == taskapi.AlertResolved {
			msg = fmt.Sprintf("%s %s is back at or below %s", r.what, r.format(v), r.format(r.eval.threshold))
		}
		r.sink.emit(WebhookAlert{Kind: r.kind, State: state, Message: msg, At: now.UTC().Format(time.RFC3339Nano),
			Value: v, Threshold: r.eval.threshold, Unit: r.unit})
	}
}

func (r *sourceRule) format(v int64) string {
	if r.unit == "bytes" {
		return fmt.Sprintf("%.1f MB", float64(v)/(1<<20))
	}
	return (time.Duration(v) * time.Second).String()
}
