// Command delivery serves DeliveryService: it writes change events to Kafka
// and reports the LSNs Kafka has acknowledged.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	"google.golang.org/grpc"

	"github.com/ferry-cdc/ferry/platform/config"
	"github.com/ferry-cdc/ferry/platform/fleet"
	"github.com/ferry-cdc/ferry/platform/grpccodec"
	"github.com/ferry-cdc/ferry/platform/grpcsec"
	"github.com/ferry-cdc/ferry/platform/telemetry"
	"github.com/ferry-cdc/ferry/services/delivery"
	"github.com/ferry-cdc/ferry/services/internal/grpcserver"
	"github.com/ferry-cdc/ferry/services/internal/secret"
)

// Config is read once at start from flags, which default to the environment.
type Config struct {
	// Listen is the host:port to serve gRPC on.
	Listen string
	// CPUProfile, when set, is where a CPU profile of the whole run is
	// written at exit (for the benchmark; off in production).
	CPUProfile string
	// MetricsAddr serves Prometheus /metrics; empty: not served.
	MetricsAddr string
	// CaptureAddress is the capture service Replicate reads changes from.
	CaptureAddress string
	// Secrets bounds which files and variables task secrets may name.
	Secrets secret.Settings
	// Transport is mutual TLS with Ferry's other processes, or -insecure.
	Transport grpcsec.Settings
}

func loadConfig() Config {
	var c Config
	flag.StringVar(&c.Listen, "listen", config.Env("FERRY_DELIVERY_LISTEN", "127.0.0.1:7403"), "host:port to serve gRPC on (env FERRY_DELIVERY_LISTEN)")
	flag.StringVar(&c.MetricsAddr, "metrics-addr", config.EnvOrOff("FERRY_DELIVERY_METRICS_ADDR", "127.0.0.1:9403"), "host:port to serve Prometheus /metrics on; empty disables it (env FERRY_DELIVERY_METRICS_ADDR)")
	flag.StringVar(&c.CaptureAddress, "capture", config.Env("FERRY_CAPTURE_ADDRESS", "127.0.0.1:7402"), "capture service: host:port, or dns:///name:port or static:///a,b for several instances; Replicate reads changes from it (env FERRY_CAPTURE_ADDRESS)")
	flag.StringVar(&c.CPUProfile, "cpuprofile", config.Env("FERRY_CPU_PROFILE", ""), "write a CPU profile to this file until exit (env FERRY_CPU_PROFILE)")
	c.Secrets.Register(flag.CommandLine)
	c.Transport.Register(flag.CommandLine)
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

func run(cfg Config, logger *slog.Logger) (err error) {
	tel, err := telemetry.Start(context.Background(), telemetry.Config{Service: "ferry-delivery", MetricsAddr: cfg.MetricsAddr, Logger: logger})
	if err != nil {
		return err
	}
	defer tel.Close()
	tel.SetGlobal()
	cfg.Transport.Logger = logger // hears of a rotated certificate that did not load
	impl := delivery.NewServer(logger)
	if impl.Metrics, err = delivery.NewMetrics(tel.Meters); err != nil {
		return err
	}
	// Rows reach delivery from capture directly (Replicate); the client
	// dials lazily, so delivery starts before capture does.
	capConn, err := fleet.Dial(cfg.CaptureAddress, cfg.Transport, append(tel.DialOptions(), grpccodec.DialOption(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(delivery.MaxChangeMessageBytes)))...)
	if err != nil {
		return fmt.Errorf("capture client for %s: %w", cfg.CaptureAddress, err)
	}
	defer func() { _ = capConn.Close() }()
	impl.Capture = capturev1.NewCaptureServiceClient(capConn)
	secrets, err := cfg.Secrets.Policy()
	if err != nil {
		return err
	}
	creds, err := cfg.Transport.ServerOption(grpcsec.RequireClientCert)
	if err != nil {
		return err
	}
	srv := grpcserver.New("delivery", logger, append(append(tel.ServerOptions(), creds), secrets.ServerOptions()...)...)
	tel.Handle("GET /healthz", srv.HealthHandler())
	deliveryv1.RegisterDeliveryServiceServer(srv, impl)
	return srv.RunUntilSignalProfiled(cfg.Listen, cfg.CPUProfile)
}
