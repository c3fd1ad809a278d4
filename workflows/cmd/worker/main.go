// Command worker runs Ferry's Temporal worker: the TaskWorkflow and the
// activities that call the catalog, capture and delivery services.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/grpc"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	"github.com/ferry-cdc/ferry/platform/config"
	"github.com/ferry-cdc/ferry/platform/fleet"
	"github.com/ferry-cdc/ferry/platform/grpccodec"
	"github.com/ferry-cdc/ferry/platform/grpcsec"
	"github.com/ferry-cdc/ferry/platform/taskapi"
	"github.com/ferry-cdc/ferry/platform/telemetry"
	"github.com/ferry-cdc/ferry/workflows/activities"
	"github.com/ferry-cdc/ferry/workflows/task"
)

// Config is everything the worker needs, read once at start.
type Config struct {
	Temporal        taskapi.TemporalSettings
	CatalogAddress  string
	CaptureAddress  string
	DeliveryAddress string
	// MetricsAddr serves Prometheus /metrics; empty: not served.
	MetricsAddr string
	// Transport is mutual TLS with the services, or -insecure.
	Transport grpcsec.Settings
}

func loadConfig() Config {
	var c Config
	c.Temporal.Register(flag.CommandLine)
	flag.StringVar(&c.CatalogAddress, "catalog", config.Env("FERRY_CATALOG_ADDRESS", "127.0.0.1:7401"), "catalog service: host:port, or dns:///name:port or static:///a,b for several instances (env FERRY_CATALOG_ADDRESS)")
	flag.StringVar(&c.CaptureAddress, "capture", config.Env("FERRY_CAPTURE_ADDRESS", "127.0.0.1:7402"), "capture service: host:port, or dns:///name:port or static:///a,b for several instances (env FERRY_CAPTURE_ADDRESS)")
	flag.StringVar(&c.DeliveryAddress, "delivery", config.Env("FERRY_DELIVERY_ADDRESS", "127.0.0.1:7403"), "delivery service: host:port, or dns:///name:port or static:///a,b for several instances (env FERRY_DELIVERY_ADDRESS)")
	flag.StringVar(&c.MetricsAddr, "metrics-addr", config.EnvOrOff("FERRY_WORKER_METRICS_ADDR", "127.0.0.1:9404"), "host:port to serve Prometheus /metrics on; empty disables it (env FERRY_WORKER_METRICS_ADDR)")
	c.Transport.Register(flag.CommandLine)
	flag.Parse()
	return c
}

func main() {
	cfg := loadConfig()
	logger := slog.New(telemetry.LogHandler(slog.NewJSONHandler(os.Stderr, nil)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, logger); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	tel, err := telemetry.Start(ctx, telemetry.Config{Service: "ferry-worker", MetricsAddr: cfg.MetricsAddr, Logger: logger})
	if err != nil {
		return err
	}
	defer tel.Close()
	tel.SetGlobal()
	cfg.Transport.Logger = logger // hears of a rotated certificate that did not load
	metrics, err := activities.NewMetrics(tel.Meters)
	if err != nil {
		return err
	}
	conns := map[string]*grpc.ClientConn{}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for name, addr := range map[string]string{"catalog": cfg.CatalogAddress, "capture": cfg.CaptureAddress, "delivery": cfg.DeliveryAddress} {
		conn, err := fleet.Dial(addr, cfg.Transport, append(tel.DialOptions(), grpccodec.DialOption())...)
		if err != nil {
			return fmt.Errorf("%s client for %s: %w", name, addr, err)
		}
		conns[name] = conn
	}
	captures := fleet.NewMembers(cfg.CaptureAddress, cfg.Transport, append(tel.DialOptions(), grpccodec.DialOption())...)
	defer captures.Close()
	tc, _, err := cfg.Temporal.Dial(logger)
	if err != nil {
		return err
	}
	defer tc.Close()

	// A fatal error (the namespace gone, credentials refused) stops the
	// worker's polling; the process must then exit, to be restarted.
	fatal := make(chan error, 1)
	w := worker.New(tc, cfg.Temporal.TaskQueue, worker.Options{
		// Cancellation reaches an activity only with a heartbeat response, so
		// the throttle bounds how fast pause and stop take effect.
		MaxHeartbeatThrottleInterval: activities.HeartbeatThrottle,
		Interceptors:                 []interceptor.WorkerInterceptor{metrics.Interceptor()},
		OnFatalError: func(err error) {
			select {
			case fatal <- err:
			default: // the first is enough
			}
		},
	})
	w.RegisterWorkflowWithOptions(task.TaskWorkflow, workflow.RegisterOptions{Name: taskapi.WorkflowName})
	w.RegisterActivity(newActivities(conns, captures, metrics))
	logger.Info("worker starting", "temporal", cfg.Temporal.Address, "taskQueue", cfg.Temporal.TaskQueue)
	if err := w.Start(); err != nil {
		return fmt.Errorf("starting the worker on task queue %s: %w", cfg.Temporal.TaskQueue, err)
	}
	// Started means polling the task queue: what a readiness probe asks.
	tel.Handle("GET /healthz", http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write([]byte("SERVING\n")) }))
	defer w.Stop()
	select {
	case <-ctx.Done():
		return nil
	case err := <-fatal:
		return fmt.Errorf("the worker of task queue %s stopped: %w", cfg.Temporal.TaskQueue, err)
	}
}

// newActivities are the activities over clients of the services; captures
// reaches every capture instance, for throttle updates.
func newActivities(conns map[string]*grpc.ClientConn, captures *fleet.Members, metrics *activities.Metrics) *activities.Activities {
	return &activities.Activities{
		Catalog:  catalogv1.NewCatalogServiceClient(conns["catalog"]),
		Capture:  capturev1.NewCaptureServiceClient(conns["capture"]),
		Delivery: deliveryv1.NewDeliveryServiceClient(conns["delivery"]),
		CaptureInstances: func(ctx context.Context) ([]capturev1.CaptureServiceClient, error) {
			cs, err := captures.Conns(ctx)
			clients := make([]capturev1.CaptureServiceClient, len(cs))
			for i, c := range cs {
				clients[i] = capturev1.NewCaptureServiceClient(c)
			}
			return clients, err
		},
		HTTP:    &http.Client{Timeout: activities.WebhookTimeout},
		Metrics: metrics,
	}
}
