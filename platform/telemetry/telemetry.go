// Package telemetry wires OpenTelemetry into a Ferry binary. Metrics are
// served in the Prometheus text format on /metrics; traces follow every gRPC
// call between Ferry's processes (W3C trace context in the call's metadata)
// and are exported over OTLP/gRPC only when the standard
// OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set.
// Without an exporter spans are still created and propagated, so a trace ID
// logged by one service finds the same call in the next one.
//
// Nothing here is global: the providers are handed to the code that records
// (SetGlobal installs them for libraries that only know otel's globals).
// The package lives in the platform module, like grpccodec, so that the
// services and the worker share it without depending on each other.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
)

// HTTP limits of the /metrics endpoint. A scrape is one small request, so
// anything slower than this is a stuck client or a stuck collection.
const (
	readHeaderTimeout = 5 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	// collectTimeout bounds one collection (observable callbacks included);
	// the scrape then gets 503 rather than hanging.
	collectTimeout = 20 * time.Second
	// shutdownTimeout bounds the wait for in-flight scrapes at exit.
	shutdownTimeout = 5 * time.Second
)

// Config says what to name the process and where to serve metrics.
type Config struct {
	// Service is service.name in traces and in target_info, e.g.
	// "ferry-capture". OTEL_SERVICE_NAME overrides it.
	Service string
	// MetricsAddr is the host:port serving /metrics. Empty: metrics are
	// still recorded, but nothing serves them.
	MetricsAddr string
	// Logger receives the endpoint's start and its errors.
	Logger *slog.Logger
}

// Telemetry holds one process's providers and its /metrics server.
type Telemetry struct {
	// Meters creates the instruments of every Ferry package.
	Meters *sdkmetric.MeterProvider
	// Tracers creates spans; otelgrpc uses it for every call.
	Tracers *sdktrace.TracerProvider
	// Propagator carries trace context (and baggage) across calls.
	Propagator propagation.TextMapPropagator

	logger *slog.Logger
	server *http.Server
	mux    *http.ServeMux
	addr   string
	served chan struct{} // closed once the HTTP server has stopped
}

// Start builds the providers and, with cfg.MetricsAddr set, serves /metrics
// until ctx ends. Call Shutdown at exit to flush the trace exporter.
func Start(ctx context.Context, cfg Config) (*Telemetry, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", cfg.Service)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil {
		return nil, fmt.Errorf("describing %s for telemetry: %w", cfg.Service, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Scope labels would repeat otel_scope_name on every series; the metric
	// names already say which package recorded them.
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("creating the Prometheus exporter: %w", err)
	}
	tp, err := newTracerProvider(ctx, res)
	if err != nil {
		return nil, err
	}
	t := &Telemetry{
		Meters:     sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res)),
		Tracers:    tp,
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		logger:     logger,
	}
	if cfg.MetricsAddr != "" {
		if err := t.serve(ctx, cfg.MetricsAddr, reg); err != nil {
			_ = t.Shutdown(context.WithoutCancel(ctx))
			return nil, err
		}
	}
	return t, nil
}

// otlpEnvs are the standard variables that name a trace collector.
var otlpEnvs = []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"}

// newTracerProvider exports over OTLP only when a collector is configured;
// otherwise spans are created and propagated but go nowhere, which costs
// little and keeps trace IDs consistent across services.
func newTracerProvider(ctx context.Context, res *resource.Resource) (*sdktrace.TracerProvider, error) {
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for _, env := range otlpEnvs {
		endpoint := os.Getenv(env)
		if endpoint == "" {
			continue
		}
		// The exporter reads the endpoint, headers, TLS and timeout from
		// the same standard variables.
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("creating the OTLP trace exporter for %s=%s: %w", env, endpoint, err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
		break
	}
	return sdktrace.NewTracerProvider(opts...), nil
}

// serve binds addr now, so a port in use fails the start with its cause,
// and serves until ctx ends.
func (t *Telemetry) serve(ctx context.Context, addr string, reg *prometheus.Registry) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s for /metrics: %w; choose a free address with the metrics flag, or set it empty to disable the endpoint", addr, err)
	}
	mux := http.NewServeMux()
	t.mux = mux
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(t.logger.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError, // one failing collector must not hide the rest
		Timeout:       collectTimeout,
	}))
	t.server = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readHeaderTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(t.logger.Handler(), slog.LevelWarn),
	}
	t.addr = lis.Addr().String()
	t.served = make(chan struct{})
	go func() {
		defer close(t.served)
		if err := t.server.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.logger.Error("metrics endpoint failed", "addr", t.addr, "error", err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			t.stopServer()
		case <-t.served:
		}
	}()
	t.logger.Info("serving metrics", "addr", t.addr, "path", "/metrics")
	return nil
}

// stopServer waits for in-flight scrapes, briefly.
func (t *Telemetry) stopServer() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := t.server.Shutdown(ctx); err != nil {
		_ = t.server.Close()
	}
}

// Handle serves h beside /metrics, when the metrics endpoint is served;
// /healthz lives there, where a probe needs no TLS certificate.
func (t *Telemetry) Handle(pattern string, h http.Handler) {
	if t.mux != nil {
		t.mux.Handle(pattern, h)
	}
}

// MetricsAddr is the address /metrics is served on (the bound port when the
// configured one was 0), or "" when the endpoint is off.
func (t *Telemetry) MetricsAddr() string { return t.addr }

// MetricsStopped is closed once the endpoint has stopped (at once when it
// was never started).
func (t *Telemetry) MetricsStopped() <-chan struct{} {
	if t.served == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return t.served
}

// SetGlobal installs the tracer provider and propagator as otel's globals,
// for libraries that take them from there. Call it from main only.
func (t *Telemetry) SetGlobal() {
	otel.SetTracerProvider(t.Tracers)
	otel.SetTextMapPropagator(t.Propagator)
}

// Shutdown stops the endpoint and flushes both providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t.server != nil {
		t.stopServer()
	}
	return errors.Join(t.Meters.Shutdown(ctx), t.Tracers.Shutdown(ctx))
}

// Close is Shutdown bounded by a few seconds, logging what failed: for a
// deferred call in main.
func (t *Telemetry) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		t.logger.Warn("flushing telemetry at exit failed", "error", err)
	}
}

// grpcOptions skip health checks and reflection, which would only add
// noise to the RPC metrics and traces.
func (t *Telemetry) grpcOptions() []otelgrpc.Option {
	return []otelgrpc.Option{
		otelgrpc.WithTracerProvider(t.Tracers),
		otelgrpc.WithMeterProvider(t.Meters),
		otelgrpc.WithPropagators(t.Propagator),
		otelgrpc.WithFilter(filters.None(filters.HealthCheck(), filters.ServicePrefix("grpc.reflection."))),
	}
}

// ServerOptions trace every call a gRPC server handles, continuing the
// caller's trace, and count them in rpc_server_call_duration_seconds.
func (t *Telemetry) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(t.grpcOptions()...))}
}

// DialOptions trace every call a gRPC client makes and send its trace
// context to the server.
func (t *Telemetry) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(t.grpcOptions()...))}
}
