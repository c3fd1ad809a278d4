package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// Metrics are the worker's per-task metrics. A Temporal activity
// interceptor (Interceptor) records them from what Incremental and FullSync
// already expose: the error an attempt returns, classified as the workflow
// sees it, and every checkpoint the attempt heartbeats. The activities need
// no hooks of their own.
type Metrics struct {
	errors metric.Int64Counter
	acked  metric.Int64Counter
	alerts metric.Int64Counter

	mu        sync.Mutex
	confirmed map[string]int64 // task ID -> LSN its running incremental attempt confirmed
}

// Phases, the value of the phase attribute.
const (
	phaseIncremental = "incremental"
	phaseFullSync    = "full_sync"
)

// NewMetrics creates the instruments on mp.
func NewMetrics(mp metric.MeterProvider) (*Metrics, error) {
	meter := mp.Meter("github.com/ferry-cdc/ferry/workflows/activities")
	m := &Metrics{confirmed: map[string]int64{}}
	var err error
	if m.errors, err = meter.Int64Counter("ferry_task_errors",
		metric.WithDescription("Failed incremental and full-sync attempts, by the class that decides their retry window: connection, config or other."),
		metric.WithUnit("{error}")); err != nil {
		return nil, fmt.Errorf("creating ferry_task_errors: %w", err)
	}
	if m.acked, err = meter.Int64Counter("ferry_task_acked_rows",
		metric.WithDescription("Rows Kafka acknowledged, as the worker learned from delivery."),
		metric.WithUnit("{row}")); err != nil {
		return nil, fmt.Errorf("creating ferry_task_acked_rows: %w", err)
	}
	if m.alerts, err = meter.Int64Counter("ferry_task_alerts",
		metric.WithDescription("Alerts raised, by kind (task_failed, latency) and state (firing, resolved), whether or not a webhook took them."),
		metric.WithUnit("{alert}")); err != nil {
		return nil, fmt.Errorf("creating ferry_task_alerts: %w", err)
	}
	_, err = meter.Int64ObservableGauge("ferry_task_confirmed_lsn",
		metric.WithDescription("The LSN the task's running incremental attempt last confirmed to PostgreSQL (every change at or below it is in Kafka)."),
		metric.WithInt64Callback(m.observeConfirmed))
	if err != nil {
		return nil, fmt.Errorf("creating ferry_task_confirmed_lsn: %w", err)
	}
	return m, nil
}

// alert counts one alert; a nil Metrics counts nothing.
func (m *Metrics) alert(ctx context.Context, taskID, kind, state string) {
	if m == nil {
		return
	}
	m.alerts.Add(context.WithoutCancel(ctx), 1, metric.WithAttributes(
		attribute.String("task_id", taskID), attribute.String("kind", kind), attribute.String("state", state)))
}

func (m *Metrics) observeConfirmed(_ context.Context, o metric.Int64Observer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for task, lsn := range m.confirmed {
		o.Observe(lsn, metric.WithAttributes(attribute.String("task_id", task)))
	}
	return nil
}

// Interceptor records m for every activity the worker runs; pass it in
// worker.Options.Interceptors.
func (m *Metrics) Interceptor() interceptor.WorkerInterceptor { return &metricsInterceptor{m: m} }

type metricsInterceptor struct {
	interceptor.WorkerInterceptorBase
	m *Metrics
}

// InterceptActivity runs once per activity execution, so the state below
// is one attempt's.
func (w *metricsInterceptor) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &attemptMetrics{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}, m: w.m}
}

// attemptMetrics follows one Incremental or FullSync attempt; any other
// activity passes through untouched.
type attemptMetrics struct {
	interceptor.ActivityInboundInterceptorBase
	m *Metrics

	task, phase string
	attrs       metric.MeasurementOption // task_id and phase
	mu          sync.Mutex               // heartbeats come from several goroutines
	acked       uint64                   // acked rows the attempt reported so far
}

func (a *attemptMetrics) Init(outbound interceptor.ActivityOutboundInterceptor) error {
	return a.Next.Init(&heartbeatMetrics{ActivityOutboundInterceptorBase: interceptor.ActivityOutboundInterceptorBase{Next: outbound}, a: a})
}

func (a *attemptMetrics) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	if len(in.Args) > 0 {
		switch arg := in.Args[0].(type) {
		case *taskv1.IncrementalActivityInput:
			a.task, a.phase = arg.GetTaskId(), phaseIncremental
		case *taskv1.FullSyncActivityInput:
			a.task, a.phase = arg.GetTaskId(), phaseFullSync
		}
	}
	if a.phase == "" {
		return a.Next.ExecuteActivity(ctx, in)
	}
	a.attrs = metric.WithAttributeSet(attribute.NewSet(attribute.String("task_id", a.task), attribute.String("phase", a.phase)))
	res, err := a.Next.ExecuteActivity(ctx, in)
	if a.phase == phaseIncremental {
		// The attempt is over: its LSN is no longer being confirmed.
		a.m.mu.Lock()
		delete(a.m.confirmed, a.task)
		a.m.mu.Unlock()
	}
	if class := errorClass(err); class != "" {
		a.m.errors.Add(context.WithoutCancel(ctx), 1, metric.WithAttributes(
			attribute.String("task_id", a.task), attribute.String("phase", a.phase), attribute.String("class", class)))
	}
	return res, err
}

// errorClass names the retry class of an attempt's error as ClassifyRPC
// set it; "" for success and for cancellation, which pause and stop cause.
func errorClass(err error) string {
	var canceled *temporal.CanceledError
	if err == nil || errors.As(err, &canceled) || errors.Is(err, context.Canceled) {
		return ""
	}
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		switch app.Type() {
		case taskapi.ErrConnection:
			return "connection"
		case taskapi.ErrConfig:
			return "config"
		}
	}
	return "other"
}

// observe takes the progress an attempt heartbeats: a Checkpoint from
// Incremental, a FullSyncActivityResult from FullSync. Their acked counts
// grow from zero within one attempt; the counter gets the increase.
func (a *attemptMetrics) observe(ctx context.Context, details []any) {
	if a.phase == "" || len(details) == 0 {
		return
	}
	var acked uint64
	switch d := details[0].(type) {
	case *cdcv1.Checkpoint:
		acked = d.GetAckedEvents()
		a.m.mu.Lock()
		a.m.confirmed[a.task] = int64(d.GetConfirmedLsn())
		a.m.mu.Unlock()
	case *taskv1.FullSyncActivityResult:
		acked = d.GetAckedRows()
	default:
		return
	}
	a.mu.Lock()
	delta := acked - a.acked
	if acked < a.acked {
		delta = 0 // a count never goes back within an attempt; ignore rather than double count
	}
	a.acked = max(a.acked, acked)
	a.mu.Unlock()
	if delta > 0 {
		a.m.acked.Add(context.WithoutCancel(ctx), int64(delta), a.attrs)
	}
}

type heartbeatMetrics struct {
	interceptor.ActivityOutboundInterceptorBase
	a *attemptMetrics
}

func (h *heartbeatMetrics) RecordHeartbeat(ctx context.Context, details ...any) {
	h.a.observe(ctx, details)
	h.Next.RecordHeartbeat(ctx, details...)
}
