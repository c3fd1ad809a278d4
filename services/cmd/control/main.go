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

	"go.temporal.io/sdk/converter"
	"google.golang.org/grpc"

	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/config"
	"github.com/ferry-cdc/ferry/platform/fleet"
	"github.com/ferry-cdc/ferry/platform/grpccodec"
	"github.com/ferry-cdc/ferry/platform/grpcsec"
	"github.com/ferry-cdc/ferry/platform/taskapi"
	"github.com/ferry-cdc/ferry/platform/telemetry"
	"github.com/ferry-cdc/ferry/services/control"
	"github.com/ferry-cdc/ferry/services/internal/grpcserver"
)

// Config is read once at start from flags, which default to the environment.
type Config struct {
	Listen         string
	Temporal       taskapi.TemporalSettings
	CatalogAddress string
	// MetricsAddr serves Prometheus /metrics; empty: not served.
	MetricsAddr string
	// CodecAddr serves the codec the Temporal UI and CLI decode sealed
	// payloads with; empty: not served. CodecOrigins may call it from a
	// browser (the Temporal UI's origin).
	CodecAddr, CodecOrigins string
	// Transport is TLS (client certificates verified when given) with
	// callers and mutual TLS with catalog, or -insecure.
	Transport grpcsec.Settings
	// Auth says who may call: a bearer token or a client certificate.
	Auth grpcsec.AuthSettings
}

func loadConfig() Config {
	var c Config
	flag.StringVar(&c.Listen, "listen", config.Env("FERRY_CONTROL_LISTEN", "127.0.0.1:7400"), "host:port to serve gRPC on")
	c.Temporal.Register(flag.CommandLine)
	flag.StringVar(&c.CatalogAddress, "catalog", config.Env("FERRY_CATALOG_ADDRESS", "127.0.0.1:7401"), "catalog service: host:port, or dns:///name:port or static:///a,b for several instances (env FERRY_CATALOG_ADDRESS)")
	flag.StringVar(&c.MetricsAddr, "metrics-addr", config.EnvOrOff("FERRY_CONTROL_METRICS_ADDR", "127.0.0.1:9400"), "host:port to serve Prometheus /metrics on; empty disables it (env FERRY_CONTROL_METRICS_ADDR)")
	flag.StringVar(&c.CodecAddr, "codec-addr", config.Env("FERRY_CODEC_ADDR", ""), "host:port to serve the payload codec for the Temporal UI and CLI on (with -payload-key-file); empty: not served")
	flag.StringVar(&c.CodecOrigins, "codec-origins", config.Env("FERRY_CODEC_ORIGINS", "http://127.0.0.1:8233,http://localhost:8233"), "comma-separated browser origins (the Temporal UI's) allowed to call the codec")
	c.Transport.Register(flag.CommandLine)
	c.Auth.Register(flag.CommandLine)
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
	cfg.Transport.Logger = logger // hears of a rotated certificate that did not load
	tc, codec, err := cfg.Temporal.Dial(logger)
	if err != nil {
		return err
	}
	defer tc.Close()
	cat, err := fleet.Dial(cfg.CatalogAddress, cfg.Transport, append(tel.DialOptions(), grpccodec.DialOption())...)
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
	srvOpts, err := controlServerOptions(cfg, logger)
	if err != nil {
		return err
	}
	srv := grpcserver.New("control", logger, append(tel.ServerOptions(), srvOpts...)...)
	tel.Handle("GET /healthz", srv.HealthHandler())
	opts := control.Options{TaskQueue: cfg.Temporal.TaskQueue, Namespace: cfg.Temporal.Namespace, DataConverter: taskapi.DataConverterWith(codec)}
	taskv1.RegisterTaskServiceServer(srv, control.NewServer(tc, opts, catalogv1.NewCatalogServiceClient(cat), logger))
	return srv.RunUntilSignal(cfg.Listen)
}

// controlServerOptions are TLS, verifying a client certificate when one is
// given, and the check that each call brings a token or a certificate.
func controlServerOptions(cfg Config, logger *slog.Logger) ([]grpc.ServerOption, error) {
	creds, err := cfg.Transport.ServerOption(grpcsec.VerifyClientCertIfGiven)
	if err != nil {
		return nil, err
	}
	auth, err := grpcsec.NewAuthenticator(cfg.Auth, cfg.Transport)
	if err != nil {
		return nil, err
	}
	if auth.Open() {
		logger.Warn("the control API is open to anyone who reaches " + cfg.Listen + ": -insecure without -token-file")
	}
	return append(auth.ServerOptions(), creds), nil
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
