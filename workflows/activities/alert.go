package activities

// Alerts: a task's AlertRules send a webhook when the task fails (the
// workflow runs the Alert activity) and when its end-to-end latency stays
// above a threshold (the incremental activity watches the latency delivery
// reports with every safe LSN and posts from the worker directly).
//
// # Webhook body
//
// Every alert is one HTTP POST of a JSON object (Content-Type
// application/json) to alerts.webhook_url:
//
//	{
//	  "task_id": "orders-sync",
//	  "task_name": "Orders to Kafka",
//	  "kind": "latency",            // or "task_failed", "retained_wal", "slot_lag", "long_transaction"
//	  "state": "firing",            // or "resolved" (all kinds but task_failed)
//	  "message": "end-to-end latency 42.5s has stayed above 30s for 60s",
//	  "at": "2025-01-02T03:04:05.123456789Z",   // RFC 3339, nanoseconds
//	  "latency_ms": 42500,          // latency alerts; 0 otherwise
//	  "threshold_seconds": 30,      // latency alerts; 0 otherwise
//	  "value": 0,                   // source alerts: the reading, in unit; left out otherwise
//	  "threshold": 0,               // source alerts: the threshold, in unit
//	  "unit": ""                    // source alerts: "bytes" or "seconds"
//	}
//
// Any 2xx answer is success. Connection errors and 5xx answers are retried
// (webhookAttempts in all, with a short backoff); other answers fail at once
// with the URL and status, since repeating the request cannot change them.
// Each attempt has WebhookTimeout.
//
// # Latency
//
// Latency is measured per safe LSN delivery reports: the source commit time
// of the newest change it made safe against when Kafka acknowledged that
// change (delivery's clock; the source's clock skew shifts it, negative
// values count as 0). It is not "now minus the last commit": a stream with
// nothing to send is not late. When the safe LSN moves over idle watermarks
// alone (capture's keepalives, sent at least every heartbeat_seconds of an
// idle source), the latency is 0, so an idle stream has latency 0 and a
// firing alert resolves. While no acknowledgement arrives at all (Kafka
// stalled), the latency is not updated; a stall that lasts fails the
// delivery stream, which the failure alert covers.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// WebhookTimeout bounds one webhook request.
const WebhookTimeout = 5 * time.Second

const (
	webhookAttempts = 3
	webhookBackoff  = 250 * time.Millisecond // doubled after each attempt
)

// WebhookAlert is the JSON body of every webhook request (see the file
// comment).
type WebhookAlert struct {
	TaskID           string `json:"task_id"`
	TaskName         string `json:"task_name"`
	Kind             string `json:"kind"`
	State            string `json:"state"`
	Message          string `json:"message"`
	At               string `json:"at"`
	LatencyMs        uint64 `json:"latency_ms"`
	ThresholdSeconds uint32 `json:"threshold_seconds"`
	Value            int64  `json:"value,omitempty"`
	Threshold        int64  `json:"threshold,omitempty"`
	Unit             string `json:"unit,omitempty"`
}

// permanentError is a webhook failure that retrying cannot change.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// PostAlert posts alert to the webhook at rawURL (see the file comment for
// retries). Errors name the URL with any password redacted.
func PostAlert(ctx context.Context, client *http.Client, rawURL string, alert WebhookAlert) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return permanentError{fmt.Errorf("alerts.webhook_url: %w; set it to the full URL of the webhook, like https://hooks.example.com/ferry", err)}
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return permanentError{fmt.Errorf("alerts.webhook_url %s is not an http(s) URL with a host; set it to the full URL of the webhook, like https://hooks.example.com/ferry", u.Redacted())}
	}
	body, err := json.Marshal(alert)
	if err != nil {
		return fmt.Errorf("encoding the %s alert of task %s: %w", alert.Kind, alert.TaskID, err)
	}
	backoff := webhookBackoff
	for attempt := 1; ; attempt++ {
		err := postOnce(ctx, client, u, body)
		var perm permanentError
		if err == nil || errors.As(err, &perm) || ctx.Err() != nil {
			return err
		}
		if attempt == webhookAttempts {
			return fmt.Errorf("%w (gave up after %d attempts)", err, attempt)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (retry abandoned: %w)", err, ctx.Err())
		case <-t.C:
		}
		backoff *= 2
	}
}

// postOnce makes one attempt. A 2xx answer is nil, any other answer but
// 5xx a permanentError.
func postOnce(ctx context.Context, client *http.Client, u *url.URL, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return permanentError{fmt.Errorf("building the request to webhook %s: %w", u.Redacted(), err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ferry-alerts")
	resp, err := client.Do(req)
	if err != nil {
		// url.Error repeats the URL; the message names it once.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("posting to webhook %s: %w", u.Redacted(), err)
	}
	defer func() { _ = resp.Body.Close() }()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	// Drain a little more so that the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("webhook %s answered %s: %s", u.Redacted(), resp.Status, strings.TrimSpace(string(head)))
	if resp.StatusCode >= 500 {
		return err
	}
	return permanentError{err}
}

// httpClient is the client for webhooks; without one set, a default with
// WebhookTimeout.
func (a *Activities) httpClient() *http.Client {
	if a.HTTP != nil {
		return a.HTTP
	}
	return &http.Client{Timeout: WebhookTimeout}
}

// Alert logs one alert of the task and posts it to the task's webhook when
// one is set. A webhook that refuses the alert (4xx) or a URL that cannot
// work fails the activity without retry; connection errors and 5xx answers
// are retried by PostAlert and then left to the activity's retry policy.
func (a *Activities) Alert(ctx context.Context, in *taskv1.AlertActivityInput) error {
	kind := in.GetKind()
	if kind != taskapi.AlertKindTaskFailed && kind != taskapi.AlertKindLatency {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("alert kind %q of task %s is not %q or %q", kind, in.GetTaskId(), taskapi.AlertKindTaskFailed, taskapi.AlertKindLatency), taskapi.ErrConfig, nil)
	}
	at := time.Now()
	if in.GetAt() != nil {
		at = in.GetAt().AsTime()
	}
	alert := WebhookAlert{
		TaskID: in.GetTaskId(), TaskName: in.GetTaskName(), Kind: kind, State: taskapi.AlertFiring,
		Message: in.GetMessage(), At: at.UTC().Format(time.RFC3339Nano),
	}
	if kind == taskapi.AlertKindLatency {
		alert.ThresholdSeconds = in.GetRules().GetLatencyThresholdSeconds()
	}
	hook := in.GetRules().GetWebhookUrl()
	a.Metrics.alert(ctx, alert.TaskID, kind, alert.State)
	activity.GetLogger(ctx).Warn("task alert", "taskID", alert.TaskID, "taskName", alert.TaskName,
		"kind", kind, "message", alert.Message, "at", alert.At, "webhook", hook != "")
	if hook == "" {
		return nil
	}
	if err := PostAlert(ctx, a.httpClient(), hook, alert); err != nil {
		var perm permanentError
		return temporal.NewApplicationErrorWithOptions(fmt.Sprintf("sending the %s alert of task %s: %v", kind, alert.TaskID, err),
			taskapi.ErrConfig, temporal.ApplicationErrorOptions{NonRetryable: errors.As(err, &perm)})
	}
	return nil
}

// ackLatency is the end-to-end latency an ack reports (see the file
// comment): 0 for an ack without times, whose safe LSN moved over idle
// watermarks alone.
func ackLatency(ack *deliveryv1.DeliverResponse) time.Duration {
	commit, acked := ack.GetSafeCommitTimeMicros(), ack.GetSafeAckedTimeMicros()
	if commit <= 0 || acked <= commit {
		return 0
	}
	return time.Duration(acked-commit) * time.Microsecond
}

// thresholdEvaluator turns samples into alert transitions: firing once the
// value has stayed above threshold in every sample for hold, resolved at the
// first sample at or below threshold after that. It is pure: time is
// whatever the caller says.
type thresholdEvaluator[T cmp.Ordered] struct {
	threshold  T
	hold       time.Duration
	aboveSince time.Time // first sample of the current run above; zero when not above
	firing     bool
}

// latencyEvaluator judges end-to-end latency.
type latencyEvaluator = thresholdEvaluator[time.Duration]

// Observe takes one sample and returns the state it moved the alert to, if
// it moved it.
func (e *thresholdEvaluator[T]) Observe(v T, now time.Time) (state string, changed bool) {
	if v <= e.threshold {
		e.aboveSince = time.Time{}
		if e.firing {
			e.firing = false
			return taskapi.AlertResolved, true
		}
		return "", false
	}
	if e.aboveSince.IsZero() {
		e.aboveSince = now
	}
	if !e.firing && now.Sub(e.aboveSince) >= e.hold {
		e.firing = true
		return taskapi.AlertFiring, true
	}
	return "", false
}

// alertSink is where one kind of a task's alert goes: the alert metric, the
// worker's log and, with a webhook, a notifier of its own, so that alerts
// of different kinds never supersede each other while one is being posted.
type alertSink struct {
	ctx              context.Context
	taskID, taskName string
	logger           log.Logger
	metrics          *Metrics
	notify           *alertNotifier // nil without a webhook
}

func newAlertSink(ctx context.Context, logger log.Logger, client *http.Client, taskID string, spec *taskv1.TaskSpec) *alertSink {
	s := &alertSink{ctx: ctx, taskID: taskID, taskName: spec.GetName(), logger: logger}
	if u := spec.GetAlerts().GetWebhookUrl(); u != "" {
		s.notify = &alertNotifier{ctx: ctx, client: client, url: u, logger: logger}
	}
	return s
}

// emit counts, logs and posts one transition, without blocking the caller.
func (s *alertSink) emit(alert WebhookAlert) {
	alert.TaskID, alert.TaskName = s.taskID, s.taskName
	s.metrics.alert(s.ctx, s.taskID, alert.Kind, alert.State)
	s.logger.Warn("task alert", "taskID", s.taskID, "taskName", s.taskName, "kind", alert.Kind,
		"state", alert.State, "message", alert.Message)
	if s.notify != nil {
		s.notify.send(alert)
	}
}

// latencyWatch runs a task's latency alert inside the incremental activity.
// A nil *latencyWatch (no latency alert configured) ignores samples.
type latencyWatch struct {
	eval  latencyEvaluator
	rules *taskv1.AlertRules
	sink  *alertSink
}

// latencyWatch builds the watch for an incremental attempt, nil when the
// task has no latency alert.
func (a *Activities) latencyWatch(ctx context.Context, in *taskv1.IncrementalActivityInput) *latencyWatch {
	w := newLatencyWatch(ctx, activity.GetLogger(ctx), a.httpClient(), in.GetTaskId(), in.GetSpec())
	if w != nil {
		w.sink.metrics = a.Metrics
	}
	return w
}

// newLatencyWatch returns nil when spec has no latency alert. Webhooks go
// out until ctx ends.
func newLatencyWatch(ctx context.Context, logger log.Logger, client *http.Client, taskID string, spec *taskv1.TaskSpec) *latencyWatch {
	rules := spec.GetAlerts()
	if rules.GetLatencyThresholdSeconds() == 0 {
		return nil
	}
	return &latencyWatch{
		eval: latencyEvaluator{
			threshold: time.Duration(rules.GetLatencyThresholdSeconds()) * time.Second,
			hold:      time.Duration(rules.GetLatencyForSeconds()) * time.Second,
		},
		rules: rules, sink: newAlertSink(ctx, logger, client, taskID, spec),
	}
}

// observe feeds one latency sample; a transition is logged and, with a
// webhook, posted without blocking the caller.
func (w *latencyWatch) observe(latency time.Duration, now time.Time) {
	if w == nil {
		return
	}
	state, changed := w.eval.Observe(latency, now)
	if !changed {
		return
	}
	lat := latency.Round(time.Millisecond)
	msg := fmt.Sprintf("end-to-end latency %s has stayed above %ds for %ds", lat, w.rules.GetLatencyThresholdSeconds(), w.rules.GetLatencyForSeconds())
	if state == taskapi.AlertResolved {
		msg = fmt.Sprintf("end-to-end latency %s is back at or below %ds", lat, w.rules.GetLatencyThresholdSeconds())
	}
	w.sink.emit(WebhookAlert{
		Kind: taskapi.AlertKindLatency, State: state, Message: msg,
		At: now.UTC().Format(time.RFC3339Nano), LatencyMs: uint64(latency.Milliseconds()),
		ThresholdSeconds: w.rules.GetLatencyThresholdSeconds(),
	})
}

// alertNotifier posts alerts from one goroutine at a time, never blocking
// the sender: an alert that arrives while another is being posted waits in
// a single slot, replacing (and logging) any older one still waiting there.
// So at most one request is in flight, and the webhook always ends up told
// the latest state, even when a resolve follows a fire while the fire is
// still being retried.
type alertNotifier struct {
	ctx    context.Context
	client *http.Client
	url    string
	logger log.Logger

	mu      sync.Mutex
	busy    bool
	pending *WebhookAlert
}

func (n *alertNotifier) send(alert WebhookAlert) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.busy {
		if n.pending != nil {
			n.logger.Warn("alert superseded before its webhook was sent", "taskID", n.pending.TaskID,
				"kind", n.pending.Kind, "state", n.pending.State, "by", alert.State)
		}
		n.pending = &alert
		return
	}
	n.busy = true
	go n.run(alert)
}

func (n *alertNotifier) run(alert WebhookAlert) {
	for {
		if err := PostAlert(n.ctx, n.client, n.url, alert); err != nil {
			n.logger.Warn("sending an alert failed", "taskID", alert.TaskID, "kind", alert.Kind, "state", alert.State, "error", err)
		}
		n.mu.Lock()
		next := n.pending
		n.pending = nil
		if next == nil {
			n.busy = false
			n.mu.Unlock()
			return
		}
		n.mu.Unlock()
		alert = *next
	}
}
