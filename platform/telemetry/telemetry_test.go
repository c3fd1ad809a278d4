package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	"github.com/ferry-cdc/ferry/platform/grpccodec"
)

const waitLimit = 10 * time.Second

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// scrape fetches /metrics once, with a deadline.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scraping %s: %v", addr, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s: %s", addr, resp.Status, body)
	}
	return string(body)
}

func TestMetricsEndpointServesRecordedMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tel, err := Start(ctx, Config{Service: "ferry-test", MetricsAddr: "127.0.0.1:0", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })

	rows, err := tel.Meters.Meter("test").Int64Counter("ferry_test_rows", metric.WithUnit("{row}"))
	if err != nil {
		t.Fatal(err)
	}
	rows.Add(ctx, 42, metric.WithAttributes(attribute.String("task_id", "orders-1")))

	body := scrape(t, tel.MetricsAddr())
	want := `ferry_test_rows_total{task_id="orders-1"} 42`
	if !strings.Contains(body, want+"\n") {
		t.Fatalf("scrape lacks %q:\n%s", want, body)
	}
	for _, also := range []string{`target_info{`, `service_name="ferry-test"`, "go_goroutines ", "process_cpu_seconds_total "} {
		if !strings.Contains(body, also) {
			t.Errorf("scrape lacks %q", also)
		}
	}

	// The endpoint goes away with its context.
	cancel()
	select {
	case <-tel.MetricsStopped():
	case <-time.After(waitLimit):
		t.Fatalf("the metrics endpoint still runs %s after its context ended", waitLimit)
	}
	if conn, err := net.DialTimeout("tcp", tel.MetricsAddr(), time.Second); err == nil {
		_ = conn.Close()
		t.Fatalf("%s still accepts connections after shutdown", tel.MetricsAddr())
	}
}

func TestMetricsAddressInUseFailsTheStart(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lis.Close() }()
	_, err = Start(context.Background(), Config{Service: "ferry-test", MetricsAddr: lis.Addr().String(), Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), lis.Addr().String()) || !strings.Contains(err.Error(), "metrics flag") {
		t.Fatalf("starting on a busy port: got %v, want an error naming the address and the flag", err)
	}
}

// recordingTelemetry is a Telemetry whose spans land in a recorder, as one
// process's would.
func recordingTelemetry() (*Telemetry, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	return &Telemetry{
		Meters:     sdkmetric.NewMeterProvider(),
		Tracers:    sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)),
		Propagator: propagation.TraceContext{},
	}, rec
}

// captureStub answers EnsureReplication and keeps the span its handler ran in.
type captureStub struct {
	capturev1.UnimplementedCaptureServiceServer
	seen chan trace.SpanContext
}

func (s *captureStub) EnsureReplication(ctx context.Context, _ *capturev1.EnsureReplicationRequest) (*capturev1.EnsureReplicationResponse, error) {
	s.seen <- trace.SpanContextFromContext(ctx)
	return &capturev1.EnsureReplicationResponse{SlotCreated: true}, nil
}

func spanOfKind(t *testing.T, rec *tracetest.SpanRecorder, kind trace.SpanKind) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range rec.Ended() {
		if s.SpanKind() == kind {
			return s
		}
	}
	t.Fatalf("no ended %v span among %d", kind, len(rec.Ended()))
	return nil
}

// The worker's call and the service's handling of it are one trace: the
// server span's parent is the client span, which is a child of the span the
// caller had open, across a real gRPC connection.
func TestTraceCrossesGRPC(t *testing.T) {
	serverTel, serverRec := recordingTelemetry()
	clientTel, clientRec := recordingTelemetry()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stub := &captureStub{seen: make(chan trace.SpanContext, 1)}
	srv := grpc.NewServer(append([]grpc.ServerOption{grpccodec.ServerOption()}, serverTel.ServerOptions()...)...)
	capturev1.RegisterCaptureServiceServer(srv, stub)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	cc, err := grpc.NewClient(lis.Addr().String(), append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpccodec.DialOption(),
	}, clientTel.DialOptions()...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cc.Close() }()

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	ctx, caller := clientTel.Tracers.Tracer("test").Start(ctx, "activity")
	if _, err := capturev1.NewCaptureServiceClient(cc).EnsureReplication(ctx, &capturev1.EnsureReplicationRequest{}); err != nil {
		t.Fatalf("EnsureReplication: %v", err)
	}
	caller.End()
	handlerSpan := <-stub.seen
	// The server span ends after the response is written; wait for it.
	srv.GracefulStop()

	client := spanOfKind(t, clientRec, trace.SpanKindClient)
	server := spanOfKind(t, serverRec, trace.SpanKindServer)
	if client.Parent().SpanID() != caller.SpanContext().SpanID() {
		t.Errorf("client span's parent is %s, want the caller's span %s", client.Parent().SpanID(), caller.SpanContext().SpanID())
	}
	if !server.Parent().IsRemote() || server.Parent().SpanID() != client.SpanContext().SpanID() {
		t.Errorf("server span's parent is %s (remote %t), want the client span %s", server.Parent().SpanID(), server.Parent().IsRemote(), client.SpanContext().SpanID())
	}
	if server.SpanContext().TraceID() != caller.SpanContext().TraceID() {
		t.Errorf("server trace %s, caller trace %s: not one trace", server.SpanContext().TraceID(), caller.SpanContext().TraceID())
	}
	if handlerSpan.SpanID() != server.SpanContext().SpanID() {
		t.Errorf("the handler ran in span %s, want the server span %s", handlerSpan.SpanID(), server.SpanContext().SpanID())
	}
	if server.Name() != "ferry.capture.v1.CaptureService/EnsureReplication" {
		t.Errorf("server span name %q", server.Name())
	}
}

func TestLogHandlerAddsTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil))).With("service", "test")
	tel, _ := recordingTelemetry()
	ctx, span := tel.Tracers.Tracer("test").Start(context.Background(), "op")
	defer span.End()
	logger.InfoContext(ctx, "with span")
	logger.Info("without span")

	dec := json.NewDecoder(&buf)
	var with, without map[string]any
	if err := errors.Join(dec.Decode(&with), dec.Decode(&without)); err != nil {
		t.Fatalf("decoding %q: %v", buf.String(), err)
	}
	if with["trace_id"] != span.SpanContext().TraceID().String() || with["span_id"] != span.SpanContext().SpanID().String() {
		t.Errorf("record with a span: %v, want trace %s span %s", with, span.SpanContext().TraceID(), span.SpanContext().SpanID())
	}
	if with["service"] != "test" {
		t.Errorf("WithAttrs lost: %v", with)
	}
	if _, ok := without["trace_id"]; ok {
		t.Errorf("record without a span got a trace_id: %v", without)
	}
}
