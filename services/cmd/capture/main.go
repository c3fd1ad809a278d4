// Command capture serves CaptureService: replication slot management and the
// PostgreSQL change stream.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"strconv"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	"github.com/ferry-cdc/ferry/platform/config"
	"github.com/ferry-cdc/ferry/platform/grpcsec"
	"github.com/ferry-cdc/ferry/platform/telemetry"
	"github.com/ferry-cdc/ferry/services/capture"
	"github.com/ferry-cdc/ferry/services/capture/wire"
	"github.com/ferry-cdc/ferry/services/internal/grpcserver"
	"github.com/ferry-cdc/ferry/services/internal/secret"
)

// Config is read once at start from flags, which default to the environment.
type Config struct {
	Listen   string
	LogLevel slog.Level
	// MetricsAddr serves Prometheus /metrics; empty: not served.
	MetricsAddr string
	// CPUProfile, when set, is where a CPU profile of the whole run is
	// written at exit (for the benchmark; off in production).
	CPUProfile string
	// StreamInProgress, SpoolDir and BackfillReaders: see capture.Server.
	StreamInProgress bool
	StreamProtocol   int
	SpoolDir         string
	BackfillReaders  int
	// Secrets bounds which files and variables task secrets may name.
	Secrets secret.Settings
	// Transport is mutual TLS with Ferry's other processes, or -insecure.
	Transport grpcsec.Settings
}

func loadConfig() (Config, error) {
	var c Config
	var level string
	flag.StringVar(&c.Listen, "listen", config.Env("FERRY_CAPTURE_LISTEN", "127.0.0.1:7402"), "host:port to serve gRPC on")
	flag.StringVar(&c.MetricsAddr, "metrics-addr", config.EnvOrOff("FERRY_CAPTURE_METRICS_ADDR", "127.0.0.1:9402"), "host:port to serve Prometheus /metrics on; empty disables it (env FERRY_CAPTURE_METRICS_ADDR)")
	flag.StringVar(&c.CPUProfile, "cpuprofile", config.Env("FERRY_CPU_PROFILE", ""), "write a CPU profile to this file until exit (env FERRY_CPU_PROFILE)")
	flag.StringVar(&level, "log-level", config.Env("FERRY_CAPTURE_LOG_LEVEL", "info"), "debug, info, warn or error")
	streamEnv := config.Env("FERRY_CAPTURE_STREAM_IN_PROGRESS", "true")
	streamDefault, err := strconv.ParseBool(streamEnv)
	if err != nil {
		return c, fmt.Errorf("FERRY_CAPTURE_STREAM_IN_PROGRESS=%q is not true or false: %w", streamEnv, err)
	}
	flag.BoolVar(&c.StreamInProgress, "stream-in-progress", streamDefault,
		"on PostgreSQL 14 and later, receive large transactions while they run (pgoutput protocol 2) and spool them to -spool-dir (env FERRY_CAPTURE_STREAM_IN_PROGRESS)")
	protoEnv := config.Env("FERRY_CAPTURE_STREAM_PROTOCOL", strconv.Itoa(capture.DefaultStreamProtocol))
	protoDefault, err := strconv.Atoi(protoEnv)
	if err != nil {
		return c, fmt.Errorf("FERRY_CAPTURE_STREAM_PROTOCOL=%q is not 2 or 4: %w", protoEnv, err)
	}
	flag.IntVar(&c.StreamProtocol, "stream-protocol", protoDefault,
		"on PostgreSQL 16 and later, the pgoutput protocol of -stream-in-progress: 2 (streaming on) or 4 (streaming parallel); 14 and 15 use 2 (env FERRY_CAPTURE_STREAM_PROTOCOL)")
	flag.StringVar(&c.SpoolDir, "spool-dir", config.Env("FERRY_CAPTURE_SPOOL_DIR", os.TempDir()),
		"folder for the temporary files of in-progress streamed transactions (env FERRY_CAPTURE_SPOOL_DIR)")
	readersEnv := config.Env("FERRY_CAPTURE_BACKFILL_READERS", strconv.Itoa(capture.DefaultBackfillReaders))
	readersDefault, err := strconv.Atoi(readersEnv)
	if err != nil || readersDefault < 1 {
		return c, fmt.Errorf("FERRY_CAPTURE_BACKFILL_READERS=%q is not a positive number", readersEnv)
	}
	flag.IntVar(&c.BackfillReaders, "backfill-readers", readersDefault,
		"how many tables the keyed (chunked) full sync and added tables' backfills read at once, each on a session of its own; 1 reads them one after another (env FERRY_CAPTURE_BACKFILL_READERS)")
	c.Secrets.Register(flag.CommandLine)
	c.Transport.Register(flag.CommandLine)
	flag.Parse()
	if c.BackfillReaders < 1 {
		return c, fmt.Errorf("-backfill-readers must be at least 1, not %d", c.BackfillReaders)
	}
	if err := capture.CheckStreamProtocol(c.StreamProtocol); err != nil {
		return c, err
	}
	if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
		return c, fmt.Errorf("invalid log level %q: %w", level, err)
	}
	return c, nil
}

func main() {
	cfg, err := loadConfig()
	if err != nil {
		log.Fatal(err)
	}
	logger := slog.New(telemetry.LogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel})))
	if err := run(cfg, logger); err != nil {
		log.Fatal(err)
	}
}

func run(cfg Config, logger *slog.Logger) (err error) {
	tel, err := telemetry.Start(context.Background(), telemetry.Config{Service: "ferry-capture", MetricsAddr: cfg.MetricsAddr, Logger: logger})
	if err != nil {
		return err
	}
	defer tel.Close()
	tel.SetGlobal()
	cfg.Transport.Logger = logger // hears of a rotated certificate that did not load
	impl := capture.NewServer(logger)
	impl.StreamInProgress, impl.StreamProtocol, impl.SpoolDir = cfg.StreamInProgress, cfg.StreamProtocol, cfg.SpoolDir
	impl.BackfillReaders = cfg.BackfillReaders
	if cfg.StreamInProgress {
		if err := wire.CheckSpoolDir(cfg.SpoolDir); err != nil {
			return err
		}
	}
	if impl.Metrics, err = capture.NewMetrics(tel.Meters, logger); err != nil {
		return err
	}
	secrets, err := cfg.Secrets.Policy()
	if err != nil {
		return err
	}
	creds, err := cfg.Transport.ServerOption(grpcsec.RequireClientCert)
	if err != nil {
		return err
	}
	srv := grpcserver.New("capture", logger, append(append(tel.ServerOptions(), creds), secrets.ServerOptions()...)...)
	tel.Handle("GET /healthz", srv.HealthHandler())
	capturev1.RegisterCaptureServiceServer(srv, impl)
	return srv.RunUntilSignalProfiled(cfg.Listen, cfg.CPUProfile)
}
