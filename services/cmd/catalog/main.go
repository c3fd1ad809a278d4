// Command catalog serves CatalogService: source introspection and prechecks.
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"os"

	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	"github.com/ferry-cdc/ferry/platform/config"
	"github.com/ferry-cdc/ferry/platform/grpcsec"
	"github.com/ferry-cdc/ferry/platform/telemetry"
	"github.com/ferry-cdc/ferry/services/catalog"
	"github.com/ferry-cdc/ferry/services/internal/grpcserver"
	"github.com/ferry-cdc/ferry/services/internal/secret"
)

// Config is read once at start from flags, which default to the environment.
type Config struct {
	Listen string
	// MetricsAddr serves Prometheus /metrics; empty: not served.
	MetricsAddr string
	// Secrets bounds which files and variables task secrets may name.
	Secrets secret.Settings
	// Transport is mutual TLS with Ferry's other processes, or -insecure.
	Transport grpcsec.Settings
}

func loadConfig() Config {
	var c Config
	flag.StringVar(&c.Listen, "listen", config.Env("FERRY_CATALOG_LISTEN", "127.0.0.1:7401"), "host:port to serve gRPC on")
	flag.StringVar(&c.MetricsAddr, "metrics-addr", config.EnvOrOff("FERRY_CATALOG_METRICS_ADDR", "127.0.0.1:9401"), "host:port to serve Prometheus /metrics on; empty disables it (env FERRY_CATALOG_METRICS_ADDR)")
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

func run(cfg Config, logger *slog.Logger) error {
	tel, err := telemetry.Start(context.Background(), telemetry.Config{Service: "ferry-catalog", MetricsAddr: cfg.MetricsAddr, Logger: logger})
	if err != nil {
		return err
	}
	defer tel.Close()
	tel.SetGlobal()
	cfg.Transport.Logger = logger // hears of a rotated certificate that did not load
	secrets, err := cfg.Secrets.Policy()
	if err != nil {
		return err
	}
	creds, err := cfg.Transport.ServerOption(grpcsec.RequireClientCert)
	if err != nil {
		return err
	}
	srv := grpcserver.New("catalog", logger, append(append(tel.ServerOptions(), creds), secrets.ServerOptions()...)...)
	tel.Handle("GET /healthz", srv.HealthHandler())
	catalogv1.RegisterCatalogServiceServer(srv, catalog.NewServer(logger))
	return srv.RunUntilSignal(cfg.Listen)
}
