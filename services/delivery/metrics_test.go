package delivery

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	"github.com/ferry-cdc/ferry/platform/grpccodec"
)

// startMeteredServer is startServer with Metrics recorded into a reader.
func startMeteredServer(t *testing.T) (deliveryv1.DeliveryServiceClient, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	m, err := NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	impl := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
	impl.Metrics = m
	gs := grpc.NewServer(grpccodec.ServerOption())
	deliveryv1.RegisterDeliveryServiceServer(gs, impl)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(impl.Wait)
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpccodec.DialOption())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return deliveryv1.NewDeliveryServiceClient(cc), reader
}

func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, md := range sm.Metrics {
			out[md.Name] = md.Data
		}
	}
	return out
}

func sumAt(data metricdata.Aggregation, attrs ...attribute.KeyValue) (int64, bool) {
	want := attribute.NewSet(attrs...)
	sum, _ := data.(metricdata.Sum[int64])
	for _, dp := range sum.DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp.Value, true
		}
	}
	return 0, false
}

// Rows Kafka acknowledged are counted by task and topic with their bytes,
// and their latency is measured from the source commit; full-sync rows
// count but have no latency.
func TestMetricsCountAckedRowsAndLatency(t *testing.T) {
	bootstrap := fakeKafka(t, 2, "orders")
	client, reader := startMeteredServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st := start(bootstrap, "orders", nil)
	task := st.GetTaskId()
	s := openSession(t, ctx, client, st)

	committed := time.Now().Add(-3 * time.Second)
	evs := []*cdcv1.ChangeEvent{insert(1, "a", 90), insert(2, "b", 91), insert(3, "c", 92)}
	for _, ev := range evs {
		ev.CommitTime = timestamppb.New(committed)
	}
	snap := insert(4, "d", 93)
	snap.Snapshot = true
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()}, Events: append(evs, snap), WatermarkLsn: 100})
	s.waitSafe(100, 20*time.Second)
	if _, err := s.finish(20 * time.Second); err != nil {
		t.Fatalf("stream ended with %v", err)
	}
	finished := time.Now()

	got := collect(t, reader)
	taskTopic := []attribute.KeyValue{attribute.String("task_id", task), attribute.String("topic", "orders")}
	if n, _ := sumAt(got["ferry_delivery_rows"], taskTopic...); n != 4 {
		t.Errorf("ferry_delivery_rows = %d, want 4", n)
	}
	if n, _ := sumAt(got["ferry_delivery_bytes"], taskTopic...); n < 4*20 {
		t.Errorf("ferry_delivery_bytes = %d for 4 Canal JSON messages", n)
	}
	hist, _ := got["ferry_delivery_latency_seconds"].(metricdata.Histogram[float64])
	want := attribute.NewSet(attribute.String("task_id", task))
	var found bool
	for _, dp := range hist.DataPoints {
		if !dp.Attributes.Equals(&want) {
			continue
		}
		found = true
		if dp.Count != 3 {
			t.Errorf("latency samples %d, want 3 (the snapshot row has none)", dp.Count)
		}
		maxLat := finished.Sub(committed).Seconds()
		if lo, _ := dp.Min.Value(); lo < 3 {
			t.Errorf("shortest latency %.3fs, but the rows committed 3 s before they were sent", lo)
		}
		if hi, _ := dp.Max.Value(); hi > maxLat {
			t.Errorf("longest latency %.3fs is beyond the %.3fs since the commit", hi, maxLat)
		}
	}
	if !found {
		t.Errorf("no latency histogram for task %s: %v", task, hist.DataPoints)
	}
	if _, ok := got["ferry_delivery_errors"]; ok {
		t.Errorf("a clean stream counted errors: %v", got["ferry_delivery_errors"])
	}
}

// A stream that fails is counted by the class of its status.
func TestMetricsCountFailedStreamsByClass(t *testing.T) {
	bootstrap := fakeKafka(t, 1, "other")
	client, reader := startMeteredServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := start(bootstrap, "missing", nil)
	s := openSession(t, ctx, client, st)
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()}, Events: []*cdcv1.ChangeEvent{insert(1, "a", 11)}, WatermarkLsn: 20})
	if _, err := s.drain(20 * time.Second); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("got %v, want FailedPrecondition for the missing topic", err)
	}
	// The handler counts before it returns the status the client just got.
	n, _ := sumAt(collect(t, reader)["ferry_delivery_errors"], attribute.String("task_id", st.GetTaskId()),
		attribute.String("class", "config"), attribute.String("code", codes.FailedPrecondition.String()))
	if n != 1 {
		t.Fatalf("ferry_delivery_errors{config,FailedPrecondition} = %d, want 1", n)
	}
}

// BenchmarkMetricsAcked is the cost metrics add to each acknowledged
// message, counted in bursts of 1,000 as delivery reports arrive.
func BenchmarkMetricsAcked(b *testing.B) {
	m, err := NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		commit int64
	}{{"row", time.Now().UnixMicro()}, {"snapshot-row", 0}} {
		b.Run(c.name, func(b *testing.B) {
			infos := make([]*msgInfo, 1000)
			for i := range infos {
				infos[i] = &msgInfo{topic: "orders", size: 300, commitMicros: c.commit}
			}
			b.ReportAllocs()
			for b.Loop() {
				m.ackedAll("task-1", infos, time.Now())
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(infos)), "ns/msg")
		})
	}
}
