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

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	"github.com/ferry-cdc/ferry/platform/config"
	"github.com/ferry-cdc/ferry/platform/grpccodec"
	"github.com/ferry-cdc/ferry/platform/taskapi"
	"github.com/ferry-cdc/ferry/platform/telemetry"
	"github.com/ferry-cdc/ferry/workflows/activities"
	"github.com/ferry-cdc/ferry/workflows/task"
)

// Config is everything the worker needs, read once at start.
type Config struct {
	TemporalAddress   string
	TemporalNamespace string
	TaskQueue         string
	CatalogAddress    string
	CaptureAddress    string
	DeliveryAddress   string
	// MetricsAddr serves Prometheus /metrics; empty: not served.
	MetricsAddr string
	// PayloadKeyFile seals every workflow payload (taskapi.EncryptionCodec);
	// empty leaves them in clear.
	PayloadKeyFile string
}

func loadConfig() Config {
	var c Config
	flag.StringVar(&c.TemporalAddress, "temporal", config.Env("FERRY_TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port")
	flag.StringVar(&c.TemporalNamespace, "namespace", config.Env("FERRY_TEMPORAL_NAMESPACE", "default"), "Temporal namespace")
	flag.StringVar(&c.TaskQueue, "task-queue", config.Env("FERRY_TASK_QUEUE", taskapi.DefaultTaskQueue), "Temporal task queue to poll")
	flag.StringVar(&c.CatalogAddress, "catalog", config.Env("FERRY_CATALOG_ADDRESS", "127.0.0.1:7401"), "catalog service host:port")
	flag.StringVar(&c.CaptureAddress, "capture", config.Env("FERRY_CAPTURE_ADDRESS", "127.0.0.1:7402"), "capture service host:port")
	flag.StringVar(&c.DeliveryAddress, "delivery", config.Env("FERRY_DELIVERY_ADDRESS", "127.0.0.1:7403"), "delivery service host:port")
	flag.StringVar(&c.MetricsAddr, "metrics-addr", config.EnvOrOff("FERRY_WORKER_METRICS_ADDR", "127.0.0.1:9404"), "host:port to serve Prometheus /metrics on; empty disables it (env FERRY_WORKER_METRICS_ADDR)")
	flag.StringVar(&c.PayloadKeyFile, "payload-key-file", config.Env("FERRY_PAYLOAD_KEY_FILE", ""), "AES-256 key (32 bytes, raw or hex) that seals workflow payloads in Temporal; the control API needs the same key")
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
		conn, err := grpc.NewClient(addr, append(tel.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpccodec.DialOption())...)
		if err != nil {
			return fmt.Errorf("%s client for %s: %w", name, addr, err)
		}
		conns[name] = conn
	}
	codec, err := taskapi.PayloadCodec(cfg.PayloadKeyFile)
	if err != nil {
		return err
	}
	tc, err := client.Dial(client.Options{
		HostPort: cfg.TemporalAddress, Namespace: cfg.TemporalNamespace, Logger: logger, DataConverter: taskapi.DataConverterWith(codec),
		FailureConverter: taskapi.FailureConverterWith(codec),
	})
	if err != nil {
		return fmt.Errorf("connecting to Temporal at %s: %w", cfg.TemporalAddress, err)
	}
	defer tc.Close()

	w := worker.New(tc, cfg.TaskQueue, worker.Options{
		// Cancellation reaches an activity only with a heartbeat response, so
		// the throttle bounds how fast pause and stop take effect.
		MaxHeartbeatThrottleInterval: activities.HeartbeatThrottle,
		Interceptors:                 []interceptor.WorkerInterceptor{metrics.Interceptor()},
	})
	w.RegisterWorkflowWithOptions(task.TaskWorkflow, workflow.RegisterOptions{Name: taskapi.WorkflowName})
	w.RegisterActivity(&activities.Activities{
		Catalog:  catalogv1.NewCatalogServiceClient(conns["catalog"]),
		Capture:  capturev1.NewCaptureServiceClient(conns["capture"]),
		Delivery: deliveryv1.NewDeliveryServiceClient(conns["delivery"]),
		HTTP:     &http.Client{Timeout: activities.WebhookTimeout},
		Metrics:  metrics,
	})
	logger.Info("worker starting", "temporal", cfg.TemporalAddress, "taskQueue", cfg.TaskQueue)
	return w.Run(interruptOn(ctx))
}

// interruptOn adapts a context to the worker's interrupt channel.
func interruptOn(ctx context.Context) <-chan any {
	ch := make(chan any, 1)
	go func() { <-ctx.Done(); ch <- struct{}{} }()
	return ch
}
