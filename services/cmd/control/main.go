// Command control serves TaskService, the control API that creates and
// steers tasks on Temporal.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
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
	// PayloadKeyFile: the worker's key, to read and write sealed payloads.
	PayloadKeyFile string
	// CodecAddr serves the codec the Temporal UI and CLI decode sealed
	// payloads with; empty: not served. CodecOrigins may call it from a
	// browser (the Temporal UI's origin).
	CodecAddr, CodecOrigins string
}

func loadConfig() Config {
	var c Config
	flag.StringVar(&c.Listen, "listen", config.Env("FERRY_CONTROL_LISTEN", "127.0.0.1:7400"), "host:port to serve gRPC on")
	flag.StringVar(&c.TemporalAddress, "temporal", config.Env("FERRY_TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port")
	flag.StringVar(&c.TemporalNamespace, "namespace", config.Env("FERRY_TEMPORAL_NAMESPACE", "default"), "Temporal namespace")
	flag.StringVar(&c.TaskQueue, "task-queue", config.Env("FERRY_TASK_QUEUE", taskapi.DefaultTaskQueue), "Temporal task queue tasks run on")
	flag.StringVar(&c.CatalogAddress, "catalog", config.Env("FERRY_CATALOG_ADDRESS", "127.0.0.1:7401"), "catalog service host:port")
	flag.StringVar(&c.MetricsAddr, "metrics-addr", config.EnvOrOff("FERRY_CONTROL_METRICS_ADDR", "127.0.0.1:9400"), "host:port to serve Prometheus /metrics on; empty disables it (env FERRY_CONTROL_METRICS_ADDR)")
	flag.StringVar(&c.PayloadKeyFile, "payload-key-file", config.Env("FERRY_PAYLOAD_KEY_FILE", ""), "AES-256 key that seals workflow payloads; the worker's key")
	flag.StringVar(&c.CodecAddr, "codec-addr", config.Env("FERRY_CODEC_ADDR", ""), "host:port to serve the payload codec for the Temporal UI and CLI on (with -payload-key-file); empty: not served")
	flag.StringVar(&c.CodecOrigins, "codec-origins", config.Env("FERRY_CODEC_ORIGINS", "http://127.0.0.1:8233,http://localhost:8233"), "comma-separated browser origins (the Temporal UI's) allowed to call the codec")
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
	codec, err := taskapi.PayloadCodec(cfg.PayloadKeyFile)
	if err != nil {
		return err
	}
	dc := taskapi.DataConverterWith(codec)
	tc, err := client.Dial(client.Options{HostPort: cfg.TemporalAddress, Namespace: cfg.TemporalNamespace, Logger: logger, DataConverter: dc,
		FailureConverter: taskapi.FailureConverterWith(codec)})
	if err != nil {
		return fmt.Errorf("connecting to Temporal at %s: %w", cfg.TemporalAddress, err)
	}
	defer tc.Close()
	cat, err := grpc.NewClient(cfg.CatalogAddress, append(tel.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpccodec.DialOption())...)
	if err != nil {
		return fmt.Errorf("catalog client for %s: %w", cfg.CatalogAddress, err)
	}
	defer func() { _ = cat.Close() }()
	if cfg.CodecAddr != "" {
		stop, err := serveCodec(cfg, codec, logger)
		if err != nil {
			return err
		}
		defer stop()
	}
	srv := grpcserver.New("control", logger, tel.ServerOptions()...)
	opts := control.Options{TaskQueue: cfg.TaskQueue, Namespace: cfg.TemporalNamespace, DataConverter: dc}
	taskv1.RegisterTaskServiceServer(srv, control.NewServer(tc, opts, catalogv1.NewCatalogServiceClient(cat), logger))
	return srv.RunUntilSignal(cfg.Listen)
}

// serveCodec serves the payload codec for the Temporal UI and CLI until the
// returned func is called.
func serveCodec(cfg Config, codec converter.PayloadCodec, logger *slog.Logger) (func(), error) {
	if codec == nil {
		return nil, fmt.Errorf("-codec-addr %s is set without -payload-key-file: there is nothing to decode", cfg.CodecAddr)
	}
	lis, err := net.Listen("tcp", cfg.CodecAddr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s for the payload codec: %w", cfg.CodecAddr, err)
	}
	hs := &http.Server{Handler: taskapi.CodecHandler(codec, strings.Split(cfg.CodecOrigins, ",")), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(lis) }()
	logger.Info("serving the payload codec", "addr", lis.Addr().String())
	return func() { _ = hs.Close() }, nil
}
