package delivery

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

// Metrics are delivery's per-task metrics, recorded where Kafka's delivery
// reports are read (readEvents) and where a Deliver call ends. A nil
// *Metrics records nothing, so tests and tools may leave Server.Metrics
// unset.
//
// Rows and bytes are counted per burst of delivery reports, so they are
// plain atomic counters that observable counters read at collection; only
// the latency goes through the SDK on every message.
type Metrics struct {
	rows    metric.Int64ObservableCounter
	bytes   metric.Int64ObservableCounter
	latency metric.Float64Histogram
	errors  metric.Int64Counter

	// series holds one entry per (task, topic) and per (task, "") so that
	// the per-message path builds no attributes. A plain map: a sync.Map
	// would box every lookup's key.
	mu     sync.RWMutex
	series map[[2]string]*series
}

// series is one attribute set, its option slices made once (a variadic
// argument would allocate on every call) and its counts.
type series struct {
	attrs metric.MeasurementOption
	rec   []metric.RecordOption
	rows  atomic.Int64
	bytes atomic.Int64
}

// latencyBuckets span a healthy stream (milliseconds) to one stalled for
// minutes.
var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// NewMetrics creates delivery's instruments on mp.
func NewMetrics(mp metric.MeterProvider) (*Metrics, error) {
	meter := mp.Meter("github.com/ferry-cdc/ferry/services/delivery")
	m := &Metrics{series: map[[2]string]*series{}}
	var err error
	if m.rows, err = meter.Int64ObservableCounter("ferry_delivery_rows", metric.WithUnit("{row}"),
		metric.WithDescription("Messages Kafka acknowledged, by task and topic (DDL and dead-letter topics included).")); err != nil {
		return nil, fmt.Errorf("creating ferry_delivery_rows: %w", err)
	}
	if m.bytes, err = meter.Int64ObservableCounter("ferry_delivery_bytes", metric.WithUnit("By"),
		metric.WithDescription("Key and value bytes of the messages Kafka acknowledged, by task and topic.")); err != nil {
		return nil, fmt.Errorf("creating ferry_delivery_bytes: %w", err)
	}
	if m.latency, err = meter.Float64Histogram("ferry_delivery_latency_seconds", metric.WithUnit("s"),
		metric.WithDescription("From a change's commit on the source to Kafka's acknowledgement of its message (full-sync rows excluded), by task."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...)); err != nil {
		return nil, fmt.Errorf("creating ferry_delivery_latency_seconds: %w", err)
	}
	if m.errors, err = meter.Int64Counter("ferry_delivery_errors", metric.WithUnit("{error}"),
		metric.WithDescription("Deliver calls that failed, by task, class (connection, auth, config, data, other) and gRPC code.")); err != nil {
		return nil, fmt.Errorf("creating ferry_delivery_errors: %w", err)
	}
	if _, err := meter.RegisterCallback(m.observe, m.rows, m.bytes); err != nil {
		return nil, fmt.Errorf("registering delivery's counters: %w", err)
	}
	return m, nil
}

func (m *Metrics) observe(_ context.Context, o metric.Observer) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for key, s := range m.series {
		if key[1] == "" {
			continue // the task's own series carries only the latency
		}
		o.ObserveInt64(m.rows, s.rows.Load(), s.attrs)
		o.ObserveInt64(m.bytes, s.bytes.Load(), s.attrs)
	}
	return nil
}

// seriesOf returns the series of task and topic ("" for the task alone).
func (m *Metrics) seriesOf(task, topic string) *series {
	key := [2]string{task, topic}
	m.mu.RLock()
	s, ok := m.series[key]
	m.mu.RUnlock()
	if ok {
		return s
	}
	kv := []attribute.KeyValue{attribute.String("task_id", task)}
	if topic != "" {
		kv = append(kv, attribute.String("topic", topic))
	}
	opt := metric.WithAttributeSet(attribute.NewSet(kv...))
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.series[key]; ok {
		return s
	}
	s = &series{attrs: opt, rec: []metric.RecordOption{opt}}
	m.series[key] = s
	return s
}

// ackedAll records messages Kafka acknowledged at now: a burst of delivery
// reports, mostly for one topic, so the series is looked up once per run
// of equal topics rather than per message.
func (m *Metrics) ackedAll(task string, infos []*msgInfo, now time.Time) {
	if m == nil || len(infos) == 0 {
		return
	}
	nowMicros := now.UnixMicro()
	var lat *series
	for i := 0; i < len(infos); {
		topic := infos[i].topic
		var rows, bytes int64
		for ; i < len(infos) && infos[i].topic == topic; i++ {
			rows++
			bytes += int64(infos[i].size)
			if c := infos[i].commitMicros; c > 0 {
				if lat == nil {
					lat = m.seriesOf(task, "")
				}
				// No span rides on this context: an exemplar per message
				// is not worth it. Clocks may disagree slightly, hence
				// the floor.
				m.latency.Record(context.Background(), max(float64(nowMicros-c)/1e6, 0), lat.rec...)
			}
		}
		s := m.seriesOf(task, topic)
		s.rows.Add(rows)
		s.bytes.Add(bytes)
	}
}

// commitMicros is when ev's transaction committed, in Unix microseconds;
// zero for full-sync rows, whose commit time is the snapshot's.
func commitMicros(ev *cdcv1.ChangeEvent) int64 {
	ct := ev.GetCommitTime()
	if ev.GetSnapshot() || ct == nil {
		return 0
	}
	return ct.GetSeconds()*1_000_000 + int64(ct.GetNanos()/1_000)
}

// countError counts a Deliver call that ended with err by its class, and
// returns err. A cancelled call (the worker pausing or stopping) is no
// error.
func (m *Metrics) countError(task string, err error) error {
	if m == nil || err == nil {
		return err
	}
	code := status.Code(err)
	class := errorClass(code)
	if class == "" {
		return err
	}
	m.errors.Add(context.Background(), 1, metric.WithAttributes(
		attribute.String("task_id", task), attribute.String("class", class), attribute.String("code", code.String())))
	return err
}

// errorClass groups the codes of the package documentation by what fixes
// them.
func errorClass(code codes.Code) string {
	switch code {
	case codes.OK, codes.Canceled:
		return ""
	case codes.Unavailable, codes.DeadlineExceeded:
		return "connection"
	case codes.Unauthenticated, codes.PermissionDenied:
		return "auth"
	case codes.FailedPrecondition:
		return "config"
	case codes.InvalidArgument:
		return "data"
	default:
		return "other"
	}
}
