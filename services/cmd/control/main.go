// Command control serves TaskService, the control API that creates and
// steers tasks on Temporal.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"

	"go.temporal.io/sdk/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/config"
	"github.com/ferry-cdc/ferry/platform/grpccodec"
	"github.com/ferry-cdc/ferry/platform/taskapi"
	"github.com/ferry-cdc/ferry/platform/telemetry"
	"github.com/ferry-cdc/ferry/services/control"
	"github.com/ferry-cdc/ferry/services/internal/grpcserver"
)

// Config is read once at start from flags, which default to the environment.
type Config struct {
	Listen            string
	TemporalAddress   string
	TemporalNamespace string
	TaskQueue         string
	CatalogAddress    string
	// MetricsAddr serves Prometheus /metrics; empty: not served.
	MetricsAddr string
}

func loadConfig() Config {
	var c Config
	flag.StringVar(&c.Listen, "listen", config.Env("FERRY_CONTROL_LISTEN", "127.0.0.1:7400"), "host:port to serve gRPC on")
	flag.StringVar(&c.TemporalAddress, "temporal", config.Env("FERRY_TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port")
	flag.StringVar(&c.TemporalNamespace, "namespace", config.Env("FERRY_TEMPORAL_NAMESPACE", "default"), "Temporal namespace")
	flag.StringVar(&c.TaskQueue, "task-queue", config.Env("FERRY_TASK_QUEUE", taskapi.DefaultTaskQueue), "Temporal task queue tasks run on")
	flag.StringVar(&c.CatalogAddress, "catalog", config.Env("FERRY_CATALOG_ADDRESS", "127.0.0.1:7401"), "catalog service host:port")
	flag.StringVar(&c.MetricsAddr, "metrics-addr", config.EnvOrOff("FERRY_CONTROL_METRICS_ADDR", "127.0.0.1:9400"), "host:port to serve Prometheus /metrics on; empty disables it (env FERRY_CONTROL_METRICS_ADDR)")
	flag.Parse()
	return c
}

func main() {
	cfg := loadConfig()
	logger := slog.New(telemetry.LogHandler(slog.NewJSONHandler(os.Stderr, nil)))
	if err := run(cfg, logger); err != nil {
		log.Fatal(err)
	}
}

func run(cfg Config, logger *slog.Logger) error {
	tel, err := telemetry.Start(context.Background(), telemetry.Config{Service: "ferry-control", MetricsAddr: cfg.MetricsAddr, Logger: logger})
	if err != nil {
		return err
	}
	defer tel.Close()
	tel.SetGlobal()
	tc, err := client.Dial(client.Options{HostPort: cfg.TemporalAddress, Namespace: cfg.TemporalNamespace, Logger: logger, DataConverter: taskapi.DataConverter()})
	if err != nil {
		return fmt.Errorf("connecting to Temporal at %s: %w", cfg.TemporalAddress, err)
	}
	defer tc.Close()
	cat, err := grpc.NewClient(cfg.CatalogAddress, append(tel.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpccodec.DialOption())...)
	if err != nil {
		return fmt.Errorf("catalog client for %s: %w", cfg.CatalogAddress, err)
	}
	defer func() { _ = cat.Close() }()
	srv := grpcserver.New("control", logger, tel.ServerOptions()...)
	taskv1.RegisterTaskServiceServer(srv, control.NewServer(tc, control.Options{TaskQueue: cfg.TaskQueue, Namespace: cfg.TemporalNamespace}, catalogv1.NewCatalogServiceClient(cat), logger))
	return srv.RunUntilSignal(cfg.Listen)
}
