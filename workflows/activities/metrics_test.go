package activities

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// metricsEnv is an activity environment whose worker records Metrics into
// a reader the test collects from.
func metricsEnv(t *testing.T) (*testsuite.TestActivityEnvironment, *sdkmetric.ManualReader) {
	t.Helper()
	m, reader := newTestMetrics(t)
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{m.Interceptor()}})
	return env, reader
}

// newTestMetrics records Metrics into a reader the test collects from.
func newTestMetrics(t *testing.T) (*Metrics, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	m, err := NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	return m, reader
}

// point finds the value of metric name at exactly attrs; ok is false when
// there is none.
func point(t *testing.T, reader *sdkmetric.ManualReader, name string, attrs ...attribute.KeyValue) (int64, bool) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	want := attribute.NewSet(attrs...)
	for _, sm := range rm.ScopeMetrics {
		for _, md := range sm.Metrics {
			if md.Name != name {
				continue
			}
			var dps []metricdata.DataPoint[int64]
			switch data := md.Data.(type) {
			case metricdata.Sum[int64]:
				dps = data.DataPoints
			case metricdata.Gauge[int64]:
				dps = data.DataPoints
			}
			for _, dp := range dps {
				if dp.Attributes.Equals(&want) {
					return dp.Value, true
				}
			}
		}
	}
	return 0, false
}

// deliveryDown is a delivery service that cannot be reached.
type deliveryDown struct {
	deliveryv1.DeliveryServiceClient
}

func (deliveryDown) Replicate(context.Context, ...grpc.CallOption) (grpc.BidiStreamingClient[deliveryv1.ReplicateRequest, deliveryv1.ReplicateResponse], error) {
	return nil, status.Error(codes.Unavailable, "connection refused")
}

// A failed incremental attempt counts as the class the workflow retries it
// under: here the real activity, whose delivery is unreachable.
func TestMetricsCountFailedAttemptsByClass(t *testing.T) {
	env, reader := metricsEnv(t)
	env.RegisterActivity(&Activities{Delivery: deliveryDown{}})
	_, err := env.ExecuteActivity("Incremental", &taskv1.IncrementalActivityInput{TaskId: "orders"})
	if err == nil {
		t.Fatal("Incremental succeeded with delivery down")
	}
	got, ok := point(t, reader, "ferry_task_errors",
		attribute.String("task_id", "orders"), attribute.String("phase", phaseIncremental), attribute.String("class", "connection"))
	if !ok || got != 1 {
		t.Fatalf("ferry_task_errors{orders,incremental,connection} = %d (present %t), want 1", got, ok)
	}
}

// Heartbeated checkpoints feed the confirmed LSN gauge while the attempt
// runs and the acked-rows counter by their increase; a config error counts
// as config, and the gauge goes away with the attempt.
func TestMetricsFollowHeartbeatedCheckpoints(t *testing.T) {
	env, reader := metricsEnv(t)
	taskAttrs := []attribute.KeyValue{attribute.String("task_id", "t1")}
	sawLSN := int64(0)
	env.RegisterActivityWithOptions(func(ctx context.Context, in *taskv1.IncrementalActivityInput) error {
		activity.RecordHeartbeat(ctx, &cdcv1.Checkpoint{ConfirmedLsn: 100, AckedEvents: 5})
		activity.RecordHeartbeat(ctx, &cdcv1.Checkpoint{ConfirmedLsn: 250, AckedEvents: 12})
		activity.RecordHeartbeat(ctx, &cdcv1.Checkpoint{ConfirmedLsn: 250, AckedEvents: 12}) // the idle heartbeat repeats
		sawLSN, _ = point(t, reader, "ferry_task_confirmed_lsn", taskAttrs...)
		return ClassifyRPC("incremental sync", status.Error(codes.DataLoss, "slot dropped"))
	}, activity.RegisterOptions{Name: "Incremental"})
	if _, err := env.ExecuteActivity("Incremental", &taskv1.IncrementalActivityInput{TaskId: "t1"}); err == nil {
		t.Fatal("the activity's error was lost")
	}
	if sawLSN != 250 {
		t.Errorf("ferry_task_confirmed_lsn during the attempt = %d, want 250", sawLSN)
	}
	if _, ok := point(t, reader, "ferry_task_confirmed_lsn", taskAttrs...); ok {
		t.Error("ferry_task_confirmed_lsn still reported after the attempt ended")
	}
	if got, _ := point(t, reader, "ferry_task_acked_rows", attribute.String("task_id", "t1"), attribute.String("phase", phaseIncremental)); got != 12 {
		t.Errorf("ferry_task_acked_rows = %d, want 12", got)
	}
	if got, _ := point(t, reader, "ferry_task_errors", attribute.String("task_id", "t1"), attribute.String("phase", phaseIncremental), attribute.String("class", "config")); got != 1 {
		t.Errorf("ferry_task_errors{config} = %d, want 1", got)
	}
}

// Full sync's heartbeats count its acked rows; a cancelled attempt (pause
// or stop) is not an error.
func TestMetricsFullSyncRowsAndCancellation(t *testing.T) {
	env, reader := metricsEnv(t)
	env.RegisterActivityWithOptions(func(ctx context.Context, in *taskv1.FullSyncActivityInput) (*taskv1.FullSyncActivityResult, error) {
		activity.RecordHeartbeat(ctx, &taskv1.FullSyncActivityResult{AckedRows: 1000})
		activity.RecordHeartbeat(ctx, &taskv1.FullSyncActivityResult{AckedRows: 1500})
		return nil, ClassifyRPC("full sync", context.Canceled)
	}, activity.RegisterOptions{Name: "FullSync"})
	_, _ = env.ExecuteActivity("FullSync", &taskv1.FullSyncActivityInput{TaskId: "t2"})
	if got, _ := point(t, reader, "ferry_task_acked_rows", attribute.String("task_id", "t2"), attribute.String("phase", phaseFullSync)); got != 1500 {
		t.Errorf("ferry_task_acked_rows{full_sync} = %d, want 1500", got)
	}
	for _, class := range []string{"connection", "config", "other"} {
		if got, ok := point(t, reader, "ferry_task_errors", attribute.String("task_id", "t2"), attribute.String("phase", phaseFullSync), attribute.String("class", class)); ok {
			t.Errorf("a cancelled attempt counted as %s (%d)", class, got)
		}
	}
}

// Every alert is counted, by kind and state, webhook or not: the failure
// alert through the Alert activity, the latency one from the watch.
func TestMetricsCountAlerts(t *testing.T) {
	m, reader := newTestMetrics(t)
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	a := &Activities{Metrics: m}
	env.RegisterActivity(a)
	if _, err := env.ExecuteActivity(a.Alert, &taskv1.AlertActivityInput{TaskId: "t1", Kind: taskapi.AlertKindTaskFailed, Message: "gone",
		Rules: &taskv1.AlertRules{OnFailure: true}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := point(t, reader, "ferry_task_alerts", attribute.String("task_id", "t1"), attribute.String("kind", taskapi.AlertKindTaskFailed),
		attribute.String("state", taskapi.AlertFiring)); got != 1 {
		t.Errorf("task_failed alerts counted %d, want 1", got)
	}
	spec := &taskv1.TaskSpec{Alerts: &taskv1.AlertRules{LatencyThresholdSeconds: 1, LatencyForSeconds: 1}}
	w := newLatencyWatch(context.Background(), nil, nil, "t1", spec)
	w.sink.metrics, w.sink.logger = m, &recLogger{}
	now := time.Now()
	w.observe(3*time.Second, now)
	w.observe(3*time.Second, now.Add(2*time.Second))
	w.observe(0, now.Add(3*time.Second))
	for _, state := range []string{taskapi.AlertFiring, taskapi.AlertResolved} {
		if got, _ := point(t, reader, "ferry_task_alerts", attribute.String("task_id", "t1"), attribute.String("kind", taskapi.AlertKindLatency),
			attribute.String("state", state)); got != 1 {
			t.Errorf("latency %s alerts counted %d, want 1", state, got)
		}
	}
}
